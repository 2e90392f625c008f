//! The air-gap report (`quarry doctor --privacy`): for the configuration in
//! force, every way data could leave this machine — providers and the modes
//! that allow them, model downloads, the HTTP and MCP endpoints and who can
//! reach them — and whether the models in use still match their pinned
//! checksums. It reads the configuration and probes the endpoints on loopback;
//! it sends nothing anywhere else.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use quarry_core::cloud::{LibraryPrivacy, Policy, PrivacyMode, Providers, Settings};
use quarry_core::models::{FileAudit, ModelRole, ModelStore, Source};
use serde::Serialize;

use crate::{AppError, AppResult};

/// What the report looks at.
pub struct ReportInputs<'a> {
    /// Quarry's configuration folder (settings, providers, the server token).
    pub config_dir: &'a Path,
    /// The library, when there is one.
    pub library_dir: Option<&'a Path>,
    /// The models folder and registry.
    pub store: &'a ModelStore,
    /// Where `quarry serve` listens by default.
    pub serve_addr: SocketAddr,
    /// Where the desktop app's agents endpoint listens.
    pub agents_addr: SocketAddr,
    /// The environment (key variables, download mirrors).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Every way data could leave the machine, and what needs attention.
#[derive(Debug, Clone, Serialize)]
pub struct PrivacyReport {
    /// The library reported on, if any.
    pub library: Option<PathBuf>,
    /// The privacy mode in force for it, and which setting decided.
    pub policy: Policy,
    /// The library is marked never-leaves-device (no flag can override it).
    pub never_leaves_device: bool,
    /// Whether any path could send document text off this machine.
    pub text_can_leave: bool,
    /// Configured providers and what each may receive.
    pub providers: Vec<ProviderExposure>,
    /// Where model downloads go (they send no document text).
    pub downloads: Vec<String>,
    /// HTTP and MCP endpoints and who can reach them.
    pub endpoints: Vec<Exposure>,
    /// How the library's files are kept on disk, in words (none without a
    /// library).
    pub at_rest: Option<String>,
    /// The models in use, hashed now against their pinned checksums.
    pub models: Vec<ModelAudit>,
    /// What needs attention; empty when nothing does.
    pub risks: Vec<String>,
}

/// A configured provider.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderExposure {
    /// Its name.
    pub name: String,
    /// Its API address.
    pub base_url: String,
    /// The router sends to this one (the chosen, or first, provider).
    pub chosen: bool,
    /// Personal data is replaced by placeholders before sending.
    pub redact: bool,
    /// What it may receive under the configuration, in words.
    pub receives: String,
}

/// One way in or out, in words.
#[derive(Debug, Clone, Serialize)]
pub struct Exposure {
    /// What it is.
    pub what: String,
    /// Who can reach it, or what it sends.
    pub reach: String,
}

/// A model in use and its files.
#[derive(Debug, Clone, Serialize)]
pub struct ModelAudit {
    /// Registry id, or the file it was given as.
    pub id: String,
    /// `embedder` or `generator`.
    pub role: String,
    /// Each file, hashed now; empty when the model is not in the registry.
    pub files: Vec<FileAudit>,
    /// The verdict in words.
    pub verdict: String,
}

/// Build the report.
pub fn privacy_report(inputs: &ReportInputs) -> AppResult<PrivacyReport> {
    let settings = Settings::load(inputs.config_dir)?;
    let providers = Providers::load(inputs.config_dir)?;
    let meta = match inputs.library_dir {
        Some(dir) if dir.join("library.json").is_file() => {
            Some(quarry_core::store::library::read_meta(dir)?)
        }
        _ => None,
    };
    let privacy = meta.as_ref().map(|m| m.privacy.clone()).unwrap_or_default();
    let policy = Policy::resolve(None, &privacy, &settings);
    let mut risks = Vec::new();
    let exposures = provider_exposures(&providers, &settings, &privacy, &policy, &mut risks);
    let text_can_leave = !privacy.never_leaves_device && !providers.list.is_empty();
    let mut endpoints = endpoint_exposures(inputs, &mut risks)?;
    endpoints.push(agents_exposure(&privacy));
    let embedder = meta.as_ref().map(|m| m.embedder.clone());
    let models = model_audits(inputs.store, embedder, &settings, &mut risks);
    Ok(PrivacyReport {
        library: meta.as_ref().and(inputs.library_dir.map(Path::to_path_buf)),
        policy,
        never_leaves_device: privacy.never_leaves_device,
        text_can_leave,
        providers: exposures,
        downloads: download_hosts(inputs),
        at_rest: inputs.library_dir.filter(|_| meta.is_some()).map(at_rest),
        endpoints,
        models,
        risks,
    })
}

/// How the files of the library in `dir` are kept on disk, in words.
fn at_rest(dir: &Path) -> String {
    use quarry_core::store::sealed::{LibraryKey, NEXT_KEY_FILE};
    if dir.join(NEXT_KEY_FILE).exists() {
        return "a change of its encryption was interrupted: run the same `quarry encrypt` or `quarry rekey` again".into();
    }
    match LibraryKey::kept_by(dir) {
        Some("keychain") => "encrypted (XChaCha20-Poly1305, every file); its key is kept in this user's OS keychain".into(),
        Some(_) => "encrypted (XChaCha20-Poly1305, every file); its key opens only with your passphrase (Argon2id)".into(),
        None => "plain files: whoever can read the folder (a backup, a laptop without disk encryption) can read the indexed text; `quarry encrypt` encrypts it in place".into(),
    }
}

fn provider_exposures(
    providers: &Providers,
    settings: &Settings,
    privacy: &LibraryPrivacy,
    policy: &Policy,
    risks: &mut Vec<String>,
) -> Vec<ProviderExposure> {
    let chosen = providers
        .choose(settings.provider.as_deref())
        .map(|p| p.name.clone());
    providers
        .list
        .iter()
        .map(|p| {
            let is_chosen = chosen.as_deref() == Some(p.name.as_str());
            let receives = if privacy.never_leaves_device {
                "nothing: this library is marked never-leaves-device, which no setting or flag overrides".to_string()
            } else if !is_chosen {
                "nothing unless it becomes the chosen provider (`quarry provider use`)".to_string()
            } else {
                match policy.mode {
                    PrivacyMode::LocalOnly => format!(
                        "nothing now ({}), but a command run with `--privacy ask|auto` could send it the passages of a question; mark the library never-leaves-device to rule that out",
                        policy.why
                    ),
                    PrivacyMode::Ask => "the passages of a question and the question, each time you approve the preview".to_string(),
                    PrivacyMode::Auto => "the passages of a question and the question, whenever the router judges the question too hard for the local model (shown in `quarry audit`)".to_string(),
                }
            };
            let plain = p.base_url.starts_with("http://") && !is_loopback_url(&p.base_url);
            if plain && is_chosen && !privacy.never_leaves_device {
                risks.push(format!(
                    "provider '{}' is reached over plain http on the network ({}): what it receives travels unencrypted",
                    p.name, p.base_url
                ));
            }
            ProviderExposure {
                name: p.name.clone(),
                base_url: p.base_url.clone(),
                chosen: is_chosen,
                redact: p.redact,
                receives,
            }
        })
        .collect()
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

fn download_hosts(inputs: &ReportInputs) -> Vec<String> {
    let registry = inputs.store.registry();
    let uses = |pypi: bool| {
        registry.models().iter().any(|m| {
            m.sources
                .iter()
                .any(|s| matches!(s, Source::Pypi { .. }) == pypi)
        })
    };
    let mut hosts = Vec::new();
    if uses(true) {
        let index = (inputs.env)("PIP_INDEX_URL")
            .unwrap_or_else(|| "pypi.org and files.pythonhosted.org (pip's default index)".into());
        hosts.push(format!("Python package index: {index}"));
    }
    if uses(false) {
        let hub =
            (inputs.env)("HF_ENDPOINT").unwrap_or_else(|| "https://huggingface.co".to_string());
        hosts.push(format!("Hugging Face hub: {hub}"));
    }
    hosts
}

fn endpoint_exposures(inputs: &ReportInputs, risks: &mut Vec<String>) -> AppResult<Vec<Exposure>> {
    let token_file = crate::server_token::token_file(inputs.config_dir);
    let mut out = vec![Exposure {
        what: "server token".into(),
        reach: token_state(&token_file, risks)?,
    }];
    for (name, addr) in [
        ("`quarry serve`", inputs.serve_addr),
        ("the desktop app's agents endpoint", inputs.agents_addr),
    ] {
        out.push(Exposure {
            what: format!("{name} at http://{addr}"),
            reach: probe(addr, name, risks),
        });
    }
    Ok(out)
}

fn token_state(path: &Path, risks: &mut Vec<String>) -> AppResult<String> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(format!(
                "not made yet ({}): the first `quarry serve` makes it, user-only",
                path.display()
            ))
        }
        Err(e) => {
            return Err(AppError::internal(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            risks.push(format!(
                "the server token {} can be read by other users (mode {mode:o}): `chmod 600` it, or start `quarry serve` once, which narrows it",
                path.display()
            ));
            return Ok(format!(
                "{} (mode {mode:o}: readable by others)",
                path.display()
            ));
        }
    }
    let _ = (meta, risks);
    Ok(format!("{} (readable by you only)", path.display()))
}

/// What listens at `addr` on this machine: nothing, a locked Quarry, or one
/// that answers without a token.
fn probe(addr: SocketAddr, name: &str, risks: &mut Vec<String>) -> String {
    // The report reaches nothing beyond this machine (egress.rs's network
    // client test holds it to that).
    if !addr.ip().is_loopback() {
        return "not probed: the report only probes this machine's loopback".into();
    }
    if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err() {
        return "not listening now".into();
    }
    // The model list is the cheapest request that reads the engine.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let (status, body) = match agent.get(&format!("http://{addr}/v1/models")).call() {
        Ok(r) => (200, r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(_) => (0, String::new()),
    };
    let quarry_list = serde_json::from_str::<serde_json::Value>(&body)
        .is_ok_and(|v| v["data"][0]["owned_by"] == "quarry");
    match status {
        401 if body.contains("unauthorized") => {
            "listening, locked: every request needs the server token".into()
        }
        200 if quarry_list => {
            risks.push(format!(
                "{name} at http://{addr} answers without a token (--no-token): any program of any user on this machine can read the library"
            ));
            "listening, UNLOCKED: any program of any user on this machine can read the library"
                .into()
        }
        _ => "something that is not Quarry listens there".into(),
    }
}

fn agents_exposure(privacy: &LibraryPrivacy) -> Exposure {
    Exposure {
        what: "agents (MCP: `quarry mcp` over stdio, `/mcp` over HTTP)".into(),
        reach: if privacy.not_shared_with_agents {
            "refused: the library is not shared with agents".into()
        } else {
            "an agent you connect reads search results and passages; what it does with them is up to the agent (a cloud assistant sends them to its own model). `quarry privacy --library DIR --agents off` refuses agents".into()
        },
    }
}

fn model_audits(
    store: &ModelStore,
    embedder: Option<String>,
    settings: &Settings,
    risks: &mut Vec<String>,
) -> Vec<ModelAudit> {
    let generator = settings
        .generator
        .clone()
        .or_else(|| store.default_id(ModelRole::Generator).ok());
    [(embedder, "embedder"), (generator, "generator")]
        .into_iter()
        .filter_map(|(id, role)| id.map(|id| audit_model(store, id, role, risks)))
        .collect()
}

fn audit_model(store: &ModelStore, id: String, role: &str, risks: &mut Vec<String>) -> ModelAudit {
    let Ok(spec) = store.registry().get(&id) else {
        return ModelAudit {
            verdict: "not in the registry (a file or import of your own): no pinned checksum"
                .into(),
            id,
            role: role.into(),
            files: Vec::new(),
        };
    };
    let files = store.audit_files(spec);
    let missing = files.iter().filter(|f| f.actual.is_none()).count();
    let differ: Vec<_> = files
        .iter()
        .filter(|f| f.actual.is_some() && !f.matches())
        .collect();
    let pinned = files.iter().filter(|f| f.pinned.is_some()).count();
    let verdict = if files.len() == missing {
        "not installed".to_string()
    } else if !differ.is_empty() {
        let names: Vec<_> = differ
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        risks.push(format!(
            "{id}: {} differ from the pinned checksum: {}",
            names.len(),
            names.join(", ")
        ));
        format!("DIFFERS from its pinned checksum: {}", names.join(", "))
    } else if missing > 0 {
        format!("{missing} of {} files missing", files.len())
    } else if pinned == 0 {
        "installed; no checksum is pinned for it".into()
    } else {
        format!(
            "matches its pinned checksums ({pinned} of {} files pinned, hashed now)",
            files.len()
        )
    };
    ModelAudit {
        id,
        role: role.into(),
        files,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_probed() {
        let mut risks = Vec::new();
        let reach = probe("192.0.2.1:80".parse().unwrap(), "x", &mut risks);
        assert!(reach.starts_with("not probed"), "{reach}");
        assert!(risks.is_empty());
    }

    #[test]
    fn loopback_urls_are_recognised() {
        for u in [
            "http://localhost:8080/v1",
            "http://127.0.0.1/v1",
            "http://[::1]:9/v1",
        ] {
            assert!(is_loopback_url(u), "{u}");
        }
        for u in [
            "http://10.0.0.2:8080/v1",
            "https://api.openai.com/v1",
            "http://localhost.evil.com/v1",
        ] {
            assert!(!is_loopback_url(u), "{u}");
        }
    }
}

//! The one place where text leaves the machine.
//!
//! Every request to a remote provider goes through [`Egress::send`], which, in
//! this order: refuses unless the privacy [`Policy`] allows egress (in
//! `local-only` nothing is built that could open a connection), redacts
//! personal data if the provider asks for it, shows the exact outbound text
//! and waits for confirmation in `ask` mode, appends the request to the
//! library's audit log, and only then connects. The HTTP client lives in the
//! private `client` module below, so no other code in Quarry can reach a
//! provider (a test checks that no other source file names the client crates).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::audit::{self, AuditEntry};
use super::privacy::{Policy, PrivacyMode};
use super::providers::{ApiKey, Provider};
use super::redact::{RedactionSummary, Redactor, StreamRestorer};
use crate::error::{Error, Result};
use crate::generate::ChatMessage;

/// What a caller wants to send.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The chat messages (question and retrieved passages).
    pub messages: Vec<ChatMessage>,
    /// Paths of the documents whose text the messages include.
    pub documents: Vec<String>,
    /// Most answer tokens.
    pub max_tokens: usize,
    /// Sampling temperature.
    pub temperature: f64,
}

/// Exactly what would leave the machine, shown before sending in `ask` mode
/// and attached to a cloud answer.
#[derive(ts_rs::TS, Debug, Clone, Serialize, serde::Deserialize)]
pub struct Preview {
    /// Provider name.
    pub provider: String,
    /// Host the request goes to.
    pub host: String,
    /// Model asked for.
    pub model: String,
    /// The messages as they will be sent (after redaction).
    pub messages: Vec<ChatMessage>,
    /// Bytes of message text.
    pub bytes: usize,
    /// Documents whose text is included.
    pub documents: Vec<String>,
    /// Redactions applied.
    pub redactions: RedactionSummary,
}

/// A provider's answer.
#[derive(Debug, Clone)]
pub struct CloudReply {
    /// The answer text, placeholders restored.
    pub text: String,
    /// What was sent.
    pub sent: Preview,
    /// Its audit log id.
    pub audit_id: String,
    /// Until the first answer text arrived.
    pub first_token: Duration,
    /// Everything.
    pub elapsed: Duration,
}

/// Sends requests to one provider under one policy, for one library.
pub struct Egress {
    policy: Policy,
    provider: Provider,
    key: Option<ApiKey>,
    library_dir: PathBuf,
}

impl Egress {
    /// An egress for `provider` under `policy`, auditing into `library_dir`.
    pub fn new(
        policy: Policy,
        provider: Provider,
        key: Option<ApiKey>,
        library_dir: PathBuf,
    ) -> Self {
        Egress {
            policy,
            provider,
            key,
            library_dir,
        }
    }

    /// The provider requests go to.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn prepare(&self, req: &Outbound) -> (Preview, Redactor) {
        let mut redactor = Redactor::new();
        let messages: Vec<ChatMessage> = req
            .messages
            .iter()
            .map(|m| {
                let content = if self.provider.redact {
                    redactor.redact(&m.content)
                } else {
                    m.content.clone()
                };
                ChatMessage::new(&m.role, content)
            })
            .collect();
        let bytes = messages.iter().map(|m| m.content.len()).sum();
        (
            Preview {
                provider: self.provider.name.clone(),
                host: self.provider.host(),
                model: self.provider.model.clone(),
                messages,
                bytes,
                documents: req.documents.clone(),
                redactions: redactor.summary(),
            },
            redactor,
        )
    }

    /// What [`Egress::send`] would send, without sending anything.
    pub fn preview(&self, req: &Outbound) -> Preview {
        self.prepare(req).0
    }

    /// Send `req` if the policy allows it; `confirm` is asked in `ask` mode
    /// (return true to send); `on_token` receives the answer as it streams
    /// (return false to stop). `now` is the audit timestamp.
    pub async fn send(
        &self,
        req: &Outbound,
        now: chrono::DateTime<chrono::Utc>,
        confirm: &mut dyn FnMut(&Preview) -> bool,
        on_token: &mut dyn FnMut(&str) -> bool,
    ) -> Result<CloudReply> {
        if !self.policy.allows_egress() {
            return Err(Error::PrivacyBlocked(self.policy.why.clone()));
        }
        let (preview, redactor) = self.prepare(req);
        if self.policy.mode == PrivacyMode::Ask && !confirm(&preview) {
            return Err(Error::SendDeclined);
        }
        let id = format!(
            "{}-{:08x}",
            now.format("%Y%m%dT%H%M%S%.3fZ"),
            rand::random::<u32>()
        );
        audit::record_request(
            &self.library_dir,
            &AuditEntry {
                id: id.clone(),
                time: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                provider: self.provider.name.clone(),
                host: preview.host.clone(),
                model: self.provider.model.clone(),
                privacy: format!("{} ({})", self.policy.mode, self.policy.why),
                bytes_sent: preview.bytes,
                documents: preview.documents.clone(),
                redactions: preview.redactions.clone(),
                outcome: None,
                duration_ms: None,
            },
        )?;
        let started = Instant::now();
        let mut restorer = StreamRestorer::default();
        let mut text = String::new();
        let mut first_token: Option<Duration> = None;
        let result = client::stream_chat(
            &self.provider,
            self.key.as_ref(),
            &preview.messages,
            req.max_tokens,
            req.temperature,
            &mut |piece: &str| {
                first_token.get_or_insert_with(|| started.elapsed());
                let shown = restorer.push(&redactor, piece);
                text.push_str(&shown);
                shown.is_empty() || on_token(&shown)
            },
        )
        .await;
        let rest = restorer.finish(&redactor);
        if !rest.is_empty() {
            text.push_str(&rest);
            on_token(&rest);
        }
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        audit::record_outcome(&self.library_dir, &id, &outcome, elapsed.as_millis() as u64)?;
        result?;
        Ok(CloudReply {
            text,
            sent: preview,
            audit_id: id,
            first_token: first_token.unwrap_or(elapsed),
            elapsed,
        })
    }
}

/// The HTTP client for OpenAI-compatible providers (async-openai). Private:
/// only [`Egress::send`] can call it.
mod client {
    use async_openai::config::OpenAIConfig;
    use async_openai::types::chat::{
        ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
        ChatCompletionRequestSystemMessage, ChatCompletionRequestUserMessage,
        CreateChatCompletionRequest,
    };
    use async_openai::Client;
    use futures::StreamExt;
    use std::time::Duration;

    use crate::cloud::providers::{ApiKey, Provider};
    use crate::error::{Error, Result};
    use crate::generate::ChatMessage;

    fn provider_error(p: &Provider, reason: impl std::fmt::Display) -> Error {
        Error::Provider {
            provider: p.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Stream a chat completion; `on_piece` gets each piece of text (false stops).
    pub(super) async fn stream_chat(
        provider: &Provider,
        key: Option<&ApiKey>,
        messages: &[ChatMessage],
        max_tokens: usize,
        temperature: f64,
        on_piece: &mut dyn FnMut(&str) -> bool,
    ) -> Result<()> {
        let mut config = OpenAIConfig::new().with_api_base(&provider.base_url);
        // async-openai sends `Authorization: Bearer <key>`; with no key it
        // sends an empty one, which self-hosted servers ignore.
        config = config.with_api_key(key.map(|k| k.expose()).unwrap_or(""));
        let client = Client::with_config(config);
        let messages: Vec<ChatCompletionRequestMessage> = messages
            .iter()
            .map(|m| match m.role.as_str() {
                "system" => ChatCompletionRequestSystemMessage::from(m.content.as_str()).into(),
                "assistant" => {
                    ChatCompletionRequestAssistantMessage::from(m.content.as_str()).into()
                }
                _ => ChatCompletionRequestUserMessage::from(m.content.as_str()).into(),
            })
            .collect();
        let openai = provider.host().ends_with("api.openai.com");
        // Compatible servers (vLLM, llama.cpp, Ollama, Groq...) know `max_tokens`;
        // OpenAI itself wants `max_completion_tokens` for its newer models.
        #[allow(deprecated)]
        let request = CreateChatCompletionRequest {
            model: provider.model.clone(),
            messages,
            stream: Some(true),
            temperature: Some(temperature as f32),
            max_tokens: (!openai).then_some(max_tokens as u32),
            max_completion_tokens: openai.then_some(max_tokens as u32),
            ..Default::default()
        };
        let timeout = Duration::from_secs(provider.timeout_s.max(1));
        let mut stream = tokio::time::timeout(timeout, client.chat().create_stream(request))
            .await
            .map_err(|_| {
                provider_error(provider, format!("no answer within {}s", timeout.as_secs()))
            })?
            .map_err(|e| provider_error(provider, e))?;
        loop {
            let next = tokio::time::timeout(timeout, stream.next())
                .await
                .map_err(|_| {
                    provider_error(provider, format!("stalled for {}s", timeout.as_secs()))
                })?;
            let Some(event) = next else {
                return Ok(());
            };
            let event = event.map_err(|e| provider_error(provider, e))?;
            for choice in event.choices {
                if let Some(piece) = choice.delta.content {
                    if !piece.is_empty() && !on_piece(&piece) {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::privacy::{LibraryPrivacy, Settings};

    fn outbound() -> Outbound {
        Outbound {
            messages: vec![ChatMessage::new(
                "user",
                "Mail ann@corp.example about [1] the Q3 numbers",
            )],
            documents: vec!["/docs/q3.txt".into()],
            max_tokens: 16,
            temperature: 0.0,
        }
    }

    /// A port nothing listens on: any connection attempt would fail loudly.
    fn unused_provider() -> Provider {
        Provider::new("p", "http://127.0.0.1:9/v1", "m").unwrap()
    }

    #[tokio::test]
    async fn local_only_refuses_before_anything_is_built_or_logged() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::resolve(None, &LibraryPrivacy::default(), &Settings::default());
        let e = Egress::new(policy, unused_provider(), None, dir.path().to_path_buf());
        let mut asked = false;
        let err = e
            .send(
                &outbound(),
                chrono::Utc::now(),
                &mut |_| {
                    asked = true;
                    true
                },
                &mut |_| true,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PrivacyBlocked(_)), "{err}");
        assert!(!asked);
        assert!(audit::read(dir.path()).unwrap().is_empty());
    }

    #[tokio::test]
    async fn ask_mode_shows_the_redacted_text_and_a_refusal_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::resolve(
            Some(PrivacyMode::Ask),
            &LibraryPrivacy::default(),
            &Settings::default(),
        );
        let mut provider = unused_provider();
        provider.redact = true;
        let e = Egress::new(policy, provider, None, dir.path().to_path_buf());
        let mut shown = None;
        let err = e
            .send(
                &outbound(),
                chrono::Utc::now(),
                &mut |p| {
                    shown = Some(p.clone());
                    false
                },
                &mut |_| true,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::SendDeclined), "{err}");
        let p = shown.expect("the preview was shown");
        assert_eq!(
            p.messages[0].content,
            "Mail [EMAIL_1] about [1] the Q3 numbers"
        );
        assert_eq!(p.redactions.counts["EMAIL"], 1);
        assert!(audit::read(dir.path()).unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failed_request_is_audited_with_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let policy = Policy::resolve(
            Some(PrivacyMode::Auto),
            &LibraryPrivacy::default(),
            &Settings::default(),
        );
        let e = Egress::new(
            policy,
            unused_provider(),
            Some(ApiKey::new("sk-secret-123")),
            dir.path().to_path_buf(),
        );
        let err = e
            .send(&outbound(), chrono::Utc::now(), &mut |_| true, &mut |_| {
                true
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Provider { .. }), "{err}");
        assert!(!err.to_string().contains("sk-secret-123"));
        let log = audit::read(dir.path()).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].documents, vec!["/docs/q3.txt".to_string()]);
        assert!(log[0].outcome.as_deref().unwrap().starts_with("failed"));
        let raw = std::fs::read_to_string(audit::log_path(dir.path())).unwrap();
        assert!(!raw.contains("sk-secret-123"));
    }

    /// Outbound network code and where else than the choke point (which
    /// sends document text) it may appear: model downloads (`models/fetch.rs`) fetch weights and
    /// carry no document text; the server listens (a listener, never a client).
    const CLIENTS: &[(&str, &[&str])] = &[
        ("async_openai", &[]),
        ("reqwest", &[]),
        ("hyper::client", &[]),
        ("hyper_util::client", &[]),
        // The air-gap report probes Quarry's own endpoints, on loopback only,
        // and sends no document text.
        (
            "ureq",
            &["models/fetch.rs", "quarry-app/src/privacy_report.rs"],
        ),
        ("hf_hub", &["models/fetch.rs"]),
        ("TcpStream", &["quarry-app/src/privacy_report.rs"]),
        ("UdpSocket", &[]),
        ("tokio::net::", &["quarry-server/src/lib.rs"]),
        ("isahc", &[]),
        ("surf::", &[]),
        ("curl::", &[]),
        ("attohttpc", &[]),
        ("tungstenite", &[]),
    ];

    /// Every shipped `.rs` file of the workspace (`src` trees of every crate,
    /// the desktop shell and the fuzz targets; test code may use clients to
    /// test the server).
    fn shipped_sources() -> Vec<std::path::PathBuf> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut files = Vec::new();
        let mut stack = vec![
            root.join("crates"),
            root.join("src-tauri"),
            root.join("fuzz"),
        ];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                if p.is_dir() {
                    if !matches!(name.as_str(), "tests" | "target" | "node_modules" | "gen") {
                        stack.push(p);
                    }
                } else if name.ends_with(".rs") {
                    files.push(p);
                }
            }
        }
        files
    }

    /// The choke point is the only code that can reach a provider: no other
    /// source file of the workspace names an HTTP or socket client.
    #[test]
    fn no_other_source_file_names_a_network_client() {
        let files = shipped_sources();
        let mut offenders = Vec::new();
        let mut seen_in_egress = Vec::new();
        for p in &files {
            let whole = std::fs::read_to_string(p).unwrap();
            // Shipped code only: a file's unit tests may talk to test servers.
            let text = whole.split("#[cfg(test)]").next().unwrap_or_default();
            let shown = p.to_string_lossy().replace('\\', "/");
            for (needle, allowed) in CLIENTS {
                if !text.contains(needle) {
                    continue;
                }
                if shown.ends_with("cloud/egress.rs") {
                    seen_in_egress.push(*needle);
                    continue;
                }
                if !allowed.iter().any(|a| shown.ends_with(a)) {
                    offenders.push(format!("{shown}: {needle}"));
                }
            }
        }
        // The scan read the whole workspace, the desktop shell included, and
        // recognises the client the choke point itself uses.
        assert!(files.len() > 60, "scanned only {} files", files.len());
        for must in [
            "src-tauri/src/main.rs",
            "quarry-server/src/lib.rs",
            "cloud/egress.rs",
        ] {
            assert!(
                files
                    .iter()
                    .any(|f| f.to_string_lossy().replace('\\', "/").ends_with(must)),
                "{must} was not scanned"
            );
        }
        assert!(
            seen_in_egress.contains(&"async_openai"),
            "{seen_in_egress:?}"
        );
        assert!(
            offenders.is_empty(),
            "outbound code outside the choke point: {offenders:?}"
        );
    }
}

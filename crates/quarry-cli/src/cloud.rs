//! `quarry provider`, `quarry privacy` and `quarry audit`: remote providers,
//! privacy settings and the log of what left the machine.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context as _, Result};
use quarry_core::cloud::providers::{find_key, keychain_delete, keychain_set};
use quarry_core::cloud::{
    audit, ApiKey, LibraryPrivacy, PrivacyMode, Provider, Providers, Settings,
};
use quarry_core::Library;

use crate::commands::Context;

#[derive(clap::Subcommand)]
pub enum ProviderAction {
    /// Add (or replace) a provider that speaks the OpenAI chat-completions API.
    Add {
        /// A name for it (letters, digits, '-', '_', '.').
        name: String,
        /// Base URL, e.g. https://api.openai.com/v1 or http://gpu-box:8000/v1.
        #[arg(long)]
        base_url: String,
        /// Model to ask for.
        #[arg(long)]
        model: String,
        /// Environment variable holding its key (default: the conventional one for the host).
        #[arg(long)]
        key_env: Option<String>,
        /// Replace e-mail addresses, phone, card and ID numbers by placeholders in what is sent.
        #[arg(long)]
        redact: bool,
        /// Seconds to wait before falling back to the local model.
        #[arg(long, default_value_t = 60)]
        timeout_s: u64,
        /// Make it the provider the router sends to.
        #[arg(long)]
        default: bool,
    },
    /// Store a provider's API key in the OS keychain (read from the terminal, or stdin).
    SetKey {
        /// Provider name.
        name: String,
    },
    /// List providers and where their keys come from (never the keys).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a provider and its keychain entry.
    Remove {
        /// Provider name.
        name: String,
    },
}

pub fn provider(ctx: &Context, action: ProviderAction) -> Result<()> {
    let dir = &ctx.dirs.config;
    let mut list = Providers::load(dir)?;
    match action {
        ProviderAction::Add {
            name,
            base_url,
            model,
            key_env,
            redact,
            timeout_s,
            default,
        } => {
            let mut p = Provider::new(&name, &base_url, &model)?;
            p.key_env = key_env;
            p.redact = redact;
            p.timeout_s = timeout_s;
            list.upsert(p)?;
            list.save(dir)?;
            if default {
                let mut s = Settings::load(dir)?;
                s.provider = Some(name.clone());
                s.save(dir)?;
            }
            println!("Added provider '{name}' ({model} at {base_url}).");
            let settings = Settings::load(dir)?;
            if settings.privacy == PrivacyMode::LocalOnly {
                println!(
                    "Privacy mode is local-only: nothing is sent until you choose `quarry privacy set ask` or `auto` (or pass --privacy)."
                );
            }
        }
        ProviderAction::SetKey { name } => {
            list.get(&name)?;
            let key = if std::io::stdin().is_terminal() {
                rpassword::prompt_password(format!("API key for '{name}': "))?
            } else {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                line
            };
            let key = key.trim();
            if key.is_empty() {
                bail!("no key given");
            }
            keychain_set(&name, &ApiKey::new(key))?;
            println!("Stored the key for '{name}' in the OS keychain.");
        }
        ProviderAction::List { json } => {
            let settings = Settings::load(dir)?;
            let env = |k: &str| std::env::var(k).ok();
            let rows: Vec<serde_json::Value> = list
                .list
                .iter()
                .map(|p| {
                    let (_, source) = find_key(p, &env, true);
                    serde_json::json!({
                        "name": p.name,
                        "base_url": p.base_url,
                        "model": p.model,
                        "redact": p.redact,
                        "timeout_s": p.timeout_s,
                        "key": source.to_string(),
                        "default": settings.provider.as_deref() == Some(p.name.as_str())
                            || (settings.provider.is_none() && list.list.first().map(|f| &f.name) == Some(&p.name)),
                    })
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("No providers. Add one with `quarry provider add NAME --base-url URL --model MODEL`.");
            } else {
                for r in rows {
                    println!(
                        "{}{}  {}  model {}  key: {}{}",
                        r["name"].as_str().unwrap_or_default(),
                        if r["default"] == true {
                            " (default)"
                        } else {
                            ""
                        },
                        r["base_url"].as_str().unwrap_or_default(),
                        r["model"].as_str().unwrap_or_default(),
                        r["key"].as_str().unwrap_or_default(),
                        if r["redact"] == true {
                            "  redacts personal data"
                        } else {
                            ""
                        },
                    );
                }
                println!("Privacy mode: {}", settings.privacy);
            }
        }
        ProviderAction::Remove { name } => {
            if !list.remove(&name) {
                bail!("no provider named '{name}'");
            }
            list.save(dir)?;
            let mut settings = Settings::load(dir)?;
            if settings.provider.as_deref() == Some(name.as_str()) {
                settings.provider = None;
                settings.save(dir)?;
            }
            if let Err(e) = keychain_delete(&name) {
                eprintln!("note: {e}");
            }
            println!("Removed provider '{name}'.");
        }
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct PrivacyArgs {
    /// New mode: local-only, ask or auto (omit to show the settings).
    mode: Option<PrivacyMode>,
    /// Set the mode for this library instead of globally.
    #[arg(long, short = 'l')]
    library: Option<PathBuf>,
    /// Mark the library never-leaves-device (on) or clear the mark (off).
    #[arg(long, value_parser = ["on", "off"])]
    never_leaves_device: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn privacy(ctx: &Context, args: PrivacyArgs) -> Result<()> {
    let config = &ctx.dirs.config;
    let mut settings = Settings::load(config)?;
    let mut library = match &args.library {
        Some(dir) => Some(Library::open(dir).await?),
        None => None,
    };
    if args.never_leaves_device.is_some() && library.is_none() {
        bail!("--never-leaves-device applies to a library: add --library DIR");
    }
    if let Some(lib) = library.as_mut() {
        let mut p: LibraryPrivacy = lib.meta().privacy.clone();
        if let Some(mode) = args.mode {
            p.mode = Some(mode);
        }
        if let Some(flag) = &args.never_leaves_device {
            p.never_leaves_device = flag == "on";
        }
        if p != lib.meta().privacy {
            lib.set_privacy(p)?;
        }
    } else if let Some(mode) = args.mode {
        settings.privacy = mode;
        settings.save(config)?;
    }
    let lib_privacy = library.as_ref().map(|l| l.meta().privacy.clone());
    let policy = quarry_core::cloud::Policy::resolve(
        None,
        lib_privacy.as_ref().unwrap_or(&LibraryPrivacy::default()),
        &settings,
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "global": settings.privacy,
                "library": lib_privacy,
                "in_force": policy,
            }))?
        );
    } else {
        println!("Global privacy mode: {}", settings.privacy);
        if let Some(p) = &lib_privacy {
            println!(
                "Library mode: {}{}",
                p.mode
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "(global)".into()),
                if p.never_leaves_device {
                    "; never leaves this device"
                } else {
                    ""
                }
            );
        }
        println!("In force: {} ({})", policy.mode, policy.why);
    }
    Ok(())
}

pub async fn audit(ctx: &Context, library: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = ctx.library_dir(library);
    let lib = Library::open(&dir).await?;
    let entries = audit::read(lib.dir()).context("reading the audit log")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "Nothing has been sent from {} to any provider.",
            lib.dir().display()
        );
        return Ok(());
    }
    for e in &entries {
        let redactions: Vec<String> = e
            .redactions
            .counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "{}  {} ({}, {})  {} bytes  {}  redacted: {}",
            e.time,
            e.provider,
            e.model,
            e.host,
            e.bytes_sent,
            e.outcome.as_deref().unwrap_or("no outcome recorded"),
            if redactions.is_empty() {
                "none".into()
            } else {
                redactions.join(", ")
            },
        );
        for d in &e.documents {
            println!("    {d}");
        }
    }
    println!("{} outbound requests.", entries.len());
    Ok(())
}

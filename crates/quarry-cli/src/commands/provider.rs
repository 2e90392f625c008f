//! `quarry provider add | set-key | list | remove`: remote providers (OpenAI-compatible chat APIs) and their keys.

use std::io::IsTerminal;

use anyhow::{bail, Result};
use quarry_core::cloud::providers::{find_key, keychain_delete, keychain_set};
use quarry_core::cloud::{ApiKey, PrivacyMode, Provider, Providers, Settings};

use crate::context::Context;

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

//! Remote providers the user configured: anything that speaks the OpenAI
//! chat-completions API (OpenAI, Azure OpenAI, OpenRouter, Mistral, Groq, and
//! self-hosted vLLM, Ollama, LM Studio or llama.cpp servers).
//!
//! `providers.toml` in the configuration folder holds names, URLs and models,
//! never keys. A key comes from, in order: `QUARRY_API_KEY`, the provider's own
//! variable (its `key_env`, or the conventional one for its host such as
//! `OPENAI_API_KEY`), then the OS keychain (macOS Keychain, Windows Credential
//! Manager, the Secret Service on Linux).

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keychain::off_runtime;

/// The keychain service name Quarry's keys are stored under.
pub const KEYCHAIN_SERVICE: &str = crate::keychain::SERVICE;

/// One configured provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// The name the user gave it.
    pub name: String,
    /// Base URL of the API, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Model to ask for.
    pub model: String,
    /// Environment variable holding its key (default: the conventional one for the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    /// Replace personal data by placeholders in what is sent.
    #[serde(default)]
    pub redact: bool,
    /// Seconds to wait for the provider before falling back to the local model.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_timeout() -> u64 {
    60
}

impl Provider {
    /// A provider with default options.
    pub fn new(name: &str, base_url: &str, model: &str) -> Result<Self> {
        let p = Provider {
            name: name.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
            key_env: None,
            redact: false,
            timeout_s: default_timeout(),
        };
        p.validate()?;
        Ok(p)
    }

    /// Check the name and URL.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(Error::InvalidInput(format!(
                "provider name '{}' must be letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err(Error::InvalidInput(format!(
                "provider base URL '{}' must start with https:// or http://",
                self.base_url
            )));
        }
        if self.model.trim().is_empty() {
            return Err(Error::InvalidInput(
                "provider model must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// The host the provider lives on (for messages and the audit log).
    pub fn host(&self) -> String {
        let rest = self
            .base_url
            .split_once("://")
            .map(|(_, r)| r)
            .unwrap_or(&self.base_url);
        rest.split('/').next().unwrap_or(rest).to_string()
    }

    /// The environment variable its key is conventionally in.
    pub fn conventional_key_env(&self) -> Option<String> {
        if let Some(v) = &self.key_env {
            return Some(v.clone());
        }
        let host = self.host().to_ascii_lowercase();
        let known = [
            ("openai.azure.com", "AZURE_OPENAI_API_KEY"),
            ("api.openai.com", "OPENAI_API_KEY"),
            ("openrouter.ai", "OPENROUTER_API_KEY"),
            ("mistral.ai", "MISTRAL_API_KEY"),
            ("groq.com", "GROQ_API_KEY"),
        ];
        let host = host.split(':').next().unwrap_or(&host).to_string();
        known
            .iter()
            .find(|(h, _)| host == *h || host.ends_with(&format!(".{h}")))
            .map(|(_, v)| v.to_string())
    }
}

/// An API key: never printed, never serialised.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wrap a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(SecretString::from(key.into()))
    }

    /// The key itself, for the request header only.
    pub(crate) fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where a provider's key was found (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeySource {
    /// An environment variable.
    Env(String),
    /// The OS keychain.
    Keychain,
    /// No key (self-hosted servers often need none).
    None,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Env(v) => write!(f, "${v}"),
            KeySource::Keychain => f.write_str("keychain"),
            KeySource::None => f.write_str("none"),
        }
    }
}

/// Find a provider's key: environment first, then the keychain.
pub fn find_key(
    provider: &Provider,
    env: &dyn Fn(&str) -> Option<String>,
    use_keychain: bool,
) -> (Option<ApiKey>, KeySource) {
    // The shared variables are only sent over TLS or to this machine: an
    // OpenAI key must not travel in clear text to a server on the network.
    let host = provider.host();
    let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
    let safe = provider.base_url.starts_with("https://")
        || matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    let mut vars = Vec::new();
    if let Some(own) = &provider.key_env {
        vars.push(own.clone());
    }
    if safe {
        vars.push("QUARRY_API_KEY".to_string());
        vars.extend(provider.conventional_key_env());
    }
    for v in vars {
        if let Some(k) = env(&v).filter(|k| !k.trim().is_empty()) {
            return (Some(ApiKey::new(k.trim())), KeySource::Env(v));
        }
    }
    if use_keychain {
        if let Ok(Some(k)) = keychain_get(&provider.name) {
            return (Some(k), KeySource::Keychain);
        }
    }
    (None, KeySource::None)
}

fn keychain_entry(name: &str) -> Result<keyring::Entry> {
    keyring::Entry::new(KEYCHAIN_SERVICE, &format!("provider:{name}")).map_err(keychain_error)
}

fn keychain_error(e: keyring::Error) -> Error {
    // keyring's messages name the platform store, never the secret.
    Error::Keychain(format!(
        "{e}; set QUARRY_API_KEY (or the provider's own variable) instead"
    ))
}

/// Store a provider's key in the OS keychain.
pub fn keychain_set(name: &str, key: &ApiKey) -> Result<()> {
    off_runtime(|| {
        keychain_entry(name)?
            .set_password(key.expose())
            .map_err(keychain_error)
    })
}

/// Read a provider's key from the OS keychain (`None` when there is none).
pub fn keychain_get(name: &str) -> Result<Option<ApiKey>> {
    off_runtime(|| match keychain_entry(name)?.get_password() {
        Ok(k) => Ok(Some(ApiKey::new(k))),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(keychain_error(e)),
    })
}

/// Remove a provider's key from the OS keychain (nothing to do if absent).
pub fn keychain_delete(name: &str) -> Result<()> {
    off_runtime(|| match keychain_entry(name)?.delete_credential() {
        Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
        Err(e) => Err(keychain_error(e)),
    })
}

/// The configured providers (`providers.toml`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Providers {
    /// In the order they were added.
    #[serde(default, rename = "provider")]
    pub list: Vec<Provider>,
}

impl Providers {
    /// The file under a configuration folder.
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join("providers.toml")
    }

    /// Read the providers (none when the file does not exist).
    pub fn load(config_dir: &Path) -> Result<Self> {
        let path = Self::path(config_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Providers::default()),
            Err(e) => Err(Error::from(e)),
        }
    }

    /// Write the providers atomically.
    pub fn save(&self, config_dir: &Path) -> Result<()> {
        let text =
            toml::to_string_pretty(self).map_err(|e| Error::Internal(format!("providers: {e}")))?;
        crate::fsio::write_atomically(&Self::path(config_dir), text.as_bytes())
    }

    /// Add or replace a provider by name.
    pub fn upsert(&mut self, p: Provider) -> Result<()> {
        p.validate()?;
        match self.list.iter_mut().find(|q| q.name == p.name) {
            Some(q) => *q = p,
            None => self.list.push(p),
        }
        Ok(())
    }

    /// Remove a provider; false when there was none of that name.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|p| p.name != name);
        self.list.len() != before
    }

    /// A provider by name.
    pub fn get(&self, name: &str) -> Result<&Provider> {
        self.list.iter().find(|p| p.name == name).ok_or_else(|| {
            Error::InvalidInput(format!(
                "no provider named '{name}'; `quarry provider list` shows the configured ones"
            ))
        })
    }

    /// The provider to use: `preferred` by name, else the first configured.
    pub fn choose(&self, preferred: Option<&str>) -> Option<&Provider> {
        match preferred {
            Some(n) => self.list.iter().find(|p| p.name == n),
            None => self.list.first(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_round_trip_without_keys() {
        let dir = tempfile::tempdir().unwrap();
        let mut ps = Providers::default();
        ps.upsert(Provider::new("openai", "https://api.openai.com/v1/", "gpt-4o-mini").unwrap())
            .unwrap();
        let mut local = Provider::new("lan", "http://10.0.0.5:8000/v1", "qwen").unwrap();
        local.redact = true;
        ps.upsert(local).unwrap();
        ps.save(dir.path()).unwrap();
        let mut back = Providers::load(dir.path()).unwrap();
        assert_eq!(back, ps);
        assert_eq!(
            back.get("openai").unwrap().base_url,
            "https://api.openai.com/v1"
        );
        assert!(back.remove("lan"));
        assert!(!back.clone().remove("nope"));
        assert!(Provider::new("bad name", "https://x", "m").is_err());
        assert!(Provider::new("x", "ftp://x", "m").is_err());
    }

    #[test]
    fn keys_come_from_quarry_then_conventional_variables_and_never_print() {
        let p = Provider::new("openai", "https://api.openai.com/v1", "gpt-4o-mini").unwrap();
        assert_eq!(p.conventional_key_env().as_deref(), Some("OPENAI_API_KEY"));
        let env = |k: &str| match k {
            "OPENAI_API_KEY" => Some("sk-conventional".to_string()),
            _ => None,
        };
        let (key, src) = find_key(&p, &env, false);
        assert_eq!(key.unwrap().expose(), "sk-conventional");
        assert_eq!(src, KeySource::Env("OPENAI_API_KEY".into()));
        let env = |k: &str| match k {
            "QUARRY_API_KEY" => Some("sk-quarry".to_string()),
            "OPENAI_API_KEY" => Some("sk-conventional".to_string()),
            _ => None,
        };
        let (key, _) = find_key(&p, &env, false);
        let key = key.unwrap();
        assert_eq!(key.expose(), "sk-quarry");
        assert!(!format!("{key:?}").contains("sk-"));
        // Not sent in clear text to a host on the network.
        let lan = Provider::new("lan", "http://10.0.0.5:8000/v1", "m").unwrap();
        let env = |k: &str| (k == "QUARRY_API_KEY").then(|| "sk-shared".to_string());
        assert!(find_key(&lan, &env, false).0.is_none());
        assert!(Provider::new("x", "https://evilgroq.com/v1", "m")
            .unwrap()
            .conventional_key_env()
            .is_none());
        let (none, src) = find_key(
            &Provider::new("lan", "http://h/v1", "m").unwrap(),
            &|_| None,
            false,
        );
        assert!(none.is_none());
        assert_eq!(src, KeySource::None);
    }
}

//! A library's privacy settings as `library.json` keeps them, and the modes
//! they name. What the modes allow is decided by the `cloud` stage, the only
//! code that can send text off the machine.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether and how questions and passages may be sent to a remote provider.
#[derive(ts_rs::TS, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivacyMode {
    /// Nothing leaves the machine (the default).
    #[default]
    LocalOnly,
    /// Show exactly what would be sent and send only on confirmation.
    Ask,
    /// Send when the router decides a frontier model is needed.
    Auto,
}

impl PrivacyMode {
    /// Its name as written in settings and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyMode::LocalOnly => "local-only",
            PrivacyMode::Ask => "ask",
            PrivacyMode::Auto => "auto",
        }
    }
}

impl fmt::Display for PrivacyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PrivacyMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local-only" | "local" => Ok(PrivacyMode::LocalOnly),
            "ask" => Ok(PrivacyMode::Ask),
            "auto" => Ok(PrivacyMode::Auto),
            other => Err(Error::InvalidInput(format!(
                "unknown privacy mode '{other}' (use local-only, ask or auto)"
            ))),
        }
    }
}

/// A library's own privacy settings (kept in its `library.json`).
#[derive(ts_rs::TS, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryPrivacy {
    /// The library's mode, when it has one (otherwise the global one applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<PrivacyMode>,
    /// No text of this library ever leaves the machine, whatever else is set.
    #[serde(default)]
    pub never_leaves_device: bool,
    /// Agents (MCP clients) may not read this library: every MCP call on it
    /// is refused and logged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_shared_with_agents: bool,
}

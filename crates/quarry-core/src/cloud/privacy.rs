//! Privacy modes and the policy that decides whether text may leave the machine.
//!
//! Precedence, strongest first: a library marked *never leaves device* (nothing
//! overrides it), then the mode given for one command (`--privacy`), then the
//! library's own mode, then the global setting, then the default, `local-only`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::store::privacy::{LibraryPrivacy, PrivacyMode};

/// Global settings (`settings.toml` in the configuration folder).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The global privacy mode.
    #[serde(default)]
    pub privacy: PrivacyMode,
    /// The provider the router sends to (the first configured one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The local answer model used when a command names none (a registry id
    /// or a `.gguf` path; set by `quarry models use` or `quarry models
    /// recommend --apply`); the registry's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<String>,
}

impl Settings {
    /// The settings file under a configuration folder.
    pub fn path(config_dir: &Path) -> PathBuf {
        config_dir.join("settings.toml")
    }

    /// Read the settings (defaults when the file does not exist).
    pub fn load(config_dir: &Path) -> Result<Self> {
        let path = Self::path(config_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| Error::InvalidInput(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(Error::from(e)),
        }
    }

    /// Write the settings atomically.
    pub fn save(&self, config_dir: &Path) -> Result<()> {
        let text =
            toml::to_string_pretty(self).map_err(|e| Error::Internal(format!("settings: {e}")))?;
        crate::fsio::write_atomically(&Self::path(config_dir), text.as_bytes())
    }
}

/// The mode in force for one request, and where it came from.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// The mode in force.
    pub mode: PrivacyMode,
    /// Why this mode (which setting decided it).
    pub why: String,
}

impl Policy {
    /// Resolve the mode from the command's flag, the library's settings and the
    /// global settings.
    pub fn resolve(
        flag: Option<PrivacyMode>,
        library: &LibraryPrivacy,
        global: &Settings,
    ) -> Policy {
        if library.never_leaves_device {
            return Policy {
                mode: PrivacyMode::LocalOnly,
                why: "this library is marked never-leaves-device".into(),
            };
        }
        if let Some(mode) = flag {
            return Policy {
                mode,
                why: format!("--privacy {mode}"),
            };
        }
        if let Some(mode) = library.mode {
            return Policy {
                mode,
                why: format!("the library's privacy mode is {mode}"),
            };
        }
        Policy {
            mode: global.privacy,
            why: if global.privacy == PrivacyMode::LocalOnly {
                "local-only is the default".into()
            } else {
                format!("the global privacy mode is {}", global.privacy)
            },
        }
    }

    /// Whether text may leave the machine at all under this policy.
    pub fn allows_egress(&self) -> bool {
        self.mode != PrivacyMode::LocalOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_leaves_device_beats_every_other_setting() {
        let lib = LibraryPrivacy {
            mode: Some(PrivacyMode::Auto),
            never_leaves_device: true,
            ..Default::default()
        };
        let global = Settings {
            privacy: PrivacyMode::Auto,
            provider: None,
            generator: None,
        };
        let p = Policy::resolve(Some(PrivacyMode::Auto), &lib, &global);
        assert_eq!(p.mode, PrivacyMode::LocalOnly);
        assert!(!p.allows_egress());
        assert!(p.why.contains("never-leaves-device"));
    }

    #[test]
    fn flag_then_library_then_global_then_default() {
        let global = Settings {
            privacy: PrivacyMode::Ask,
            provider: None,
            generator: None,
        };
        let lib = LibraryPrivacy {
            mode: Some(PrivacyMode::Auto),
            never_leaves_device: false,
            ..Default::default()
        };
        assert_eq!(
            Policy::resolve(Some(PrivacyMode::LocalOnly), &lib, &global).mode,
            PrivacyMode::LocalOnly
        );
        assert_eq!(Policy::resolve(None, &lib, &global).mode, PrivacyMode::Auto);
        assert_eq!(
            Policy::resolve(None, &LibraryPrivacy::default(), &global).mode,
            PrivacyMode::Ask
        );
        let p = Policy::resolve(None, &LibraryPrivacy::default(), &Settings::default());
        assert_eq!(p.mode, PrivacyMode::LocalOnly);
        assert!(!p.allows_egress());
    }

    #[test]
    fn modes_parse_and_round_trip_through_settings() {
        assert_eq!("ASK".parse::<PrivacyMode>().unwrap(), PrivacyMode::Ask);
        assert!("cloud".parse::<PrivacyMode>().is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let s = Settings {
            privacy: PrivacyMode::Auto,
            provider: Some("work".into()),
            generator: Some("qwen2.5-coder-1.5b-instruct-q4_k_m".into()),
        };
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
    }
}

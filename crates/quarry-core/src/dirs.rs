//! Where Quarry keeps its configuration, models and default library.
//!
//! The platform's own directories by default (XDG on Linux, Application Support
//! on macOS, AppData on Windows); `QUARRY_CONFIG_DIR`, `QUARRY_MODELS_DIR` and
//! `QUARRY_LIBRARY_DIR` override them. The environment is read by the caller and
//! passed in ([`Dirs::from_env`] takes a lookup function) so tests stay pure.

use std::path::PathBuf;

/// Resolved directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Configuration (settings, providers).
    pub config: PathBuf,
    /// Installed models, one folder per model id.
    pub models: PathBuf,
    /// The default library when `--library` is not given.
    pub library: PathBuf,
}

impl Dirs {
    /// Resolve from an environment lookup (e.g. `|k| std::env::var_os(k)`).
    pub fn from_env(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Self {
        let project = directories::ProjectDirs::from("org", "Quarry", "quarry");
        let fallback = || std::env::temp_dir().join("quarry");
        let config = get("QUARRY_CONFIG_DIR")
            .map(PathBuf::from)
            .or_else(|| project.as_ref().map(|p| p.config_dir().to_path_buf()))
            .unwrap_or_else(|| fallback().join("config"));
        let data = project
            .as_ref()
            .map(|p| p.data_dir().to_path_buf())
            .unwrap_or_else(|| fallback().join("data"));
        let models = get("QUARRY_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data.join("models"));
        let library = get("QUARRY_LIBRARY_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data.join("library"));
        Dirs {
            config,
            models,
            library,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_win() {
        let d = Dirs::from_env(|k| match k {
            "QUARRY_CONFIG_DIR" => Some("/c".into()),
            "QUARRY_MODELS_DIR" => Some("/m".into()),
            _ => None,
        });
        assert_eq!(d.config, PathBuf::from("/c"));
        assert_eq!(d.models, PathBuf::from("/m"));
        assert!(d.library.ends_with("library"));
    }
}

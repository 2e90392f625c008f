//! The token that locks Quarry's HTTP endpoints (`quarry serve`, the desktop
//! app's agents endpoint): made once per user, kept in the configuration
//! folder readable by that user only, and required on every request, loopback
//! included, unless the user turns it off explicitly (`quarry serve
//! --no-token`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::RngCore as _;

use crate::{AppError, AppResult};

/// The file holding the token, in the user's configuration folder.
pub fn token_file(config_dir: &Path) -> PathBuf {
    config_dir.join("server-token")
}

/// The user's server token: read from [`token_file`], or made (256 random
/// bits, hex) and written there with user-only permissions on first use. A
/// file others could read is narrowed to the user first.
pub fn server_token(config_dir: &Path) -> AppResult<String> {
    let path = token_file(config_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            restrict_to_user(&path)?;
            let token = text.trim().to_string();
            if token.len() < 16 {
                return Err(AppError::user(
                    "bad_token_file",
                    format!(
                        "{} holds no usable token (at least 16 characters): delete it and Quarry makes a new one",
                        path.display()
                    ),
                ));
            }
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(config_dir, &path),
        Err(e) => Err(AppError::internal(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn create(config_dir: &Path, path: &Path) -> AppResult<String> {
    let fail = |e: std::io::Error| {
        AppError::internal(format!(
            "cannot write the server token {}: {e}",
            path.display()
        ))
    };
    std::fs::create_dir_all(config_dir).map_err(fail)?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(token.as_bytes()).map_err(fail)?;
            file.sync_all().map_err(fail)?;
            Ok(token)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => server_token(config_dir),
        Err(e) => Err(fail(e)),
    }
}

/// On Unix, make `path` readable and writable by its owner only. (Windows
/// keeps the configuration folder in the user's own profile.)
fn restrict_to_user(path: &Path) -> AppResult<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path)
            .map_err(|e| AppError::internal(format!("cannot read {}: {e}", path.display())))?;
        if meta.permissions().mode() & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| {
                    AppError::internal(format!(
                        "cannot narrow {} to its owner: {e}",
                        path.display()
                    ))
                },
            )?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Whether `given` equals `token`, compared in constant time.
pub fn token_matches(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_made_once_kept_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let first = server_token(&config).unwrap();
        assert_eq!(first.len(), 64);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(server_token(&config).unwrap(), first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            server_token(other.path()).unwrap(),
            first,
            "tokens are random"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let file = token_file(&config);
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&file), 0o600);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert_eq!(server_token(&config).unwrap(), first);
            assert_eq!(mode(&file), 0o600, "a readable token file is narrowed");
        }
    }

    #[test]
    fn a_short_token_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(token_file(dir.path()), "abc\n").unwrap();
        let e = server_token(dir.path()).unwrap_err();
        assert!(e.to_string().contains("no usable token"), "{e}");
    }

    #[test]
    fn tokens_match_only_exactly() {
        assert!(token_matches("secret-token", "secret-token"));
        assert!(!token_matches("secret-tokem", "secret-token"));
        assert!(!token_matches("secret", "secret-token"));
        assert!(!token_matches("", "secret-token"));
    }
}

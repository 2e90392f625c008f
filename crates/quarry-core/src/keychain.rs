//! The OS keychain (macOS Keychain, Windows Credential Manager, the Secret
//! Service on Linux), through `keyring`: where providers' API keys and
//! encrypted libraries' keys are kept.

use crate::error::{Error, Result};

/// The service Quarry's keychain entries are filed under.
pub const SERVICE: &str = "quarry";

/// Run a keychain call on a thread of its own: the Linux Secret Service
/// client blocks on its own runtime, which must not run inside the caller's.
pub fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|_| Err(Error::Keychain("the keychain call panicked".into())))
    })
}

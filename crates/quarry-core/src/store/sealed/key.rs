//! A library's key: a random 256-bit data key that seals every file of the
//! library, kept in `<library>/encryption.json` only wrapped (sealed) under a
//! key-encryption key — derived from the user's passphrase with Argon2id, or
//! a random one kept in the user's OS keychain. The wrapping is
//! authenticated, so a wrong passphrase is told apart from a right one
//! before anything is read or written.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::format::cipher;
use crate::error::{Error, Result};

/// The file beside the stores that says a library is encrypted.
pub const KEY_FILE: &str = "encryption.json";
/// The key a library is being changed to (encrypting a plain library in
/// place, or replacing its key); while it exists the library's files are
/// partly under one key and partly under the other, and the library does
/// not open until the change is finished (see [`super::rekey`]).
pub const NEXT_KEY_FILE: &str = "encryption.next.json";
/// Where headless use (scripts, CI, tests) passes a library's passphrase.
pub const PASSPHRASE_ENV: &str = "QUARRY_LIBRARY_PASSPHRASE";
/// The shortest passphrase accepted for a new library.
pub const MIN_PASSPHRASE_CHARS: usize = 8;

/// Argon2id cost: RFC 9106's second recommended setting (64 MiB, 3 passes),
/// one lane — about a third of a second on a laptop core.
const ARGON2_MEMORY_KIB: u32 = 64 * 1024;
const ARGON2_PASSES: u32 = 3;
/// The most memory a key file may ask Argon2id for (4 GiB).
const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;

/// `encryption.json`.
#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    /// Format of this file.
    format: u32,
    /// The cipher of every sealed file.
    cipher: String,
    /// A random id of this library's key (bound into the wrapping).
    key_id: String,
    /// How the key-encryption key is obtained.
    unlock: Unlock,
    /// Nonce then sealed data key, hex.
    wrapped_key: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "with", rename_all = "lowercase")]
enum Unlock {
    /// The key-encryption key is derived from a passphrase.
    Passphrase {
        kdf: String,
        salt: String,
        memory_kib: u32,
        passes: u32,
        lanes: u32,
    },
    /// The key-encryption key is kept in the user's OS keychain (service
    /// `quarry`, this account).
    Keychain { account: String },
}

/// Where a new library's key-encryption key comes from.
pub enum KeySource<'a> {
    /// Derived from this passphrase with Argon2id.
    Passphrase(&'a SecretString),
    /// A random key kept in the user's OS keychain.
    Keychain,
}

/// The unwrapped key of an encrypted library. Cheap to clone; never printed.
#[derive(Clone)]
pub struct LibraryKey {
    cipher: Arc<XChaCha20Poly1305>,
    id: String,
}

impl fmt::Debug for LibraryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LibraryKey({})", self.id)
    }
}

impl LibraryKey {
    /// The cipher that seals and opens the library's files.
    pub fn cipher(&self) -> &XChaCha20Poly1305 {
        &self.cipher
    }

    /// The key's random id (not secret; names it in reports).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether the library in `dir` is encrypted.
    pub fn is_encrypted(dir: &Path) -> bool {
        dir.join(KEY_FILE).exists()
    }

    /// How the key of the library in `dir` is kept: `"passphrase"`,
    /// `"keychain"`, or `None` when the library is not encrypted.
    pub fn kept_by(dir: &Path) -> Option<&'static str> {
        unlock_kind(&dir.join(KEY_FILE))
    }

    /// Whether the library in `dir` is encrypted under a passphrase (rather
    /// than a key in the keychain): whether there is anything to ask.
    pub fn needs_passphrase(dir: &Path) -> bool {
        fs_err::read(dir.join(KEY_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<KeyFile>(&b).ok())
            .is_some_and(|f| matches!(f.unlock, Unlock::Passphrase { .. }))
    }

    /// Make a new key for the library in `dir`, wrapped under `passphrase`.
    /// Fails if the library already has a key.
    pub fn create(dir: &Path, passphrase: &SecretString) -> Result<LibraryKey> {
        Self::create_with(dir, KeySource::Passphrase(passphrase))
    }

    /// Make a new key for the library in `dir`, wrapped under a key from
    /// `source`. Fails if the library already has a key.
    pub fn create_with(dir: &Path, source: KeySource<'_>) -> Result<LibraryKey> {
        let path = dir.join(KEY_FILE);
        if path.exists() || dir.join(NEXT_KEY_FILE).exists() {
            return Err(Error::BadPath {
                path,
                reason: "this library is already encrypted".into(),
            });
        }
        Self::create_in(&path, source)
    }

    /// Make a new key, wrapped under a key from `source`, into the key file
    /// `path`.
    pub(super) fn create_in(path: &Path, source: KeySource<'_>) -> Result<LibraryKey> {
        let mut data_key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(data_key.as_mut());
        let key_id = hex::encode(random_bytes::<8>());
        let (unlock, kek) = match source {
            KeySource::Passphrase(passphrase) => {
                if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
                    return Err(Error::InvalidInput(format!(
                        "a library passphrase needs at least {MIN_PASSPHRASE_CHARS} characters"
                    )));
                }
                let unlock = Unlock::Passphrase {
                    kdf: "argon2id".into(),
                    salt: hex::encode(random_bytes::<16>()),
                    memory_kib: ARGON2_MEMORY_KIB,
                    passes: ARGON2_PASSES,
                    lanes: 1,
                };
                let kek = derive(&unlock, passphrase)?;
                (unlock, kek)
            }
            KeySource::Keychain => {
                let account = format!("library-key:{key_id}");
                let kek = Zeroizing::new(random_bytes::<32>());
                keychain::store(&account, &kek)?;
                (Unlock::Keychain { account }, kek)
            }
        };
        let nonce = random_bytes::<24>();
        let sealed = cipher(&kek)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: data_key.as_ref(),
                    aad: key_id.as_bytes(),
                },
            )
            .map_err(|_| Error::Internal("could not wrap the library key".into()))?;
        let file = KeyFile {
            format: 1,
            cipher: "xchacha20poly1305".into(),
            key_id: key_id.clone(),
            unlock,
            wrapped_key: hex::encode([nonce.as_slice(), &sealed].concat()),
        };
        crate::fsio::write_atomically(path, &serde_json::to_vec_pretty(&file)?)?;
        Ok(LibraryKey {
            cipher: Arc::new(cipher(&data_key)),
            id: key_id,
        })
    }

    /// Open the key of the library in `dir` with `passphrase` (or, when
    /// `None`, the one in [`PASSPHRASE_ENV`]). `Ok(None)` when the library is
    /// not encrypted.
    pub fn unlock(dir: &Path, passphrase: Option<&SecretString>) -> Result<Option<LibraryKey>> {
        if dir.join(NEXT_KEY_FILE).exists() {
            return Err(Error::KeyChangeUnfinished(dir.to_path_buf()));
        }
        Self::unlock_file(dir, KEY_FILE, passphrase)
    }

    /// Open the key in the key file `name` of the library in `dir` (see
    /// [`LibraryKey::unlock`]).
    pub(super) fn unlock_file(
        dir: &Path,
        name: &str,
        passphrase: Option<&SecretString>,
    ) -> Result<Option<LibraryKey>> {
        let path = dir.join(name);
        let bytes = match fs_err::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| damaged(&path, e))?;
        if file.format != 1 || file.cipher != "xchacha20poly1305" {
            return Err(damaged(&path, "an unknown format or cipher"));
        }
        let kek = match &file.unlock {
            Unlock::Keychain { account } => keychain::load(account)?.ok_or_else(|| {
                Error::Keychain(format!(
                    "the key of the encrypted library {} is not in this user's keychain",
                    dir.display()
                ))
            })?,
            Unlock::Passphrase { .. } => {
                let from_env = std::env::var(PASSPHRASE_ENV)
                    .ok()
                    .filter(|p| !p.is_empty())
                    .map(SecretString::from);
                let passphrase = passphrase
                    .or(from_env.as_ref())
                    .ok_or_else(|| Error::KeyNeeded(dir.to_path_buf()))?;
                derive(&file.unlock, passphrase)?
            }
        };
        let wrapped = hex::decode(&file.wrapped_key).map_err(|e| damaged(&path, e))?;
        if wrapped.len() != 24 + 32 + 16 {
            return Err(damaged(&path, "a wrapped key of the wrong length"));
        }
        let data_key = Zeroizing::new(
            cipher(&kek)
                .decrypt(
                    XNonce::from_slice(&wrapped[..24]),
                    Payload {
                        msg: &wrapped[24..],
                        aad: file.key_id.as_bytes(),
                    },
                )
                .map_err(|_| Error::WrongKey(dir.to_path_buf()))?,
        );
        let key: &[u8; 32] = data_key.as_slice().try_into().expect("length checked");
        Ok(Some(LibraryKey {
            cipher: Arc::new(cipher(key)),
            id: file.key_id,
        }))
    }
}

/// How a key file's key-encryption key is obtained, for reports:
/// `"passphrase"` or `"keychain"`; `None` without such a file.
pub(super) fn unlock_kind(path: &Path) -> Option<&'static str> {
    let file: KeyFile = serde_json::from_slice(&fs_err::read(path).ok()?).ok()?;
    Some(match file.unlock {
        Unlock::Passphrase { .. } => "passphrase",
        Unlock::Keychain { .. } => "keychain",
    })
}

/// Destroy the key file `path`: its keychain entry (when the key-encryption
/// key is kept there), then the file. Without both, nothing sealed under
/// its key can be opened again.
pub(super) fn destroy_key_file(path: &Path) -> Result<()> {
    if let Ok(bytes) = fs_err::read(path) {
        if let Ok(KeyFile {
            unlock: Unlock::Keychain { account },
            ..
        }) = serde_json::from_slice(&bytes)
        {
            keychain::delete(&account)?;
        }
    }
    crate::fsio::remove_durably(path)
}

/// Forget the key kept for the library in `dir` in this process (its key
/// changed).
pub(super) fn forget_unlocked(dir: &Path) {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut known = UNLOCKED.lock().unwrap_or_else(|p| p.into_inner());
    known.retain(|(d, _)| *d != canonical);
}

/// Keys unlocked in this process, by canonical library folder.
static UNLOCKED: Mutex<Vec<(PathBuf, LibraryKey)>> = Mutex::new(Vec::new());

impl LibraryKey {
    /// The key of the library in `dir`: the one unlocked in this process,
    /// or unlocked now from [`PASSPHRASE_ENV`] (and kept); `Ok(None)` when the
    /// library is not encrypted. An encrypted library with no key to be had
    /// is an error, so nothing is ever written into it in plain text.
    pub fn for_library(dir: &Path) -> Result<Option<LibraryKey>> {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let known = UNLOCKED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = known.iter().find(|(d, _)| *d == canonical) {
            return Ok(Some(key.clone()));
        }
        drop(known);
        let key = LibraryKey::unlock(dir, None)?;
        if let Some(key) = &key {
            LibraryKey::remember(&canonical, key.clone());
        }
        Ok(key)
    }

    /// Keep `key` as the unlocked key of the library in `dir` for the rest
    /// of this process (a passphrase typed once serves every later open).
    pub fn remember(dir: &Path, key: LibraryKey) {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let mut known = UNLOCKED.lock().unwrap_or_else(|p| p.into_inner());
        known.retain(|(d, _)| *d != canonical);
        known.push((canonical, key));
    }
}

/// The key-encryption key for `unlock` and `passphrase`.
fn derive(unlock: &Unlock, passphrase: &SecretString) -> Result<Zeroizing<[u8; 32]>> {
    let Unlock::Passphrase {
        kdf,
        salt,
        memory_kib,
        passes,
        lanes,
    } = unlock
    else {
        return Err(Error::Internal("not a passphrase-wrapped key".into()));
    };
    if kdf != "argon2id" {
        return Err(Error::InvalidInput(format!(
            "unknown key derivation '{kdf}'"
        )));
    }
    // The costs come from the key file: bounded, so a damaged or hostile one
    // is an error rather than a request for terabytes of memory.
    if *memory_kib > MAX_ARGON2_MEMORY_KIB || *passes > 64 || !(1..=16).contains(lanes) {
        return Err(Error::InvalidInput(format!(
            "key derivation costs out of range (memory {memory_kib} KiB, {passes} passes, {lanes} lanes)"
        )));
    }
    let salt = hex::decode(salt).map_err(|e| Error::InvalidInput(format!("salt: {e}")))?;
    let params = Params::new(*memory_kib, *passes, *lanes, Some(32))
        .map_err(|e| Error::InvalidInput(format!("argon2 parameters: {e}")))?;
    let mut kek = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose_secret().as_bytes(), &salt, kek.as_mut())
        .map_err(|e| Error::Internal(format!("argon2: {e}")))?;
    Ok(kek)
}

/// The key-encryption keys of keychain-kept libraries, in the OS keychain.
mod keychain {
    use zeroize::Zeroizing;

    use crate::error::{Error, Result};
    use crate::keychain::{off_runtime, SERVICE};

    fn entry(account: &str) -> Result<keyring::Entry> {
        keyring::Entry::new(SERVICE, account).map_err(error)
    }

    fn error(e: keyring::Error) -> Error {
        Error::Keychain(format!(
            "{e}; create the library with a passphrase instead (`quarry init --encrypt` without --keychain)"
        ))
    }

    pub(super) fn store(account: &str, kek: &[u8; 32]) -> Result<()> {
        off_runtime(|| {
            entry(account)?
                .set_password(&hex::encode(kek))
                .map_err(error)
        })
    }

    pub(super) fn delete(account: &str) -> Result<()> {
        off_runtime(|| match entry(account)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(error(e)),
        })
    }

    pub(super) fn load(account: &str) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let hex_key = off_runtime(|| match entry(account)?.get_password() {
            Ok(k) => Ok(Some(Zeroizing::new(k))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(error(e)),
        })?;
        let Some(hex_key) = hex_key else {
            return Ok(None);
        };
        let mut kek = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex_key.as_bytes(), kek.as_mut()).map_err(|e| {
            Error::Keychain(format!("the library key in the keychain is damaged ({e})"))
        })?;
        Ok(Some(kek))
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

fn damaged(path: &Path, why: impl fmt::Display) -> Error {
    Error::Sealed {
        path: PathBuf::from(path),
        reason: format!("the key file has {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_passphrase_opens_the_key_and_a_wrong_one_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let right = SecretString::from("correct horse battery");
        let made = LibraryKey::create(dir.path(), &right).unwrap();
        assert!(LibraryKey::is_encrypted(dir.path()));
        let opened = LibraryKey::unlock(dir.path(), Some(&right))
            .unwrap()
            .unwrap();
        let sealed = super::super::format::seal(made.cipher(), b"a passage");
        assert_eq!(
            super::super::format::unseal(opened.cipher(), &sealed).unwrap(),
            b"a passage"
        );
        let wrong = SecretString::from("correct horse battery!");
        let err = LibraryKey::unlock(dir.path(), Some(&wrong)).unwrap_err();
        assert!(matches!(err, Error::WrongKey(_)), "{err}");
        let text = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
        assert!(!text.contains("correct horse"));
        let again = LibraryKey::create(dir.path(), &right).unwrap_err();
        assert!(matches!(again, Error::BadPath { .. }), "{again}");
    }

    #[test]
    fn a_key_file_asking_for_absurd_costs_is_refused_not_obeyed() {
        let dir = tempfile::tempdir().unwrap();
        let p = SecretString::from("correct horse battery");
        LibraryKey::create(dir.path(), &p).unwrap();
        let path = dir.path().join(KEY_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let hostile = text.replace(
            &format!("\"memory_kib\": {ARGON2_MEMORY_KIB}"),
            "\"memory_kib\": 4000000000",
        );
        assert_ne!(hostile, text);
        std::fs::write(&path, hostile).unwrap();
        let err = LibraryKey::unlock(dir.path(), Some(&p)).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn a_library_without_a_key_file_is_not_encrypted_and_a_short_passphrase_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LibraryKey::unlock(dir.path(), None).unwrap().is_none());
        let err = LibraryKey::create(dir.path(), &SecretString::from("short")).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(!LibraryKey::is_encrypted(dir.path()));
    }
}

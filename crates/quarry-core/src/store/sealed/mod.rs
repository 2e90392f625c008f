//! Encryption at rest for a library (issue 21): every file of the stores is
//! sealed below the stores themselves — tantivy through its [`Directory`]
//! trait ([`keyword_dir`]), lance through its object-store layer
//! ([`vector_store`]) — in authenticated blocks ([`format`]) so random reads
//! stay cheap, under a key unwrapped with the user's passphrase or from the OS keychain
//! ([`key`]);
//! the library's own small files are sealed too ([`files`]), and every file
//! can be shown to open with the key ([`inspect`]). An existing library is
//! encrypted, or its key replaced and the old one destroyed, in place
//! ([`rekey`]). What lance writes outside the library while building its
//! vector index goes to a private scratch folder ([`scratch`]).
//!
//! [`Directory`]: tantivy::Directory

pub mod files;
pub mod format;
pub mod inspect;
pub mod key;
pub mod keyword_dir;
pub mod rekey;
pub mod scratch;
pub mod vector_store;

pub use files::LibraryFiles;
pub use inspect::{inspect, SealReport};
pub use key::{
    KeySource, LibraryKey, KEY_FILE, MIN_PASSPHRASE_CHARS, NEXT_KEY_FILE, PASSPHRASE_ENV,
};

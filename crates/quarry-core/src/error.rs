//! Errors of the engine.
//!
//! User errors (a missing model, a bad path, a library that does not exist) are
//! kept apart from internal ones so front-ends can show them as sentences; every
//! error has a stable machine-readable [`Error::code`].

use std::path::PathBuf;
use std::sync::Arc;

/// Result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in quarry-core. Cheap to clone (errors of
/// other crates are shared behind an `Arc`), so one failure can be reported
/// to several waiters.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A model the operation needs is not installed.
    #[error("model '{id}' is not installed; run `quarry models fetch {id}` (or `quarry models import PATH` offline)")]
    ModelMissing {
        /// Registry id of the model.
        id: String,
    },
    /// The registry does not know this model id.
    #[error("unknown model '{0}'; `quarry models list` shows the known ones")]
    UnknownModel(String),
    /// A downloaded or imported file does not match its pinned checksum.
    #[error("{path}: sha256 {actual} does not match the expected {expected}")]
    ChecksumMismatch {
        /// The file that was checked.
        path: PathBuf,
        /// Expected sha256 (hex).
        expected: String,
        /// Actual sha256 (hex).
        actual: String,
    },
    /// Fetching a model failed from every source.
    #[error("could not fetch model '{id}': {reason}")]
    Fetch {
        /// Registry id of the model.
        id: String,
        /// What went wrong, per source.
        reason: String,
    },
    /// The model files are present but cannot be used.
    #[error("model '{id}' cannot be loaded: {reason}")]
    ModelLoad {
        /// Registry id or path of the model.
        id: String,
        /// Why it cannot be loaded.
        reason: String,
    },
    /// The registry file is malformed.
    #[error("model registry {path}: {reason}")]
    Registry {
        /// Registry file.
        path: PathBuf,
        /// Parse error.
        reason: String,
    },
    /// No library exists at the given directory.
    #[error("no Quarry library at {0}; run `quarry index PATH --library {0}` to create one")]
    NoLibrary(PathBuf),
    /// The library was created with another embedder than the one requested.
    #[error("library uses embedder '{library}' but '{requested}' was requested; `quarry reembed {requested}` switches it")]
    EmbedderMismatch {
        /// Embedder the library was built with.
        library: String,
        /// Embedder requested now.
        requested: String,
    },
    /// Another process holds the library's write lock.
    #[error("library {0} is being indexed by another process; try again when it has finished")]
    Locked(PathBuf),
    /// The library is encrypted and no key was given to open it.
    #[error("library {0} is encrypted; give its passphrase (QUARRY_LIBRARY_PASSPHRASE, or type it when asked)")]
    KeyNeeded(PathBuf),
    /// A change of the library's encryption (encrypting it in place, or
    /// replacing its key) was interrupted; the library opens once it is
    /// finished.
    #[error("a change of the encryption of library {0} was interrupted; run the same `quarry encrypt` or `quarry rekey` again to finish it (nothing is lost)")]
    KeyChangeUnfinished(PathBuf),
    /// The passphrase or key given does not open the encrypted library.
    #[error("the passphrase or key does not open the encrypted library {0}")]
    WrongKey(PathBuf),
    /// An encrypted file failed its authentication check: damaged, cut short
    /// or changed outside Quarry. Nothing is read from it.
    #[error("{path}: encrypted data cannot be read ({reason}); the file is damaged or was changed outside Quarry")]
    Sealed {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A path given by the user does not exist or is not usable.
    #[error("{path}: {reason}")]
    BadPath {
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A query or option is invalid.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A file system error, with its path (fs-err puts the path in the message).
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    /// The vector store failed.
    #[error("vector store: {0}")]
    Vectors(#[source] Arc<lancedb::Error>),
    /// Arrow data could not be built or read.
    #[error("arrow: {0}")]
    Arrow(#[source] Arc<arrow_schema::ArrowError>),
    /// The keyword index failed.
    #[error("keyword index: {0}")]
    Keywords(#[source] Arc<tantivy::TantivyError>),
    /// A keyword query could not be parsed.
    #[error("keyword query: {0}")]
    KeywordQuery(#[source] Arc<tantivy::query::QueryParserError>),
    /// The tensor library failed.
    #[error("tensor: {0}")]
    Tensor(#[source] Arc<candle_core::Error>),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[source] Arc<serde_json::Error>),
    /// The privacy policy keeps this text on the machine.
    #[error("privacy: nothing may leave this machine ({0})")]
    PrivacyBlocked(String),
    /// The user declined to send text to a provider.
    #[error("sending to the provider was declined")]
    SendDeclined,
    /// A remote provider failed or timed out.
    #[error("provider '{provider}': {reason}")]
    Provider {
        /// Provider name.
        provider: String,
        /// What went wrong.
        reason: String,
    },
    /// The OS keychain could not be used.
    #[error("keychain: {0}")]
    Keychain(String),
    /// An internal invariant was broken; a bug.
    #[error("internal error: {0}")]
    Internal(String),
}

/// What kind of failure an [`Error`] is: decides how every front-end reports
/// it (the HTTP status, the CLI's exit code) from one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The user's to fix: bad input, a bad path, a choice that is not allowed.
    User,
    /// The thing asked for does not exist (a library, a model id).
    NotFound,
    /// Another operation holds what this one needs (the library's write lock).
    Conflict,
    /// Something this needs is not there yet (a model to fetch).
    Unavailable,
    /// A service outside Quarry failed (a provider, a download source).
    Upstream,
    /// A bug or a failure of the machine (I/O, a store, the tensor library).
    Internal,
}

/// `From` for the errors of other crates, shared behind an `Arc`.
macro_rules! shared_from {
    ($($source:ty => $variant:ident),* $(,)?) => {
        $(impl From<$source> for Error {
            fn from(e: $source) -> Self {
                Error::$variant(Arc::new(e))
            }
        })*
    };
}

shared_from! {
    std::io::Error => Io,
    lancedb::Error => Vectors,
    arrow_schema::ArrowError => Arrow,
    tantivy::TantivyError => Keywords,
    tantivy::query::QueryParserError => KeywordQuery,
    candle_core::Error => Tensor,
    serde_json::Error => Json,
}

impl Error {
    /// What kind of failure this is (exhaustive: a new variant must choose).
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::BadPath { .. }
            | Error::InvalidInput(_)
            | Error::KeywordQuery(_)
            | Error::EmbedderMismatch { .. }
            | Error::PrivacyBlocked(_)
            | Error::SendDeclined
            | Error::Keychain(_)
            | Error::KeyNeeded(_)
            | Error::WrongKey(_)
            | Error::KeyChangeUnfinished(_) => K::User,
            Error::NoLibrary(_) | Error::UnknownModel(_) => K::NotFound,
            Error::Locked(_) => K::Conflict,
            Error::ModelMissing { .. } => K::Unavailable,
            Error::Provider { .. } | Error::Fetch { .. } | Error::ChecksumMismatch { .. } => {
                K::Upstream
            }
            Error::ModelLoad { .. }
            | Error::Registry { .. }
            | Error::Io(_)
            | Error::Vectors(_)
            | Error::Arrow(_)
            | Error::Keywords(_)
            | Error::Tensor(_)
            | Error::Tokenizer(_)
            | Error::Json(_)
            | Error::Sealed { .. }
            | Error::Internal(_) => K::Internal,
        }
    }

    /// A stable code for front-ends (`{code, message}`); never match on messages.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ModelMissing { .. } => "model_missing",
            Error::UnknownModel(_) => "unknown_model",
            Error::ChecksumMismatch { .. } => "checksum_mismatch",
            Error::Fetch { .. } => "fetch_failed",
            Error::ModelLoad { .. } => "model_load",
            Error::Registry { .. } => "registry",
            Error::NoLibrary(_) => "no_library",
            Error::EmbedderMismatch { .. } => "embedder_mismatch",
            Error::Locked(_) => "locked",
            Error::KeyNeeded(_) => "key_needed",
            Error::WrongKey(_) => "wrong_key",
            Error::KeyChangeUnfinished(_) => "key_change_unfinished",
            Error::Sealed { .. } => "sealed_damaged",
            Error::BadPath { .. } => "bad_path",
            Error::InvalidInput(_) => "invalid_input",
            Error::Io(_) => "io",
            Error::Vectors(_) => "vector_store",
            Error::Arrow(_) => "arrow",
            Error::Keywords(_) => "keyword_index",
            Error::KeywordQuery(_) => "keyword_query",
            Error::Tensor(_) => "tensor",
            Error::Tokenizer(_) => "tokenizer",
            Error::Json(_) => "json",
            Error::PrivacyBlocked(_) => "privacy_blocked",
            Error::SendDeclined => "send_declined",
            Error::Provider { .. } => "provider_failed",
            Error::Keychain(_) => "keychain",
            Error::Internal(_) => "internal",
        }
    }

    /// True when the error is the user's to fix (bad input, a missing
    /// library or model, a lock held elsewhere), not a bug.
    pub fn is_user_error(&self) -> bool {
        !matches!(self.kind(), ErrorKind::Upstream | ErrorKind::Internal)
    }
}

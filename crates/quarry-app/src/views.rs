//! What the front-ends receive, typed: every view is `Serialize` (the HTTP
//! API's JSON, the desktop app's IPC payloads, the CLI's `--json`) and `TS`
//! (the UI's TypeScript types are generated from these, `ui/src/bindings/`),
//! so the engine and the UI cannot drift apart.

use std::path::PathBuf;

use quarry_core::answer::evidence::Evidence;
use quarry_core::answer::{Answer, Route, Source};
use quarry_core::cloud::{LibraryPrivacy, Policy, Preview, PrivacyMode};
use quarry_core::models::ModelRole;
use quarry_core::store::Hit;
use quarry_core::{LibraryStatus, SearchMode};
use serde::Serialize;
use ts_rs::TS;

use crate::engine::IndexProgress;
use crate::error::AppError;
use crate::models::FetchProgress;

/// A search hit with its snippet and the highlighted ranges in it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct HitView {
    /// The passage, where it is, its score.
    #[serde(flatten)]
    #[ts(flatten)]
    pub hit: Hit,
    /// A short excerpt around the query's words.
    pub snippet: String,
    /// Character ranges of `snippet` to highlight.
    pub highlights: Vec<(usize, usize)>,
}

impl From<&Hit> for HitView {
    fn from(h: &Hit) -> Self {
        let (snippet, highlights) = match &h.snippet {
            Some((s, ranges)) => (s.clone(), ranges.iter().map(|r| (r.start, r.end)).collect()),
            None => (h.text.chars().take(300).collect(), Vec::new()),
        };
        HitView {
            hit: h.clone(),
            snippet,
            highlights,
        }
    }
}

/// The results of a search.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SearchView {
    /// The query as given.
    pub query: String,
    /// How it was searched.
    pub mode: SearchMode,
    /// The hits, best first.
    pub hits: Vec<HitView>,
    /// Best vector similarity among the hits (none in keyword mode).
    pub best_similarity: Option<f32>,
    /// Milliseconds the search took.
    pub took_ms: f64,
}

/// The library's counts, its privacy settings and the indexing job.
#[derive(Debug, Clone, Serialize, TS)]
pub struct StatusView {
    /// Counts, folders, failures.
    pub library: LibraryStatus,
    /// The library's own privacy settings.
    pub privacy: LibraryPrivacy,
    /// How its files are kept: `"passphrase"` or `"keychain"` when it is
    /// encrypted (and with what its key is kept), `null` when plain.
    pub encryption: Option<String>,
    /// The current or last indexing job.
    pub indexing: IndexProgress,
    /// The generator's name.
    pub model: String,
}

/// A provider as the settings screen shows it: never its key, only where
/// the key comes from.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ProviderView {
    /// Its name.
    pub name: String,
    /// The API's base URL.
    pub base_url: String,
    /// The model asked for.
    pub model: String,
    /// Personal data is redacted before sending.
    pub redact: bool,
    /// Where its key comes from (`$VAR`, `keychain` or `none`).
    pub key: String,
}

/// The privacy modes: global, the library's own, and the one in force.
#[derive(Debug, Clone, Serialize, TS)]
pub struct PrivacyView {
    /// The global mode.
    pub global: PrivacyMode,
    /// The library's own settings.
    pub library: LibraryPrivacy,
    /// What applies now, and why.
    pub in_force: Policy,
}

/// The settings screen: privacy, providers, where things live.
#[derive(Debug, Clone, Serialize, TS)]
pub struct SettingsView {
    /// The privacy modes.
    pub privacy: PrivacyView,
    /// The provider questions go to when routed away.
    pub default_provider: Option<String>,
    /// The configured providers.
    pub providers: Vec<ProviderView>,
    /// The library folder.
    pub library: PathBuf,
    /// The library's embedder.
    pub embedder: String,
    /// The generator.
    pub generator: String,
    /// OCR of scanned pages and images: "Tesseract 5.3.0; languages: eng",
    /// or why it is not available and how to install it.
    pub ocr: String,
}

/// A block of a document's extracted text.
#[derive(Debug, Clone, Serialize, TS)]
pub struct BlockView {
    /// The text.
    pub text: String,
    /// Its page (PDFs).
    pub page: Option<u32>,
    /// The heading it sits under.
    pub heading: Option<String>,
    /// A scanned page read by OCR: its mean word confidence, 0–100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ocr_confidence: Option<f32>,
}

/// A document's extracted text, for the preview pane.
#[derive(Debug, Clone, Serialize, TS)]
pub struct DocumentView {
    /// The document.
    pub path: PathBuf,
    /// Its title, when it has one.
    pub title: Option<String>,
    /// Its text, block by block.
    pub blocks: Vec<BlockView>,
}

/// A document opened in the system's viewer.
#[derive(Debug, Clone, Serialize, TS)]
pub struct OpenedView {
    /// The document.
    pub path: PathBuf,
    /// The program that opened it.
    pub with: String,
    /// The page it was opened at, when the viewer takes one.
    pub page: Option<u32>,
}

/// A model installed from a file or folder.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ImportedView {
    /// Its registry id.
    pub id: String,
    /// Where it was installed.
    pub path: String,
}

/// A folder taken out of the library.
#[derive(Debug, Clone, Serialize, TS)]
pub struct RemovedView {
    /// Documents removed with it.
    pub removed_documents: usize,
    /// Every file of the library was checked and none holds their text or
    /// vectors any more (`quarry forget`'s check).
    pub verified: bool,
    /// That check's outcome in a sentence; `None` when nothing was removed.
    pub check: Option<String>,
}

/// The answer to a request to stop indexing.
#[derive(Debug, Clone, Serialize, TS)]
pub struct StoppingView {
    /// A job was running and will stop after its current batch.
    pub stopping: bool,
}

/// A registered model: installed or not, in use or not, its size.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ModelView {
    /// Registry id.
    pub id: String,
    /// What it is for.
    pub role: ModelRole,
    /// Its architecture.
    pub architecture: String,
    /// For people.
    pub description: String,
    /// The registry's default for its role.
    pub default: bool,
    /// Installed in the models folder.
    pub installed: bool,
    /// Used by the running engine.
    pub in_use: bool,
    /// Bytes on disk (0 when not installed).
    pub size_bytes: u64,
    /// Where it is installed.
    pub path: Option<String>,
    /// The registry knows where to fetch it.
    pub fetchable: bool,
    /// Download size, megabytes (when the registry says).
    pub download_mb: Option<u64>,
    /// Memory it needs loaded, megabytes (when the registry says).
    pub ram_mb: Option<u64>,
    /// Its measured speed class on a 2-core laptop-class CPU.
    pub speed: Option<String>,
    /// Answer models: its speed on this machine, measured or estimated from
    /// the machine's probe (absent until the machine is probed).
    pub this_machine: Option<String>,
    /// The answer model recommended for this machine.
    pub recommended: bool,
    /// The answer model chosen in the settings (used from the next start
    /// when it is not the one in use).
    pub chosen: bool,
}

/// Every registered model and the current fetch.
#[derive(Debug, Clone, Serialize, TS)]
pub struct ModelsView {
    /// The models folder.
    pub models_dir: String,
    /// The models.
    pub models: Vec<ModelView>,
    /// This machine as probed, for people (absent until probed).
    pub machine: Option<String>,
    /// The budget the recommendation keeps the first word within, seconds.
    pub budget_s: f64,
    /// The current (or last) fetch.
    pub fetch: FetchProgress,
}

/// One event of an answer as it is written, in order: the sources, the route
/// (again if a provider fails and the local model takes over), tokens, a
/// consent preview (ask mode: what would be sent, not sent), what was sent,
/// then the finished answer, or an error. On the wire `{event, data}` (the
/// HTTP API sends `event` as the SSE event name and `data` as its data).
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum AskEvent {
    /// The sentences of the sources that match the question best, within
    /// moments of the question, while the answer is composed.
    Evidence(Vec<Evidence>),
    /// The numbered sources.
    Sources(Vec<Source>),
    /// Where the answer comes from, and why.
    Route(Route),
    /// Answer text.
    Token {
        /// The text.
        text: String,
    },
    /// The model is reasoning before it answers (not shown): `tokens` so far.
    Thinking {
        /// Reasoning tokens so far.
        tokens: usize,
    },
    /// Ask mode: exactly what would be sent; nothing was sent.
    Consent(Preview),
    /// Exactly what left the machine.
    Sent(Preview),
    /// Reading whole documents: `done` of `total` parts read.
    Reading {
        /// Parts read.
        done: usize,
        /// Parts in all.
        total: usize,
    },
    /// The local model is busy with another task (`busy`, in a few words):
    /// this answer starts when that ends.
    Waiting {
        /// What holds the model.
        busy: String,
    },
    /// The whole answer.
    Done(Box<Answer>),
    /// The answer failed.
    Error(AppError),
}

impl AskEvent {
    /// The event's name (`sources`, `route`, `token`, …).
    pub fn name(&self) -> &'static str {
        match self {
            AskEvent::Evidence(_) => "evidence",
            AskEvent::Sources(_) => "sources",
            AskEvent::Route(_) => "route",
            AskEvent::Token { .. } => "token",
            AskEvent::Thinking { .. } => "thinking",
            AskEvent::Consent(_) => "consent",
            AskEvent::Sent(_) => "sent",
            AskEvent::Reading { .. } => "reading",
            AskEvent::Waiting { .. } => "waiting",
            AskEvent::Done(_) => "done",
            AskEvent::Error(_) => "error",
        }
    }

    /// The event's data alone, as JSON.
    pub fn data(&self) -> serde_json::Value {
        event_data(self)
    }
}

/// The `data` of an event serialised as `{event, data}`.
pub fn event_data(event: &impl Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(event).unwrap_or_default();
    v.get_mut("data")
        .map(serde_json::Value::take)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ask_events_carry_their_name_and_data() {
        let e = AskEvent::Token { text: "Hi".into() };
        assert_eq!(e.name(), "token");
        assert_eq!(e.data(), serde_json::json!({"text": "Hi"}));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"event": "token", "data": {"text": "Hi"}})
        );
        let err = AskEvent::Error(AppError::user("invalid_input", "no"));
        assert_eq!(
            err.data(),
            serde_json::json!({"code": "invalid_input", "message": "no"})
        );
    }
}

//! The calls every front-end makes, with their requests and typed views: the
//! HTTP routes (`quarry-server`), the desktop app's commands (`src-tauri`) and
//! the CLI differ only in how they receive a request and send the answer.

use std::path::{Path, PathBuf};

use quarry_core::answer::router::RouteOverride;
use quarry_core::answer::{prompt_prefix, AnswerEvent, AnswerOptions, WholeReading};
use quarry_core::cloud::PrivacyMode;
use quarry_core::generate::ChatMessage;
use quarry_core::store::{DocState, Filter};
use quarry_core::{ErrorKind, HybridSearch, SearchMode, SearchOptions};
use serde::Deserialize;
use ts_rs::TS;

use crate::engine::Engine;
use crate::error::{AppError, AppResult};
use crate::session::{ask_options, Routing};
use crate::views::{
    AskEvent, BlockView, DocumentView, HitView, OpenedView, PrivacyView, ProviderView, RemovedView,
    SearchView, SettingsView, StatusView,
};

/// The library's counts, failures, privacy and indexing progress.
pub async fn status(engine: &Engine) -> AppResult<StatusView> {
    let lib = engine.library();
    Ok(StatusView {
        library: lib.status().await?,
        privacy: lib.meta().privacy.clone(),
        encryption: quarry_core::store::sealed::LibraryKey::kept_by(lib.dir()).map(str::to_string),
        indexing: engine.progress(),
        model: engine.model_name(),
    })
}

/// A request to add folders and index them (`POST /api/index`).
#[derive(Debug, Deserialize, TS)]
pub struct IndexRequest {
    /// Folders or files to add and index.
    pub paths: Vec<PathBuf>,
}

/// Add folders and index them in the background.
pub fn index(engine: &std::sync::Arc<Engine>, req: IndexRequest) -> AppResult<()> {
    if req.paths.is_empty() {
        return Err(AppError::user(
            "invalid_input",
            "give at least one folder to index",
        ));
    }
    Ok(engine.start_indexing(req.paths)?)
}

/// A search (`GET /api/search`).
#[derive(Debug, Default, Deserialize, TS)]
pub struct SearchQuery {
    /// The query.
    pub q: String,
    /// `hybrid` (default), `vector` or `keyword`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Results wanted (default 10).
    #[serde(default)]
    pub k: Option<usize>,
    /// Only paths starting with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Only these extensions, comma-separated.
    #[serde(default)]
    pub ext: Option<String>,
    /// Only files modified at or after this time (ms since the epoch).
    #[serde(default)]
    #[ts(type = "number | null")]
    pub modified_after_ms: Option<i64>,
    /// Only files modified before this time (ms since the epoch).
    #[serde(default)]
    #[ts(type = "number | null")]
    pub modified_before_ms: Option<i64>,
}

/// A filter by path prefix and comma-separated extensions.
pub fn filter_of(path_prefix: Option<String>, ext: Option<&str>) -> Filter {
    Filter {
        path_prefix,
        extensions: ext
            .map(|e| {
                e.split(',')
                    .map(|x| x.trim().trim_start_matches('.').to_ascii_lowercase())
                    .filter(|x| !x.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// Hits (with snippets and highlight ranges) for a search.
pub async fn search(engine: &Engine, q: SearchQuery) -> AppResult<SearchView> {
    let mode: SearchMode = q.mode.as_deref().unwrap_or("hybrid").parse()?;
    let (lib, embedder) = engine.library_and_embedder();
    let search = HybridSearch::new(&lib, Some(&embedder))?;
    let opts = SearchOptions {
        mode,
        k: q.k.unwrap_or(10).clamp(1, 100),
        filter: Filter {
            modified_after_ms: q.modified_after_ms,
            modified_before_ms: q.modified_before_ms,
            ..filter_of(q.path_prefix, q.ext.as_deref())
        },
        ..Default::default()
    };
    let results = search.search(&q.q, &opts).await?;
    Ok(SearchView {
        query: q.q,
        mode,
        hits: results.hits.iter().map(HitView::from).collect(),
        best_similarity: results.best_similarity,
        took_ms: results.timings.total.as_secs_f64() * 1000.0,
    })
}

/// A question (`POST /api/ask`).
#[derive(Debug, Clone, Default, Deserialize, TS)]
pub struct AskRequest {
    /// The question.
    pub question: String,
    /// Earlier turns (`role`, `content`), oldest first.
    #[serde(default)]
    pub history: Vec<ChatMessage>,
    /// `local`, `cloud` or `auto` (default).
    #[serde(default)]
    pub route: RouteOverride,
    /// Privacy mode for this question (a never-leaves-device library stays local whatever this says).
    #[serde(default)]
    pub privacy: Option<PrivacyMode>,
    /// Provider to use (default: the configured default).
    #[serde(default)]
    pub provider: Option<String>,
    /// In `ask` mode: the user saw the `consent` preview and agreed to send.
    #[serde(default)]
    pub confirm_send: bool,
    /// Most answer tokens.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Sources to retrieve.
    #[serde(default)]
    pub sources: Option<usize>,
    /// Only paths starting with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Do not use or fill the answer cache.
    #[serde(default)]
    pub no_cache: bool,
    /// When to read every passage of the documents: `auto` (default: for
    /// "list every…", "how many … mentioned" and summaries), `always`, `never`.
    #[serde(default)]
    pub whole: WholeReading,
}

impl AskRequest {
    /// The answer options this request asks for (clamped to sane bounds).
    fn answer_options(&self) -> AnswerOptions {
        let mut opts = AnswerOptions {
            filter: filter_of(self.path_prefix.clone(), None),
            whole: self.whole,
            ..Default::default()
        };
        if let Some(n) = self.sources {
            opts.sources = n.clamp(1, 20);
        }
        if let Some(n) = self.max_tokens {
            opts.generate.max_tokens = n.clamp(1, 4096);
        }
        opts
    }
}

/// Answer on a blocking thread (the model is held while generating), passing
/// each event to `sink`, which returns false to stop; the finished answer
/// ends as [`AskEvent::Done`]. The HTTP and desktop front-ends differ only in
/// their sink.
pub fn answer_blocking(
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    req: &AskRequest,
    sink: &mut dyn FnMut(AskEvent) -> bool,
) -> AppResult<()> {
    let (lib, embedder) = engine.library_and_embedder();
    let routing = Routing::for_library(
        &engine.config_dir,
        &lib,
        req.privacy,
        req.provider.as_deref(),
    )?;
    let classifier = if routing.may_route_away() {
        engine.classifier()
    } else {
        None
    };
    let opts = ask_options(req.answer_options(), req.route, !req.no_cache);
    let sink = std::cell::RefCell::new(sink);
    let mut on_event = |e: AnswerEvent| {
        let event = match e {
            AnswerEvent::Evidence(e) => AskEvent::Evidence(e),
            AnswerEvent::Sources(s) => AskEvent::Sources(s),
            AnswerEvent::Route(r) => AskEvent::Route(r),
            AnswerEvent::Token(text) => AskEvent::Token { text },
            AnswerEvent::Thinking { tokens } => AskEvent::Thinking { tokens },
            AnswerEvent::Sent(p) => AskEvent::Sent(p),
            AnswerEvent::Reading { done, total } => AskEvent::Reading { done, total },
        };
        (sink.borrow_mut())(event)
    };
    let confirmed = req.confirm_send;
    let mut confirm = |p: &quarry_core::cloud::Preview| {
        if !confirmed {
            (sink.borrow_mut())(AskEvent::Consent(p.clone()));
        }
        confirmed
    };
    let mut model = engine.lock_model_for("a question", &mut |busy| {
        (sink.borrow_mut())(AskEvent::Waiting {
            busy: busy.to_string(),
        });
    })?;
    let model = model.as_mut().expect("loaded by lock_model");
    let mut cache = engine.cache.lock().unwrap_or_else(|p| p.into_inner());
    let mut asker = routing.asker(
        (&lib, &embedder, &mut *model),
        classifier.as_deref(),
        Some(&mut cache),
    );
    let answer = handle.block_on(asker.ask(
        &req.question,
        &req.history,
        &opts,
        &mut confirm,
        &mut on_event,
    ))?;
    // The follow-up's start (instructions and conversation) goes through the
    // model while the user reads, as the front-ends keep the last 4 turns.
    let mut next = req.history.clone();
    next.push(ChatMessage::new("user", req.question.clone()));
    next.push(ChatMessage::new("assistant", answer.answer.clone()));
    (sink.borrow_mut())(AskEvent::Done(Box::new(answer)));
    let keep = next.len().saturating_sub(4);
    if let Err(e) = prompt_prefix(model, &next[keep..]).and_then(|p| model.prefill_prefix(&p)) {
        tracing::warn!("could not prepare the follow-up: {e}");
    }
    Ok(())
}

/// The privacy modes and providers (never keys).
pub fn settings(engine: &Engine) -> AppResult<SettingsView> {
    use quarry_core::cloud::{providers::find_key, Policy, Providers, Settings};
    let lib = engine.library();
    let global = Settings::load(&engine.config_dir)?;
    let policy = Policy::resolve(None, &lib.meta().privacy, &global);
    let env = |k: &str| std::env::var(k).ok();
    let providers = Providers::load(&engine.config_dir)?
        .list
        .iter()
        .map(|p| ProviderView {
            name: p.name.clone(),
            base_url: p.base_url.clone(),
            model: p.model.clone(),
            redact: p.redact,
            key: find_key(p, &env, false).1.to_string(),
        })
        .collect();
    Ok(SettingsView {
        privacy: PrivacyView {
            global: global.privacy,
            library: lib.meta().privacy.clone(),
            in_force: policy,
        },
        default_provider: global.provider.clone(),
        providers,
        library: engine.library_dir.clone(),
        embedder: lib.meta().embedder.clone(),
        generator: engine.model_name(),
        ocr: ocr_summary(),
    })
}

/// What OCR is here, in a sentence for the Settings screen.
fn ocr_summary() -> String {
    match quarry_core::ocr::status() {
        Ok(s) => format!(
            "Tesseract {}; languages: {}",
            s.version,
            s.languages.join(", ")
        ),
        Err(e) => format!("{e}; scanned pages and images are listed, not read"),
    }
}

/// A change of the privacy settings (`POST /api/settings/privacy`).
#[derive(Debug, Default, Deserialize, TS)]
pub struct PrivacyRequest {
    /// The new mode (for the library when `library` is true, else globally).
    #[serde(default)]
    pub mode: Option<PrivacyMode>,
    /// Set the library's own mode instead of the global one.
    #[serde(default)]
    pub library: bool,
    /// Mark (or unmark) the library never-leaves-device.
    #[serde(default)]
    pub never_leaves_device: Option<bool>,
    /// Refuse (true) or allow (false) agents' MCP calls on the library.
    #[serde(default)]
    pub not_shared_with_agents: Option<bool>,
}

/// Change the privacy settings; returns the settings after the change.
pub async fn set_privacy(engine: &Engine, req: PrivacyRequest) -> AppResult<SettingsView> {
    use quarry_core::cloud::Settings;
    if req.library || req.never_leaves_device.is_some() || req.not_shared_with_agents.is_some() {
        let mut lib = quarry_core::Library::open(&engine.library_dir).await?;
        let mut p = lib.meta().privacy.clone();
        if req.library {
            p.mode = req.mode;
        }
        if let Some(flag) = req.never_leaves_device {
            p.never_leaves_device = flag;
        }
        if let Some(flag) = req.not_shared_with_agents {
            p.not_shared_with_agents = flag;
        }
        lib.set_privacy(p)?;
        engine.reload().await;
    } else if let Some(mode) = req.mode {
        let mut s = Settings::load(&engine.config_dir)?;
        s.privacy = mode;
        s.save(&engine.config_dir)?;
    }
    settings(engine)
}

/// `path` resolved, when it is an indexed document inside the library's
/// folders; anything else is refused.
pub async fn library_document(engine: &Engine, path: &Path) -> AppResult<PathBuf> {
    let lib = engine.library();
    let path = path.canonicalize().map_err(|e| {
        AppError::new(
            ErrorKind::NotFound,
            "not_found",
            format!("{}: {e}", path.display()),
        )
    })?;
    let indexed = lib
        .documents()
        .await?
        .iter()
        .any(|d| Path::new(&d.path) == path && d.state == DocState::Indexed);
    if !indexed || !lib.meta().folders.iter().any(|f| path.starts_with(f)) {
        return Err(AppError::user(
            "outside_library",
            format!("{} is not a document of this library", path.display()),
        ));
    }
    Ok(path)
}

/// A document to show (`GET /api/document`).
#[derive(Debug, Deserialize, TS)]
pub struct DocumentQuery {
    /// Absolute path of an indexed document.
    pub path: PathBuf,
}

/// A document's extracted text, only inside the library's folders.
pub async fn document(engine: &Engine, q: DocumentQuery) -> AppResult<DocumentView> {
    let path = library_document(engine, &q.path).await?;
    let lib = engine.library();
    let key = path.to_string_lossy().to_string();
    if lib.has_scanned_pages(&key) {
        // OCR read it when it was indexed; its text is shown as indexed,
        // not read again (seconds a page).
        return Ok(DocumentView {
            path: q.path,
            title: None,
            blocks: indexed_blocks(&lib, &key)?,
        });
    }
    let extracted = tokio::task::spawn_blocking(move || {
        let limits = quarry_core::extract::ExtractLimits::default();
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size > 100 << 20 {
            return Err(quarry_core::extract::ExtractError::Unsupported(
                "larger than 100 MiB; open it in its own application".into(),
            ));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| quarry_core::extract::ExtractError::Unsupported(e.to_string()))?;
        quarry_core::extract::extract_bytes(&path, &bytes, &limits)
    })
    .await?
    .map_err(|e| AppError::user("extract_failed", e.to_string()))?;
    Ok(DocumentView {
        path: q.path,
        title: extracted.title,
        blocks: extracted
            .blocks
            .into_iter()
            .map(|b| BlockView {
                text: b.text,
                page: b.page,
                heading: b.heading,
                ocr_confidence: None,
            })
            .collect(),
    })
}

/// A document's text as the index holds it, a block per page: the chunks
/// in order, each without the text it shares with the one before.
fn indexed_blocks(lib: &quarry_core::Library, path: &str) -> AppResult<Vec<BlockView>> {
    let mut blocks: Vec<BlockView> = Vec::new();
    let mut end = 0u64;
    for h in lib.passages_of(path)? {
        let skip = end.saturating_sub(h.char_start) as usize;
        let text: String = h.text.chars().skip(skip).collect();
        end = end.max(h.char_end);
        match blocks.last_mut() {
            Some(b) if b.page == h.page => b.text.push_str(&text),
            _ => blocks.push(BlockView {
                text,
                page: h.page,
                heading: h.heading,
                ocr_confidence: lib.ocr_confidence(path, h.page),
            }),
        }
    }
    Ok(blocks)
}

/// A document to open in the system's viewer (`POST /api/open`).
#[derive(Debug, Deserialize, TS)]
pub struct OpenRequest {
    /// Absolute path of an indexed document.
    pub path: PathBuf,
    /// The page to show (PDFs), 1-based.
    #[serde(default)]
    pub page: Option<u32>,
}

/// Open an indexed document in the system's viewer (at the page for PDFs
/// where the viewer allows); `QUARRY_OPEN_WITH` names another viewer.
pub async fn open(engine: &Engine, req: OpenRequest) -> AppResult<OpenedView> {
    let path = library_document(engine, &req.path).await?;
    let open_with = std::env::var_os("QUARRY_OPEN_WITH");
    let shown = path.clone();
    let opened =
        tokio::task::spawn_blocking(move || crate::viewer::open(&path, req.page, open_with))
            .await?
            .map_err(|e| {
                AppError::user(
                    "open_failed",
                    format!("could not open {} in a viewer: {e}", shown.display()),
                )
            })?;
    Ok(OpenedView {
        path: shown,
        with: opened.with,
        page: opened.page,
    })
}

/// The embedder to switch the library's meaning search to (`POST /api/embedder`).
#[derive(Debug, Deserialize, TS)]
pub struct EmbedderRequest {
    /// An installed embedder's registry id.
    pub embedder: String,
}

/// Switch the library's meaning search to another installed embedder: every
/// passage is embedded again in the background (progress as indexing's,
/// phase `re-embedding`) while searches go on with the current one.
pub fn switch_embedder(engine: &std::sync::Arc<Engine>, req: EmbedderRequest) -> AppResult<()> {
    Ok(engine.start_reembed(&req.embedder)?)
}

/// A folder to take out of the library (`POST /api/folders/remove`).
#[derive(Debug, Deserialize, TS)]
pub struct RemoveRequest {
    /// The folder as it was added.
    pub path: PathBuf,
}

/// Take a folder and its documents out of the library.
pub async fn remove_folder(engine: &Engine, req: RemoveRequest) -> AppResult<RemovedView> {
    let report = engine.remove_folder(&req.path).await?;
    Ok(RemovedView {
        removed_documents: report.as_ref().map_or(0, |r| r.documents.len()),
        verified: report.as_ref().is_some_and(|r| r.verified),
        check: report.map(|r| r.summary()),
    })
}

/// Unlock the encrypted library in `dir` with its passphrase for the rest
/// of this process: the desktop app asks for it when opening the library
/// says it is needed, and opens the library on its next call. Nothing to do
/// for a library that is not encrypted; a wrong passphrase is `wrong_key`.
pub fn unlock_library(dir: &Path, passphrase: &str) -> AppResult<()> {
    let secret = secrecy::SecretString::from(passphrase.to_string());
    unlock_with(dir, &secret)
}

fn unlock_with(dir: &Path, secret: &secrecy::SecretString) -> AppResult<()> {
    use quarry_core::store::sealed::LibraryKey;
    if let Some(key) = LibraryKey::unlock(dir, Some(secret))? {
        LibraryKey::remember(dir, key);
    }
    Ok(())
}

/// Encrypt the library in `dir` in place (every file rewritten sealed, the
/// plain bytes overwritten), under `passphrase` or, when `None`, a key kept
/// in the OS keychain; a library not created yet is created encrypted. The
/// caller has closed every handle on the library (the desktop app drops its
/// engine first). Its key is then kept for this process. A change that was
/// interrupted is finished.
pub fn encrypt_library(dir: &Path, passphrase: Option<&str>) -> AppResult<()> {
    use quarry_core::store::sealed::rekey::{change_key, NewKey};
    use quarry_core::store::sealed::{KeySource, LibraryKey, NEXT_KEY_FILE};
    let secret = passphrase.map(|p| secrecy::SecretString::from(p.to_string()));
    let resuming = dir.join(NEXT_KEY_FILE).exists();
    if LibraryKey::is_encrypted(dir) && !resuming {
        return Err(AppError::user(
            "invalid_input",
            "this library is already encrypted",
        ));
    }
    if !dir.join("library.json").exists() && !resuming {
        std::fs::create_dir_all(dir).map_err(AppError::internal)?;
        let source = match &secret {
            Some(p) => KeySource::Passphrase(p),
            None => KeySource::Keychain,
        };
        let key = LibraryKey::create_with(dir, source)?;
        LibraryKey::remember(dir, key);
        return Ok(());
    }
    let new = match &secret {
        Some(p) => NewKey::Passphrase(p),
        None => NewKey::Keychain,
    };
    change_key(dir, None, new, &mut |_, _| {})?;
    Ok(())
}

/// Replace the key of the encrypted library in `dir` and destroy the old one
/// (every file resealed): `current` must open it when it has a passphrase;
/// the new key is wrapped under `new`, or kept in the OS keychain when
/// `None`. The caller has closed every handle on the library. Finishes a
/// change that was interrupted.
pub fn rekey_library(dir: &Path, current: Option<&str>, new: Option<&str>) -> AppResult<()> {
    use quarry_core::store::sealed::rekey::{change_key, NewKey};
    use quarry_core::store::sealed::{LibraryKey, NEXT_KEY_FILE};
    if !LibraryKey::is_encrypted(dir) && !dir.join(NEXT_KEY_FILE).exists() {
        return Err(AppError::user(
            "invalid_input",
            "this library is not encrypted",
        ));
    }
    let current = current.map(|p| secrecy::SecretString::from(p.to_string()));
    if LibraryKey::needs_passphrase(dir) && current.is_none() {
        return Err(AppError::user(
            "key_needed",
            "give the library's current passphrase to change it",
        ));
    }
    let new = new.map(|p| secrecy::SecretString::from(p.to_string()));
    let source = match &new {
        Some(p) => NewKey::Passphrase(p),
        None => NewKey::Keychain,
    };
    change_key(dir, current.as_ref(), source, &mut |_, _| {})?;
    Ok(())
}

//! Quarry's own JSON/SSE endpoints under `/api`.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures::Stream;
use quarry_core::answer::{AnswerEvent, AnswerOptions};
use quarry_core::ask::{AskOptions, Asker};
use quarry_core::cloud::PrivacyMode;
use quarry_core::generate::ChatMessage;
use quarry_core::router::RouteOverride;
use quarry_core::store::{Filter, Hit};
use quarry_core::{HybridSearch, SearchMode, SearchOptions};
use serde::Deserialize;
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};
use tokio_stream::StreamExt;

use crate::engine::Engine;
use crate::error::ApiError;

type Shared = State<Arc<Engine>>;

/// `GET /api/status`: the library's counts, failures and indexing progress.
pub async fn status(State(engine): Shared) -> Result<Json<serde_json::Value>, ApiError> {
    status_value(&engine).await.map(Json)
}

/// The library's counts, failures, privacy and indexing progress.
pub async fn status_value(engine: &Engine) -> Result<serde_json::Value, ApiError> {
    let lib = engine.library();
    let status = lib.status().await?;
    Ok(serde_json::json!({
        "library": status,
        "privacy": lib.meta().privacy,
        "indexing": engine.progress(),
        "model": engine.model_name,
    }))
}

/// `GET /api/status/stream`: SSE of indexing progress (`progress` events;
/// the current state first).
pub async fn status_stream(
    State(engine): Shared,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe first, then read the state: an update in between is not lost.
    let updates = BroadcastStream::new(engine.subscribe()).filter_map(|u| u.ok());
    let first = engine.progress();
    let stream = tokio_stream::once(first).chain(updates).map(|p| {
        Ok(Event::default()
            .event("progress")
            .json_data(p)
            .expect("json"))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Body of `POST /api/index`.
#[derive(Deserialize)]
pub struct IndexRequest {
    /// Folders or files to add and index.
    pub paths: Vec<PathBuf>,
}

/// `POST /api/index`: add folders and index them in the background.
pub async fn index(
    State(engine): Shared,
    Json(req): Json<IndexRequest>,
) -> Result<impl IntoResponse, ApiError> {
    if req.paths.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "give at least one folder to index",
        ));
    }
    engine.start_indexing(req.paths)?;
    Ok((StatusCode::ACCEPTED, Json(engine.progress())))
}

/// Query of `GET /api/search`.
#[derive(Deserialize)]
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
    pub modified_after_ms: Option<i64>,
    /// Only files modified before this time (ms since the epoch).
    #[serde(default)]
    pub modified_before_ms: Option<i64>,
}

fn hit_json(h: &Hit) -> serde_json::Value {
    let (snippet, highlights) = match &h.snippet {
        Some((s, ranges)) => (
            s.clone(),
            ranges.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>(),
        ),
        None => (h.text.chars().take(300).collect(), Vec::new()),
    };
    serde_json::json!({
        "chunk_id": h.chunk_id,
        "path": h.path,
        "page": h.page,
        "heading": h.heading,
        "char_start": h.char_start,
        "char_end": h.char_end,
        "score": h.score,
        "text": h.text,
        "snippet": snippet,
        "highlights": highlights,
    })
}

fn filter_of(path_prefix: Option<String>, ext: Option<&str>) -> Filter {
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

/// `GET /api/search?q=…`: hybrid (or vector / keyword) search with snippets.
pub async fn search(
    State(engine): Shared,
    Query(q): Query<SearchQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    search_value(&engine, q).await.map(Json)
}

/// Hits (with snippets and highlight ranges) for a search.
pub async fn search_value(engine: &Engine, q: SearchQuery) -> Result<serde_json::Value, ApiError> {
    let mode: SearchMode = q.mode.as_deref().unwrap_or("hybrid").parse()?;
    let lib = engine.library();
    let search = HybridSearch::new(&lib, Some(&engine.embedder))?;
    let results = search
        .search(
            &q.q,
            &SearchOptions {
                mode,
                k: q.k.unwrap_or(10).clamp(1, 100),
                filter: Filter {
                    modified_after_ms: q.modified_after_ms,
                    modified_before_ms: q.modified_before_ms,
                    ..filter_of(q.path_prefix, q.ext.as_deref())
                },
                ..Default::default()
            },
        )
        .await?;
    Ok(serde_json::json!({
        "query": q.q,
        "mode": mode,
        "hits": results.hits.iter().map(hit_json).collect::<Vec<_>>(),
        "best_similarity": results.best_similarity,
        "took_ms": results.timings.total.as_secs_f64() * 1000.0,
    }))
}

/// Body of `POST /api/ask`.
#[derive(Deserialize)]
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
    /// Use the answer cache (default true).
    #[serde(default)]
    pub no_cache: bool,
}

fn event(name: &str, data: impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}

/// `POST /api/ask`: an SSE stream of the answer's events: `sources`, `route`
/// (again if the provider fails and the local model takes over), `token`,
/// `consent` (ask mode: what would be sent, not sent), `sent` (what left the
/// machine), then `done` with the whole answer, or `error`.
pub async fn ask(
    State(engine): Shared,
    Json(req): Json<AskRequest>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // A closed stream (the client left) stops generation.
        let mut sink = |name: &str, data: serde_json::Value| tx.send(event(name, data)).is_ok();
        if let Err(e) = answer_blocking(&engine, &handle, &req, &mut sink) {
            sink("error", e.body()["error"].clone());
        }
    });
    Sse::new(UnboundedReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// Answer on a blocking thread (the model is held while generating), passing
/// each event (`sources`, `route`, `token`, `consent`, `sent`, `done`) to
/// `sink`, which returns false to stop. The HTTP and desktop front-ends differ
/// only in their sink.
pub fn answer_blocking(
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    req: &AskRequest,
    sink: &mut dyn FnMut(&str, serde_json::Value) -> bool,
) -> Result<(), ApiError> {
    let lib = engine.library();
    let env = |k: &str| std::env::var(k).ok();
    let (policy, egress) = quarry_core::cloud::setup(
        &engine.config_dir,
        &lib,
        req.privacy,
        req.provider.as_deref(),
        &env,
        true,
    )?;
    let classifier = if egress.is_some() && policy.allows_egress() {
        engine.classifier()
    } else {
        None
    };
    let mut opts = AnswerOptions {
        filter: filter_of(req.path_prefix.clone(), None),
        ..Default::default()
    };
    if let Some(n) = req.sources {
        opts.sources = n.clamp(1, 20);
    }
    if let Some(n) = req.max_tokens {
        opts.generate.max_tokens = n.clamp(1, 4096);
    }
    let ask_opts = AskOptions {
        answer: opts,
        route: req.route,
        use_cache: !req.no_cache,
        now: chrono_now(),
    };
    let value = |v: serde_json::Result<serde_json::Value>| v.unwrap_or_default();
    let sink = std::cell::RefCell::new(sink);
    let mut on_event = |e: AnswerEvent| {
        let (name, data) = match e {
            AnswerEvent::Sources(s) => ("sources", value(serde_json::to_value(s))),
            AnswerEvent::Route(r) => ("route", value(serde_json::to_value(r))),
            AnswerEvent::Token(t) => ("token", serde_json::json!({ "text": t })),
            AnswerEvent::Sent(p) => ("sent", value(serde_json::to_value(p))),
        };
        (sink.borrow_mut())(name, data)
    };
    let confirmed = req.confirm_send;
    let mut confirm = |p: &quarry_core::cloud::Preview| {
        if !confirmed {
            (sink.borrow_mut())("consent", value(serde_json::to_value(p)));
        }
        confirmed
    };
    let mut model = engine.lock_model()?;
    let model = model.as_mut().expect("loaded by lock_model");
    let mut cache = engine.cache.lock().unwrap_or_else(|p| p.into_inner());
    let mut asker = Asker {
        library: &lib,
        embedder: &engine.embedder,
        model,
        policy: &policy,
        classifier,
        egress: egress.as_ref(),
        cache: Some(&mut cache),
    };
    let answer = handle.block_on(asker.ask(
        &req.question,
        &req.history,
        &ask_opts,
        &mut confirm,
        &mut on_event,
    ))?;
    (sink.borrow_mut())("done", value(serde_json::to_value(&answer)));
    Ok(())
}

/// The current time (read here, at the edge, and passed into the engine).
pub(crate) fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// `GET /api/audit`: every outbound request recorded for this library.
pub async fn audit(State(engine): Shared) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = quarry_core::cloud::audit::read(&engine.library_dir)?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

/// `GET /api/settings`: the privacy modes (global, library, in force) and the
/// providers with where their keys come from — never the keys.
pub async fn settings(State(engine): Shared) -> Result<Json<serde_json::Value>, ApiError> {
    settings_value(&engine).map(Json)
}

/// The privacy modes and providers (never keys).
pub fn settings_value(engine: &Engine) -> Result<serde_json::Value, ApiError> {
    use quarry_core::cloud::{providers::find_key, Policy, Providers, Settings};
    let lib = engine.library();
    let global = Settings::load(&engine.config_dir)?;
    let policy = Policy::resolve(None, &lib.meta().privacy, &global);
    let env = |k: &str| std::env::var(k).ok();
    let providers: Vec<serde_json::Value> = Providers::load(&engine.config_dir)?
        .list
        .iter()
        .map(|p| {
            serde_json::json!({
                "name": p.name, "base_url": p.base_url, "model": p.model,
                "redact": p.redact, "key": find_key(p, &env, false).1.to_string(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "privacy": {"global": global.privacy, "library": lib.meta().privacy, "in_force": policy},
        "default_provider": global.provider,
        "providers": providers,
        "library": engine.library_dir,
        "embedder": lib.meta().embedder,
        "generator": engine.model_name,
    }))
}

/// Query of `GET /api/document`.
#[derive(Deserialize)]
pub struct DocumentQuery {
    /// Absolute path of an indexed document.
    pub path: PathBuf,
}

/// `GET /api/document?path=…`: the extracted text of a document inside the
/// library's folders (for the preview pane); anything else is refused.
pub async fn document(
    State(engine): Shared,
    Query(q): Query<DocumentQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    document_value(&engine, q).await.map(Json)
}

/// `path` resolved, when it is an indexed document inside the library's
/// folders; anything else is refused.
async fn library_document(engine: &Engine, path: &Path) -> Result<PathBuf, ApiError> {
    let lib = engine.library();
    let path = path.canonicalize().map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{}: {e}", path.display()),
        )
    })?;
    let indexed =
        lib.documents().await?.iter().any(|d| {
            Path::new(&d.path) == path && d.state == quarry_core::store::DocState::Indexed
        });
    if !indexed || !lib.meta().folders.iter().any(|f| path.starts_with(f)) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "outside_library",
            format!("{} is not a document of this library", path.display()),
        ));
    }
    Ok(path)
}

/// `GET /api/models`: the registry's models and the current fetch.
pub async fn models(State(engine): Shared) -> Json<serde_json::Value> {
    let e = engine.clone();
    Json(
        tokio::task::spawn_blocking(move || {
            crate::models::models_value(&e.models, &crate::models::in_use(&e))
        })
        .await
        .unwrap_or_default(),
    )
}

/// `POST /api/models/fetch`: start fetching a model.
pub async fn fetch_model(
    State(engine): Shared,
    Json(req): Json<crate::models::FetchRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    engine.models.start_fetch(&req.id)?;
    Ok(Json(
        serde_json::to_value(engine.models.progress()).unwrap_or_default(),
    ))
}

/// `POST /api/models/import`: install a model from this machine.
pub async fn import_model(
    State(engine): Shared,
    Json(req): Json<crate::models::ImportRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    crate::models::import_value(&engine.models, req)
        .await
        .map(Json)
}

/// Body of `POST /api/open`.
#[derive(Debug, Deserialize)]
pub struct OpenRequest {
    /// Absolute path of an indexed document.
    pub path: PathBuf,
    /// The page to show (PDFs), 1-based.
    #[serde(default)]
    pub page: Option<u32>,
}

/// `POST /api/open`: open an indexed document in the system's viewer.
pub async fn open(
    State(engine): Shared,
    Json(req): Json<OpenRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    open_value(&engine, req).await.map(Json)
}

/// Open an indexed document in the system's viewer (at the page for PDFs
/// where the viewer allows); `QUARRY_OPEN_WITH` names another viewer.
pub async fn open_value(engine: &Engine, req: OpenRequest) -> Result<serde_json::Value, ApiError> {
    let path = library_document(engine, &req.path).await?;
    let open_with = std::env::var_os("QUARRY_OPEN_WITH");
    let shown = path.clone();
    let opened =
        tokio::task::spawn_blocking(move || crate::viewer::open(&path, req.page, open_with))
            .await
            .map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?
            .map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "open_failed",
                    format!("could not open {} in a viewer: {e}", shown.display()),
                )
            })?;
    Ok(serde_json::json!({ "path": shown, "with": opened.with, "page": opened.page }))
}

/// A document's extracted text, only inside the library's folders.
pub async fn document_value(
    engine: &Engine,
    q: DocumentQuery,
) -> Result<serde_json::Value, ApiError> {
    let path = library_document(engine, &q.path).await?;
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
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "extract_failed",
            e.to_string(),
        )
    })?;
    Ok(serde_json::json!({
        "path": q.path,
        "title": extracted.title,
        "blocks": extracted.blocks.iter().map(|b| serde_json::json!({
            "text": b.text, "page": b.page, "heading": b.heading,
        })).collect::<Vec<_>>(),
    }))
}

/// `POST /api/index/cancel`: stop the running job after its current batch.
/// (A JSON body is required, so a page on another origin cannot send it
/// without a CORS preflight, which this server never grants.)
pub async fn cancel_index(
    State(engine): Shared,
    Json(_): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "stopping": engine.cancel_indexing() }))
}

/// Body of `POST /api/folders/remove`.
#[derive(Deserialize)]
pub struct RemoveRequest {
    /// The folder as it was added.
    pub path: PathBuf,
}

/// `POST /api/folders/remove`: take a folder and its documents out of the library.
pub async fn remove_folder(
    State(engine): Shared,
    Json(req): Json<RemoveRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = engine.remove_folder(&req.path).await?;
    Ok(Json(serde_json::json!({ "removed_documents": n })))
}

/// Body of `POST /api/settings/privacy`.
#[derive(Deserialize)]
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
}

/// `POST /api/settings/privacy`: change the global or the library's privacy mode.
pub async fn set_privacy(
    State(engine): Shared,
    Json(req): Json<PrivacyRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_privacy_value(&engine, req).await.map(Json)
}

/// Change the privacy settings; returns the settings after the change.
pub async fn set_privacy_value(
    engine: &Engine,
    req: PrivacyRequest,
) -> Result<serde_json::Value, ApiError> {
    use quarry_core::cloud::Settings;
    if req.library || req.never_leaves_device.is_some() {
        let mut lib = quarry_core::Library::open(&engine.library_dir).await?;
        let mut p = lib.meta().privacy.clone();
        if req.library {
            p.mode = req.mode;
        }
        if let Some(flag) = req.never_leaves_device {
            p.never_leaves_device = flag;
        }
        lib.set_privacy(p)?;
        engine.reload().await;
    } else if let Some(mode) = req.mode {
        let mut s = Settings::load(&engine.config_dir)?;
        s.privacy = mode;
        s.save(&engine.config_dir)?;
    }
    settings_value(engine)
}

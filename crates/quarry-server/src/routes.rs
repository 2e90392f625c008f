//! Quarry's own JSON/SSE endpoints under `/api`: each route reads its
//! request, makes the application layer's call and sends the typed view.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures::Stream;
use quarry_app::calls::{
    self, AskRequest, DocumentQuery, IndexRequest, OpenRequest, PrivacyRequest, RemoveRequest,
    SearchQuery,
};
use quarry_app::models::{FetchRequest, ImportRequest};
use quarry_app::tasks::{
    self, ExtractRequest, ExtractUpdate, SaveSchemaRequest, SchemaName, SummarizeRequest,
    SummaryUpdate,
};
use quarry_app::views::{
    AskEvent, DocumentView, ImportedView, ModelsView, OpenedView, RemovedView, SearchView,
    SettingsView, StatusView, StoppingView,
};
use quarry_app::{AppError, Engine, IndexProgress};
use quarry_core::tasks::saved::SavedSchema;
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream};
use tokio_stream::StreamExt;

use crate::error::ApiError;

type Shared = State<Arc<Engine>>;
type Reply<T> = Result<Json<T>, ApiError>;

/// `GET /api/status`: the library's counts, failures and indexing progress.
pub async fn status(State(engine): Shared) -> Reply<StatusView> {
    Ok(Json(calls::status(&engine).await?))
}

/// `GET /api/status/stream`: SSE of indexing progress (`progress` events;
/// the current state first).
pub async fn status_stream(
    State(engine): Shared,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe first, then read the state: an update in between is not lost.
    let updates = BroadcastStream::new(engine.subscribe()).filter_map(|u| u.ok());
    let first = engine.progress();
    let stream = tokio_stream::once(first)
        .chain(updates)
        .map(|p| Ok(event("progress", &p)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `POST /api/index`: add folders and index them in the background.
pub async fn index(
    State(engine): Shared,
    Json(req): Json<IndexRequest>,
) -> Result<(StatusCode, Json<IndexProgress>), ApiError> {
    calls::index(&engine, req)?;
    Ok((StatusCode::ACCEPTED, Json(engine.progress())))
}

/// `GET /api/search?q=…`: hybrid (or vector / keyword) search with snippets.
pub async fn search(State(engine): Shared, Query(q): Query<SearchQuery>) -> Reply<SearchView> {
    Ok(Json(calls::search(&engine, q).await?))
}

fn event(name: &str, data: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}

/// `POST /api/ask`: an SSE stream of the answer's events (see
/// [`AskEvent`]): the event's name, its data as JSON.
pub async fn ask(
    State(engine): Shared,
    Json(req): Json<AskRequest>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        // A closed stream (the client left) stops generation.
        let mut sink = |e: AskEvent| tx.send(event(e.name(), &e.data())).is_ok();
        if let Err(e) = calls::answer_blocking(&engine, &handle, &req, &mut sink) {
            sink(AskEvent::Error(e));
        }
    });
    Sse::new(UnboundedReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// `POST /api/extract`: an SSE stream of an extraction run (see
/// [`ExtractUpdate`]); leaving the stream stops the run (what is done is kept).
pub async fn extract(
    State(engine): Shared,
    Json(req): Json<ExtractRequest>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sink = |e: ExtractUpdate| tx.send(event(e.name(), &e.data())).is_ok();
        if let Err(e) = tasks::extract_blocking(&engine, &handle, &req, &mut sink) {
            sink(ExtractUpdate::Error(e));
        }
    });
    Sse::new(UnboundedReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// `POST /api/summarize`: a document's summary as server-sent events
/// (`reading` progress, `token` text, then `done` with the cited passages).
pub async fn summarize(
    State(engine): Shared,
    Json(req): Json<SummarizeRequest>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sink = |e: SummaryUpdate| tx.send(event(e.name(), &e.data())).is_ok();
        if let Err(e) = tasks::summarize_blocking(&engine, &handle, &req, &mut sink) {
            sink(SummaryUpdate::Error(e));
        }
    });
    Sse::new(UnboundedReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::default())
}

/// `POST /api/extract/table`: the kept results of an extraction as a CSV,
/// XLSX or JSON file.
pub async fn extract_table(
    State(engine): Shared,
    Json(req): Json<ExtractRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let (bytes, mime) = tasks::table(&engine, &req).await?;
    let ext = req.format.as_deref().unwrap_or("json");
    let disposition = format!("attachment; filename=\"extraction.{ext}\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, mime.to_string()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /api/schemas`: the extraction schemas saved in the library.
pub async fn schemas(State(engine): Shared) -> Reply<Vec<SavedSchema>> {
    Ok(Json(tasks::schemas(&engine)?))
}

/// `PUT /api/schemas`: save a schema with the library under a name.
pub async fn save_schema(
    State(engine): Shared,
    Json(req): Json<SaveSchemaRequest>,
) -> Reply<SavedSchema> {
    Ok(Json(tasks::save_schema(&engine, &req)?))
}

/// `DELETE /api/schemas?name=…`: delete a saved schema (404 when none).
pub async fn delete_schema(
    State(engine): Shared,
    Query(q): Query<SchemaName>,
) -> Result<StatusCode, ApiError> {
    tasks::delete_schema(&engine, &q.name)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/audit`: every outbound request recorded for this library.
pub async fn audit(State(engine): Shared) -> Result<Json<serde_json::Value>, ApiError> {
    let entries = quarry_core::cloud::audit::read(&engine.library_dir)?;
    Ok(Json(serde_json::json!({ "entries": entries })))
}

/// `GET /api/agents`: whether agents may read the library, the snippet to
/// connect one (this `quarry` binary over stdio), and what they read.
pub async fn agents(State(engine): Shared) -> Reply<quarry_app::agents::AgentsView> {
    let binary = std::env::current_exe().unwrap_or_else(|_| "quarry".into());
    Ok(Json(quarry_app::agents::agents_view(&engine, &binary)?))
}

/// `GET /api/settings`: the privacy modes (global, library, in force) and the
/// providers with where their keys come from — never the keys.
pub async fn settings(State(engine): Shared) -> Reply<SettingsView> {
    Ok(Json(calls::settings(&engine)?))
}

/// `POST /api/settings/privacy`: change the global or the library's privacy mode.
pub async fn set_privacy(
    State(engine): Shared,
    Json(req): Json<PrivacyRequest>,
) -> Reply<SettingsView> {
    Ok(Json(calls::set_privacy(&engine, req).await?))
}

/// `GET /api/document?path=…`: the extracted text of a document inside the
/// library's folders (for the preview pane); anything else is refused.
pub async fn document(
    State(engine): Shared,
    Query(q): Query<DocumentQuery>,
) -> Reply<DocumentView> {
    Ok(Json(calls::document(&engine, q).await?))
}

/// `GET /api/models`: the registry's models and the current fetch.
pub async fn models(State(engine): Shared) -> Reply<ModelsView> {
    let e = engine.clone();
    let view = tokio::task::spawn_blocking(move || {
        quarry_app::models::models_view(&e.models, &quarry_app::models::in_use(&e))
    })
    .await
    .map_err(AppError::from)?;
    Ok(Json(view))
}

/// `POST /api/models/fetch`: start fetching a model.
pub async fn fetch_model(
    State(engine): Shared,
    Json(req): Json<FetchRequest>,
) -> Reply<quarry_app::models::FetchProgress> {
    engine.models.start_fetch(&req.id)?;
    Ok(Json(engine.models.progress()))
}

/// `POST /api/models/probe`: measure this machine's speed again (a few
/// seconds) for the answer-model recommendation; returns the models.
pub async fn probe_models(State(engine): Shared) -> Reply<ModelsView> {
    let e = engine.clone();
    let view = tokio::task::spawn_blocking(move || {
        e.models.probe_machine()?;
        Ok::<_, AppError>(quarry_app::models::models_view(
            &e.models,
            &quarry_app::models::in_use(&e),
        ))
    })
    .await
    .map_err(AppError::from)??;
    Ok(Json(view))
}

/// `POST /api/models/use`: `{"id"}`, the answer model from the next
/// question on and at the next start (`null`: the registry's default).
pub async fn use_model(
    State(engine): Shared,
    Json(req): Json<quarry_app::models::UseRequest>,
) -> Reply<ModelsView> {
    let e = engine.clone();
    tokio::task::spawn_blocking(move || quarry_app::models::use_generator(&e.models, &e, req.id))
        .await
        .map_err(AppError::from)??;
    models(State(engine)).await
}

/// `POST /api/models/import`: install a model from this machine.
pub async fn import_model(
    State(engine): Shared,
    Json(req): Json<ImportRequest>,
) -> Reply<ImportedView> {
    Ok(Json(quarry_app::models::import(&engine.models, req).await?))
}

/// `POST /api/open`: open an indexed document in the system's viewer.
pub async fn open(State(engine): Shared, Json(req): Json<OpenRequest>) -> Reply<OpenedView> {
    Ok(Json(calls::open(&engine, req).await?))
}

/// `POST /api/index/cancel`: stop the running job after its current batch.
/// (A JSON body is required, so a page on another origin cannot send it
/// without a CORS preflight, which this server never grants.)
pub async fn cancel_index(
    State(engine): Shared,
    Json(_): Json<serde_json::Value>,
) -> Json<StoppingView> {
    Json(StoppingView {
        stopping: engine.cancel_indexing(),
    })
}

/// `POST /api/embedder`: switch meaning search to another installed embedder
/// (a background job; its progress comes as indexing's).
pub async fn switch_embedder(
    State(engine): Shared,
    Json(req): Json<calls::EmbedderRequest>,
) -> Result<(StatusCode, Json<IndexProgress>), ApiError> {
    calls::switch_embedder(&engine, req)?;
    Ok((StatusCode::ACCEPTED, Json(engine.progress())))
}

/// `POST /api/folders/remove`: take a folder and its documents out of the library.
pub async fn remove_folder(
    State(engine): Shared,
    Json(req): Json<RemoveRequest>,
) -> Reply<RemovedView> {
    Ok(Json(calls::remove_folder(&engine, req).await?))
}

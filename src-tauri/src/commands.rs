//! The commands the UI invokes: each translates to a call on the engine
//! (shared with `quarry serve`), errors as `{code, message}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use quarry_core::dirs::Dirs;
use quarry_core::models::{ModelStore, Registry};
use quarry_core::Library;
use quarry_server::api::{self, AskRequest, DocumentQuery, PrivacyRequest, SearchQuery};
use quarry_server::models::{ImportRequest, ModelManager};
use quarry_server::{ApiError, Engine, EngineParts};
use serde::Serialize;
use serde_json::Value;
use tauri::ipc::Channel;
use tauri::State;

/// An error as the UI shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UiError {
    code: String,
    message: String,
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<quarry_core::Error> for UiError {
    fn from(e: quarry_core::Error) -> Self {
        ApiError::from(e).into()
    }
}

type R<T> = Result<T, UiError>;

/// The engine, opened on first need (and again after a failed attempt, e.g.
/// once its models are fetched), and the models, usable before it opens.
pub struct EngineCell {
    engine: tokio::sync::OnceCell<Arc<Engine>>,
    dirs: Dirs,
    models: Arc<ModelManager>,
    app: tauri::AppHandle,
}

impl EngineCell {
    /// The cell for the default locations (platform dirs, or the QUARRY_*_DIR
    /// variables).
    pub fn new(app: tauri::AppHandle) -> Self {
        let dirs = Dirs::from_env(|k| std::env::var_os(k));
        let store = ModelStore::new(dirs.models.clone(), Registry::builtin());
        EngineCell {
            engine: tokio::sync::OnceCell::new(),
            dirs,
            models: Arc::new(ModelManager::new(store)),
            app,
        }
    }

    /// The engine (opening the library and the embedder the first time; from
    /// then on indexing progress goes to the window as `progress` events).
    pub async fn get(&self) -> R<Arc<Engine>> {
        self.engine
            .get_or_try_init(|| async {
                let dirs = self.dirs.clone();
                let models = self.models.clone();
                let engine = tokio::task::spawn_blocking(move || open_engine(&dirs, models))
                    .await
                    .map_err(|e| UiError {
                        code: "internal".into(),
                        message: e.to_string(),
                    })??;
                tauri::async_runtime::spawn(forward_progress(self.app.clone(), engine.clone()));
                // Vectors a closed or stopped run did not finish are made now,
                // in the background (searches work by keyword meanwhile).
                engine.resume_embedding().await;
                engine.keep_fresh();
                Ok(engine)
            })
            .await
            .cloned()
    }
}

async fn forward_progress(app: tauri::AppHandle, engine: Arc<Engine>) {
    use tauri::Emitter;
    let mut updates = engine.subscribe();
    loop {
        match updates.recv().await {
            Ok(p) => {
                let _ = app.emit("progress", p);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
}

/// Open the library with its embedder; the generator loads when first asked.
fn open_engine(dirs: &Dirs, models: Arc<ModelManager>) -> R<Arc<Engine>> {
    let runtime = tokio::runtime::Handle::current();
    let (library, embedder) =
        runtime.block_on(Library::open_with_embedder(&dirs.library, &models.store))?;
    Ok(Engine::new(EngineParts::standard(
        library,
        embedder,
        models,
        None,
        dirs.config.clone(),
    )?))
}

#[tauri::command]
pub async fn status(cell: State<'_, EngineCell>) -> R<Value> {
    let engine = cell.get().await?;
    Ok(api::status_value(&engine).await?)
}

#[tauri::command]
pub async fn index(cell: State<'_, EngineCell>, paths: Vec<PathBuf>) -> R<Value> {
    let engine = cell.get().await?;
    engine.start_indexing(paths)?;
    Ok(serde_json::to_value(engine.progress()).unwrap_or_default())
}

#[tauri::command]
pub async fn cancel_indexing(cell: State<'_, EngineCell>) -> R<bool> {
    Ok(cell.get().await?.cancel_indexing())
}

#[tauri::command]
pub async fn remove_folder(cell: State<'_, EngineCell>, path: PathBuf) -> R<usize> {
    Ok(cell.get().await?.remove_folder(&path).await?)
}

#[tauri::command]
pub async fn search(cell: State<'_, EngineCell>, query: SearchQuery) -> R<Value> {
    let engine = cell.get().await?;
    Ok(api::search_value(&engine, query).await?)
}

/// The answers being written, by the id the UI gave them, so Stop can end one.
#[derive(Default)]
pub struct Asks(Mutex<HashMap<u64, Arc<AtomicBool>>>);

/// Answer events go over `on_event` as `{event, data}`, like the server's SSE;
/// `cancel_ask(ask_id)` stops the answer after its current token.
#[tauri::command]
pub async fn ask(
    cell: State<'_, EngineCell>,
    asks: State<'_, Asks>,
    request: AskRequest,
    ask_id: u64,
    on_event: Channel<Value>,
) -> R<()> {
    let engine = cell.get().await?;
    let stop = Arc::new(AtomicBool::new(false));
    lock(&asks.0).insert(ask_id, stop.clone());
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut sink = |name: &str, data: Value| {
            !stop.load(Ordering::Relaxed)
                && on_event
                    .send(serde_json::json!({ "event": name, "data": data }))
                    .is_ok()
        };
        api::answer_blocking(&engine, &handle, &request, &mut sink)
    })
    .await;
    lock(&asks.0).remove(&ask_id);
    result.map_err(|e| UiError {
        code: "internal".into(),
        message: e.to_string(),
    })??;
    Ok(())
}

/// Stop the answer `ask_id` (the UI's Stop button); false if it had ended.
#[tauri::command]
pub fn cancel_ask(asks: State<'_, Asks>, ask_id: u64) -> bool {
    match lock(&asks.0).get(&ask_id) {
        Some(flag) => {
            flag.store(true, Ordering::Relaxed);
            true
        }
        None => false,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The native folder picker; the chosen folder, or nothing if cancelled.
#[tauri::command]
pub async fn pick_folder(app: tauri::AppHandle) -> R<Option<String>> {
    use tauri_plugin_dialog::DialogExt;
    let dialog = app.dialog().file().set_title("Add a folder to the library");
    Ok(picked(|send| dialog.pick_folder(send)).await)
}

/// Run a native picker (`open` starts it with the callback that receives the
/// choice) and wait for the choice, as a path.
async fn picked(
    open: impl FnOnce(Box<dyn FnOnce(Option<tauri_plugin_dialog::FilePath>) + Send>),
) -> Option<String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    open(Box::new(move |choice| {
        let _ = tx.send(choice);
    }));
    rx.await
        .ok()
        .flatten()
        .and_then(|f| f.into_path().ok())
        .map(|p| p.to_string_lossy().into_owned())
}

/// Open an indexed document in the system's viewer (at the page for PDFs
/// where the viewer allows).
#[tauri::command]
pub async fn open_document(
    cell: State<'_, EngineCell>,
    path: PathBuf,
    page: Option<u32>,
) -> R<Value> {
    let engine = cell.get().await?;
    Ok(api::open_value(&engine, api::OpenRequest { path, page }).await?)
}

#[tauri::command]
pub async fn document(cell: State<'_, EngineCell>, path: PathBuf) -> R<Value> {
    let engine = cell.get().await?;
    Ok(api::document_value(&engine, DocumentQuery { path }).await?)
}

#[tauri::command]
pub async fn settings(cell: State<'_, EngineCell>) -> R<Value> {
    let engine = cell.get().await?;
    Ok(api::settings_value(&engine)?)
}

#[tauri::command]
pub async fn set_privacy(cell: State<'_, EngineCell>, change: PrivacyRequest) -> R<Value> {
    let engine = cell.get().await?;
    Ok(api::set_privacy_value(&engine, change).await?)
}

/// The registry's models: installed, in use, size; the current fetch. Works
/// before the engine opens (a first run fetches its models here).
#[tauri::command]
pub async fn models(cell: State<'_, EngineCell>) -> R<Value> {
    let models = cell.models.clone();
    let engine = cell.engine.get().cloned();
    tokio::task::spawn_blocking(move || {
        let in_use = engine
            .as_deref()
            .map(quarry_server::models::in_use)
            .unwrap_or_default();
        quarry_server::models::models_value(&models, &in_use)
    })
    .await
    .map_err(|e| UiError {
        code: "internal".into(),
        message: e.to_string(),
    })
}

/// Start fetching a model (progress in `models`).
#[tauri::command]
pub fn fetch_model(cell: State<'_, EngineCell>, id: String) -> R<()> {
    Ok(cell.models.start_fetch(&id)?)
}

/// Install a model from a GGUF file or a model folder on this machine.
#[tauri::command]
pub async fn import_model(
    cell: State<'_, EngineCell>,
    path: PathBuf,
    id: Option<String>,
) -> R<Value> {
    Ok(quarry_server::models::import_value(&cell.models, ImportRequest { path, id }).await?)
}

/// The native file picker for a model file (GGUF); nothing if cancelled.
#[tauri::command]
pub async fn pick_model_file(app: tauri::AppHandle) -> R<Option<String>> {
    use tauri_plugin_dialog::DialogExt;
    let dialog = app
        .dialog()
        .file()
        .set_title("Import a model file")
        .add_filter("GGUF model", &["gguf"]);
    Ok(picked(|send| dialog.pick_file(send)).await)
}

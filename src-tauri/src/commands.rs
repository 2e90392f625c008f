//! The commands the UI invokes: each is one call of the application layer
//! (`quarry-app`, shared with `quarry serve` and the CLI), typed views in,
//! errors as `{code, message}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use quarry_app::agents::HttpEndpoint;
use quarry_app::calls::{
    self, AskRequest, DocumentQuery, IndexRequest, OpenRequest, PrivacyRequest, RemoveRequest,
    SearchQuery,
};
use quarry_app::models::{self as app_models, ImportRequest, ModelManager};
use quarry_app::tasks::{
    self, ExtractRequest, ExtractUpdate, SaveSchemaRequest, SummarizeRequest, SummaryUpdate,
};
use quarry_app::views::{
    AskEvent, DocumentView, ImportedView, ModelsView, OpenedView, RemovedView, SearchView,
    SettingsView, StatusView,
};
use quarry_app::{AppError, Engine, EngineParts, IndexProgress};
use quarry_core::dirs::Dirs;
use quarry_core::models::{ModelStore, Registry};
use quarry_core::tasks::saved::SavedSchema;
use quarry_core::Library;
use tauri::ipc::Channel;
use tauri::State;

/// Errors reach the UI as `{code, message}`.
type R<T> = Result<T, AppError>;

/// The engine, opened on first need (and again after a failed attempt, e.g.
/// once its models are fetched, or after it was closed to encrypt the
/// library), and the models, usable before it opens.
pub struct EngineCell {
    engine: tokio::sync::Mutex<Option<Arc<Engine>>>,
    dirs: Dirs,
    models: Arc<ModelManager>,
    app: tauri::AppHandle,
}

impl EngineCell {
    /// The cell for the default locations (platform dirs, or the QUARRY_*_DIR
    /// variables).
    pub fn new(app: tauri::AppHandle) -> Self {
        let dirs = Dirs::from_env(|k| std::env::var_os(k));
        let choice = quarry_core::cloud::Settings::load(&dirs.config)
            .map_err(|e| eprintln!("warning: {e}; using the default answer model"))
            .ok()
            .and_then(|s| s.generator);
        let store =
            ModelStore::new(dirs.models.clone(), Registry::builtin()).with_generator_choice(choice);
        let models = Arc::new(ModelManager::new(store).with_config_dir(dirs.config.clone()));
        EngineCell {
            engine: tokio::sync::Mutex::new(None),
            dirs,
            models,
            app,
        }
    }

    /// The engine (opening the library and the embedder the first time; from
    /// then on indexing progress goes to the window as `progress` events).
    pub async fn get(&self) -> R<Arc<Engine>> {
        let mut cell = self.engine.lock().await;
        if let Some(engine) = cell.as_ref() {
            return Ok(engine.clone());
        }
        let dirs = self.dirs.clone();
        let models = self.models.clone();
        let engine = tokio::task::spawn_blocking(move || open_engine(&dirs, models)).await??;
        tauri::async_runtime::spawn(forward_progress(self.app.clone(), engine.clone()));
        // Vectors a closed or stopped run did not finish are made now, in
        // the background (searches work by keyword meanwhile).
        engine.resume_embedding().await;
        engine.keep_fresh();
        *cell = Some(engine.clone());
        Ok(engine)
    }

    /// The engine if it is open (without opening it).
    async fn opened(&self) -> Option<Arc<Engine>> {
        self.engine.lock().await.clone()
    }

    /// Close the engine and run `work` on the library folder while nothing
    /// has it open; the next call opens it again. Refused while an indexing
    /// run, an answer, an extraction or the agents' endpoint still holds the
    /// engine.
    async fn with_library_closed<T: Send + 'static>(
        &self,
        work: impl FnOnce(&std::path::Path) -> R<T> + Send + 'static,
    ) -> R<T> {
        let mut cell = self.engine.lock().await;
        if let Some(engine) = cell.take() {
            if engine.progress().running {
                *cell = Some(engine);
                return Err(AppError::user(
                    "locked",
                    "the library is being indexed; stop or wait for the run first",
                ));
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while Arc::strong_count(&engine) > 1 && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            if Arc::strong_count(&engine) > 1 {
                *cell = Some(engine);
                return Err(AppError::user(
                    "locked",
                    "the library is in use (an answer, an extraction, or the agents' endpoint under Settings); stop it and try again",
                ));
            }
        }
        let dir = self.dirs.library.clone();
        tokio::task::spawn_blocking(move || work(&dir))
            .await
            .map_err(AppError::internal)?
    }
}

/// Send the engine's progress to the window for as long as the engine
/// lives (holding only its channel, so closing the engine ends this).
async fn forward_progress(app: tauri::AppHandle, engine: Arc<Engine>) {
    use tauri::Emitter;
    let mut updates = engine.subscribe();
    drop(engine);
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
    // The answer model chosen in Settings, read now: it may have changed
    // since the app started.
    let chosen = quarry_core::cloud::Settings::load(&dirs.config)?.generator;
    Ok(Engine::new(EngineParts::standard(
        library,
        embedder,
        models,
        chosen,
        dirs.config.clone(),
    )?))
}

/// Unlock the encrypted library with its passphrase (the next call opens it).
#[tauri::command]
pub async fn unlock_library(cell: State<'_, EngineCell>, passphrase: String) -> R<()> {
    let dir = cell.dirs.library.clone();
    tokio::task::spawn_blocking(move || calls::unlock_library(&dir, &passphrase))
        .await
        .map_err(AppError::internal)?
}

/// Encrypt the library in place under `passphrase` (or, when `None`, a key
/// kept in the OS keychain): the engine is closed, every file rewritten
/// sealed, and the library opens again, with its key, on the next call.
#[tauri::command]
pub async fn encrypt_library(cell: State<'_, EngineCell>, passphrase: Option<String>) -> R<()> {
    cell.with_library_closed(move |dir| calls::encrypt_library(dir, passphrase.as_deref()))
        .await
}

/// Replace the encrypted library's key (every file resealed, the old key
/// destroyed): `current` opens it (passphrase libraries); the new key is
/// wrapped under `new`, or kept in the OS keychain when `None`.
#[tauri::command]
pub async fn rekey_library(
    cell: State<'_, EngineCell>,
    current: Option<String>,
    new: Option<String>,
) -> R<()> {
    cell.with_library_closed(move |dir| {
        calls::rekey_library(dir, current.as_deref(), new.as_deref())
    })
    .await
}

/// The library's counts, failures, privacy and indexing progress.
#[tauri::command]
pub async fn status(cell: State<'_, EngineCell>) -> R<StatusView> {
    calls::status(&*cell.get().await?).await
}

/// Add folders and index them in the background.
#[tauri::command]
pub async fn index(cell: State<'_, EngineCell>, paths: Vec<PathBuf>) -> R<IndexProgress> {
    let engine = cell.get().await?;
    calls::index(&engine, IndexRequest { paths })?;
    Ok(engine.progress())
}

/// Stop indexing after the current batch; false when nothing runs.
#[tauri::command]
pub async fn cancel_indexing(cell: State<'_, EngineCell>) -> R<bool> {
    Ok(cell.get().await?.cancel_indexing())
}

/// Switch meaning search to another installed embedder (in the background).
#[tauri::command]
pub async fn switch_embedder(cell: State<'_, EngineCell>, embedder: String) -> R<IndexProgress> {
    let engine = cell.get().await?;
    calls::switch_embedder(&engine, calls::EmbedderRequest { embedder })?;
    Ok(engine.progress())
}

/// Take a folder and its documents out of the library.
#[tauri::command]
pub async fn remove_folder(cell: State<'_, EngineCell>, path: PathBuf) -> R<RemovedView> {
    let engine = cell.get().await?;
    calls::remove_folder(&engine, RemoveRequest { path }).await
}

/// Hits (with snippets and highlight ranges) for a search.
#[tauri::command]
pub async fn search(cell: State<'_, EngineCell>, query: SearchQuery) -> R<SearchView> {
    calls::search(&*cell.get().await?, query).await
}

/// The answers being written, by the id the UI gave them, so Stop can end one.
#[derive(Default)]
pub struct Asks(Mutex<HashMap<u64, Arc<AtomicBool>>>);

/// Answer events go over `on_event` as `{event, data}` ([`AskEvent`]), like
/// the server's SSE; `cancel_ask(ask_id)` stops the answer after its current
/// token.
#[tauri::command]
pub async fn ask(
    cell: State<'_, EngineCell>,
    asks: State<'_, Asks>,
    request: AskRequest,
    ask_id: u64,
    on_event: Channel<AskEvent>,
) -> R<()> {
    let engine = cell.get().await?;
    streamed(&asks, ask_id, on_event, move |handle, sink| {
        calls::answer_blocking(&engine, handle, &request, sink)
    })
    .await
}

/// Run `work` on a blocking thread under the stop flag `run_id` (set by
/// `cancel_ask`), its updates going to the UI's channel; the run is over,
/// and forgotten, when this returns.
async fn streamed<U, F>(asks: &Asks, run_id: u64, on_event: Channel<U>, work: F) -> R<()>
where
    U: tauri::ipc::IpcResponse + Clone + Send + 'static,
    F: FnOnce(&tokio::runtime::Handle, &mut dyn FnMut(U) -> bool) -> R<()> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    lock(&asks.0).insert(run_id, stop.clone());
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut sink = |e: U| !stop.load(Ordering::Relaxed) && on_event.send(e).is_ok();
        work(&handle, &mut sink)
    })
    .await;
    lock(&asks.0).remove(&run_id);
    result?
}

/// Run an extraction, sending each update to the UI's channel; `run_id`
/// stops it through `cancel_ask` (what is done is kept).
#[tauri::command]
pub async fn extract(
    cell: State<'_, EngineCell>,
    asks: State<'_, Asks>,
    request: ExtractRequest,
    run_id: u64,
    on_event: Channel<ExtractUpdate>,
) -> R<()> {
    let engine = cell.get().await?;
    streamed(&asks, run_id, on_event, move |handle, sink| {
        tasks::extract_blocking(&engine, handle, &request, sink)
    })
    .await
}

/// Summarise a document, sending each update to the UI's channel; `run_id`
/// stops it through `cancel_ask` (a stopped summary is not kept).
#[tauri::command]
pub async fn summarize(
    cell: State<'_, EngineCell>,
    asks: State<'_, Asks>,
    request: SummarizeRequest,
    run_id: u64,
    on_event: Channel<SummaryUpdate>,
) -> R<()> {
    let engine = cell.get().await?;
    streamed(&asks, run_id, on_event, move |handle, sink| {
        tasks::summarize_blocking(&engine, handle, &request, sink)
    })
    .await
}

/// Save the kept results of an extraction as a table where the user
/// chooses; the path, or nothing if the save dialog was cancelled.
#[tauri::command]
pub async fn export_table(
    app: tauri::AppHandle,
    cell: State<'_, EngineCell>,
    request: ExtractRequest,
) -> R<Option<String>> {
    use tauri_plugin_dialog::DialogExt;
    let format = request.format.clone().unwrap_or_else(|| "json".into());
    let (bytes, _) = tasks::table(&*cell.get().await?, &request).await?;
    let dialog = app
        .dialog()
        .file()
        .set_title("Save the table")
        .set_file_name(format!("extraction.{format}"));
    let Some(path) = picked(|send| dialog.save_file(send)).await else {
        return Ok(None);
    };
    quarry_core::fsio::write_atomically(std::path::Path::new(&path), &bytes)?;
    Ok(Some(path))
}

/// The extraction schemas saved with the library.
#[tauri::command]
pub async fn schemas(cell: State<'_, EngineCell>) -> R<Vec<SavedSchema>> {
    tasks::schemas(&*cell.get().await?)
}

/// Save an extraction schema with the library under a name.
#[tauri::command]
pub async fn save_schema(
    cell: State<'_, EngineCell>,
    request: SaveSchemaRequest,
) -> R<SavedSchema> {
    tasks::save_schema(&*cell.get().await?, &request)
}

/// Delete a saved extraction schema.
#[tauri::command]
pub async fn delete_schema(cell: State<'_, EngineCell>, name: String) -> R<()> {
    tasks::delete_schema(&*cell.get().await?, &name)
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
) -> R<OpenedView> {
    calls::open(&*cell.get().await?, OpenRequest { path, page }).await
}

/// A document's extracted text, for the preview pane.
#[tauri::command]
pub async fn document(cell: State<'_, EngineCell>, path: PathBuf) -> R<DocumentView> {
    calls::document(&*cell.get().await?, DocumentQuery { path }).await
}

/// The privacy modes and providers (never keys).
#[tauri::command]
pub async fn settings(cell: State<'_, EngineCell>) -> R<SettingsView> {
    calls::settings(&*cell.get().await?)
}

/// Change the privacy settings.
#[tauri::command]
pub async fn set_privacy(cell: State<'_, EngineCell>, change: PrivacyRequest) -> R<SettingsView> {
    calls::set_privacy(&*cell.get().await?, change).await
}

/// Whether agents may read the library, the snippet to connect one (this
/// app's binary, `quarry-desktop mcp`), and what they read.
#[tauri::command]
pub async fn agents(cell: State<'_, EngineCell>) -> R<quarry_app::agents::AgentsView> {
    let engine = cell.get().await?;
    let binary = std::env::current_exe().map_err(AppError::internal)?;
    quarry_app::agents::agents_view(&engine, &binary)
}

/// The app's MCP-over-HTTP endpoint while it runs: how to stop it, and its address.
#[derive(Default)]
pub struct AgentsEndpoint(Mutex<Option<(tokio::sync::oneshot::Sender<()>, HttpEndpoint)>>);

/// Start (`on`) or stop the MCP endpoint over HTTP, on loopback only; its
/// address and token while it runs (`http://127.0.0.1:PORT/mcp`).
#[tauri::command]
pub async fn serve_agents(
    cell: State<'_, EngineCell>,
    endpoint: State<'_, AgentsEndpoint>,
    on: bool,
) -> R<Option<HttpEndpoint>> {
    if !on {
        if let Some((stop, _)) = endpoint.0.lock().expect("endpoint lock").take() {
            let _ = stop.send(());
        }
        return Ok(None);
    }
    if let Some((_, serving)) = endpoint.0.lock().expect("endpoint lock").as_ref() {
        return Ok(Some(serving.clone()));
    }
    let engine = cell.get().await?;
    // Locked like `quarry serve`: the same user's token, on loopback too.
    let token = quarry_app::server_token::server_token(&cell.dirs.config)?;
    let options = quarry_server::ServeOptions {
        addr: quarry_app::agents::endpoint_addr(),
        token: Some(token.clone()),
        ui_dir: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound, address) = tokio::sync::oneshot::channel();
    let server = quarry_server::serve(
        engine,
        options,
        move |addr| {
            let _ = bound.send(addr);
        },
        async move {
            let _ = stopped.await;
        },
    );
    let failed = tauri::async_runtime::spawn(server);
    let addr = match address.await {
        Ok(addr) => addr,
        Err(_) => {
            let why = match failed.await {
                Ok(Err(e)) => e.to_string(),
                _ => "it stopped at once".into(),
            };
            return Err(AppError::user(
                "serve_failed",
                format!("could not serve agents over HTTP: {why}"),
            ));
        }
    };
    let serving = HttpEndpoint {
        url: format!("http://{addr}/mcp"),
        token,
    };
    *endpoint.0.lock().expect("endpoint lock") = Some((stop, serving.clone()));
    Ok(Some(serving))
}

/// The registry's models: installed, in use, size; the current fetch. Works
/// before the engine opens (a first run fetches its models here).
#[tauri::command]
pub async fn models(cell: State<'_, EngineCell>) -> R<ModelsView> {
    models_view_now(&cell).await
}

async fn models_view_now(cell: &EngineCell) -> R<ModelsView> {
    let models = cell.models.clone();
    let engine = cell.opened().await;
    Ok(tokio::task::spawn_blocking(move || {
        let in_use = engine
            .as_deref()
            .map(app_models::in_use)
            .unwrap_or_default();
        app_models::models_view(&models, &in_use)
    })
    .await?)
}

/// Start fetching a model (progress in `models`).
#[tauri::command]
pub fn fetch_model(cell: State<'_, EngineCell>, id: String) -> R<()> {
    cell.models.start_fetch(&id)
}

/// Measure this machine again for the answer-model recommendation.
#[tauri::command]
pub async fn probe_models(cell: State<'_, EngineCell>) -> R<ModelsView> {
    let models = cell.models.clone();
    tokio::task::spawn_blocking(move || models.probe_machine()).await??;
    models_view_now(&cell).await
}

/// Answer with this model from the next question on (`None`: the default).
#[tauri::command]
pub async fn use_model(cell: State<'_, EngineCell>, id: Option<String>) -> R<ModelsView> {
    let models = cell.models.clone();
    match cell.opened().await {
        Some(engine) => {
            tokio::task::spawn_blocking(move || app_models::use_generator(&models, &engine, id))
                .await??
        }
        None => models.choose_generator(id)?,
    }
    models_view_now(&cell).await
}

/// Install a model from a GGUF file or a model folder on this machine.
#[tauri::command]
pub async fn import_model(
    cell: State<'_, EngineCell>,
    path: PathBuf,
    id: Option<String>,
) -> R<ImportedView> {
    app_models::import(&cell.models, ImportRequest { path, id }).await
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

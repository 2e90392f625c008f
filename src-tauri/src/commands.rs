//! The commands the UI invokes: each translates to a call on the engine
//! (shared with `quarry serve`), errors as `{code, message}`.

use std::path::PathBuf;
use std::sync::Arc;

use quarry_core::dirs::Dirs;
use quarry_core::generate::{LoadOptions, LocalModel};
use quarry_core::index::IndexOptions;
use quarry_core::models::{ModelRole, ModelStore, Registry};
use quarry_core::{Embedder, Library};
use quarry_server::api::{self, AskRequest, DocumentQuery, PrivacyRequest, SearchQuery};
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

/// The engine, opened on first need.
#[derive(Default)]
pub struct EngineCell(tokio::sync::OnceCell<Arc<Engine>>);

impl EngineCell {
    /// The engine (opening the library and the embedder the first time).
    pub async fn get(&self) -> R<Arc<Engine>> {
        self.0
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(open_engine)
                    .await
                    .map_err(|e| UiError {
                        code: "internal".into(),
                        message: e.to_string(),
                    })?
            })
            .await
            .cloned()
    }
}

/// Open the default library (platform data dir, or QUARRY_LIBRARY_DIR) with
/// its embedder; the generator loads when first asked.
fn open_engine() -> R<Arc<Engine>> {
    let dirs = Dirs::from_env(|k| std::env::var_os(k));
    let store = ModelStore::new(dirs.models.clone(), Registry::builtin());
    let runtime = tokio::runtime::Handle::current();
    let existing = runtime.block_on(Library::open(&dirs.library)).ok();
    let embedder_id = match &existing {
        Some(lib) => lib.meta().embedder.clone(),
        None => store
            .registry()
            .default_for(ModelRole::Embedder)
            .map(|m| m.id.clone())
            .ok_or_else(|| UiError {
                code: "registry".into(),
                message: "the registry has no default embedder".into(),
            })?,
    };
    let spec = store.registry().get(&embedder_id)?.clone();
    let embedder = Embedder::load(&store.require(&embedder_id)?, &spec)?;
    let library = match existing {
        Some(lib) => lib,
        None => runtime.block_on(Library::open_or_create(
            &dirs.library,
            embedder.id(),
            embedder.dim(),
        ))?,
    };
    let generator = store
        .registry()
        .default_for(ModelRole::Generator)
        .cloned()
        .ok_or_else(|| UiError {
            code: "registry".into(),
            message: "the registry has no default generator".into(),
        })?;
    let model_name = generator.id.clone();
    let models = store.clone();
    Ok(Engine::new(EngineParts {
        library,
        embedder,
        load_model: Box::new(move || {
            let dir = models.require(&generator.id)?;
            let file = generator
                .files
                .first()
                .map(|f| f.path.clone())
                .unwrap_or_default();
            LocalModel::load(
                &dir.join(file),
                &LoadOptions {
                    requantize_slow: true,
                    cache_dir: Some(models.root().join(".converted")),
                },
            )
        }),
        model_name,
        config_dir: dirs.config.clone(),
        cache_dir: store.root().join(".router"),
        index: IndexOptions::default(),
    }))
}

#[tauri::command]
pub async fn status(cell: State<'_, EngineCell>) -> R<Value> {
    Ok(api::status_value(&cell.get().await?).await?)
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
    Ok(api::search_value(&cell.get().await?, query).await?)
}

/// Answer events go over `on_event` as `{event, data}`, like the server's SSE.
#[tauri::command]
pub async fn ask(
    cell: State<'_, EngineCell>,
    request: AskRequest,
    on_event: Channel<Value>,
) -> R<()> {
    let engine = cell.get().await?;
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut sink = |name: &str, data: Value| {
            on_event
                .send(serde_json::json!({ "event": name, "data": data }))
                .is_ok()
        };
        api::answer_blocking(&engine, &handle, &request, &mut sink)
    })
    .await
    .map_err(|e| UiError {
        code: "internal".into(),
        message: e.to_string(),
    })??;
    Ok(())
}

#[tauri::command]
pub async fn document(cell: State<'_, EngineCell>, path: PathBuf) -> R<Value> {
    Ok(api::document_value(&cell.get().await?, DocumentQuery { path }).await?)
}

#[tauri::command]
pub async fn settings(cell: State<'_, EngineCell>) -> R<Value> {
    Ok(api::settings_value(&cell.get().await?)?)
}

#[tauri::command]
pub async fn set_privacy(cell: State<'_, EngineCell>, change: PrivacyRequest) -> R<Value> {
    Ok(api::set_privacy_value(&cell.get().await?, change).await?)
}

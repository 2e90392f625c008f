//! The models a front-end manages: what the registry knows and what is
//! installed, fetching one in the background with progress, and importing one
//! from a file or folder the user already has (offline machines).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use quarry_core::cloud::Settings;
use quarry_core::generate::machine::{self, MachineProfile, ModelFit};
use quarry_core::models::{FetchEvent, ModelStore};
use quarry_core::ErrorKind;
use serde::{Deserialize, Serialize};

use crate::error::{AppError, AppResult};
use crate::views::{ImportedView, ModelView, ModelsView};
use crate::Engine;

/// Progress of the current (or last) model fetch.
#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
pub struct FetchProgress {
    /// Whether a fetch is running.
    pub running: bool,
    /// The model being fetched.
    pub id: Option<String>,
    /// `idle`, `trying`, `downloading`, `verifying`, `done` or `failed`.
    pub phase: String,
    /// The source being tried, for people.
    pub source: Option<String>,
    /// The file being downloaded.
    pub file: Option<String>,
    /// Bytes of that file so far.
    pub bytes_done: u64,
    /// Its size (0 when unknown).
    pub bytes_total: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// The model store and its one background fetch.
pub struct ModelManager {
    /// Where models live.
    pub store: ModelStore,
    fetch: Mutex<FetchProgress>,
    /// The configuration folder (the machine's probe, the chosen answer
    /// model), when the front-end has one.
    config_dir: Option<PathBuf>,
}

/// A request to choose the answer model (`POST /api/models/use`).
#[derive(Debug, Deserialize, ts_rs::TS)]
pub struct UseRequest {
    /// Registry id of an installed generator; `null` for the registry's default.
    pub id: Option<String>,
}

/// A request to fetch a model (`POST /api/models/fetch`).
#[derive(Debug, Deserialize, ts_rs::TS)]
pub struct FetchRequest {
    /// Registry id.
    pub id: String,
}

/// A request to install a model from this machine (`POST /api/models/import`).
#[derive(Debug, Deserialize, ts_rs::TS)]
pub struct ImportRequest {
    /// A GGUF file or a model folder (safetensors + tokenizer).
    pub path: PathBuf,
    /// The registry id it is (when the files alone do not say).
    #[serde(default)]
    pub id: Option<String>,
}

impl ModelManager {
    /// A manager over `store`.
    pub fn new(store: ModelStore) -> Self {
        ModelManager {
            store,
            fetch: Mutex::new(FetchProgress {
                phase: "idle".into(),
                ..Default::default()
            }),
            config_dir: None,
        }
    }

    /// Keep the machine's probe and the chosen answer model in `dir`.
    pub fn with_config_dir(mut self, dir: PathBuf) -> Self {
        self.config_dir = Some(dir);
        self
    }

    fn config_dir(&self) -> AppResult<&Path> {
        self.config_dir.as_deref().ok_or_else(|| {
            AppError::from(quarry_core::Error::Internal(
                "this front-end keeps no configuration folder".into(),
            ))
        })
    }

    /// Probe this machine again (a few seconds; blocking) and keep the result.
    pub fn probe_machine(&self) -> AppResult<()> {
        MachineProfile::load_or_probe(self.config_dir()?, true)?;
        Ok(())
    }

    /// Choose the answer model (`None`: the registry's default), kept in the
    /// settings for the next start; it must be an installed generator. A
    /// running engine switches with [`Engine::switch_generator`] (see
    /// [`use_generator`]).
    pub fn choose_generator(&self, id: Option<String>) -> AppResult<()> {
        if let Some(id) = &id {
            let spec = self.store.registry().get(id)?;
            if spec.role != quarry_core::models::ModelRole::Generator {
                return Err(quarry_core::Error::InvalidInput(format!(
                    "{id} is not an answer model"
                ))
                .into());
            }
            self.store.require(id)?;
        }
        let dir = self.config_dir()?;
        let mut settings = Settings::load(dir)?;
        settings.generator = id;
        settings.save(dir)?;
        Ok(())
    }

    /// The current (or last) fetch.
    pub fn progress(&self) -> FetchProgress {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FetchProgress> {
        self.fetch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start fetching `id` in the background; fails at once for an unknown
    /// model or while another fetch runs.
    pub fn start_fetch(self: &Arc<Self>, id: &str) -> AppResult<()> {
        self.store.registry().get(id)?;
        {
            let mut p = self.lock();
            if p.running {
                return Err(AppError::new(
                    ErrorKind::Conflict,
                    "fetch_running",
                    format!(
                        "{} is being fetched; wait for it to finish",
                        p.id.as_deref().unwrap_or("a model")
                    ),
                ));
            }
            *p = FetchProgress {
                running: true,
                id: Some(id.to_string()),
                phase: "trying".into(),
                ..Default::default()
            };
        }
        let me = self.clone();
        let id = id.to_string();
        std::thread::spawn(move || {
            // A panic in a download must not leave the fetch "running" forever.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                me.store.fetch(&id, &mut |e| {
                    let mut p = me.lock();
                    match e {
                        FetchEvent::Trying { source } => {
                            p.phase = "trying".into();
                            p.source = Some(source);
                        }
                        FetchEvent::DownloadStart { file, total } => {
                            p.phase = "downloading".into();
                            p.file = Some(file);
                            p.bytes_done = 0;
                            p.bytes_total = total;
                        }
                        FetchEvent::DownloadProgress { bytes } => p.bytes_done += bytes,
                        FetchEvent::DownloadDone => {}
                        FetchEvent::Verifying => p.phase = "verifying".into(),
                    }
                })
            }));
            let mut p = me.lock();
            p.running = false;
            match result {
                Ok(Ok(_)) => p.phase = "done".into(),
                Ok(Err(e)) => {
                    p.phase = "failed".into();
                    p.error = Some(e.to_string());
                }
                Err(_) => {
                    p.phase = "failed".into();
                    p.error = Some("the download stopped unexpectedly; try again".into());
                }
            }
        });
        Ok(())
    }
}

/// Every registered model: installed or not, in use (`in_use` lists the ids
/// the engine runs) or not, its size, how it suits this machine (once
/// probed); and the current fetch.
pub fn models_view(models: &ModelManager, in_use: &[String]) -> ModelsView {
    let store = &models.store;
    let config = models.config_dir.as_deref();
    let profile = config.and_then(MachineProfile::load);
    let chosen = config
        .and_then(|d| Settings::load(d).ok())
        .and_then(|s| s.generator);
    let rec = profile.as_ref().map(|p| {
        machine::recommend(
            store.registry(),
            |m| store.is_installed(m),
            p,
            machine::available_memory_mb(),
            machine::DEFAULT_BUDGET_S,
            machine::TYPICAL_PROMPT_TOKENS,
        )
    });
    let fit = |id: &str| -> Option<&ModelFit> { rec.as_ref()?.models.iter().find(|f| f.id == id) };
    let rows = store
        .registry()
        .models()
        .iter()
        .map(|m| {
            let installed = store.is_installed(m);
            let dir = store.dir(&m.id);
            let size: u64 = m
                .files
                .iter()
                .filter_map(|f| std::fs::metadata(dir.join(&f.path)).ok())
                .map(|md| md.len())
                .sum();
            ModelView {
                id: m.id.clone(),
                role: m.role,
                architecture: m.architecture.clone(),
                description: m.description.clone(),
                default: m.default,
                installed,
                in_use: in_use.contains(&m.id),
                size_bytes: if installed { size } else { 0 },
                path: installed.then(|| dir.display().to_string()),
                fetchable: !m.sources.is_empty(),
                download_mb: m.download_mb,
                ram_mb: m.ram_mb,
                speed: m.speed.clone(),
                this_machine: fit(&m.id).map(ModelFit::describe),
                recommended: rec.as_ref().and_then(|r| r.best.as_deref()) == Some(m.id.as_str()),
                chosen: chosen.as_deref() == Some(m.id.as_str()),
            }
        })
        .collect();
    ModelsView {
        models_dir: store.root().display().to_string(),
        models: rows,
        machine: profile.map(|p| {
            format!(
                "{}, {} threads, {}, {:.0} GB memory (probed {})",
                p.facts.cpu,
                p.facts.threads,
                p.facts.simd,
                p.facts.memory_mb as f64 / 1000.0,
                p.probed_at
            )
        }),
        budget_s: machine::DEFAULT_BUDGET_S,
        fetch: models.progress(),
    }
}

/// Choose the answer model (`None`: the registry's default) and have
/// `engine` answer with it from its next question. Blocking (it waits for a
/// question in progress).
pub fn use_generator(models: &ModelManager, engine: &Engine, id: Option<String>) -> AppResult<()> {
    models.choose_generator(id.clone())?;
    let store = &models.store;
    let name = store.generator_name(id.as_deref().or(Some(
        &store.default_id(quarry_core::models::ModelRole::Generator)?,
    )))?;
    engine.switch_generator(id.or_else(|| Some(name.clone())), name);
    Ok(())
}

/// The models the engine runs: its embedder and its generator.
pub fn in_use(engine: &Engine) -> Vec<String> {
    vec![engine.embedder().id().to_string(), engine.model_name()]
}

/// Install a model from a file or folder on this machine (checksums checked).
pub async fn import(models: &ModelManager, req: ImportRequest) -> AppResult<ImportedView> {
    let store = models.store.clone();
    let (id, dir) =
        tokio::task::spawn_blocking(move || store.import(&req.path, req.id.as_deref())).await??;
    Ok(ImportedView {
        id,
        path: dir.display().to_string(),
    })
}

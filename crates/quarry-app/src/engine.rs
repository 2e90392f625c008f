//! The engine every front-end shares: one library, its embedder, the local
//! model (loaded on first use), the router and answer cache, and background
//! indexing jobs whose progress is broadcast to subscribers (the HTTP
//! server's `/api/status/stream`, the desktop window's `progress` events).

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use quarry_core::answer::cache::AnswerCache;
use quarry_core::answer::router::TaskClassifier;
use quarry_core::generate::LocalModel;
use quarry_core::ingest::index::{IndexEvent, IndexOptions, IndexReport};
use quarry_core::models::ModelSpec;
use quarry_core::{Embedder, Library, Result};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::error::AppError;
use crate::models::ModelManager;

/// Loads the local model when it is first needed: a registry id or `.gguf`
/// path, or `None` for the store's choice (the user's, else the default).
pub type ModelLoader = Box<dyn Fn(Option<&str>) -> Result<LocalModel> + Send + Sync>;

/// What the engine needs to run.
pub struct EngineParts {
    /// The open library.
    pub library: Library,
    /// Its embedder.
    pub embedder: Embedder,
    /// Loads the generator (called on the first question, and on the first
    /// after the generator is switched).
    pub load_model: ModelLoader,
    /// The generator asked for (registry id or `.gguf` path; `None`: the
    /// store's choice).
    pub model: Option<String>,
    /// Name of the generator (for `/v1/models` before it is loaded).
    pub model_name: String,
    /// The configuration folder (settings, providers).
    pub config_dir: PathBuf,
    /// Where the router caches its example vectors.
    pub cache_dir: PathBuf,
    /// Indexing options for folders added through the API.
    pub index: IndexOptions,
    /// The models folder (listing, fetching and importing models); a
    /// front-end may share it with screens that run before the engine opens.
    pub models: Arc<ModelManager>,
}

impl EngineParts {
    /// The usual parts: `library` with its `embedder`, the generator `model`
    /// (registry id, `.gguf` path, or the default) loaded from `models` on the
    /// first question, the router's cache in the models folder, default
    /// indexing options.
    pub fn standard(
        library: Library,
        embedder: Embedder,
        models: Arc<ModelManager>,
        model: Option<String>,
        config_dir: PathBuf,
    ) -> Result<Self> {
        let store = models.store.clone();
        Ok(EngineParts {
            model_name: store.generator_name(model.as_deref())?,
            cache_dir: crate::session::router_cache_dir(&store),
            load_model: Box::new(move |spec| LocalModel::from_store(&store, spec)),
            model,
            library,
            embedder,
            config_dir,
            index: IndexOptions::default(),
            models,
        })
    }
}

/// Progress of the current (or last) indexing job.
#[derive(Debug, Clone, Default, Serialize, ts_rs::TS)]
pub struct IndexProgress {
    /// Whether a job is running.
    pub running: bool,
    /// The folders being indexed.
    pub paths: Vec<String>,
    /// A re-embedding job (phases `re-embedding`, then `re-embedded` or
    /// `failed`): the embedder meaning search switches to.
    pub embedder: Option<String>,
    /// `idle`, `walking`, `indexing` (the keyword phase), `embedding` (the
    /// vectors phase: everything is searchable by keyword meanwhile),
    /// `stopping`, `done`, `stopped` (the rest is left for the next run) or
    /// `failed`; a switch of embedder: `re-embedding`, then `re-embedded`.
    pub phase: String,
    /// Files found by the walk.
    pub files_found: usize,
    /// Files that need work.
    pub files_total: usize,
    /// Files processed.
    pub files_done: usize,
    /// Bytes of the files that need work.
    pub bytes_total: u64,
    /// Bytes processed.
    pub bytes_done: u64,
    /// Chunks written.
    pub chunks: usize,
    /// Scanned pages and images read by OCR so far.
    pub ocr_pages: usize,
    /// Embedding phase: chunks that were waiting for vectors when it began.
    pub embed_total: usize,
    /// Embedding phase: chunks embedded so far.
    pub embed_done: usize,
    /// Embedding phase: chunks per second so far.
    pub embed_per_s: f64,
    /// Files per second so far.
    pub files_per_s: f64,
    /// Estimated seconds left (of the current phase).
    pub eta_s: Option<f64>,
    /// Seconds since the job started.
    pub elapsed_s: f64,
    /// The last finished job's summary (indexed, unchanged, skipped, failed with reasons).
    pub report: Option<IndexReport>,
    /// Why the job failed.
    pub error: Option<AppError>,
}

/// The library as last opened and the embedder its vectors came from, with
/// the ticket of the refresh that opened it: swapped together, so a search
/// never pairs a library with another embedder's queries.
struct Snapshot {
    ticket: u64,
    library: Arc<Library>,
    embedder: Arc<Embedder>,
}

/// Shared state of a running engine (one per open library).
pub struct Engine {
    library: RwLock<Snapshot>,
    refreshes: std::sync::atomic::AtomicU64,
    /// The library folder.
    pub library_dir: PathBuf,
    model: Mutex<Option<LocalModel>>,
    /// What holds the model now (or held it last), in a few words.
    model_user: Mutex<String>,
    load_model: ModelLoader,
    /// The generator asked for and its name.
    generator: std::sync::RwLock<(Option<String>, String)>,
    /// The configuration folder.
    pub config_dir: PathBuf,
    cache_dir: PathBuf,
    /// The router's classifier, built on first use for the embedder named.
    classifier: Mutex<Option<(String, Option<Arc<TaskClassifier>>)>>,
    /// The answer cache.
    pub cache: Mutex<AnswerCache>,
    index_opts: IndexOptions,
    progress: Mutex<IndexProgress>,
    updates: broadcast::Sender<IndexProgress>,
    cancel: Mutex<Option<Arc<std::sync::atomic::AtomicBool>>>,
    /// The models: installed, fetching, importing.
    pub models: Arc<ModelManager>,
}

impl Engine {
    /// Build the engine.
    pub fn new(parts: EngineParts) -> Arc<Self> {
        let (updates, _) = broadcast::channel(256);
        let library_dir = parts.library.dir().to_path_buf();
        Arc::new(Engine {
            cache: Mutex::new(AnswerCache::open(
                &library_dir,
                parts.library.files().clone(),
            )),
            library: RwLock::new(Snapshot {
                ticket: 0,
                library: Arc::new(parts.library),
                embedder: Arc::new(parts.embedder),
            }),
            refreshes: std::sync::atomic::AtomicU64::new(0),
            library_dir,
            model: Mutex::new(None),
            model_user: Mutex::new(String::new()),
            load_model: parts.load_model,
            generator: std::sync::RwLock::new((parts.model, parts.model_name)),
            config_dir: parts.config_dir,
            cache_dir: parts.cache_dir,
            classifier: Mutex::new(None),
            index_opts: parts.index,
            progress: Mutex::new(IndexProgress {
                phase: "idle".into(),
                ..Default::default()
            }),
            updates,
            cancel: Mutex::new(None),
            models: parts.models,
        })
    }

    /// Ask the running indexing job to stop after its current batch; false
    /// when none is running.
    pub fn cancel_indexing(&self) -> bool {
        match self.cancel.lock().expect("cancel lock").as_ref() {
            Some(flag) if self.progress().running => {
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                self.publish(|p| p.phase = "stopping".into());
                true
            }
            _ => false,
        }
    }

    /// Carry on, as a background job, with the chunks an earlier run left
    /// waiting for vectors (it was stopped, or the app was closed while it
    /// embedded). Returns whether a job started.
    pub async fn resume_embedding(self: &Arc<Self>) -> bool {
        match self.library().pending_embeddings().await {
            Ok(n) if n > 0 => self.start_indexing(Vec::new()).is_ok(),
            _ => false,
        }
    }

    /// Re-open the library every few minutes for as long as the engine lives,
    /// so a search never reads through a snapshot older than that: another
    /// process (`quarry index`, `quarry watch`) may be writing the library,
    /// and the table versions it replaces are deleted an hour later
    /// ([`quarry_core::store::OLD_VERSIONS_KEPT_MINUTES`]). Call once, from the runtime.
    pub fn keep_fresh(self: &Arc<Self>) {
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(quarry_core::SNAPSHOT_MAX_AGE).await;
                match engine.upgrade() {
                    Some(engine) => engine.refresh().await,
                    None => break,
                }
            }
        });
    }

    /// Remove a folder and its documents (fails with `Locked` while indexing).
    pub async fn remove_folder(
        &self,
        folder: &std::path::Path,
    ) -> Result<Option<quarry_core::ingest::forget::ForgetReport>> {
        let mut lib = Library::open(&self.library_dir).await?;
        let report = quarry_core::ingest::remove_folder(&mut lib, folder).await?;
        self.refresh().await;
        Ok(report)
    }

    /// The library as of now (a snapshot: indexing swaps in a fresh one).
    pub fn library(&self) -> Arc<Library> {
        self.library.read().expect("library lock").library.clone()
    }

    /// The embedder of the library as of now.
    pub fn embedder(&self) -> Arc<Embedder> {
        self.library.read().expect("library lock").embedder.clone()
    }

    /// The library and its embedder, as one snapshot: what a search needs.
    pub fn library_and_embedder(&self) -> (Arc<Library>, Arc<Embedder>) {
        let s = self.library.read().expect("library lock");
        (s.library.clone(), s.embedder.clone())
    }

    /// The task classifier for the current embedder (built on first use;
    /// `None` if it cannot be built).
    pub fn classifier(&self) -> Option<Arc<TaskClassifier>> {
        let embedder = self.embedder();
        let mut slot = self.classifier.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some((id, c)) if id == embedder.id() => c.clone(),
            _ => {
                let c = match TaskClassifier::builtin(&embedder, &self.cache_dir) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        tracing::warn!("router classifier unavailable: {e}");
                        None
                    }
                };
                *slot = Some((embedder.id().to_string(), c.clone()));
                c
            }
        }
    }

    /// The local model, loaded first if needed; held by one question at a
    /// time. Blocking: call it from a blocking thread.
    pub fn lock_model(&self) -> Result<std::sync::MutexGuard<'_, Option<LocalModel>>> {
        self.lock_model_for("a question", &mut |_| {})
    }

    /// [`Engine::lock_model`] for `what` (a few words, "an extraction of 12
    /// documents"). When another call holds the model, `on_wait` is first
    /// told what that call is, so the user learns why nothing happens yet.
    pub fn lock_model_for(
        &self,
        what: &str,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<std::sync::MutexGuard<'_, Option<LocalModel>>> {
        use std::sync::TryLockError;
        let mut guard = match self.model.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let holder = self
                    .model_user
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                on_wait(&holder);
                self.model.lock().unwrap_or_else(|p| p.into_inner())
            }
        };
        *self.model_user.lock().unwrap_or_else(|p| p.into_inner()) = what.to_string();
        if guard.is_none() {
            let spec = self.generator().0;
            *guard = Some((self.load_model)(spec.as_deref())?);
        }
        Ok(guard)
    }

    fn generator(&self) -> (Option<String>, String) {
        self.generator
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The generator's name.
    pub fn model_name(&self) -> String {
        self.generator().1
    }

    /// Answer with another generator (`model`: registry id or `.gguf` path,
    /// named `name`) from the next question on: waits for the question
    /// holding the current one, then unloads it. Blocking.
    pub fn switch_generator(&self, model: Option<String>, name: String) {
        let mut guard = self.model.lock().unwrap_or_else(|p| p.into_inner());
        *self.generator.write().unwrap_or_else(|p| p.into_inner()) = (model, name);
        *guard = None;
    }

    /// Progress of the current or last indexing job.
    pub fn progress(&self) -> IndexProgress {
        self.progress.lock().expect("progress lock").clone()
    }

    /// Subscribe to progress updates.
    pub fn subscribe(&self) -> broadcast::Receiver<IndexProgress> {
        self.updates.subscribe()
    }

    fn publish(&self, update: impl FnOnce(&mut IndexProgress)) {
        let snapshot = {
            let mut p = self.progress.lock().expect("progress lock");
            update(&mut p);
            p.clone()
        };
        let _ = self.updates.send(snapshot);
    }

    /// Re-open the library (after its settings changed).
    pub async fn reload(&self) {
        self.refresh().await
    }

    /// Re-open the library so searches see what indexing wrote (searches
    /// during a job see the library as of the last refresh: consistent, not
    /// yet new). Of refreshes that overlap, the one that started last wins.
    async fn refresh(&self) {
        self.refresh_with(None).await
    }

    /// [`Engine::refresh`]; when the library's embedder changed (a switch
    /// here or `quarry reembed` in another process), the embedder comes with
    /// it: `incoming` if it is that one, else loaded from the models folder.
    async fn refresh_with(&self, incoming: Option<Arc<Embedder>>) {
        let ticket = self
            .refreshes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let lib = match Library::open(&self.library_dir).await {
            Ok(lib) => lib,
            Err(e) => return tracing::warn!("could not refresh the library: {e}"),
        };
        let wanted = lib.meta().embedder.clone();
        let current = self.embedder();
        let embedder = if current.id() == wanted {
            current
        } else if let Some(e) = incoming.filter(|e| e.id() == wanted) {
            e
        } else {
            match Embedder::from_store(&self.models.store, &wanted) {
                Ok(e) => Arc::new(e),
                Err(e) => {
                    return tracing::warn!("the library now uses {wanted}, which cannot load: {e}")
                }
            }
        };
        let mut snapshot = self.library.write().expect("library lock");
        if ticket > snapshot.ticket {
            *snapshot = Snapshot {
                ticket,
                library: Arc::new(lib),
                embedder,
            };
        }
    }

    /// Start indexing `paths` in the background. Fails at once if a job is
    /// running or a path does not exist.
    pub fn start_indexing(self: &Arc<Self>, paths: Vec<PathBuf>) -> Result<()> {
        for p in &paths {
            if !p.exists() {
                return Err(quarry_core::Error::BadPath {
                    path: p.clone(),
                    reason: "no such file or folder".into(),
                });
            }
        }
        {
            let mut p = self.progress.lock().expect("progress lock");
            if p.running {
                return Err(quarry_core::Error::Locked(self.library_dir.clone()));
            }
            *p = IndexProgress {
                running: true,
                paths: paths.iter().map(|p| p.display().to_string()).collect(),
                phase: "walking".into(),
                ..Default::default()
            };
        }
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        *self.cancel.lock().expect("cancel lock") = Some(flag.clone());
        let mut opts = self.index_opts.clone();
        opts.cancel = Some(flag);
        let engine = self.clone();
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            handle.block_on(engine.run_indexing(paths, opts));
        });
        Ok(())
    }

    /// Switch the library's meaning search to the installed embedder `id`
    /// in the background: every chunk is embedded again into a new table
    /// while searches go on through the old one, then both swap at once
    /// ([`quarry_core::ingest::switch_embedder`]: resumable, the old table
    /// kept until the swap). Progress is the indexing progress's, phase
    /// `re-embedding`; [`Engine::cancel_indexing`] stops it after its
    /// current batch (phase `stopped`, the library unchanged; starting the
    /// switch again carries on). Fails at once if a job is running, the
    /// model is not installed or is not an embedder, or the library already
    /// uses it.
    pub fn start_reembed(self: &Arc<Self>, id: &str) -> Result<()> {
        if self.library().meta().embedder == id {
            return Err(quarry_core::Error::InvalidInput(format!(
                "the library already uses {id}"
            )));
        }
        // What can fail at once does; loading the weights (a second or more)
        // happens on the job's thread, not the caller's.
        let spec = self.models.store.registry().get(id)?.clone();
        if spec.role != quarry_core::models::ModelRole::Embedder {
            return Err(quarry_core::Error::InvalidInput(format!(
                "{id} is not an embedder"
            )));
        }
        let dir = self.models.store.require(id)?;
        {
            let mut p = self.progress.lock().expect("progress lock");
            if p.running {
                return Err(quarry_core::Error::Locked(self.library_dir.clone()));
            }
            *p = IndexProgress {
                running: true,
                phase: "re-embedding".into(),
                embedder: Some(id.to_string()),
                ..Default::default()
            };
        }
        let stop = Arc::new(AtomicBool::new(false));
        *self.cancel.lock().expect("cancel lock") = Some(stop.clone());
        let engine = self.clone();
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || handle.block_on(engine.run_reembed(dir, spec, stop)));
        Ok(())
    }

    async fn run_reembed(self: Arc<Self>, dir: PathBuf, spec: ModelSpec, stop: Arc<AtomicBool>) {
        let started = Instant::now();
        let embedder = match Embedder::load(&dir, &spec) {
            Ok(e) => Arc::new(e),
            Err(e) => return self.finish(started, Err::<(), _>(e), |_, ()| {}),
        };
        let result = async {
            let mut lib = Library::open(&self.library_dir).await?;
            let mut on_progress = |done: usize, total: usize| {
                let secs = started.elapsed().as_secs_f64();
                self.publish(|p| {
                    p.embed_done = done;
                    p.embed_total = total;
                    p.elapsed_s = secs;
                    p.embed_per_s = done as f64 / secs.max(1e-9);
                    p.eta_s = (done > 0).then(|| (total - done) as f64 * secs / done as f64);
                });
            };
            quarry_core::ingest::switch_embedder(
                &mut lib,
                &embedder,
                64,
                &mut on_progress,
                Some(&stop),
            )
            .await
        }
        .await;
        self.refresh_with(Some(embedder)).await;
        self.finish(started, result, |p, report| {
            p.phase = if report.stopped {
                "stopped"
            } else {
                "re-embedded"
            }
            .into();
            p.chunks = report.chunks;
            if !report.stopped {
                p.embed_done = report.embedded;
            }
        });
    }

    /// Publish the end of a background job: `done` fills in its outcome, or
    /// it failed with its error.
    fn finish<T>(
        &self,
        started: Instant,
        result: Result<T>,
        done: impl FnOnce(&mut IndexProgress, T),
    ) {
        let elapsed = started.elapsed().as_secs_f64();
        self.publish(|p| {
            p.running = false;
            p.elapsed_s = elapsed;
            match result {
                Ok(outcome) => {
                    p.eta_s = Some(0.0);
                    done(p, outcome);
                }
                Err(e) => {
                    p.phase = "failed".into();
                    p.error = Some(e.into());
                }
            }
        });
    }

    async fn run_indexing(self: Arc<Self>, paths: Vec<PathBuf>, opts: IndexOptions) {
        let started = Instant::now();
        let result = self.index_with_progress(&paths, &opts, started).await;
        self.refresh().await;
        self.finish(started, result, |p, report| {
            p.phase = if report.cancelled { "stopped" } else { "done" }.into();
            p.chunks = report.chunks;
            p.report = Some(report);
        });
    }

    /// Index `paths`, publishing each event as progress, and re-open the
    /// library for searches after the keyword phase and then every few
    /// seconds of embedding.
    async fn index_with_progress(
        self: &Arc<Self>,
        paths: &[PathBuf],
        opts: &IndexOptions,
        started: Instant,
    ) -> Result<IndexReport> {
        let mut lib = Library::open(&self.library_dir).await?;
        let runtime = tokio::runtime::Handle::current();
        let refresh_soon = |last: &mut Instant| {
            *last = Instant::now();
            let engine = self.clone();
            runtime.spawn(async move { engine.refresh().await });
        };
        let mut last_refresh = Instant::now();
        let mut embed_started: Option<Instant> = None;
        let mut on_event = |e: IndexEvent| {
            match &e {
                IndexEvent::KeywordsReady { .. } => {
                    embed_started = Some(Instant::now());
                    refresh_soon(&mut last_refresh);
                }
                IndexEvent::VectorsFlushed { .. }
                    if last_refresh.elapsed().as_secs_f64() > 10.0 =>
                {
                    refresh_soon(&mut last_refresh)
                }
                _ => {}
            }
            let clock = Clock {
                elapsed: started.elapsed().as_secs_f64(),
                embedding: embed_started.map_or(0.0, |t| t.elapsed().as_secs_f64()),
            };
            self.publish(|p| apply_event(p, e, clock, opts.embed));
        };
        let embedder = self.embedder();
        quarry_core::ingest::index(&mut lib, paths, &embedder, opts, &mut on_event).await
    }
}

/// Seconds since the job started, and since its embedding phase started.
#[derive(Clone, Copy)]
struct Clock {
    elapsed: f64,
    embedding: f64,
}

/// Fold one indexing event into the progress, with rates and time left.
fn apply_event(p: &mut IndexProgress, e: IndexEvent, clock: Clock, embed: bool) {
    p.elapsed_s = clock.elapsed;
    match e {
        IndexEvent::Planned {
            found,
            to_process,
            bytes,
            ..
        } => {
            p.phase = "indexing".into();
            p.files_found = found;
            p.files_total = to_process;
            p.bytes_total = bytes;
        }
        IndexEvent::FileDone {
            bytes, ocr_pages, ..
        } => {
            p.files_done += 1;
            p.bytes_done += bytes;
            p.ocr_pages += ocr_pages;
        }
        IndexEvent::Flushed { chunks_total } => p.chunks = chunks_total,
        IndexEvent::KeywordsReady { pending } => {
            if pending > 0 && embed && p.phase != "stopping" {
                p.phase = "embedding".into();
            }
            p.embed_total = pending;
            p.embed_done = 0;
        }
        IndexEvent::Embedded { chunks } => p.embed_done += chunks,
        IndexEvent::VectorsFlushed { .. } => {}
    }
    if p.phase == "embedding" {
        p.embed_per_s = p.embed_done as f64 / clock.embedding.max(1e-3);
        p.eta_s = (p.embed_done > 0)
            .then(|| p.embed_total.saturating_sub(p.embed_done) as f64 / p.embed_per_s);
    } else {
        p.files_per_s = p.files_done as f64 / clock.elapsed.max(1e-3);
        p.eta_s = (p.bytes_done > 0 && p.bytes_total >= p.bytes_done)
            .then(|| clock.elapsed * (p.bytes_total - p.bytes_done) as f64 / p.bytes_done as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_gives_rates_and_time_left() {
        let mut p = IndexProgress::default();
        let clock = Clock {
            elapsed: 10.0,
            embedding: 0.0,
        };
        apply_event(
            &mut p,
            IndexEvent::Planned {
                found: 4,
                to_process: 2,
                bytes: 300,
                to_remove: 0,
            },
            clock,
            true,
        );
        apply_event(
            &mut p,
            IndexEvent::FileDone {
                path: "a".into(),
                bytes: 100,
                chunks: 1,
                ocr_pages: 2,
            },
            clock,
            true,
        );
        assert_eq!(p.phase, "indexing");
        assert_eq!(p.ocr_pages, 2);
        assert_eq!(p.files_per_s, 0.1);
        assert_eq!(p.eta_s, Some(20.0));
        apply_event(
            &mut p,
            IndexEvent::KeywordsReady { pending: 50 },
            clock,
            true,
        );
        let clock = Clock {
            elapsed: 20.0,
            embedding: 5.0,
        };
        apply_event(&mut p, IndexEvent::Embedded { chunks: 10 }, clock, true);
        assert_eq!(p.phase, "embedding");
        assert_eq!(p.embed_per_s, 2.0);
        assert_eq!(p.eta_s, Some(20.0));
        // Without an embedding phase the keyword phase's end is not "embedding".
        let mut q = IndexProgress::default();
        apply_event(
            &mut q,
            IndexEvent::KeywordsReady { pending: 50 },
            clock,
            false,
        );
        assert_ne!(q.phase, "embedding");
    }
}

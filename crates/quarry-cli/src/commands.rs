//! The subcommands: translate between the terminal and quarry-core.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quarry_core::dirs::Dirs;
use quarry_core::fusion::FusionConfig;
use quarry_core::index::{IndexEvent, IndexOptions};
use quarry_core::models::{FetchEvent, ModelRole, ModelStore, Registry};
use quarry_core::store::Filter;
use quarry_core::{Embedder, HybridSearch, Library, SearchMode, SearchOptions};

use crate::render;

/// What every command needs: directories and the model store.
pub struct Context {
    pub dirs: Dirs,
    pub store: ModelStore,
}

impl Context {
    /// Read the environment once, here at the edge.
    pub fn from_env() -> Self {
        let dirs = Dirs::from_env(|k| std::env::var_os(k));
        let registry = match std::env::var_os("QUARRY_MODEL_REGISTRY") {
            Some(p) => Registry::load(Path::new(&p)).unwrap_or_else(|e| {
                eprintln!("warning: {e}; using the built-in registry");
                Registry::builtin()
            }),
            None => Registry::builtin(),
        };
        let python = std::env::var("QUARRY_PYTHON").unwrap_or_else(|_| "python3".into());
        let store = ModelStore::new(dirs.models.clone(), registry).with_python(python);
        Context { dirs, store }
    }

    pub fn library_dir(&self, arg: Option<PathBuf>) -> PathBuf {
        arg.unwrap_or_else(|| self.dirs.library.clone())
    }

    /// The registry's default embedder.
    pub fn default_embedder(&self) -> Result<String> {
        Ok(self.store.default_id(ModelRole::Embedder)?)
    }

    pub fn load_embedder(&self, id: &str) -> Result<Embedder> {
        Ok(self.store.load_embedder(id)?)
    }
}

pub fn models_fetch(ctx: &Context, ids: Vec<String>, all: bool) -> Result<()> {
    let registry = ctx.store.registry().clone();
    let ids: Vec<String> = if all {
        registry.models().iter().map(|m| m.id.clone()).collect()
    } else if ids.is_empty() {
        [ModelRole::Embedder, ModelRole::Generator]
            .into_iter()
            .filter_map(|r| registry.default_for(r).map(|m| m.id.clone()))
            .collect()
    } else {
        ids
    };
    let mut failed = 0;
    for id in ids {
        let spec = registry.get(&id)?;
        if ctx.store.is_installed(spec) {
            println!("{id}: installed at {}", ctx.store.dir(&id).display());
            continue;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(format!("{id}: fetching"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut on_event = |e: FetchEvent| match e {
            FetchEvent::Trying { source } => {
                bar.set_message(format!("{id}: fetching from {source}"))
            }
            FetchEvent::DownloadStart { file, total } => {
                bar.set_length(total);
                bar.set_position(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                bar.set_message(format!("{id}: {file}"));
            }
            FetchEvent::DownloadProgress { bytes } => bar.inc(bytes),
            FetchEvent::DownloadDone => {}
            FetchEvent::Verifying => bar.set_message(format!("{id}: verifying checksums")),
        };
        let result = ctx.store.fetch(&id, &mut on_event);
        bar.finish_and_clear();
        match result {
            Ok(dir) => println!("{id}: installed at {}", dir.display()),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} model(s) could not be fetched");
    }
    Ok(())
}

pub fn models_list(ctx: &Context, json: bool) -> Result<()> {
    let rows: Vec<serde_json::Value> = ctx
        .store
        .registry()
        .models()
        .iter()
        .map(|m| {
            let installed = ctx.store.is_installed(m);
            serde_json::json!({
                "id": m.id,
                "role": m.role,
                "architecture": m.architecture,
                "default": m.default,
                "installed": installed,
                "path": installed.then(|| ctx.store.dir(&m.id)),
                "description": m.description,
            })
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!("models directory: {}", ctx.store.root().display());
    for m in ctx.store.registry().models() {
        let installed = ctx.store.is_installed(m);
        println!(
            "{} {:<24} {:<9} {}{}",
            if installed { "✓" } else { " " },
            m.id,
            format!("{:?}", m.role).to_lowercase(),
            m.description,
            if m.default { " (default)" } else { "" }
        );
        if installed {
            println!("  {}", ctx.store.dir(&m.id).display());
        }
    }
    Ok(())
}

pub fn models_import(ctx: &Context, path: &Path, id: Option<&str>) -> Result<()> {
    let (id, dir) = ctx.store.import(path, id)?;
    println!("{id}: installed at {}", dir.display());
    Ok(())
}

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Folders or files to index.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    lib: crate::LibraryArg,
    /// Embedding model for a new library (default: the registry's default embedder).
    #[arg(long)]
    embedder: Option<String>,
    /// Skip files larger than this many MiB.
    #[arg(long, default_value_t = 100)]
    max_file_mb: u64,
    /// Index hidden files and folders too.
    #[arg(long)]
    hidden: bool,
    /// Follow symbolic links (loops are detected and reported).
    #[arg(long)]
    follow_links: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// List every skipped file, not just the first few per reason.
    #[arg(long, short)]
    verbose: bool,
    /// Index at most this many MiB of text per file (the rest is reported).
    #[arg(long, default_value_t = 64.0)]
    max_text_mb: f64,
    /// Build the keyword index only: new files are searchable by keyword at
    /// once; the next `quarry index` without this flag embeds them.
    #[arg(long)]
    no_embed: bool,
    /// Chunks per keyword-phase write batch (smaller: progress is saved more often).
    #[arg(long, default_value_t = IndexOptions::default().flush_chunks, hide = true)]
    flush_chunks: usize,
    /// Chunks per embedding-phase write batch.
    #[arg(long, default_value_t = IndexOptions::default().embed_batch, hide = true)]
    embed_batch: usize,
}

pub async fn index(ctx: &Context, args: IndexArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library);
    let embedder_id = match (&args.embedder, Library::open(&dir).await) {
        (_, Ok(lib)) => lib.meta().embedder.clone(),
        (Some(id), Err(_)) => id.clone(),
        (None, Err(_)) => ctx.default_embedder()?,
    };
    if let Some(requested) = &args.embedder {
        if requested != &embedder_id {
            bail!(
                "library {} uses embedder '{embedder_id}', not '{requested}'; `quarry reembed {requested}` switches it, or use another --library",
                dir.display()
            );
        }
    }
    let embedder = ctx.load_embedder(&embedder_id)?;
    let mut library = Library::open_or_create(&dir, &embedder_id, embedder.dim()).await?;
    let mut opts = IndexOptions::default();
    opts.walk.max_file_bytes = args.max_file_mb << 20;
    opts.walk.include_hidden = args.hidden;
    opts.walk.follow_links = args.follow_links;
    opts.flush_chunks = args.flush_chunks.max(1);
    opts.embed_batch = args.embed_batch.max(1);
    opts.embed = !args.no_embed;
    opts.limits.max_text_bytes = (args.max_text_mb.max(0.001) * (1u64 << 20) as f64) as usize;
    // Ctrl-C stops after the current batch (written and consistent); the files
    // not reached are indexed by the next run. A second Ctrl-C aborts at once,
    // which is crash-safe too.
    let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    opts.cancel = Some(cancel.clone());
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
            eprintln!("\nStopping after the current batch (Ctrl-C again to stop at once)…");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let (mut files_done, mut files_total, mut chunks_written) = (0usize, 0usize, 0usize);
    let mut embedded = 0usize;
    let mut on_event = |e: IndexEvent| match e {
        IndexEvent::Planned {
            to_process, bytes, ..
        } => {
            files_total = to_process;
            bar.set_length(bytes);
            bar.set_message(format!("0/{files_total} files"));
        }
        IndexEvent::FileDone { bytes, .. } => {
            files_done += 1;
            bar.inc(bytes);
            bar.set_message(format!(
                "{files_done}/{files_total} files · {chunks_written} chunks"
            ));
        }
        IndexEvent::Flushed { chunks_total } => {
            chunks_written = chunks_total;
            bar.set_message(format!(
                "{files_done}/{files_total} files · {chunks_written} chunks"
            ));
        }
        IndexEvent::KeywordsReady { pending } => {
            // Keyword search covers everything from here on; the bar now
            // counts chunks given vectors.
            if files_total > 0 {
                let secs = bar.elapsed().as_secs_f64();
                bar.suspend(|| {
                    eprintln!(
                        "Keyword search ready: {files_done} file(s), {chunks_written} chunks ({secs:.0}s)."
                    )
                });
            }
            if pending > 0 && !args.no_embed {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} chunks embedded {per_sec} ETA {eta} {msg}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                bar.set_length(pending as u64);
                bar.set_position(0);
                bar.reset_eta();
                bar.set_message("(searchable by keyword meanwhile; Ctrl-C resumes next run)");
            }
        }
        IndexEvent::Embedded { chunks } => {
            embedded += chunks;
            bar.set_position(embedded as u64);
        }
        IndexEvent::VectorsFlushed { .. } => {}
    };
    let report = library
        .index(&args.paths, &embedder, &opts, &mut on_event)
        .await;
    watcher.abort();
    bar.finish_and_clear();
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        render::index_report(&report, library.dir(), args.verbose);
    }
    Ok(())
}

pub async fn status(ctx: &Context, library: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = ctx.library_dir(library);
    let lib = Library::open(&dir).await?;
    let status = lib.status().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        render::status(&status);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    lib: crate::LibraryArg,
    /// Wait this long after the last change before indexing a burst.
    #[arg(long, default_value_t = 1000)]
    debounce_ms: u64,
    /// Print one JSON object per synced burst.
    #[arg(long)]
    json: bool,
}

/// `quarry watch`: catch up, then index each burst of changes until Ctrl-C.
pub async fn watch(ctx: &Context, args: WatchArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library);
    let mut library = Library::open(&dir).await?;
    let embedder = ctx.load_embedder(&library.meta().embedder.clone())?;
    let opts = IndexOptions::default();
    let folders = library.meta().folders.clone();
    // Catch up with what changed while nobody watched (keywords now; the
    // watch loop embeds between bursts).
    let catch_up = IndexOptions {
        embed: false,
        ..opts.clone()
    };
    let report = library
        .index(&folders, &embedder, &catch_up, &mut |_| {})
        .await?;
    let json = args.json;
    let print = |changed: usize, r: &quarry_core::IndexReport| {
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "changed_paths": changed,
                    "indexed": r.indexed.len(),
                    "removed": r.removed.len(),
                    "failed": r.failed.len(),
                    "chunks": r.chunks,
                    "seconds": r.elapsed.as_secs_f64(),
                })
            );
        } else if !r.indexed.is_empty() || !r.removed.is_empty() || !r.failed.is_empty() {
            println!(
                "{} indexed, {} removed, {} failed ({} chunks) in {:.1}s",
                r.indexed.len(),
                r.removed.len(),
                r.failed.len(),
                r.chunks,
                r.elapsed.as_secs_f64()
            );
        }
    };
    print(0, &report);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    quarry_core::watch::watch(
        &mut library,
        &embedder,
        &opts,
        Duration::from_millis(args.debounce_ms),
        stop,
        &mut |e| match e {
            quarry_core::watch::WatchEvent::Started { folders } => {
                if !json {
                    eprintln!(
                        "Watching {} (Ctrl-C to stop)",
                        folders
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            quarry_core::watch::WatchEvent::Synced { changed, report } => {
                print(changed.len(), &report)
            }
            quarry_core::watch::WatchEvent::Embedded { report } => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "embedded": report.embedded,
                            "pending_embeddings": report.pending_embeddings,
                            "seconds": report.elapsed.as_secs_f64(),
                        })
                    );
                } else if report.embedded > 0 {
                    println!(
                        "{} chunks embedded in {:.1}s; {} waiting",
                        report.embedded,
                        report.elapsed.as_secs_f64(),
                        report.pending_embeddings
                    );
                }
            }
            quarry_core::watch::WatchEvent::Failed { error } => {
                eprintln!("could not index the changes (will retry): {error}")
            }
        },
    )
    .await?;
    Ok(())
}

/// `quarry check`: do the indexes and document rows agree?
pub async fn check(ctx: &Context, library: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = ctx.library_dir(library);
    let lib = Library::open(&dir).await?;
    let c = lib.check().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        println!(
            "{}: {} documents, {} chunks ({} waiting for vectors; keywords {}), {} orphan chunks, {} mismatched documents{}",
            if c.consistent { "consistent" } else { "INCONSISTENT" },
            c.documents,
            c.chunks,
            c.pending_embeddings,
            c.keyword_chunks,
            c.orphan_chunks,
            c.mismatched_documents.len(),
            if c.in_flight > 0 {
                format!(", {} documents being written by a running indexer", c.in_flight)
            } else {
                String::new()
            }
        );
        for m in &c.mismatched_documents {
            println!("  {m}");
        }
    }
    if !c.consistent {
        anyhow::bail!("the library's indexes disagree; re-index the listed files");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// What to look for.
    query: String,
    #[command(flatten)]
    lib: crate::LibraryArg,
    /// hybrid, vector or keyword.
    #[arg(long, default_value = "hybrid")]
    mode: SearchMode,
    /// Number of results.
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    /// Only files whose path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Only files with this extension (repeatable), e.g. --ext pdf.
    #[arg(long)]
    ext: Vec<String>,
    /// Only files modified on or after this local date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_local_date)]
    modified_after: Option<i64>,
    /// Only files modified before this local date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_local_date)]
    modified_before: Option<i64>,
    #[command(flatten)]
    fusion: FusionArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Hybrid fusion settings shared by `search` and `eval`.
#[derive(clap::Args, Clone, Copy)]
pub struct FusionArgs {
    /// Weight of vector results in fusion, 0..1 (keyword gets the rest).
    #[arg(long)]
    vector_weight: Option<f32>,
    /// Reciprocal rank fusion constant k.
    #[arg(long)]
    rrf_k: Option<f32>,
    /// Results each retriever contributes to fusion.
    #[arg(long)]
    depth: Option<usize>,
}

impl FusionArgs {
    /// The defaults with the given flags applied.
    pub fn config(&self) -> Result<FusionConfig> {
        let mut fusion = FusionConfig::default();
        if let Some(w) = self.vector_weight {
            if !(0.0..=1.0).contains(&w) {
                bail!("--vector-weight must be between 0 and 1");
            }
            fusion.vector_weight = w;
        }
        if let Some(k) = self.rrf_k {
            fusion.rrf_k = k;
        }
        if let Some(d) = self.depth {
            fusion.depth = d;
        }
        Ok(fusion)
    }
}

pub async fn search(ctx: &Context, args: SearchArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library);
    let lib = Library::open(&dir).await?;
    let embedder = match args.mode {
        SearchMode::Keyword => None,
        _ => Some(ctx.load_embedder(&lib.meta().embedder)?),
    };
    let fusion = args.fusion.config()?;
    let path_prefix = args.path_prefix.map(|p| {
        // A relative prefix is resolved like a path the user typed.
        let pb = PathBuf::from(&p);
        if pb.is_relative() {
            std::env::current_dir()
                .map(|c| c.join(&pb).to_string_lossy().to_string())
                .unwrap_or(p)
        } else {
            p
        }
    });
    let opts = SearchOptions {
        mode: args.mode,
        k: args.k,
        fusion,
        filter: Filter {
            path_prefix,
            extensions: args
                .ext
                .iter()
                .map(|e| e.trim_start_matches('.').to_lowercase())
                .collect(),
            modified_after_ms: args.modified_after,
            modified_before_ms: args.modified_before,
            paths: None,
        },
    };
    let searcher = HybridSearch::new(&lib, embedder.as_ref())?;
    let results = searcher.search(&args.query, &opts).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::hits_json(&results.hits))?
        );
    } else {
        render::hits(&results.hits, results.timings.total);
    }
    Ok(())
}

/// `quarry reembed ID`: switch the library's embedder.
pub async fn reembed(
    ctx: &Context,
    id: &str,
    library: Option<PathBuf>,
    json: bool,
    batch: usize,
) -> Result<()> {
    let dir = ctx.library_dir(library);
    let mut lib = Library::open(&dir).await?;
    let embedder = ctx.load_embedder(id)?;
    let bar = if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} chunks re-embedded, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = lib
        .switch_embedder(&embedder, batch, &mut |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "Switched {} from {} to {} ({} chunks, {} embedded now, {} dimensions) in {:.1} s.",
            lib.dir().display(),
            report.from,
            report.to,
            report.chunks,
            report.embedded,
            report.dim,
            report.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// `quarry remove FOLDER`: take a folder and its documents out of the library.
pub async fn remove(ctx: &Context, folder: &Path, library: Option<PathBuf>) -> Result<()> {
    let dir = ctx.library_dir(library);
    let mut lib = Library::open(&dir).await?;
    let n = lib.remove_folder(folder).await?;
    println!(
        "Removed {} and its {n} documents from {}.",
        folder.display(),
        lib.dir().display()
    );
    Ok(())
}

/// Midnight at the start of a local calendar date (YYYY-MM-DD), as
/// milliseconds since the epoch.
fn parse_local_date(s: &str) -> std::result::Result<i64, String> {
    use chrono::{Local, NaiveDate, TimeZone};
    let date = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| format!("'{s}' is not a date like 2024-03-31 ({e})"))?;
    let midnight = date.and_hms_opt(0, 0, 0).ok_or("no midnight")?;
    Local
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("'{s}' has no local midnight"))
}

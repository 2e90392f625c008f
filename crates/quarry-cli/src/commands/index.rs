//! `quarry index PATH...`: index folders or files (new and changed files only).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quarry_core::ingest;
use quarry_core::ingest::index::{IndexEvent, IndexOptions};
use quarry_core::Library;

use crate::context::Context;
use crate::render;

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Folders or files to index.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
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
    /// List every skipped file, not just the first few per reason (the
    /// global `--verbose`).
    #[arg(skip)]
    pub verbose: bool,
    /// Index at most this many MiB of text per file (the rest is reported).
    #[arg(long, default_value_t = 64.0)]
    max_text_mb: f64,
    /// Build the keyword index only: new files are searchable by keyword at
    /// once; the next `quarry index` without this flag embeds them.
    #[arg(long)]
    no_embed: bool,
    /// Do not read images and scanned PDF pages by OCR (they are reported).
    #[arg(long)]
    no_ocr: bool,
    /// Languages of the scans, as Tesseract names them, `+`-separated
    /// (`eng`, `eng+deu`, `fra`); their data must be installed.
    #[arg(long, default_value = "eng", value_name = "LANGS")]
    ocr_lang: String,
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
    opts.ocr = ocr_settings(args.no_ocr, &args.ocr_lang)?;
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
    let (mut embedded, mut ocr_pages) = (0usize, 0usize);
    let ocr_started = std::time::Instant::now();
    let mut on_event = |e: IndexEvent| match e {
        IndexEvent::Planned {
            to_process, bytes, ..
        } => {
            files_total = to_process;
            bar.set_length(bytes);
            bar.set_message(format!("0/{files_total} files"));
        }
        IndexEvent::FileDone {
            bytes,
            ocr_pages: pages,
            ..
        } => {
            files_done += 1;
            ocr_pages += pages;
            bar.inc(bytes);
            bar.set_message(format!(
                "{files_done}/{files_total} files · {chunks_written} chunks{}",
                ocr_rate(ocr_pages, ocr_started)
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
    let report = ingest::index(&mut library, &args.paths, &embedder, &opts, &mut on_event).await;
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

/// OCR as the flags say; a language whose data is missing is an error
/// before anything is read (Tesseract missing altogether is not: images
/// and scans are then reported as needing OCR).
pub(crate) fn ocr_settings(no_ocr: bool, langs: &str) -> Result<quarry_core::ocr::OcrSettings> {
    use quarry_core::ocr::{self, OcrError, OcrSettings};
    if no_ocr {
        return Ok(OcrSettings::off());
    }
    let langs = langs.trim();
    if langs.is_empty()
        || langs
            .split('+')
            .any(|l| l.is_empty() || l.contains(['/', '\\', '.']))
    {
        bail!("--ocr-lang takes Tesseract language names joined by +, such as eng or eng+deu");
    }
    if let Err(e @ OcrError::MissingLanguages { .. }) = ocr::check(langs) {
        bail!("{e}");
    }
    Ok(OcrSettings {
        langs: langs.to_string(),
        ..OcrSettings::default()
    })
}

/// " · 12 pages OCR'd (9.5/min)" once OCR has read a page.
fn ocr_rate(pages: usize, since: std::time::Instant) -> String {
    if pages == 0 {
        return String::new();
    }
    let per_min = pages as f64 / since.elapsed().as_secs_f64().max(1e-3) * 60.0;
    format!(" · {pages} pages OCR'd ({per_min:.1}/min)")
}

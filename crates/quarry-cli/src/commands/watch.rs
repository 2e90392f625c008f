//! `quarry watch`: keep a library in sync with its folders.

use std::time::Duration;

use anyhow::Result;
use quarry_core::ingest;
use quarry_core::ingest::index::IndexOptions;
use quarry_core::Library;

use crate::context::Context;

#[derive(clap::Args)]
pub struct WatchArgs {
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Wait this long after the last change before indexing a burst.
    #[arg(long, default_value_t = 1000)]
    debounce_ms: u64,
    /// Print one JSON object per synced burst.
    #[arg(long)]
    json: bool,
    /// Do not read images and scanned PDF pages by OCR (they are reported).
    #[arg(long)]
    no_ocr: bool,
    /// Languages of the scans, `+`-separated (as for `quarry index`).
    #[arg(long, default_value = "eng", value_name = "LANGS")]
    ocr_lang: String,
}

/// `quarry watch`: catch up, then index each burst of changes until Ctrl-C.
pub async fn watch(ctx: &Context, args: WatchArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library);
    let mut library = Library::open(&dir).await?;
    let embedder = ctx.load_embedder(&library.meta().embedder.clone())?;
    let opts = IndexOptions {
        ocr: super::index::ocr_settings(args.no_ocr, &args.ocr_lang)?,
        ..IndexOptions::default()
    };
    let folders = library.meta().folders.clone();
    // Catch up with what changed while nobody watched (keywords now; the
    // watch loop embeds between bursts).
    let catch_up = IndexOptions {
        embed: false,
        ..opts.clone()
    };
    let report = ingest::index(&mut library, &folders, &embedder, &catch_up, &mut |_| {}).await?;
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
    quarry_core::ingest::watch::watch(
        &mut library,
        &embedder,
        &opts,
        Duration::from_millis(args.debounce_ms),
        stop,
        &mut |e| match e {
            quarry_core::ingest::watch::WatchEvent::Started { folders } => {
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
            quarry_core::ingest::watch::WatchEvent::Synced { changed, report } => {
                print(changed.len(), &report)
            }
            quarry_core::ingest::watch::WatchEvent::Embedded { report } => {
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
            quarry_core::ingest::watch::WatchEvent::Failed { error } => {
                eprintln!("could not index the changes (will retry): {error}")
            }
        },
    )
    .await?;
    Ok(())
}

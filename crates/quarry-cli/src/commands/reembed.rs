//! `quarry reembed ID`: switch the library's embedder.

use std::path::PathBuf;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use quarry_core::ingest;
use quarry_core::Library;

use crate::context::Context;

/// Arguments of `quarry reembed`.
#[derive(clap::Args)]
pub struct ReembedArgs {
    /// The new embedder's registry id.
    embedder: String,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Chunks embedded per write (tests use small batches).
    #[arg(long, default_value_t = 64, hide = true)]
    batch: usize,
}

/// Run `quarry reembed`.
pub async fn run(ctx: &Context, a: ReembedArgs) -> Result<()> {
    reembed(ctx, &a.embedder, a.lib.library, a.json, a.batch).await
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
    let mut on_progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    // Ctrl-C ends the process; the next run carries on from the last batch.
    let report =
        ingest::switch_embedder(&mut lib, &embedder, batch, &mut on_progress, None).await?;
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

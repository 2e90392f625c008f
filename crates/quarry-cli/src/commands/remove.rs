//! `quarry remove FOLDER`: take a folder and its documents out of the library.

use std::path::{Path, PathBuf};

use anyhow::Result;
use quarry_core::ingest;
use quarry_core::Library;

use crate::context::Context;

/// Arguments of `quarry remove`.
#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The folder (or file) as it was added.
    folder: PathBuf,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
}

/// Run `quarry remove`.
pub async fn run(ctx: &Context, a: RemoveArgs) -> Result<()> {
    remove(ctx, &a.folder, a.lib.library).await
}

/// `quarry remove FOLDER`: take a folder and its documents out of the library.
pub async fn remove(ctx: &Context, folder: &Path, library: Option<PathBuf>) -> Result<()> {
    let dir = ctx.library_dir(library);
    let mut lib = Library::open(&dir).await?;
    let report = ingest::remove_folder(&mut lib, folder).await?;
    let n = report.as_ref().map_or(0, |r| r.documents.len());
    println!(
        "Removed {} and its {n} documents from {}.",
        folder.display(),
        lib.dir().display()
    );
    if let Some(r) = &report {
        println!("{}", r.summary());
        if !r.residues.is_empty() {
            anyhow::bail!("copies of the removed text are still in the library: `quarry forget` on the same paths reports where");
        }
    }
    Ok(())
}

//! `quarry status`: what a library holds.

use std::path::PathBuf;

use anyhow::Result;
use quarry_core::Library;

use crate::context::Context;
use crate::render;

/// Run `quarry status`.
pub async fn run(ctx: &Context, args: crate::context::LibraryJsonArgs) -> Result<()> {
    status(ctx, args.lib.library, args.json).await
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

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
    let fusion = quarry_core::retrieve::history::FusionHistory::load(&lib);
    if json {
        let mut v = serde_json::to_value(&status)?;
        v["fusion"] = serde_json::json!({
            "vector_weight": fusion.vector_weight(),
            "keyword_lead": fusion.lead,
            "queries": fusion.questions,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        render::status(&status);
        render::fusion(&fusion);
    }
    Ok(())
}

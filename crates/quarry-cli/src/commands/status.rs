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
    let history = quarry_core::retrieve::history::QueryHistory::load(&lib);
    if json {
        let mut v = serde_json::to_value(&status)?;
        v["query_history"] = serde_json::json!({
            "vector_weight": history.vector_weight(),
            "similarity_floor": history.similarity_floor(),
            "keyword_lead": history.lead.mean,
            "queries": history.lead.n.max(history.similarity.n),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        render::status(&status);
        render::query_history(&history);
    }
    Ok(())
}

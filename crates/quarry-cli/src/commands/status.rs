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
    let learned = quarry_core::answer::floor::LibraryFloor::load(&lib);
    // The embedder's floor from the registry, as `ask` starts from.
    let spec = ctx.store.registry().get(&lib.meta().embedder).ok();
    let registry = quarry_core::answer::registry_floor(spec.and_then(|m| m.relevance_floor));
    let floor = learned.floor(registry);
    if json {
        let mut v = serde_json::to_value(&status)?;
        v["fusion"] = serde_json::json!({
            "vector_weight": fusion.vector_weight(),
            "keyword_lead": fusion.lead,
            "queries": fusion.questions,
        });
        v["relevance_floor"] = serde_json::json!({
            "floor": floor,
            "registry_floor": registry,
            "baseline": learned.baseline,
            "questions": learned.recent.len(),
            "under_floor": learned.under(floor),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        render::status(&status);
        render::fusion(&fusion);
        render::relevance_floor(&learned, floor, registry);
    }
    Ok(())
}

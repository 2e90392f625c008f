//! `quarry check`: do a library's indexes and document rows agree?

use std::path::PathBuf;

use anyhow::Result;
use quarry_core::Library;

use crate::context::Context;

/// Run `quarry check`.
pub async fn run(ctx: &Context, args: crate::context::LibraryJsonArgs) -> Result<()> {
    check(ctx, args.lib.library, args.json).await
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
        if let Some(r) = &c.encryption {
            println!(
                "encrypted: {} files ({:.1} MB) open with the library's key; {} empty lock files; {} being written; {} in plain text; {} damaged",
                r.sealed,
                r.sealed_bytes as f64 / 1e6,
                r.empty,
                r.unfinished,
                r.plain.len(),
                r.damaged.len()
            );
            for p in &r.plain {
                println!("  plain text: {}", p.display());
            }
            for (p, why) in &r.damaged {
                println!("  damaged: {} ({why})", p.display());
            }
        }
    }
    if !c.consistent {
        anyhow::bail!("the library's indexes disagree; re-index the listed files");
    }
    Ok(())
}

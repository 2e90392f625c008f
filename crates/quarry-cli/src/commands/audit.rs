//! `quarry audit`: every request that sent text off this machine.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use quarry_core::cloud::audit;
use quarry_core::Library;

use crate::context::Context;

/// Run `quarry audit`.
pub async fn run(ctx: &Context, args: crate::context::LibraryJsonArgs) -> Result<()> {
    audit(ctx, args.lib.library, args.json).await
}

pub async fn audit(ctx: &Context, library: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = ctx.library_dir(library);
    let lib = Library::open(&dir).await?;
    let entries = audit::read(lib.dir()).context("reading the audit log")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!(
            "Nothing has been sent from {} to any provider.",
            lib.dir().display()
        );
        return Ok(());
    }
    for e in &entries {
        let redactions: Vec<String> = e
            .redactions
            .counts
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        println!(
            "{}  {} ({}, {})  {} bytes  {}  redacted: {}",
            e.time,
            e.provider,
            e.model,
            e.host,
            e.bytes_sent,
            e.outcome.as_deref().unwrap_or("no outcome recorded"),
            if redactions.is_empty() {
                "none".into()
            } else {
                redactions.join(", ")
            },
        );
        for d in &e.documents {
            println!("    {d}");
        }
    }
    println!("{} outbound requests.", entries.len());
    Ok(())
}

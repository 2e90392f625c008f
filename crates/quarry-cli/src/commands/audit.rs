//! `quarry audit`: every request that sent text off this machine; with
//! `--mcp`, every call agents made on the library over MCP.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use quarry_core::cloud::audit;
use quarry_core::Library;

use crate::context::Context;

#[derive(clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Show what agents read over MCP (`quarry mcp`, `/mcp`) instead.
    #[arg(long)]
    mcp: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Run `quarry audit`.
pub async fn run(ctx: &Context, args: AuditArgs) -> Result<()> {
    if args.mcp {
        return agents(ctx, args.lib.library, args.json).await;
    }
    audit(ctx, args.lib.library, args.json).await
}

/// Every call agents made, oldest first.
async fn agents(ctx: &Context, library: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = ctx.library_dir(library);
    let lib = Library::open(&dir).await?;
    let entries = quarry_app::agents::read(lib.dir()).map_err(|e| anyhow::anyhow!(e.message))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("No agent has called {} over MCP.", lib.dir().display());
        return Ok(());
    }
    for e in &entries {
        println!(
            "{}  {}  {} ({})  {}  {} bytes  {}",
            e.time,
            e.client,
            e.tool,
            e.transport,
            e.outcome,
            e.bytes_returned,
            e.reason.as_deref().unwrap_or(&e.arguments),
        );
        for d in &e.documents {
            println!("    {d}");
        }
    }
    let refused = entries.iter().filter(|e| e.outcome == "refused").count();
    println!("{} calls by agents, {refused} refused.", entries.len());
    Ok(())
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

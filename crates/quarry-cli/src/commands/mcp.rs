//! `quarry mcp`: the library as an MCP server over stdio, the way desktop
//! agents (Claude Desktop, Cursor, VS Code…) launch servers; `--print-config`
//! prints the JSON to paste into their settings.

use anyhow::{Context as _, Result};

use crate::context::Context;

#[derive(clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Generator for `ask` and `summarize`: a registry id or a path to a .gguf file.
    #[arg(long)]
    model: Option<String>,
    /// Print the settings snippets for Claude Desktop, Cursor and VS Code, then exit.
    #[arg(long)]
    print_config: bool,
}

pub async fn mcp(ctx: &Context, args: McpArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library.clone());
    if args.print_config {
        return print_config(&dir);
    }
    // stdout carries the protocol: everything else goes to stderr.
    let engine = super::serve::open_engine(ctx, &dir, args.model.clone()).await?;
    if engine.library().meta().privacy.not_shared_with_agents {
        eprintln!(
            "quarry mcp: {} is not shared with agents; every call will be refused and logged \
             (quarry privacy --library DIR --agents on shares it)",
            dir.display()
        );
    }
    quarry_mcp::serve_stdio(engine)
        .await
        .context("serving MCP over stdio")
}

fn print_config(dir: &std::path::Path) -> Result<()> {
    let binary = std::env::current_exe().context("finding this program's path")?;
    let setup = quarry_app::agents::agent_setup(&binary, dir);
    println!("Claude Desktop and Cursor (mcpServers):");
    if let Some(file) = &setup.claude_config_file {
        println!("  Claude Desktop reads {file}");
    }
    println!("  Cursor reads ~/.cursor/mcp.json (or .cursor/mcp.json in a project)");
    println!("{}\n", setup.claude_desktop);
    println!("VS Code (.vscode/mcp.json in a workspace, or MCP: Open User Configuration):");
    println!("{}\n", setup.vscode);
    println!(
        "Over HTTP instead: run `quarry serve` and point the client at http://127.0.0.1:7311/mcp.\n\
         Every call agents make is logged: quarry audit --mcp"
    );
    Ok(())
}

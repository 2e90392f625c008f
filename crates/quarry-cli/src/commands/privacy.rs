//! `quarry privacy [MODE]`: show or set the privacy mode, globally or for one library.

use std::path::PathBuf;

use anyhow::{bail, Result};
use quarry_core::cloud::{LibraryPrivacy, PrivacyMode, Settings};
use quarry_core::Library;

use crate::context::Context;

#[derive(clap::Args)]
pub struct PrivacyArgs {
    /// New mode: local-only, ask or auto (omit to show the settings).
    mode: Option<PrivacyMode>,
    /// Set the mode for this library instead of globally.
    #[arg(long, short = 'l')]
    library: Option<PathBuf>,
    /// Mark the library never-leaves-device (on) or clear the mark (off).
    #[arg(long, value_parser = ["on", "off"])]
    never_leaves_device: Option<String>,
    /// Let agents (MCP clients: `quarry mcp`, `/mcp`) read the library (on) or refuse them (off).
    #[arg(long, value_parser = ["on", "off"])]
    agents: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn privacy(ctx: &Context, args: PrivacyArgs) -> Result<()> {
    let config = &ctx.dirs.config;
    let mut settings = Settings::load(config)?;
    let mut library = match &args.library {
        Some(dir) => Some(Library::open(dir).await?),
        None => None,
    };
    if (args.never_leaves_device.is_some() || args.agents.is_some()) && library.is_none() {
        bail!("--never-leaves-device and --agents apply to a library: add --library DIR");
    }
    if let Some(lib) = library.as_mut() {
        let mut p: LibraryPrivacy = lib.meta().privacy.clone();
        if let Some(mode) = args.mode {
            p.mode = Some(mode);
        }
        if let Some(flag) = &args.never_leaves_device {
            p.never_leaves_device = flag == "on";
        }
        if let Some(flag) = &args.agents {
            p.not_shared_with_agents = flag == "off";
        }
        if p != lib.meta().privacy {
            lib.set_privacy(p)?;
        }
    } else if let Some(mode) = args.mode {
        settings.privacy = mode;
        settings.save(config)?;
    }
    let lib_privacy = library.as_ref().map(|l| l.meta().privacy.clone());
    let policy = quarry_core::cloud::Policy::resolve(
        None,
        lib_privacy.as_ref().unwrap_or(&LibraryPrivacy::default()),
        &settings,
    );
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "global": settings.privacy,
                "library": lib_privacy,
                "in_force": policy,
            }))?
        );
    } else {
        println!("Global privacy mode: {}", settings.privacy);
        if let Some(p) = &lib_privacy {
            println!(
                "Library mode: {}{}",
                p.mode
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "(global)".into()),
                if p.never_leaves_device {
                    "; never leaves this device"
                } else {
                    ""
                }
            );
            println!(
                "Agents (MCP): {}",
                if p.not_shared_with_agents {
                    "refused: this library is not shared with agents"
                } else {
                    "may search and read it (quarry mcp)"
                }
            );
        }
        println!("In force: {} ({})", policy.mode, policy.why);
    }
    Ok(())
}

//! `quarry doctor --privacy`: the air-gap report — every way data could leave
//! this machine under the configuration in force, and the models in use
//! hashed against their pinned checksums. Exits non-zero when something needs
//! attention, so compliance scripts can gate on it.

use std::net::SocketAddr;

use anyhow::Result;
use quarry_app::privacy_report::{privacy_report, PrivacyReport, ReportInputs};

use crate::context::Context;

#[derive(clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// The privacy report (the only report so far; the default).
    #[arg(long)]
    privacy: bool,
    /// Where `quarry serve` listens, to probe.
    #[arg(long, default_value = "127.0.0.1:7311")]
    serve_addr: SocketAddr,
    /// Where the desktop app's agents endpoint listens, to probe (default:
    /// QUARRY_AGENTS_PORT on loopback, else 7312).
    #[arg(long)]
    agents_addr: Option<SocketAddr>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn doctor(ctx: &Context, args: DoctorArgs) -> Result<()> {
    let _ = args.privacy;
    let library = ctx.library_dir(args.lib.library.clone());
    let env = |k: &str| std::env::var(k).ok();
    let report = privacy_report(&ReportInputs {
        config_dir: &ctx.dirs.config,
        library_dir: Some(&library),
        store: &ctx.store,
        serve_addr: args.serve_addr,
        agents_addr: args
            .agents_addr
            .unwrap_or_else(quarry_app::agents::endpoint_addr),
        env: &env,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if !report.risks.is_empty() {
        anyhow::bail!(
            "{} thing(s) need attention (listed under Attention)",
            report.risks.len()
        );
    }
    Ok(())
}

fn print_report(r: &PrivacyReport) {
    match &r.library {
        Some(dir) => println!("Library: {}", dir.display()),
        None => println!("Library: none yet"),
    }
    println!(
        "Privacy mode in force: {} ({}){}",
        r.policy.mode,
        r.policy.why,
        if r.never_leaves_device {
            "; marked never-leaves-device"
        } else {
            ""
        }
    );
    println!(
        "Quarry itself can send document text off this machine: {}",
        if r.text_can_leave {
            "yes, to the provider below, when the mode allows"
        } else if r.never_leaves_device {
            "no (never-leaves-device)"
        } else {
            "no (no provider is configured)"
        }
    );
    println!("\nProviders:");
    if r.providers.is_empty() {
        println!("  none configured");
    }
    for p in &r.providers {
        println!(
            "  {}{} ({}{}): {}",
            p.name,
            if p.chosen { ", chosen" } else { "" },
            p.base_url,
            if p.redact { ", redacted" } else { "" },
            p.receives
        );
    }
    println!("\nModel downloads (only when you fetch a model; they send the model's name, never document text):");
    for h in &r.downloads {
        println!("  {h}");
    }
    if let Some(at_rest) = &r.at_rest {
        println!("\nOn disk: {at_rest}");
    }
    println!("\nEndpoints:");
    for e in &r.endpoints {
        println!("  {}: {}", e.what, e.reach);
    }
    println!("\nModels in use (hashed now):");
    for m in &r.models {
        println!("  {} {}: {}", m.role, m.id, m.verdict);
    }
    if !r.risks.is_empty() {
        println!("\nAttention:");
        for risk in &r.risks {
            println!("  - {risk}");
        }
    }
}

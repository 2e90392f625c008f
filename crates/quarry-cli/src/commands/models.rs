//! `quarry models fetch | list | import`: install, list and import models.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use indicatif::{ProgressBar, ProgressStyle};
use quarry_core::models::{FetchEvent, ModelRole};

use crate::context::Context;

/// What to do with models.
#[derive(clap::Subcommand)]
pub enum ModelsAction {
    /// Fetch models (default: the default embedder and generator), verify and unpack them.
    Fetch {
        /// Model ids (see `quarry models list`).
        ids: Vec<String>,
        /// Fetch every registered model.
        #[arg(long)]
        all: bool,
    },
    /// List registered models and whether they are installed.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rank the answer models for this machine (a short speed probe, kept for
    /// next time) and recommend the largest that answers within a budget.
    Recommend(crate::commands::fit::RecommendArgs),
    /// Choose the answer model commands use when they name none.
    Use {
        /// Registry id or .gguf file.
        #[arg(required_unless_present = "default")]
        model: Option<String>,
        /// Go back to the registry's default.
        #[arg(long, conflicts_with = "model")]
        default: bool,
    },
    /// Install a model from a local folder or file (offline use).
    Import {
        /// Folder with the model's files, or a single model file (e.g. a .gguf).
        path: PathBuf,
        /// Registry id to install it as (guessed from the files when absent).
        #[arg(long)]
        id: Option<String>,
    },
}

/// Run `quarry models ACTION`.
pub fn run(ctx: &Context, action: ModelsAction) -> Result<()> {
    match action {
        ModelsAction::Fetch { ids, all } => models_fetch(ctx, ids, all),
        ModelsAction::List { json } => models_list(ctx, json),
        ModelsAction::Import { path, id } => models_import(ctx, &path, id.as_deref()),
        ModelsAction::Recommend(args) => crate::commands::fit::models_recommend(ctx, args),
        ModelsAction::Use { model, .. } => crate::commands::fit::models_use(ctx, model),
    }
}

pub fn models_fetch(ctx: &Context, ids: Vec<String>, all: bool) -> Result<()> {
    let registry = ctx.store.registry().clone();
    let ids: Vec<String> = if all {
        registry.models().iter().map(|m| m.id.clone()).collect()
    } else if ids.is_empty() {
        [ModelRole::Embedder, ModelRole::Generator]
            .into_iter()
            .filter_map(|r| registry.default_for(r).map(|m| m.id.clone()))
            .collect()
    } else {
        ids
    };
    let mut failed = 0;
    for id in ids {
        let spec = registry.get(&id)?;
        if ctx.store.is_installed(spec) {
            println!("{id}: installed at {}", ctx.store.dir(&id).display());
            continue;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_message(format!("{id}: fetching"));
        bar.enable_steady_tick(Duration::from_millis(120));
        let mut on_event = |e: FetchEvent| match e {
            FetchEvent::Trying { source } => {
                bar.set_message(format!("{id}: fetching from {source}"))
            }
            FetchEvent::DownloadStart { file, total } => {
                bar.set_length(total);
                bar.set_position(0);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                bar.set_message(format!("{id}: {file}"));
            }
            FetchEvent::DownloadProgress { bytes } => bar.inc(bytes),
            FetchEvent::DownloadDone => {}
            FetchEvent::Verifying => bar.set_message(format!("{id}: verifying checksums")),
        };
        let result = ctx.store.fetch(&id, &mut on_event);
        bar.finish_and_clear();
        match result {
            Ok(dir) => println!("{id}: installed at {}", dir.display()),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} model(s) could not be fetched");
    }
    Ok(())
}

pub fn models_list(ctx: &Context, json: bool) -> Result<()> {
    if json {
        let manager = quarry_app::ModelManager::new(ctx.store.clone())
            .with_config_dir(ctx.dirs.config.clone());
        let view = quarry_app::models::models_view(&manager, &[]);
        println!("{}", serde_json::to_string_pretty(&view.models)?);
        return Ok(());
    }
    println!("models directory: {}", ctx.store.root().display());
    let answers_with = ctx.store.generator_name(None)?;
    let profile = quarry_core::generate::machine::MachineProfile::load(&ctx.dirs.config);
    for m in ctx.store.registry().models() {
        let installed = ctx.store.is_installed(m);
        let marker = if m.id == answers_with {
            " (answers use it)"
        } else if m.default {
            " (default)"
        } else {
            ""
        };
        println!(
            "{} {:<24} {:<9} {}{marker}",
            if installed { "✓" } else { " " },
            m.id,
            format!("{:?}", m.role).to_lowercase(),
            m.description,
        );
        let facts: Vec<String> = [
            m.download_mb.map(|mb| format!("{mb} MB download")),
            m.ram_mb
                .map(|mb| format!("needs ~{:.1} GB RAM", mb as f64 / 1024.0)),
            m.speed.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !facts.is_empty() {
            println!("  {}", facts.join("; "));
        }
        if let Some((speed, basis)) = profile.as_ref().and_then(|p| p.speed_of(m)) {
            println!(
                "  this machine: ~{:.0} tokens/s reading, ~{:.0} writing ({basis:?})",
                speed.prefill_tok_s, speed.decode_tok_s
            );
        }
        if installed {
            println!("  {}", ctx.store.dir(&m.id).display());
        }
    }
    Ok(())
}

pub fn models_import(ctx: &Context, path: &Path, id: Option<&str>) -> Result<()> {
    let (id, dir) = ctx.store.import(path, id)?;
    println!("{id}: installed at {}", dir.display());
    Ok(())
}

//! `quarry search QUERY`: hybrid, vector or keyword search with filters.

use std::path::PathBuf;

use anyhow::{bail, Result};
use quarry_core::retrieve::fusion::FusionConfig;
use quarry_core::store::Filter;
use quarry_core::{HybridSearch, Library, SearchMode, SearchOptions};

use crate::context::Context;
use crate::render;

#[derive(clap::Args)]
pub struct SearchArgs {
    /// What to look for.
    query: String,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// hybrid, vector or keyword.
    #[arg(long, default_value = "hybrid")]
    mode: SearchMode,
    /// Number of results.
    #[arg(short = 'k', long, default_value_t = 10)]
    k: usize,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    fusion: FusionArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Which documents a command looks at (`search`, `extract`, `classify`).
#[derive(clap::Args, Clone, Default)]
pub struct FilterArgs {
    /// Only files whose path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Only files with this extension (repeatable), e.g. --ext pdf.
    #[arg(long)]
    ext: Vec<String>,
    /// Only files modified on or after this local date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_local_date)]
    modified_after: Option<i64>,
    /// Only files modified before this local date (YYYY-MM-DD).
    #[arg(long, value_parser = parse_local_date)]
    modified_before: Option<i64>,
}

impl FilterArgs {
    /// The filter these flags describe (a relative prefix is resolved like
    /// a path the user typed).
    pub fn filter(&self) -> Filter {
        let path_prefix = self.path_prefix.as_ref().map(|p| absolute(p));
        Filter {
            path_prefix,
            extensions: self
                .ext
                .iter()
                .map(|e| e.trim_start_matches('.').to_lowercase())
                .collect(),
            modified_after_ms: self.modified_after,
            modified_before_ms: self.modified_before,
            paths: None,
        }
    }
}

/// `p` made absolute against the current directory (as typed, when it cannot be).
pub fn absolute(p: &str) -> String {
    let pb = PathBuf::from(p);
    if pb.is_relative() {
        std::env::current_dir()
            .map(|c| c.join(&pb).to_string_lossy().to_string())
            .unwrap_or_else(|_| p.to_string())
    } else {
        p.to_string()
    }
}

/// Hybrid fusion settings shared by `search` and `eval`.
#[derive(clap::Args, Clone, Copy)]
pub struct FusionArgs {
    /// How hybrid search combines its two lists: `scores` (standardised
    /// scores, the default) or `ranks` (reciprocal rank fusion, vector weight 0.3).
    #[arg(long)]
    fusion: Option<quarry_core::retrieve::fusion::FusionMethod>,
    /// Weight of vector results in fusion, 0..1 (keyword gets the rest).
    /// Without it, score fusion learns the weight from the library's
    /// searches and questions so far (0.55 for a new library).
    #[arg(long)]
    vector_weight: Option<f32>,
    /// Reciprocal rank fusion constant k (ranks only).
    #[arg(long)]
    rrf_k: Option<f32>,
    /// Results each retriever contributes to fusion.
    #[arg(long)]
    depth: Option<usize>,
}

impl FusionArgs {
    /// The defaults with the given flags applied.
    pub fn config(&self) -> Result<FusionConfig> {
        let mut fusion = match self.fusion {
            Some(quarry_core::retrieve::fusion::FusionMethod::Ranks) => FusionConfig::ranks(),
            _ => FusionConfig::default(),
        };
        if let Some(w) = self.vector_weight {
            if !(0.0..=1.0).contains(&w) {
                bail!("--vector-weight must be between 0 and 1");
            }
            fusion.vector_weight = w;
            fusion.adaptive = false;
        }
        if let Some(k) = self.rrf_k {
            fusion.rrf_k = k;
        }
        if let Some(d) = self.depth {
            fusion.depth = d;
        }
        Ok(fusion)
    }
}

pub async fn search(ctx: &Context, args: SearchArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library);
    let lib = Library::open(&dir).await?;
    let embedder = match args.mode {
        SearchMode::Keyword => None,
        _ => Some(ctx.load_embedder(&lib.meta().embedder)?),
    };
    let fusion = args.fusion.config()?;
    let opts = SearchOptions {
        mode: args.mode,
        k: args.k,
        fusion,
        filter: args.filter.filter(),
    };
    let searcher = HybridSearch::new(&lib, embedder.as_ref())?;
    let results = searcher.search(&args.query, &opts).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&render::hits_json(&results.hits))?
        );
    } else {
        render::hits(&results.hits, results.timings.total);
    }
    Ok(())
}

/// Midnight at the start of a local calendar date (YYYY-MM-DD), as
/// milliseconds since the epoch.
fn parse_local_date(s: &str) -> std::result::Result<i64, String> {
    use chrono::{Local, NaiveDate, TimeZone};
    let date = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|e| format!("'{s}' is not a date like 2024-03-31 ({e})"))?;
    let midnight = date.and_hms_opt(0, 0, 0).ok_or("no midnight")?;
    Local
        .from_local_datetime(&midnight)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("'{s}' has no local midnight"))
}

//! `quarry extract --schema F` and `quarry classify --labels a,b,c`: the
//! local model fills fields from each document into a table, every value
//! checked against its passage and cited; kept per document, so Ctrl-C and
//! a re-run lose nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{bail, Result};
use quarry_core::tasks::extract::{DocumentFields, ExtractOptions};
use quarry_core::tasks::results::ResultStore;
use quarry_core::tasks::saved::SchemaShelf;
use quarry_core::tasks::schema::Schema;
use quarry_core::tasks::table::{cell_text, to_json, write_table};
use quarry_core::tasks::verify::Check;
use quarry_core::tasks::{
    documents_found, extract_all, select_documents, DocumentDone, ExtractEvent, RunSummary,
};
use quarry_core::{HybridSearch, Library, SearchMode};

use super::ask::{cancel_on_ctrl_c, load_generator};
use super::search::{absolute, FilterArgs};
use crate::context::Context;

/// What `extract` and `classify` share: which documents, which model, where
/// the table goes.
#[derive(clap::Args)]
pub struct TaskArgs {
    /// Folders or files to take documents from (default: every indexed document).
    paths: Vec<String>,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Generator: a registry id or a path to a .gguf file (default: the registry's default generator).
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Write the table here: .csv, .xlsx or .json (default: print it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the JSON form to stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Passages searched per field inside each document.
    #[arg(long, default_value_t = ExtractOptions::default().per_field)]
    per_field: usize,
    /// Most tokens of passages the model reads per document.
    #[arg(long, default_value_t = ExtractOptions::default().passage_tokens)]
    passage_tokens: usize,
    /// Extract again even where a result is kept for the same content, schema and model.
    #[arg(long)]
    redo: bool,
    /// Take the documents from a search: the best-matching documents for
    /// this query (inside the paths and filters given).
    #[arg(long)]
    query: Option<String>,
    /// How many documents --query takes.
    #[arg(long, default_value_t = 20, requires = "query")]
    top: usize,
}

#[derive(clap::Args)]
pub struct ExtractArgs {
    /// The fields: a file holding a JSON Schema object or {"fields": [{"name",
    /// "type", "description", "choices"?}]}, or the name of a schema saved in
    /// the library (`quarry schemas` lists them).
    #[arg(long)]
    schema: String,
    /// Also save the schema in the library under this name.
    #[arg(long, value_name = "NAME")]
    save_schema: Option<String>,
    #[command(flatten)]
    task: TaskArgs,
}

#[derive(clap::Args)]
pub struct ClassifyArgs {
    /// The categories, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    labels: Vec<String>,
    #[command(flatten)]
    task: TaskArgs,
}

pub async fn extract(ctx: &Context, args: ExtractArgs) -> Result<()> {
    let lib_dir = ctx.library_dir(args.task.lib.library.clone());
    let schema = read_schema(&lib_dir, &args.schema)?;
    if let Some(name) = &args.save_schema {
        let saved = SchemaShelf::of(&lib_dir).save(name, &schema)?;
        let n = schema.fields.len();
        eprintln!(
            "saved the schema as \"{}\" ({n} field{}): `--schema \"{}\"` runs it again",
            saved.name,
            if n == 1 { "" } else { "s" },
            saved.name
        );
    }
    run(ctx, schema, args.task).await
}

/// The schema `given` names: a file, or else a schema saved in the library.
/// A missing or malformed one is the user's to fix (exit 2).
pub fn read_schema(lib_dir: &Path, given: &str) -> Result<Schema> {
    let path = Path::new(given);
    let looks_like_file = path.exists()
        || path.extension().is_some_and(|e| e == "json")
        || given.contains(['/', '\\']);
    if !looks_like_file {
        return Ok(SchemaShelf::of(lib_dir).get(given)?.schema);
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        quarry_core::Error::InvalidInput(format!("cannot read {}: {e}", path.display()))
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        quarry_core::Error::InvalidInput(format!("{} is not JSON: {e}", path.display()))
    })?;
    Ok(Schema::parse(&value)?)
}

pub async fn classify(ctx: &Context, args: ClassifyArgs) -> Result<()> {
    let labels: Vec<String> = args
        .labels
        .iter()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    run(ctx, Schema::classifier(&labels)?, args.task).await
}

async fn run(ctx: &Context, schema: Schema, args: TaskArgs) -> Result<()> {
    if let Some(out) = &args.out {
        quarry_core::tasks::table::TableFormat::of(out)?;
    }
    let lib = Library::open(&ctx.library_dir(args.lib.library.clone())).await?;
    let embedder = ctx.load_embedder(&lib.meta().embedder).ok();
    let search = HybridSearch::new(&lib, embedder.as_ref())?
        .with_history(quarry_core::retrieve::search::HistoryUse::Read);
    let docs = documents(&search, &args).await?;
    if docs.is_empty() {
        match &args.query {
            Some(q) => {
                bail!("a search for \"{q}\" finds no indexed documents (inside the filters given)")
            }
            None => {
                bail!("no indexed documents match; `quarry status` lists what the library holds")
            }
        }
    }
    let mut model = load_generator(ctx, args.model.as_deref())?;
    let model_key = ctx.store.generator_name(args.model.as_deref())?;
    let mut store = ResultStore::open(lib.dir(), &schema, &model_key)?;
    let opts = ExtractOptions {
        per_field: args.per_field.max(1),
        passage_tokens: args.passage_tokens,
        mode: if embedder.is_some() {
            SearchMode::Hybrid
        } else {
            SearchMode::Keyword
        },
        ..Default::default()
    };
    if args.redo {
        for d in &docs {
            store.forget(&d.path);
        }
    }
    let (cancelled, watcher) = cancel_on_ctrl_c();
    let mut progress = Progress::new();
    let result = extract_all(
        &search,
        &mut model,
        &schema,
        &docs,
        &mut store,
        &opts,
        &cancelled,
        &mut |e| progress.show(&e),
    )
    .await;
    watcher.abort();
    let (rows, summary) = result?;
    finish(&schema, &rows, &summary, &args, store.path(), &cancelled)
}

/// The selected documents: the filter's, under one of the paths when given;
/// with `--query`, the best-matching of those, best first.
async fn documents(
    search: &HybridSearch<'_>,
    args: &TaskArgs,
) -> Result<Vec<quarry_core::store::DocumentRecord>> {
    let roots: Vec<String> = args.paths.iter().map(|p| absolute(p)).collect();
    let filter = args.filter.filter();
    Ok(match &args.query {
        Some(q) => documents_found(search, q, &filter, &roots, args.top).await?,
        None => select_documents(search.library(), &filter, &roots).await?,
    })
}

fn finish(
    schema: &Schema,
    rows: &[DocumentFields],
    summary: &RunSummary,
    args: &TaskArgs,
    kept_at: &std::path::Path,
    cancelled: &AtomicBool,
) -> Result<()> {
    let unverified: usize = rows
        .iter()
        .flat_map(|r| r.fields.values())
        .filter(|v| !v.verified && !v.value.is_null())
        .count();
    let filled: usize = rows
        .iter()
        .flat_map(|r| r.fields.values())
        .filter(|v| !v.value.is_null())
        .count();
    eprintln!(
        "{} extracted, {} kept from before, {} failed in {:.1} s; {filled} values, {unverified} not found in their passage",
        summary.extracted, summary.kept, summary.failed, summary.seconds
    );
    if summary.cancelled || cancelled.load(std::sync::atomic::Ordering::SeqCst) {
        eprintln!(
            "stopped after {} documents; what is done is kept ({}): run the same command to go on",
            rows.len(),
            kept_at.display()
        );
    }
    if let Some(out) = &args.out {
        write_table(out, schema, rows)?;
        eprintln!("wrote {}", out.display());
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&to_json(schema, rows))?);
    } else {
        print_table(schema, rows);
    }
    Ok(())
}

/// Each document, then each field: its value, `?` when it was not found in
/// its passage, and the page it was cited at.
fn print_table(schema: &Schema, rows: &[DocumentFields]) {
    let width = schema
        .fields
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0);
    for r in rows {
        println!("{}", r.path);
        if let Some(e) = &r.error {
            println!("  error: {e}");
            continue;
        }
        for f in &schema.fields {
            let Some(v) = r.fields.get(&f.name) else {
                continue;
            };
            let mark = match v.check {
                Check::NotFound => "?",
                Check::Inferred => "~",
                _ => " ",
            };
            let page = v
                .citation
                .as_ref()
                .and_then(|c| c.page)
                .map(|p| format!("  (p. {p})"))
                .unwrap_or_default();
            let text = if v.value.is_null() {
                "—".to_string()
            } else {
                cell_text(&v.value)
            };
            println!("  {mark} {:width$}  {text}{page}", f.name);
        }
    }
    let any = |c: Check| rows.iter().any(|r| r.fields.values().any(|v| v.check == c));
    if any(Check::NotFound) {
        println!("\n? = not found in the passages the model read: check it before relying on it");
    }
    if any(Check::Inferred) {
        println!("~ = a judgement (a choice or yes/no the passage does not spell out)");
    }
}

/// Progress on stderr: documents done, the rate and what is left.
struct Progress {
    started: Instant,
    fresh: usize,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            fresh: 0,
        }
    }

    fn show(&mut self, e: &ExtractEvent) {
        match e {
            ExtractEvent::Started { total, kept } => {
                eprintln!("extracting from {total} documents ({kept} kept from an earlier run)");
            }
            ExtractEvent::Document(DocumentDone {
                done,
                total,
                kept,
                fields,
            }) => {
                if *kept {
                    return;
                }
                self.fresh += 1;
                let secs = self.started.elapsed().as_secs_f64();
                let per_doc = secs / self.fresh as f64;
                let eta = per_doc * (total - done) as f64;
                let status = match &fields.error {
                    Some(e) => format!("failed: {e}"),
                    None => {
                        let open = fields
                            .fields
                            .values()
                            .filter(|v| !v.verified && !v.value.is_null())
                            .count();
                        format!(
                            "{} values, {open} unverified",
                            fields
                                .fields
                                .values()
                                .filter(|v| !v.value.is_null())
                                .count()
                        )
                    }
                };
                eprintln!(
                    "[{done}/{total}] {}  {status}  ({:.1} s; {:.1} docs/min; ~{:.0} s left)",
                    fields.path,
                    fields.ms as f64 / 1000.0,
                    60.0 / per_doc.max(1e-9),
                    eta
                );
            }
        }
    }
}

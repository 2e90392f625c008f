//! `quarry summarize PATH…`: a cited summary of each document, from every
//! passage, written by the local model; kept per content, so asking again is
//! instant.

use std::sync::atomic::Ordering;

use anyhow::{bail, Result};
use quarry_core::answer::whole::WholeOptions;
use quarry_core::answer::AnswerEvent;
use quarry_core::tasks::select_documents;
use quarry_core::tasks::summarize::{summarize as summarize_document, Summary, SummaryStore};
use quarry_core::Library;

use super::ask::{cancel_on_ctrl_c, load_generator};
use super::search::{absolute, FilterArgs};
use crate::context::Context;

#[derive(clap::Args)]
pub struct SummarizeArgs {
    /// Documents, or folders whose documents to summarise (at least one).
    #[arg(required = true)]
    paths: Vec<String>,
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Generator: a registry id or a path to a .gguf file (default: the registry's default generator).
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Most passages read per document (the first ones).
    #[arg(long, default_value_t = 200)]
    max_passages: usize,
    /// Print the summaries as a JSON array instead of text.
    #[arg(long)]
    json: bool,
    /// Write again even where a summary is kept for the same content and model.
    #[arg(long)]
    redo: bool,
}

pub async fn summarize(ctx: &Context, args: SummarizeArgs) -> Result<()> {
    let lib = Library::open(&ctx.library_dir(args.lib.library.clone())).await?;
    let roots: Vec<String> = args.paths.iter().map(|p| absolute(p)).collect();
    let docs = select_documents(&lib, &args.filter.filter(), &roots).await?;
    if docs.is_empty() {
        bail!(
            "no indexed document is {}; `quarry status` lists what the library holds",
            roots.join(" or under ")
        );
    }
    let mut model = load_generator(ctx, args.model.as_deref())?;
    let mut store =
        SummaryStore::summaries(lib.dir(), &ctx.store.generator_name(args.model.as_deref())?)?;
    if args.redo {
        for d in &docs {
            store.forget(&d.path);
        }
    }
    let opts = WholeOptions {
        max_passages: args.max_passages.max(1),
        ..Default::default()
    };
    let (cancelled, watcher) = cancel_on_ctrl_c();
    let mut done = Vec::new();
    for doc in &docs {
        if !args.json {
            println!("{}", doc.path);
        }
        let mut streamed = String::new();
        let mut on_event = |e: AnswerEvent| {
            match e {
                AnswerEvent::Reading { done, total } => {
                    crate::render::reading_progress(done, total)
                }
                AnswerEvent::Token(t) if !args.json => {
                    streamed.push_str(&t);
                    print!("{t}");
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                }
                _ => {}
            }
            !cancelled.load(Ordering::SeqCst)
        };
        let (summary, kept) =
            summarize_document(&lib, &mut model, &mut store, doc, &opts, &mut on_event)?;
        if cancelled.load(Ordering::SeqCst) {
            eprintln!("\nstopped; finished summaries are kept: run the same command to go on");
            break;
        }
        if !args.json {
            // Cut at a repeat, or with citations added to a text that had
            // none: the final text is not what streamed.
            if streamed.trim() != summary.text.trim() {
                print!("\n\nSummary:\n{}", summary.text);
            }
            print_sources(&summary, kept);
        }
        done.push(summary);
    }
    watcher.abort();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    }
    Ok(())
}

/// The cited passages under a summary, and what it read.
fn print_sources(s: &Summary, kept: bool) {
    println!();
    for c in &s.cited {
        let mut text: String = c.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().count() > 100 {
            text = text.chars().take(100).collect::<String>() + "…";
        }
        let page = c.page.map(|p| format!("p. {p}: ")).unwrap_or_default();
        println!("  [{}] {page}{text}", c.n);
    }
    let read = if s.left_out > 0 {
        format!(
            "the first {} of {} passages (--max-passages)",
            s.passages,
            s.passages + s.left_out
        )
    } else {
        format!("all {} passages", s.passages)
    };
    if kept {
        eprintln!("  (kept from before: {read}, by {})", s.model);
    } else {
        eprintln!(
            "  ({read}, {} model calls, {:.1} s, by {})",
            s.calls,
            s.ms as f64 / 1000.0,
            s.model
        );
    }
    println!();
}

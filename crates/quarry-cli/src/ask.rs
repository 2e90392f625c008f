//! `quarry ask`: a grounded answer from the library, streamed.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use quarry_core::answer::{answer, AnswerEvent, AnswerOptions, Source};
use quarry_core::generate::{LoadOptions, LocalModel};
use quarry_core::models::ModelRole;
use quarry_core::store::Filter;
use quarry_core::Library;

use crate::commands::Context;

#[derive(clap::Args)]
pub struct AskArgs {
    /// The question.
    question: String,
    #[command(flatten)]
    lib: crate::LibraryArg,
    /// Generator: a registry id or a path to a .gguf file (default: the registry's default generator).
    #[arg(long)]
    model: Option<String>,
    /// Sources to retrieve at most.
    #[arg(long, default_value_t = 5)]
    sources: usize,
    /// Sampling temperature (0 = greedy, deterministic).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 0.9)]
    top_p: f64,
    /// Random seed.
    #[arg(long, default_value_t = 299792458)]
    seed: u64,
    /// Most answer tokens.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Extra stop sequence (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Relevance floor: below this similarity Quarry says the documents do not contain the answer.
    #[arg(long)]
    min_similarity: Option<f32>,
    /// Only files whose path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    json: bool,
}

/// Load the generator named by `model` (id or .gguf path) or the default one.
pub fn load_generator(ctx: &Context, model: Option<&str>) -> Result<LocalModel> {
    let path: PathBuf = match model {
        Some(m) if m.ends_with(".gguf") || std::path::Path::new(m).is_file() => PathBuf::from(m),
        other => {
            let id = match other {
                Some(id) => id.to_string(),
                None => ctx
                    .store
                    .registry()
                    .default_for(ModelRole::Generator)
                    .map(|m| m.id.clone())
                    .context("the registry has no default generator")?,
            };
            let spec = ctx.store.registry().get(&id)?;
            let dir = ctx.store.require(&id)?;
            dir.join(&spec.files.first().context("generator lists no file")?.path)
        }
    };
    let opts = LoadOptions {
        requantize_slow: true,
        cache_dir: Some(ctx.store.root().join(".converted")),
    };
    LocalModel::load(&path, &opts).with_context(|| format!("loading {}", path.display()))
}

/// A flag set by Ctrl-C (for as long as the returned task runs), so generation
/// stops cleanly instead of the process dying mid-answer.
fn cancel_on_ctrl_c() -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    let watcher = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    (cancelled, watcher)
}

/// Print streamed answer text (unless `quiet`); `false` once cancelled.
fn stream_to_stdout(e: &AnswerEvent, quiet: bool, cancelled: &AtomicBool) -> bool {
    if !quiet {
        if let AnswerEvent::Token(t) = e {
            print!("{t}");
            let _ = std::io::stdout().flush();
        }
    }
    !cancelled.load(Ordering::SeqCst)
}

/// The library, its embedder and the generator: what `ask` and `chat` need.
async fn open_for_answers(
    ctx: &Context,
    dir: &std::path::Path,
    model: Option<&str>,
) -> Result<(Library, quarry_core::Embedder, LocalModel)> {
    let library = Library::open(dir).await?;
    let embedder = ctx.load_embedder(&library.meta().embedder)?;
    let model = load_generator(ctx, model)?;
    Ok((library, embedder, model))
}

fn print_sources(sources: &[Source], cited: &[usize]) {
    if sources.is_empty() {
        return;
    }
    println!("\nSources:");
    for s in sources {
        let mut line = format!("[{}] {}", s.n, s.path);
        if let Some(p) = s.page {
            line.push_str(&format!(", page {p}"));
        }
        if let Some(h) = &s.heading {
            line.push_str(&format!(", {h}"));
        }
        if !cited.contains(&s.n) {
            line.push_str("  (not cited)");
        }
        println!("{line}");
    }
}

pub async fn ask(ctx: &Context, args: AskArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library.clone());
    let (library, embedder, mut model) = open_for_answers(ctx, &dir, args.model.as_deref()).await?;
    let mut opts = AnswerOptions {
        sources: args.sources,
        filter: Filter {
            path_prefix: args.path_prefix.clone(),
            extensions: Vec::new(),
        },
        ..Default::default()
    };
    opts.generate.temperature = args.temperature;
    opts.generate.top_p = args.top_p;
    opts.generate.seed = args.seed;
    opts.generate.max_tokens = args.max_tokens;
    opts.generate.stop = args.stop.clone();
    if let Some(m) = args.min_similarity {
        opts.min_similarity = m;
    }
    // Ctrl-C stops generation cleanly: the answer so far and its sources are kept.
    let (cancelled, watcher) = cancel_on_ctrl_c();
    let json = args.json;
    let mut on_event = |e: AnswerEvent| stream_to_stdout(&e, json, &cancelled);
    let result = answer(
        &library,
        &embedder,
        &mut model,
        &args.question,
        &[],
        &opts,
        &mut on_event,
    )
    .await;
    watcher.abort();
    let result = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!();
        print_sources(&result.sources, &result.cited);
        eprintln!(
            "\n[{}: first token {:.0} ms, total {:.0} ms, prompt {} tokens at {:.0} tok/s, {} tokens at {:.1} tok/s]",
            result.route.target,
            result.timings.first_token_ms,
            result.timings.total_ms,
            result.timings.prompt_tokens,
            result.timings.prefill_tokens_per_s,
            result.timings.generated_tokens,
            result.timings.decode_tokens_per_s
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    lib: crate::LibraryArg,
    /// Generator: a registry id or a path to a .gguf file.
    #[arg(long)]
    model: Option<String>,
    /// Sources to retrieve per question.
    #[arg(long, default_value_t = 5)]
    sources: usize,
    /// Most answer tokens per turn.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
}

/// `quarry chat`: several questions in a row; follow-ups see the conversation.
pub async fn chat(ctx: &Context, args: ChatArgs) -> Result<()> {
    use std::io::BufRead;
    let dir = ctx.library_dir(args.lib.library.clone());
    let (library, embedder, mut model) = open_for_answers(ctx, &dir, args.model.as_deref()).await?;
    let mut opts = AnswerOptions {
        sources: args.sources,
        ..Default::default()
    };
    opts.generate.max_tokens = args.max_tokens;
    opts.generate.temperature = args.temperature;
    let (cancelled, watcher) = cancel_on_ctrl_c();
    eprintln!(
        "Ask about {} (Ctrl-C stops an answer; Ctrl-D or /quit leaves).",
        dir.display()
    );
    let mut history: Vec<quarry_core::generate::ChatMessage> = Vec::new();
    let stdin = std::io::stdin();
    loop {
        eprint!("\n> ");
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let question = line.trim();
        if question.is_empty() {
            continue;
        }
        if question == "/quit" || question == "/exit" {
            break;
        }
        cancelled.store(false, Ordering::SeqCst);
        let mut on_event = |e: AnswerEvent| stream_to_stdout(&e, false, &cancelled);
        let keep = history.len().saturating_sub(4);
        let result = answer(
            &library,
            &embedder,
            &mut model,
            question,
            &history[keep..],
            &opts,
            &mut on_event,
        )
        .await;
        match result {
            Ok(a) => {
                println!();
                print_sources(&a.sources, &a.cited);
                history.push(quarry_core::generate::ChatMessage::new("user", question));
                history.push(quarry_core::generate::ChatMessage::new(
                    "assistant",
                    a.answer,
                ));
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    watcher.abort();
    Ok(())
}

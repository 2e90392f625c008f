//! `quarry ask`: a grounded answer from the library, streamed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use quarry_app::session::{ask_options, classifier_for, Routing};
use quarry_core::answer::cache::AnswerCache;
use quarry_core::answer::router::{RouteOverride, TaskClassifier};
use quarry_core::answer::{AnswerEvent, AnswerOptions, Source};
use quarry_core::cloud::{Preview, PrivacyMode};
use quarry_core::generate::LocalModel;
use quarry_core::store::Filter;
use quarry_core::Library;

use crate::context::Context;

#[derive(clap::Args)]
pub struct AskArgs {
    /// The question.
    question: String,
    #[command(flatten)]
    answering: AnsweringArgs,
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
    /// Relevance floor: below this similarity, unless a passage shares the question's rare
    /// words (--min-keyword-evidence), Quarry says the documents do not contain the answer
    /// (default: the embedder's floor from the model registry: 0.40 for all-MiniLM-L6-v2,
    /// 0.80 for multilingual-e5).
    #[arg(long)]
    min_similarity: Option<f32>,
    /// Keyword evidence that counts as relevant whatever the similarity: the best keyword
    /// hit's BM25 score over ln(1 + chunks), about how many rare words of the question it
    /// holds (default 1.95; a large value leaves the decision to --min-similarity).
    #[arg(long)]
    min_keyword_evidence: Option<f32>,
    /// Only files whose path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
    /// Read every passage of the documents instead of the best few: auto
    /// (for "list every…", "how many … mentioned", summaries), always or never.
    #[arg(long, default_value = "auto")]
    whole: quarry_core::answer::WholeReading,
    /// Print one JSON object at the end instead of streaming.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    routing: RoutingArgs,
}

/// The library, the model and how many sources an answer uses (`ask`, `chat`).
#[derive(clap::Args)]
pub struct AnsweringArgs {
    #[command(flatten)]
    pub lib: crate::context::LibraryArg,
    /// Generator: a registry id or a path to a .gguf file (default: the registry's default generator).
    #[arg(long)]
    pub model: Option<String>,
    /// Sources to retrieve per question, at most.
    #[arg(long, default_value_t = AnswerOptions::default().sources)]
    pub sources: usize,
    /// The local model reads the best this-many sources twice (0: each once).
    #[arg(long, default_value_t = AnswerOptions::default().reread)]
    pub reread: usize,
    /// Characters of each source the local model reads, around its sentences
    /// that best match the question (0: whole passages).
    #[arg(long, default_value_t = quarry_core::answer::evidence::Trim::default().chars)]
    pub source_chars: usize,
    /// Decode token by token, without drafting from the sources (same
    /// output; for comparing speed).
    #[arg(long)]
    pub no_lookup: bool,
    /// Copy bias: added to the logits of tokens that continue the answer as
    /// the sources do, so it repeats their wording (0: off, the default;
    /// measured in BENCHMARKS.md).
    #[arg(long, default_value_t = 0.0)]
    pub copy_bias: f32,
}

impl AnsweringArgs {
    /// Answer options with these settings.
    pub fn answer_options(&self) -> AnswerOptions {
        let mut opts = AnswerOptions {
            sources: self.sources,
            reread: self.reread,
            ..Default::default()
        };
        opts.trim.chars = self.source_chars;
        opts.generate.lookup = !self.no_lookup;
        opts.generate.copy_bias = self.copy_bias;
        opts
    }
}

/// Where answers may come from.
#[derive(clap::Args, Clone)]
pub struct RoutingArgs {
    /// Privacy mode for this command: local-only, ask or auto (default: the library's, else the global setting).
    #[arg(long)]
    privacy: Option<PrivacyMode>,
    /// Route: local, cloud or auto (the router decides).
    #[arg(long, default_value = "auto")]
    route: RouteOverride,
    /// Provider to send to (default: the configured default).
    #[arg(long)]
    provider: Option<String>,
    /// Do not use or fill the answer cache.
    #[arg(long)]
    no_cache: bool,
    /// In ask mode, send without asking (you have seen what is sent).
    #[arg(long)]
    yes: bool,
}

/// Load the generator named by `model` (id or .gguf path) or the default one.
pub fn load_generator(ctx: &Context, model: Option<&str>) -> Result<LocalModel> {
    LocalModel::from_store(&ctx.store, model)
        .with_context(|| format!("loading {}", model.unwrap_or("the default generator")))
}

/// A flag set by Ctrl-C (for as long as the returned task runs), so generation
/// stops cleanly instead of the process dying mid-answer.
pub(crate) fn cancel_on_ctrl_c() -> (Arc<AtomicBool>, tokio::task::JoinHandle<()>) {
    let cancelled = Arc::new(AtomicBool::new(false));
    let flag = cancelled.clone();
    let watcher = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    (cancelled, watcher)
}

/// Print streamed answer text (unless `quiet`) and the route; `false` once cancelled.
pub(crate) fn stream_to_stdout(e: &AnswerEvent, quiet: bool, cancelled: &AtomicBool) -> bool {
    if !quiet {
        match e {
            AnswerEvent::Token(t) => {
                print!("{t}");
                let _ = std::io::stdout().flush();
            }
            AnswerEvent::Route(r) => {
                eprintln!("[{}: {}]", r.target, r.reason);
            }
            AnswerEvent::Sent(p) => {
                eprintln!(
                    "\n[sent {} bytes to '{}' ({}); `quarry audit` lists it]",
                    p.bytes, p.provider, p.host
                );
            }
            AnswerEvent::Evidence(ev) => print_evidence(ev),
            AnswerEvent::Reading { done, total } => crate::render::reading_progress(*done, *total),
            AnswerEvent::Thinking { tokens: 1 } => eprintln!("[the model is thinking…]"),
            AnswerEvent::Sources(_) | AnswerEvent::Thinking { .. } => {}
        }
    }
    !cancelled.load(Ordering::SeqCst)
}

/// The best-matching sentences, on stderr while the answer is composed.
fn print_evidence(evidence: &[quarry_core::answer::evidence::Evidence]) {
    if evidence.is_empty() {
        return;
    }
    eprintln!("Best-matching sentences while the answer is composed:");
    for e in evidence {
        let mut text: String = e.text.chars().take(200).collect();
        if text.len() < e.text.len() {
            text.push('…');
        }
        eprintln!("  [{}] {text}", e.n);
    }
}

/// Show exactly what would be sent and ask the user (ask mode).
fn confirm_on_terminal(p: &Preview, yes: bool) -> bool {
    use std::io::{BufRead, IsTerminal};
    eprintln!(
        "\nThis would be sent to provider '{}' ({}, model {}), {} bytes{}:",
        p.provider,
        p.host,
        p.model,
        p.bytes,
        if p.redactions.counts.is_empty() {
            String::new()
        } else {
            format!(", personal data redacted: {:?}", p.redactions.counts)
        }
    );
    for m in &p.messages {
        eprintln!("----- {} -----\n{}", m.role, m.content);
    }
    eprintln!("-----");
    if yes {
        eprintln!("Sending (--yes).");
        return true;
    }
    if !std::io::stdin().is_terminal() {
        eprintln!("Not sent: no terminal to confirm on (pass --yes to send).");
        return false;
    }
    eprint!("Send it? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// Ask one question through the router, with the terminal for consent and
/// the routing flags (`ask` and `chat`).
pub(crate) async fn ask_routed(
    parts: (&Library, &quarry_core::Embedder, &mut LocalModel),
    session: &mut Session,
    args: &RoutingArgs,
    question: &str,
    history: &[quarry_core::generate::ChatMessage],
    answer: AnswerOptions,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> quarry_core::Result<quarry_core::answer::Answer> {
    let yes = args.yes;
    let mut confirm = |p: &Preview| confirm_on_terminal(p, yes);
    let cache = (!args.no_cache).then_some(&mut session.cache);
    let mut asker = session
        .routing
        .asker(parts, session.classifier.as_ref(), cache);
    let opts = ask_options(answer, args.route, !args.no_cache);
    asker
        .ask(question, history, &opts, &mut confirm, on_event)
        .await
}

/// The routing, task classifier and answer cache for asking `library`.
pub struct Session {
    routing: Routing,
    classifier: Option<TaskClassifier>,
    cache: AnswerCache,
}

pub(crate) fn session_for(
    ctx: &Context,
    library: &Library,
    embedder: &quarry_core::Embedder,
    args: &RoutingArgs,
) -> Result<Session> {
    let routing = Routing::for_library(
        &ctx.dirs.config,
        library,
        args.privacy,
        args.provider.as_deref(),
    )?;
    Ok(Session {
        classifier: classifier_for(&routing, embedder, &ctx.store)?,
        cache: AnswerCache::open(library.dir(), library.files().clone()),
        routing,
    })
}

/// The library, its embedder and the generator: what `ask` and `chat` need.
pub(crate) async fn open_for_answers(
    ctx: &Context,
    dir: &std::path::Path,
    model: Option<&str>,
) -> Result<(Library, quarry_core::Embedder, LocalModel)> {
    let library = Library::open(dir).await?;
    let embedder = ctx.load_embedder(&library.meta().embedder)?;
    let model = load_generator(ctx, model)?;
    Ok((library, embedder, model))
}

/// The answer's sentences that their cited sources do not back.
pub(crate) fn print_support(support: &quarry_core::answer::support::Support) {
    if support.unsupported.is_empty() {
        return;
    }
    println!("\nNot backed by the source it cites (check before relying on it):");
    for s in &support.unsupported {
        println!("  ! {s}");
    }
}

pub(crate) fn print_sources(sources: &[Source], cited: &[usize]) {
    if sources.is_empty() {
        return;
    }
    println!("\nSources:");
    // A whole-document reading numbers every passage: list the cited ones.
    let many = sources.len() > 12;
    for s in sources.iter().filter(|s| !many || cited.contains(&s.n)) {
        let mut line = format!("[{}] {}", s.n, s.path);
        if let Some(p) = s.page {
            line.push_str(&format!(", page {p}"));
        }
        if let Some(c) = s.ocr_confidence {
            line.push_str(&format!(" (scanned, OCR {c:.0}%)"));
        }
        if let Some(h) = &s.heading {
            line.push_str(&format!(", {h}"));
        }
        if !cited.contains(&s.n) {
            line.push_str("  (not cited)");
        }
        println!("{line}");
    }
    if many {
        println!(
            "({} other passages were read and not cited)",
            sources.len() - cited.len()
        );
    }
}

pub async fn ask(ctx: &Context, args: AskArgs) -> Result<()> {
    let dir = ctx.library_dir(args.answering.lib.library.clone());
    let (library, embedder, mut model) =
        open_for_answers(ctx, &dir, args.answering.model.as_deref()).await?;
    let mut opts = args.answering.answer_options();
    opts.filter = Filter {
        path_prefix: args.path_prefix.clone(),
        ..Default::default()
    };
    opts.generate.temperature = args.temperature;
    opts.generate.top_p = args.top_p;
    opts.generate.seed = args.seed;
    opts.generate.max_tokens = args.max_tokens;
    opts.generate.stop = args.stop.clone();
    opts.whole = args.whole;
    if let Some(m) = args.min_similarity {
        opts.min_similarity = Some(m);
    }
    if let Some(m) = args.min_keyword_evidence {
        opts.min_keyword_evidence = m;
    }
    // Ctrl-C stops generation cleanly: the answer so far and its sources are kept.
    let (cancelled, watcher) = cancel_on_ctrl_c();
    let json = args.json;
    let mut session = session_for(ctx, &library, &embedder, &args.routing)?;
    let mut on_event = |e: AnswerEvent| stream_to_stdout(&e, json, &cancelled);
    let result = ask_routed(
        (&library, &embedder, &mut model),
        &mut session,
        &args.routing,
        &args.question,
        &[],
        opts,
        &mut on_event,
    )
    .await;
    watcher.abort();
    let result = result?;
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!();
        print_support(&result.support);
        print_sources(&result.sources, &result.cited);
        let t = &result.timings;
        if result.route.target == "local" {
            eprintln!(
                "\n[local: evidence {:.0} ms, route {:.0} ms, first token {:.0} ms, total {:.0} ms, prompt {} tokens ({} reused) at {:.0} tok/s, {} tokens at {:.1} tok/s ({} drafted from the sources)]",
                t.evidence_ms, t.route_ms, t.first_token_ms, t.total_ms, t.prompt_tokens,
                t.reused_prompt_tokens, t.prefill_tokens_per_s, t.generated_tokens,
                t.decode_tokens_per_s, t.accepted_draft_tokens
            );
        } else {
            eprintln!(
                "\n[{}: route {:.0} ms, first token {:.0} ms, total {:.0} ms]",
                result.route.target, t.route_ms, t.first_token_ms, t.total_ms
            );
        }
    }
    Ok(())
}

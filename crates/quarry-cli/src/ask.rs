//! `quarry ask`: a grounded answer from the library, streamed.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use quarry_core::answer::{AnswerEvent, AnswerOptions, Source};
use quarry_core::answer_cache::AnswerCache;
use quarry_core::ask::{AskOptions, Asker};
use quarry_core::cloud::{Egress, Policy, Preview, PrivacyMode};
use quarry_core::generate::LocalModel;
use quarry_core::router::{RouteOverride, TaskClassifier};
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
    #[command(flatten)]
    routing: RoutingArgs,
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
    ctx.store
        .load_generator(model)
        .with_context(|| format!("loading {}", model.unwrap_or("the default generator")))
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

/// Print streamed answer text (unless `quiet`) and the route; `false` once cancelled.
fn stream_to_stdout(e: &AnswerEvent, quiet: bool, cancelled: &AtomicBool) -> bool {
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
            AnswerEvent::Sources(_) => {}
        }
    }
    !cancelled.load(Ordering::SeqCst)
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
async fn ask_routed(
    (library, embedder, model): (&Library, &quarry_core::Embedder, &mut LocalModel),
    routing: &mut Routing,
    args: &RoutingArgs,
    question: &str,
    history: &[quarry_core::generate::ChatMessage],
    answer: AnswerOptions,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> quarry_core::Result<quarry_core::answer::Answer> {
    let yes = args.yes;
    let mut confirm = |p: &Preview| confirm_on_terminal(p, yes);
    let mut asker = Asker {
        library,
        embedder,
        model,
        policy: &routing.policy,
        classifier: routing.classifier.as_ref(),
        egress: routing.egress.as_ref(),
        cache: (!args.no_cache).then_some(&mut routing.cache),
    };
    let opts = AskOptions {
        answer,
        route: args.route,
        use_cache: !args.no_cache,
        now: chrono::Utc::now(),
    };
    asker
        .ask(question, history, &opts, &mut confirm, on_event)
        .await
}

/// The policy, egress, classifier and cache for asking `library`.
pub struct Routing {
    pub policy: Policy,
    pub egress: Option<Egress>,
    pub classifier: Option<TaskClassifier>,
    pub cache: AnswerCache,
}

pub fn routing_for(
    ctx: &Context,
    library: &Library,
    embedder: &quarry_core::Embedder,
    args: &RoutingArgs,
) -> Result<Routing> {
    let env = |k: &str| std::env::var(k).ok();
    let (policy, egress) = quarry_core::cloud::setup(
        &ctx.dirs.config,
        library,
        args.privacy,
        args.provider.as_deref(),
        &env,
        true,
    )?;
    // The classifier only matters when something could be routed away.
    let classifier = if egress.is_some() && policy.allows_egress() {
        Some(TaskClassifier::builtin(
            embedder,
            &ctx.store.root().join(".router"),
        )?)
    } else {
        None
    };
    Ok(Routing {
        policy,
        egress,
        classifier,
        cache: AnswerCache::open(library.dir()),
    })
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
            ..Default::default()
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
    let mut routing = routing_for(ctx, &library, &embedder, &args.routing)?;
    let mut on_event = |e: AnswerEvent| stream_to_stdout(&e, json, &cancelled);
    let result = ask_routed(
        (&library, &embedder, &mut model),
        &mut routing,
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
        print_sources(&result.sources, &result.cited);
        let t = &result.timings;
        if result.route.target == "local" {
            eprintln!(
                "\n[local: route {:.0} ms, first token {:.0} ms, total {:.0} ms, prompt {} tokens at {:.0} tok/s, {} tokens at {:.1} tok/s]",
                t.route_ms, t.first_token_ms, t.total_ms, t.prompt_tokens,
                t.prefill_tokens_per_s, t.generated_tokens, t.decode_tokens_per_s
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
    #[command(flatten)]
    routing: RoutingArgs,
}

/// `quarry chat`: several questions in a row; follow-ups see the conversation.
pub async fn chat(ctx: &Context, args: ChatArgs) -> Result<()> {
    use std::io::BufRead;
    let dir = ctx.library_dir(args.lib.library.clone());
    let (mut library, embedder, mut model) =
        open_for_answers(ctx, &dir, args.model.as_deref()).await?;
    let mut opts = AnswerOptions {
        sources: args.sources,
        ..Default::default()
    };
    opts.generate.max_tokens = args.max_tokens;
    opts.generate.temperature = args.temperature;
    let mut routing = routing_for(ctx, &library, &embedder, &args.routing)?;
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
        // Another process may be indexing this library: open it again now
        // and then, so answers see its writes and never read a version it
        // has since deleted.
        if let Err(e) = library.reopen_if_stale().await {
            eprintln!("could not re-open the library: {e}");
        }
        cancelled.store(false, Ordering::SeqCst);
        let mut on_event = |e: AnswerEvent| stream_to_stdout(&e, false, &cancelled);
        let keep = history.len().saturating_sub(4);
        let result = ask_routed(
            (&library, &embedder, &mut model),
            &mut routing,
            &args.routing,
            question,
            &history[keep..],
            opts.clone(),
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

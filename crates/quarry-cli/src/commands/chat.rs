//! `quarry chat`: several questions in a row; follow-ups see the conversation.

use std::sync::atomic::Ordering;

use anyhow::Result;
use quarry_core::answer::{prompt_prefix, AnswerEvent};
use quarry_core::generate::{ChatMessage, LocalModel};

use crate::context::Context;

use super::ask::{
    ask_routed, cancel_on_ctrl_c, open_for_answers, print_sources, print_support, session_for,
    stream_to_stdout, AnsweringArgs, RoutingArgs,
};

#[derive(clap::Args)]
pub struct ChatArgs {
    #[command(flatten)]
    answering: AnsweringArgs,
    /// Most answer tokens per turn.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    #[command(flatten)]
    routing: RoutingArgs,
}

/// Process the start of the next prompt now (see [`prompt_prefix`]).
fn warm(model: &mut LocalModel, history: &[ChatMessage]) {
    let done = prompt_prefix(model, history).and_then(|p| model.prefill_prefix(&p));
    if let Err(e) = done {
        eprintln!("(could not prepare the conversation ahead: {e})");
    }
}

/// `quarry chat`: several questions in a row; follow-ups see the conversation.
pub async fn chat(ctx: &Context, args: ChatArgs) -> Result<()> {
    use std::io::BufRead;
    let dir = ctx.library_dir(args.answering.lib.library.clone());
    let (mut library, embedder, mut model) =
        open_for_answers(ctx, &dir, args.answering.model.as_deref()).await?;
    let mut opts = args.answering.answer_options();
    opts.generate.max_tokens = args.max_tokens;
    opts.generate.temperature = args.temperature;
    let mut session = session_for(ctx, &library, &embedder, &args.routing)?;
    let (cancelled, watcher) = cancel_on_ctrl_c();
    eprintln!(
        "Ask about {} (Ctrl-C stops an answer; Ctrl-D or /quit leaves).",
        dir.display()
    );
    let mut history: Vec<ChatMessage> = Vec::new();
    let stdin = std::io::stdin();
    loop {
        eprint!("\n> ");
        // While the user types, the instructions and the conversation so far
        // go through the model: the question then costs only its sources.
        let keep = history.len().saturating_sub(4);
        warm(&mut model, &history[keep..]);
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
            &mut session,
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
                print_support(&a.support);
                print_sources(&a.sources, &a.cited);
                history.push(ChatMessage::new("user", question));
                history.push(ChatMessage::new("assistant", a.answer));
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    watcher.abort();
    Ok(())
}

//! `quarry`: the command line over quarry-core.

mod commands;
mod context;
mod render;

use clap::{Parser, Subcommand};

/// Quarry: search and question your private documents, on your own machine.
#[derive(Parser)]
#[command(name = "quarry", version, about)]
struct Cli {
    /// Say more: progress notes, the dependencies' warnings, every skipped
    /// file (QUARRY_LOG or RUST_LOG set a log filter of their own).
    #[arg(long, short = 'v', global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install, list and import models.
    Models {
        #[command(subcommand)]
        action: commands::models::ModelsAction,
    },
    /// Create a library before its first index (--encrypt: every file of it encrypted, under your passphrase or --keychain).
    Init(commands::init::InitArgs),
    /// Encrypt an existing library in place: every file sealed, the plain bytes overwritten (run again to finish one that was interrupted).
    Encrypt(commands::encrypt::EncryptArgs),
    /// Replace an encrypted library's key and destroy the old one: copies made before (backups, snapshots) no longer open.
    Rekey(commands::encrypt::RekeyArgs),
    /// Index folders or files (new and changed files only).
    Index(commands::index::IndexArgs),
    /// Remove a folder and its documents from the library (the files stay where they are).
    Remove(commands::remove::RemoveArgs),
    /// Forget documents provably: remove them, rewrite every store that kept copies, and check every file (a deletion report).
    Forget(commands::forget::ForgetArgs),
    /// Keep a library in sync with its folders (changes, new files, renames, deletions).
    Watch(commands::watch::WatchArgs),
    /// Switch the library to another embedder: re-embed every chunk (searches keep working), then swap.
    Reembed(commands::reembed::ReembedArgs),
    /// Show what a library holds.
    Status(context::LibraryJsonArgs),
    /// Check that a library's indexes and document rows agree.
    Check(context::LibraryJsonArgs),
    /// Search a library.
    Search(commands::search::SearchArgs),
    /// Answer a question from the library with a local model, citing sources.
    Ask(commands::ask::AskArgs),
    /// Ask several questions in a row; follow-ups see the conversation.
    Chat(commands::chat::ChatArgs),
    /// Fill a schema's fields from each document into a table (CSV, XLSX, JSON), every value cited and checked.
    Extract(commands::extract::ExtractArgs),
    /// Put each document into one of your categories, with the words that show it.
    Classify(commands::extract::ClassifyArgs),
    /// List, show or delete the extraction schemas saved in a library.
    Schemas(commands::schemas::SchemasArgs),
    /// Summarise documents from every passage, each point citing its passage.
    Summarize(commands::summarize::SummarizeArgs),
    /// Configure remote providers (OpenAI-compatible chat APIs) and their keys.
    Provider {
        #[command(subcommand)]
        action: commands::provider::ProviderAction,
    },
    /// Show or set the privacy mode (globally, or for one library).
    Privacy(commands::privacy::PrivacyArgs),
    /// The air-gap report (--privacy): every way data could leave this machine, and the models in use against their pinned checksums.
    Doctor(commands::doctor::DoctorArgs),
    /// List every request that sent text off this machine (--mcp: every call agents made).
    Audit(commands::audit::AuditArgs),
    /// Serve the library over HTTP on loopback (JSON, SSE, OpenAI-compatible, MCP at /mcp).
    Serve(commands::serve::ServeArgs),
    /// Serve the library to agents over MCP on stdio (Claude Desktop, Cursor, VS Code…).
    Mcp(commands::mcp::McpArgs),
    /// Measure retrieval quality on a BEIR-layout dataset.
    Eval(commands::eval::EvalArgs),
    /// Measure speed (embedding throughput).
    Bench(commands::bench::BenchArgs),
    /// Whether OCR is available here; or the text OCR reads from images
    /// and scanned PDFs, page by page with its confidence.
    Ocr(commands::ocr::OcrArgs),
}

fn main() {
    quarry_core::ocr::prepare_process();
    // A closed pipe (`quarry search … | head`) ends the program quietly, as
    // it does other command-line tools, instead of a panic at the next line.
    #[cfg(unix)]
    // SAFETY: restores the default action for one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    quarry_app::logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let ctx = context::Context::from_env();
    let mut command = cli.command;
    if let Command::Index(args) = &mut command {
        args.verbose = cli.verbose;
    }
    let result = runtime.block_on(run(&ctx, command));
    if let Err(e) = result {
        eprintln!("error: {}", render::error_chain(&e));
        std::process::exit(exit_code(&e));
    }
}

/// 2 when the user can fix the failure (bad input, a missing library or
/// model, a lock held elsewhere), 1 otherwise: the engine's error kind decides.
fn exit_code(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<quarry_core::Error>()
                .map(|e| e.kind())
                .or_else(|| c.downcast_ref::<quarry_app::AppError>().map(|e| e.kind))
        })
        .map_or(1, quarry_app::error::exit_code)
}

/// Run one command.
async fn run(ctx: &context::Context, command: Command) -> anyhow::Result<()> {
    use commands as c;
    match command {
        Command::Models { action } => c::models::run(ctx, action),
        Command::Index(args) => c::index::index(ctx, args).await,
        Command::Remove(args) => c::remove::run(ctx, args).await,
        Command::Watch(args) => c::watch::watch(ctx, args).await,
        Command::Reembed(args) => c::reembed::run(ctx, args).await,
        Command::Status(args) => c::status::run(ctx, args).await,
        Command::Check(args) => c::check::run(ctx, args).await,
        Command::Init(args) => c::init::run(ctx, args).await,
        Command::Encrypt(args) => c::encrypt::encrypt(ctx, args),
        Command::Rekey(args) => c::encrypt::rekey(ctx, args),
        Command::Search(args) => c::search::search(ctx, args).await,
        Command::Ask(args) => c::ask::ask(ctx, args).await,
        Command::Chat(args) => c::chat::chat(ctx, args).await,
        Command::Extract(args) => c::extract::extract(ctx, args).await,
        Command::Classify(args) => c::extract::classify(ctx, args).await,
        Command::Schemas(args) => c::schemas::run(ctx, args),
        Command::Summarize(args) => c::summarize::summarize(ctx, args).await,
        Command::Provider { action } => c::provider::provider(ctx, action),
        Command::Privacy(args) => c::privacy::privacy(ctx, args).await,
        Command::Audit(args) => c::audit::run(ctx, args).await,
        Command::Forget(args) => c::forget::forget(ctx, args).await,
        Command::Doctor(args) => c::doctor::doctor(ctx, args),
        Command::Serve(args) => c::serve::serve(ctx, args).await,
        Command::Mcp(args) => c::mcp::mcp(ctx, args).await,
        Command::Eval(args) => c::eval::eval(ctx, args).await,
        Command::Bench(args) => c::bench::bench(ctx, args).await,
        Command::Ocr(args) => c::ocr::ocr(args),
    }
}

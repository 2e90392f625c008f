//! `quarry`: the command line over quarry-core.

mod ask;
mod cloud;
mod commands;
mod evaluate;
mod render;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Quarry: search and question your private documents, on your own machine.
#[derive(Parser)]
#[command(name = "quarry", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options naming the library.
#[derive(clap::Args, Clone)]
struct LibraryArg {
    /// Library folder (default: the platform data dir, or QUARRY_LIBRARY_DIR).
    #[arg(long, short = 'l')]
    library: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Install, list and import models.
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Index folders or files (new and changed files only).
    Index(commands::IndexArgs),
    /// Remove a folder and its documents from the library (the files stay where they are).
    Remove {
        /// The folder (or file) as it was added.
        folder: PathBuf,
        #[command(flatten)]
        lib: LibraryArg,
    },
    /// Keep a library in sync with its folders (changes, new files, renames, deletions).
    Watch(commands::WatchArgs),
    /// Switch the library to another embedder: re-embed every chunk (searches keep working), then swap.
    Reembed {
        /// The new embedder's registry id.
        embedder: String,
        #[command(flatten)]
        lib: LibraryArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Chunks embedded per write (tests use small batches).
        #[arg(long, default_value_t = 64, hide = true)]
        batch: usize,
    },
    /// Show what a library holds.
    Status {
        #[command(flatten)]
        lib: LibraryArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check that a library's indexes and document rows agree.
    Check {
        #[command(flatten)]
        lib: LibraryArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Search a library.
    Search(commands::SearchArgs),
    /// Answer a question from the library with a local model, citing sources.
    Ask(ask::AskArgs),
    /// Ask several questions in a row; follow-ups see the conversation.
    Chat(ask::ChatArgs),
    /// Configure remote providers (OpenAI-compatible chat APIs) and their keys.
    Provider {
        #[command(subcommand)]
        action: cloud::ProviderAction,
    },
    /// Show or set the privacy mode (globally, or for one library).
    Privacy(cloud::PrivacyArgs),
    /// List every request that sent text off this machine.
    Audit {
        #[command(flatten)]
        lib: LibraryArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Serve the library over HTTP on loopback (JSON, SSE, OpenAI-compatible).
    Serve(serve::ServeArgs),
    /// Measure retrieval quality on a BEIR-layout dataset.
    Eval(evaluate::EvalArgs),
    /// Measure speed (embedding throughput).
    Bench(evaluate::BenchArgs),
}

#[derive(Subcommand)]
enum ModelsAction {
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
    /// Install a model from a local folder or file (offline use).
    Import {
        /// Folder with the model's files, or a single model file (e.g. a .gguf).
        path: PathBuf,
        /// Registry id to install it as (guessed from the files when absent).
        #[arg(long)]
        id: Option<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
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
    let ctx = commands::Context::from_env();
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Models { action } => match action {
                ModelsAction::Fetch { ids, all } => commands::models_fetch(&ctx, ids, all),
                ModelsAction::List { json } => commands::models_list(&ctx, json),
                ModelsAction::Import { path, id } => {
                    commands::models_import(&ctx, &path, id.as_deref())
                }
            },
            Command::Index(args) => commands::index(&ctx, args).await,
            Command::Remove { folder, lib } => commands::remove(&ctx, &folder, lib.library).await,
            Command::Watch(args) => commands::watch(&ctx, args).await,
            Command::Status { lib, json } => commands::status(&ctx, lib.library, json).await,
            Command::Check { lib, json } => commands::check(&ctx, lib.library, json).await,
            Command::Search(args) => commands::search(&ctx, args).await,
            Command::Ask(args) => ask::ask(&ctx, args).await,
            Command::Chat(args) => ask::chat(&ctx, args).await,
            Command::Reembed {
                embedder,
                lib,
                json,
                batch,
            } => commands::reembed(&ctx, &embedder, lib.library, json, batch).await,
            Command::Provider { action } => cloud::provider(&ctx, action),
            Command::Privacy(args) => cloud::privacy(&ctx, args).await,
            Command::Audit { lib, json } => cloud::audit(&ctx, lib.library, json).await,
            Command::Serve(args) => serve::serve(&ctx, args).await,
            Command::Eval(args) => evaluate::eval(&ctx, args).await,
            Command::Bench(args) => evaluate::bench(&ctx, args).await,
        }
    });
    if let Err(e) = result {
        eprintln!("error: {}", render::error_chain(&e));
        std::process::exit(1);
    }
}

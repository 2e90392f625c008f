//! `quarry serve`: the library over HTTP on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use quarry_app::{Engine, EngineParts, ModelManager};
use quarry_core::Library;
use quarry_server::ServeOptions;

use crate::context::Context;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    lib: crate::context::LibraryArg,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:7311")]
    addr: SocketAddr,
    /// Bearer token clients must send (default: the one Quarry keeps, user-only,
    /// in its configuration folder as `server-token`).
    #[arg(long, env = "QUARRY_SERVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve without a token: any program of any user on this machine can then
    /// read the library (loopback only).
    #[arg(long, conflicts_with = "token")]
    no_token: bool,
    /// Generator: a registry id or a path to a .gguf file.
    #[arg(long)]
    model: Option<String>,
    /// The built web UI to serve at `/` (default: QUARRY_UI_DIR, else the repository's ui/dist).
    #[arg(long, env = "QUARRY_UI_DIR")]
    ui: Option<PathBuf>,
}

/// The engine over the library in `dir` with generator `model`, kept fresh
/// while it serves (`quarry serve`, `quarry mcp`).
pub async fn open_engine(
    ctx: &Context,
    dir: &std::path::Path,
    model: Option<String>,
) -> Result<Arc<Engine>> {
    let (library, embedder) = Library::open_with_embedder(dir, &ctx.store).await?;
    let models =
        Arc::new(ModelManager::new(ctx.store.clone()).with_config_dir(ctx.dirs.config.clone()));
    let engine = Engine::new(EngineParts::standard(
        library,
        embedder,
        models,
        model,
        ctx.dirs.config.clone(),
    )?);
    // Chunks a stopped run left without vectors are embedded in the background.
    engine.resume_embedding().await;
    // Writes from other processes become visible, and no search reads a
    // version old enough to have been pruned.
    engine.keep_fresh();
    Ok(engine)
}

pub async fn serve(ctx: &Context, args: ServeArgs) -> Result<()> {
    let dir = ctx.library_dir(args.lib.library.clone());
    let engine = open_engine(ctx, &dir, args.model.clone()).await?;
    let ui_dir = args.ui.clone().or_else(|| {
        let built = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/dist"));
        built.join("index.html").is_file().then_some(built)
    });
    let token = server_token(ctx, &args)?;
    let options = ServeOptions {
        addr: args.addr,
        token: token.clone(),
        ui_dir,
    };
    quarry_server::check_options(&options)?;
    let library_dir = dir.display().to_string();
    let token_file = quarry_app::server_token::token_file(&ctx.dirs.config);
    let kept = args.token.is_none();
    quarry_server::serve(
        engine,
        options,
        move |addr| {
            // The first line on stdout is the address, the second the link
            // that opens the UI with the token (tests and scripts read them).
            println!("Quarry is serving {library_dir} at http://{addr}");
            match &token {
                // The kept token is printed, as a link; one the user gave is
                // theirs already and may come from the environment: never.
                Some(t) if kept => {
                    println!("Open http://{addr}/#token={t} in a browser");
                    println!(
                        "Clients send `Authorization: Bearer <token>`; the token is in {}",
                        token_file.display()
                    );
                }
                Some(_) => println!(
                    "Clients send `Authorization: Bearer <your token>`; a browser opens http://{addr}/#token=<your token>"
                ),
                None => println!(
                    "No token (--no-token): any program on this machine can read this library"
                ),
            }
        },
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    )
    .await
    .context("serving")?;
    Ok(())
}

/// The token the server requires: `--token`, none with `--no-token` (loopback
/// only), else the user's kept token.
fn server_token(ctx: &Context, args: &ServeArgs) -> Result<Option<String>> {
    if args.no_token {
        anyhow::ensure!(
            args.addr.ip().is_loopback(),
            "--no-token serves only loopback: binding to {} would open your library to the network",
            args.addr
        );
        return Ok(None);
    }
    match &args.token {
        Some(t) => Ok(Some(t.clone())),
        None => Ok(Some(quarry_app::server_token::server_token(
            &ctx.dirs.config,
        )?)),
    }
}

//! `quarry-desktop mcp [--library DIR]`: the app's binary as an MCP server
//! on stdio, so an installed desktop app is all an agent's client needs (no
//! separate `quarry` command). Nothing but the protocol goes to stdout.

use std::path::PathBuf;
use std::sync::Arc;

use quarry_app::{Engine, EngineParts, ModelManager};
use quarry_core::dirs::Dirs;
use quarry_core::models::{ModelStore, Registry};
use quarry_core::Library;

/// Serve until the client closes stdin; the process's exit code.
pub fn serve_stdio(args: &[std::ffi::OsString]) -> i32 {
    let library = match args {
        [] => None,
        [flag, dir] if flag == "--library" || flag == "-l" => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("usage: quarry-desktop mcp [--library DIR]");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quarry-desktop mcp: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(serve(library)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("quarry-desktop mcp: {e}");
            1
        }
    }
}

async fn serve(library: Option<PathBuf>) -> Result<(), String> {
    let mut dirs = Dirs::from_env(|k| std::env::var_os(k));
    if let Some(dir) = library {
        dirs.library = dir;
    }
    let models = Arc::new(ModelManager::new(ModelStore::new(
        dirs.models.clone(),
        Registry::builtin(),
    )));
    let (library, embedder) = Library::open_with_embedder(&dirs.library, &models.store)
        .await
        .map_err(|e| e.to_string())?;
    let engine = Engine::new(
        EngineParts::standard(library, embedder, models, None, dirs.config.clone())
            .map_err(|e| e.to_string())?,
    );
    engine.resume_embedding().await;
    engine.keep_fresh();
    quarry_mcp::serve_stdio(engine)
        .await
        .map_err(|e| e.to_string())
}

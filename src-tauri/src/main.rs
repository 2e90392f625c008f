//! Quarry's desktop app: the web UI in a Tauri 2 window, with thin commands
//! over the same engine `quarry serve` uses. Indexing runs in the background
//! and reports `progress` events; answer events stream over a channel. The
//! window appears at once; the library and embedder open in the background
//! and the language model loads on the first question.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod commands;

use std::sync::Arc;

use tauri::{Emitter, Manager};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("QUARRY_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tauri::Builder::default()
        .manage(commands::EngineCell::default())
        .setup(|app| {
            // Open the library while the window paints; then forward indexing
            // progress to the window.
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let cell = handle.state::<commands::EngineCell>();
                match cell.get().await {
                    Ok(engine) => forward_progress(handle.clone(), engine).await,
                    Err(e) => {
                        let _ = handle.emit("engine-error", e);
                    }
                }
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::status,
            commands::index,
            commands::cancel_indexing,
            commands::remove_folder,
            commands::search,
            commands::ask,
            commands::document,
            commands::settings,
            commands::set_privacy,
        ])
        .run(tauri::generate_context!())
        .expect("error while running Quarry");
}

async fn forward_progress(app: tauri::AppHandle, engine: Arc<quarry_server::Engine>) {
    let mut updates = engine.subscribe();
    loop {
        match updates.recv().await {
            Ok(p) => {
                let _ = app.emit("progress", p);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
}

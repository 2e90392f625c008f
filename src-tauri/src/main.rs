//! Quarry's desktop app: the web UI in a Tauri 2 window, with thin commands
//! over the same engine `quarry serve` uses. Indexing runs in the background
//! and reports `progress` events; answer events stream over a channel. The
//! window appears at once; the library and embedder open in the background
//! and the language model loads on the first question.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod agents;
mod commands;

use tauri::Manager;

fn main() {
    quarry_core::ocr::prepare_process();
    quarry_app::logging::init(false);
    // `quarry-desktop mcp [--library DIR]`: the library over MCP on stdio, no
    // window (what Settings tells agents' clients to start).
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "mcp") {
        std::process::exit(agents::serve_stdio(&args[1..]));
    }
    tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(commands::Asks::default())
        .manage(commands::AgentsEndpoint::default())
        .setup(|app| {
            app.manage(commands::EngineCell::new(app.handle().clone()));
            // Open the library while the window paints (a failure, such as
            // models not yet fetched, is shown by the first screen that asks).
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move {
                let _ = handle.state::<commands::EngineCell>().get().await;
            });
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            commands::status,
            commands::unlock_library,
            commands::encrypt_library,
            commands::rekey_library,
            commands::index,
            commands::cancel_indexing,
            commands::remove_folder,
            commands::switch_embedder,
            commands::search,
            commands::ask,
            commands::cancel_ask,
            commands::extract,
            commands::summarize,
            commands::export_table,
            commands::schemas,
            commands::save_schema,
            commands::delete_schema,
            commands::pick_folder,
            commands::open_document,
            commands::models,
            commands::fetch_model,
            commands::probe_models,
            commands::use_model,
            commands::import_model,
            commands::pick_model_file,
            commands::document,
            commands::settings,
            commands::set_privacy,
            commands::agents,
            commands::serve_agents,
        ])
        .run(tauri::generate_context!())
        .expect("error while running Quarry");
}

//! Quarry as a local HTTP server: the same engine as the CLI, over JSON and
//! server-sent events, plus an OpenAI-compatible endpoint.
//!
//! | Method | Path | What |
//! |---|---|---|
//! | GET | `/api/status` | library counts, failures, privacy, indexing progress |
//! | GET | `/api/status/stream` | SSE `progress` events while indexing |
//! | POST | `/api/index` | `{"paths": [...]}`: add folders, index in the background |
//! | POST | `/api/index/cancel` | stop the job after its current batch (the rest is left for the next run) |
//! | POST | `/api/folders/remove` | `{"path": ...}`: remove a folder and its documents |
//! | POST | `/api/embedder` | `{"embedder"}`: switch meaning search to another installed embedder (every passage embedded again in the background; progress as indexing's) |
//! | GET | `/api/search?q=&mode=&k=&path_prefix=&ext=` | hybrid search with snippets |
//! | POST | `/api/ask` | SSE: `sources`, `route`, `token`, `consent`, `sent`, `done`, `error` |
//! | POST | `/api/extract` | `{"schema" (fields or a saved schema's name), "paths"?, "ext"?, "query"?, "top"?, "redo"?}`: SSE `started`, `document` (one per document, fields cited and checked), `done`, `error` |
//! | POST | `/api/extract/table` | the same request with `"format"`: `csv`, `xlsx` or `json`: the kept results as a file |
//! | GET, PUT, DELETE | `/api/schemas` | the schemas saved with the library; PUT `{"name", "schema"}` saves one, DELETE `?name=` deletes one |
//! | GET | `/api/audit` | what left the machine |
//! | POST/GET/DELETE | `/mcp` | MCP over streamable HTTP: the library's tools and resources for agents (`quarry-mcp`), every call in the access log |
//! | GET | `/api/agents` | the agents' access log and the setup snippets for their clients |
//! | GET | `/v1/models` | OpenAI-compatible model list |
//! | POST | `/v1/chat/completions` | OpenAI-compatible chat, streaming or not |
//! | GET | `/api/settings` | privacy modes in force and the providers (never keys) |
//! | POST | `/api/settings/privacy` | `{"mode", "library", "never_leaves_device"}`: change the privacy settings |
//! | GET | `/api/document?path=` | a document's text (only files inside the library's folders) |
//! | GET | `/api/models` | the registry's models: installed, in use, size; the current fetch |
//! | POST | `/api/models/fetch` | `{"id"}`: fetch a model in the background (progress in `/api/models`) |
//! | POST | `/api/models/probe` | measure this machine (a few seconds); the models with their speed here and the recommended answer model |
//! | POST | `/api/models/use` | `{"id"}`: answer with this model from the next question on (`null`: the default) |
//! | POST | `/api/models/import` | `{"path", "id"?}`: install a GGUF file or model folder from this machine |
//! | POST | `/api/open` | `{"path", "page"}`: open an indexed document in the system's viewer (loopback only) |
//! | GET | `/` | the web UI (when built) |
//!
//! It is locked by default: every request to `/api`, `/v1` and `/mcp` must
//! carry `Authorization: Bearer <token>`, loopback included, so another user's
//! process on the same machine cannot read the library. Only the front-end
//! decides to run open ([`ServeOptions::token`] `None`, `quarry serve
//! --no-token`), and only on loopback. The web UI's files themselves are served
//! without the token (they hold no data); the page takes the token from the
//! link `quarry serve` prints. On loopback, requests must also name a loopback
//! host (`Host:` header), so a web page cannot reach the server through DNS
//! rebinding.

#![warn(missing_docs)]

pub mod error;
mod openai;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
use quarry_app::{AppError, Engine};
use quarry_core::ErrorKind;
use tokio_util::sync::CancellationToken;

/// How the server listens.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to bind.
    pub addr: SocketAddr,
    /// Bearer token every API request must carry; `None` serves loopback
    /// unlocked (refused off loopback by [`check_options`]).
    pub token: Option<String>,
    /// The built web UI (`ui/dist`), served at `/` when given.
    pub ui_dir: Option<std::path::PathBuf>,
}

struct Guard {
    token: Option<String>,
    loopback_only: bool,
}

fn host_is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host)
    };
    matches!(name, "localhost" | "127.0.0.1" | "::1")
}

/// Whether a request reads or changes the library (the API, the OpenAI
/// endpoints, MCP); the UI's static files do not.
fn is_api(path: &str) -> bool {
    ["/api", "/v1", "/mcp"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if g.loopback_only {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !host_is_loopback(host) {
            return ApiError(AppError::user(
                "forbidden_host",
                format!("requests must be addressed to localhost, not '{host}'"),
            ))
            .into_response();
        }
    }
    if let Some(token) = g.token.as_deref().filter(|_| is_api(req.uri().path())) {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|t| quarry_app::server_token::token_matches(t, token)) {
            return ApiError(AppError::user(
                "unauthorized",
                "this server is locked: send `Authorization: Bearer <token>` \
                 (open the link `quarry serve` printed, or read the token from the server-token file in Quarry's configuration folder)",
            ))
            .into_response();
        }
    }
    next.run(req).await
}

/// The HTTP routes over `engine`; cancelling `mcp` ends the MCP sessions.
pub fn router(engine: Arc<Engine>, options: &ServeOptions, mcp: CancellationToken) -> Router {
    let g = Arc::new(Guard {
        token: options.token.clone(),
        loopback_only: options.addr.ip().is_loopback(),
    });
    Router::new()
        .route("/api/status", get(routes::status))
        .route("/api/status/stream", get(routes::status_stream))
        .route("/api/index", post(routes::index))
        .route("/api/index/cancel", post(routes::cancel_index))
        .route("/api/folders/remove", post(routes::remove_folder))
        .route("/api/embedder", post(routes::switch_embedder))
        .route("/api/search", get(routes::search))
        .route("/api/ask", post(routes::ask))
        .route("/api/extract", post(routes::extract))
        .route("/api/extract/table", post(routes::extract_table))
        .route(
            "/api/schemas",
            get(routes::schemas)
                .put(routes::save_schema)
                .delete(routes::delete_schema),
        )
        .route("/api/summarize", post(routes::summarize))
        .route("/api/audit", get(routes::audit))
        .route("/api/settings", get(routes::settings))
        .route("/api/settings/privacy", post(routes::set_privacy))
        .route("/api/document", get(routes::document))
        .route("/api/models", get(routes::models))
        .route("/api/models/fetch", post(routes::fetch_model))
        .route("/api/models/import", post(routes::import_model))
        .route("/api/models/probe", post(routes::probe_models))
        .route("/api/models/use", post(routes::use_model))
        .route(
            "/api/open",
            if options.addr.ip().is_loopback() {
                post(routes::open)
            } else {
                // The person at the browser is not at this machine's screen.
                post(|| async {
                    ApiError(AppError::user(
                        "open_remote",
                        "documents open in a viewer only when Quarry serves this machine (loopback)",
                    ))
                })
            },
        )
        .route("/api/agents", get(routes::agents))
        .nest_service("/mcp", quarry_mcp::http_service(engine.clone(), mcp))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .fallback_service(ui_service(options.ui_dir.as_deref()))
        .layer(middleware::from_fn_with_state(g, guard))
        .with_state(engine)
}

/// The web UI's files, with `index.html` for unknown paths; a page saying how
/// to build it when it is not built.
fn ui_service(dir: Option<&std::path::Path>) -> axum::routing::MethodRouter {
    match dir.filter(|d| d.join("index.html").is_file()) {
        Some(d) => axum::routing::get_service(
            tower_http::services::ServeDir::new(d)
                .fallback(tower_http::services::ServeFile::new(d.join("index.html"))),
        ),
        None => get(|| async {
            axum::response::Html(
                "<!doctype html><title>Quarry</title><p>The web UI is not built. \
                 Run <code>npm ci && npm run build</code> in <code>ui/</code>, or pass \
                 <code>quarry serve --ui DIR</code>. The API is at <code>/api</code> and <code>/v1</code>.</p>",
            )
        }),
    }
}

/// Check the options: off loopback, a token is required; an empty one never.
pub fn check_options(options: &ServeOptions) -> Result<(), AppError> {
    if options.token.as_deref() == Some("") {
        return Err(AppError::user(
            "token_required",
            "the server token is empty: pass a non-empty --token, or none to use the one Quarry keeps",
        ));
    }
    if !options.addr.ip().is_loopback() && options.token.is_none() {
        return Err(AppError::new(
            ErrorKind::User,
            "token_required",
            format!(
                "binding to {} exposes your library to the network: pass --token (or set QUARRY_SERVER_TOKEN)",
                options.addr
            ),
        ));
    }
    Ok(())
}

/// Bind and serve until `shutdown` resolves; `on_bound` gets the actual
/// address (useful with port 0).
pub async fn serve(
    engine: Arc<Engine>,
    options: ServeOptions,
    on_bound: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    check_options(&options).map_err(|e| std::io::Error::other(e.message))?;
    let listener = tokio::net::TcpListener::bind(options.addr).await?;
    on_bound(listener.local_addr()?);
    let mcp = CancellationToken::new();
    let app = router(engine, &options, mcp.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Open MCP streams would otherwise hold the shutdown.
            mcp.cancel();
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in ["localhost:8080", "127.0.0.1:1", "[::1]:9", "localhost"] {
            assert!(host_is_loopback(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "192.168.1.2:80",
            "localhost.evil.com:1",
            "",
        ] {
            assert!(!host_is_loopback(h), "{h}");
        }
    }

    #[test]
    fn only_the_ui_files_are_outside_the_lock() {
        for p in ["/api/status", "/api", "/v1/models", "/mcp", "/mcp/"] {
            assert!(is_api(p), "{p}");
        }
        for p in [
            "/",
            "/index.html",
            "/assets/app.js",
            "/apis",
            "/v1x",
            "/mcpx",
        ] {
            assert!(!is_api(p), "{p}");
        }
    }

    #[test]
    fn binding_off_loopback_needs_a_token() {
        let off = ServeOptions {
            addr: "0.0.0.0:0".parse().unwrap(),
            token: None,
            ui_dir: None,
        };
        assert!(check_options(&off).is_err());
        let with = ServeOptions {
            token: Some("t".into()),
            ..off
        };
        assert!(check_options(&with).is_ok());
        let local = ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: None,
            ui_dir: None,
        };
        assert!(check_options(&local).is_ok());
    }
}

//! Quarry as an MCP server: the user's library as tools and resources for any
//! agent (Claude Desktop, Cursor, VS Code, Zed…), built on the official Rust
//! SDK (`rmcp`) over the same engine calls as the other front-ends.
//!
//! - Transports: stdio ([`serve_stdio`], `quarry mcp`, the way desktop
//!   clients launch servers) and streamable HTTP ([`http_service`], mounted
//!   at `/mcp` by `quarry serve` behind its loopback-or-token guard).
//! - [`tools`]: `search`, `ask`, `read_passage`, `read_document`,
//!   `list_folders`, `status`, `summarize`, `extract`; the long ones
//!   report progress when the client asks for it and stop when it cancels.
//! - [`resources`]: every indexed document as `quarry://document/…` and
//!   every passage as `quarry://passage/ID`, so a client can attach a cited
//!   passage.
//! - Governance: every call is written to the library's access log
//!   ([`quarry_app::agents`]); a library marked not shared with agents
//!   refuses every call; results are capped in size; `ask` is routed under
//!   the library's privacy mode, whoever asks.

#![warn(missing_docs)]

pub mod resources;
pub mod tools;

use std::sync::Arc;

use quarry_app::agents::{AccessLog, AgentAccess};
use quarry_app::Engine;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ListResourceTemplatesResult, ListResourcesResult,
    PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerConfig,
};
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler, ServiceExt};
use tokio_util::sync::CancellationToken;

pub use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};

/// The most bytes one result sends back to an agent.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// What the server tells a client about itself when it connects.
const INSTRUCTIONS: &str = "Quarry searches the user's private document library on this machine. \
Use `search` to find passages (cite them by path and page), `read_passage` to read a hit in full, \
`read_document` to read a document in pages of text, `ask` for an answer grounded in the \
library with numbered citations (it runs under the library's privacy settings: a local-only \
library is answered by the local model), `summarize` for one document, `extract` to fill \
fields from documents into a table with a citation per value. Every call is logged for the user.";

/// One MCP session over a library: the engine, the access log, and which
/// transport it came in on.
#[derive(Clone)]
pub struct QuarryMcp {
    engine: Arc<Engine>,
    log: Arc<AccessLog>,
    transport: &'static str,
    tool_router: ToolRouter<QuarryMcp>,
}

/// A result ready for the agent, its size, and the documents whose text is in it.
pub struct Served<T = serde_json::Value> {
    /// The result.
    pub value: T,
    /// Its size as sent, in bytes.
    pub bytes: usize,
    /// The documents it carries text of (for the access log).
    pub documents: Vec<String>,
}

impl Served {
    /// A JSON result carrying text of `documents`.
    pub fn json(value: serde_json::Value, documents: Vec<String>) -> Self {
        Served {
            bytes: value.to_string().len(),
            value,
            documents,
        }
    }
}

/// Why a call was not served: refused by governance, or failed.
#[derive(Debug)]
pub enum Failure {
    /// Not allowed (library not shared, outside the library, too large).
    Refused(String),
    /// It went wrong (bad arguments, a missing document, an engine error).
    Failed(String),
}

impl From<quarry_app::AppError> for Failure {
    fn from(e: quarry_app::AppError) -> Self {
        if e.code == "outside_library" {
            Failure::Refused(e.message)
        } else {
            Failure::Failed(e.message)
        }
    }
}

impl From<quarry_core::Error> for Failure {
    fn from(e: quarry_core::Error) -> Self {
        Failure::from(quarry_app::AppError::from(e))
    }
}

impl QuarryMcp {
    /// A session over `engine`, logging to `log`; `transport` is `stdio` or `http`.
    pub fn new(engine: Arc<Engine>, log: Arc<AccessLog>, transport: &'static str) -> Self {
        QuarryMcp {
            engine,
            log,
            transport,
            tool_router: Self::tool_router(),
        }
    }

    /// The client as it introduced itself, for the access log.
    fn client(ctx: &RequestContext<RoleServer>) -> String {
        ctx.client_info()
            .map(|c| format!("{} {}", c.name, c.version))
            .unwrap_or_else(|| "unknown".into())
    }

    /// Refused when the library's owner does not share it with agents, read
    /// from disk on every call so a change in the app or the CLI holds at
    /// once; a library whose settings cannot be read is refused too.
    fn check_shared(&self) -> Result<(), Failure> {
        let meta = quarry_core::store::library::read_meta(&self.engine.library_dir)
            .map_err(|e| Failure::Refused(format!("the library's settings cannot be read: {e}")))?;
        if meta.privacy.not_shared_with_agents {
            return Err(Failure::Refused(
                "this library is not shared with agents: its owner has turned agent access off"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Run `work` under governance: refused when the library is not shared,
    /// capped in size, and logged whatever the outcome; refused when the log
    /// cannot be written.
    async fn governed<T, F>(
        &self,
        ctx: &RequestContext<RoleServer>,
        tool: &str,
        arguments: serde_json::Value,
        work: F,
    ) -> Result<T, Failure>
    where
        F: std::future::Future<Output = Result<Served<T>, Failure>>,
    {
        let mut entry = AgentAccess::new(&Self::client(ctx), self.transport, tool, &arguments);
        let result = match self.check_shared() {
            Ok(()) => work.await.and_then(capped),
            Err(refused) => Err(refused),
        };
        match &result {
            Ok(served) => {
                entry.bytes_returned = served.bytes;
                entry.documents = served.documents.clone();
            }
            Err(Failure::Refused(why)) => {
                entry.outcome = "refused".into();
                entry.reason = Some(why.clone());
            }
            Err(Failure::Failed(why)) => {
                entry.outcome = "failed".into();
                entry.reason = Some(why.clone());
            }
        }
        // Nothing goes back to an agent unless the call is on record.
        if let Err(e) = self.log.record(&entry) {
            tracing::warn!("could not write the agent access log: {}", e.message);
            return Err(Failure::Refused(format!(
                "the access log cannot be written, so nothing is served: {}",
                e.message
            )));
        }
        result.map(|served| served.value)
    }

    /// A tool call under governance, as the tool result the agent reads
    /// (failures are tool errors the agent can read, not protocol errors).
    async fn tool_call<F>(
        &self,
        ctx: &RequestContext<RoleServer>,
        tool: &str,
        arguments: serde_json::Value,
        work: F,
    ) -> Result<CallToolResult, ErrorData>
    where
        F: std::future::Future<Output = Result<Served, Failure>>,
    {
        Ok(match self.governed(ctx, tool, arguments, work).await {
            Ok(value) => CallToolResult::structured(value),
            Err(Failure::Refused(why)) => {
                CallToolResult::error(vec![ContentBlock::text(format!("refused: {why}"))])
            }
            Err(Failure::Failed(why)) => CallToolResult::error(vec![ContentBlock::text(why)]),
        })
    }
}

/// A long call's link back to its client: progress notifications (when the
/// client sent a progress token) in order, and whether it cancelled.
#[derive(Clone)]
pub struct Progress {
    send: Option<tokio::sync::mpsc::UnboundedSender<ProgressNotificationParam>>,
    token: Option<ProgressToken>,
    cancel: CancellationToken,
}

impl Progress {
    /// The progress link of the request in `ctx` (call on the runtime), and
    /// what to await before the result goes back, so that no notification
    /// arrives after it (a client drops those).
    pub fn of(ctx: &RequestContext<RoleServer>) -> (Self, Sent) {
        let token = ctx.meta.get_progress_token();
        let (send, task) = match &token {
            Some(_) => {
                let (send, task) = forward(ctx.peer.clone());
                (Some(send), Some(task))
            }
            None => (None, None),
        };
        let progress = Progress {
            send,
            token,
            cancel: ctx.ct.clone(),
        };
        (progress, Sent(task))
    }

    /// Tell the client `done` of `total` are done; from any thread.
    pub fn report(&self, done: usize, total: usize, message: String) {
        if let (Some(send), Some(token)) = (&self.send, &self.token) {
            let note = ProgressNotificationParam::new(token.clone(), done as f64)
                .with_total(total as f64)
                .with_message(message);
            let _ = send.send(note);
        }
    }

    /// Whether the client cancelled the request.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Done when every progress notification of a call has been sent: the
/// [`Progress`] (and its clones) dropped and the queue drained.
pub struct Sent(Option<tokio::task::JoinHandle<()>>);

impl Sent {
    /// Wait for it.
    pub async fn wait(self) {
        if let Some(task) = self.0 {
            let _ = task.await;
        }
    }

    /// `work`'s output once `work` is done (dropping its [`Progress`]) and
    /// its notifications are sent.
    pub async fn after<T>(self, work: impl std::future::Future<Output = T>) -> T {
        let out = work.await;
        self.wait().await;
        out
    }
}

/// A task that sends notifications to `peer` in the order they come, until
/// every sender is dropped.
fn forward(
    peer: Peer<RoleServer>,
) -> (
    tokio::sync::mpsc::UnboundedSender<ProgressNotificationParam>,
    tokio::task::JoinHandle<()>,
) {
    let (send, mut notes) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        while let Some(note) = notes.recv().await {
            if peer.notify_progress(note).await.is_err() {
                break;
            }
        }
    });
    (send, task)
}

/// Refuse a result larger than [`MAX_RESULT_BYTES`].
fn capped<T>(served: Served<T>) -> Result<Served<T>, Failure> {
    let bytes = served.bytes;
    if bytes > MAX_RESULT_BYTES {
        return Err(Failure::Refused(format!(
            "the result is {bytes} bytes, more than the {MAX_RESULT_BYTES} an agent may take at once: ask for less (a smaller k or max_chars)"
        )));
    }
    Ok(served)
}

#[rmcp::tool_handler(router = self.tool_router)]
impl ServerHandler for QuarryMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("quarry", env!("CARGO_PKG_VERSION")))
        .with_instructions(INSTRUCTIONS.to_string())
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let cursor = request.and_then(|r| r.cursor);
        let args = serde_json::json!({ "cursor": cursor });
        let work = resources::list(&self.engine, cursor.clone());
        self.governed(&ctx, "resources/list", args, work)
            .await
            .map_err(resources::protocol_error)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(ListResourceTemplatesResult::with_all_items(
            resources::templates(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let args = serde_json::json!({ "uri": request.uri });
        let work = resources::read(&self.engine, &request.uri);
        self.governed(&ctx, "resources/read", args, work)
            .await
            .map(Into::into)
            .map_err(resources::protocol_error)
    }
}

/// Serve the library over stdio until the client closes it (`quarry mcp`).
pub async fn serve_stdio(engine: Arc<Engine>) -> Result<(), std::io::Error> {
    let log = Arc::new(AccessLog::of(&engine.library_dir));
    let server = QuarryMcp::new(engine, log, "stdio")
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    server.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

/// The streamable HTTP endpoint over `engine`, to mount at `/mcp`. The host
/// check is left to the server's own guard (loopback hosts only, unless a
/// token is required); `cancel` ends every session.
pub fn http_service(
    engine: Arc<Engine>,
    cancel: CancellationToken,
) -> StreamableHttpService<QuarryMcp, LocalSessionManager> {
    let log = Arc::new(AccessLog::of(&engine.library_dir));
    StreamableHttpService::new(
        move || Ok(QuarryMcp::new(engine.clone(), log.clone(), "http")),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .disable_allowed_hosts()
            .with_cancellation_token(cancel),
    )
}

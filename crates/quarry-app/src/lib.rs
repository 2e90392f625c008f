//! Quarry's application layer, between the engine (`quarry-core`) and the
//! front-ends: the CLI, the HTTP server (`quarry-server`, only routes over
//! this crate) and the desktop app (`src-tauri`) all call it.
//!
//! - [`engine`]: one open library with its embedder, the local model (loaded
//!   on first use), the answer cache and background indexing jobs with
//!   progress.
//! - [`models`]: the models folder, a background fetch with progress, imports.
//! - [`session`]: the routing (privacy policy, egress) and ask session.
//! - [`calls`]: the calls every front-end makes, request in, view out.
//! - [`tasks`]: extraction runs streamed as updates, and their tables.
//! - [`agents`]: what agents (MCP clients) read: the access log, and the
//!   setup snippets for their settings.
//! - [`views`]: what the front-ends receive, typed; the UI's TypeScript types
//!   are generated from them (`ui/src/bindings/`).
//! - [`error`]: `{code, message}` errors and the one table from error kinds to
//!   HTTP statuses and exit codes.
//! - [`privacy_report`]: the air-gap report: every way data could leave
//!   the machine, and the models in use against their pinned checksums.
//! - [`server_token`]: the token that locks the HTTP endpoints, kept
//!   user-only in the configuration folder.
//! - [`viewer`]: opening a document in the system's viewer.
//! - [`logging`]: what the terminal shows of the logs.

#![warn(missing_docs)]

pub mod agents;
pub mod bindings;
pub mod calls;
pub mod engine;
pub mod error;
pub mod logging;
pub mod models;
pub mod privacy_report;
pub mod server_token;
pub mod session;
pub mod tasks;
pub mod viewer;
pub mod views;

pub use engine::{Engine, EngineParts, IndexProgress};
pub use error::{AppError, AppResult};
pub use models::ModelManager;

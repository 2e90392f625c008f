//! Quarry's engine: index folders of local documents, search them with hybrid
//! (vector + keyword) retrieval and answer questions from them with citations,
//! entirely on the user's machine.
//!
//! The folders are the stages of the data flow, and a module only uses
//! modules of its own or an earlier stage (a test checks it):
//!
//! 1. foundations: [`error`], [`dirs`], [`fsio`] (durable writes);
//! 2. [`models`]: the registry, fetching and verifying weights;
//! 3. [`extract`] and [`chunk`] (the `quarry-extract` crate): files to text
//!    blocks to token-aware chunks with provenance;
//! 4. [`embed`]: chunks to vectors (our BERT encoder on candle);
//! 5. [`store`]: a library folder — LanceDB vectors, tantivy keywords, the
//!    journal that makes writes crash-safe;
//! 6. [`ingest`]: walking folders and indexing them (keywords first, then
//!    vectors), watching them, switching embedders;
//! 7. [`retrieve`]: hybrid search and fusion;
//! 8. [`generate`]: local GGUF models;
//! 9. [`cloud`]: privacy policy and the one way out to a provider;
//! 10. [`answer`]: grounded answers, the router, the answer cache;
//! 11. [`tasks`]: task specialists — fields extracted from each document
//!     into a table, classification — every value checked and cited;
//! 12. [`eval`]: retrieval, answer and extraction quality, scale runs.
//!
//! Nothing here knows which front-end (CLI, server, desktop) is calling.

#![warn(missing_docs)]

pub use quarry_extract::{chunk, extract, ocr};

pub mod dirs;
pub mod error;
mod failpoint;
pub mod fsio;
pub mod keychain;

pub mod models;

pub mod embed;

pub mod store;

pub mod ingest;

pub mod retrieve;

pub mod generate;

pub mod cloud;

pub mod answer;

pub mod tasks;

pub mod eval;

pub use embed::Embedder;
pub use error::{Error, ErrorKind, Result};
pub use ingest::{IndexEvent, IndexOptions, IndexReport};
pub use retrieve::{HybridSearch, SearchMode, SearchOptions, SearchResults};
pub use store::library::{FolderStatus, Library, LibraryMeta, LibraryStatus, SNAPSHOT_MAX_AGE};

#[cfg(test)]
mod layering;

//! Retrieval: vector and keyword search over a library, fused by weighted
//! reciprocal rank ([`fusion`]), with filters and snippets ([`search`]).

pub mod fusion;
pub mod search;

pub use search::{HybridSearch, SearchMode, SearchOptions, SearchResults};

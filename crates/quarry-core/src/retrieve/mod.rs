//! Retrieval: vector and keyword search over a library, fused by
//! standardised scores ([`fusion`]) with a weight learned from the library's
//! questions ([`history`]), with filters and snippets ([`search`]).

pub mod fusion;
pub mod history;
pub mod search;

pub use search::{HybridSearch, SearchMode, SearchOptions, SearchResults};

//! Hybrid search: vector kNN (LanceDB) and BM25 (tantivy), fused.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::fusion::{reciprocal_rank_fusion, FusionConfig};
use crate::library::Library;
use crate::store::{Filter, Hit};

/// Which retrieval to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Vector and keyword, fused.
    Hybrid,
    /// Vector only.
    Vector,
    /// Keyword (BM25) only.
    Keyword,
}

impl std::str::FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(SearchMode::Hybrid),
            "vector" => Ok(SearchMode::Vector),
            "keyword" => Ok(SearchMode::Keyword),
            other => Err(Error::InvalidInput(format!(
                "unknown search mode '{other}' (hybrid, vector, keyword)"
            ))),
        }
    }
}

/// Options of one search.
#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Retrieval mode.
    pub mode: SearchMode,
    /// Results to return.
    pub k: usize,
    /// Fusion settings (hybrid).
    pub fusion: FusionConfig,
    /// Restrict to part of the library.
    pub filter: Filter,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            mode: SearchMode::Hybrid,
            k: 10,
            fusion: FusionConfig::default(),
            filter: Filter::default(),
        }
    }
}

/// Where the time of a search went.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SearchTimings {
    /// Embedding the query.
    pub embed: Duration,
    /// Vector search.
    pub vector: Duration,
    /// Keyword search.
    pub keyword: Duration,
    /// Everything.
    pub total: Duration,
}

/// Results of a search.
#[derive(Debug, Clone)]
pub struct SearchResults {
    /// Best first.
    pub hits: Vec<Hit>,
    /// Timings.
    pub timings: SearchTimings,
    /// Cosine similarity of the best vector hit (when vector search ran): how
    /// relevant the library is to the query at all.
    pub best_similarity: Option<f32>,
}

/// Searches one library with one embedder.
pub struct HybridSearch<'a> {
    library: &'a Library,
    embedder: Option<&'a Embedder>,
}

impl<'a> HybridSearch<'a> {
    /// A searcher; `embedder` may be `None` for keyword-only use.
    pub fn new(library: &'a Library, embedder: Option<&'a Embedder>) -> Result<Self> {
        if let Some(e) = embedder {
            if e.id() != library.meta().embedder {
                return Err(Error::EmbedderMismatch {
                    library: library.meta().embedder.clone(),
                    requested: e.id().to_string(),
                });
            }
        }
        Ok(HybridSearch { library, embedder })
    }

    /// Run a search.
    pub async fn search(&self, query: &str, opts: &SearchOptions) -> Result<SearchResults> {
        let started = Instant::now();
        let query = query.trim();
        if query.is_empty() {
            return Err(Error::InvalidInput("empty query".into()));
        }
        let mut timings = SearchTimings::default();
        let depth = match opts.mode {
            SearchMode::Hybrid => opts.fusion.depth.max(opts.k),
            _ => opts.k,
        };
        let mut vector_hits = Vec::new();
        let mut best_similarity = None;
        if opts.mode != SearchMode::Keyword {
            let embedder = self
                .embedder
                .ok_or_else(|| Error::InvalidInput("vector search needs the embedder".into()))?;
            let t = Instant::now();
            let v = embedder.embed_query(query)?;
            timings.embed = t.elapsed();
            let t = Instant::now();
            vector_hits = self.library.vectors.search(&v, depth, &opts.filter).await?;
            timings.vector = t.elapsed();
            best_similarity = vector_hits.first().map(|h| h.score);
        }
        let mut keyword_hits = Vec::new();
        if opts.mode != SearchMode::Vector {
            let t = Instant::now();
            keyword_hits = self.library.keywords.search(query, depth, &opts.filter)?;
            timings.keyword = t.elapsed();
        }
        let mut hits = match opts.mode {
            SearchMode::Vector => vector_hits,
            SearchMode::Keyword => keyword_hits,
            SearchMode::Hybrid => reciprocal_rank_fusion(&vector_hits, &keyword_hits, &opts.fusion),
        };
        hits.truncate(opts.k);
        for h in &mut hits {
            if h.snippet.as_ref().is_none_or(|(s, _)| s.is_empty()) {
                let (s, ranges) = self.library.keywords.snippet_for(query, &h.text)?;
                h.snippet = Some(if s.is_empty() {
                    (lead(&h.text, 240), Vec::new())
                } else {
                    (s, ranges)
                });
            }
        }
        timings.total = started.elapsed();
        Ok(SearchResults {
            hits,
            timings,
            best_similarity,
        })
    }
}

/// The first `max` bytes of `text` at a char boundary, whitespace collapsed.
fn lead(text: &str, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

//! Hybrid search: vector kNN (LanceDB) and BM25 (tantivy), fused.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::retrieve::fusion::{fuse, FusionConfig, FusionMethod, SCORE_WINDOW};
use crate::retrieve::history::{keyword_lead, FusionHistory};
use crate::store::library::Library;
use crate::store::{DocState, Filter, Hit};

/// Which retrieval to run.
#[derive(ts_rs::TS, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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
    /// The best keyword hit's BM25 score over `ln(1 + chunks searchable)`
    /// (when keyword search ran): roughly how many of the query's rarest
    /// words, by weight, the best passage holds — the keyword side's say in
    /// whether the library is about the question, on the same scale for a
    /// library of any size.
    pub keyword_evidence: Option<f32>,
}

/// How a searcher uses the library's [`FusionHistory`] (hybrid searches
/// with adaptive fusion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryUse {
    /// Fuse with the library's learned weight and count each query into
    /// its saved history: people's searches and questions.
    Learn,
    /// Fuse with the library's learned weight, count nothing: queries a
    /// task writes (extraction), which are not how people ask.
    Read,
    /// Start from a library with no history and learn in memory only:
    /// evaluations, so a run neither depends on nor changes what the
    /// library learned.
    Session,
}

/// A second retrieval stage that re-scores the fused candidates against the
/// query, e.g. a cross-encoder. Quarry ships none yet (no cross-encoder
/// weights are obtainable from the registries this project can reach); the
/// stage is here so one plugs in without touching retrieval.
pub trait Reranker: Send + Sync {
    /// One relevance score per passage, higher is better.
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>>;
    /// How many fused candidates to re-score (the rest keep their order below them).
    fn depth(&self) -> usize {
        30
    }
    /// How much of the first stage's judgement to keep: the new order is by
    /// `z(reranker) + weight · z(first stage)` over the re-scored candidates
    /// (z: standardised over them). 0 (the default) orders by the reranker
    /// alone.
    fn first_stage_weight(&self) -> f32 {
        0.0
    }
}

/// Searches one library with one embedder.
pub struct HybridSearch<'a> {
    library: &'a Library,
    embedder: Option<&'a Embedder>,
    reranker: Option<&'a dyn Reranker>,
    history: std::sync::Mutex<FusionHistory>,
    history_use: HistoryUse,
}

impl<'a> HybridSearch<'a> {
    /// A searcher; `embedder` may be `None` for keyword-only use. Hybrid
    /// searches learn the fusion weight from the library's queries
    /// ([`HistoryUse::Learn`]).
    pub fn new(library: &'a Library, embedder: Option<&'a Embedder>) -> Result<Self> {
        if let Some(e) = embedder {
            if e.id() != library.meta().embedder {
                return Err(Error::EmbedderMismatch {
                    library: library.meta().embedder.clone(),
                    requested: e.id().to_string(),
                });
            }
        }
        Ok(HybridSearch {
            library,
            embedder,
            reranker: None,
            history: std::sync::Mutex::new(FusionHistory::load(library)),
            history_use: HistoryUse::Learn,
        })
    }

    /// Use the library's fusion history as `how` says.
    pub fn with_history(mut self, how: HistoryUse) -> Self {
        if how == HistoryUse::Session {
            self.history = std::sync::Mutex::new(FusionHistory::default());
        }
        self.history_use = how;
        self
    }

    /// The fusion history as it stands (what the next hybrid query uses).
    pub fn fusion_history(&self) -> FusionHistory {
        *self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fuse the two lists; with adaptive score fusion, by the weight the
    /// library's earlier queries imply, then count this one (see
    /// [`crate::retrieve::history`]).
    fn fuse_learning(&self, vector: &[Hit], keyword: &[Hit], cfg: &FusionConfig) -> Vec<Hit> {
        let mut cfg = *cfg;
        if cfg.adaptive && cfg.method == FusionMethod::Scores {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            cfg.vector_weight = history.vector_weight();
            let lead = keyword_lead(vector, keyword, cfg.depth.min(SCORE_WINDOW));
            if let (Some(lead), true) = (lead, self.history_use != HistoryUse::Read) {
                history.observe(lead);
                if self.history_use == HistoryUse::Learn {
                    if let Err(e) = history.save(self.library) {
                        tracing::debug!("the fusion history was not saved: {e}");
                    }
                }
            }
        }
        fuse(vector, keyword, &cfg)
    }

    /// The library it searches.
    pub fn library(&self) -> &'a Library {
        self.library
    }

    /// Whether it can search by meaning (an embedder was given).
    pub fn has_embedder(&self) -> bool {
        self.embedder.is_some()
    }

    /// Re-score the candidates of every mode with `reranker` before truncating to `k`.
    pub fn with_reranker(mut self, reranker: &'a dyn Reranker) -> Self {
        self.reranker = Some(reranker);
        self
    }

    /// Run a search.
    pub async fn search(&self, query: &str, opts: &SearchOptions) -> Result<SearchResults> {
        let started = Instant::now();
        let query = query.trim();
        if query.is_empty() {
            return Err(Error::InvalidInput("empty query".into()));
        }
        let mut timings = SearchTimings::default();
        // The chunks carry no dates: a date range becomes the list of the
        // documents modified inside it.
        let date_filter;
        let filter = if opts.filter.has_dates() {
            let paths: Vec<String> = self
                .library
                .documents()
                .await?
                .into_iter()
                .filter(|d| d.state == DocState::Indexed && opts.filter.date_matches(d.mtime_ns))
                .map(|d| d.path)
                .collect();
            if paths.is_empty() {
                timings.total = started.elapsed();
                return Ok(SearchResults {
                    hits: Vec::new(),
                    timings,
                    best_similarity: None,
                    keyword_evidence: None,
                });
            }
            date_filter = Filter {
                paths: Some(paths),
                ..opts.filter.clone()
            };
            &date_filter
        } else {
            &opts.filter
        };
        let rerank_depth = self.reranker.map_or(0, |r| r.depth());
        let depth = match opts.mode {
            SearchMode::Hybrid => opts.fusion.depth.max(opts.k),
            _ => opts.k,
        }
        .max(rerank_depth);
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
            vector_hits = self.library.vectors.search(&v, depth, filter).await?;
            timings.vector = t.elapsed();
            best_similarity = vector_hits.first().map(|h| h.score);
        }
        let mut keyword_hits = Vec::new();
        if opts.mode != SearchMode::Vector {
            let t = Instant::now();
            keyword_hits = self.library.keywords.search(query, depth, filter)?;
            timings.keyword = t.elapsed();
        }
        let chunks = self.library.keywords.num_chunks().max(1) as f32;
        let keyword_evidence = keyword_hits.first().map(|h| h.score / chunks.ln_1p());
        let mut hits = match opts.mode {
            SearchMode::Vector => vector_hits,
            SearchMode::Keyword => keyword_hits,
            SearchMode::Hybrid => self.fuse_learning(&vector_hits, &keyword_hits, &opts.fusion),
        };
        // Documents an indexing batch is rewriting right now may be half in
        // one index and not the other: leave them out until it finishes.
        // (An unreadable journal is reported by `quarry check`, not by search.)
        if let Ok(Some(busy)) = crate::store::journal::in_flight(self.library.dir()) {
            hits.retain(|h| !busy.contains(&crate::store::ids::doc_id(&h.path)));
        }
        if let Some(r) = self.reranker {
            rerank(r, query, &mut hits)?;
        }
        hits.truncate(opts.k);
        for h in &mut hits {
            h.ocr_confidence = self.library.ocr_confidence(&h.path, h.page);
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
            keyword_evidence,
        })
    }
}

/// Re-order the first `reranker.depth()` hits by the reranker's scores,
/// blended with theirs by [`Reranker::first_stage_weight`] (stable for ties);
/// the new scores replace the hits' fused scores.
fn rerank(reranker: &dyn Reranker, query: &str, hits: &mut [Hit]) -> Result<()> {
    let n = reranker.depth().min(hits.len());
    if n == 0 {
        return Ok(());
    }
    let passages: Vec<&str> = hits[..n].iter().map(|h| h.text.as_str()).collect();
    let scores = reranker.score(query, &passages)?;
    if scores.len() != n {
        return Err(Error::Internal(format!(
            "the reranker scored {} of {n} passages",
            scores.len()
        )));
    }
    let weight = reranker.first_stage_weight();
    let scores = if weight == 0.0 {
        scores
    } else {
        let first: Vec<f32> = hits[..n].iter().map(|h| h.score).collect();
        let (a, b) = (standardise(&scores), standardise(&first));
        a.iter().zip(&b).map(|(x, y)| x + weight * y).collect()
    };
    for (h, s) in hits[..n].iter_mut().zip(scores) {
        h.score = s;
    }
    hits[..n].sort_by(|a, b| b.score.total_cmp(&a.score));
    Ok(())
}

/// The first `max` bytes of `text` at a char boundary, whitespace collapsed.
fn lead(text: &str, max: usize) -> String {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `v` as z-scores (mean 0, standard deviation 1; all 0 when they are equal).
fn standardise(v: &[f32]) -> Vec<f32> {
    let n = v.len().max(1) as f32;
    let mean = v.iter().sum::<f32>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
    v.iter()
        .map(|x| if sd > 0.0 { (x - mean) / sd } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores a passage by how often it mentions the query's last word.
    struct MentionCounter;

    impl Reranker for MentionCounter {
        fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
            let word = query.split_whitespace().last().unwrap_or("");
            Ok(passages
                .iter()
                .map(|p| p.matches(word).count() as f32)
                .collect())
        }
        fn depth(&self) -> usize {
            3
        }
    }

    fn hit(id: &str, text: &str, score: f32) -> Hit {
        Hit {
            chunk_id: id.into(),
            path: format!("/{id}.txt"),
            page: None,
            heading: None,
            char_start: 0,
            char_end: text.len() as u64,
            text: text.into(),
            snippet: None,
            score,
            ocr_confidence: None,
        }
    }

    #[test]
    fn reranker_reorders_only_its_depth() {
        let mut hits = vec![
            hit("a", "lease", 0.9),
            hit("b", "lease lease lease", 0.8),
            hit("c", "nothing", 0.7),
            hit("d", "lease lease lease lease", 0.6),
        ];
        rerank(&MentionCounter, "notice lease", &mut hits).unwrap();
        let order: Vec<&str> = hits.iter().map(|h| h.chunk_id.as_str()).collect();
        // d is beyond depth 3 and stays last despite its score.
        assert_eq!(order, vec!["b", "a", "c", "d"]);
        assert_eq!(hits[0].score, 3.0);
    }

    /// The first stage's scores count by the reranker's weight for them.
    #[test]
    fn a_first_stage_weight_blends_the_two_orders() {
        struct Fixed(f32);
        impl Reranker for Fixed {
            fn score(&self, _: &str, _: &[&str]) -> Result<Vec<f32>> {
                Ok(vec![0.0, 1.0, 0.5])
            }
            fn first_stage_weight(&self) -> f32 {
                self.0
            }
        }
        let order = |weight: f32| {
            let mut hits = vec![hit("a", "", 0.9), hit("b", "", 0.5), hit("c", "", 0.1)];
            rerank(&Fixed(weight), "q", &mut hits).unwrap();
            hits.iter().map(|h| h.chunk_id.clone()).collect::<String>()
        };
        assert_eq!(order(0.0), "bca", "the reranker alone");
        assert_eq!(order(1.0), "bac", "equal say");
        assert_eq!(order(3.0), "abc", "mostly the first stage");
        assert_eq!(standardise(&[2.0, 2.0]), vec![0.0, 0.0]);
    }

    #[test]
    fn a_reranker_that_drops_scores_is_an_error() {
        struct Short;
        impl Reranker for Short {
            fn score(&self, _: &str, _: &[&str]) -> Result<Vec<f32>> {
                Ok(vec![1.0])
            }
        }
        let mut hits = vec![hit("a", "x", 0.5), hit("b", "y", 0.4)];
        assert!(rerank(&Short, "q", &mut hits).is_err());
    }
}

//! Search at scale: synthetic libraries of any size built from a real one,
//! and the latency / recall figures of `quarry bench --synthetic`.
//!
//! Embedding a million chunks would take this machine most of a day, so a
//! synthetic library is made from a real one's chunks: each synthetic chunk
//! blends two real chunks — its vector a random convex mix of theirs plus
//! Gaussian noise (renormalised), its text the first half of one and the second
//! half of the other — so vectors spread over the real embedding manifold
//! instead of clustering on copies, and BM25 sees real vocabulary statistics.

use std::path::Path;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::eval::percentile_ms;
use crate::retrieve::search::{HybridSearch, SearchMode, SearchOptions};
use crate::store::library::Library;
use crate::store::{ChunkRecord, Filter};

/// Chunks written per batch.
const BATCH: usize = 20_000;

fn half_words(text: &str, first: bool) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mid = words.len() / 2;
    let part = if first { &words[..mid] } else { &words[mid..] };
    part.join(" ")
}

/// Fill the (empty) library at `dir` with `n` synthetic chunks made from
/// `source` (real chunks with vectors). `on_progress` gets the chunks written.
pub async fn build_synthetic(
    dir: &Path,
    source: &[ChunkRecord],
    n: usize,
    embedder: &str,
    dim: usize,
    on_progress: &mut dyn FnMut(usize),
) -> Result<Library> {
    if source.len() < 2 {
        return Err(Error::InvalidInput(
            "a synthetic library needs at least two real chunks".into(),
        ));
    }
    let library = Library::open_or_create(dir, embedder, dim).await?;
    let existing = library.vectors.count_chunks().await?;
    if existing >= n {
        return Ok(library);
    }
    if existing > 0 {
        return Err(Error::InvalidInput(format!(
            "{} holds {existing} chunks, not {n}: remove it first",
            dir.display()
        )));
    }
    let _lock = library.lock_for_writing()?;
    let mut rng = StdRng::seed_from_u64(0x5eed);
    // Noise of norm ≈ 0.35 against unit vectors.
    let noise = Normal::new(0.0f32, 0.35 / (dim as f32).sqrt())
        .map_err(|e| Error::Internal(e.to_string()))?;
    let mut writer = library.keywords.writer()?;
    let mut written = 0;
    while written < n {
        let take = BATCH.min(n - written);
        let mut batch = Vec::with_capacity(take);
        for i in written..written + take {
            let a = &source[rng.random_range(0..source.len())];
            let b = &source[rng.random_range(0..source.len())];
            let w: f32 = rng.random_range(0.2..0.8);
            let mut v: Vec<f32> = a
                .vector
                .iter()
                .zip(&b.vector)
                .map(|(x, y)| w * x + (1.0 - w) * y + noise.sample(&mut rng))
                .collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
            let text = format!(
                "{} {}",
                half_words(&a.text, true),
                half_words(&b.text, false)
            );
            let doc = i / 10;
            batch.push(ChunkRecord {
                id: format!("syn-{i}"),
                doc_id: format!("syn-doc-{doc}"),
                path: format!("/synthetic/{:04}/doc-{doc}.txt", doc / 1000),
                ext: "txt".into(),
                index: (i % 10) as u32,
                title: None,
                heading: None,
                page: None,
                char_start: 0,
                char_end: text.chars().count() as u64,
                text,
                vector: v,
            });
        }
        library.vectors.add_chunks(&batch).await?;
        library.keywords.add(&writer, &batch)?;
        written += take;
        on_progress(written);
    }
    writer.commit()?;
    drop(writer);
    library.vectors.optimize().await?;
    library.keywords.reload()?;
    Ok(library)
}

/// p50 / p95 of one kind of query, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
}

fn latency(d: &mut [Duration]) -> Latency {
    Latency {
        p50_ms: percentile_ms(d, 50.0),
        p95_ms: percentile_ms(d, 95.0),
    }
}

/// Search figures of one library size.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleReport {
    /// Chunks in the library.
    pub chunks: usize,
    /// Queries timed.
    pub queries: usize,
    /// Library size on disk.
    pub disk_mb: f64,
    /// Vector search scanning every vector.
    pub vector_exact: Latency,
    /// Seconds to build the IVF-PQ index.
    pub index_build_s: f64,
    /// Vector search through the index (with exact re-ranking of candidates).
    pub vector_ann: Latency,
    /// Share of the exact top 10 that the indexed search returns.
    pub ann_recall_at_10: f64,
    /// BM25.
    pub keyword: Latency,
    /// Hybrid, end to end (query embedding, both searches, fusion, snippets).
    pub hybrid: Latency,
}

/// Time every query kind on `library` and measure the approximate index's
/// recall against an exact scan (building the index if it is missing).
pub async fn measure(
    library: &Library,
    embedder: &Embedder,
    queries: &[String],
) -> Result<ScaleReport> {
    let vectors: Vec<Vec<f32>> = queries
        .iter()
        .map(|q| embedder.embed_query(q))
        .collect::<Result<_>>()?;
    let none = Filter::default();
    let mut exact_t = Vec::new();
    let mut exact_ids = Vec::new();
    for v in &vectors {
        let t = Instant::now();
        let hits = library.vectors.search_with(v, 10, &none, true).await?;
        exact_t.push(t.elapsed());
        exact_ids.push(hits.into_iter().map(|h| h.chunk_id).collect::<Vec<_>>());
    }
    let t = Instant::now();
    let built = library.vectors.ensure_vector_index(None).await?.is_some();
    let index_build_s = if built {
        t.elapsed().as_secs_f64()
    } else {
        0.0
    };
    let mut ann_t = Vec::new();
    let mut found = 0usize;
    let mut wanted = 0usize;
    for (v, exact) in vectors.iter().zip(&exact_ids) {
        let t = Instant::now();
        let hits = library.vectors.search_with(v, 10, &none, false).await?;
        ann_t.push(t.elapsed());
        wanted += exact.len();
        found += hits.iter().filter(|h| exact.contains(&h.chunk_id)).count();
    }
    let mut kw_t = Vec::new();
    for q in queries {
        let t = Instant::now();
        library.keywords.search(q, 10, &none)?;
        kw_t.push(t.elapsed());
    }
    let search = HybridSearch::new(library, Some(embedder))?
        .with_history(crate::retrieve::search::HistoryUse::Session);
    let opts = SearchOptions {
        mode: SearchMode::Hybrid,
        ..Default::default()
    };
    let mut hy_t = Vec::new();
    for q in queries {
        let t = Instant::now();
        search.search(q, &opts).await?;
        hy_t.push(t.elapsed());
    }
    Ok(ScaleReport {
        chunks: library.vectors.count_chunks().await?,
        queries: queries.len(),
        disk_mb: crate::store::library::dir_size(library.dir()) as f64 / 1e6,
        vector_exact: latency(&mut exact_t),
        index_build_s,
        vector_ann: latency(&mut ann_t),
        ann_recall_at_10: found as f64 / wanted.max(1) as f64,
        keyword: latency(&mut kw_t),
        hybrid: latency(&mut hy_t),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_split_on_words() {
        assert_eq!(half_words("a b c d", true), "a b");
        assert_eq!(half_words("a b c d e", false), "c d e");
        assert_eq!(half_words("", true), "");
    }
}

//! Fusing the vector and keyword result lists.
//!
//! Two methods:
//! - [`FusionMethod::Scores`] (the default): each list's scores are
//!   standardised over its first 50 hits (z-scores: how far a hit stands
//!   above that list's own spread), and a chunk's fused score is
//!   `w·z_vector + (1 − w)·z_keyword`; a chunk missing from one list gets that
//!   list's lowest z. A retriever that is sure of its top hit (one far above the
//!   rest) moves the fused order more than one whose scores are flat, query by
//!   query, which rank fusion cannot see.
//! - [`FusionMethod::Ranks`]: weighted reciprocal rank fusion, `w / (k + r)`
//!   summed over the lists (the method before; kept for comparison).
//!
//! BENCHMARKS.md ("Hybrid search on five kinds of text") has the measurements.

use std::collections::HashMap;

use crate::store::Hit;

/// How the two ranked lists are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FusionMethod {
    /// Standardised scores, combined linearly.
    Scores,
    /// Weighted reciprocal rank fusion.
    Ranks,
}

impl std::str::FromStr for FusionMethod {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "scores" => Ok(FusionMethod::Scores),
            "ranks" | "rrf" => Ok(FusionMethod::Ranks),
            other => Err(crate::Error::InvalidInput(format!(
                "unknown fusion '{other}' (scores, ranks)"
            ))),
        }
    }
}

/// Fusion settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FusionConfig {
    /// How the lists are combined.
    pub method: FusionMethod,
    /// RRF constant k (ranks only; larger flattens the rank curve).
    pub rrf_k: f32,
    /// Weight of the vector list in [0, 1]; the keyword list gets the rest.
    pub vector_weight: f32,
    /// How many results each list contributes (and, for scores, the window
    /// each list is standardised over).
    pub depth: usize,
    /// Score fusion only: take the vector weight from the library's queries
    /// so far (`HybridSearch` keeps them, `retrieve/history.rs`) instead of `vector_weight`.
    pub adaptive: bool,
}

impl Default for FusionConfig {
    /// Standardised scores, 50 hits a list, the vector weight learned from
    /// the library's queries (adaptive), starting from 0.55: measured on
    /// SQuAD dev and four sets of other kinds of text (BENCHMARKS.md), the
    /// fixed weight that does best on the set it does worst on (a FAQ, where
    /// meaning search leads) while costing SQuAD, where keywords lead, at
    /// most 0.001 nDCG@10 against equal weights.
    fn default() -> Self {
        FusionConfig {
            method: FusionMethod::Scores,
            rrf_k: 60.0,
            vector_weight: 0.55,
            depth: 50,
            adaptive: true,
        }
    }
}

impl FusionConfig {
    /// Rank fusion as it was before: a 0.3 vector weight, k 60.
    pub fn ranks() -> Self {
        FusionConfig {
            method: FusionMethod::Ranks,
            vector_weight: 0.3,
            adaptive: false,
            ..Default::default()
        }
    }
}

/// Fuse two ranked lists (best first) into one, best first, by `cfg.method`.
/// A chunk found by both keeps the vector hit's fields and the keyword hit's
/// snippet; ties are broken by chunk id, so the order is reproducible.
pub fn fuse(vector: &[Hit], keyword: &[Hit], cfg: &FusionConfig) -> Vec<Hit> {
    match cfg.method {
        FusionMethod::Scores => score_fusion(vector, keyword, cfg),
        FusionMethod::Ranks => reciprocal_rank_fusion(vector, keyword, cfg),
    }
}

/// Weighted reciprocal rank fusion.
pub fn reciprocal_rank_fusion<'a>(
    vector: &'a [Hit],
    keyword: &'a [Hit],
    cfg: &FusionConfig,
) -> Vec<Hit> {
    let wv = cfg.vector_weight.clamp(0.0, 1.0);
    let weights = [wv, 1.0 - wv];
    let k = cfg.rrf_k;
    combine(vector, keyword, cfg.depth, |list, rank, _| {
        weights[list] / (k + rank as f32 + 1.0)
    })
}

/// The most hits of a list its scores are standardised over.
pub const SCORE_WINDOW: usize = 50;

/// Standardised-score fusion: `w·z_vector + (1 − w)·z_keyword`, squashed
/// into (0, 1) by the logistic function so scores read like the others.
pub fn score_fusion(vector: &[Hit], keyword: &[Hit], cfg: &FusionConfig) -> Vec<Hit> {
    let wv = cfg.vector_weight.clamp(0.0, 1.0);
    let weights = [wv, 1.0 - wv];
    let window = cfg.depth.min(SCORE_WINDOW);
    let stats = [
        Standard::of(&vector[..window.min(vector.len())]),
        Standard::of(&keyword[..window.min(keyword.len())]),
    ];
    // Every chunk starts at the floor of both lists; each list it is in
    // raises its own term from the floor to its z (hits past the window, when
    // `depth` is larger, count as absent).
    let floor: f32 = (0..2).map(|l| weights[l] * stats[l].floor).sum();
    let mut fused = combine(vector, keyword, cfg.depth, |list, _, score| {
        weights[list] * (stats[list].z(score) - stats[list].floor).max(0.0)
    });
    for h in &mut fused {
        h.score = 1.0 / (1.0 + (-(h.score + floor)).exp());
    }
    fused
}

/// A list's mean and spread over its scores, and its lowest z.
pub(crate) struct Standard {
    mean: f32,
    sd: f32,
    floor: f32,
}

impl Standard {
    pub(crate) fn of(hits: &[Hit]) -> Self {
        if hits.len() < 2 {
            // One hit (or none): it stands at 1, absence at 0.
            return Standard {
                mean: hits.first().map_or(0.0, |h| h.score - 1.0),
                sd: 1.0,
                floor: 0.0,
            };
        }
        let n = hits.len() as f32;
        let mean = hits.iter().map(|h| h.score).sum::<f32>() / n;
        let var = hits.iter().map(|h| (h.score - mean).powi(2)).sum::<f32>() / n;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        let low = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
        Standard {
            mean,
            sd,
            floor: (low - mean) / sd,
        }
    }

    pub(crate) fn z(&self, score: f32) -> f32 {
        (score - self.mean) / self.sd
    }
}

/// Sum `term(list, rank, score)` per chunk over the first `depth` hits of
/// the vector (list 0) and keyword (list 1) lists, best first, ties by chunk id.
fn combine<'a>(
    vector: &'a [Hit],
    keyword: &'a [Hit],
    depth: usize,
    term: impl Fn(usize, usize, f32) -> f32,
) -> Vec<Hit> {
    let mut fused: HashMap<&'a str, (f32, Hit)> = HashMap::new();
    for (list, hits) in [vector, keyword].into_iter().enumerate() {
        for (rank, h) in hits.iter().take(depth).enumerate() {
            let s = term(list, rank, h.score);
            fused
                .entry(h.chunk_id.as_str())
                .and_modify(|(score, existing)| {
                    *score += s;
                    if existing.snippet.is_none() {
                        existing.snippet = h.snippet.clone();
                    }
                })
                .or_insert_with(|| (s, h.clone()));
        }
    }
    let mut out: Vec<Hit> = fused
        .into_values()
        .map(|(s, mut h)| {
            h.score = s;
            h
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.chunk_id.cmp(&b.chunk_id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hit(id: &str) -> Hit {
        Hit {
            chunk_id: id.into(),
            path: format!("/{id}"),
            page: None,
            heading: None,
            char_start: 0,
            char_end: 0,
            text: id.into(),
            snippet: None,
            score: 0.0,
            ocr_confidence: None,
        }
    }

    fn hits(ids: &[&str]) -> Vec<Hit> {
        ids.iter().map(|i| hit(i)).collect()
    }

    fn scored(list: &[(&str, f32)]) -> Vec<Hit> {
        list.iter()
            .map(|(id, s)| Hit {
                score: *s,
                ..hit(id)
            })
            .collect()
    }

    fn order(f: &[Hit]) -> Vec<&str> {
        f.iter().map(|h| h.chunk_id.as_str()).collect()
    }

    #[test]
    fn a_hit_far_above_its_list_outweighs_a_close_call() {
        // The keyword list's top hit stands far above the rest of its list;
        // the vector list's top three are a close call, its pick just ahead.
        let vector = scored(&[("v", 0.501), ("x", 0.500), ("k", 0.4995), ("y", 0.499)]);
        let keyword = scored(&[("k", 30.0), ("v", 5.0), ("x", 4.9), ("y", 4.8)]);
        let scores = FusionConfig {
            vector_weight: 0.5,
            ..Default::default()
        };
        let f = score_fusion(&vector, &keyword, &scores);
        assert_eq!(order(&f)[0], "k");
        // Rank fusion sees only the ranks (v: 1st and 2nd, k: 3rd and 1st)
        // and puts the vector's pick first at the same weights.
        let ranks = FusionConfig {
            vector_weight: 0.5,
            ..FusionConfig::ranks()
        };
        let r = reciprocal_rank_fusion(&vector, &keyword, &ranks);
        assert_eq!(order(&r)[0], "v");
    }

    #[test]
    fn found_by_both_beats_found_by_one_and_scores_are_in_unit_range() {
        let vector = scored(&[("a", 0.9), ("b", 0.8), ("c", 0.7)]);
        let keyword = scored(&[("b", 12.0), ("d", 11.0), ("e", 3.0)]);
        let f = score_fusion(&vector, &keyword, &FusionConfig::default());
        assert_eq!(order(&f)[0], "b");
        assert_eq!(f.len(), 5);
        assert!(f.iter().all(|h| h.score > 0.0 && h.score < 1.0));
        for p in f.windows(2) {
            assert!(p[0].score >= p[1].score);
        }
    }

    #[test]
    fn one_empty_list_leaves_the_other_order() {
        let vector = scored(&[("a", 0.9), ("b", 0.5), ("c", 0.4)]);
        let f = score_fusion(&vector, &[], &FusionConfig::default());
        assert_eq!(order(&f), ["a", "b", "c"]);
        let single = score_fusion(&[], &scored(&[("z", 7.0)]), &FusionConfig::default());
        assert_eq!(order(&single), ["z"]);
    }

    #[test]
    fn fusion_names_parse() {
        assert_eq!(
            "scores".parse::<FusionMethod>().unwrap(),
            FusionMethod::Scores
        );
        assert_eq!("rrf".parse::<FusionMethod>().unwrap(), FusionMethod::Ranks);
        assert!("borda".parse::<FusionMethod>().is_err());
    }

    #[test]
    fn found_by_both_wins() {
        let cfg = FusionConfig {
            vector_weight: 0.5,
            ..FusionConfig::ranks()
        };
        let f = reciprocal_rank_fusion(&hits(&["a", "b", "c"]), &hits(&["c", "d"]), &cfg);
        assert_eq!(f[0].chunk_id, "c");
        assert_eq!(f.len(), 4);
        // c: rank 3 in the vector list, rank 1 in the keyword list.
        let expected = 0.5 / 63.0 + 0.5 / 61.0;
        assert!((f[0].score - expected).abs() < 1e-6);
    }

    #[test]
    fn weight_one_is_vector_order() {
        let cfg = FusionConfig {
            vector_weight: 1.0,
            ..Default::default()
        };
        let f = reciprocal_rank_fusion(&hits(&["a", "b"]), &hits(&["b", "z"]), &cfg);
        assert_eq!(f[0].chunk_id, "a");
        assert_eq!(f[1].chunk_id, "b");
        assert_eq!(f[2].score, 0.0);
    }

    #[test]
    fn depth_limits_each_list() {
        let cfg = FusionConfig {
            depth: 1,
            ..Default::default()
        };
        let f = reciprocal_rank_fusion(&hits(&["a", "b"]), &hits(&["c", "d"]), &cfg);
        assert_eq!(f.len(), 2);
    }

    fn perm(n: usize) -> impl Strategy<Value = Vec<String>> {
        Just((0..n).map(|i| format!("c{i}")).collect::<Vec<_>>()).prop_shuffle()
    }

    proptest! {
        #[test]
        fn fusion_properties(v in perm(12), k in perm(12), nv in 0usize..12, nk in 0usize..12, w in 0.0f32..=1.0) {
            let vh: Vec<Hit> = v[..nv].iter().map(|i| hit(i)).collect();
            let kh: Vec<Hit> = k[..nk].iter().map(|i| hit(i)).collect();
            let f = reciprocal_rank_fusion(&vh, &kh, &FusionConfig { vector_weight: w, ..Default::default() });
            // Union, without duplicates, sorted by score.
            let mut ids: Vec<&str> = f.iter().map(|h| h.chunk_id.as_str()).collect();
            ids.sort();
            let before = ids.len();
            ids.dedup();
            prop_assert_eq!(before, ids.len());
            let mut union: Vec<&str> = vh.iter().chain(&kh).map(|h| h.chunk_id.as_str()).collect();
            union.sort();
            union.dedup();
            prop_assert_eq!(ids, union);
            for p in f.windows(2) { prop_assert!(p[0].score >= p[1].score); }
            // A chunk ranked at least as well in both lists, and strictly better in one
            // it appears in, never scores lower.
            let rank = |l: &[Hit], id: &str| l.iter().position(|h| h.chunk_id == id);
            for a in &f { for b in &f {
                let (va, vb, ka, kb) = (rank(&vh, &a.chunk_id), rank(&vh, &b.chunk_id), rank(&kh, &a.chunk_id), rank(&kh, &b.chunk_id));
                let better = |x: Option<usize>, y: Option<usize>| match (x, y) { (Some(x), Some(y)) => x <= y, (Some(_), None) => true, (None, None) => true, (None, Some(_)) => false };
                if better(va, vb) && better(ka, kb) { prop_assert!(a.score >= b.score - 1e-7); }
            }}
        }

        #[test]
        fn score_fusion_properties(v in perm(12), k in perm(12), nv in 0usize..12, nk in 0usize..12,
                                   w in 0.0f32..=1.0, depth in 1usize..14) {
            // Scores descending with rank, as the retrievers return them.
            let with_scores = |ids: &[String], top: f32, step: f32| -> Vec<Hit> {
                ids.iter().enumerate().map(|(r, i)| Hit { score: top - step * r as f32, ..hit(i) }).collect()
            };
            let vh = with_scores(&v[..nv], 0.9, 0.03);
            let kh = with_scores(&k[..nk], 25.0, 1.7);
            let cfg = FusionConfig { vector_weight: w, depth, ..Default::default() };
            let f = score_fusion(&vh, &kh, &cfg);
            let mut ids: Vec<&str> = order(&f);
            ids.sort();
            let mut window: Vec<&str> = vh.iter().take(depth).chain(kh.iter().take(depth)).map(|h| h.chunk_id.as_str()).collect();
            window.sort();
            window.dedup();
            prop_assert_eq!(ids, window);
            for p in f.windows(2) { prop_assert!(p[0].score >= p[1].score); }
            for h in &f { prop_assert!(h.score > 0.0 && h.score < 1.0); }
            // At least as good a rank in both lists never scores lower.
            let rank = |l: &[Hit], id: &str| l.iter().take(depth).position(|h| h.chunk_id == id);
            for a in &f { for b in &f {
                let (va, vb, ka, kb) = (rank(&vh, &a.chunk_id), rank(&vh, &b.chunk_id), rank(&kh, &a.chunk_id), rank(&kh, &b.chunk_id));
                let better = |x: Option<usize>, y: Option<usize>| match (x, y) { (Some(x), Some(y)) => x <= y, (Some(_), None) => true, (None, None) => true, (None, Some(_)) => false };
                if better(va, vb) && better(ka, kb) { prop_assert!(a.score >= b.score - 1e-6); }
            }}
        }
    }
}

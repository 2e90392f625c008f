//! What a library's queries have looked like so far, kept as two running
//! means, and what they imply: the fusion weight and the relevance floor.
//!
//! Which retriever deserves more say depends less on the documents than on
//! how people ask about them: crowd questions that reuse the passage's
//! words (SQuAD) are led by keywords; a FAQ's questions, mail subjects or a
//! question in another language than the documents are led by meaning.
//! Per query, no signal tells the two apart reliably (BENCHMARKS.md, issue
//! 22: margins, agreement, language all flip sign between sets). Averaged
//! over a library's questions, one does: the *keyword lead*, how much
//! further the best keyword hit stands above its list than the best vector
//! hit does above its own (`z_top(keyword) − z_top(vector)`). Over sixteen
//! sets it falls steadily from +1.2 (SQuAD, best vector weight 0.5) to
//! about −1.2 (Japanese and Chinese, best 0.8–0.9).
//!
//! [`QueryHistory`] keeps a running mean of it (the last ~200 queries weigh
//! most), starting from the value that gives the fixed default weight, and
//! [`QueryHistory::vector_weight`] maps it to `0.65 − 0.2 · lead`, kept
//! within 0.5..0.9. Each query is fused with the weight learned from the
//! queries before it.
//!
//! The same goes for "not in your documents": how similar a question's best
//! passage must be depends on the embedder (all-MiniLM-L6-v2's cosines
//! spread around 0.6, multilingual-e5's sit near 0.88 and close together)
//! and on the text (short mails match their questions more loosely). So the
//! floor is learned too: 1.8 standard deviations under the mean of the
//! library's best similarities so far ([`QueryHistory::similarity_floor`]),
//! 0.40 until ten queries have come. The file holds these numbers and no text; it is
//! sealed like the rest of an encrypted library.

use serde::{Deserialize, Serialize};

use crate::store::library::Library;
use crate::store::Hit;

/// The file in the library folder.
pub const FILE: &str = "query-history.json";

/// The lead a library starts from: where the weight is the fixed default, 0.55.
const PRIOR_LEAD: f32 = 0.5;
/// How many queries the starting lead counts as.
const PRIOR_QUERIES: f32 = 5.0;
/// The running means weigh the last this-many queries most.
const MEMORY: f32 = 200.0;
/// The similarity floor until the library has [`FLOOR_AFTER`] queries: the
/// fixed floor chosen for all-MiniLM-L6-v2 on squaddev and four other sets
/// (BENCHMARKS.md).
pub const STARTING_SIMILARITY_FLOOR: f32 = 0.40;
/// Queries before the floor is the library's own.
const FLOOR_AFTER: u64 = 10;
/// The similarity floor sits this many standard deviations below the mean
/// of the library's best similarities: about the 4th percentile, so ~95%
/// of questions like the earlier ones pass (1.65, 1.8 and 2.0 measured in
/// BENCHMARKS.md; 1.8 keeps at least 94% of answerable questions on all
/// sixteen sets).
const FLOOR_SDS: f32 = 1.8;

/// A running mean of a value and of its square, over the last ~[`MEMORY`]
/// observations, starting from a prior worth `prior` observations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Running {
    /// Mean.
    pub mean: f32,
    /// Mean of the squares.
    pub square: f32,
    /// Observations counted.
    pub n: u64,
}

impl Running {
    fn prior(mean: f32) -> Running {
        Running {
            mean,
            square: mean * mean,
            n: 0,
        }
    }

    fn observe(&mut self, x: f32, prior: f32) {
        if !x.is_finite() {
            return;
        }
        self.n += 1;
        let k = (self.n as f32 + prior).min(MEMORY);
        self.mean += (x - self.mean) / k;
        self.square += (x * x - self.square) / k;
    }

    /// Standard deviation.
    pub fn sd(&self) -> f32 {
        (self.square - self.mean * self.mean).max(0.0).sqrt()
    }

    fn valid(&self) -> bool {
        self.mean.is_finite() && self.square.is_finite()
    }
}

/// A library's queries so far, as retrieval sees them: two running means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QueryHistory {
    /// The queries' keyword lead (see the module docs): the fusion weight.
    pub lead: Running,
    /// Their best vector hit's cosine similarity: the relevance floor.
    pub similarity: Running,
}

impl Default for QueryHistory {
    fn default() -> Self {
        QueryHistory {
            lead: Running::prior(PRIOR_LEAD),
            // No prior: the similarities' scale is the embedder's, unknown
            // until queries come (the floor waits for FLOOR_AFTER of them).
            similarity: Running::prior(0.0),
        }
    }
}

impl QueryHistory {
    /// The vector list's weight for the next query: `0.65 − 0.2 · lead`,
    /// kept within 0.5..0.9 (0.55 for a library with no queries yet).
    pub fn vector_weight(&self) -> f32 {
        (0.65 - 0.2 * self.lead.mean).clamp(0.5, 0.9)
    }

    /// The similarity under which a question is not about the library (unless
    /// keywords say it is): [`FLOOR_SDS`] standard deviations below the mean
    /// of the library's best similarities so far;
    /// [`STARTING_SIMILARITY_FLOOR`] before [`FLOOR_AFTER`] queries.
    pub fn similarity_floor(&self) -> f32 {
        if self.similarity.n < FLOOR_AFTER {
            return STARTING_SIMILARITY_FLOOR;
        }
        self.similarity.mean - FLOOR_SDS * self.similarity.sd()
    }

    /// Count one more query: its keyword lead (see [`keyword_lead`]) and its
    /// best vector hit's similarity, when it has them.
    pub fn observe(&mut self, lead: Option<f32>, similarity: Option<f32>) {
        if let Some(l) = lead {
            self.lead.observe(l, PRIOR_QUERIES);
        }
        if let Some(s) = similarity {
            self.similarity.observe(s, 0.0);
        }
    }

    /// The history saved in `library` (the starting one when there is none,
    /// or when the file cannot be read: it only steers a weight and a floor).
    pub fn load(library: &Library) -> QueryHistory {
        let path = library.dir().join(FILE);
        match library.files().read(&path) {
            Ok(Some(bytes)) => serde_json::from_slice::<QueryHistory>(&bytes)
                .ok()
                .filter(|h| h.lead.valid() && h.similarity.valid())
                .unwrap_or_default(),
            Ok(None) => QueryHistory::default(),
            Err(e) => {
                tracing::debug!("{}: {e}; starting the query history afresh", path.display());
                QueryHistory::default()
            }
        }
    }

    /// Save it in `library` (sealed when the library is encrypted).
    pub fn save(&self, library: &Library) -> crate::Result<()> {
        library
            .files()
            .write(&library.dir().join(FILE), &serde_json::to_vec(self)?)
    }
}

/// How much further the best keyword hit stands above its list than the
/// best vector hit above its own, each in standard deviations over the first
/// `window` hits. `None` unless both lists have at least two hits.
pub fn keyword_lead(vector: &[Hit], keyword: &[Hit], window: usize) -> Option<f32> {
    let top_z = |hits: &[Hit]| -> Option<f32> {
        let hits = &hits[..window.min(hits.len())];
        if hits.len() < 2 {
            return None;
        }
        let n = hits.len() as f32;
        let mean = hits.iter().map(|h| h.score).sum::<f32>() / n;
        let var = hits.iter().map(|h| (h.score - mean).powi(2)).sum::<f32>() / n;
        let sd = if var > 0.0 { var.sqrt() } else { 1.0 };
        Some((hits[0].score - mean) / sd)
    };
    Some(top_z(keyword)? - top_z(vector)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(scores: &[f32]) -> Vec<Hit> {
        scores
            .iter()
            .enumerate()
            .map(|(i, &s)| Hit {
                chunk_id: format!("c{i}"),
                path: format!("/d{i}"),
                page: None,
                heading: None,
                char_start: 0,
                char_end: 0,
                text: String::new(),
                snippet: None,
                score: s,
                ocr_confidence: None,
            })
            .collect()
    }

    fn leads(h: &mut QueryHistory, lead: f32, n: usize) {
        for _ in 0..n {
            h.observe(Some(lead), None);
        }
    }

    #[test]
    fn a_fresh_library_uses_the_fixed_defaults() {
        let h = QueryHistory::default();
        assert!((h.vector_weight() - 0.55).abs() < 1e-6);
        assert_eq!(h.similarity_floor(), STARTING_SIMILARITY_FLOOR);
    }

    #[test]
    fn the_weight_follows_the_queries_and_stays_in_bounds() {
        // Queries whose best keyword hit stands out far more: keywords lead.
        let mut kw = QueryHistory::default();
        leads(&mut kw, 1.2, 300);
        assert!((kw.lead.mean - 1.2).abs() < 0.02, "{kw:?}");
        assert_eq!(kw.vector_weight(), 0.5);
        // Questions in another language: meaning leads.
        let mut vec = QueryHistory::default();
        leads(&mut vec, -1.0, 300);
        assert!((vec.vector_weight() - 0.85).abs() < 0.01, "{vec:?}");
        leads(&mut vec, -5.0, 300);
        assert_eq!(vec.vector_weight(), 0.9);
        // A few queries move it a little, not all the way.
        let mut few = QueryHistory::default();
        leads(&mut few, -1.0, 5);
        assert!((few.lead.mean - (-0.25)).abs() < 1e-4, "{few:?}");
        few.observe(Some(f32::NAN), None);
        assert_eq!(few.lead.n, 5);
        assert_eq!(few.similarity.n, 0);
    }

    #[test]
    fn recent_queries_outweigh_old_ones() {
        let mut h = QueryHistory::default();
        leads(&mut h, 1.0, 1000);
        leads(&mut h, -1.0, 600);
        assert!(h.lead.mean < -0.8, "{h:?}");
    }

    #[test]
    fn the_floor_follows_the_similarities_the_library_sees() {
        // An embedder whose cosines sit high and close together (e5: about
        // 0.88 ± 0.02) gets a floor just under them, not 0.40.
        let mut e5 = QueryHistory::default();
        for i in 0..1000 {
            e5.observe(
                None,
                Some(0.88 + 0.02 * if i % 2 == 0 { 1.0 } else { -1.0 }),
            );
        }
        let floor = e5.similarity_floor();
        assert!(
            (floor - (0.88 - 1.8 * 0.02)).abs() < 0.002,
            "{floor} {e5:?}"
        );
        // Short messages whose questions match them loosely (0.53 ± 0.13):
        // a lower floor than the default.
        let mut mail = QueryHistory::default();
        for i in 0..1000 {
            mail.observe(
                None,
                Some(0.53 + 0.13 * if i % 2 == 0 { 1.0 } else { -1.0 }),
            );
        }
        assert!(
            (mail.similarity_floor() - (0.53 - 1.8 * 0.13)).abs() < 0.002,
            "{mail:?}"
        );
        // Until ten queries have come, the fixed starting floor.
        let mut early = QueryHistory::default();
        for _ in 0..9 {
            early.observe(None, Some(0.9));
        }
        assert_eq!(early.similarity_floor(), STARTING_SIMILARITY_FLOOR);
        early.observe(None, Some(0.9));
        assert!((early.similarity_floor() - 0.9).abs() < 1e-4, "{early:?}");
    }

    #[test]
    fn a_damaged_history_counts_as_none() {
        let bad: Result<QueryHistory, _> = serde_json::from_str(r#"{"lead": 3}"#);
        assert!(bad.is_err());
        let h = QueryHistory {
            lead: Running {
                mean: f32::NAN,
                square: 0.0,
                n: 1,
            },
            ..QueryHistory::default()
        };
        assert!(!h.lead.valid());
    }

    #[test]
    fn keyword_lead_compares_how_far_each_top_hit_stands_out() {
        // Keyword top hit far above a flat list; vector scores evenly spread.
        let keyword = scored(&[10.0, 1.0, 1.0, 1.0, 1.0]);
        let vector = scored(&[0.9, 0.8, 0.7, 0.6, 0.5]);
        let lead = keyword_lead(&vector, &keyword, 50).unwrap();
        // z of 10 in [10,1,1,1,1] is 2.0; z of 0.9 in the ramp is √2.
        assert!((lead - (2.0 - 2f32.sqrt())).abs() < 1e-4, "{lead}");
        assert!(keyword_lead(&keyword, &vector, 50).unwrap() < 0.0);
        // The window limits the lists; one hit is not a list.
        assert!(keyword_lead(&vector, &keyword, 1).is_none());
        assert!(keyword_lead(&[], &keyword, 50).is_none());
    }
}

//! How a library's questions have been answered so far, kept as one number,
//! and the fusion weight it implies.
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
//! [`FusionHistory`] keeps a running mean of it (the last ~200 questions
//! weigh most), starting from the value that gives the fixed default
//! weight, and [`FusionHistory::vector_weight`] maps it to
//! `0.65 − 0.25 · lead`, kept within 0.5..0.95. Each question is fused with
//! the weight learned from the questions before it. The file holds two
//! numbers and no text; it is sealed like the rest of an encrypted library.

use serde::{Deserialize, Serialize};

use crate::retrieve::fusion::Standard;
use crate::store::library::Library;
use crate::store::Hit;

/// The file in the library folder.
pub const FILE: &str = "fusion-history.json";

/// The lead a library starts from: where the weight is the fixed default, 0.55.
const PRIOR_LEAD: f32 = 0.4;
/// How many questions the starting value counts as.
const PRIOR_QUESTIONS: f32 = 5.0;
/// The running mean weighs the last this-many questions most.
const MEMORY: f32 = 200.0;

/// A library's questions so far, as the fusion sees them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FusionHistory {
    /// Running mean of the questions' keyword lead (see the module docs).
    pub lead: f32,
    /// Questions counted.
    pub questions: u64,
}

impl Default for FusionHistory {
    fn default() -> Self {
        FusionHistory {
            lead: PRIOR_LEAD,
            questions: 0,
        }
    }
}

impl FusionHistory {
    /// The vector list's weight for the next question: `0.65 − 0.25 · lead`,
    /// kept within 0.5..0.95 (0.55 for a library with no questions yet).
    pub fn vector_weight(&self) -> f32 {
        (0.65 - 0.25 * self.lead).clamp(0.5, 0.95)
    }

    /// Count one more question's keyword lead (see [`keyword_lead`]).
    pub fn observe(&mut self, lead: f32) {
        if !lead.is_finite() {
            return;
        }
        self.questions += 1;
        let n = (self.questions as f32 + PRIOR_QUESTIONS).min(MEMORY);
        self.lead += (lead - self.lead) / n;
    }

    /// The history saved in `library` (the starting one when there is none,
    /// or when the file cannot be read: it only steers a weight).
    pub fn load(library: &Library) -> FusionHistory {
        let path = library.dir().join(FILE);
        match library.files().read(&path) {
            Ok(Some(bytes)) => serde_json::from_slice::<FusionHistory>(&bytes)
                .ok()
                .filter(|h| h.lead.is_finite())
                .unwrap_or_default(),
            Ok(None) => FusionHistory::default(),
            Err(e) => {
                tracing::debug!(
                    "{}: {e}; starting the fusion history afresh",
                    path.display()
                );
                FusionHistory::default()
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
        (hits.len() >= 2).then(|| Standard::of(hits).z(hits[0].score))
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

    #[test]
    fn a_fresh_library_fuses_with_the_fixed_default() {
        let h = FusionHistory::default();
        assert!((h.vector_weight() - 0.55).abs() < 1e-6);
    }

    #[test]
    fn the_weight_follows_the_questions_and_stays_in_bounds() {
        // Questions whose best keyword hit stands out far more: keywords lead.
        let mut kw = FusionHistory::default();
        for _ in 0..300 {
            kw.observe(1.2);
        }
        assert!((kw.lead - 1.2).abs() < 0.02, "{kw:?}");
        assert_eq!(kw.vector_weight(), 0.5);
        // Questions in another language: meaning leads.
        let mut vec = FusionHistory::default();
        for _ in 0..300 {
            vec.observe(-1.0);
        }
        assert!((vec.vector_weight() - 0.9).abs() < 0.01, "{vec:?}");
        for _ in 0..300 {
            vec.observe(-5.0);
        }
        assert_eq!(vec.vector_weight(), 0.95);
        // A few questions move it a little, not all the way.
        let mut few = FusionHistory::default();
        for _ in 0..5 {
            few.observe(-1.0);
        }
        assert!((few.lead - (-0.3)).abs() < 1e-4, "{few:?}");
        few.observe(f32::NAN);
        assert_eq!(few.questions, 5);
    }

    #[test]
    fn recent_questions_outweigh_old_ones() {
        let mut h = FusionHistory::default();
        for _ in 0..1000 {
            h.observe(1.0);
        }
        for _ in 0..600 {
            h.observe(-1.0);
        }
        assert!(h.lead < -0.8, "{h:?}");
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

//! A numbered source of an answer.

use serde::{Deserialize, Serialize};

/// A numbered source.
#[derive(ts_rs::TS, Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    /// Its number in the answer, from 1.
    pub n: usize,
    /// Absolute path.
    pub path: String,
    /// Page, when the format has pages.
    pub page: Option<u32>,
    /// Heading above the passage.
    pub heading: Option<String>,
    /// The passage.
    pub text: String,
    /// What of the passage the local model read, when it was cut to the
    /// sentences that match the question (none: all of it).
    #[serde(default)]
    pub excerpt: Option<String>,
    /// Character offsets of the passage in the document text.
    pub char_start: u64,
    /// End offset.
    pub char_end: u64,
    /// Retrieval score.
    pub score: f32,
    /// On a scanned page read by OCR: its mean word confidence, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ocr_confidence: Option<f32>,
}

impl Source {
    /// Source `n`: the passage of `hit`.
    pub fn of_hit(n: usize, hit: &crate::store::Hit) -> Source {
        Source {
            n,
            path: hit.path.clone(),
            page: hit.page,
            heading: hit.heading.clone(),
            text: hit.text.clone(),
            excerpt: None,
            char_start: hit.char_start,
            char_end: hit.char_end,
            score: hit.score,
            ocr_confidence: hit.ocr_confidence,
        }
    }
}

#[cfg(test)]
impl Source {
    /// Source `n` of `/docs/n.txt`, `text` its whole passage.
    pub(crate) fn for_test(n: usize, text: &str) -> Source {
        Source {
            n,
            path: format!("/docs/{n}.txt"),
            page: None,
            heading: None,
            text: text.into(),
            excerpt: None,
            char_start: 0,
            char_end: text.len() as u64,
            score: 1.0,
            ocr_confidence: None,
        }
    }
}

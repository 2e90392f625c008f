//! Storage: a library folder ([`library`]) holding two indexes over the same
//! chunk ids — vectors (LanceDB) and keywords (tantivy) — the records they
//! hold, the journal that makes a batch of writes all-or-nothing
//! ([`journal`]), ids ([`ids`]) and the library's privacy settings
//! ([`privacy`]), and the search for what should be gone ([`residue`]).

pub mod ids;
pub mod journal;
mod keywords;
pub mod library;
mod merges;
pub mod privacy;
pub mod residue;
pub mod scans;
pub mod sealed;
pub mod selection;
pub(crate) mod tokenize;
mod vectors;

pub use keywords::KeywordIndex;
pub use tokenize::WordTokenizer;
pub use vectors::{set_ann_search, VectorStore, ANN_MIN_ROWS, OLD_VERSIONS_KEPT_MINUTES};

use serde::{Deserialize, Serialize};

/// A chunk as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    /// Content-derived id (document id + position + text).
    pub id: String,
    /// The document it belongs to.
    pub doc_id: String,
    /// Absolute path of the file.
    pub path: String,
    /// Lower-case extension without dot ("" when none).
    pub ext: String,
    /// Position in the document.
    pub index: u32,
    /// Document title, when the format has one.
    pub title: Option<String>,
    /// Heading above the chunk.
    pub heading: Option<String>,
    /// 1-based page.
    pub page: Option<u32>,
    /// Start offset in the document text, characters.
    pub char_start: u64,
    /// End offset in the document text, characters.
    pub char_end: u64,
    /// The chunk's text.
    pub text: String,
    /// The embedding.
    pub vector: Vec<f32>,
}

/// What happened to a document the last time it was indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocState {
    /// Its chunks are searchable.
    Indexed,
    /// Extraction failed; `error` says why. Retried when the file changes.
    Failed,
    /// Not a document (binary content); `error` says why. Kept so an unchanged
    /// file is not read again.
    Skipped,
}

impl DocState {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            DocState::Indexed => "indexed",
            DocState::Failed => "failed",
            DocState::Skipped => "skipped",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> DocState {
        match s {
            "indexed" => DocState::Indexed,
            "skipped" => DocState::Skipped,
            _ => DocState::Failed,
        }
    }
}

/// A document as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentRecord {
    /// Stable id derived from the path.
    pub doc_id: String,
    /// Absolute path.
    pub path: String,
    /// The indexed folder it was found under.
    pub root: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// sha256 of the content.
    pub hash: String,
    /// Indexed or failed.
    pub state: DocState,
    /// Why it failed, or a warning (e.g. truncated).
    pub error: Option<String>,
    /// Number of chunks.
    pub chunks: u32,
    /// Characters of extracted text.
    pub text_chars: u64,
    /// When it was indexed, milliseconds since the epoch.
    pub indexed_at_ms: i64,
}

/// Restricts a search to part of the library.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only paths starting with this.
    pub path_prefix: Option<String>,
    /// Only these extensions (lower-case, no dot); empty means all.
    pub extensions: Vec<String>,
    /// Only documents modified at or after this time (ms since the epoch).
    pub modified_after_ms: Option<i64>,
    /// Only documents modified before this time (ms since the epoch).
    pub modified_before_ms: Option<i64>,
    /// Only these documents (absolute paths); `None` means any. The search
    /// fills it in from the date range, since the chunks carry no dates.
    pub paths: Option<Vec<String>>,
}

impl Filter {
    /// Whether a date range is set.
    pub fn has_dates(&self) -> bool {
        self.modified_after_ms.is_some() || self.modified_before_ms.is_some()
    }

    /// Whether a document modified at `mtime_ns` falls inside the date range.
    pub fn date_matches(&self, mtime_ns: i64) -> bool {
        let ms = mtime_ns.div_euclid(1_000_000);
        self.modified_after_ms.is_none_or(|a| ms >= a)
            && self.modified_before_ms.is_none_or(|b| ms < b)
    }
}

/// One search result from one index (before fusion), or a fused result.
#[derive(Debug, Clone, PartialEq, Serialize, ts_rs::TS)]
pub struct Hit {
    /// Chunk id.
    pub chunk_id: String,
    /// Absolute path.
    pub path: String,
    /// 1-based page.
    pub page: Option<u32>,
    /// Heading above the chunk.
    pub heading: Option<String>,
    /// Start offset in the document text, characters.
    pub char_start: u64,
    /// End offset in the document text, characters.
    pub char_end: u64,
    /// The chunk's text.
    pub text: String,
    /// Snippet and the byte ranges to highlight in it (front-ends show
    /// them as `snippet` and `highlights`).
    #[serde(skip)]
    #[ts(skip)]
    pub snippet: Option<(String, Vec<std::ops::Range<usize>>)>,
    /// Score (cosine similarity, BM25, or fused score).
    pub score: f32,
    /// When the passage is on a scanned page read by OCR: Tesseract's mean
    /// word confidence on that page, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ocr_confidence: Option<f32>,
}

#[cfg(test)]
mod tests {
    use super::Filter;

    #[test]
    fn date_range_is_half_open_in_milliseconds() {
        let day = 86_400_000_i64;
        let f = Filter {
            modified_after_ms: Some(10 * day),
            modified_before_ms: Some(11 * day),
            ..Default::default()
        };
        assert!(f.has_dates());
        let ns = |ms: i64| ms * 1_000_000;
        assert!(f.date_matches(ns(10 * day)));
        assert!(f.date_matches(ns(11 * day - 1)));
        assert!(!f.date_matches(ns(11 * day)));
        assert!(!f.date_matches(ns(10 * day) - 1));
        assert!(!Filter::default().has_dates());
        assert!(Filter::default().date_matches(i64::MIN));
    }
}

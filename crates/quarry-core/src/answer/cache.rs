//! Cached answers: a repeated or near-identical question, asked of a library
//! whose content has not changed since, gets the earlier answer back (marked
//! as cached) without retrieval or generation. Kept in the library folder
//! (`answer-cache.jsonl`), since answers quote its documents.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::answer::Answer;
use crate::error::Result;
use crate::store::sealed::LibraryFiles;

/// Cosine similarity above which two questions count as the same question
/// (when their numbers also agree).
pub const NEAR_IDENTICAL: f32 = 0.97;

/// Entries kept at most; the oldest go first.
const CAPACITY: usize = 1000;

#[derive(Clone, Serialize, Deserialize)]
struct Entry {
    normalized: String,
    vector: Vec<f32>,
    content_version: String,
    scope: String,
    answer: Answer,
}

/// The answer cache of one library.
pub struct AnswerCache {
    path: PathBuf,
    files: LibraryFiles,
    entries: Vec<Entry>,
}

/// Lowercase words of `q` without punctuation: what "the same question" compares.
pub fn normalize_question(q: &str) -> String {
    q.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn numbers(q: &str) -> Vec<String> {
    q.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

impl AnswerCache {
    /// Open the cache of the library in `library_dir`, whose files are
    /// written as `files` says ([`crate::Library::files`]). Unreadable lines
    /// are dropped; an unreadable file is an empty cache.
    pub fn open(library_dir: &Path, files: LibraryFiles) -> Self {
        let path = library_dir.join("answer-cache.jsonl");
        let entries = files
            .read_lines(&path)
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| serde_json::from_slice(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        AnswerCache {
            path,
            files,
            entries,
        }
    }

    /// The cached answer to `question` (embedded as `vector`) for this library
    /// content and scope (filters, model), if any.
    pub fn lookup(
        &self,
        question: &str,
        vector: &[f32],
        content_version: &str,
        scope: &str,
    ) -> Option<Answer> {
        let norm = normalize_question(question);
        let nums = numbers(question);
        self.entries
            .iter()
            .rev()
            .filter(|e| e.content_version == content_version && e.scope == scope)
            .find(|e| {
                e.normalized == norm
                    || (numbers(&e.normalized) == nums
                        && e.vector.len() == vector.len()
                        && e.vector.iter().zip(vector).map(|(a, b)| a * b).sum::<f32>()
                            >= NEAR_IDENTICAL)
            })
            .map(|e| e.answer.clone())
    }

    /// Remember an answer.
    pub fn insert(
        &mut self,
        question: &str,
        vector: Vec<f32>,
        content_version: &str,
        scope: &str,
        answer: &Answer,
    ) -> Result<()> {
        let entry = Entry {
            normalized: normalize_question(question),
            vector,
            content_version: content_version.to_string(),
            scope: scope.to_string(),
            answer: answer.clone(),
        };
        // Entries for older content can never match again.
        let stale = self
            .entries
            .iter()
            .any(|e| e.content_version != content_version);
        self.entries.push(entry);
        if stale || self.entries.len() > CAPACITY {
            self.entries
                .retain(|e| e.content_version == content_version);
            let excess = self.entries.len().saturating_sub(CAPACITY);
            self.entries.drain(..excess);
            let lines = self
                .entries
                .iter()
                .map(serde_json::to_vec)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            self.files
                .write_lines(&self.path, lines.iter().map(Vec::as_slice))?;
        } else {
            let line = serde_json::to_vec(self.entries.last().expect("just pushed"))?;
            self.files.append_line(&self.path, &line)?;
        }
        Ok(())
    }

    /// Number of cached answers.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::{AnswerTimings, Route};

    fn answer(text: &str) -> Answer {
        Answer {
            query: "q".into(),
            answer: text.into(),
            sources: Vec::new(),
            cited: Vec::new(),
            route: Route {
                target: "local".into(),
                reason: "test".into(),
                model: None,
                task: None,
                provider: None,
            },
            timings: AnswerTimings::default(),
            sent: None,
            support: Default::default(),
        }
    }

    #[test]
    fn same_question_same_content_hits_and_changes_miss() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AnswerCache::open(dir.path(), LibraryFiles::default());
        let v = vec![1.0, 0.0];
        c.insert("Who won in 2015?", v.clone(), "v1", "", &answer("A"))
            .unwrap();
        // Same words, other punctuation and case; survives a reopen.
        let c = AnswerCache::open(dir.path(), LibraryFiles::default());
        assert_eq!(
            c.lookup("who WON in 2015", &[0.0, 1.0], "v1", "")
                .unwrap()
                .answer,
            "A"
        );
        // A near-identical vector hits only if the numbers agree.
        assert!(c
            .lookup("Who was the winner in 2015?", &[0.99, 0.1], "v1", "")
            .is_some());
        assert!(c
            .lookup("Who won in 2016?", &[0.999, 0.01], "v1", "")
            .is_none());
        // Changed library content or another scope: miss.
        assert!(c.lookup("Who won in 2015?", &v, "v2", "").is_none());
        assert!(c
            .lookup("Who won in 2015?", &v, "v1", "prefix=/x")
            .is_none());
    }

    #[test]
    fn entries_for_old_content_are_dropped_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = AnswerCache::open(dir.path(), LibraryFiles::default());
        c.insert("a", vec![1.0], "v1", "", &answer("A")).unwrap();
        c.insert("b", vec![1.0], "v2", "", &answer("B")).unwrap();
        assert_eq!(
            AnswerCache::open(dir.path(), LibraryFiles::default()).len(),
            1
        );
    }
}

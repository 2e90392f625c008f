//! Which pages of the library's documents were read by OCR, and how
//! confidently: `scanned-pages.json` in the library folder, so that search
//! results and citations can say "scanned page, OCR 87%".
//!
//! It is written by the keyword batch that indexes or removes a document,
//! inside that batch's journal (a crash rolls the batch back and the
//! documents are indexed again, rewriting their entries). Readers load it
//! again when the file changes, so a server sees what another process
//! indexed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::Result;
use crate::store::sealed::LibraryFiles;

const FILE: &str = "scanned-pages.json";

/// Pages read by OCR: document id → (page, mean confidence 0–100).
type Pages = BTreeMap<String, Vec<(u32, f32)>>;

/// The library's record of scanned pages.
#[derive(Debug)]
pub struct ScannedPages {
    path: PathBuf,
    files: LibraryFiles,
    loaded: Mutex<(Option<SystemTime>, Pages)>,
}

impl ScannedPages {
    /// The record of the library at `dir` (empty when there is none).
    pub fn open(dir: &Path, files: LibraryFiles) -> ScannedPages {
        let pages = ScannedPages {
            path: dir.join(FILE),
            files,
            loaded: Mutex::new((None, Pages::new())),
        };
        pages.refresh();
        pages
    }

    /// Read the file again if it changed since it was read.
    fn refresh(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.0 == modified && modified.is_some() {
            return;
        }
        let pages = match self.files.read(&self.path) {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is unreadable ({e}); scanned pages are not labelled",
                    self.path.display()
                );
                Pages::new()
            }),
            Ok(None) => Pages::new(),
            Err(e) => {
                tracing::warn!("{e}; scanned pages are not labelled");
                Pages::new()
            }
        };
        *loaded = (modified, pages);
    }

    /// The OCR confidence of `page` of the document `doc_id`, when OCR read it.
    pub fn confidence(&self, doc_id: &str, page: Option<u32>) -> Option<f32> {
        let page = page?;
        self.refresh();
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded
            .1
            .get(doc_id)?
            .iter()
            .find(|(p, _)| *p == page)
            .map(|(_, c)| *c)
    }

    /// Whether OCR read any page of the document `doc_id`.
    pub fn has(&self, doc_id: &str) -> bool {
        self.refresh();
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded.1.contains_key(doc_id)
    }

    /// Scanned pages in the library.
    pub fn count(&self) -> usize {
        self.refresh();
        let loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        loaded.1.values().map(Vec::len).sum()
    }

    /// Forget the pages of `touched` documents and record `pages` (the
    /// caller holds the write lock).
    pub fn replace(&self, touched: &[String], pages: Vec<(String, Vec<(u32, f32)>)>) -> Result<()> {
        self.refresh();
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let before = loaded.1.len();
        let had_any = touched.iter().any(|id| loaded.1.contains_key(id));
        for id in touched {
            loaded.1.remove(id);
        }
        let adding = pages.iter().any(|(_, p)| !p.is_empty());
        for (id, p) in pages.into_iter().filter(|(_, p)| !p.is_empty()) {
            loaded.1.insert(id, p);
        }
        if !had_any && !adding && before == loaded.1.len() {
            return Ok(());
        }
        let bytes = serde_json::to_vec(&loaded.1)?;
        self.files.write(&self.path, &bytes)?;
        loaded.0 = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_recorded_replaced_and_seen_by_another_reader() {
        let dir = tempfile::tempdir().unwrap();
        let writer = ScannedPages::open(dir.path(), LibraryFiles::default());
        writer
            .replace(
                &["a".into()],
                vec![("a".into(), vec![(1, 91.0), (3, 62.5)])],
            )
            .unwrap();
        let reader = ScannedPages::open(dir.path(), LibraryFiles::default());
        assert_eq!(reader.confidence("a", Some(3)), Some(62.5));
        assert_eq!(reader.confidence("a", Some(2)), None);
        assert_eq!(reader.confidence("a", None), None);
        // Indexed again without OCR (a text layer was added): no label.
        writer.replace(&["a".into()], Vec::new()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let again = ScannedPages::open(dir.path(), LibraryFiles::default());
        assert_eq!(again.confidence("a", Some(1)), None);
        assert_eq!(again.count(), 0);
    }
}

//! The in-flight journal that makes indexing crash-safe.
//!
//! A library's two indexes (LanceDB, tantivy) and its document rows cannot be
//! written in one transaction. Before a batch touches any of them, the ids of
//! the documents it changes are written to `inflight.json` (atomically: temp
//! file, fsync, rename); after the last write of the batch (the document rows,
//! which mark files done) the journal is removed. If the process dies between,
//! the journal names exactly the documents that may be half-written:
//!
//! - readers drop search hits of those documents while the journal exists;
//! - the next writer (or the next open that can take the write lock) deletes
//!   their chunks from both indexes and their document rows, so the next
//!   indexing run re-indexes just those files. Files of finished batches are
//!   untouched and are not embedded again.
//!
//! The embedding phase has a journal of its own, `embedding.json`: the ids of
//! the chunks whose vectors a batch is adding to the chunks table before it
//! deletes them from the pending table. A crash between the two leaves those
//! chunks in both; the next writer deletes from `pending` the ones that made
//! it into the chunks table ([`crate::store::VectorStore::settle_pending`]).
//! Readers are unaffected either way: searches read vectors only from the
//! chunks table and keywords only from tantivy.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::sealed::LibraryFiles;

const FILE: &str = "inflight.json";
const EMBEDDING: &str = "embedding.json";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Record that the documents `doc_ids` are about to change.
pub(crate) fn begin(dir: &Path, doc_ids: &[String]) -> Result<()> {
    write_ids(dir, FILE, doc_ids)
}

/// Write `ids` to `dir/name` atomically and durably (sealed in an
/// encrypted library).
fn write_ids(dir: &Path, name: &str, ids: &[String]) -> Result<()> {
    LibraryFiles::of(dir)?.write(&dir.join(name), &serde_json::to_vec(ids)?)
}

/// Record that the chunks `chunk_ids` are about to move from the pending
/// table to the chunks table.
pub(crate) fn begin_embedding(dir: &Path, chunk_ids: &[String]) -> Result<()> {
    write_ids(dir, EMBEDDING, chunk_ids)
}

/// The embedding batch is fully written.
pub(crate) fn end_embedding(dir: &Path) -> Result<()> {
    crate::fsio::remove_durably(&dir.join(EMBEDDING))
}

/// The chunks of an unfinished embedding batch, if any.
pub(crate) fn embedding_in_flight(dir: &Path) -> Result<Option<Vec<String>>> {
    read_ids(dir, &dir.join(EMBEDDING))
}

/// The batch is fully written.
pub(crate) fn end(dir: &Path) -> Result<()> {
    crate::fsio::remove_durably(&path(dir))
}

/// The documents of an unfinished batch, if any.
pub fn in_flight(dir: &Path) -> Result<Option<HashSet<String>>> {
    Ok(read_ids(dir, &path(dir))?.map(|ids| ids.into_iter().collect()))
}

fn read_ids(dir: &Path, file: &Path) -> Result<Option<Vec<String>>> {
    let Some(bytes) = LibraryFiles::of(dir)?.read(file)? else {
        return Ok(None);
    };
    // A torn journal cannot exist (it is renamed into place), but a file that
    // does not parse must not be mistaken for "nothing in flight".
    let ids: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Internal(format!(
            "{} is unreadable ({e}); remove it and re-index",
            file.display()
        ))
    })?;
    Ok(Some(ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_read_end() {
        let dir = tempfile::tempdir().unwrap();
        assert!(in_flight(dir.path()).unwrap().is_none());
        begin(dir.path(), &["a".into(), "b".into()]).unwrap();
        let set = in_flight(dir.path()).unwrap().unwrap();
        assert!(set.contains("a") && set.contains("b") && set.len() == 2);
        end(dir.path()).unwrap();
        assert!(in_flight(dir.path()).unwrap().is_none());
        end(dir.path()).unwrap();
    }

    #[test]
    fn embedding_journal_is_separate() {
        let dir = tempfile::tempdir().unwrap();
        assert!(embedding_in_flight(dir.path()).unwrap().is_none());
        begin_embedding(dir.path(), &["c1".into(), "c2".into()]).unwrap();
        assert!(in_flight(dir.path()).unwrap().is_none());
        let ids = embedding_in_flight(dir.path()).unwrap().unwrap();
        assert_eq!(ids, vec!["c1".to_string(), "c2".to_string()]);
        end_embedding(dir.path()).unwrap();
        assert!(embedding_in_flight(dir.path()).unwrap().is_none());
    }

    #[test]
    fn garbage_is_an_error_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(in_flight(dir.path()).is_err());
    }
}

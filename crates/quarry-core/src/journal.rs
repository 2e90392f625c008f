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

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const FILE: &str = "inflight.json";

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Record that the documents `doc_ids` are about to change.
pub(crate) fn begin(dir: &Path, doc_ids: &[String]) -> Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(doc_ids)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path(dir))?;
    sync_dir(dir);
    Ok(())
}

/// The batch is fully written.
pub(crate) fn end(dir: &Path) -> Result<()> {
    match std::fs::remove_file(path(dir)) {
        Ok(()) => {
            sync_dir(dir);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The documents of an unfinished batch, if any.
pub fn in_flight(dir: &Path) -> Result<Option<HashSet<String>>> {
    let bytes = match std::fs::read(path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // A torn journal cannot exist (it is renamed into place), but a file that
    // does not parse must not be mistaken for "nothing in flight".
    let ids: Vec<String> = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Internal(format!(
            "{} is unreadable ({e}); remove it and re-index",
            path(dir).display()
        ))
    })?;
    Ok(Some(ids.into_iter().collect()))
}

/// Make a rename or removal in `dir` durable (best effort; not on Windows).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
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
    fn garbage_is_an_error_not_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(in_flight(dir.path()).is_err());
    }
}

//! Results kept per document as they are produced, so an interrupted run
//! loses at most the document in progress and a re-run skips the documents
//! whose content, schema and model are unchanged. One JSON line per
//! document, appended and flushed to disk; a torn last line (a crash while
//! writing) is ignored when read.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::extract::{DocumentFields, PROMPT_VERSION};
use super::schema::Schema;
use crate::error::Result;

/// The results of one schema with one model in one library.
pub struct ResultStore {
    path: PathBuf,
    done: HashMap<String, DocumentFields>,
}

impl ResultStore {
    /// Open (or start) the results of `schema` with the model `model` (its
    /// registry id or file stem) in the library at `library_dir`.
    pub fn open(library_dir: &Path, schema: &Schema, model: &str) -> Result<Self> {
        let key = run_key(schema, model);
        let path = library_dir
            .join("tasks")
            .join(format!("extract-{key}.jsonl"));
        let mut done = HashMap::new();
        // None yet is a first run; anything else unreadable is an error,
        // not a silent redo of every document.
        let text = match fs_err::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        for line in text.lines() {
            if let Ok(d) = serde_json::from_str::<DocumentFields>(line) {
                done.insert(d.path.clone(), d);
            }
        }
        Ok(ResultStore { path, done })
    }

    /// The kept result for a document with content `hash`, unless the
    /// content changed or the document failed last time.
    pub fn fresh(&self, path: &str, hash: &str) -> Option<&DocumentFields> {
        self.done
            .get(path)
            .filter(|d| d.hash == hash && d.error.is_none())
    }

    /// Keep a document's result (durably, before returning).
    pub fn record(&mut self, fields: DocumentFields) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_string(&fields)?;
        line.push('\n');
        let mut f = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        self.done.insert(fields.path.clone(), fields);
        Ok(())
    }

    /// Do not reuse the kept result of `path` in this run (the new result,
    /// appended later, replaces it on disk).
    pub fn forget(&mut self, path: &str) {
        self.done.remove(path);
    }

    /// Where the results are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Schema, model and prompt version in one short key.
fn run_key(schema: &Schema, model: &str) -> String {
    use sha2::{Digest, Sha256};
    let text = format!("{}\n{model}\n{PROMPT_VERSION}", schema.key());
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

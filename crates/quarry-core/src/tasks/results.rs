//! Results kept per document as they are produced, so an interrupted run
//! loses at most the document in progress and a re-run skips the documents
//! whose content, schema and model are unchanged. One JSON line per
//! document, appended and flushed to disk; a torn last line (a crash while
//! writing) is ignored when read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::extract::{DocumentFields, PROMPT_VERSION};
use super::schema::Schema;
use crate::error::Result;
use crate::store::sealed::LibraryFiles;

/// A per-document result that can be kept: which document, which content,
/// and whether it failed (a failed one is done again).
pub trait Kept: Serialize + DeserializeOwned + Clone {
    /// The document's absolute path.
    fn path(&self) -> &str;
    /// sha256 of the content the result comes from.
    fn hash(&self) -> &str;
    /// Whether it failed.
    fn failed(&self) -> bool;
}

impl Kept for DocumentFields {
    fn path(&self) -> &str {
        &self.path
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn failed(&self) -> bool {
        self.error.is_some()
    }
}

/// The results of one schema with one model in one library.
pub type ResultStore = KeptResults<DocumentFields>;

/// Results of one kind, by document path, in one JSON-lines file.
pub struct KeptResults<T> {
    path: PathBuf,
    files: LibraryFiles,
    done: HashMap<String, T>,
}

impl ResultStore {
    /// Open (or start) the results of `schema` with the model `model` (its
    /// registry id or file stem) in the library at `library_dir`.
    pub fn open(library_dir: &Path, schema: &Schema, model: &str) -> Result<Self> {
        let key = short_key(&format!("{}\n{model}\n{PROMPT_VERSION}", schema.key()));
        Self::open_file(
            library_dir
                .join("tasks")
                .join(format!("extract-{key}.jsonl")),
            LibraryFiles::of(library_dir)?,
        )
    }
}

impl<T: Kept> KeptResults<T> {
    /// Open (or start) the results kept at `path`, a file of the library
    /// whose files are written as `files` says.
    pub fn open_file(path: PathBuf, files: LibraryFiles) -> Result<Self> {
        let mut done = HashMap::new();
        // None yet is a first run; anything else unreadable is an error,
        // not a silent redo of every document.
        for line in files.read_lines(&path)? {
            if let Ok(d) = serde_json::from_slice::<T>(&line) {
                done.insert(d.path().to_string(), d);
            }
        }
        Ok(KeptResults { path, files, done })
    }

    /// The kept result for a document with content `hash`, unless the
    /// content changed or the document failed last time.
    pub fn fresh(&self, path: &str, hash: &str) -> Option<&T> {
        self.done
            .get(path)
            .filter(|d| d.hash() == hash && !d.failed())
    }

    /// Keep a document's result (durably, before returning).
    pub fn record(&mut self, fields: T) -> Result<()> {
        if let Some(dir) = self.path.parent() {
            fs_err::create_dir_all(dir)?;
        }
        self.files
            .append_line(&self.path, &serde_json::to_vec(&fields)?)?;
        self.done.insert(fields.path().to_string(), fields);
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

/// What a run depends on (schema, model, prompt version) in one short key.
pub fn short_key(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

//! A library: one folder holding the LanceDB tables, the tantivy index and
//! `library.json` (which embedder built it, which folders it covers).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::sealed::{format, LibraryFiles, LibraryKey, KEY_FILE};
use crate::store::{DocState, KeywordIndex, VectorStore};

pub(crate) const META: &str = "library.json";

/// How long a long-lived reader (`quarry serve`, the app, `quarry chat`) may
/// keep one [`Library`] open before opening it again: well under the hour
/// after which a writer deletes the table versions it replaced
/// ([`crate::store::OLD_VERSIONS_KEPT_MINUTES`]), and short enough that
/// another process's writes show up soon.
pub const SNAPSHOT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(5 * 60);
const FORMAT_VERSION: u32 = 1;

/// What `library.json` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LibraryMeta {
    /// Layout version.
    pub version: u32,
    /// Registry id of the embedder that made the vectors.
    pub embedder: String,
    /// Vector dimension.
    pub dim: usize,
    /// Folders (or files) the user added, absolute.
    pub folders: Vec<PathBuf>,
    /// The library's privacy settings.
    #[serde(default)]
    pub privacy: crate::store::privacy::LibraryPrivacy,
    /// The LanceDB table holding the chunks and their vectors.
    #[serde(default = "default_chunks_table")]
    pub chunks_table: String,
    /// Chunk tables an embedder switch replaced, dropped by the next writer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_tables: Vec<String>,
    /// Chunks the approximate vector index was last trained on (it is
    /// trained again when the table has grown to four times that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ann_rows: Option<usize>,
}

fn default_chunks_table() -> String {
    "chunks".into()
}

/// What [`Library::check`] found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Consistency {
    /// Whether everything agrees.
    pub consistent: bool,
    /// Document rows.
    pub documents: usize,
    /// Chunks, with vectors or waiting for them.
    pub chunks: usize,
    /// Of those, chunks waiting for their vectors (searchable by keyword).
    pub pending_embeddings: usize,
    /// Chunks in the keyword index.
    pub keyword_chunks: u64,
    /// Chunks whose document is missing or not marked indexed.
    pub orphan_chunks: usize,
    /// Documents whose chunk counts disagree, described.
    pub mismatched_documents: Vec<String>,
    /// Documents of an unfinished batch (a live writer's, or a crash's not yet rolled back).
    pub in_flight: usize,
    /// For an encrypted library: every file opened with the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::store::sealed::SealReport>,
}

/// An open library.
pub struct Library {
    pub(crate) dir: PathBuf,
    pub(crate) meta: LibraryMeta,
    pub(crate) vectors: VectorStore,
    pub(crate) keywords: KeywordIndex,
    /// Pages read by OCR.
    pub(crate) scans: crate::store::scans::ScannedPages,
    /// How the library's own files are written (sealed when it is encrypted).
    pub(crate) files: LibraryFiles,
    /// When this handle was opened (see [`Library::reopen_if_stale`]).
    opened: std::time::Instant,
}

/// Held while a process writes to a library; a second writer is refused with
/// [`Error::Locked`] instead of interleaving its writes. Released on drop (and
/// by the OS if the process dies).
#[derive(Debug)]
pub struct WriteLock {
    _file: std::fs::File,
}

/// Summary for `quarry status`.
#[derive(ts_rs::TS, Debug, Clone, Serialize)]
pub struct LibraryStatus {
    /// The library folder.
    pub library: PathBuf,
    /// Folders it covers.
    pub folders: Vec<PathBuf>,
    /// Documents with searchable chunks.
    pub documents: usize,
    /// Documents whose extraction failed.
    pub failed: usize,
    /// Files recorded as not documents (binary content).
    pub skipped: usize,
    /// Chunks, with vectors or waiting for them.
    pub chunks: usize,
    /// Of those, chunks waiting for their vectors: searchable by keyword now,
    /// by meaning once the embedding phase of indexing reaches them.
    pub pending_embeddings: usize,
    /// Chunks in the keyword index (equal to `chunks` when consistent).
    pub keyword_chunks: u64,
    /// Embedder id.
    pub embedder: String,
    /// Vector dimension.
    pub dim: usize,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// Failed documents and why.
    pub failures: Vec<(String, String)>,
    /// Each folder's share of the library.
    pub per_folder: Vec<FolderStatus>,
}

/// One indexed folder's documents.
#[derive(ts_rs::TS, Debug, Clone, Default, Serialize)]
pub struct FolderStatus {
    /// The folder.
    pub path: PathBuf,
    /// Documents with searchable chunks.
    pub documents: usize,
    /// Their chunks.
    pub chunks: u64,
    /// Documents whose extraction failed.
    pub failed: usize,
    /// Files recorded as not documents.
    pub skipped: usize,
    /// When a document of it was last indexed (ms since the epoch).
    pub last_indexed_ms: Option<i64>,
}

/// A library whose files are sealed but whose key file is gone cannot be
/// opened as a plain one: say so instead of reading ciphertext as data.
pub(crate) fn refuse_sealed_without_key(dir: &Path, meta_path: &Path) -> Result<()> {
    let mut head = [0u8; format::HEADER_LEN];
    let sealed = std::fs::File::open(meta_path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && format::Header::parse(&head).is_ok();
    if sealed {
        return Err(Error::Sealed {
            path: dir.join(KEY_FILE),
            reason: "the library's files are encrypted but its key file is missing".into(),
        });
    }
    Ok(())
}

impl Library {
    /// Open the library at `dir` with its own embedder, or create it with the
    /// registry's default embedder when there is none yet.
    pub async fn open_with_embedder(
        dir: &Path,
        models: &crate::models::ModelStore,
    ) -> Result<(Self, crate::Embedder)> {
        let embedder_id = match Library::open(dir).await {
            Ok(lib) => lib.meta().embedder.clone(),
            Err(Error::NoLibrary(_)) => models.default_id(crate::models::ModelRole::Embedder)?,
            Err(e) => return Err(e),
        };
        let embedder = crate::embed::Embedder::from_store(models, &embedder_id)?;
        let library = Library::open_or_create(dir, embedder.id(), embedder.dim()).await?;
        Ok((library, embedder))
    }

    /// Open an existing library.
    pub async fn open(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META);
        if !meta_path.exists() {
            return Err(Error::NoLibrary(dir.to_path_buf()));
        }
        let files = LibraryFiles::of(dir)?;
        if !files.is_sealed() {
            refuse_sealed_without_key(dir, &meta_path)?;
        }
        let bytes = files
            .read(&meta_path)?
            .ok_or(Error::NoLibrary(dir.to_path_buf()))?;
        let meta: LibraryMeta = serde_json::from_slice(&bytes)?;
        if meta.version > FORMAT_VERSION {
            return Err(Error::InvalidInput(format!(
                "library {} was written by a newer Quarry (format {})",
                dir.display(),
                meta.version
            )));
        }
        Self::open_with(dir, meta).await
    }

    /// Open a library, creating it for `embedder` (of `dim` dimensions) if absent.
    /// An existing library built with another embedder is an error.
    pub async fn open_or_create(dir: &Path, embedder: &str, dim: usize) -> Result<Self> {
        if dir.join(META).exists() {
            let lib = Self::open(dir).await?;
            if lib.meta.embedder != embedder {
                return Err(Error::EmbedderMismatch {
                    library: lib.meta.embedder.clone(),
                    requested: embedder.to_string(),
                });
            }
            return Ok(lib);
        }
        fs_err::create_dir_all(dir)?;
        let meta = LibraryMeta {
            version: FORMAT_VERSION,
            embedder: embedder.to_string(),
            dim,
            folders: Vec::new(),
            privacy: Default::default(),
            chunks_table: default_chunks_table(),
            retired_tables: Vec::new(),
            ann_rows: None,
        };
        let lib = Self::open_with(dir, meta).await?;
        lib.save_meta()?;
        Ok(lib)
    }

    /// Open the library again when this handle is older than
    /// [`SNAPSHOT_MAX_AGE`], for readers that live long (`quarry watch`,
    /// `quarry chat`): another process may have written it since, and
    /// deleted the versions this handle reads. On failure the old handle
    /// stays, and the error is returned for the caller to report.
    pub async fn reopen_if_stale(&mut self) -> Result<()> {
        if self.opened.elapsed() > SNAPSHOT_MAX_AGE {
            *self = Library::open(&self.dir.clone()).await?;
        }
        Ok(())
    }

    async fn open_with(dir: &Path, meta: LibraryMeta) -> Result<Self> {
        let dir = dir.canonicalize().map_err(|e| Error::BadPath {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let key = LibraryKey::for_library(&dir)?;
        let files = LibraryFiles::with_key(key.clone());
        let vectors = VectorStore::open_sealed_dir(
            &dir.join("lance"),
            meta.dim,
            &meta.chunks_table,
            key.as_ref(),
        )
        .await?;
        let keywords = KeywordIndex::open_sealed(&dir.join("tantivy"), key.as_ref())?;
        let scans = crate::store::scans::ScannedPages::open(&dir, files.clone());
        let lib = Library {
            dir,
            meta,
            vectors,
            keywords,
            scans,
            files,
            opened: std::time::Instant::now(),
        };
        // A batch left unfinished by a crash is rolled back as soon as no live
        // writer holds the library (a live one finishes or rolls back itself).
        if crate::store::journal::in_flight(&lib.dir)?.is_some()
            || crate::store::journal::embedding_in_flight(&lib.dir)?.is_some()
        {
            if let Ok(_lock) = lib.lock_for_writing() {
                lib.recover().await?;
            }
        }
        Ok(lib)
    }

    /// Roll back the batch named by the in-flight journal, if any: delete its
    /// documents' chunks from both indexes and their rows, so the next indexing
    /// run re-indexes those files. Settle an embedding batch a crash left
    /// half-moved (its chunks stay embedded or stay pending, not both). The
    /// caller holds the write lock. Returns the number of documents rolled back.
    pub(crate) async fn recover(&self) -> Result<usize> {
        if let Some(chunk_ids) = crate::store::journal::embedding_in_flight(&self.dir)? {
            let settled = self.vectors.settle_pending(&chunk_ids).await?;
            crate::store::journal::end_embedding(&self.dir)?;
            tracing::warn!(
                chunks = chunk_ids.len(),
                settled,
                "settled an embedding batch left unfinished by a crash"
            );
        }
        let Some(ids) = crate::store::journal::in_flight(&self.dir)? else {
            return Ok(0);
        };
        let ids: Vec<String> = ids.into_iter().collect();
        self.vectors.delete_chunks_of(&ids).await?;
        let mut writer = self.keywords.writer()?;
        for id in &ids {
            self.keywords.delete_document(&writer, id);
        }
        writer.commit()?;
        drop(writer);
        self.vectors.delete_documents(&ids).await?;
        self.keywords.reload()?;
        crate::store::journal::end(&self.dir)?;
        tracing::warn!(
            documents = ids.len(),
            "rolled back an indexing batch left unfinished by a crash"
        );
        Ok(ids.len())
    }

    /// Check that the two indexes and the document rows agree: every chunk
    /// belongs to an indexed document, every indexed document has exactly its
    /// recorded number of chunks in both indexes. Documents of a batch a
    /// running indexer is writing are left out (and counted in `in_flight`).
    pub async fn check(&self) -> Result<Consistency> {
        let busy = crate::store::journal::in_flight(&self.dir)?.unwrap_or_default();
        let docs = self.vectors.documents().await?;
        let per_doc = self.vectors.chunk_counts().await?;
        let ids: Vec<&str> = docs.iter().map(|d| d.doc_id.as_str()).collect();
        let (keyword_total, keyword_counts) = self.keywords.counts_of(&ids)?;
        let busy_ids: Vec<&str> = busy.iter().map(String::as_str).collect();
        let (_, busy_counts) = self.keywords.counts_of(&busy_ids)?;
        let mut c = Consistency {
            documents: docs.len(),
            chunks: per_doc.values().sum(),
            pending_embeddings: self.vectors.count_pending().await?,
            keyword_chunks: keyword_total as u64,
            in_flight: busy.len(),
            ..Default::default()
        };
        let known: std::collections::HashMap<&str, &crate::store::DocumentRecord> =
            docs.iter().map(|d| (d.doc_id.as_str(), d)).collect();
        for (doc, n) in &per_doc {
            if busy.contains(doc) {
                continue;
            }
            match known.get(doc.as_str()) {
                Some(d) if d.state == crate::store::DocState::Indexed => {}
                _ => c.orphan_chunks += n,
            }
        }
        let mut keyword_accounted = 0usize;
        for (d, keyword) in docs.iter().zip(&keyword_counts) {
            if busy.contains(&d.doc_id) {
                continue;
            }
            keyword_accounted += keyword;
            let want = if d.state == crate::store::DocState::Indexed {
                d.chunks as usize
            } else {
                0
            };
            let have = per_doc.get(&d.doc_id).copied().unwrap_or(0);
            if have != want || *keyword != want {
                c.mismatched_documents.push(format!(
                    "{}: row says {want} chunks, vectors {have}, keywords {keyword}",
                    d.path
                ));
            }
        }
        // Keyword chunks of documents that have no row at all.
        let busy_keyword: usize = busy_counts.iter().sum();
        c.orphan_chunks += keyword_total.saturating_sub(keyword_accounted + busy_keyword);
        if let Some(key) = self.files.key() {
            c.encryption = Some(crate::store::sealed::inspect(&self.dir, key)?);
        }
        c.consistent = c.orphan_chunks == 0
            && c.mismatched_documents.is_empty()
            && c.encryption.as_ref().is_none_or(|r| r.all_sealed());
        Ok(c)
    }

    /// Build the approximate vector index, or train it again, when it is due
    /// ([`crate::store::VectorStore::ensure_vector_index`]), and record the
    /// rows it was trained on. The caller holds the write lock. Returns
    /// whether it built one.
    pub(crate) async fn maintain_vector_index(&mut self) -> Result<bool> {
        match self.vectors.ensure_vector_index(self.meta.ann_rows).await? {
            Some(rows) => {
                self.meta.ann_rows = Some(rows);
                self.save_meta()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drop chunk tables a switch retired (searchers that opened the library
    /// before the switch had their time to finish). The caller holds the write lock.
    pub(crate) async fn drop_retired(&mut self) -> Result<()> {
        if self.meta.retired_tables.is_empty() {
            return Ok(());
        }
        let existing = self.vectors.chunk_tables().await?;
        for t in std::mem::take(&mut self.meta.retired_tables) {
            if t != self.meta.chunks_table && existing.contains(&t) {
                self.vectors.drop_table(&t).await?;
            }
        }
        self.save_meta()
    }

    /// Write `library.json` atomically and durably.
    pub(crate) fn save_meta(&self) -> Result<()> {
        self.files.write(
            &self.dir.join(META),
            &serde_json::to_vec_pretty(&self.meta)?,
        )
    }

    /// How this library's own files are written and read (sealed when it
    /// is encrypted).
    pub fn files(&self) -> &LibraryFiles {
        &self.files
    }

    /// Take the library's write lock, or fail at once with [`Error::Locked`].
    pub fn lock_for_writing(&self) -> Result<WriteLock> {
        write_lock(&self.dir)
    }

    /// Every document row (indexed, skipped and failed files).
    pub async fn documents(&self) -> Result<Vec<crate::store::DocumentRecord>> {
        self.vectors.documents().await
    }

    /// Every passage of the indexed document at `path`, in reading order
    /// (none when the library does not hold it).
    pub fn passages_of(&self, path: &str) -> Result<Vec<crate::store::Hit>> {
        self.keywords.chunks_in_order(path)
    }

    /// Whether OCR read any page of the document at `path`.
    pub fn has_scanned_pages(&self, path: &str) -> bool {
        self.scans.has(&crate::store::ids::doc_id(path))
    }

    /// The OCR confidence of `page` of the document at `path`, when OCR read it.
    pub fn ocr_confidence(&self, path: &str, page: Option<u32>) -> Option<f32> {
        self.scans
            .confidence(&crate::store::ids::doc_id(path), page)
    }

    /// The passage with id `id` (a search hit's `chunk_id`), when the library holds it.
    pub fn passage(&self, id: &str) -> Result<Option<crate::store::Hit>> {
        self.keywords.chunk_by_id(id)
    }

    /// Every chunk that has its vector (benchmarks, re-embedding).
    pub async fn chunk_records(&self) -> Result<Vec<crate::store::ChunkRecord>> {
        self.vectors.chunk_records(None).await
    }

    /// Chunks waiting for their vectors (searchable by keyword only).
    pub async fn pending_embeddings(&self) -> Result<usize> {
        self.vectors.count_pending().await
    }

    /// A fingerprint of the library's content: it changes whenever a document
    /// is indexed, changed or removed (the answer cache is valid for one).
    pub async fn content_version(&self) -> Result<String> {
        let (chunks, documents) = self.vectors.versions().await?;
        Ok(format!(
            "{chunks}.{documents}.{}",
            self.keywords.num_chunks()
        ))
    }

    /// The library folder (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its metadata.
    pub fn meta(&self) -> &LibraryMeta {
        &self.meta
    }

    /// Change the library's privacy settings (saved at once). Takes the
    /// write lock, so it fails with [`Error::Locked`] while another process indexes.
    pub fn set_privacy(&mut self, privacy: crate::store::privacy::LibraryPrivacy) -> Result<()> {
        let _lock = self.lock_for_writing()?;
        self.meta.privacy = privacy;
        self.save_meta()
    }

    pub(crate) fn add_folder(&mut self, folder: &Path) -> Result<()> {
        if !self.meta.folders.iter().any(|f| f == folder) {
            self.meta.folders.push(folder.to_path_buf());
            self.save_meta()?;
        }
        Ok(())
    }

    /// Counts, size and failures.
    pub async fn status(&self) -> Result<LibraryStatus> {
        let docs = self.vectors.documents().await?;
        let pending = self.vectors.count_pending().await?;
        let failures: Vec<(String, String)> = docs
            .iter()
            .filter(|d| d.state == DocState::Failed)
            .map(|d| (d.path.clone(), d.error.clone().unwrap_or_default()))
            .collect();
        let per_folder = self
            .meta
            .folders
            .iter()
            .map(|folder| {
                let mut f = FolderStatus {
                    path: folder.clone(),
                    ..Default::default()
                };
                for d in docs
                    .iter()
                    .filter(|d| Path::new(&d.root) == folder.as_path())
                {
                    match d.state {
                        DocState::Indexed => f.documents += 1,
                        DocState::Failed => f.failed += 1,
                        DocState::Skipped => f.skipped += 1,
                    }
                    f.chunks += u64::from(d.chunks);
                    f.last_indexed_ms = f.last_indexed_ms.max(Some(d.indexed_at_ms));
                }
                f
            })
            .collect();
        Ok(LibraryStatus {
            per_folder,
            library: self.dir.clone(),
            folders: self.meta.folders.clone(),
            documents: docs.iter().filter(|d| d.state == DocState::Indexed).count(),
            failed: failures.len(),
            skipped: docs.iter().filter(|d| d.state == DocState::Skipped).count(),
            chunks: self.vectors.count_chunks().await? + pending,
            pending_embeddings: pending,
            keyword_chunks: self.keywords.num_chunks(),
            embedder: self.meta.embedder.clone(),
            dim: self.meta.dim,
            size_bytes: dir_size(&self.dir),
            failures,
        })
    }
}

/// Take the write lock of the library in `dir` without opening it, or fail
/// at once with [`Error::Locked`].
pub fn write_lock(dir: &Path) -> Result<WriteLock> {
    let path = dir.join(".write.lock");
    let file = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?
        .into_parts()
        .0;
    match file.try_lock() {
        Ok(()) => Ok(WriteLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::from(e)),
    }
}

/// Read a library's `library.json` as it is on disk now.
pub fn read_meta(dir: &Path) -> Result<LibraryMeta> {
    let bytes = LibraryFiles::of(dir)?
        .read(&dir.join(META))?
        .ok_or_else(|| Error::NoLibrary(dir.to_path_buf()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Bytes of the files under `dir`.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_writer_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let lib = Library::open_or_create(tmp.path(), "test-embedder", 4)
            .await
            .unwrap();
        let held = lib.lock_for_writing().unwrap();
        let other = Library::open(tmp.path()).await.unwrap();
        let err = other.lock_for_writing().unwrap_err();
        assert!(matches!(err, Error::Locked(_)), "{err}");
        assert!(err.to_string().contains("being indexed by another process"));
        drop(held);
        assert!(other.lock_for_writing().is_ok());
    }
}

//! Indexing: walk → extract → chunk → store, then embed, incrementally.
//!
//! A run has two phases. The keyword phase reads, extracts and chunks every
//! new or changed file and writes the chunks to the keyword index and to the
//! `pending` table: minutes for a gigabyte of text, after which everything is
//! searchable by keyword. The embedding phase then gives pending chunks their
//! vectors, oldest first, in batches that move them to the chunks table, so
//! meaning search fills in behind. Stopping (Ctrl-C, a crash) in either phase
//! keeps what was written; the next run carries on where it stopped.
//!
//! A file whose size and modification time are unchanged is not read again; a
//! file whose content hash is unchanged is not re-embedded; a changed file
//! replaces only its own chunks; files gone from an indexed folder lose theirs.
//! Keyword-phase batches write chunks (LanceDB, then tantivy) first, then the
//! document rows that mark them done.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::chunk::{Chunker, ChunkerConfig};
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::extract::{extract_bytes, ExtractError, ExtractLimits};
use crate::library::Library;
use crate::store::{ChunkRecord, DocState, DocumentRecord};
use crate::walk::{walk, Candidate, Skipped, WalkOptions};

/// Options of an indexing run.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Walking (ignore rules, size cap).
    pub walk: WalkOptions,
    /// Extraction limits.
    pub limits: ExtractLimits,
    /// Chunk sizes; `max_tokens` is capped to what the embedder accepts.
    pub chunker: ChunkerConfig,
    /// Keyword phase: write to the indexes after about this many chunks.
    pub flush_chunks: usize,
    /// Embedding phase: chunks embedded per write.
    pub embed_batch: usize,
    /// Run the embedding phase. Without it the run leaves new chunks
    /// searchable by keyword only; the next run with it embeds them.
    pub embed: bool,
    /// Set to stop the run early: the current batch is finished and written,
    /// the files (and chunks) not reached are left for the next run.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Set to end the embedding phase early without calling the run stopped
    /// (the watch loop yields to new changes this way, then carries on).
    pub pause: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            walk: WalkOptions::default(),
            limits: ExtractLimits::default(),
            chunker: ChunkerConfig::default(),
            flush_chunks: 2048,
            embed_batch: 1024,
            embed: true,
            cancel: None,
            pause: None,
        }
    }
}

impl IndexOptions {
    fn cancelled(&self) -> bool {
        is_set(&self.cancel)
    }

    /// Whether the embedding phase should end now (stopped or paused).
    fn embedding_interrupted(&self) -> bool {
        is_set(&self.cancel) || is_set(&self.pause)
    }
}

fn is_set(flag: &Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) -> bool {
    flag.as_ref()
        .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
}

/// Progress of an indexing run.
#[derive(Debug, Clone)]
pub enum IndexEvent {
    /// The walk finished: `to_process` files are new or changed.
    Planned {
        /// Files found.
        found: usize,
        /// Files that need work.
        to_process: usize,
        /// Bytes of the files that need work.
        bytes: u64,
        /// Documents that will be removed.
        to_remove: usize,
    },
    /// A file was processed (indexed, unchanged by content, or failed).
    FileDone {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// Chunks it produced.
        chunks: usize,
    },
    /// A keyword-phase batch was written to the indexes.
    Flushed {
        /// Chunks written so far.
        chunks_total: usize,
    },
    /// The keyword phase is done: every file indexed so far is searchable by
    /// keyword. The embedding phase starts on `pending` chunks (when it runs).
    KeywordsReady {
        /// Chunks in the library waiting for their vectors.
        pending: usize,
    },
    /// Chunks were embedded (not yet written).
    Embedded {
        /// How many.
        chunks: usize,
    },
    /// An embedding batch was written: those chunks are searchable by meaning.
    VectorsFlushed {
        /// Chunks embedded by this run so far.
        embedded: usize,
        /// Chunks still waiting.
        pending: usize,
    },
}

/// What an indexing run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexReport {
    /// Files indexed (new or changed), with their chunk counts.
    pub indexed: Vec<(PathBuf, usize)>,
    /// Files left as they were.
    pub unchanged: usize,
    /// Files passed over (ignored type, too large, unreadable), with reasons.
    pub skipped: Vec<Skipped>,
    /// Files that could not be extracted, with reasons.
    pub failed: Vec<Skipped>,
    /// Files indexed only in part (their text passed the size limit), with reasons.
    pub truncated: Vec<Skipped>,
    /// Files removed from the library because they are gone.
    pub removed: Vec<PathBuf>,
    /// Chunks written (by the keyword phase).
    pub chunks: usize,
    /// Chunks this run gave vectors to (the embedding phase).
    pub embedded: usize,
    /// Chunks left waiting for vectors after the run (searchable by keyword):
    /// the run was stopped, or ran without its embedding phase.
    pub pending_embeddings: usize,
    /// Bytes of files read.
    pub bytes: u64,
    /// Whether this run built the approximate vector index (the library
    /// crossed `store::ANN_MIN_ROWS` chunks).
    pub vector_index_built: bool,
    /// The run was stopped early; `not_reached` files and the
    /// `pending_embeddings` are left for the next run.
    pub cancelled: bool,
    /// Files the run did not get to (when cancelled).
    pub not_reached: usize,
    /// Wall time.
    #[serde(serialize_with = "ser_secs")]
    pub elapsed: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex::encode(&h.finalize()[..16])
}

/// "64 MiB", "512 KiB", "100 bytes".
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 {
        format!("{:.0} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

/// Id of the document at `path`.
pub fn doc_id(path: &str) -> String {
    short_hash(&[path.as_bytes()])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The text the embedder sees for a chunk: its heading gives context.
pub(crate) fn embedding_input(c: &ChunkRecord) -> String {
    embedding_text(c.heading.as_deref(), &c.text)
}

/// The text the embedder sees for a passage under `heading`.
pub(crate) fn embedding_text(heading: Option<&str>, text: &str) -> String {
    match heading {
        Some(h) if !text.starts_with(h) => format!("{h}\n{text}"),
        _ => text.to_string(),
    }
}

struct Pending {
    docs: Vec<DocumentRecord>,
    chunks: Vec<ChunkRecord>,
    /// Documents whose old chunks must go.
    replace: Vec<String>,
}

impl Library {
    /// Index `paths` (folders or files) into the library.
    pub async fn index(
        &mut self,
        paths: &[PathBuf],
        embedder: &Embedder,
        opts: &IndexOptions,
        on_event: &mut dyn FnMut(IndexEvent),
    ) -> Result<IndexReport> {
        let started = Instant::now();
        let _lock = self.begin_writing(embedder).await?;
        self.drop_retired().await?;
        let mut roots = Vec::new();
        for p in paths {
            let abs = p.canonicalize().map_err(|e| Error::BadPath {
                path: p.clone(),
                reason: if e.kind() == std::io::ErrorKind::NotFound {
                    "no such file or folder".into()
                } else {
                    e.to_string()
                },
            })?;
            roots.push(abs);
        }
        let mut walk_opts = opts.walk.clone();
        walk_opts.exclude.push(self.dir().to_path_buf());
        let mut report = IndexReport::default();
        let mut candidates: Vec<Candidate> = Vec::new();
        for root in &roots {
            let (files, skipped) = walk(root, &walk_opts);
            candidates.extend(files);
            report.skipped.extend(skipped);
        }
        for root in &roots {
            self.add_folder(root)?;
        }
        let existing: HashMap<String, DocumentRecord> = self
            .vectors
            .documents()
            .await?
            .into_iter()
            .map(|d| (d.path.clone(), d))
            .collect();
        let seen: HashSet<String> = candidates
            .iter()
            .map(|c| c.path.to_string_lossy().to_string())
            .collect();
        let removed: Vec<DocumentRecord> = existing
            .values()
            .filter(|d| {
                !seen.contains(&d.path) && roots.iter().any(|r| Path::new(&d.path).starts_with(r))
            })
            .cloned()
            .collect();
        let todo: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| match existing.get(c.path.to_string_lossy().as_ref()) {
                Some(d) => d.size != c.size || d.mtime_ns != c.mtime_ns,
                None => true,
            })
            .collect();
        report.unchanged = candidates.len() - todo.len();
        on_event(IndexEvent::Planned {
            found: candidates.len(),
            to_process: todo.len(),
            bytes: todo.iter().map(|c| c.size).sum(),
            to_remove: removed.len(),
        });

        if !removed.is_empty() {
            let ids: Vec<String> = removed.iter().map(|d| d.doc_id.clone()).collect();
            self.remove_documents(&ids).await?;
            report.removed = removed.iter().map(|d| PathBuf::from(&d.path)).collect();
        }

        let mut keyword_writer: Option<tantivy::IndexWriter> = None;
        let counting = embedder.counting_tokenizer();
        let mut chunker_cfg = opts.chunker;
        // Leave room for [CLS]/[SEP] and the heading line.
        chunker_cfg.max_tokens = chunker_cfg
            .max_tokens
            .min(embedder.max_tokens().saturating_sub(8).max(16));
        let chunker = Chunker::new(&counting, chunker_cfg);
        let mut pending = Pending {
            docs: Vec::new(),
            chunks: Vec::new(),
            replace: Vec::new(),
        };
        let mut writes = 0usize;
        let mut rest: &[&Candidate] = &todo;
        'groups: while !rest.is_empty() {
            if opts.cancelled() {
                report.cancelled = true;
                report.not_reached = rest.len();
                break;
            }
            // Files are read, hashed, extracted and chunked on all cores, a
            // group at a time (bounded in files and bytes, so memory stays
            // bounded); what they produced is then recorded in walk order.
            // A stop is seen by each file of the group, so it takes effect
            // within the file being read, not the whole group.
            let group = next_group(rest);
            let works: Vec<Option<std::result::Result<FileWork, String>>> = group
                .par_iter()
                .map(|cand| {
                    if opts.cancelled() {
                        return None;
                    }
                    let previous = existing
                        .get(cand.path.to_string_lossy().as_ref())
                        .map(|d| d.hash.as_str());
                    Some(prepare_file(cand, previous, opts, &chunker))
                })
                .collect();
            for (i, (cand, work)) in group.iter().zip(works).enumerate() {
                let Some(work) = work else {
                    // Stopped: this file and the ones after it are left for
                    // the next run (nothing of them was recorded).
                    report.cancelled = true;
                    report.not_reached = rest.len() - i;
                    break 'groups;
                };
                record_file(
                    cand,
                    work,
                    &existing,
                    opts,
                    &mut pending,
                    &mut report,
                    on_event,
                );
                if pending.chunks.len() >= opts.flush_chunks {
                    report.chunks += self.flush(&mut pending, &mut keyword_writer).await?;
                    writes += 1;
                    on_event(IndexEvent::Flushed {
                        chunks_total: report.chunks,
                    });
                }
            }
            rest = &rest[group.len()..];
        }
        if !pending.docs.is_empty() || !pending.replace.is_empty() {
            report.chunks += self.flush(&mut pending, &mut keyword_writer).await?;
            writes += 1;
            on_event(IndexEvent::Flushed {
                chunks_total: report.chunks,
            });
        }
        if writes > 8 || !report.removed.is_empty() {
            self.vectors.optimize().await?;
        }
        self.keywords.reload()?;
        let waiting = self.vectors.count_pending().await?;
        on_event(IndexEvent::KeywordsReady { pending: waiting });
        if opts.embed && !report.cancelled {
            self.embed_pending(embedder, opts, on_event, &mut report)
                .await?;
        }
        // Segment merges still running finish now (a stopped run leaves them:
        // the next writer starts them again).
        if let Some(writer) = keyword_writer {
            if !report.cancelled {
                writer.wait_merging_threads()?;
            }
        }
        self.finish_report(report, started).await
    }

    /// What every run ends with: the chunks still waiting for vectors, the
    /// approximate vector index brought up to date, the wall time.
    async fn finish_report(
        &mut self,
        mut report: IndexReport,
        started: Instant,
    ) -> Result<IndexReport> {
        report.pending_embeddings = self.vectors.count_pending().await?;
        report.vector_index_built |= self.maintain_vector_index().await?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Take the write lock for a run with `embedder`: roll back (or settle)
    /// what a crashed run left half-written — its files are then indexed
    /// like new ones — and refuse an embedder the library was not built with.
    async fn begin_writing(&self, embedder: &Embedder) -> Result<crate::library::WriteLock> {
        let lock = self.lock_for_writing()?;
        self.recover().await?;
        if embedder.id() != self.meta().embedder {
            return Err(Error::EmbedderMismatch {
                library: self.meta().embedder.clone(),
                requested: embedder.id().to_string(),
            });
        }
        Ok(lock)
    }

    /// The embedding phase on its own: give the chunks that wait for vectors
    /// (left by a stopped run or one without its embedding phase) their
    /// vectors, under the write lock. No folder is walked.
    pub async fn finish_embedding(
        &mut self,
        embedder: &Embedder,
        opts: &IndexOptions,
        on_event: &mut dyn FnMut(IndexEvent),
    ) -> Result<IndexReport> {
        let started = Instant::now();
        let _lock = self.begin_writing(embedder).await?;
        let mut report = IndexReport::default();
        self.embed_pending(embedder, opts, on_event, &mut report)
            .await?;
        self.finish_report(report, started).await
    }

    /// The embedding phase: give pending chunks their vectors, oldest first,
    /// `opts.embed_batch` at a time, until none are left or the run is
    /// cancelled (what is embedded by then is written). Each batch is added
    /// to the chunks table, then deleted from the pending table, under the
    /// embedding journal. The caller holds the write lock.
    pub(crate) async fn embed_pending(
        &mut self,
        embedder: &Embedder,
        opts: &IndexOptions,
        on_event: &mut dyn FnMut(IndexEvent),
        report: &mut IndexReport,
    ) -> Result<()> {
        let (mut since_optimize, mut writes) = (0usize, 0usize);
        loop {
            if opts.embedding_interrupted() {
                report.cancelled |= opts.cancelled();
                break;
            }
            let mut batch = self
                .vectors
                .pending_records(Some(opts.embed_batch.max(1)))
                .await?;
            if batch.is_empty() {
                break;
            }
            let t_embed = Instant::now();
            let mut done = 0;
            while done < batch.len() {
                // Ctrl-C (or a change to index first) is answered within one
                // small group of chunks.
                if done > 0 && opts.embedding_interrupted() {
                    break;
                }
                let end = (done + 64).min(batch.len());
                let part = &mut batch[done..end];
                let inputs: Vec<String> = part.iter().map(embedding_input).collect();
                let vectors = embedder.embed_documents(&inputs)?;
                for (c, v) in part.iter_mut().zip(vectors) {
                    c.vector = v;
                }
                done += part.len();
                on_event(IndexEvent::Embedded { chunks: part.len() });
                // Let a caller's other futures (a stop signal) be polled.
                tokio::task::yield_now().await;
            }
            batch.truncate(done);
            let embed_time = t_embed.elapsed();
            let t_write = Instant::now();
            let ids: Vec<String> = batch.iter().map(|c| c.id.clone()).collect();
            crate::journal::begin_embedding(self.dir(), &ids)?;
            self.vectors.add_chunks(&batch).await?;
            let add_time = t_write.elapsed();
            crate::failpoint::hit("embed.after-vectors");
            self.vectors.delete_pending_ids(&ids).await?;
            crate::journal::end_embedding(self.dir())?;
            tracing::debug!(
                chunks = batch.len(),
                embed_s = embed_time.as_secs_f64(),
                add_s = add_time.as_secs_f64(),
                write_s = t_write.elapsed().as_secs_f64(),
                "embedding batch written"
            );
            report.embedded += batch.len();
            since_optimize += batch.len();
            let waiting = self.vectors.count_pending().await?;
            on_event(IndexEvent::VectorsFlushed {
                embedded: report.embedded,
                pending: waiting,
            });
            // A library that grows past the exact-scan size gets its
            // approximate index now, not only when the whole phase ends;
            // later batches are folded in by the periodic optimize.
            report.vector_index_built |= self.maintain_vector_index().await?;
            writes += 1;
            let rows = self.vectors.count_chunks().await?;
            if since_optimize >= (rows / 10).max(20_000) {
                self.vectors.optimize().await?;
                since_optimize = 0;
            }
        }
        if writes > 8 && since_optimize > 0 {
            self.vectors.optimize().await?;
        }
        Ok(())
    }

    /// Delete documents from both indexes and their rows, under the journal
    /// (a crash in between is rolled back like an indexing batch). The
    /// caller holds the write lock.
    pub(crate) async fn remove_documents(&self, ids: &[String]) -> Result<()> {
        crate::journal::begin(self.dir(), ids)?;
        self.vectors.delete_chunks_of(ids).await?;
        let mut writer = self.keywords.writer()?;
        for id in ids {
            self.keywords.delete_document(&writer, id);
        }
        writer.commit()?;
        self.vectors.delete_documents(ids).await?;
        crate::journal::end(self.dir())?;
        Ok(())
    }

    /// Remove a folder (or file) the user added, with every document under it,
    /// from both indexes. Returns the number of documents removed.
    pub async fn remove_folder(&mut self, folder: &Path) -> Result<usize> {
        let _lock = self.lock_for_writing()?;
        self.recover().await?;
        let folder = folder
            .canonicalize()
            .unwrap_or_else(|_| folder.to_path_buf());
        if !self.meta.folders.iter().any(|f| f == &folder) {
            return Err(Error::BadPath {
                path: folder.clone(),
                reason: "is not one of this library's folders".into(),
            });
        }
        // Documents under it that no other added folder covers.
        let others: Vec<PathBuf> = self
            .meta
            .folders
            .iter()
            .filter(|f| *f != &folder)
            .cloned()
            .collect();
        let ids: Vec<String> = self
            .vectors
            .documents()
            .await?
            .into_iter()
            .filter(|d| {
                let p = Path::new(&d.path);
                p.starts_with(&folder) && !others.iter().any(|o| p.starts_with(o))
            })
            .map(|d| d.doc_id)
            .collect();
        if !ids.is_empty() {
            self.remove_documents(&ids).await?;
            self.vectors.optimize().await?;
            self.keywords.reload()?;
        }
        self.meta.folders.retain(|f| f != &folder);
        self.save_meta()?;
        Ok(ids.len())
    }

    /// Write a keyword-phase batch: its chunks (waiting for vectors) to
    /// LanceDB and tantivy, then its documents.
    async fn flush(
        &mut self,
        pending: &mut Pending,
        keywords: &mut Option<tantivy::IndexWriter>,
    ) -> Result<usize> {
        let t = Instant::now();
        let chunks = std::mem::take(&mut pending.chunks);
        let replace = std::mem::take(&mut pending.replace);
        let docs = std::mem::take(&mut pending.docs);
        let mut touched: Vec<String> = docs.iter().map(|d| d.doc_id.clone()).collect();
        touched.extend(replace.iter().cloned());
        touched.sort();
        touched.dedup();
        crate::journal::begin(self.dir(), &touched)?;
        if !replace.is_empty() {
            self.vectors.delete_chunks_of(&replace).await?;
        }
        self.vectors.add_pending(&chunks).await?;
        crate::failpoint::hit("index.after-vectors");
        // One writer for the whole run: its merges go on in the background
        // between commits (a writer per batch abandoned them half done and
        // left the index to pile up small segments and stale files).
        let writer = match keywords {
            Some(w) => w,
            None => keywords.insert(self.keywords.writer()?),
        };
        for id in &replace {
            self.keywords.delete_document(writer, id);
        }
        self.keywords.add(writer, &chunks)?;
        writer.commit()?;
        crate::failpoint::hit("index.after-keywords");
        self.vectors.upsert_documents(&docs).await?;
        crate::journal::end(self.dir())?;
        tracing::debug!(
            chunks = chunks.len(),
            documents = docs.len(),
            write_s = t.elapsed().as_secs_f64(),
            "keyword batch written"
        );
        Ok(chunks.len())
    }
}

/// Files handed to the worker threads at once: at most this many...
const GROUP_FILES: usize = 64;
/// ...and at most this many bytes between them (a larger file goes alone).
const GROUP_BYTES: u64 = 32 << 20;

/// The next group of files to prepare in parallel (never empty when `rest` is not).
fn next_group<'a, 'c>(rest: &'a [&'c Candidate]) -> &'a [&'c Candidate] {
    let mut bytes = 0u64;
    let mut n = 0;
    while n < rest.len() && n < GROUP_FILES {
        bytes = bytes.saturating_add(rest[n].size);
        if n > 0 && bytes > GROUP_BYTES {
            break;
        }
        n += 1;
    }
    &rest[..n]
}

/// What reading one file produced (on a worker thread).
struct FileWork {
    /// Bytes read.
    size: u64,
    /// sha256 of the content.
    hash: String,
    outcome: Outcome,
}

enum Outcome {
    /// Same content as when it was last indexed: nothing to extract.
    Unchanged,
    /// Extracted and chunked.
    Chunked {
        truncated: bool,
        title: Option<String>,
        text_chars: u64,
        chunks: Vec<crate::chunk::Chunk>,
    },
    /// Extraction failed (or the file is not a document).
    Failed(ExtractError),
}

/// Read, hash, extract and chunk one file. `Err` is why it could not be read.
fn prepare_file(
    cand: &Candidate,
    previous_hash: Option<&str>,
    opts: &IndexOptions,
    chunker: &Chunker<'_, tokenizers::Tokenizer>,
) -> std::result::Result<FileWork, String> {
    let bytes = read_capped(&cand.path, opts.walk.max_file_bytes)?;
    let hash = hex::encode(Sha256::digest(&bytes));
    let outcome = if previous_hash == Some(hash.as_str()) {
        Outcome::Unchanged
    } else {
        match extract_bytes(&cand.path, &bytes, &opts.limits) {
            Ok(extracted) => {
                let (_, chunks) = chunker.chunk(&extracted.blocks);
                Outcome::Chunked {
                    truncated: extracted.truncated,
                    text_chars: extracted
                        .blocks
                        .iter()
                        .map(|b| b.text.chars().count() as u64)
                        .sum(),
                    title: extracted.title,
                    chunks,
                }
            }
            Err(e) => Outcome::Failed(e),
        }
    };
    Ok(FileWork {
        size: bytes.len() as u64,
        hash,
        outcome,
    })
}

/// Record what preparing one file produced: its document row and chunks go
/// to the pending batch, its fate to the report and the progress events.
fn record_file(
    cand: &Candidate,
    work: std::result::Result<FileWork, String>,
    existing: &HashMap<String, DocumentRecord>,
    opts: &IndexOptions,
    pending: &mut Pending,
    report: &mut IndexReport,
    on_event: &mut dyn FnMut(IndexEvent),
) {
    let work = match work {
        Ok(w) => w,
        Err(reason) => {
            report.skipped.push(Skipped {
                path: cand.path.clone(),
                reason,
            });
            return;
        }
    };
    let path_str = cand.path.to_string_lossy().to_string();
    let id = doc_id(&path_str);
    let previous = existing.get(&path_str);
    report.bytes += work.size;
    let mut record = DocumentRecord {
        doc_id: id.clone(),
        path: path_str.clone(),
        root: cand.root.to_string_lossy().to_string(),
        size: work.size,
        mtime_ns: cand.mtime_ns,
        hash: work.hash,
        state: DocState::Indexed,
        error: None,
        chunks: 0,
        text_chars: 0,
        indexed_at_ms: now_ms(),
    };
    let mut done = |chunks: usize| {
        on_event(IndexEvent::FileDone {
            path: cand.path.clone(),
            bytes: cand.size,
            chunks,
        })
    };
    let outcome = match (work.outcome, previous) {
        (Outcome::Unchanged, Some(prev)) => {
            // Same content (touched, copied back): keep its chunks, refresh the row.
            record.state = prev.state;
            record.error = prev.error.clone();
            record.chunks = prev.chunks;
            record.text_chars = prev.text_chars;
            report.unchanged += 1;
            done(0);
            pending.docs.push(record);
            return;
        }
        (outcome, _) => outcome,
    };
    if previous.is_some() {
        pending.replace.push(id.clone());
    }
    match outcome {
        Outcome::Chunked {
            truncated,
            title,
            text_chars,
            chunks,
        } => {
            if truncated {
                report.truncated.push(Skipped {
                    path: cand.path.clone(),
                    reason: format!(
                        "only the first {} of its text is indexed (--max-text-mb)",
                        human_bytes(opts.limits.max_text_bytes as u64)
                    ),
                });
            }
            let ext = cand
                .path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            record.chunks = chunks.len() as u32;
            record.text_chars = text_chars;
            for c in chunks {
                pending.chunks.push(ChunkRecord {
                    id: short_hash(&[
                        id.as_bytes(),
                        &(c.index as u64).to_le_bytes(),
                        c.text.as_bytes(),
                    ]),
                    doc_id: id.clone(),
                    path: path_str.clone(),
                    ext: ext.clone(),
                    index: c.index as u32,
                    title: title.clone(),
                    heading: c.heading,
                    page: c.page,
                    char_start: c.char_start as u64,
                    char_end: c.char_end as u64,
                    text: c.text,
                    vector: Vec::new(),
                });
            }
            report
                .indexed
                .push((cand.path.clone(), record.chunks as usize));
            done(record.chunks as usize);
        }
        Outcome::Failed(e) => {
            let not_a_document = matches!(e, ExtractError::Binary | ExtractError::Unsupported(_));
            record.state = if not_a_document {
                DocState::Skipped
            } else {
                DocState::Failed
            };
            record.error = Some(e.to_string());
            let entry = Skipped {
                path: cand.path.clone(),
                reason: e.to_string(),
            };
            if not_a_document {
                report.skipped.push(entry);
            } else {
                report.failed.push(entry);
            }
            done(0);
        }
        // Not reached: a file is only found unchanged against an earlier
        // version, handled above. Recorded as a document without chunks.
        Outcome::Unchanged => done(0),
    }
    pending.docs.push(record);
}

/// Read a file, refusing more than `cap` bytes (the file may have grown since
/// the walk). Errors are reasons for the report.
fn read_capped(path: &Path, cap: u64) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "disappeared before it was read".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => format!("cannot open: {e}"),
    })?;
    let mut buf = Vec::new();
    f.take(cap + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("read error: {e}"))?;
    if buf.len() as u64 > cap {
        return Err(format!("larger than the {} MiB limit", cap >> 20));
    }
    Ok(buf)
}

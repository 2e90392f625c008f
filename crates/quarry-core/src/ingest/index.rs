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
use crate::embed::embedding_text;
use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::extract::{extract_with, ExtractError, ExtractLimits};
use crate::ingest::walk::{walk, Candidate, Skipped, WalkOptions};
use crate::ocr::{OcrSettings, ScannedPage};
use crate::store::ids::{doc_id, short_hash};
use crate::store::library::Library;
use crate::store::{ChunkRecord, DocState, DocumentRecord};

/// Options of an indexing run.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Walking (ignore rules, size cap).
    pub walk: WalkOptions,
    /// Extraction limits.
    pub limits: ExtractLimits,
    /// OCR of images and scanned pages.
    pub ocr: OcrSettings,
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
            ocr: OcrSettings::default(),
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
        /// Its pages read by OCR.
        ocr_pages: usize,
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
#[derive(ts_rs::TS, Debug, Clone, Default, Serialize)]
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
    /// Scanned pages and images read by OCR and indexed.
    pub ocr_pages: usize,
    /// Scanned pages not indexed (OCR confidence too low, an image too
    /// large or in an encoding Quarry cannot decode), each with its file
    /// and "page N: why".
    pub ocr_problems: Vec<Skipped>,
    /// Files indexed this run whose text is not English (see
    /// [`crate::ingest::language`]): when most are, an English-only embedder
    /// is the wrong one and the user is told of a multilingual one.
    pub not_english: usize,
    /// Advice on the embedder when most files indexed this run are not in
    /// English and the library's embedder understands only English.
    pub embedder_advice: Option<String>,
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
    /// Wall time (seconds on the wire).
    #[serde(serialize_with = "ser_secs")]
    #[ts(type = "number")]
    pub elapsed: Duration,
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
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

struct Pending {
    docs: Vec<DocumentRecord>,
    chunks: Vec<ChunkRecord>,
    /// Documents whose old chunks must go.
    replace: Vec<String>,
    /// Documents extracted again, with their pages read by OCR (page,
    /// confidence); their old record of scanned pages goes.
    scans: Vec<(String, Vec<(u32, f32)>)>,
}

/// Index `paths` (folders or files) into the library: plan the run (what is
/// new, changed or gone), remove what is gone, then the keyword phase (every
/// file searchable by keyword), then the embedding phase (vectors).
pub async fn index(
    lib: &mut Library,
    paths: &[PathBuf],
    embedder: &Embedder,
    opts: &IndexOptions,
    on_event: &mut dyn FnMut(IndexEvent),
) -> Result<IndexReport> {
    let started = Instant::now();
    let _lock = begin_writing(lib, embedder).await?;
    lib.drop_retired().await?;
    let roots = resolve_roots(paths)?;
    let mut report = IndexReport::default();
    let plan = plan_run(lib, &roots, opts, &mut report).await?;
    let todo = plan.todo(opts);
    report.unchanged = plan.candidates.len() - todo.len();
    on_event(IndexEvent::Planned {
        found: plan.candidates.len(),
        to_process: todo.len(),
        bytes: todo.iter().map(|c| c.size).sum(),
        to_remove: plan.removed.len(),
    });
    if !plan.removed.is_empty() {
        let ids: Vec<String> = plan.removed.iter().map(|d| d.doc_id.clone()).collect();
        remove_documents(lib, &ids).await?;
        report.removed = plan
            .removed
            .iter()
            .map(|d| PathBuf::from(&d.path))
            .collect();
    }
    let keyword_writer = keyword_phase(
        lib,
        &todo,
        &plan.existing,
        embedder,
        opts,
        &mut report,
        on_event,
    )
    .await?;
    let waiting = lib.vectors.count_pending().await?;
    on_event(IndexEvent::KeywordsReady { pending: waiting });
    if opts.embed && !report.cancelled {
        embed_pending(lib, embedder, opts, on_event, &mut report).await?;
    }
    // Segment merges still running finish now (a stopped run leaves them:
    // the next writer starts them again).
    if let Some(writer) = keyword_writer {
        if !report.cancelled {
            writer.wait_merging_threads()?;
        }
    }
    report.embedder_advice = embedder_advice(&report, embedder);
    finish_report(lib, report, started).await
}

/// When most files indexed are not in English and the embedder is
/// English-only: say so, and how to switch.
fn embedder_advice(report: &IndexReport, embedder: &Embedder) -> Option<String> {
    let indexed = report.indexed.len();
    if embedder.multilingual() || report.not_english == 0 || report.not_english * 2 < indexed {
        return None;
    }
    Some(format!(
        "{} of {indexed} file(s) indexed are not in English, and {} understands English only: \
         keyword search works in any language, but meaning search will miss. A multilingual \
         embedder (about 100 languages; a query in one finds passages in another): \
         `quarry models fetch multilingual-e5-small-q4`, then `quarry reembed multilingual-e5-small-q4`.",
        report.not_english,
        embedder.id()
    ))
}

/// The folders or files to index, as absolute paths; a clear error for one
/// that does not exist.
fn resolve_roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|p| {
            p.canonicalize().map_err(|e| Error::BadPath {
                path: p.clone(),
                reason: if e.kind() == std::io::ErrorKind::NotFound {
                    "no such file or folder".into()
                } else {
                    e.to_string()
                },
            })
        })
        .collect()
}

/// What a run will do: the files found under its roots, the documents the
/// library holds, and those of them whose files are gone.
struct Plan {
    candidates: Vec<Candidate>,
    existing: HashMap<String, DocumentRecord>,
    removed: Vec<DocumentRecord>,
}

impl Plan {
    /// The files that are new, or whose size or modification time changed,
    /// and those that needed OCR when it could not run and can have it now.
    fn todo(&self, opts: &IndexOptions) -> Vec<&Candidate> {
        self.candidates
            .iter()
            .filter(
                |c| match self.existing.get(c.path.to_string_lossy().as_ref()) {
                    Some(d) => d.size != c.size || d.mtime_ns != c.mtime_ns || ocr_now(d, opts),
                    None => true,
                },
            )
            .collect()
    }
}

/// Whether a document failed for want of OCR and this run has it (Tesseract
/// installed since, or `--no-ocr` dropped): it is read again even though
/// its content did not change.
fn ocr_now(d: &DocumentRecord, opts: &IndexOptions) -> bool {
    opts.ocr.enabled
        && d.state == DocState::Failed
        && d.error
            .as_deref()
            .is_some_and(|e| e.starts_with("needs OCR"))
        && crate::ocr::check(&opts.ocr.langs).is_ok()
}

/// Walk the roots (the library's own folder excluded), record them as the
/// library's folders, and compare what is found with what is indexed.
async fn plan_run(
    lib: &mut Library,
    roots: &[PathBuf],
    opts: &IndexOptions,
    report: &mut IndexReport,
) -> Result<Plan> {
    let mut walk_opts = opts.walk.clone();
    walk_opts.exclude.push(lib.dir().to_path_buf());
    let mut candidates: Vec<Candidate> = Vec::new();
    for root in roots {
        let (files, skipped) = walk(root, &walk_opts);
        candidates.extend(files);
        report.skipped.extend(skipped);
    }
    for root in roots {
        lib.add_folder(root)?;
    }
    let existing: HashMap<String, DocumentRecord> = lib
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
    let removed = existing
        .values()
        .filter(|d| {
            !seen.contains(&d.path) && roots.iter().any(|r| Path::new(&d.path).starts_with(r))
        })
        .cloned()
        .collect();
    Ok(Plan {
        candidates,
        existing,
        removed,
    })
}

/// The chunker for `embedder`: chunks leave room for [CLS]/[SEP] and the
/// heading line.
fn chunker_for<'t>(
    counting: &'t tokenizers::Tokenizer,
    embedder: &Embedder,
    opts: &IndexOptions,
) -> Chunker<'t, tokenizers::Tokenizer> {
    let mut cfg = opts.chunker;
    cfg.max_tokens = cfg
        .max_tokens
        .min(embedder.max_tokens().saturating_sub(8).max(16));
    Chunker::new(counting, cfg)
}

/// The keyword phase: read, extract and chunk the files of `todo` and write
/// them to the keyword index and the pending table, batch by batch. Returns
/// the keyword writer, whose merges may still be running.
async fn keyword_phase(
    lib: &mut Library,
    todo: &[&Candidate],
    existing: &HashMap<String, DocumentRecord>,
    embedder: &Embedder,
    opts: &IndexOptions,
    report: &mut IndexReport,
    on_event: &mut dyn FnMut(IndexEvent),
) -> Result<Option<tantivy::IndexWriter>> {
    let mut keyword_writer: Option<tantivy::IndexWriter> = None;
    let counting = embedder.counting_tokenizer();
    let chunker = chunker_for(&counting, embedder, opts);
    let mut pending = Pending {
        docs: Vec::new(),
        chunks: Vec::new(),
        replace: Vec::new(),
        scans: Vec::new(),
    };
    let mut writes = 0usize;
    let mut rest: &[&Candidate] = todo;
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
        let works = prepare_group(group, existing, opts, &chunker);
        for (i, (cand, work)) in group.iter().zip(works).enumerate() {
            let Some(work) = work else {
                // Stopped: this file and the ones after it are left for
                // the next run (nothing of them was recorded).
                report.cancelled = true;
                report.not_reached = rest.len() - i;
                break 'groups;
            };
            record_file(cand, work, existing, opts, &mut pending, report, on_event);
            if pending.chunks.len() >= opts.flush_chunks {
                report.chunks += flush(lib, &mut pending, &mut keyword_writer).await?;
                writes += 1;
                on_event(IndexEvent::Flushed {
                    chunks_total: report.chunks,
                });
            }
        }
        rest = &rest[group.len()..];
    }
    if !pending.docs.is_empty() || !pending.replace.is_empty() {
        report.chunks += flush(lib, &mut pending, &mut keyword_writer).await?;
        writes += 1;
        on_event(IndexEvent::Flushed {
            chunks_total: report.chunks,
        });
    }
    if writes > 8 || !report.removed.is_empty() {
        lib.vectors.optimize().await?;
    }
    lib.keywords.reload()?;
    Ok(keyword_writer)
}

/// Read, hash, extract and chunk a group of files in parallel; `None` for a
/// file the run was stopped before.
fn prepare_group(
    group: &[&Candidate],
    existing: &HashMap<String, DocumentRecord>,
    opts: &IndexOptions,
    chunker: &Chunker<'_, tokenizers::Tokenizer>,
) -> Vec<Option<std::result::Result<FileWork, String>>> {
    group
        .par_iter()
        .map(|cand| {
            if opts.cancelled() {
                return None;
            }
            let previous = existing
                .get(cand.path.to_string_lossy().as_ref())
                .filter(|d| !ocr_now(d, opts))
                .map(|d| d.hash.as_str());
            match prepare_file(cand, previous, opts, chunker) {
                Ok(FileWork {
                    outcome: Outcome::Stopped,
                    ..
                }) => None,
                work => Some(work),
            }
        })
        .collect()
}

/// What every run ends with: the chunks still waiting for vectors, the
/// approximate vector index brought up to date, the wall time.
async fn finish_report(
    lib: &mut Library,
    mut report: IndexReport,
    started: Instant,
) -> Result<IndexReport> {
    report.pending_embeddings = lib.vectors.count_pending().await?;
    report.vector_index_built |= lib.maintain_vector_index().await?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Take the write lock for a run with `embedder`: roll back (or settle)
/// what a crashed run left half-written — its files are then indexed
/// like new ones — and refuse an embedder the library was not built with.
async fn begin_writing(
    lib: &Library,
    embedder: &Embedder,
) -> Result<crate::store::library::WriteLock> {
    let lock = lib.lock_for_writing()?;
    lib.recover().await?;
    if embedder.id() != lib.meta().embedder {
        return Err(Error::EmbedderMismatch {
            library: lib.meta().embedder.clone(),
            requested: embedder.id().to_string(),
        });
    }
    Ok(lock)
}

/// The embedding phase on its own: give the chunks that wait for vectors
/// (left by a stopped run or one without its embedding phase) their
/// vectors, under the write lock. No folder is walked.
pub async fn finish_embedding(
    lib: &mut Library,
    embedder: &Embedder,
    opts: &IndexOptions,
    on_event: &mut dyn FnMut(IndexEvent),
) -> Result<IndexReport> {
    let mut report = IndexReport::default();
    let started = Instant::now();
    let _lock = begin_writing(lib, embedder).await?;
    embed_pending(lib, embedder, opts, on_event, &mut report).await?;
    finish_report(lib, report, started).await
}

/// The embedding phase: give pending chunks their vectors, oldest first,
/// `opts.embed_batch` at a time, until none are left or the run is
/// cancelled (what is embedded by then is written). Each batch is added
/// to the chunks table, then deleted from the pending table, under the
/// embedding journal. The caller holds the write lock.
pub(crate) async fn embed_pending(
    lib: &mut Library,
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
        let mut batch = lib
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
        crate::store::journal::begin_embedding(lib.dir(), &ids)?;
        lib.vectors.add_chunks(&batch).await?;
        let add_time = t_write.elapsed();
        crate::failpoint::hit("embed.after-vectors");
        lib.vectors.delete_pending_ids(&ids).await?;
        crate::store::journal::end_embedding(lib.dir())?;
        tracing::debug!(
            chunks = batch.len(),
            embed_s = embed_time.as_secs_f64(),
            add_s = add_time.as_secs_f64(),
            write_s = t_write.elapsed().as_secs_f64(),
            "embedding batch written"
        );
        report.embedded += batch.len();
        since_optimize += batch.len();
        let waiting = lib.vectors.count_pending().await?;
        on_event(IndexEvent::VectorsFlushed {
            embedded: report.embedded,
            pending: waiting,
        });
        // A library that grows past the exact-scan size gets its
        // approximate index now, not only when the whole phase ends;
        // later batches are folded in by the periodic optimize.
        report.vector_index_built |= lib.maintain_vector_index().await?;
        writes += 1;
        let rows = lib.vectors.count_chunks().await?;
        if since_optimize >= (rows / 10).max(20_000) {
            lib.vectors.optimize().await?;
            since_optimize = 0;
        }
    }
    if writes > 8 && since_optimize > 0 {
        lib.vectors.optimize().await?;
    }
    Ok(())
}

/// Delete documents from both indexes and their rows, under the journal
/// (a crash in between is rolled back like an indexing batch). The
/// caller holds the write lock.
pub(crate) async fn remove_documents(lib: &Library, ids: &[String]) -> Result<()> {
    crate::store::journal::begin(lib.dir(), ids)?;
    lib.vectors.delete_chunks_of(ids).await?;
    let mut writer = lib.keywords.writer()?;
    for id in ids {
        lib.keywords.delete_document(&writer, id);
    }
    writer.commit()?;
    lib.vectors.delete_documents(ids).await?;
    lib.scans.replace(ids, Vec::new())?;
    crate::store::journal::end(lib.dir())?;
    Ok(())
}

/// Remove a folder (or file) the user added, with every document under it
/// that no other folder covers, provably ([`super::forget`]): the deletion
/// report, `None` when it held no documents.
pub async fn remove_folder(
    lib: &mut Library,
    folder: &Path,
) -> Result<Option<super::forget::ForgetReport>> {
    let _lock = lib.lock_for_writing()?;
    lib.recover().await?;
    let folder = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    if !lib.meta.folders.iter().any(|f| f == &folder) {
        return Err(Error::BadPath {
            path: folder.clone(),
            reason: "is not one of this library's folders".into(),
        });
    }
    // Documents under it that no other added folder covers.
    let others: Vec<PathBuf> = lib
        .meta
        .folders
        .iter()
        .filter(|f| *f != &folder)
        .cloned()
        .collect();
    let docs: Vec<_> = lib
        .vectors
        .documents()
        .await?
        .into_iter()
        .filter(|d| {
            let p = Path::new(&d.path);
            p.starts_with(&folder) && !others.iter().any(|o| p.starts_with(o))
        })
        .collect();
    let report = if docs.is_empty() {
        None
    } else {
        Some(super::forget::forget_documents(lib, docs, std::slice::from_ref(&folder)).await?)
    };
    lib.meta.folders.retain(|f| f != &folder);
    lib.save_meta()?;
    Ok(report)
}

/// Write a keyword-phase batch: its chunks (waiting for vectors) to
/// LanceDB and tantivy, then its documents.
async fn flush(
    lib: &mut Library,
    pending: &mut Pending,
    keywords: &mut Option<tantivy::IndexWriter>,
) -> Result<usize> {
    let t = Instant::now();
    let chunks = std::mem::take(&mut pending.chunks);
    let replace = std::mem::take(&mut pending.replace);
    let docs = std::mem::take(&mut pending.docs);
    let scans = std::mem::take(&mut pending.scans);
    let mut rescanned: Vec<String> = scans.iter().map(|(id, _)| id.clone()).collect();
    rescanned.extend(replace.iter().cloned());
    let mut touched: Vec<String> = docs.iter().map(|d| d.doc_id.clone()).collect();
    touched.extend(replace.iter().cloned());
    touched.sort();
    touched.dedup();
    crate::store::journal::begin(lib.dir(), &touched)?;
    if !replace.is_empty() {
        lib.vectors.delete_chunks_of(&replace).await?;
    }
    lib.vectors.add_pending(&chunks).await?;
    crate::failpoint::hit("index.after-vectors");
    // One writer for the whole run: its merges go on in the background
    // between commits (a writer per batch abandoned them half done and
    // left the index to pile up small segments and stale files).
    let writer = match keywords {
        Some(w) => w,
        None => keywords.insert(lib.keywords.writer()?),
    };
    for id in &replace {
        lib.keywords.delete_document(writer, id);
    }
    lib.keywords.add(writer, &chunks)?;
    writer.commit()?;
    crate::failpoint::hit("index.after-keywords");
    lib.vectors.upsert_documents(&docs).await?;
    lib.scans.replace(&rescanned, scans)?;
    crate::store::journal::end(lib.dir())?;
    tracing::debug!(
        chunks = chunks.len(),
        documents = docs.len(),
        write_s = t.elapsed().as_secs_f64(),
        "keyword batch written"
    );
    Ok(chunks.len())
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
        /// Pages read by OCR.
        scanned: Vec<ScannedPage>,
    },
    /// Extraction failed (or the file is not a document).
    Failed(ExtractError),
    /// The run was stopped while OCR read the file.
    Stopped,
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
        let ocr = OcrSettings {
            cancel: opts.cancel.clone(),
            ..opts.ocr.clone()
        };
        match extract_with(&cand.path, &bytes, &opts.limits, &ocr) {
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
                    scanned: extracted.scanned,
                }
            }
            Err(ExtractError::Stopped) => Outcome::Stopped,
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
    let mut done = |chunks: usize, ocr_pages: usize| {
        on_event(IndexEvent::FileDone {
            path: cand.path.clone(),
            bytes: cand.size,
            chunks,
            ocr_pages,
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
            done(0, 0);
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
            scanned,
        } => {
            let ocr_pages = record_scans(&id, &cand.path, scanned, pending, report);
            if truncated {
                report.truncated.push(Skipped {
                    path: cand.path.clone(),
                    reason: format!(
                        "only the first {} of its text is indexed (--max-text-mb)",
                        human_bytes(opts.limits.max_text_bytes as u64)
                    ),
                });
            }
            let texts = chunks.iter().map(|c| c.text.as_str());
            if super::language::guess(texts) == super::language::Language::Other {
                report.not_english += 1;
            }
            record.chunks = chunks.len() as u32;
            record.text_chars = text_chars;
            pending
                .chunks
                .extend(chunk_records(&record, &cand.path, title, chunks));
            report
                .indexed
                .push((cand.path.clone(), record.chunks as usize));
            done(record.chunks as usize, ocr_pages);
        }
        Outcome::Failed(e) => {
            record_failure(&mut record, &cand.path, &e, report);
            pending.scans.push((id.clone(), Vec::new()));
            done(0, 0);
        }
        // Not reached: a file is only found unchanged against an earlier
        // version (handled above), and a stopped one is not recorded.
        Outcome::Unchanged | Outcome::Stopped => done(0, 0),
    }
    pending.docs.push(record);
}

/// Note the pages of document `id` that OCR read: the indexed ones for the
/// record of scanned pages, the others (with why) for the report. Returns
/// how many were indexed.
fn record_scans(
    id: &str,
    path: &Path,
    scanned: Vec<ScannedPage>,
    pending: &mut Pending,
    report: &mut IndexReport,
) -> usize {
    let mut indexed = Vec::new();
    for page in scanned {
        match (page.problem, page.confidence) {
            (Some(why), _) => report.ocr_problems.push(Skipped {
                path: path.to_path_buf(),
                reason: format!("page {}: {why}", page.page),
            }),
            (None, Some(confidence)) => indexed.push((page.page, confidence)),
            (None, None) => {}
        }
    }
    report.ocr_pages += indexed.len();
    let n = indexed.len();
    pending.scans.push((id.to_string(), indexed));
    n
}

/// The chunk rows of a document: ids from the document, position and text.
fn chunk_records(
    doc: &DocumentRecord,
    path: &Path,
    title: Option<String>,
    chunks: Vec<crate::chunk::Chunk>,
) -> Vec<ChunkRecord> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    chunks
        .into_iter()
        .map(|c| ChunkRecord {
            id: short_hash(&[
                doc.doc_id.as_bytes(),
                &(c.index as u64).to_le_bytes(),
                c.text.as_bytes(),
            ]),
            doc_id: doc.doc_id.clone(),
            path: doc.path.clone(),
            ext: ext.clone(),
            index: c.index as u32,
            title: title.clone(),
            heading: c.heading,
            page: c.page,
            char_start: c.char_start as u64,
            char_end: c.char_end as u64,
            text: c.text,
            vector: Vec::new(),
        })
        .collect()
}

/// A file that could not be extracted: a binary or unsupported file is
/// skipped (not a document), anything else failed; both with the reason.
fn record_failure(
    record: &mut DocumentRecord,
    path: &Path,
    e: &ExtractError,
    report: &mut IndexReport,
) {
    let not_a_document = matches!(e, ExtractError::Binary | ExtractError::Unsupported(_));
    record.state = if not_a_document {
        DocState::Skipped
    } else {
        DocState::Failed
    };
    record.error = Some(e.to_string());
    let entry = Skipped {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if not_a_document {
        report.skipped.push(entry);
    } else {
        report.failed.push(entry);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(name: &str, size: u64, mtime_ns: i64) -> Candidate {
        Candidate {
            path: PathBuf::from(format!("/docs/{name}")),
            root: PathBuf::from("/docs"),
            size,
            mtime_ns,
        }
    }

    fn indexed(c: &Candidate, hash: &str, chunks: u32) -> DocumentRecord {
        let path = c.path.to_string_lossy().to_string();
        DocumentRecord {
            doc_id: doc_id(&path),
            path,
            root: "/docs".into(),
            size: c.size,
            mtime_ns: c.mtime_ns,
            hash: hash.into(),
            state: DocState::Indexed,
            error: None,
            chunks,
            text_chars: 100,
            indexed_at_ms: 1,
        }
    }

    fn plan(candidates: Vec<Candidate>, existing: Vec<DocumentRecord>) -> Plan {
        Plan {
            candidates,
            existing: existing.into_iter().map(|d| (d.path.clone(), d)).collect(),
            removed: Vec::new(),
        }
    }

    #[test]
    fn only_new_files_and_files_whose_size_or_time_changed_are_read() {
        let same = candidate("same.txt", 10, 5);
        let grown = candidate("grown.txt", 11, 5);
        let touched = candidate("touched.txt", 10, 6);
        let new = candidate("new.txt", 1, 1);
        let existing = vec![
            indexed(&same, "h", 1),
            indexed(&candidate("grown.txt", 10, 5), "h", 1),
            indexed(&candidate("touched.txt", 10, 5), "h", 1),
        ];
        let p = plan(vec![same, grown, touched, new], existing);
        let todo: Vec<String> = p
            .todo(&IndexOptions::default())
            .iter()
            .map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(todo, ["grown.txt", "touched.txt", "new.txt"]);
    }

    #[test]
    fn a_scan_that_needed_ocr_is_read_again_once_ocr_can_run() {
        let scan = candidate("scan.png", 10, 5);
        let mut failed = indexed(&scan, "h", 0);
        failed.state = DocState::Failed;
        failed.error = Some("needs OCR: an image, and OCR is off".into());
        let p = plan(vec![scan], vec![failed]);
        let mut opts = IndexOptions::default();
        // This machine has Tesseract with English (the test needs it).
        assert_eq!(p.todo(&opts).len(), 1, "OCR is on: read it");
        opts.ocr = crate::ocr::OcrSettings::off();
        assert!(p.todo(&opts).is_empty(), "OCR still off: leave it");
    }

    #[test]
    fn a_file_with_unchanged_content_keeps_its_chunks_and_is_not_replaced() {
        let c = candidate("touched.txt", 10, 6);
        let before = indexed(&candidate("touched.txt", 10, 5), "same-hash", 3);
        let existing: HashMap<_, _> = [(before.path.clone(), before)].into();
        let work = FileWork {
            size: 10,
            hash: "same-hash".into(),
            outcome: Outcome::Unchanged,
        };
        let mut pending = Pending {
            docs: Vec::new(),
            chunks: Vec::new(),
            replace: Vec::new(),
            scans: Vec::new(),
        };
        let mut report = IndexReport::default();
        let mut events = 0;
        let opts = IndexOptions::default();
        record_file(
            &c,
            Ok(work),
            &existing,
            &opts,
            &mut pending,
            &mut report,
            &mut |_| events += 1,
        );
        assert_eq!(report.unchanged, 1);
        assert!(pending.replace.is_empty(), "its chunks stay");
        assert!(pending.chunks.is_empty(), "nothing to embed again");
        assert!(
            pending.scans.is_empty(),
            "its record of scanned pages stays"
        );
        assert_eq!(pending.docs.len(), 1);
        assert_eq!(pending.docs[0].chunks, 3);
        assert_eq!(pending.docs[0].mtime_ns, 6, "the row is refreshed");
        assert_eq!(events, 1);
    }

    #[test]
    fn a_changed_or_unreadable_file_is_replaced_or_reported() {
        let c = candidate("a.pdf", 10, 6);
        let before = indexed(&candidate("a.pdf", 9, 5), "old", 3);
        let existing: HashMap<_, _> = [(before.path.clone(), before)].into();
        let mut pending = Pending {
            docs: Vec::new(),
            chunks: Vec::new(),
            replace: Vec::new(),
            scans: Vec::new(),
        };
        let mut report = IndexReport::default();
        let opts = IndexOptions::default();
        let failed = FileWork {
            size: 10,
            hash: "new".into(),
            outcome: Outcome::Failed(ExtractError::Corrupt {
                format: "PDF",
                reason: "no xref".into(),
            }),
        };
        record_file(
            &c,
            Ok(failed),
            &existing,
            &opts,
            &mut pending,
            &mut report,
            &mut |_| {},
        );
        assert_eq!(
            pending.replace,
            vec![doc_id("/docs/a.pdf")],
            "old chunks go"
        );
        assert_eq!(pending.docs[0].state, DocState::Failed);
        assert_eq!(report.failed.len(), 1);
        let gone = candidate("gone.txt", 1, 1);
        record_file(
            &gone,
            Err("disappeared before it was read".into()),
            &existing,
            &opts,
            &mut pending,
            &mut report,
            &mut |_| {},
        );
        assert_eq!(report.skipped[0].reason, "disappeared before it was read");
        assert_eq!(pending.docs.len(), 1, "nothing recorded for it");
    }

    #[test]
    fn groups_are_bounded_in_files_and_bytes_and_never_empty() {
        let small: Vec<Candidate> = (0..100)
            .map(|i| candidate(&format!("{i}"), 10, 0))
            .collect();
        let refs: Vec<&Candidate> = small.iter().collect();
        assert_eq!(next_group(&refs).len(), GROUP_FILES);
        assert_eq!(next_group(&refs[96..]).len(), 4);
        let big = [
            candidate("huge", GROUP_BYTES * 2, 0),
            candidate("next", 10, 0),
        ];
        let refs: Vec<&Candidate> = big.iter().collect();
        assert_eq!(next_group(&refs).len(), 1, "a file over the cap goes alone");
        let halves: Vec<Candidate> = (0..4)
            .map(|i| candidate(&format!("{i}"), GROUP_BYTES / 2 + 1, 0))
            .collect();
        let refs: Vec<&Candidate> = halves.iter().collect();
        assert_eq!(next_group(&refs).len(), 1, "two would pass the byte cap");
        assert!(next_group(&[]).is_empty());
    }
}

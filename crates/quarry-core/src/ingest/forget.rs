//! Forgetting documents so that it can be shown (`quarry forget`): their
//! chunks, vectors and keyword entries are removed; then everything that still
//! holds copies is rewritten — LanceDB fragments and old versions, tantivy
//! segments (merged without the deleted documents), the answer cache, kept
//! extraction and summary results — and every file of the library is searched
//! for distinctive strings of the removed text and the bytes of the removed
//! vectors. The report says what was done and what, if anything, was found.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::residue::{self, ProbeKind, Probes, Residue};
use crate::store::sealed::LibraryFiles;
use crate::store::DocumentRecord;
use crate::Library;

/// What `forget` did and found: kept as evidence.
#[derive(Debug, Clone, Serialize)]
pub struct ForgetReport {
    /// The library folder.
    pub library: PathBuf,
    /// When it started and ended (RFC 3339, UTC).
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// The documents forgotten.
    pub documents: Vec<Forgotten>,
    /// Chunks removed (with vectors or waiting for them).
    pub chunks: usize,
    /// What was rewritten or removed, in words.
    pub rewritten: Vec<String>,
    /// Text probes (runs of eight words) searched for.
    pub text_probes: usize,
    /// Vector probes (each chunk vector's leading bytes) searched for.
    pub vector_probes: usize,
    /// Files read by the check, and their bytes.
    pub files_scanned: usize,
    /// Bytes read by the check.
    pub bytes_scanned: u64,
    /// Compressed blocks decoded and searched.
    pub compressed_blocks: usize,
    /// Probes found that other documents of the library also contain.
    pub shared_with_other_documents: usize,
    /// Copies of the removed text or vectors still found; none when verified.
    pub residues: Vec<Residue>,
    /// Forgotten files still on disk inside a folder of the library: the
    /// next index of that folder would add them again.
    pub still_in_folders: Vec<String>,
    /// Probes were searched for and none was found.
    pub verified: bool,
    /// Encrypted libraries, when asked: the library's key replaced
    /// afterwards and the old one destroyed, so copies the library cannot
    /// rewrite (backups, snapshots, disk blocks) no longer open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_rotation: Option<crate::store::sealed::rekey::RekeyReport>,
}

/// One forgotten document.
#[derive(Debug, Clone, Serialize)]
pub struct Forgotten {
    /// Its path.
    pub path: String,
    /// sha256 of the content that was indexed.
    pub content_hash: String,
}

/// Forget every indexed document at or under each of `targets` (files or
/// folders; they need not exist any more), rewrite what held them, and check.
pub async fn forget(lib: &mut Library, targets: &[PathBuf]) -> Result<ForgetReport> {
    let _lock = lib.lock_for_writing()?;
    lib.recover().await?;
    let targets: Vec<PathBuf> = targets
        .iter()
        .map(|t| t.canonicalize().unwrap_or_else(|_| t.clone()))
        .collect();
    let docs = matching(lib.vectors.documents().await?, &targets)?;
    forget_documents(lib, docs, &targets).await
}

/// Forget `docs` (under the write lock, which the caller holds); folders
/// of the library among `targets` are taken out of it.
pub(crate) async fn forget_documents(
    lib: &mut Library,
    docs: Vec<DocumentRecord>,
    targets: &[PathBuf],
) -> Result<ForgetReport> {
    let started = now();
    // A table an embedder switch retired holds a copy of every passage:
    // it goes now, not at the next indexing run.
    lib.drop_retired().await?;
    let ids: Vec<String> = docs.iter().map(|d| d.doc_id.clone()).collect();
    let chunks = lib.vectors.chunks_of(&ids).await?;
    let probes = Probes::from_chunks(&chunks);

    super::index::remove_documents(lib, &ids).await?;
    let mut rewritten = vec![format!(
        "{} chunks, their vectors and keyword entries deleted",
        chunks.len()
    )];
    lib.vectors.purge().await?;
    rewritten.push(
        "LanceDB: fragments with deleted rows rewritten, old versions dropped, indexes rebuilt"
            .into(),
    );
    lib.keywords.purge()?;
    rewritten
        .push("tantivy: segments merged without the deleted chunks, unused files deleted".into());
    let paths: HashSet<String> = docs.iter().map(|d| d.path.clone()).collect();
    rewritten.extend(forget_derived(lib.dir(), &paths)?);
    let before = lib.meta.folders.len();
    lib.meta.folders.retain(|f| !targets.contains(f));
    if lib.meta.folders.len() < before {
        rewritten.push(format!(
            "{} folder(s) taken out of the library",
            before - lib.meta.folders.len()
        ));
    }
    lib.save_meta()?;
    lib.keywords.reload()?;

    let scan = residue::scan(lib.dir(), lib.files(), &probes)?;
    let (residues, shared) = drop_shared(lib, &probes, scan.residues).await?;
    let still_in_folders = docs
        .iter()
        .filter(|d| Path::new(&d.path).exists())
        .filter(|d| {
            lib.meta
                .folders
                .iter()
                .any(|f| Path::new(&d.path).starts_with(f))
        })
        .map(|d| d.path.clone())
        .collect();
    Ok(ForgetReport {
        library: lib.dir().to_path_buf(),
        started,
        finished: now(),
        documents: docs
            .iter()
            .map(|d| Forgotten {
                path: d.path.clone(),
                content_hash: d.hash.clone(),
            })
            .collect(),
        chunks: chunks.len(),
        rewritten,
        text_probes: probes.count(ProbeKind::Text),
        vector_probes: probes.count(ProbeKind::Vector),
        files_scanned: scan.files,
        bytes_scanned: scan.bytes,
        compressed_blocks: scan.frames,
        shared_with_other_documents: shared,
        verified: residues.is_empty() && !probes.is_empty(),
        key_rotation: None,
        residues,
        still_in_folders,
    })
}

impl ForgetReport {
    /// The check's outcome in one sentence.
    pub fn summary(&self) -> String {
        if self.verified {
            format!(
                "Verified: none of the library's {} files holds their text or vectors any more.",
                self.files_scanned
            )
        } else if self.residues.is_empty() {
            "Removed; too short to check for copies.".into()
        } else {
            format!(
                "Copies of their text are still in {} place(s) of the library.",
                self.residues.len()
            )
        }
    }
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The documents at or under the targets; an error naming a target that
/// matches none.
fn matching(all: Vec<DocumentRecord>, targets: &[PathBuf]) -> Result<Vec<DocumentRecord>> {
    for t in targets {
        if !all.iter().any(|d| Path::new(&d.path).starts_with(t)) {
            return Err(Error::BadPath {
                path: t.clone(),
                reason: "no indexed document is at or under it (`quarry status` lists the folders)"
                    .into(),
            });
        }
    }
    Ok(all
        .into_iter()
        .filter(|d| targets.iter().any(|t| Path::new(&d.path).starts_with(t)))
        .collect())
}

/// Remove what was derived from the documents: the answer cache (its
/// answers quote passages; every entry is for content that has now changed)
/// and their lines in kept extraction and summary results.
fn forget_derived(dir: &Path, paths: &HashSet<String>) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let cache = dir.join("answer-cache.jsonl");
    if cache.exists() {
        fs_err::remove_file(&cache)?;
        done.push("answer cache emptied".to_string());
    }
    let tasks = dir.join("tasks");
    if !tasks.is_dir() {
        return Ok(done);
    }
    let files = LibraryFiles::of(dir)?;
    let mut dropped = 0;
    for entry in fs_err::read_dir(&tasks)? {
        let file = entry?.path();
        if file.extension().is_some_and(|e| e == "jsonl") {
            dropped += drop_lines_of(&files, &file, paths)?;
        }
    }
    done.push(format!(
        "{dropped} kept extraction or summary result(s) removed"
    ));
    Ok(done)
}

/// Rewrite a JSON-lines file without the lines whose `path` is one of
/// `paths`; how many were dropped.
fn drop_lines_of(files: &LibraryFiles, file: &Path, paths: &HashSet<String>) -> Result<usize> {
    let lines = files.read_lines(file)?;
    let before = lines.len();
    let kept: Vec<&[u8]> = lines
        .iter()
        .map(Vec::as_slice)
        .filter(|line| {
            let path = serde_json::from_slice::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["path"].as_str().map(str::to_string));
            !path.is_some_and(|p| paths.contains(&p))
        })
        .collect();
    let dropped = before - kept.len();
    if dropped > 0 {
        files.write_lines(file, kept)?;
    }
    Ok(dropped)
}

/// Set apart the probes that documents still in the library hold too — a
/// shared sentence, or the vector of a passage another document has word
/// for word (the same text embeds to the same vector) — as they are no copy
/// of the forgotten one; the rest, and how many probes were shared.
async fn drop_shared(
    lib: &Library,
    probes: &Probes,
    found: Vec<Residue>,
) -> Result<(Vec<Residue>, usize)> {
    let mut shared = HashSet::new();
    let mut kept = Vec::new();
    for r in found {
        if shared.contains(&r.probe) || held_elsewhere(lib, probes, r.probe).await? {
            shared.insert(r.probe);
            continue;
        }
        kept.push(r);
    }
    Ok((kept, shared.len()))
}

/// Whether a document still in the library holds probe `i` itself.
async fn held_elsewhere(lib: &Library, probes: &Probes, i: usize) -> Result<bool> {
    if let Some(text) = probes.text(i) {
        return lib.vectors.contains_text(text).await;
    }
    let Some((text, prefix)) = probes.vector(i) else {
        return Ok(false);
    };
    Ok(lib
        .vectors
        .chunks_with_text(text)
        .await?
        .iter()
        .any(|c| residue::vector_prefix(&c.vector).as_deref() == Some(prefix)))
}

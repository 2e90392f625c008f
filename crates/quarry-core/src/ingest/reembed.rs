//! Switching a library to another embedder: every chunk is embedded again
//! into a new LanceDB table while the old one keeps serving searches, then
//! `library.json` is switched to the new table in one atomic rename. A switch
//! that is interrupted (crash, Ctrl-C) leaves the library on the old embedder,
//! and the next switch to the same embedder resumes where it stopped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::index::{embed_pending, embedding_input};
use crate::store::library::Library;
use crate::store::{ChunkRecord, VectorStore};

/// What a switch did.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchReport {
    /// The embedder before.
    pub from: String,
    /// The embedder now.
    pub to: String,
    /// Chunks in the library (those that had vectors and those that waited for them).
    pub chunks: usize,
    /// Chunks embedded by this run (fewer than `chunks` when resuming).
    pub embedded: usize,
    /// The new vector dimension.
    pub dim: usize,
    /// Stopped before the switch (`stop` was set): the library still uses
    /// `from`, and switching again carries on where this run stopped.
    pub stopped: bool,
    /// Wall time.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The chunks table for an embedder.
pub fn table_for(embedder: &str) -> String {
    let safe: String = embedder
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("chunks_{safe}")
}

/// Re-embed every chunk with `embedder` and switch the library to it.
/// Searches (in this or other processes) keep using the old vectors until
/// the switch; indexing is held off by the write lock meanwhile.
/// `on_progress(done, total)` reports chunks embedded. Once `stop` is set
/// the run stops after its current batch, before the switch (what it
/// embedded is kept for the next run).
pub async fn switch_embedder(
    lib: &mut Library,
    embedder: &Embedder,
    batch: usize,
    on_progress: &mut dyn FnMut(usize, usize),
    stop: Option<&AtomicBool>,
) -> Result<SwitchReport> {
    let started = Instant::now();
    let _lock = lib.lock_for_writing()?;
    lib.recover().await?;
    let from = lib.meta.embedder.clone();
    if embedder.id() == from {
        return Err(Error::InvalidInput(format!(
            "the library already uses embedder '{from}'"
        )));
    }
    lib.drop_retired().await?;
    let mut name = table_for(embedder.id());
    if name == lib.meta.chunks_table {
        name.push_str("_2");
    }
    let target: VectorStore = lib.vectors.sibling_chunks(&name, embedder.dim()).await?;
    let source = lib.vectors.chunk_records(None).await?;
    let wanted: HashSet<&str> = source.iter().map(|c| c.id.as_str()).collect();
    // Resuming: keep what an interrupted run embedded, drop chunks the
    // library no longer has.
    let present: Vec<ChunkRecord> = target.chunk_records(None).await?;
    let stale: Vec<String> = present
        .iter()
        .filter(|c| !wanted.contains(c.id.as_str()))
        .map(|c| c.id.clone())
        .collect();
    if !stale.is_empty() {
        target.delete_chunk_ids(&stale).await?;
    }
    let done: HashSet<String> = present
        .into_iter()
        .map(|c| c.id)
        .filter(|id| wanted.contains(id.as_str()))
        .collect();
    let todo: Vec<&ChunkRecord> = source.iter().filter(|c| !done.contains(&c.id)).collect();
    let total = source.len();
    let mut finished = done.len();
    on_progress(finished, total);
    let stopped = |finished: usize| {
        stop.is_some_and(|s| s.load(Ordering::SeqCst))
            .then(|| SwitchReport {
                from: from.clone(),
                to: embedder.id().to_string(),
                chunks: total,
                embedded: finished - done.len(),
                dim: embedder.dim(),
                stopped: true,
                elapsed: started.elapsed(),
            })
    };
    for part in todo.chunks(batch.max(1)) {
        if let Some(report) = stopped(finished) {
            return Ok(report);
        }
        let texts: Vec<String> = part.iter().map(|c| embedding_input(c)).collect();
        let vectors = embedder.embed_documents(&texts)?;
        let records: Vec<ChunkRecord> = part
            .iter()
            .zip(vectors)
            .map(|(c, v)| ChunkRecord {
                vector: v,
                ..(*c).clone()
            })
            .collect();
        target.add_chunks(&records).await?;
        finished += records.len();
        on_progress(finished, total);
        crate::failpoint::hit("reembed.after-batch");
    }
    // Stopped while the last batch was embedded: the switch is left for
    // the next run (which finds every vector made).
    if let Some(report) = stopped(finished) {
        return Ok(report);
    }
    let count = target.count_chunks().await?;
    if count != total {
        return Err(Error::Internal(format!(
            "re-embedded table holds {count} chunks, the library {total}"
        )));
    }
    target.optimize().await?;
    let ann_rows = target.ensure_vector_index(None).await?;
    // The switch: one atomic rename of library.json.
    let old_table = std::mem::replace(&mut lib.meta.chunks_table, name);
    lib.meta.embedder = embedder.id().to_string();
    lib.meta.dim = embedder.dim();
    lib.meta.retired_tables.push(old_table);
    lib.meta.ann_rows = ann_rows;
    lib.save_meta()?;
    lib.vectors = target;
    // Chunks the keyword phase of indexing left without vectors were
    // never in the old table: they get their first vectors, from the new
    // embedder, now.
    let waiting = lib.vectors.count_pending().await?;
    let mut index_report = crate::ingest::index::IndexReport::default();
    if waiting > 0 {
        let opts = crate::ingest::index::IndexOptions {
            embed_batch: batch.max(1),
            ..Default::default()
        };
        let all = total + waiting;
        let mut on_event = |e: crate::ingest::index::IndexEvent| {
            if let crate::ingest::index::IndexEvent::VectorsFlushed { embedded, .. } = e {
                on_progress(total + embedded, all);
            }
        };
        embed_pending(lib, embedder, &opts, &mut on_event, &mut index_report).await?;
    }
    Ok(SwitchReport {
        from,
        to: embedder.id().to_string(),
        chunks: total + waiting,
        embedded: todo.len() + index_report.embedded,
        dim: embedder.dim(),
        stopped: false,
        elapsed: started.elapsed(),
    })
}

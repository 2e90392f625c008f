//! Keep a library in sync with its folders: file-system notifications
//! (inotify, FSEvents, ReadDirectoryChangesW through `notify`), debounced, each
//! burst answered by an incremental index of the library's folders — which
//! re-reads only files whose size or modification time changed and removes
//! the documents of files that are gone (a rename is a removal plus an
//! addition). Each burst walks the folders again: cheap (a stat per file;
//! 2,000 files in 0.04 s), and it cannot miss a change the notifications
//! dropped or coalesced.
//!
//! Each burst runs only the keyword phase of indexing, so a change is
//! searchable within a second or two whatever the size of the library; the
//! chunks waiting for vectors are embedded between bursts, and a new burst
//! interrupts that (after the current small group of chunks) to be indexed
//! first. The write lock is held only while a burst is indexed or a batch
//! embedded, so searches and `quarry ask` keep working.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::embed::Embedder;
use crate::error::{Error, Result};
use crate::ingest::index::{IndexEvent, IndexOptions, IndexReport};
use crate::store::library::Library;

/// What the watch loop reports.
#[derive(Debug)]
pub enum WatchEvent {
    /// Watching these folders.
    Started {
        /// The library's folders.
        folders: Vec<PathBuf>,
    },
    /// A burst of changes was indexed.
    Synced {
        /// Paths the notifications named (deduplicated, at most a few hundred).
        changed: Vec<PathBuf>,
        /// The incremental index run.
        report: Box<IndexReport>,
    },
    /// Chunks waiting for vectors were embedded (between bursts).
    Embedded {
        /// The embedding run (it stops early when changes arrive).
        report: Box<IndexReport>,
    },
    /// A burst could not be indexed (e.g. another process holds the library);
    /// the next burst retries.
    Failed {
        /// Why.
        error: String,
    },
}

/// Whether a notification concerns the library's own files (ignored: the
/// indexer writing them must not trigger another run).
fn is_inside(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// [`Library::reopen_if_stale`], logging a failure (the old handle stays).
async fn reopen_if_stale(library: &mut Library) {
    if let Err(e) = library.reopen_if_stale().await {
        tracing::warn!("could not re-open the library: {e}");
    }
}

/// Watch the library's folders until `stop` resolves, indexing each burst of
/// changes once no new notification has arrived for `debounce`.
pub async fn watch(
    library: &mut Library,
    embedder: &Embedder,
    opts: &IndexOptions,
    debounce: Duration,
    stop: impl std::future::Future<Output = ()>,
    on_event: &mut dyn FnMut(WatchEvent),
) -> Result<()> {
    let folders = library.meta().folders.clone();
    if folders.is_empty() {
        return Err(Error::InvalidInput(
            "the library has no folders yet; index one first (`quarry index FOLDER`)".into(),
        ));
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
    let lib_dir = library.dir().to_path_buf();
    // Set by every change: the embedding phase yields to it.
    let changes = Arc::new(AtomicBool::new(false));
    let seen = changes.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if matches!(ev.kind, EventKind::Access(_)) {
                return;
            }
            let paths: Vec<PathBuf> = ev
                .paths
                .into_iter()
                .filter(|p| !is_inside(p, &lib_dir))
                .collect();
            if !paths.is_empty() {
                seen.store(true, Ordering::SeqCst);
                let _ = tx.send(paths);
            }
        }
    })
    .map_err(|e| Error::Internal(format!("cannot watch files: {e}")))?;
    for f in &folders {
        watcher
            .watch(f, RecursiveMode::Recursive)
            .map_err(|e| Error::BadPath {
                path: f.clone(),
                reason: format!("cannot watch: {e}"),
            })?;
    }
    on_event(WatchEvent::Started {
        folders: folders.clone(),
    });
    // Stopping (the `stop` future) cancels a run in progress after its
    // current batch, like Ctrl-C in `quarry index`.
    let halt = Arc::new(AtomicBool::new(false));
    let burst_opts = IndexOptions {
        embed: false,
        cancel: Some(halt.clone()),
        ..opts.clone()
    };
    let embed_opts = IndexOptions {
        cancel: Some(halt.clone()),
        pause: Some(changes.clone()),
        ..opts.clone()
    };
    let mut backlog = library.pending_embeddings().await.unwrap_or(0) > 0;
    tokio::pin!(stop);
    loop {
        if backlog && rx.is_empty() {
            changes.store(false, Ordering::SeqCst);
            reopen_if_stale(library).await;
            let mut quiet = |_: IndexEvent| {};
            let run =
                crate::ingest::index::finish_embedding(library, embedder, &embed_opts, &mut quiet);
            let (result, stopped) = until_stopped(run, &mut stop, &halt).await;
            match result {
                Ok(report) => {
                    backlog = report.pending_embeddings > 0;
                    on_event(WatchEvent::Embedded {
                        report: Box::new(report),
                    });
                }
                Err(e) => {
                    on_event(WatchEvent::Failed {
                        error: e.to_string(),
                    });
                    // Another process may hold the library; retry later.
                    tokio::select! {
                        _ = &mut stop => return Ok(()),
                        _ = tokio::time::sleep(debounce * 10) => {}
                    }
                }
            }
            if stopped {
                return Ok(());
            }
            continue;
        }
        // Wait for the first notification of a burst (or the stop signal).
        let first = tokio::select! {
            _ = &mut stop => return Ok(()),
            got = rx.recv() => match got {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        let mut changed = first;
        // Then until the folder has been quiet for `debounce`.
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                more = tokio::time::timeout(debounce, rx.recv()) => match more {
                    Ok(Some(p)) if started.elapsed() < debounce * 20 => changed.extend(p),
                    Ok(Some(p)) => { changed.extend(p); break; }
                    Ok(None) | Err(_) => break,
                },
            }
        }
        changed.sort();
        changed.dedup();
        changed.truncate(500);
        reopen_if_stale(library).await;
        let mut quiet = |_: IndexEvent| {};
        let run = crate::ingest::index::index(library, &folders, embedder, &burst_opts, &mut quiet);
        let (result, stopped) = until_stopped(run, &mut stop, &halt).await;
        match result {
            Ok(report) => {
                backlog = report.pending_embeddings > 0;
                on_event(WatchEvent::Synced {
                    changed,
                    report: Box::new(report),
                })
            }
            Err(e) => on_event(WatchEvent::Failed {
                error: e.to_string(),
            }),
        }
        if stopped {
            return Ok(());
        }
    }
}

/// Run `work` to its end; if `stop` resolves first, raise `halt` (the run
/// then ends after its current batch) and say so.
async fn until_stopped<T>(
    work: impl std::future::Future<Output = T>,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    halt: &AtomicBool,
) -> (T, bool) {
    tokio::pin!(work);
    let mut stopped = false;
    loop {
        tokio::select! {
            out = &mut work => return (out, stopped),
            _ = stop.as_mut(), if !stopped => {
                halt.store(true, Ordering::SeqCst);
                stopped = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_files_are_ignored() {
        assert!(is_inside(
            Path::new("/docs/.quarry/lance/x"),
            Path::new("/docs/.quarry")
        ));
        assert!(!is_inside(
            Path::new("/docs/a.txt"),
            Path::new("/docs/.quarry")
        ));
    }
}

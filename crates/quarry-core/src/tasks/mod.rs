//! Task specialists: the local model filling a schema's fields from each
//! document ([`extract`]), classifying documents (an enum field,
//! [`schema::Schema::classifier`]), with every value checked against the
//! passage it came from ([`verify`]), kept per document as it is produced
//! ([`results`]) and written as a table ([`table`]).

pub mod extract;
pub mod results;
pub mod schema;
pub mod table;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::generate::LocalModel;
use crate::retrieve::HybridSearch;
use crate::store::library::Library;
use crate::store::{DocState, DocumentRecord, Filter};
use extract::{extract_document, DocumentFields, ExtractOptions};
use results::ResultStore;
use schema::Schema;

/// Whether `path` is `root` or inside it.
fn under(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches(['/', '\\']);
    path == root
        || path
            .strip_prefix(root)
            .is_some_and(|rest| rest.starts_with(['/', '\\']))
}

/// The indexed documents a filter selects (path prefix, extensions, dates)
/// that are one of `roots` or inside one (all when `roots` is empty), by path.
pub async fn select_documents(
    library: &Library,
    filter: &Filter,
    roots: &[String],
) -> Result<Vec<DocumentRecord>> {
    let mut docs: Vec<DocumentRecord> = library
        .documents()
        .await?
        .into_iter()
        .filter(|d| d.state == DocState::Indexed && d.chunks > 0)
        .filter(|d| {
            filter
                .path_prefix
                .as_deref()
                .is_none_or(|p| d.path.starts_with(p))
        })
        .filter(|d| {
            filter.extensions.is_empty()
                || std::path::Path::new(&d.path).extension().is_some_and(|e| {
                    filter
                        .extensions
                        .contains(&e.to_string_lossy().to_lowercase())
                })
        })
        .filter(|d| filter.date_matches(d.mtime_ns))
        .filter(|d| filter.paths.as_ref().is_none_or(|ps| ps.contains(&d.path)))
        .filter(|d| roots.is_empty() || roots.iter().any(|r| under(&d.path, r)))
        .collect();
    docs.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(docs)
}

/// Progress of an extraction run.
#[derive(ts_rs::TS, Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ExtractEvent {
    /// The run starts: `total` documents, `kept` of them already done.
    Started {
        /// Documents selected.
        total: usize,
        /// Documents whose kept result is reused.
        kept: usize,
    },
    /// A document is done.
    Document(DocumentDone),
}

/// A document done in an extraction run.
#[derive(ts_rs::TS, Debug, Clone, Serialize)]
pub struct DocumentDone {
    /// Documents done so far (kept ones included).
    pub done: usize,
    /// Documents selected.
    pub total: usize,
    /// Whether the result was kept from an earlier run.
    pub kept: bool,
    /// Its fields.
    pub fields: DocumentFields,
}

/// What a run did.
#[derive(ts_rs::TS, Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// Documents extracted now.
    pub extracted: usize,
    /// Documents whose kept result was reused.
    pub kept: usize,
    /// Documents that failed (their error is in their row).
    pub failed: usize,
    /// Whether the run was stopped before the end.
    pub cancelled: bool,
    /// Seconds spent extracting.
    pub seconds: f64,
}

/// Extract `schema` from every document of `docs`, reusing results kept in
/// `store` and keeping new ones there as they come. A document that fails
/// (the model's output cut short, say) gets its error in its row and is
/// tried again next run. Stops between documents, and inside one, when
/// `cancel` is set; what is done is kept.
#[allow(clippy::too_many_arguments)]
pub async fn extract_all(
    search: &HybridSearch<'_>,
    model: &mut LocalModel,
    schema: &Schema,
    docs: &[DocumentRecord],
    store: &mut ResultStore,
    opts: &ExtractOptions,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(ExtractEvent),
) -> Result<(Vec<DocumentFields>, RunSummary)> {
    let started = Instant::now();
    let total = docs.len();
    let kept = docs
        .iter()
        .filter(|d| store.fresh(&d.path, &d.hash).is_some())
        .count();
    on_event(ExtractEvent::Started { total, kept });
    let mut rows = Vec::with_capacity(total);
    let mut summary = RunSummary::default();
    for doc in docs {
        if cancel.load(Ordering::SeqCst) {
            summary.cancelled = true;
            break;
        }
        let (fields, was_kept) = match store.fresh(&doc.path, &doc.hash) {
            Some(f) => (f.clone(), true),
            None => {
                let go_on = || !cancel.load(Ordering::SeqCst);
                let result =
                    extract_document(search, model, schema, doc, opts, &mut |_| go_on()).await;
                if cancel.load(Ordering::SeqCst) {
                    summary.cancelled = true;
                    break;
                }
                let fields = result.unwrap_or_else(|e| failed(doc, e));
                store.record(fields.clone())?;
                (fields, false)
            }
        };
        if was_kept {
            summary.kept += 1;
        } else if fields.error.is_some() {
            summary.failed += 1;
        } else {
            summary.extracted += 1;
        }
        rows.push(fields.clone());
        on_event(ExtractEvent::Document(DocumentDone {
            done: rows.len(),
            total,
            kept: was_kept,
            fields,
        }));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok((rows, summary))
}

fn failed(doc: &DocumentRecord, e: crate::Error) -> DocumentFields {
    DocumentFields {
        path: doc.path.clone(),
        hash: doc.hash.clone(),
        fields: Default::default(),
        error: Some(e.to_string()),
        passages: 0,
        prompt_tokens: 0,
        generated_tokens: 0,
        ms: 0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_root_holds_itself_and_what_is_inside_it_only() {
        assert!(super::under("/a/b.txt", "/a"));
        assert!(super::under("/a/b.txt", "/a/"));
        assert!(super::under("/a/b.txt", "/a/b.txt"));
        assert!(!super::under("/ab/c.txt", "/a"));
    }
}

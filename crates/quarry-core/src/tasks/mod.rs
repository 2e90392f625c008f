//! Task specialists: the local model filling a schema's fields from each
//! document ([`extract`]), classifying documents (an enum field,
//! [`schema::Schema::classifier`]), with every value checked against the
//! passage it came from ([`verify`]), kept per document as it is produced
//! ([`results`]) and written as a table ([`table`]); and summaries of whole
//! documents, every point cited ([`summarize`]). Schemas are saved with the
//! library under a name ([`saved`]); the documents of a run are a filter's
//! ([`select_documents`]) or a search's ([`documents_found`]).

pub mod extract;
pub mod results;
pub mod saved;
pub mod schema;
pub mod summarize;
pub mod table;
pub mod verify;

pub use crate::store::selection::select_documents;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::error::Result;
use crate::generate::LocalModel;
use crate::retrieve::{HybridSearch, SearchMode, SearchOptions};
use crate::store::{DocumentRecord, Filter};
use extract::{extract_document, DocumentFields, ExtractOptions};
use results::ResultStore;
use schema::Schema;

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

/// Most documents a search may hand to a task.
pub const MAX_FOUND_DOCUMENTS: usize = 200;

/// The documents a search for `query` finds (inside `filter` and under
/// `roots`, as [`select_documents`]), best first: the `limit` documents
/// whose passages rank highest, each once. Hybrid search when `search` has
/// an embedder, keyword search otherwise.
pub async fn documents_found(
    search: &HybridSearch<'_>,
    query: &str,
    filter: &Filter,
    roots: &[String],
    limit: usize,
) -> Result<Vec<DocumentRecord>> {
    let limit = limit.clamp(1, MAX_FOUND_DOCUMENTS);
    let opts = SearchOptions {
        mode: if search.has_embedder() {
            SearchMode::Hybrid
        } else {
            SearchMode::Keyword
        },
        // Passages, not documents, are ranked: look deep enough that a few
        // long documents do not fill the list alone.
        k: (limit * 8).min(1000),
        filter: filter.clone(),
        ..Default::default()
    };
    let hits = search.search(query, &opts).await?.hits;
    let mut order: Vec<&str> = Vec::new();
    for h in &hits {
        if !order.contains(&h.path.as_str()) {
            order.push(&h.path);
        }
    }
    let mut docs = select_documents(search.library(), filter, roots).await?;
    docs.retain(|d| order.contains(&d.path.as_str()));
    docs.sort_by_key(|d| order.iter().position(|p| *p == d.path));
    docs.truncate(limit);
    Ok(docs)
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

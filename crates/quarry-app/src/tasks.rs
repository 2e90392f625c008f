//! Task specialists for the HTTP and desktop front-ends: an extraction run
//! streamed as events (the table fills in document by document), the kept
//! results as a CSV, XLSX or JSON table, and a document's summary streamed
//! as it is written.

use std::sync::atomic::{AtomicBool, Ordering};

use quarry_core::answer::whole::WholeOptions;
use quarry_core::answer::AnswerEvent;
use quarry_core::store::DocumentRecord;
use quarry_core::tasks::extract::{DocumentFields, ExtractOptions};
use quarry_core::tasks::results::ResultStore;
use quarry_core::tasks::schema::Schema;
use quarry_core::tasks::summarize::{indexed_document, summarize, Summary, SummaryStore};
use quarry_core::tasks::table::{to_csv, to_json, to_xlsx, TableFormat};
use quarry_core::tasks::{extract_all, select_documents, DocumentDone, ExtractEvent, RunSummary};
use quarry_core::{HybridSearch, SearchMode};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::engine::Engine;
use crate::error::{AppError, AppResult};

/// An extraction (`POST /api/extract`, `POST /api/extract/table`).
#[derive(Debug, Clone, Deserialize, TS)]
pub struct ExtractRequest {
    /// The fields: a JSON Schema object, or `{"fields": [{"name", "type",
    /// "description", "choices"?}]}`.
    #[ts(type = "unknown")]
    pub schema: serde_json::Value,
    /// Only documents that are one of these files or inside these folders
    /// (default: every indexed document).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Only these extensions (no dot).
    #[serde(default)]
    pub ext: Vec<String>,
    /// Extract again where a result is kept for the same content.
    #[serde(default)]
    pub redo: bool,
    /// For a table: `csv`, `xlsx` or `json` (default).
    #[serde(default)]
    pub format: Option<String>,
}

/// What an extraction run streams.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum ExtractUpdate {
    /// The run starts: the schema as read (the table's columns), the
    /// documents selected and how many are kept from before.
    Started {
        /// The fields.
        schema: Schema,
        /// Documents selected.
        total: usize,
        /// Documents whose kept result is reused.
        kept: usize,
    },
    /// A document is done.
    Document(DocumentDone),
    /// The run ended.
    Done(RunSummary),
    /// The run failed.
    Error(AppError),
}

impl ExtractUpdate {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            ExtractUpdate::Started { .. } => "started",
            ExtractUpdate::Document { .. } => "document",
            ExtractUpdate::Done(_) => "done",
            ExtractUpdate::Error(_) => "error",
        }
    }

    /// The event's data alone, as JSON.
    pub fn data(&self) -> serde_json::Value {
        crate::views::event_data(self)
    }
}

fn schema_of(req: &ExtractRequest) -> AppResult<Schema> {
    Ok(Schema::parse(&req.schema)?)
}

fn filter_of(req: &ExtractRequest) -> quarry_core::store::Filter {
    quarry_core::store::Filter {
        extensions: req
            .ext
            .iter()
            .map(|e| e.trim_start_matches('.').to_lowercase())
            .collect(),
        ..Default::default()
    }
}

/// The indexed documents `req` selects, in path order.
pub async fn documents(engine: &Engine, req: &ExtractRequest) -> AppResult<Vec<DocumentRecord>> {
    Ok(select_documents(&engine.library(), &filter_of(req), &req.paths).await?)
}

/// Run an extraction with the engine's model, sending each update to `sink`
/// (which returns false to stop: the client left). Results are kept per
/// document as they come, as with `quarry extract`.
pub fn extract_blocking(
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    req: &ExtractRequest,
    sink: &mut dyn FnMut(ExtractUpdate) -> bool,
) -> AppResult<()> {
    let schema = schema_of(req)?;
    let lib = engine.library();
    let docs = handle.block_on(documents(engine, req))?;
    if docs.is_empty() {
        return Err(AppError::user(
            "no_documents",
            "no indexed documents match: index a folder first",
        ));
    }
    let mut model = engine.lock_model()?;
    let model = model.as_mut().expect("loaded by lock_model");
    let mut store = ResultStore::open(lib.dir(), &schema, &engine.model_name())?;
    if req.redo {
        docs.iter().for_each(|d| store.forget(&d.path));
    }
    let search = HybridSearch::new(&lib, Some(&engine.embedder))?;
    let opts = ExtractOptions {
        mode: SearchMode::Hybrid,
        ..Default::default()
    };
    let stop = AtomicBool::new(false);
    let mut on_event = |e: ExtractEvent| {
        let update = match e {
            ExtractEvent::Started { total, kept } => ExtractUpdate::Started {
                schema: schema.clone(),
                total,
                kept,
            },
            ExtractEvent::Document(d) => ExtractUpdate::Document(d),
        };
        if !sink(update) {
            stop.store(true, Ordering::SeqCst);
        }
    };
    let (_, summary) = handle.block_on(extract_all(
        &search,
        model,
        &schema,
        &docs,
        &mut store,
        &opts,
        &stop,
        &mut on_event,
    ))?;
    sink(ExtractUpdate::Done(summary));
    Ok(())
}

/// The kept results of `req`'s schema with the engine's model, as a table
/// file: its bytes and its MIME type. Documents not extracted yet (or
/// changed since) are left out.
pub async fn table(engine: &Engine, req: &ExtractRequest) -> AppResult<(Vec<u8>, &'static str)> {
    let schema = schema_of(req)?;
    let lib = engine.library();
    let docs = select_documents(&lib, &filter_of(req), &req.paths).await?;
    let store = ResultStore::open(lib.dir(), &schema, &engine.model_name())?;
    let rows: Vec<DocumentFields> = docs
        .iter()
        .filter_map(|d| store.fresh(&d.path, &d.hash).cloned())
        .collect();
    let format = req.format.as_deref().unwrap_or("json");
    let format = TableFormat::of(std::path::Path::new(&format!("table.{format}")))?;
    Ok(match format {
        TableFormat::Csv => (to_csv(&schema, &rows)?, "text/csv; charset=utf-8"),
        TableFormat::Xlsx => (
            to_xlsx(&schema, &rows)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        ),
        TableFormat::Json => (
            serde_json::to_vec_pretty(&to_json(&schema, &rows)).map_err(AppError::internal)?,
            "application/json",
        ),
    })
}

/// A summary of one document (`POST /api/summarize`).
#[derive(Debug, Clone, Deserialize, TS)]
pub struct SummarizeRequest {
    /// The document's absolute path (an indexed document).
    pub path: String,
    /// Write it again where one is kept for the same content.
    #[serde(default)]
    pub redo: bool,
}

/// What a summary streams.
#[derive(Debug, Clone, Serialize, TS)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum SummaryUpdate {
    /// `done` of `total` parts of the document read.
    Reading {
        /// Parts read.
        done: usize,
        /// Parts in all.
        total: usize,
    },
    /// Summary text, as it is written.
    Token {
        /// The text.
        text: String,
    },
    /// The summary, and whether it was kept from before.
    Done {
        /// The summary and the passages it cites.
        summary: Box<Summary>,
        /// Kept from an earlier run (no model call).
        kept: bool,
    },
    /// It failed.
    Error(AppError),
}

impl SummaryUpdate {
    /// The event's name.
    pub fn name(&self) -> &'static str {
        match self {
            SummaryUpdate::Reading { .. } => "reading",
            SummaryUpdate::Token { .. } => "token",
            SummaryUpdate::Done { .. } => "done",
            SummaryUpdate::Error(_) => "error",
        }
    }

    /// The event's data alone, as JSON.
    pub fn data(&self) -> serde_json::Value {
        crate::views::event_data(self)
    }
}

/// Summarise a document with the engine's model, sending each update to
/// `sink` (false stops: the client left; a stopped summary is not kept).
pub fn summarize_blocking(
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    req: &SummarizeRequest,
    sink: &mut dyn FnMut(SummaryUpdate) -> bool,
) -> AppResult<()> {
    let lib = engine.library();
    let doc = handle.block_on(indexed_document(&lib, &req.path))?;
    let mut model = engine.lock_model()?;
    let model = model.as_mut().expect("loaded by lock_model");
    let mut store = SummaryStore::summaries(lib.dir(), &engine.model_name())?;
    if req.redo {
        store.forget(&doc.path);
    }
    let mut on_event = |e: AnswerEvent| match e {
        AnswerEvent::Reading { done, total } => sink(SummaryUpdate::Reading { done, total }),
        AnswerEvent::Token(text) => sink(SummaryUpdate::Token { text }),
        _ => true,
    };
    let opts = WholeOptions {
        max_passages: SUMMARY_PASSAGES,
        ..Default::default()
    };
    let (summary, kept) = summarize(&lib, model, &mut store, &doc, &opts, &mut on_event)?;
    sink(SummaryUpdate::Done {
        summary: Box::new(summary),
        kept,
    });
    Ok(())
}

/// Most passages a summary in the app reads (as `quarry summarize`'s default).
pub const SUMMARY_PASSAGES: usize = 200;

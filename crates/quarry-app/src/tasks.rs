//! Task specialists for the HTTP and desktop front-ends: an extraction run
//! streamed as events (the table fills in document by document), the kept
//! results as a CSV, XLSX or JSON table, the schemas saved with the library,
//! and a document's summary streamed as it is written.

use std::sync::atomic::{AtomicBool, Ordering};

use quarry_core::answer::whole::WholeOptions;
use quarry_core::answer::AnswerEvent;
use quarry_core::store::DocumentRecord;
use quarry_core::tasks::extract::{DocumentFields, ExtractOptions};
use quarry_core::tasks::results::ResultStore;
use quarry_core::tasks::saved::{SavedSchema, SchemaShelf};
use quarry_core::tasks::schema::Schema;
use quarry_core::tasks::summarize::{indexed_document, summarize, Summary, SummaryStore};
use quarry_core::tasks::table::{to_csv, to_json, to_xlsx, TableFormat};
use quarry_core::tasks::{
    documents_found, extract_all, select_documents, DocumentDone, ExtractEvent, RunSummary,
};
use quarry_core::{HybridSearch, SearchMode};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::engine::Engine;
use crate::error::{AppError, AppResult};

/// An extraction (`POST /api/extract`, `POST /api/extract/table`).
#[derive(Debug, Clone, Deserialize, TS)]
pub struct ExtractRequest {
    /// The fields: a JSON Schema object, `{"fields": [{"name", "type",
    /// "description", "choices"?}]}`, or the name of a schema saved in the
    /// library (a string).
    #[ts(type = "unknown")]
    pub schema: serde_json::Value,
    /// Only documents that are one of these files or inside these folders
    /// (default: every indexed document).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Take the documents from a search: the best-matching documents for
    /// this query (inside `paths` and `ext`), best first.
    #[serde(default)]
    pub query: Option<String>,
    /// How many documents `query` takes (default 20, at most 200).
    #[serde(default)]
    pub top: Option<usize>,
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
    /// The local model is busy with another task (`busy`, in a few words):
    /// the run starts when that ends.
    Waiting {
        /// What holds the model.
        busy: String,
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
            ExtractUpdate::Waiting { .. } => "waiting",
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

/// The schema `req` gives, or the saved one it names.
fn schema_of(engine: &Engine, req: &ExtractRequest) -> AppResult<Schema> {
    Ok(match req.schema.as_str() {
        Some(name) => SchemaShelf::of(engine.library().dir()).get(name)?.schema,
        None => Schema::parse(&req.schema)?,
    })
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

/// The indexed documents `req` selects, in path order; or with a query,
/// the best-matching of them, best first.
pub async fn documents(engine: &Engine, req: &ExtractRequest) -> AppResult<Vec<DocumentRecord>> {
    let (lib, embedder) = engine.library_and_embedder();
    let filter = filter_of(req);
    Ok(match req.query.as_deref().map(str::trim) {
        Some(q) if !q.is_empty() => {
            let search = HybridSearch::new(&lib, Some(&embedder))?;
            let top = req.top.unwrap_or(DEFAULT_TOP);
            documents_found(&search, q, &filter, &req.paths, top).await?
        }
        _ => select_documents(&lib, &filter, &req.paths).await?,
    })
}

/// How many documents a query takes when the request does not say.
pub const DEFAULT_TOP: usize = 20;

/// Run an extraction with the engine's model, sending each update to `sink`
/// (which returns false to stop: the client left). Results are kept per
/// document as they come, as with `quarry extract`.
pub fn extract_blocking(
    engine: &Engine,
    handle: &tokio::runtime::Handle,
    req: &ExtractRequest,
    sink: &mut dyn FnMut(ExtractUpdate) -> bool,
) -> AppResult<()> {
    let schema = schema_of(engine, req)?;
    let (lib, embedder) = engine.library_and_embedder();
    let docs = handle.block_on(documents(engine, req))?;
    if docs.is_empty() {
        return Err(AppError::user(
            "no_documents",
            match &req.query {
                Some(q) => format!("a search for \"{q}\" finds no indexed documents"),
                None => "no indexed documents match: index a folder first".to_string(),
            },
        ));
    }
    let what = format!("an extraction from {} documents", docs.len());
    let mut model = engine.lock_model_for(&what, &mut |busy| {
        sink(ExtractUpdate::Waiting {
            busy: busy.to_string(),
        });
    })?;
    let model = model.as_mut().expect("loaded by lock_model");
    let mut store = ResultStore::open(lib.dir(), &schema, &engine.model_name())?;
    if req.redo {
        docs.iter().for_each(|d| store.forget(&d.path));
    }
    let search = HybridSearch::new(&lib, Some(&embedder))?
        .with_history(quarry_core::retrieve::search::HistoryUse::Read);
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
    let schema = schema_of(engine, req)?;
    let lib = engine.library();
    let docs = documents(engine, req).await?;
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

/// A schema to save with the library (`PUT /api/schemas`).
#[derive(Debug, Clone, Deserialize, TS)]
pub struct SaveSchemaRequest {
    /// Its name (names are compared without regard to case).
    pub name: String,
    /// The fields, in any form an extraction takes.
    #[ts(type = "unknown")]
    pub schema: serde_json::Value,
}

/// A saved schema's name (`DELETE /api/schemas?name=`).
#[derive(Debug, Clone, Deserialize, TS)]
pub struct SchemaName {
    /// The name.
    pub name: String,
}

/// The schemas saved in the library, by name.
pub fn schemas(engine: &Engine) -> AppResult<Vec<SavedSchema>> {
    Ok(SchemaShelf::of(engine.library().dir()).list()?)
}

/// Save a schema with the library (replacing one of the same name).
pub fn save_schema(engine: &Engine, req: &SaveSchemaRequest) -> AppResult<SavedSchema> {
    let schema = Schema::parse(&req.schema)?;
    Ok(SchemaShelf::of(engine.library().dir()).save(&req.name, &schema)?)
}

/// Delete the schema saved as `name`; a name nothing is saved under is a
/// `not_found` error.
pub fn delete_schema(engine: &Engine, name: &str) -> AppResult<()> {
    if SchemaShelf::of(engine.library().dir()).delete(name)? {
        Ok(())
    } else {
        Err(AppError::new(
            quarry_core::ErrorKind::NotFound,
            "no_schema",
            format!("no schema is saved as \"{}\"", name.trim()),
        ))
    }
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
    /// The local model is busy with another task (`busy`, in a few words):
    /// the summary starts when that ends.
    Waiting {
        /// What holds the model.
        busy: String,
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
            SummaryUpdate::Waiting { .. } => "waiting",
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
    let name = std::path::Path::new(&doc.path)
        .file_name()
        .map_or_else(|| doc.path.clone(), |n| n.to_string_lossy().into_owned());
    let mut model = engine.lock_model_for(&format!("a summary of {name}"), &mut |busy| {
        sink(SummaryUpdate::Waiting {
            busy: busy.to_string(),
        });
    })?;
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

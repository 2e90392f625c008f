//! The tools an agent can call: each takes its arguments, runs the same
//! engine call as the other front-ends, and returns JSON with the paths,
//! pages and passage ids a client needs to cite or read further.

use std::path::Path;
use std::sync::Arc;

use quarry_app::calls::{self, AskRequest, SearchQuery};
use quarry_app::tasks::{self, ExtractRequest, ExtractUpdate, SummarizeRequest, SummaryUpdate};
use quarry_app::views::AskEvent;
use quarry_app::{AppError, Engine};
use quarry_core::answer::{Answer, Source, WholeReading};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use crate::resources::{self, document_uri, passage_uri};
use crate::{Failure, Progress, QuarryMcp, Served};

/// Hits a search returns unless asked otherwise, and at most.
const DEFAULT_K: usize = 8;
const MAX_K: usize = 50;
/// Characters of a document one `read_document` returns unless asked otherwise.
const DEFAULT_DOCUMENT_CHARS: usize = 20_000;
/// Documents one `extract` call reads unless asked otherwise, and at most:
/// each takes the local model seconds to a minute.
const DEFAULT_EXTRACT_DOCUMENTS: usize = 10;
const MAX_EXTRACT_DOCUMENTS: usize = 50;
/// Documents left for a next `extract` call named in a result (all are counted).
const MAX_LEFT_OUT_NAMED: usize = 100;

/// `search` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SearchArgs {
    /// What to look for: words, a phrase or a question.
    pub query: String,
    /// `hybrid` (default: words and meaning), `keyword` or `vector`.
    #[serde(default)]
    pub mode: Option<String>,
    /// How many hits (default 8, at most 50).
    #[serde(default)]
    pub k: Option<usize>,
    /// Only documents whose absolute path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Only these file extensions, comma-separated (`pdf,docx`).
    #[serde(default)]
    pub ext: Option<String>,
}

/// `ask` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AskArgs {
    /// The question.
    pub question: String,
    /// Only documents whose absolute path starts with this.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// `auto` (default), `local` or `cloud`. The library's privacy mode
    /// decides what is allowed: a local-only library is always answered on
    /// this machine, whatever this says.
    #[serde(default)]
    pub route: Option<String>,
    /// Read every passage of the documents (`always`), never (`never`), or
    /// when the question needs it, as in "list every…" (`auto`, default).
    #[serde(default)]
    pub whole: Option<String>,
    /// Most tokens of answer (default 256).
    #[serde(default)]
    pub max_tokens: Option<usize>,
}

/// `read_passage` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PassageArgs {
    /// The passage's `id`, from a search hit or an answer's citation.
    pub id: String,
}

/// `read_document` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct DocumentArgs {
    /// The document's absolute path (a document indexed in the library).
    pub path: String,
    /// The character to start at (default 0; a previous call's `next_offset`).
    #[serde(default)]
    pub offset: Option<usize>,
    /// Characters to return (default 20000, at most 100000).
    #[serde(default)]
    pub max_chars: Option<usize>,
}

/// `summarize` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct SummarizeArgs {
    /// The document's absolute path (a document indexed in the library).
    pub path: String,
}

/// `extract` arguments.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExtractArgs {
    /// The fields to fill: `{"fields": [{"name", "type", "description",
    /// "choices"?}]}` with type one of string, number, date, boolean, enum
    /// (with choices) or list; or a JSON Schema object; or, as a string, the
    /// name of a schema the user saved in the library.
    pub schema: serde_json::Value,
    /// Only documents that are one of these files or inside these folders
    /// (absolute paths; default: every indexed document).
    #[serde(default)]
    pub paths: Vec<String>,
    /// Take the documents from a search instead: the documents that match
    /// this query best (inside `paths` and `ext`).
    #[serde(default)]
    pub query: Option<String>,
    /// Only these file extensions, comma-separated (`pdf,docx`).
    #[serde(default)]
    pub ext: Option<String>,
    /// Most documents this call reads (default 10, at most 50), in path
    /// order; the rest are counted in `left_out_count` and the first 100 of
    /// them named in `left_out`, for a next call.
    #[serde(default)]
    pub max_documents: Option<usize>,
}

#[rmcp::tool_router(vis = "pub(crate)")]
impl QuarryMcp {
    /// Search the library.
    #[rmcp::tool(
        description = "Search the user's private document library (hybrid keyword and meaning search). Returns hits with path, page, a snippet, a score and a passage id to read in full with read_passage.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn search(
        &self,
        Parameters(args): Parameters<SearchArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let logged = json!({"query": args.query, "mode": args.mode, "k": args.k,
            "path_prefix": args.path_prefix, "ext": args.ext});
        self.tool_call(&ctx, "search", logged, search(&self.engine, args))
            .await
    }

    /// Answer a question from the library, with citations.
    #[rmcp::tool(
        description = "Answer a question from the user's library with numbered citations [n] to its passages (path, page, passage id). Runs under the library's privacy mode: a local-only library is answered by the local model and nothing leaves the machine. Slow on a laptop CPU (tens of seconds).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn ask(
        &self,
        Parameters(args): Parameters<AskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let logged = json!({"question": args.question, "path_prefix": args.path_prefix,
            "route": args.route, "whole": args.whole, "max_tokens": args.max_tokens});
        self.tool_call(&ctx, "ask", logged, ask(self.engine.clone(), args))
            .await
    }

    /// Read one passage in full.
    #[rmcp::tool(
        description = "Read one passage of the library in full, by the id a search hit or a citation gives; also says which passage of its document it is and the ids of its neighbours.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn read_passage(
        &self,
        Parameters(args): Parameters<PassageArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let logged = json!({"id": args.id});
        self.tool_call(
            &ctx,
            "read_passage",
            logged,
            read_passage(&self.engine, args),
        )
        .await
    }

    /// Read a document's text, a page of characters at a time.
    #[rmcp::tool(
        description = "Read the text of a document indexed in the library, by absolute path, in slices of characters (offset, max_chars); pages are marked [page N]. Files outside the library are refused.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn read_document(
        &self,
        Parameters(args): Parameters<DocumentArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let logged = json!({"path": args.path, "offset": args.offset, "max_chars": args.max_chars});
        self.tool_call(
            &ctx,
            "read_document",
            logged,
            read_document(&self.engine, args),
        )
        .await
    }

    /// The folders the library covers.
    #[rmcp::tool(
        description = "List the folders the library covers, with their document counts.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn list_folders(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.tool_call(&ctx, "list_folders", json!({}), list_folders(&self.engine))
            .await
    }

    /// The library's counts, privacy and model.
    #[rmcp::tool(
        description = "The library's state: documents, passages, failures, indexing, the privacy mode in force and the local model.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn status(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        self.tool_call(&ctx, "status", json!({}), status(&self.engine))
            .await
    }

    /// Summarise a whole document.
    #[rmcp::tool(
        description = "Summarise one whole document of the library with the local model (it reads every passage; minutes for long documents on a laptop CPU); the summary cites its passages [n]. Kept: asking again for an unchanged document is immediate.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn summarize(
        &self,
        Parameters(args): Parameters<SummarizeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let logged = json!({"path": args.path});
        let (progress, sent) = Progress::of(&ctx);
        let work = summarize(self.engine.clone(), args, progress);
        self.tool_call(&ctx, "summarize", logged, sent.after(work))
            .await
    }

    /// Fill fields from documents into a table, every value cited.
    #[rmcp::tool(
        description = "Extract fields from documents of the library into a table with the local model: one row per document, each value with its citation (path, page, passage) and whether it was found in that passage (verified). The documents: paths and extensions, or the best matches of a search query; the schema: fields, or the name of one the user saved. Constrained output: values always fit the schema. About a minute a document on a laptop CPU; results are kept, so asking again for unchanged documents is immediate.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    pub async fn extract(
        &self,
        Parameters(args): Parameters<ExtractArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let logged = json!({"schema": args.schema, "paths": args.paths, "ext": args.ext,
            "query": args.query, "max_documents": args.max_documents});
        let (progress, sent) = Progress::of(&ctx);
        let work = extract(self.engine.clone(), args, progress);
        self.tool_call(&ctx, "extract", logged, sent.after(work))
            .await
    }
}

async fn search(engine: &Engine, args: SearchArgs) -> Result<Served, Failure> {
    if args.query.trim().is_empty() {
        return Err(Failure::Failed("give a query to search for".into()));
    }
    let view = calls::search(
        engine,
        SearchQuery {
            q: args.query,
            mode: args.mode,
            k: Some(args.k.unwrap_or(DEFAULT_K).clamp(1, MAX_K)),
            path_prefix: args.path_prefix,
            ext: args.ext,
            ..Default::default()
        },
    )
    .await?;
    let mut documents: Vec<String> = Vec::new();
    let hits: Vec<serde_json::Value> = view
        .hits
        .iter()
        .map(|h| {
            if !documents.contains(&h.hit.path) {
                documents.push(h.hit.path.clone());
            }
            json!({
                "id": h.hit.chunk_id,
                "uri": passage_uri(&h.hit.chunk_id),
                "path": h.hit.path,
                "page": h.hit.page,
                "heading": h.hit.heading,
                "snippet": h.snippet,
                "score": h.hit.score,
            })
        })
        .collect();
    let value = json!({
        "query": view.query,
        "mode": view.mode,
        "took_ms": view.took_ms,
        "hits": hits,
    });
    Ok(Served::json(value, documents))
}

/// The request `ask`'s arguments make.
fn ask_request(args: AskArgs) -> Result<AskRequest, Failure> {
    let bad = |e: quarry_core::Error| Failure::Failed(e.to_string());
    if args.question.trim().is_empty() {
        return Err(Failure::Failed("give a question to answer".into()));
    }
    Ok(AskRequest {
        question: args.question,
        path_prefix: args.path_prefix,
        max_tokens: args.max_tokens,
        route: match args.route.as_deref() {
            Some(r) => r.parse().map_err(bad)?,
            None => Default::default(),
        },
        whole: match args.whole.as_deref() {
            Some(w) => w.parse::<WholeReading>().map_err(bad)?,
            None => WholeReading::Auto,
        },
        ..Default::default()
    })
}

async fn ask(engine: Arc<Engine>, args: AskArgs) -> Result<Served, Failure> {
    let req = ask_request(args)?;
    let handle = tokio::runtime::Handle::current();
    let answer = tokio::task::spawn_blocking(move || -> Result<(Answer, Vec<Cited>), AppError> {
        let mut done = None;
        calls::answer_blocking(&engine, &handle, &req, &mut |e| {
            if let AskEvent::Done(a) = e {
                done = Some(*a);
            }
            true
        })?;
        let answer = done.ok_or_else(|| AppError::internal("the answer ended without a result"))?;
        let cited = cited_passages(&engine, &answer.sources, &answer.cited);
        Ok((answer, cited))
    })
    .await
    .map_err(|e| Failure::Failed(format!("the answer stopped: {e}")))??;
    let (answer, cited) = answer;
    let documents = dedup(cited.iter().map(|c| c.path.clone()));
    let value = json!({
        "answer": answer.answer,
        "citations": cited.iter().map(Cited::json).collect::<Vec<_>>(),
        "route": answer.route,
        "took_ms": answer.timings.total_ms,
    });
    Ok(Served::json(value, documents))
}

/// A cited source, with the id of its passage when the index still holds it.
struct Cited {
    n: usize,
    path: String,
    page: Option<u32>,
    id: Option<String>,
    quote: String,
}

impl Cited {
    fn json(&self) -> serde_json::Value {
        json!({
            "n": self.n,
            "path": self.path,
            "page": self.page,
            "id": self.id,
            "uri": self.id.as_deref().map(passage_uri),
            "document_uri": document_uri(&self.path),
            "quote": self.quote,
        })
    }
}

/// The sources numbered in `cited`, each with its passage id (by position in its document).
fn cited_passages(engine: &Engine, sources: &[Source], cited: &[usize]) -> Vec<Cited> {
    let lib = engine.library();
    sources
        .iter()
        .filter(|s| cited.contains(&s.n))
        .map(|s| Cited {
            n: s.n,
            path: s.path.clone(),
            page: s.page,
            id: lib.passages_of(&s.path).ok().and_then(|all| {
                all.into_iter()
                    .find(|h| h.char_start == s.char_start)
                    .map(|h| h.chunk_id)
            }),
            quote: s.text.chars().take(400).collect(),
        })
        .collect()
}

fn dedup(paths: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in paths {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

async fn read_passage(engine: &Engine, args: PassageArgs) -> Result<Served, Failure> {
    let p = resources::passage(engine, args.id.trim()).await?;
    let value = json!({
        "id": p.hit.chunk_id,
        "uri": passage_uri(&p.hit.chunk_id),
        "path": p.hit.path,
        "document_uri": document_uri(&p.hit.path),
        "page": p.hit.page,
        "heading": p.hit.heading,
        "passage": p.number,
        "of": p.of,
        "text": p.hit.text,
        "previous": p.previous,
        "next": p.next,
    });
    Ok(Served::json(value, vec![p.hit.path]))
}

async fn read_document(engine: &Engine, args: DocumentArgs) -> Result<Served, Failure> {
    let doc = resources::document_text(engine, Path::new(&args.path)).await?;
    let offset = args.offset.unwrap_or(0).min(doc.chars);
    let max = args
        .max_chars
        .unwrap_or(DEFAULT_DOCUMENT_CHARS)
        .clamp(1, resources::MAX_DOCUMENT_CHARS);
    let text: String = doc.text.chars().skip(offset).take(max).collect();
    let end = offset + text.chars().count();
    let value = json!({
        "path": doc.path,
        "uri": document_uri(&doc.path),
        "title": doc.title,
        "total_chars": doc.chars,
        "offset": offset,
        "text": text,
        "next_offset": (end < doc.chars).then_some(end),
    });
    Ok(Served::json(value, vec![doc.path]))
}

async fn list_folders(engine: &Engine) -> Result<Served, Failure> {
    let status = engine.library().status().await?;
    let folders: Vec<serde_json::Value> = status
        .per_folder
        .iter()
        .map(|f| {
            json!({
                "path": f.path,
                "documents": f.documents,
                "passages": f.chunks,
                "failed": f.failed,
                "last_indexed_ms": f.last_indexed_ms,
            })
        })
        .collect();
    Ok(Served::json(json!({ "folders": folders }), Vec::new()))
}

async fn status(engine: &Engine) -> Result<Served, Failure> {
    let view = calls::status(engine).await?;
    let settings = calls::settings(engine)?;
    let value = json!({
        "documents": view.library.documents,
        "passages": view.library.chunks,
        "failed": view.library.failed,
        "waiting_for_vectors": view.library.pending_embeddings,
        "folders": view.library.folders,
        "embedder": view.library.embedder,
        "indexing": view.indexing.phase,
        "privacy": settings.privacy.in_force,
        "model": view.model,
    });
    Ok(Served::json(value, Vec::new()))
}

async fn summarize(
    engine: Arc<Engine>,
    args: SummarizeArgs,
    progress: Progress,
) -> Result<Served, Failure> {
    let handle = tokio::runtime::Handle::current();
    let req = SummarizeRequest {
        path: args.path,
        redo: false,
    };
    let (summary, kept) = tokio::task::spawn_blocking(move || {
        let mut done = None;
        tasks::summarize_blocking(&engine, &handle, &req, &mut |u| {
            match u {
                SummaryUpdate::Reading { done, total } => {
                    progress.report(done, total, format!("read {done} of {total} parts"))
                }
                SummaryUpdate::Waiting { busy } => {
                    progress.report(0, 0, format!("waiting for the local model: {busy}"))
                }
                SummaryUpdate::Done { summary, kept } => done = Some((*summary, kept)),
                _ => {}
            }
            !progress.cancelled()
        })?;
        if progress.cancelled() {
            return Err(AppError::user(
                "cancelled",
                "the client cancelled the summary",
            ));
        }
        done.ok_or_else(|| AppError::internal("the summary ended without a result"))
    })
    .await
    .map_err(|e| Failure::Failed(format!("the summary stopped: {e}")))??;
    let cited: Vec<serde_json::Value> = summary
        .cited
        .iter()
        .map(|s| json!({"n": s.n, "page": s.page, "quote": s.text.chars().take(400).collect::<String>()}))
        .collect();
    let value = json!({
        "path": summary.path,
        "uri": document_uri(&summary.path),
        "summary": summary.text,
        "citations": cited,
        "passages_read": summary.passages,
        "passages_left_out": summary.left_out,
        "model": summary.model,
        "kept_from_before": kept,
    });
    Ok(Served::json(value, vec![summary.path]))
}

/// The extraction `args` asks for, capped at its most documents: the
/// request over the documents read now, and the paths left out.
async fn extract_request(
    engine: &Engine,
    args: ExtractArgs,
) -> Result<(ExtractRequest, Vec<String>), Failure> {
    let limit = args
        .max_documents
        .unwrap_or(DEFAULT_EXTRACT_DOCUMENTS)
        .clamp(1, MAX_EXTRACT_DOCUMENTS);
    let ext = args.ext.as_deref().unwrap_or("");
    let mut req = ExtractRequest {
        schema: args.schema,
        paths: args.paths,
        ext: ext
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(String::from)
            .collect(),
        // Room to name what is left out, beyond what this call reads.
        top: args.query.as_ref().map(|_| limit + 100),
        query: args.query,
        redo: false,
        format: None,
    };
    let mut docs: Vec<String> = tasks::documents(engine, &req)
        .await?
        .into_iter()
        .map(|d| d.path)
        .collect();
    if docs.is_empty() {
        return Err(Failure::Failed(match &req.query {
            Some(q) => format!("a search for \"{q}\" finds no indexed documents"),
            None => "no indexed documents match these paths and extensions".into(),
        }));
    }
    let left_out = docs.split_off(limit.min(docs.len()));
    // The documents are chosen: the run reads exactly these.
    req.paths = docs;
    req.query = None;
    Ok((req, left_out))
}

async fn extract(
    engine: Arc<Engine>,
    args: ExtractArgs,
    progress: Progress,
) -> Result<Served, Failure> {
    let (req, left_out) = extract_request(&engine, args).await?;
    let handle = tokio::runtime::Handle::current();
    let (schema, rows, summary) = tokio::task::spawn_blocking(move || {
        let (mut schema, mut rows, mut summary) = (None, Vec::new(), None);
        tasks::extract_blocking(&engine, &handle, &req, &mut |u| {
            match u {
                ExtractUpdate::Started { schema: s, .. } => schema = Some(s),
                ExtractUpdate::Waiting { busy } => {
                    progress.report(0, 0, format!("waiting for the local model: {busy}"))
                }
                ExtractUpdate::Document(d) => {
                    progress.report(d.done, d.total, d.fields.path.clone());
                    rows.push(d.fields);
                }
                ExtractUpdate::Done(s) => summary = Some(s),
                ExtractUpdate::Error(_) => {}
            }
            !progress.cancelled()
        })?;
        match (schema, summary) {
            (Some(schema), Some(summary)) => Ok((schema, rows, summary)),
            _ => Err(AppError::internal("the extraction ended without a result")),
        }
    })
    .await
    .map_err(|e| Failure::Failed(format!("the extraction stopped: {e}")))??;
    let paths = rows.iter().map(|r| r.path.clone()).collect();
    let value = json!({
        "documents": quarry_core::tasks::table::to_json(&schema, &rows),
        "extracted": summary.extracted,
        "kept_from_before": summary.kept,
        "failed": summary.failed,
        "cancelled": summary.cancelled,
        "seconds": summary.seconds,
        "left_out": left_out.iter().take(MAX_LEFT_OUT_NAMED).collect::<Vec<_>>(),
        "left_out_count": left_out.len(),
    });
    Ok(Served::json(value, paths))
}

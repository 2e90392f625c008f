//! Summaries of whole documents: every passage in reading order, map-reduce
//! with the local model bounded by its context ([`crate::answer::whole`]),
//! each point citing the passage it comes from. Kept per document, model and
//! prompt version, so a summary is written once per content.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::results::{short_key, Kept, KeptResults};
use crate::answer::whole::{bounded, Reader, WholeOptions, WholeTask};
use crate::answer::{AnswerEvent, Source};
use crate::error::{Error, Result};
use crate::generate::LocalModel;
use crate::store::library::Library;
use crate::store::DocumentRecord;

/// Changes when the summary prompts or the reading change: summaries kept
/// from another version are written again.
pub const SUMMARY_VERSION: u32 = 1;

/// The summary of one document.
#[derive(ts_rs::TS, Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Absolute path.
    pub path: String,
    /// sha256 of the content it summarises.
    pub hash: String,
    /// The summary; `[n]` cites passage `n` of the document.
    pub text: String,
    /// The passages it cites (numbered as in the text).
    pub cited: Vec<Source>,
    /// Passages read.
    pub passages: usize,
    /// Passages not read (beyond the reading's bound), from the end.
    pub left_out: usize,
    /// Model calls (notes on each part, combining, the summary).
    pub calls: usize,
    /// Prompt tokens over all calls.
    pub prompt_tokens: usize,
    /// Generated tokens over all calls.
    pub generated_tokens: usize,
    /// Milliseconds it took.
    pub ms: u64,
    /// The model that wrote it.
    pub model: String,
}

impl Kept for Summary {
    fn path(&self) -> &str {
        &self.path
    }
    fn hash(&self) -> &str {
        &self.hash
    }
    fn failed(&self) -> bool {
        self.text.is_empty()
    }
}

/// The summaries written with one model in one library.
pub type SummaryStore = KeptResults<Summary>;

impl SummaryStore {
    /// Open (or start) the summaries by the model `model` (its registry id
    /// or file stem) in the library at `library_dir`.
    pub fn summaries(library_dir: &Path, model: &str) -> Result<Self> {
        let key = short_key(&format!("summary\n{model}\n{SUMMARY_VERSION}"));
        Self::open_file(
            library_dir
                .join("tasks")
                .join(format!("summary-{key}.jsonl")),
            crate::store::sealed::LibraryFiles::of(library_dir)?,
        )
    }
}

/// The indexed document at `path` (absolute), or a clear error.
pub async fn indexed_document(library: &Library, path: &str) -> Result<DocumentRecord> {
    library
        .documents()
        .await?
        .into_iter()
        .find(|d| d.path == path)
        .filter(|d| d.chunks > 0)
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{path} is not an indexed document with text (`quarry status` lists the library)"
            ))
        })
}

/// Summarise `doc`: reuse the summary kept in `store` for its content, else
/// read all its passages with `model` and keep the result. `on_event` gets
/// [`AnswerEvent::Reading`] progress and the summary's text as
/// [`AnswerEvent::Token`]s (a kept summary arrives as one); returning false
/// stops, and a stopped summary is not kept. Also says whether it was kept.
pub fn summarize(
    library: &Library,
    model: &mut LocalModel,
    store: &mut SummaryStore,
    doc: &DocumentRecord,
    opts: &WholeOptions,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> Result<(Summary, bool)> {
    if let Some(kept) = store.fresh(&doc.path, &doc.hash) {
        on_event(AnswerEvent::Token(kept.text.clone()));
        return Ok((kept.clone(), true));
    }
    let started = Instant::now();
    let sources: Vec<Source> = library
        .passages_of(&doc.path)?
        .iter()
        .enumerate()
        .map(|(i, h)| Source::of_hit(i + 1, h))
        .collect();
    if sources.is_empty() {
        return Err(Error::InvalidInput(format!(
            "{} has no indexed text to summarise",
            doc.path
        )));
    }
    let all = sources.len();
    let (sources, left_out) = bounded(sources, opts.max_passages);
    let title = Path::new(&doc.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| doc.path.clone());
    let reading =
        Reader::new(model, WholeTask::Summary { title: &title }, opts, on_event).read(&sources)?;
    let summary = Summary {
        path: doc.path.clone(),
        hash: doc.hash.clone(),
        cited: reading
            .cited
            .iter()
            .filter_map(|n| sources.get(n - 1).cloned())
            .collect(),
        text: reading.text,
        passages: all - left_out,
        left_out,
        calls: reading.calls,
        prompt_tokens: reading.prompt_tokens,
        generated_tokens: reading.generated_tokens,
        ms: started.elapsed().as_millis() as u64,
        model: model.name().to_string(),
    };
    if !reading.stopped && !summary.text.is_empty() {
        store.record(summary.clone())?;
    }
    Ok((summary, false))
}

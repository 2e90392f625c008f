//! Grounded answers: retrieve, number the sources, fit them into the model's
//! context, generate with citations, and keep only citations that exist.
//! [`ask`] is the whole question pipeline (cache, [`router`], local model or
//! provider); [`cache`] remembers answers; [`citations`] checks them;
//! [`whole`] reads every passage for summaries and "list every…" questions;
//! [`floor`] sets, per library, the similarity under which a question is
//! not about the documents;
//! [`rerank`] lets the local model re-score search candidates.

pub mod ask;
pub mod cache;
pub mod citations;
pub mod evidence;
pub mod floor;
pub mod items;
pub mod rerank;
pub mod router;
mod source;
pub mod support;
pub mod whole;

pub use source::Source;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::answer::citations::{attribute, CitationFilter};
use crate::answer::evidence::{best_sentences, Evidence, Trim};
use crate::embed::Embedder;
use crate::error::Result;
use crate::generate::{ChatMessage, GenerateOptions, GenerationStats, LocalModel};
use crate::retrieve::search::{HybridSearch, SearchMode, SearchOptions};
use crate::store::library::Library;
use crate::store::Filter;

/// The sentence Quarry answers with when the documents hold nothing relevant.
pub const NOT_FOUND: &str =
    "The documents in this library do not contain an answer to that question.";

/// Options of `ask`.
#[derive(Debug, Clone)]
pub struct AnswerOptions {
    /// Sources retrieved at most.
    pub sources: usize,
    /// The local model reads the best this-many sources twice, one copy after
    /// the other under the same number: the 1.5B answered squaddev better
    /// from three sources with the best two read twice than from five read
    /// once, in a prompt of the same length (BENCHMARKS.md, "Reading the
    /// best sources twice"). Cloud models read each source once.
    pub reread: usize,
    /// Below this cosine similarity of the best vector hit, and without
    /// [`AnswerOptions::min_keyword_evidence`], Quarry answers [`NOT_FOUND`]
    /// without calling the model. `None` (the default): the embedder's own
    /// floor from the registry ([`Embedder::relevance_floor`]), else
    /// [`DEFAULT_MIN_SIMILARITY`].
    pub min_similarity: Option<f32>,
    /// Keyword evidence (the best keyword hit's BM25 score over
    /// `ln(1 + chunks)`, see `SearchResults::keyword_evidence`) at which the
    /// library counts as holding the question's subject whatever the vectors
    /// say: a passage sharing the question's rare words.
    pub min_keyword_evidence: f32,
    /// Most tokens of prompt (sources + question + instructions).
    pub max_prompt_tokens: usize,
    /// Generation settings.
    pub generate: GenerateOptions,
    /// Restrict retrieval.
    pub filter: Filter,
    /// How much of each source the local model reads, and which sources are
    /// left out for matching the question far worse than the best.
    pub trim: Trim,
    /// Best-matching sentences shown before the answer.
    pub evidence: usize,
    /// When to read every passage of the documents instead of the best few.
    pub whole: WholeReading,
}

/// When a question is answered from every passage of the documents
/// ([`whole`]) rather than the passages that match it best.
#[derive(ts_rs::TS, Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WholeReading {
    /// For questions that ask for every item, a count or a summary
    /// ([`whole::needs_every_passage`]).
    #[default]
    Auto,
    /// For every question.
    Always,
    /// Never: the best passages only.
    Never,
}

impl std::str::FromStr for WholeReading {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(WholeReading::Auto),
            "always" => Ok(WholeReading::Always),
            "never" => Ok(WholeReading::Never),
            o => Err(crate::Error::InvalidInput(format!(
                "unknown reading '{o}' (use auto, always or never)"
            ))),
        }
    }
}

impl Default for AnswerOptions {
    fn default() -> Self {
        AnswerOptions {
            sources: 3,
            reread: 2,
            min_similarity: None,
            min_keyword_evidence: DEFAULT_MIN_KEYWORD_EVIDENCE,
            max_prompt_tokens: 1536,
            generate: GenerateOptions {
                max_tokens: 256,
                ..Default::default()
            },
            filter: Filter::default(),
            trim: Trim::default(),
            evidence: 3,
            whole: WholeReading::Auto,
        }
    }
}

/// The relevance floor for all-MiniLM-L6-v2 (and embedders the registry
/// gives none for): a question is declined
/// when its best vector hit is under this cosine *and* its best keyword hit
/// under [`DEFAULT_MIN_KEYWORD_EVIDENCE`]. Chosen on the rankings of squaddev
/// and four sets of other kinds of text (`bench/retrieval/abstention.py`,
/// BENCHMARKS.md): against the cosine floor alone (0.39) it keeps as many or
/// more answerable questions on every set (squaddev 93.9% → 96.1%) and
/// declines as many or more of those whose answer is absent.
pub const DEFAULT_MIN_SIMILARITY: f32 = 0.40;

/// Keyword evidence that keeps a question from being declined (see
/// [`AnswerOptions::min_keyword_evidence`]); chosen with
/// [`DEFAULT_MIN_SIMILARITY`].
pub const DEFAULT_MIN_KEYWORD_EVIDENCE: f32 = 1.95;

/// Where the answer came from.
#[derive(ts_rs::TS, Debug, Clone, Serialize, Deserialize)]
pub struct Route {
    /// `local`, `cloud`, `cache`, or `none` when no model was called.
    pub target: String,
    /// Why.
    pub reason: String,
    /// Model name.
    pub model: Option<String>,
    /// The task classifier's verdict, when the router ran.
    #[serde(default)]
    pub task: Option<crate::answer::router::TaskVerdict>,
    /// The provider, for cloud answers.
    #[serde(default)]
    pub provider: Option<String>,
}

/// Timings of an answer, in milliseconds.
#[derive(ts_rs::TS, Debug, Clone, Default, Serialize, Deserialize)]
pub struct AnswerTimings {
    /// Retrieval.
    pub retrieval_ms: f64,
    /// Until the first answer token.
    pub first_token_ms: f64,
    /// Everything.
    pub total_ms: f64,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Answer tokens.
    pub generated_tokens: usize,
    /// Prompt processing speed.
    pub prefill_tokens_per_s: f64,
    /// Generation speed.
    pub decode_tokens_per_s: f64,
    /// Deciding the route (task classification included).
    #[serde(default)]
    pub route_ms: f64,
    /// Until the best-matching sentences were shown.
    #[serde(default)]
    pub evidence_ms: f64,
    /// Prompt tokens whose keys and values were reused (instructions or a
    /// conversation already processed).
    #[serde(default)]
    pub reused_prompt_tokens: usize,
    /// Answer tokens drafted from the sources and confirmed by the model in
    /// a batched step (prompt lookup).
    #[serde(default)]
    pub accepted_draft_tokens: usize,
}

/// Events of an answer, in order.
#[derive(Debug, Clone)]
pub enum AnswerEvent {
    /// The sentences of the sources that match the question best, shown
    /// while the answer is composed.
    Evidence(Vec<Evidence>),
    /// The sources were retrieved.
    Sources(Vec<Source>),
    /// The route was decided.
    Route(Route),
    /// Answer text.
    Token(String),
    /// The model is reasoning before it answers (the reasoning is not
    /// shown): `tokens` written so far.
    Thinking {
        /// Reasoning tokens so far.
        tokens: usize,
    },
    /// Text was sent to a provider: exactly this.
    Sent(crate::cloud::Preview),
    /// Reading whole documents: `done` of `total` parts read (the answer
    /// follows once all are).
    Reading {
        /// Parts read.
        done: usize,
        /// Parts in all.
        total: usize,
    },
}

/// A finished answer.
#[derive(ts_rs::TS, Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// The query retrieval used (the question, or a follow-up joined with the previous question).
    pub query: String,
    /// The answer text with valid citations only.
    pub answer: String,
    /// The numbered sources.
    pub sources: Vec<Source>,
    /// Source numbers the answer cites.
    pub cited: Vec<usize>,
    /// Where it came from.
    pub route: Route,
    /// Timings.
    pub timings: AnswerTimings,
    /// What left the machine, for cloud answers.
    #[serde(default)]
    pub sent: Option<crate::cloud::Preview>,
    /// Whether the cited sources back the answer's sentences.
    #[serde(default)]
    pub support: support::Support,
}

impl Answer {
    /// The answer to `retrieved`'s question: its text, the numbered sources
    /// and those it cites, the route and the timings (nothing sent).
    pub(crate) fn finished(
        retrieved: &Retrieved,
        text: String,
        (sources, cited): (Vec<Source>, Vec<usize>),
        route: Route,
        timings: AnswerTimings,
    ) -> Answer {
        Answer {
            query: retrieved.query.clone(),
            support: support::check(&text, &sources),
            answer: text,
            sources,
            cited,
            route,
            timings,
            sent: None,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The instructions. Short answers (the name, number or phrase asked for)
/// measured better on squaddev with the 1.5B than "be brief": see BENCHMARKS.md.
const SYSTEM: &str = "You answer questions using only the numbered sources the user gives you. \
Answer in as few words as the question allows (a name, a number or a short phrase when that \
is the answer) and cite its source in square brackets, like [1]. \
If the sources do not contain the answer, say that the documents do not contain it.";

fn source_header(s: &Source) -> String {
    let name = std::path::Path::new(&s.path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| s.path.clone());
    let mut h = format!("[{}] {name}", s.n);
    if let Some(p) = s.page {
        h.push_str(&format!(", page {p}"));
    }
    if let Some(hd) = &s.heading {
        h.push_str(&format!(", \"{hd}\""));
    }
    h
}

/// One source in the prompt: its header line, its text, a blank line.
fn source_entry(header: &str, text: &str) -> String {
    format!("{header}\n{}\n\n", text.trim())
}

/// The user's turn: the numbered sources, then the question.
fn user_turn(body: &str, question: &str) -> String {
    format!("Sources:\n\n{body}\nQuestion: {question}")
}

fn frame_messages(history: &[ChatMessage], question: &str, body: &str) -> Vec<ChatMessage> {
    let mut m = vec![ChatMessage::new("system", SYSTEM)];
    m.extend(history.iter().cloned());
    m.push(ChatMessage::new("user", user_turn(body, question)));
    m
}

/// The start of every local prompt in a conversation with `history`: the
/// instructions and the conversation so far, up to where the sources go.
/// [`LocalModel::prefill_prefix`] on it before the question arrives leaves
/// only the sources and the question to process when it does.
pub fn prompt_prefix(model: &LocalModel, history: &[ChatMessage]) -> Result<String> {
    const MARK: &str = "\u{E000}sources\u{E000}";
    let rendered = model.render_chat(&frame_messages(history, "?", MARK))?;
    Ok(rendered
        .find(MARK)
        .map(|i| rendered[..i].to_string())
        .unwrap_or_default())
}

/// Evidence first: the candidates lose the sources that match the question
/// far worse than the best (see [`evidence::drop_weak_sources`]), the
/// best-matching sentences go to `on_event` at once, and the sources for the
/// local model are the candidates cut to windows around those sentences.
/// Returns them and the milliseconds until the evidence was shown.
pub fn show_evidence(
    retrieved: &mut Retrieved,
    opts: &AnswerOptions,
    started: Instant,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> (Vec<Source>, f64) {
    let query = retrieved.query.clone();
    retrieved.candidates = evidence::drop_weak_sources(&query, &retrieved.candidates, opts.trim);
    if opts.evidence > 0 {
        let best = best_sentences(&query, &retrieved.candidates, opts.evidence);
        on_event(AnswerEvent::Evidence(best));
    }
    let shown = ms(started.elapsed());
    (
        evidence::trim_sources(&query, &retrieved.candidates, opts.trim),
        shown,
    )
}

/// The chat messages for a frontier model: the same instructions and
/// numbered sources as the local prompt, all of `sources` (its window is large).
pub fn cloud_messages(
    history: &[ChatMessage],
    question: &str,
    sources: &[Source],
) -> Vec<ChatMessage> {
    let body: String = sources
        .iter()
        .map(|s| source_entry(&source_header(s), &s.text))
        .collect();
    frame_messages(history, question, &body)
}

/// Build the chat messages for `question` with as many sources as fit in
/// `budget` tokens, the first `reread` of them written twice where both
/// copies fit; returns the messages and the sources actually used.
pub fn build_prompt(
    model: &LocalModel,
    history: &[ChatMessage],
    question: &str,
    sources: &[Source],
    budget: usize,
    reread: usize,
) -> Result<(Vec<ChatMessage>, Vec<Source>)> {
    let frame = |body: &str| frame_messages(history, question, body);
    let base = model.count_tokens(&model.render_chat(&frame(""))?);
    let mut remaining = budget.saturating_sub(base);
    let mut body = String::new();
    let mut used = Vec::new();
    for s in sources {
        let header = source_header(s);
        let read = s.excerpt.as_deref().unwrap_or(&s.text);
        let entry = source_entry(&header, read);
        let once = model.count_tokens(&entry);
        // The best `reread` sources are read twice (see AnswerOptions::reread)
        // where both copies fit; once where only one does.
        let copies = if used.len() < reread && 2 * once <= remaining {
            2
        } else {
            1
        };
        if once * copies <= remaining {
            remaining -= once * copies;
            for _ in 0..copies {
                body.push_str(&entry);
            }
            used.push(s.clone());
        } else if used.is_empty() && remaining > 64 {
            // The best source alone is too long: keep its beginning.
            let mut text = read.trim().to_string();
            while model.count_tokens(&source_entry(&header, &text)) > remaining && text.len() > 64 {
                let mut cut = text.len() * 3 / 4;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            body.push_str(&source_entry(&header, &text));
            let mut s = s.clone();
            s.excerpt = Some(text);
            used.push(s);
            break;
        } else {
            break;
        }
    }
    Ok((frame(&body), used))
}

const REFERRING: &[&str] = &[
    "it", "its", "it's", "they", "them", "their", "this", "that", "these", "those", "he", "she",
    "his", "her", "him", "there", "then", "one", "ones", "same", "former", "latter",
];

/// The query retrieval should see for a follow-up question: a question that
/// refers back ("when did it open?") or is very short is joined with the
/// previous user question, so "it" finds what it refers to.
pub fn retrieval_query(history: &[ChatMessage], question: &str) -> String {
    let Some(previous) = history.iter().rev().find(|m| m.role == "user") else {
        return question.to_string();
    };
    let words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let refers_back = words.iter().any(|w| REFERRING.contains(&w.as_str()));
    if refers_back || words.len() < 4 {
        format!("{} {}", previous.content.trim(), question.trim())
    } else {
        question.to_string()
    }
}

/// Retrieved sources for a question, before any model is called.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// The query retrieval used.
    pub query: String,
    /// Numbered candidate sources, best first.
    pub candidates: Vec<Source>,
    /// Best vector similarity (0 when there was no vector hit).
    pub best_similarity: f32,
    /// Keyword evidence of the best keyword hit (0 when there was none).
    pub keyword_evidence: f32,
    /// The similarity floor applied (see [`AnswerOptions::min_similarity`]).
    pub similarity_floor: f32,
    /// Whether the best passage clears the relevance floor.
    pub relevant: bool,
    /// How long retrieval took.
    pub elapsed: Duration,
}

/// Retrieve numbered sources for `question` (a follow-up is joined with the
/// previous question, see [`retrieval_query`]).
pub async fn retrieve(
    library: &Library,
    embedder: &Embedder,
    question: &str,
    history: &[ChatMessage],
    opts: &AnswerOptions,
) -> Result<Retrieved> {
    let started = Instant::now();
    let search = HybridSearch::new(library, Some(embedder))?;
    let query = retrieval_query(history, question);
    let results = search
        .search(
            &query,
            &SearchOptions {
                mode: SearchMode::Hybrid,
                k: opts.sources,
                filter: opts.filter.clone(),
                ..Default::default()
            },
        )
        .await?;
    let mut best_similarity = results.best_similarity.unwrap_or(0.0);
    // While the embedding phase of indexing is behind, the best passages may
    // be found by keyword only and have no vector to score: score those few
    // now, so the relevance floor does not decline what the library holds.
    if !results.hits.is_empty() && library.pending_embeddings().await? > 0 {
        let q = embedder.embed_query(&query)?;
        let texts: Vec<String> = results
            .hits
            .iter()
            .map(|h| crate::embed::embedding_text(h.heading.as_deref(), &h.text))
            .collect();
        for v in embedder.embed_documents(&texts)? {
            best_similarity = best_similarity.max(crate::embed::cosine(&q, &v));
        }
    }
    let candidates: Vec<Source> = results
        .hits
        .iter()
        .enumerate()
        .map(|(i, h)| Source::of_hit(i + 1, h))
        .collect();
    let keyword_evidence = results.keyword_evidence.unwrap_or(0.0);
    let seen = results.best_similarity.map(|_| best_similarity);
    let floor = library_floor(library, embedder, opts, seen).await;
    Ok(Retrieved {
        query,
        relevant: about_the_library(best_similarity, floor, keyword_evidence, opts)
            && !candidates.is_empty(),
        candidates,
        best_similarity,
        keyword_evidence,
        similarity_floor: floor,
        elapsed: started.elapsed(),
    })
}

/// The similarity floor for a question in `library`: the one the options
/// set; else the embedder's ([`similarity_floor`]), or the library's own
/// where the embedder's is under what unrelated questions score in it
/// ([`floor`]). Counts `best_similarity` (when vector search scored the
/// question) into the library's recent questions.
async fn library_floor(
    library: &Library,
    embedder: &Embedder,
    opts: &AnswerOptions,
    best_similarity: Option<f32>,
) -> f32 {
    let registry = similarity_floor(opts, embedder);
    if opts.min_similarity.is_some() {
        return registry;
    }
    let mut learned = floor::LibraryFloor::load(library);
    if let Err(e) = learned.refresh(library, embedder).await {
        tracing::debug!("the library's relevance baseline was not measured: {e}");
    }
    let value = learned.floor(registry);
    if let Some(s) = best_similarity {
        learned.observe(s);
    }
    if let Err(e) = learned.save(library) {
        tracing::debug!("the library's relevance floor was not saved: {e}");
    }
    value
}

/// The similarity floor the options set, else the embedder's from the
/// registry, else [`DEFAULT_MIN_SIMILARITY`], before the library's own
/// baseline is consulted ([`floor`]).
pub fn similarity_floor(opts: &AnswerOptions, embedder: &Embedder) -> f32 {
    opts.min_similarity
        .unwrap_or_else(|| registry_floor(embedder.relevance_floor()))
}

/// The floor an embedder starts from: its registry entry's `relevance_floor`,
/// or [`DEFAULT_MIN_SIMILARITY`] (MiniLM's) when the registry gives none.
pub fn registry_floor(relevance_floor: Option<f32>) -> f32 {
    relevance_floor.unwrap_or(DEFAULT_MIN_SIMILARITY)
}

/// Whether the library holds the question's subject: the best vector hit
/// clears the similarity `floor`, or the best keyword hit holds enough of
/// the question's rare words. Either retriever's strong evidence is enough;
/// a question is declined only when neither has any.
pub(crate) fn about_the_library(
    best_similarity: f32,
    floor: f32,
    keyword_evidence: f32,
    opts: &AnswerOptions,
) -> bool {
    best_similarity >= floor || keyword_evidence >= opts.min_keyword_evidence
}

/// The answer given when nothing relevant was retrieved: the model is not called.
pub fn not_found(
    retrieved: &Retrieved,
    opts: &AnswerOptions,
    started: Instant,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> Answer {
    on_event(AnswerEvent::Sources(Vec::new()));
    let route = Route {
        target: "none".into(),
        reason: format!(
            "no passage is relevant enough (best similarity {:.2} < {:.2}, keyword evidence \
             {:.2} < {:.2}); no model was called",
            retrieved.best_similarity,
            retrieved.similarity_floor,
            retrieved.keyword_evidence,
            opts.min_keyword_evidence
        ),
        model: None,
        task: None,
        provider: None,
    };
    on_event(AnswerEvent::Route(route.clone()));
    on_event(AnswerEvent::Token(NOT_FOUND.to_string()));
    let total = ms(started.elapsed());
    Answer {
        query: retrieved.query.clone(),
        answer: NOT_FOUND.to_string(),
        sources: Vec::new(),
        cited: Vec::new(),
        route,
        timings: AnswerTimings {
            retrieval_ms: ms(retrieved.elapsed),
            first_token_ms: total,
            total_ms: total,
            ..Default::default()
        },
        sent: None,
        support: Default::default(),
    }
}

/// The local model's prompt budget under `opts`.
pub fn local_budget(model: &LocalModel, opts: &AnswerOptions) -> usize {
    opts.max_prompt_tokens.min(
        model
            .context_length()
            .saturating_sub(opts.generate.max_tokens + 8),
    )
}

/// Answer text as it streams from a model (local or remote): invalid
/// citations are dropped before the user sees them, the shown text is kept.
pub(crate) struct CitedText {
    filter: CitationFilter,
    shown: String,
    /// Reasoning tokens seen (empty pieces: see [`LocalModel::generate`]).
    thinking: usize,
}

impl CitedText {
    pub(crate) fn new(sources: usize) -> Self {
        CitedText {
            filter: CitationFilter::new(sources),
            shown: String::new(),
            thinking: 0,
        }
    }

    /// Feed a generated piece; what is visible goes to `on_event` (false
    /// stops). An empty piece is a reasoning token: it becomes
    /// [`AnswerEvent::Thinking`].
    pub(crate) fn push(
        &mut self,
        piece: &str,
        on_event: &mut dyn FnMut(AnswerEvent) -> bool,
    ) -> bool {
        if piece.is_empty() {
            self.thinking += 1;
            return on_event(AnswerEvent::Thinking {
                tokens: self.thinking,
            });
        }
        let visible = self.filter.push(piece);
        if visible.is_empty() {
            return true;
        }
        self.shown.push_str(&visible);
        on_event(AnswerEvent::Token(visible))
    }

    /// Flush what the filter held back; the final text and the cited numbers.
    pub(crate) fn finish(
        mut self,
        sources: &[Source],
        on_event: &mut dyn FnMut(AnswerEvent) -> bool,
    ) -> (String, Vec<usize>) {
        let rest = self.filter.finish();
        if !rest.is_empty() {
            self.shown.push_str(&rest);
            on_event(AnswerEvent::Token(rest));
        }
        finish_citations(self.shown.trim().to_string(), &self.filter, sources)
    }
}

/// Keep only valid citations of `text`; when it cites nothing, attribute its
/// sentences to the sources they repeat.
fn finish_citations(
    mut text: String,
    filter: &CitationFilter,
    sources: &[Source],
) -> (String, Vec<usize>) {
    let mut cited = filter.cited().to_vec();
    if cited.is_empty() && !text.is_empty() {
        // The model cited nothing: attribute sentences to the sources they
        // repeat, so every claim that comes from a source still points at it.
        let texts: Vec<&str> = sources.iter().map(|s| s.text.as_str()).collect();
        let (annotated, found) = attribute(&text, &texts, 0.6);
        text = annotated;
        cited = found;
    }
    (text, cited)
}

/// Generate the answer with the local model from already-fitted messages.
#[allow(clippy::too_many_arguments)]
pub fn generate_local(
    model: &mut LocalModel,
    retrieved: &Retrieved,
    messages: &[ChatMessage],
    sources: Vec<Source>,
    route: Route,
    opts: &AnswerOptions,
    started: Instant,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> Result<Answer> {
    let prompt = model.render_chat(messages)?;
    let generation_started = started.elapsed();
    let mut text = CitedText::new(sources.len());
    let (_, stats): (String, GenerationStats) =
        model.generate(&prompt, &opts.generate, &mut |t| text.push(t, on_event))?;
    let (text, cited) = text.finish(&sources, on_event);
    let mut timings = AnswerTimings {
        retrieval_ms: ms(retrieved.elapsed),
        ..Default::default()
    };
    timings.first_token_ms = ms(generation_started + stats.first_token);
    timings.total_ms = ms(started.elapsed());
    timings.prompt_tokens = stats.prompt_tokens;
    timings.generated_tokens = stats.generated_tokens;
    // Over the tokens actually computed (the rest came from the cache).
    timings.prefill_tokens_per_s = stats.prompt_tokens.saturating_sub(stats.reused_tokens) as f64
        / stats.prefill.as_secs_f64().max(1e-9);
    timings.decode_tokens_per_s =
        stats.generated_tokens.saturating_sub(1) as f64 / stats.decode.as_secs_f64().max(1e-9);
    timings.reused_prompt_tokens = stats.reused_tokens;
    timings.accepted_draft_tokens = stats.accepted_tokens;
    Ok(Answer::finished(
        retrieved,
        text,
        (sources, cited),
        route,
        timings,
    ))
}

/// Answer `question` from `library` with the local `model` (no routing, no
/// cache: the pipeline `quarry eval --answers` measures).
pub async fn answer(
    library: &Library,
    embedder: &Embedder,
    model: &mut LocalModel,
    question: &str,
    history: &[ChatMessage],
    opts: &AnswerOptions,
    on_event: &mut dyn FnMut(AnswerEvent) -> bool,
) -> Result<Answer> {
    let started = Instant::now();
    let mut retrieved = retrieve(library, embedder, question, history, opts).await?;
    if !retrieved.relevant {
        return Ok(not_found(&retrieved, opts, started, on_event));
    }
    let (trimmed, evidence_ms) = show_evidence(&mut retrieved, opts, started, on_event);
    let budget = local_budget(model, opts);
    let (messages, sources) =
        build_prompt(model, history, question, &trimmed, budget, opts.reread)?;
    on_event(AnswerEvent::Sources(sources.clone()));
    let route = Route {
        target: "local".into(),
        reason: "answered on this machine".into(),
        model: Some(model.name().to_string()),
        task: None,
        provider: None,
    };
    on_event(AnswerEvent::Route(route.clone()));
    let mut answer = generate_local(
        model, &retrieved, &messages, sources, route, opts, started, on_event,
    )?;
    answer.timings.evidence_ms = evidence_ms;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_retrievers_evidence_keeps_a_question() {
        let opts = AnswerOptions::default();
        let f = DEFAULT_MIN_SIMILARITY;
        // Vectors alone, keywords alone, both, neither.
        assert!(about_the_library(0.45, f, 0.0, &opts));
        assert!(about_the_library(0.30, f, 2.5, &opts));
        assert!(about_the_library(0.60, f, 3.0, &opts));
        assert!(!about_the_library(0.35, f, 1.2, &opts));
        // Each floor is inclusive, and each can be turned off on its own.
        assert!(about_the_library(f, f, 0.0, &opts));
        assert!(about_the_library(0.0, f, opts.min_keyword_evidence, &opts));
        let vectors_only = AnswerOptions {
            min_keyword_evidence: f32::INFINITY,
            ..AnswerOptions::default()
        };
        assert!(!about_the_library(0.30, f, 50.0, &vectors_only));
        // An embedder whose similarities sit higher (e5) has a higher floor.
        assert!(!about_the_library(0.78, 0.80, 1.0, &opts));
    }

    #[test]
    fn follow_ups_are_joined_with_the_previous_question() {
        let h = vec![
            ChatMessage::new("user", "Who designed the Eiffel Tower?"),
            ChatMessage::new("assistant", "Gustave Eiffel's company [1]."),
        ];
        assert_eq!(
            retrieval_query(&h, "When was it finished?"),
            "Who designed the Eiffel Tower? When was it finished?"
        );
        assert_eq!(
            retrieval_query(&h, "And Paris?"),
            "Who designed the Eiffel Tower? And Paris?"
        );
        let q = "What is the boiling point of water at sea level?";
        assert_eq!(retrieval_query(&h, q), q);
        assert_eq!(
            retrieval_query(&[], "When was it finished?"),
            "When was it finished?"
        );
    }

    /// Reasoning tokens (empty pieces) become counted `Thinking` events, not
    /// answer text, and the caller can stop there.
    #[test]
    fn reasoning_tokens_are_thinking_events() {
        let mut text = CitedText::new(1);
        let mut events = Vec::new();
        let mut keep = |e: AnswerEvent| {
            events.push(format!("{e:?}"));
            true
        };
        assert!(text.push("", &mut keep));
        assert!(text.push("", &mut keep));
        assert!(text.push("Paris [1].", &mut keep));
        assert_eq!(
            events,
            [
                "Thinking { tokens: 1 }",
                "Thinking { tokens: 2 }",
                "Token(\"Paris [1].\")"
            ]
        );
        assert!(!CitedText::new(1).push("", &mut |_| false), "stopped");
    }
}

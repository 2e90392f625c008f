//! Reading whole documents: summaries and the questions top-k passages
//! cannot answer ("list every…", "how many … are mentioned") go through
//! every passage in reading order, map-reduce style. The passages are cut
//! into windows that fit the model's context; the model takes cited notes on
//! each window (map), the notes are combined, in rounds while they do not
//! fit one prompt (reduce), and the last round streams as the answer. The
//! passages keep one numbering throughout, so the notes' `[n]` markers and
//! the final text cite the passage itself. Questions that ask for a list or
//! a count take constrained item notes instead, merged without the model
//! ([`super::items`]).

use std::ops::Range;
use std::time::{Duration, Instant};

use super::citations::clean_citations;
use super::items::{self, Item};
use super::{source_header, AnswerEvent, CitedText, Source};
use crate::error::Result;
use crate::generate::{
    cited_text_grammar, ChatMessage, GenerateOptions, GenerationStats, LocalModel,
};

/// What the reading is for.
#[derive(Debug, Clone, Copy)]
pub enum WholeTask<'a> {
    /// Summarise the document named `title`.
    Summary {
        /// The document's name, as the prompt calls it.
        title: &'a str,
    },
    /// Answer a question that needs every passage.
    Question(&'a str),
}

/// Sizes of a reading.
#[derive(Debug, Clone)]
pub struct WholeOptions {
    /// Most tokens of passages (or notes) in one prompt; the model's context
    /// bounds it further.
    pub window_tokens: usize,
    /// Most tokens of one window's notes.
    pub note_tokens: usize,
    /// Most tokens of the final text.
    pub answer_tokens: usize,
    /// Most passages read (the first ones, in the order given).
    pub max_passages: usize,
    /// Sampling (greedy by default).
    pub generate: GenerateOptions,
}

impl Default for WholeOptions {
    fn default() -> Self {
        WholeOptions {
            window_tokens: 1500,
            note_tokens: 160,
            answer_tokens: 320,
            max_passages: 64,
            generate: GenerateOptions {
                lookup: false,
                ..Default::default()
            },
        }
    }
}

/// The result of a reading.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// The final text, its citations checked (`[n]` numbers the passages).
    pub text: String,
    /// Passage numbers the text cites.
    pub cited: Vec<usize>,
    /// Windows the passages were read in (model calls of the map step).
    pub windows: usize,
    /// Model calls in all (map, combining rounds and the final one).
    pub calls: usize,
    /// Prompt tokens over all calls.
    pub prompt_tokens: usize,
    /// Generated tokens over all calls.
    pub generated_tokens: usize,
    /// Time processing prompts, over all calls.
    pub prefill: Duration,
    /// Time generating, over all calls.
    pub decode: Duration,
    /// From the start to the first token of the final text.
    pub first_token: Duration,
    /// Whether the caller stopped it (the text is then what was written).
    pub stopped: bool,
}

const SUMMARY_PART: &str = "You take notes on one part of a document. Using only the \
numbered passages, write two or three sentences on the main points of this part. After each \
point, put the number of its passage in square brackets, like [3].";

const SUMMARY_ALL: &str = "You summarise a document. Using only the numbered passages, \
write one paragraph of at most five sentences: what the document is, then its main points. \
After each point, put the number of its passage in square brackets, like [3].";

const SUMMARY_COMBINE: &str = "You summarise a document from notes on its parts, given in \
order. Write one paragraph of at most five sentences: what the document is, then its main \
points. Keep the bracketed passage numbers of the notes, like [3], after the points they \
support. Use only the notes.";

const QUESTION_PART: &str = "You read one part of some documents for a question that needs \
all of them. Using only the numbered passages, write every item that answers the question on its \
own line, the words of the item first and then the number of its passage in square brackets. If \
no passage answers it, write only: NONE";

const QUESTION_ALL: &str = "You answer a question that needs every passage of the \
documents. Using only the numbered passages, write every distinct item that answers the question \
on its own line, the words of the item first and then the number of its passage in square \
brackets. When the question asks how many, give the number of distinct items first. If no \
passage answers it, say that the documents do not contain it.";

const QUESTION_COMBINE: &str = "You answer a question from notes taken on every part of the \
documents, given in order; each line of a note is an item and the number of its passage in \
square brackets. Combine the notes: write every distinct item once, on its own line, the words \
of the item first and then its passage numbers in square brackets. When the question asks how \
many, count the distinct items and give the number first. Use only the notes.";

/// Most tokens of one window's item notes (a full list of
/// [`items::MAX_ITEMS_PER_WINDOW`] items with their keys fits).
const ITEM_NOTE_TOKENS: usize = 720;

/// What a whole-document question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asks {
    /// A list of all of something.
    List,
    /// How many of something the documents mention.
    Count,
    /// A summary or an overview.
    Summary,
}

/// Whether `question` needs every passage of the documents rather than the
/// few that match it best: it asks for a list of all of something, a count
/// of what the documents mention, or a summary. A plain "how many people
/// live in…" is a fact in one passage and stays with top-k retrieval.
pub fn needs_every_passage(question: &str) -> bool {
    asks(question).is_some()
}

fn asks(question: &str) -> Option<Asks> {
    let q = question.to_lowercase();
    let words: Vec<&str> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let pair = |a: &str, b: &str| words.windows(2).any(|w| w[0] == a && w[1] == b);
    let first = words.first().copied().unwrap_or_default();
    let any = |set: &[&str]| words.iter().any(|w| set.contains(w));
    let summary = matches!(first, "summarize" | "summarise")
        || any(&["summary", "summarize", "summarise", "overview"]);
    let listing = matches!(first, "list" | "enumerate")
        || ["all", "every", "each"]
            .iter()
            .any(|w| pair("list", w) || pair("name", w))
        || pair("what", "are") && pair("are", "all");
    let counting = (pair("how", "many") || first == "count")
        && any(&[
            "mentioned",
            "mention",
            "mentions",
            "listed",
            "named",
            "appear",
            "appears",
            "document",
            "documents",
            "file",
            "files",
            "these",
            "this",
        ]);
    if counting {
        Some(Asks::Count)
    } else if summary {
        Some(Asks::Summary)
    } else if listing {
        Some(Asks::List)
    } else {
        None
    }
}

/// A numbered passage as the prompt shows it.
fn entry(s: &Source) -> String {
    format!("{}\n{}\n\n", source_header(s), s.text.trim())
}

/// Consecutive groups of `items` whose token counts sum to at most
/// `budget` (an item larger than the budget is a group of its own).
fn windows(costs: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, &c) in costs.iter().enumerate() {
        if i > start && used + c > budget {
            out.push(start..i);
            (start, used) = (i, 0);
        }
        used += c;
    }
    if start < costs.len() {
        out.push(start..costs.len());
    }
    out
}

/// Stops a small model that writes in circles: once a sentence of at
/// least [`LoopGuard::MIN_SENTENCE`] characters comes a second time, it
/// says so, and the text is cut before the repeat.
#[derive(Debug, Default)]
struct LoopGuard {
    text: String,
    /// Where the repeat starts, once one is found.
    cut: Option<usize>,
}

impl LoopGuard {
    const MIN_SENTENCE: usize = 20;

    /// Take the next piece; false once the text repeats itself.
    fn push(&mut self, piece: &str) -> bool {
        if self.cut.is_some() {
            return false;
        }
        self.text.push_str(piece);
        if !piece.contains(['.', '!', '?', '\n']) {
            return true;
        }
        let ends = |c: char| matches!(c, '.' | '!' | '?' | '\n');
        let Some(end) = self.text.rfind(ends) else {
            return true;
        };
        let start = self.text[..end].rfind(ends).map_or(0, |i| i + 1);
        let sentence = self.text[start..=end].trim();
        let repeated =
            sentence.len() >= Self::MIN_SENTENCE && self.text[..start].contains(sentence);
        if repeated || self.third_line_in_a_row(start, sentence) {
            self.cut = Some(start);
            return false;
        }
        true
    }

    /// Whether `line`, which starts at `start`, is the same as the two
    /// lines before it (a list written in circles: "MIT\nMIT\nMIT\n").
    fn third_line_in_a_row(&self, start: usize, line: &str) -> bool {
        if line.is_empty() || !self.text.ends_with('\n') {
            return false;
        }
        let mut before = self.text[..start].lines().rev().map(str::trim);
        before.next() == Some(line) && before.next() == Some(line)
    }

    /// The text up to the repeat (all of it when there was none).
    fn kept(&self) -> &str {
        &self.text[..self.cut.unwrap_or(self.text.len())]
    }
}

/// Reads `sources` (numbered from 1 in reading order) with `model` for `task`.
pub struct Reader<'m, 'e> {
    model: &'m mut LocalModel,
    task: WholeTask<'e>,
    opts: &'e WholeOptions,
    on_event: &'e mut dyn FnMut(AnswerEvent) -> bool,
    reading: Reading,
    started: Instant,
}

impl<'m, 'e> Reader<'m, 'e> {
    /// A reader; `on_event` gets [`AnswerEvent::Reading`] progress and the
    /// final text's [`AnswerEvent::Token`]s (false stops).
    pub fn new(
        model: &'m mut LocalModel,
        task: WholeTask<'e>,
        opts: &'e WholeOptions,
        on_event: &'e mut dyn FnMut(AnswerEvent) -> bool,
    ) -> Self {
        Reader {
            model,
            task,
            opts,
            on_event,
            reading: Reading::default(),
            started: Instant::now(),
        }
    }

    /// Tokens of passages or notes one prompt may hold.
    fn budget(&self) -> usize {
        let reserve = self.opts.answer_tokens.max(self.opts.note_tokens) + 256;
        self.opts
            .window_tokens
            .min(self.model.context_length().saturating_sub(reserve))
            .max(64)
    }

    /// Read every passage of `sources` and write the summary or answer.
    pub fn read(mut self, sources: &[Source]) -> Result<Reading> {
        let entries: Vec<String> = sources.iter().map(entry).collect();
        let costs: Vec<usize> = entries.iter().map(|e| self.model.count_tokens(e)).collect();
        let parts = windows(&costs, self.budget());
        self.reading.windows = parts.len();
        if let WholeTask::Question(q) = self.task {
            if let Some(kind @ (Asks::List | Asks::Count)) = asks(q) {
                return self.read_items(q, kind, sources, &entries, &parts);
            }
        }
        if parts.len() <= 1 {
            let body: String = entries.concat();
            self.finish(&body, false, sources)?;
            return Ok(self.reading);
        }
        let mut notes = Vec::with_capacity(parts.len());
        for (done, part) in parts.iter().enumerate() {
            if !self.reading_on(done, parts.len()) {
                return Ok(self.reading);
            }
            let body: String = entries[part.clone()].concat();
            let cites: Vec<usize> = sources[part.clone()].iter().map(|s| s.n).collect();
            let note = self.note(&body, &cites, sources.len())?;
            if !note.is_empty() {
                notes.push(note);
            }
        }
        (self.on_event)(AnswerEvent::Reading {
            done: parts.len(),
            total: parts.len(),
        });
        if notes.is_empty() {
            return Ok(self.nothing_found(sources));
        }
        self.combine(notes, sources)
    }

    /// Tell the caller `done` of `total` windows are read; false (and the
    /// reading marked stopped) when the caller wants it to stop.
    fn reading_on(&mut self, done: usize, total: usize) -> bool {
        let go_on = (self.on_event)(AnswerEvent::Reading { done, total });
        self.reading.stopped |= !go_on;
        go_on
    }

    /// A list or count question: item notes on each window, merged, and the
    /// answer written from the merged items (streamed at once, citations
    /// checked as for any answer).
    fn read_items(
        mut self,
        question: &str,
        kind: Asks,
        sources: &[Source],
        entries: &[String],
        parts: &[Range<usize>],
    ) -> Result<Reading> {
        let mut found: Vec<Item> = Vec::new();
        for (done, part) in parts.iter().enumerate() {
            if !self.reading_on(done, parts.len()) {
                return Ok(self.reading);
            }
            let body: String = entries[part.clone()].concat();
            let numbers = sources[part.start].n..sources[part.end - 1].n + 1;
            let notes = self.item_notes(question, &body, numbers)?;
            items::merge(&mut found, notes);
        }
        (self.on_event)(AnswerEvent::Reading {
            done: parts.len(),
            total: parts.len(),
        });
        let text = items::render(&found, kind == Asks::Count, sources.len());
        self.reading.first_token = self.started.elapsed();
        let on_event = &mut *self.on_event;
        let mut cited = CitedText::new(sources.len());
        cited.push(&text, on_event);
        (self.reading.text, self.reading.cited) = cited.finish(sources, on_event);
        Ok(self.reading)
    }

    /// The items of one window that answer `question`, each citing one of
    /// the window's passages (`numbers`).
    fn item_notes(
        &mut self,
        question: &str,
        body: &str,
        numbers: Range<usize>,
    ) -> Result<Vec<Item>> {
        let user = format!("Question: {question}\n\nPassages:\n\n{body}\nQuestion: {question}");
        let prompt = self.model.render_chat(&[
            ChatMessage::new("system", items::ITEMS_PROMPT),
            ChatMessage::new("user", user),
        ])?;
        let gen = GenerateOptions {
            max_tokens: ITEM_NOTE_TOKENS,
            ..self.opts.generate.clone()
        };
        let schema = items::window_schema(numbers);
        let (notes, stats) = self
            .model
            .generate_json(&prompt, &schema, &gen, &mut |_| true)?;
        self.count(&stats);
        tracing::debug!(%notes, "item notes");
        Ok(items::parse(&notes))
    }

    /// Combine notes in rounds until they fit one prompt, then write the
    /// final text from them.
    fn combine(mut self, mut notes: Vec<String>, sources: &[Source]) -> Result<Reading> {
        loop {
            let costs: Vec<usize> = notes.iter().map(|n| self.model.count_tokens(n)).collect();
            let groups = windows(&costs, self.budget());
            if groups.len() <= 1 || groups.len() == notes.len() {
                // One prompt, or notes that no longer shrink: write from all.
                let body = notes.join("\n\n");
                self.finish(&body, true, sources)?;
                return Ok(self.reading);
            }
            let mut merged = Vec::with_capacity(groups.len());
            for g in groups {
                let all: Vec<usize> = sources.iter().map(|s| s.n).collect();
                let body = notes[g].join("\n\n");
                let note = self.generate_note(&body, true, &all, sources.len())?;
                if !note.is_empty() {
                    merged.push(note);
                }
            }
            notes = merged;
            if notes.is_empty() {
                return Ok(self.nothing_found(sources));
            }
        }
    }

    /// The notes on one window of passages (empty when a question's window
    /// holds nothing that answers it).
    fn note(&mut self, body: &str, cites: &[usize], sources: usize) -> Result<String> {
        self.generate_note(body, false, cites, sources)
    }

    fn generate_note(
        &mut self,
        body: &str,
        combining: bool,
        cites: &[usize],
        sources: usize,
    ) -> Result<String> {
        let (system, user) = self.prompt(body, combining, false);
        let prompt = self.model.render_chat(&[
            ChatMessage::new("system", system),
            ChatMessage::new("user", user),
        ])?;
        let gen = GenerateOptions {
            max_tokens: self.opts.note_tokens,
            ..self.opts.generate.clone()
        };
        let mut guard = LoopGuard::default();
        let stats = generate(self.model, self.task, &prompt, &gen, cites, &mut |t| {
            guard.push(t)
        })?;
        self.count(&stats);
        let (text, _) = clean_citations(guard.kept().trim(), sources);
        tracing::debug!(combining, raw = guard.kept(), "note: {text}");
        let none = text
            .trim_matches(|c: char| !c.is_alphanumeric())
            .eq_ignore_ascii_case("none");
        Ok(if none { String::new() } else { text })
    }

    /// Write the final text from passages or notes, streaming it.
    fn finish(&mut self, body: &str, from_notes: bool, sources: &[Source]) -> Result<()> {
        let (system, user) = self.prompt(body, from_notes, true);
        let prompt = self.model.render_chat(&[
            ChatMessage::new("system", system),
            ChatMessage::new("user", user),
        ])?;
        let gen = GenerateOptions {
            max_tokens: self.opts.answer_tokens,
            ..self.opts.generate.clone()
        };
        let before = self.started.elapsed();
        let mut text = CitedText::new(sources.len());
        let mut guard = LoopGuard::default();
        let cites: Vec<usize> = sources.iter().map(|s| s.n).collect();
        let on_event = &mut *self.on_event;
        let stats = generate(self.model, self.task, &prompt, &gen, &cites, &mut |t| {
            guard.push(t) && text.push(t, on_event)
        })?;
        let (text, cited) = match guard.cut {
            // Written in circles: the text before the repeat (what streamed
            // of the repeat is replaced by the final text).
            Some(_) => {
                let mut kept = CitedText::new(sources.len());
                kept.push(guard.kept(), &mut |_| true);
                kept.finish(sources, &mut |_| true)
            }
            None => text.finish(sources, on_event),
        };
        self.reading.first_token = before + stats.first_token;
        self.reading.stopped =
            stats.stop == crate::generate::StopReason::Cancelled && guard.cut.is_none();
        self.count(&stats);
        self.reading.text = text;
        self.reading.cited = cited;
        Ok(())
    }

    fn count(&mut self, stats: &GenerationStats) {
        self.reading.calls += 1;
        self.reading.prompt_tokens += stats.prompt_tokens;
        self.reading.generated_tokens += stats.generated_tokens;
        self.reading.prefill += stats.prefill;
        self.reading.decode += stats.total.saturating_sub(stats.prefill);
    }

    /// No window held anything for the question: say so without a model call.
    fn nothing_found(mut self, sources: &[Source]) -> Reading {
        let text = format!(
            "None of the {} passages read answers that question.",
            sources.len()
        );
        self.reading.first_token = self.started.elapsed();
        (self.on_event)(AnswerEvent::Token(text.clone()));
        self.reading.text = text;
        self.reading
    }

    /// System and user messages for a window (`combining`: of notes) or the
    /// final text (`last`).
    fn prompt(&self, body: &str, combining: bool, last: bool) -> (&'static str, String) {
        match self.task {
            WholeTask::Summary { title } => {
                let system = match (combining, last) {
                    (true, _) => SUMMARY_COMBINE,
                    (false, true) => SUMMARY_ALL,
                    (false, false) => SUMMARY_PART,
                };
                let what = if combining {
                    "Notes on"
                } else {
                    "Passages from"
                };
                let ask = if last {
                    "Write the summary."
                } else {
                    "Write the notes."
                };
                (system, format!("{what} \"{title}\":\n\n{body}\n{ask}"))
            }
            WholeTask::Question(q) => {
                let system = match (combining, last) {
                    (true, _) => QUESTION_COMBINE,
                    (false, true) => QUESTION_ALL,
                    (false, false) => QUESTION_PART,
                };
                // The question first too: the model reads with it in mind.
                let what = if combining { "Notes" } else { "Passages" };
                (
                    system,
                    format!("Question: {q}\n\n{what}:\n\n{body}\nQuestion: {q}"),
                )
            }
        }
    }
}

/// Generate after `prompt`. A summary's text must cite one of `cites` after
/// every run of [`crate::generate::MAX_UNCITED_CHARS`] characters (constrained decoding);
/// other readings write freely.
fn generate(
    model: &mut LocalModel,
    task: WholeTask<'_>,
    prompt: &str,
    gen: &GenerateOptions,
    cites: &[usize],
    on_text: &mut dyn FnMut(&str) -> bool,
) -> Result<GenerationStats> {
    Ok(match task {
        WholeTask::Summary { .. } if !cites.is_empty() => {
            let grammar = cited_text_grammar(cites);
            model.generate_constrained(prompt, grammar, gen, on_text)?.1
        }
        _ => model.generate(prompt, gen, on_text)?.1,
    })
}

/// The passages of `sources` a reading takes: all of them when they are at
/// most `max`, else the first `max`; and how many were left out.
pub fn bounded(sources: Vec<Source>, max: usize) -> (Vec<Source>, usize) {
    let left = sources.len().saturating_sub(max);
    let mut sources = sources;
    sources.truncate(max);
    (sources, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_document_questions_are_told_from_fact_lookups() {
        for q in [
            "List every supplier named in the contracts",
            "list all the parties",
            "Which are all the deadlines? Name all of them",
            "How many invoices are mentioned in these files?",
            "how many people are named in the report",
            "Summarise this document",
            "Give me an overview of the claims",
            "Count the clauses that mention renewal in this contract",
        ] {
            assert!(needs_every_passage(q), "{q}");
        }
        for q in [
            "How many people live in Paris?",
            "Who designed the Eiffel Tower?",
            "When was the listing agreement signed?",
            "What is every day life like in Warsaw?",
        ] {
            assert!(!needs_every_passage(q), "{q}");
        }
    }

    #[test]
    fn lists_and_counts_are_told_from_summaries() {
        assert_eq!(asks("List every supplier named"), Some(Asks::List));
        assert_eq!(asks("name all the parties"), Some(Asks::List));
        assert_eq!(asks("How many invoices are mentioned?"), Some(Asks::Count));
        assert_eq!(asks("Summarise this document"), Some(Asks::Summary));
        assert_eq!(asks("give an overview of every claim"), Some(Asks::Summary));
        assert_eq!(asks("Who signed the lease?"), None);
    }

    #[test]
    fn a_sentence_written_twice_stops_the_text_before_the_repeat() {
        let mut g = LoopGuard::default();
        let first = "The register lists eight suppliers [1]. ";
        assert!(g.push(first));
        assert!(g.push("Each has a contract owner [2]. "));
        assert!(g.push("The register lists eight"));
        assert!(!g.push(" suppliers [1]."), "the repeat is seen at its end");
        assert_eq!(
            g.kept().trim(),
            format!("{first}Each has a contract owner [2].").trim()
        );
        assert!(!g.push("more"), "stays stopped");
        // Short sentences may repeat ("Yes." "Yes."), and text without a
        // repeat is kept whole.
        let mut g = LoopGuard::default();
        for p in ["Yes. ", "Yes. ", "A list:\n", "- GPL-2+\n", "- MIT\n"] {
            assert!(g.push(p), "{p}");
        }
        assert_eq!(g.kept(), "Yes. Yes. A list:\n- GPL-2+\n- MIT\n");
        // A line three times in a row is a loop; twice may be the document's.
        let mut g = LoopGuard::default();
        for p in ["ISC\n", "BSD-3-Clause\n", "BSD-3-Clause\n"] {
            assert!(g.push(p), "{p}");
        }
        assert!(!g.push("BSD-3-Clause\n"));
        assert_eq!(g.kept(), "ISC\nBSD-3-Clause\nBSD-3-Clause\n");
    }

    #[test]
    fn windows_group_consecutive_items_within_the_budget() {
        assert_eq!(windows(&[40, 40, 40, 40], 100), vec![0..2, 2..4]);
        assert_eq!(windows(&[150, 10, 10], 100), vec![0..1, 1..3]);
        assert_eq!(windows(&[10, 150, 10], 100), vec![0..1, 1..2, 2..3]);
        assert_eq!(windows(&[], 100), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(windows(&[100], 100), vec![0..1]);
    }

    #[test]
    fn a_reading_is_bounded_to_the_first_passages() {
        let s: Vec<Source> = (1..=5).map(|n| Source::for_test(n, "x")).collect();
        let (kept, left) = bounded(s, 3);
        assert_eq!((kept.len(), left), (3, 2));
        assert_eq!(kept[2].n, 3);
    }
}

//! Retrieval quality on the user's own library, without labels: the local
//! model writes one search question per sampled passage, and each search mode
//! is scored on finding the document the question was written from.
//!
//! What the figure can say: how the modes compare with each other on this
//! library, for questions about one passage. What it cannot: how good
//! answers are, how search does on questions that span documents or on the
//! user's own way of asking; a model that reuses the passage's words favours
//! keyword search. It is not comparable with scores on labelled benchmarks.

use std::collections::HashMap;

use crate::error::Result;
use crate::eval::{evaluate_by, ModeScores, Query};
use crate::generate::{ChatMessage, GenerateOptions, LocalModel};
use crate::retrieve::search::{HybridSearch, SearchMode, SearchOptions};
use crate::store::library::Library;
use crate::store::{DocState, Hit};

/// What `quarry eval --synthetic` prints under its figures.
pub const CAVEAT: &str =
    "These questions were written by the local model, each from one passage; a \
mode scores by finding the document its question came from. Use the figures to compare the modes \
on this library. They do not measure answers, questions that span documents, or the way you ask, \
and a model that reuses the passage's words favours keyword search; do not compare them with other \
libraries or with labelled benchmarks.";

/// Shortest passage worth a question, in characters.
const MIN_PASSAGE_CHARS: usize = 200;
/// Most characters of a passage the model reads.
const MAX_PASSAGE_CHARS: usize = 1_500;

/// One written question and where it came from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SyntheticQuery {
    /// The question.
    pub question: String,
    /// The document it was written from.
    pub path: String,
    /// The passage it was written from.
    pub chunk_id: String,
}

/// Up to `n` passages of at least 200 characters, one per document, from
/// documents spread evenly over the library in path order (a document with
/// no passage that long gives way to the next one); within a document, the
/// first long enough passage from a point fixed by its path.
pub async fn sample_passages(lib: &Library, n: usize) -> Result<Vec<Hit>> {
    let mut docs: Vec<String> = lib
        .documents()
        .await?
        .into_iter()
        .filter(|d| d.state == DocState::Indexed && d.chunks > 0)
        .map(|d| d.path)
        .collect();
    docs.sort();
    // Every stride-th document first, then the ones between them.
    let stride = (docs.len() / n.max(1)).max(1);
    let order = (0..stride).flat_map(|offset| (offset..docs.len()).step_by(stride));
    let mut out = Vec::new();
    for i in order {
        if out.len() == n {
            break;
        }
        let chunks = lib.passages_of(&docs[i])?;
        let id = crate::store::ids::doc_id(&docs[i]);
        let start = usize::from_str_radix(&id[..8], 16).unwrap_or(0) % chunks.len().max(1);
        let long = (0..chunks.len())
            .map(|k| &chunks[(start + k) % chunks.len()])
            .find(|c| c.text.chars().count() >= MIN_PASSAGE_CHARS);
        if let Some(c) = long {
            out.push(c.clone());
        }
    }
    Ok(out)
}

/// The prompt asking for one question about `passage`.
fn question_prompt(model: &LocalModel, passage: &str) -> Result<String> {
    let text: String = passage.chars().take(MAX_PASSAGE_CHARS).collect();
    model.render_chat(&[
        ChatMessage::new(
            "system",
            "You write the search queries people type to find documents.",
        ),
        ChatMessage::new(
            "user",
            format!(
                "Passage:\n{text}\n\nWrite one question that this passage answers, as someone \
                 who has not read it would ask it. Use your own words. Reply with the question only."
            ),
        ),
    ])
}

/// The question in a model's reply: its first line up to the first `?`,
/// without quotes or a "Question:" label; `None` when that is not a question
/// of 3 to 40 words (a statement, a refusal, an empty reply).
pub fn clean_question(reply: &str) -> Option<String> {
    let line = reply.lines().map(str::trim).find(|l| !l.is_empty())?;
    let line = line
        .trim_start_matches(|c: char| c == '-' || c == '*' || c.is_whitespace())
        .trim_start_matches("Question:")
        .trim()
        .trim_start_matches(['"', '\'', '*']);
    let end = line.find('?')?;
    let question = line[..=end].trim();
    let words = question.split_whitespace().count();
    (3..=40).contains(&words).then(|| question.to_string())
}

/// One question per passage with `model` (greedy, at most 48 tokens each);
/// `on_each` hears each passage's number and its question, or `None` when
/// the reply was not usable or repeats an earlier question (it is left out).
pub fn write_questions(
    model: &mut LocalModel,
    passages: &[Hit],
    on_each: &mut dyn FnMut(usize, Option<&str>),
) -> Result<Vec<SyntheticQuery>> {
    let opts = GenerateOptions {
        max_tokens: 48,
        stop: vec!["\n".into()],
        ..Default::default()
    };
    let mut out: Vec<SyntheticQuery> = Vec::new();
    for (i, p) in passages.iter().enumerate() {
        let prompt = question_prompt(model, &p.text)?;
        let (reply, _) = model.generate(&prompt, &opts, &mut |_| true)?;
        // The same question twice says nothing more (and has two answers).
        let question = clean_question(&reply)
            .filter(|q| !out.iter().any(|o| o.question.eq_ignore_ascii_case(q)));
        on_each(i, question.as_deref());
        if let Some(question) = question {
            out.push(SyntheticQuery {
                question,
                path: p.path.clone(),
                chunk_id: p.chunk_id.clone(),
            });
        }
    }
    Ok(out)
}

/// Each mode's scores on `queries`, a question relevant to its document only.
pub async fn score_modes(
    search: &HybridSearch<'_>,
    queries: &[SyntheticQuery],
    modes: &[SearchMode],
    template: &SearchOptions,
) -> Result<Vec<(SearchMode, ModeScores)>> {
    let as_queries: Vec<Query> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| Query {
            id: format!("s{i}"),
            text: q.question.clone(),
            answers: Vec::new(),
        })
        .collect();
    let qrels: HashMap<String, HashMap<String, u32>> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (format!("s{i}"), HashMap::from([(q.path.clone(), 1)])))
        .collect();
    let mut out = Vec::new();
    for mode in modes {
        let opts = SearchOptions {
            mode: *mode,
            ..template.clone()
        };
        let scores = evaluate_by(search, &as_queries, &qrels, &opts, |p| p.to_string()).await?;
        out.push((*mode, scores));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::clean_question;

    #[test]
    fn replies_become_questions_or_nothing() {
        assert_eq!(
            clean_question("\"How do glaciers respond to warmer summers?\"\nMore text").as_deref(),
            Some("How do glaciers respond to warmer summers?")
        );
        assert_eq!(
            clean_question("Question: when was the lease signed?").as_deref(),
            Some("when was the lease signed?")
        );
        assert_eq!(
            clean_question("What is X? What is Y?").as_deref(),
            Some("What is X?")
        );
        assert_eq!(clean_question("The library is used for sockets."), None);
        assert_eq!(clean_question("  \n- Why?"), None);
        assert_eq!(clean_question(""), None);
        assert_eq!(clean_question(&format!("{}?", "word ".repeat(60))), None);
    }
}

//! Answer quality on datasets whose queries carry gold answers (SQuAD-style):
//! exact match and token F1 with SQuAD's normalisation, how often an answer
//! cites a valid source, and how often Quarry declines.

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;

use crate::answer::citations::strip_citations;
use crate::answer::{answer, AnswerOptions};
use crate::embed::Embedder;
use crate::error::Result;
use crate::eval::{percentile_ms, Query};
use crate::generate::LocalModel;
use crate::store::library::Library;

/// SQuAD's answer normalisation: lower case, no punctuation, no articles
/// (a, an, the), single spaces.
pub fn normalize_answer(s: &str) -> String {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .map(|c| {
            if c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace()) {
                ' '
            } else {
                c
            }
        })
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1.0 when the normalised prediction equals a normalised gold answer.
pub fn exact_match(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize_answer(prediction);
    if golds.iter().any(|g| normalize_answer(g) == p) {
        1.0
    } else {
        0.0
    }
}

/// Best token-overlap F1 of the prediction against the gold answers.
pub fn token_f1(prediction: &str, golds: &[String]) -> f64 {
    let p = normalize_answer(prediction);
    let p: Vec<&str> = p.split_whitespace().collect();
    golds
        .iter()
        .map(|g| {
            let g = normalize_answer(g);
            let g: Vec<&str> = g.split_whitespace().collect();
            if p.is_empty() || g.is_empty() {
                return if p == g { 1.0 } else { 0.0 };
            }
            let mut counts: HashMap<&str, i32> = HashMap::new();
            for t in &g {
                *counts.entry(t).or_default() += 1;
            }
            let mut common = 0;
            for t in &p {
                if let Some(c) = counts.get_mut(t) {
                    if *c > 0 {
                        *c -= 1;
                        common += 1;
                    }
                }
            }
            if common == 0 {
                return 0.0;
            }
            let precision = common as f64 / p.len() as f64;
            let recall = common as f64 / g.len() as f64;
            2.0 * precision * recall / (precision + recall)
        })
        .fold(0.0, f64::max)
}

/// 1.0 when a normalised gold answer appears inside the normalised prediction
/// (a fairer view of a model that answers in sentences).
pub fn contains_answer(prediction: &str, golds: &[String]) -> f64 {
    let p = format!(" {} ", normalize_answer(prediction));
    if golds.iter().any(|g| {
        let g = normalize_answer(g);
        !g.is_empty() && p.contains(&format!(" {g} "))
    }) {
        1.0
    } else {
        0.0
    }
}

/// Whether an answer says the documents do not hold the answer.
fn declines(text: &str) -> bool {
    let t = text.to_lowercase();
    [
        "do not contain",
        "does not contain",
        "don't contain",
        "doesn't contain",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Answer-quality figures over a set of questions.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerScores {
    /// Questions asked.
    pub questions: usize,
    /// Mean exact match (SQuAD normalisation), declined answers count 0.
    pub exact_match: f64,
    /// Mean token F1.
    pub f1: f64,
    /// Share of answers that contain a gold answer.
    pub contains_answer: f64,
    /// Share of questions where a gold answer is in one of the passages
    /// retrieved for the model (whole): what retrieval made possible.
    pub gold_in_passages: f64,
    /// Share where it is in what the model read of them (the windows cut
    /// around the best-matching sentences): what the prompt made possible.
    pub gold_in_prompt: f64,
    /// Share of answers (not declined) with at least one valid citation.
    pub cited: f64,
    /// Share of questions Quarry declined (relevance floor or the model said so).
    pub abstained: f64,
    /// Share declined by the relevance floor without calling the model.
    pub abstained_before_model: f64,
    /// Median time to first token.
    pub first_token_ms_p50: f64,
    /// Time to first token, 10th and 90th percentiles.
    pub first_token_ms_p10: f64,
    /// 90th percentile.
    pub first_token_ms_p90: f64,
    /// Median time until the best-matching sentences were shown.
    pub evidence_ms_p50: f64,
    /// Median total time.
    pub total_ms_p50: f64,
    /// Median prompt length of the answers the model gave, in tokens.
    pub prompt_tokens_p50: f64,
    /// Median decoding speed, tokens per second.
    pub decode_tokens_per_s_p50: f64,
    /// Share of answer tokens drafted from the sources and confirmed.
    pub drafted_share: f64,
    /// Sentences that cite a source, over all answers.
    pub cited_sentences: usize,
    /// Share of them that their cited sources back (numbers and most words).
    pub supported_sentences: f64,
}

/// The `p`th percentile of `v` (nearest rank, as [`percentile_ms`]; 0 when empty).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let idx = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[idx.clamp(1, v.len()) - 1]
}

/// Ask every question with [`answer`] and score the answers against the gold ones.
pub async fn evaluate_answers(
    library: &Library,
    embedder: &Embedder,
    model: &mut LocalModel,
    queries: &[Query],
    opts: &AnswerOptions,
    on_answer: &mut dyn FnMut(&Query, &crate::answer::Answer),
) -> Result<AnswerScores> {
    let (mut em, mut f1, mut contains) = (0.0, 0.0, 0.0);
    let (mut in_passages, mut in_prompt) = (0.0, 0.0);
    let (mut cited, mut answered, mut declined, mut floor) = (0usize, 0usize, 0usize, 0usize);
    let mut first = Vec::new();
    let mut total = Vec::new();
    let (mut evidence, mut prompts, mut decode) = (Vec::new(), Vec::new(), Vec::new());
    let (mut generated, mut drafted) = (0usize, 0usize);
    let (mut sentences, mut unsupported) = (0usize, 0usize);
    let asked: Vec<&Query> = queries.iter().filter(|q| !q.answers.is_empty()).collect();
    for q in &asked {
        let a = answer(library, embedder, model, &q.text, &[], opts, &mut |_| true).await?;
        on_answer(q, &a);
        let whole: String = a.sources.iter().map(|s| format!("{} . ", s.text)).collect();
        let read: String = a
            .sources
            .iter()
            .map(|s| format!("{} . ", s.excerpt.as_deref().unwrap_or(&s.text)))
            .collect();
        in_passages += contains_answer(&whole, &q.answers);
        in_prompt += contains_answer(&read, &q.answers);
        first.push(Duration::from_secs_f64(a.timings.first_token_ms / 1000.0));
        total.push(Duration::from_secs_f64(a.timings.total_ms / 1000.0));
        if a.route.target == "none" {
            floor += 1;
            declined += 1;
            continue;
        }
        evidence.push(a.timings.evidence_ms);
        prompts.push(a.timings.prompt_tokens as f64);
        decode.push(a.timings.decode_tokens_per_s);
        generated += a.timings.generated_tokens;
        drafted += a.timings.accepted_draft_tokens;
        sentences += a.support.cited_sentences;
        unsupported += a.support.unsupported.len();
        if declines(&a.answer) {
            declined += 1;
        } else {
            answered += 1;
            if !a.cited.is_empty() {
                cited += 1;
            }
        }
        let text = strip_citations(&a.answer);
        em += exact_match(&text, &q.answers);
        f1 += token_f1(&text, &q.answers);
        contains += contains_answer(&text, &q.answers);
    }
    let n = asked.len().max(1) as f64;
    Ok(AnswerScores {
        questions: asked.len(),
        exact_match: em / n,
        f1: f1 / n,
        contains_answer: contains / n,
        gold_in_passages: in_passages / n,
        gold_in_prompt: in_prompt / n,
        cited: cited as f64 / answered.max(1) as f64,
        abstained: declined as f64 / n,
        abstained_before_model: floor as f64 / n,
        first_token_ms_p50: percentile_ms(&mut first, 50.0),
        first_token_ms_p10: percentile_ms(&mut first, 10.0),
        first_token_ms_p90: percentile_ms(&mut first, 90.0),
        evidence_ms_p50: percentile(&mut evidence, 50.0),
        total_ms_p50: percentile_ms(&mut total, 50.0),
        prompt_tokens_p50: percentile(&mut prompts, 50.0),
        decode_tokens_per_s_p50: percentile(&mut decode, 50.0),
        drafted_share: drafted as f64 / generated.max(1) as f64,
        cited_sentences: sentences,
        supported_sentences: 1.0 - unsupported as f64 / sentences.max(1) as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golds(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn squad_metrics_match_hand_computed_cases() {
        assert_eq!(normalize_answer("The  Eiffel Tower!"), "eiffel tower");
        assert_eq!(
            exact_match("the Eiffel tower.", &golds(&["Eiffel Tower"])),
            1.0
        );
        assert_eq!(exact_match("Eiffel", &golds(&["Eiffel Tower"])), 0.0);
        // pred "paris france" vs gold "paris": common 1, P 1/2, R 1 → F1 2/3.
        let f = token_f1("Paris, France", &golds(&["Paris"]));
        assert!((f - 2.0 / 3.0).abs() < 1e-9, "{f}");
        // Best gold wins.
        assert_eq!(token_f1("Paris", &golds(&["London", "paris"])), 1.0);
        // A repeated token counts once per gold occurrence: "x y y" vs "y z" has
        // 1 token in common, P 1/3, R 1/2, F1 = 2·(1/6)/(5/6) = 0.4.
        let f = token_f1("x y y", &golds(&["y z"]));
        assert!((f - 0.4).abs() < 1e-9, "{f}");
        assert_eq!(token_f1("", &golds(&["y"])), 0.0);
        assert_eq!(
            contains_answer("It opened in 1889 [1].", &golds(&["1889"])),
            1.0
        );
        assert_eq!(contains_answer("In 18890.", &golds(&["1889"])), 0.0);
    }

    #[test]
    fn citations_are_stripped_but_other_brackets_stay() {
        assert_eq!(
            strip_citations("Paris [1] is big [2, 3]. See [note]."),
            "Paris  is big . See [note]."
        );
        assert_eq!(strip_citations("a [] b [x"), "a [] b [x");
    }

    #[test]
    fn declining_is_recognised() {
        assert!(declines("The documents do not contain that."));
        assert!(!declines("It contains iron."));
    }
}

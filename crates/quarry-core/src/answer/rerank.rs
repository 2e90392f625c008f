//! The local generator as search's second stage: for each of the first
//! candidates it reads the query and the passage's best-matching sentences
//! and is asked whether the passage is relevant; the score is how much more
//! it expects "Yes" than "No" as its next word. One forward pass per
//! passage, no generation; the prompt puts the query before the passage, so
//! the instructions and the query are computed once per query and only each
//! passage's window after them ([`LocalModel::continuation_logits`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::answer::evidence::{trim_sources, Trim};
use crate::answer::Source;
use crate::error::{Error, Result};
use crate::generate::{ChatMessage, LocalModel};
use crate::retrieve::search::Reranker;

/// What the model is asked, before the query and the passage.
const INSTRUCTIONS: &str = "You judge search results. Say whether the passage is relevant \
to the search query: whether it answers the question or is about what the query asks for. \
Answer with one word, Yes or No.";

/// Spellings of the two answers; those that are one token in the model's
/// vocabulary are scored.
const YES: &[&str] = &["Yes", "yes", " Yes", " yes", "YES"];
const NO: &[&str] = &["No", "no", " No", " no", "NO"];

/// The model's relevance check as a [`Reranker`].
pub struct ModelReranker {
    model: Mutex<LocalModel>,
    yes: Vec<u32>,
    no: Vec<u32>,
    depth: usize,
    weight: f32,
    /// Characters of each passage the model reads (around its best sentences).
    chars: usize,
    /// Scores already computed, by (query, passage): lets an evaluation try
    /// several blends on one pass of the model.
    memo: Mutex<HashMap<(String, String), f32>>,
    spent: Mutex<(Duration, usize)>,
}

impl ModelReranker {
    /// Re-score the first `depth` candidates with `model`; `weight` keeps
    /// that much of the first stage's order ([`Reranker::first_stage_weight`]).
    pub fn new(model: LocalModel, depth: usize, weight: f32) -> Result<Self> {
        let single = |words: &[&str]| -> Vec<u32> {
            let mut ids: Vec<u32> = words
                .iter()
                .filter_map(|w| {
                    let enc = model.tokenizer().encode(*w, false).ok()?;
                    (enc.get_ids().len() == 1).then(|| enc.get_ids()[0])
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let (yes, no) = (single(YES), single(NO));
        if yes.is_empty() || no.is_empty() {
            return Err(Error::InvalidInput(format!(
                "{} has no one-token \"Yes\" and \"No\": it cannot rerank",
                model.name()
            )));
        }
        Ok(ModelReranker {
            model: Mutex::new(model),
            yes,
            no,
            depth,
            weight,
            chars: 400,
            memo: Mutex::new(HashMap::new()),
            spent: Mutex::new((Duration::ZERO, 0)),
        })
    }

    /// Use another blend with the first stage from now on.
    pub fn set_first_stage_weight(&mut self, weight: f32) {
        self.weight = weight;
    }

    /// Time spent in the model so far, and the passages it judged.
    pub fn spent(&self) -> (Duration, usize) {
        *self.spent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The prompt for one passage: its window around the sentences that
    /// match the query best.
    fn prompt(&self, model: &LocalModel, query: &str, passage: &str) -> Result<String> {
        let source = Source {
            n: 1,
            path: String::new(),
            page: None,
            heading: None,
            text: passage.to_string(),
            excerpt: None,
            char_start: 0,
            char_end: passage.len() as u64,
            score: 0.0,
            ocr_confidence: None,
        };
        let trim = Trim {
            chars: self.chars,
            min_share: 0.0,
        };
        let read = trim_sources(query, &[source], trim)
            .pop()
            .and_then(|s| s.excerpt)
            .unwrap_or_else(|| passage.to_string());
        model.render_chat(&[
            ChatMessage::new("system", INSTRUCTIONS),
            ChatMessage::new(
                "user",
                format!("Search query: {query}\n\nPassage: {read}\n\nIs the passage relevant?"),
            ),
        ])
    }

    fn judge(&self, model: &mut LocalModel, query: &str, passage: &str) -> Result<f32> {
        let prompt = self.prompt(model, query, passage)?;
        let logits = model.continuation_logits(&prompt)?;
        Ok(log_sum_exp(&logits, &self.yes) - log_sum_exp(&logits, &self.no))
    }
}

/// `log Σ exp(logits[id])` over `ids`.
fn log_sum_exp(logits: &[f32], ids: &[u32]) -> f32 {
    let vals: Vec<f32> = ids
        .iter()
        .filter_map(|&i| logits.get(i as usize).copied())
        .collect();
    let max = vals.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return max;
    }
    max + vals.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

impl Reranker for ModelReranker {
    fn score(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let mut model = self.model.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut judged = 0;
        let mut out = Vec::with_capacity(passages.len());
        for p in passages {
            let key = (query.to_string(), p.to_string());
            let known = self
                .memo
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .copied();
            let s = match known {
                Some(s) => s,
                None => {
                    let s = self.judge(&mut model, query, p)?;
                    judged += 1;
                    self.memo
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, s);
                    s
                }
            };
            out.push(s);
        }
        let mut spent = self.spent.lock().unwrap_or_else(|e| e.into_inner());
        if judged > 0 {
            spent.0 += started.elapsed();
            spent.1 += judged;
        }
        Ok(out)
    }

    fn depth(&self) -> usize {
        self.depth
    }

    fn first_stage_weight(&self) -> f32 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_sum_exp_adds_the_spellings_probabilities() {
        let logits = [0.0f32, 1.0, 2.0, f32::NEG_INFINITY];
        let got = log_sum_exp(&logits, &[1, 2]);
        assert!((got - (1f32.exp() + 2f32.exp()).ln()).abs() < 1e-5);
        assert_eq!(log_sum_exp(&logits, &[3]), f32::NEG_INFINITY);
        // Ids past the vocabulary are ignored, not a panic.
        assert_eq!(log_sum_exp(&logits, &[0, 99]), 0.0);
    }
}

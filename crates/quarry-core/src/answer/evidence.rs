//! The sentences of the sources that match the question. They are shown
//! within moments of the question, while the model composes its answer
//! ("evidence first"), and they decide what of each passage the model reads:
//! a window around the best-matching sentences rather than the whole chunk,
//! so the prompt is as short as the answer allows.
//!
//! Matching is lexical, with the keyword index's own analyzer (stop words
//! out, folded, CJK characters one by one) and weights that favour the
//! question's rarer words among the retrieved sentences: it costs
//! microseconds, where embedding every sentence would cost a model pass.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::answer::source::Source;
use crate::store::tokenize::analyzer;

/// A sentence of a source that matches the question.
#[derive(ts_rs::TS, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The source's number.
    pub n: usize,
    /// The sentence.
    pub text: String,
    /// How well it matches the question (the summed weight of the question
    /// words it holds; comparable within one question only).
    pub score: f32,
}

/// Byte ranges of the sentences of `text`: ends after `.`, `!`, `?` (and
/// CJK full stops) followed by a space, and at line breaks; common
/// abbreviations ("e.g.", "Dr.", initials) do not end a sentence.
pub fn sentence_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let end = i + c.len_utf8();
        let next = chars.get(k + 1).map(|&(_, n)| n);
        let breaks = match c {
            '\n' => true,
            '。' | '！' | '？' => true,
            '.' | '!' | '?' => {
                next.is_none_or(char::is_whitespace)
                    && !(c == '.' && is_abbreviation(&text[start..i]))
            }
            _ => false,
        };
        if breaks {
            push_span(text, start, end, &mut spans);
            start = end;
        }
    }
    push_span(text, start, text.len(), &mut spans);
    spans
}

fn push_span(text: &str, start: usize, end: usize, spans: &mut Vec<(usize, usize)>) {
    let s = &text[start..end];
    let lead = s.len() - s.trim_start().len();
    let trimmed = s.trim();
    if !trimmed.is_empty() {
        spans.push((start + lead, start + lead + trimmed.len()));
    }
}

/// Whether the word before a full stop is an abbreviation or an initial.
fn is_abbreviation(before: &str) -> bool {
    let word = before
        .rsplit(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    const ABBREVIATIONS: &[&str] = &[
        "e.g", "i.e", "etc", "vs", "mr", "mrs", "ms", "dr", "prof", "st", "no", "fig", "inc",
        "ltd", "co", "jr", "sr", "approx", "cf", "al",
    ];
    let lower = word.to_lowercase();
    (word.chars().count() == 1 && word.chars().all(char::is_uppercase))
        || ABBREVIATIONS.contains(&lower.as_str())
}

/// The analyzed terms of `text` (as the keyword index sees them).
pub(crate) fn terms(text: &str) -> Vec<String> {
    let mut a = analyzer();
    let mut stream = a.token_stream(text);
    let mut out = Vec::new();
    while let Some(t) = stream.next() {
        out.push(t.text.clone());
    }
    out
}

/// One scored sentence of one source.
#[derive(Debug, Clone)]
struct Scored {
    /// Index of the source in the list given.
    source: usize,
    span: (usize, usize),
    score: f32,
}

/// Score every sentence of `sources` against `question`: the sum of the
/// weights of the distinct question terms it holds, a term weighing
/// ln(1 + sentences / sentences holding it).
fn score_sentences(question: &str, sources: &[Source]) -> Vec<Scored> {
    let wanted: HashSet<String> = terms(question).into_iter().collect();
    let mut sentences = Vec::new();
    let mut holds: Vec<HashSet<String>> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        for span in sentence_spans(&s.text) {
            let found: HashSet<String> = terms(&s.text[span.0..span.1])
                .into_iter()
                .filter(|t| wanted.contains(t))
                .collect();
            sentences.push(Scored {
                source: i,
                span,
                score: 0.0,
            });
            holds.push(found);
        }
    }
    let mut df: HashMap<&str, usize> = HashMap::new();
    for h in &holds {
        for t in h {
            *df.entry(t.as_str()).or_default() += 1;
        }
    }
    let total = sentences.len().max(1) as f32;
    for (s, h) in sentences.iter_mut().zip(&holds) {
        s.score = h
            .iter()
            .map(|t| (1.0 + total / df[t.as_str()] as f32).ln())
            .sum();
    }
    sentences
}

/// The `k` sentences of `sources` that match `question` best, best first
/// (none that share no word with it).
pub fn best_sentences(question: &str, sources: &[Source], k: usize) -> Vec<Evidence> {
    let mut scored = score_sentences(question, sources);
    scored.retain(|s| s.score > 0.0);
    scored.sort_by(|a, b| b.score.total_cmp(&a.score));
    scored
        .into_iter()
        .take(k)
        .map(|s| {
            let src = &sources[s.source];
            Evidence {
                n: src.n,
                text: src.text[s.span.0..s.span.1].to_string(),
                score: s.score,
            }
        })
        .collect()
}

/// How sources are cut down before the model reads them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trim {
    /// Characters of each source kept at most (0: whole passages).
    pub chars: usize,
    /// Sources whose best sentence scores below this share of the best
    /// source's are left out (0: keep all).
    pub min_share: f32,
}

impl Default for Trim {
    fn default() -> Self {
        Trim {
            chars: 600,
            min_share: 0.0,
        }
    }
}

/// `sources` without those whose best sentence matches `question` far
/// worse than the best source's (below `trim.min_share` of it), renumbered
/// from 1. The first source is always kept.
pub fn drop_weak_sources(question: &str, sources: &[Source], trim: Trim) -> Vec<Source> {
    if trim.min_share <= 0.0 {
        return sources.to_vec();
    }
    let scored = score_sentences(question, sources);
    let best_of = |i: usize| {
        scored
            .iter()
            .filter(|s| s.source == i)
            .fold(0f32, |m, s| m.max(s.score))
    };
    let top = (0..sources.len()).map(best_of).fold(0f32, f32::max);
    let mut out: Vec<Source> = sources
        .iter()
        .enumerate()
        .filter(|&(i, _)| i == 0 || top <= 0.0 || best_of(i) >= trim.min_share * top)
        .map(|(_, s)| s.clone())
        .collect();
    for (i, s) in out.iter_mut().enumerate() {
        s.n = i + 1;
    }
    out
}

/// Each of `sources` with the excerpt the local model reads: its
/// best-matching sentences for `question` and their neighbours, up to
/// `trim.chars` characters, in document order with "…" where text was left
/// out (passages that short already are read whole).
pub fn trim_sources(question: &str, sources: &[Source], trim: Trim) -> Vec<Source> {
    if trim.chars == 0 {
        return sources.to_vec();
    }
    let scored = score_sentences(question, sources);
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if s.text.len() > trim.chars {
                let mine: Vec<&Scored> = scored.iter().filter(|x| x.source == i).collect();
                s.excerpt = Some(window(&s.text, &mine, trim.chars));
            }
            s
        })
        .collect()
}

/// The sentences of one source worth keeping within `budget` bytes: by
/// score, then by closeness to the best one; joined in document order.
fn window(text: &str, sentences: &[&Scored], budget: usize) -> String {
    let Some(best) = (0..sentences.len()).max_by(|&a, &b| {
        sentences[a]
            .score
            .total_cmp(&sentences[b].score)
            .then(b.cmp(&a))
    }) else {
        return text.to_string();
    };
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (sentences[i].score > 0.0, i.abs_diff(best));
        let (ka, kb) = (key(a), key(b));
        kb.0.cmp(&ka.0)
            .then_with(|| {
                if ka.0 {
                    sentences[b].score.total_cmp(&sentences[a].score)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then(ka.1.cmp(&kb.1))
    });
    let mut keep = vec![false; sentences.len()];
    let mut used = 0;
    for i in order {
        let (a, b) = sentences[i].span;
        if i != best && used + (b - a) > budget {
            continue;
        }
        keep[i] = true;
        used += b - a + 1;
    }
    let mut out = String::new();
    let mut last: Option<usize> = None;
    for (i, s) in sentences.iter().enumerate().filter(|(i, _)| keep[*i]) {
        match last {
            None if i > 0 => out.push_str("… "),
            Some(l) if i > l + 1 => out.push_str(" … "),
            Some(_) => out.push(' '),
            None => {}
        }
        out.push_str(&text[s.span.0..s.span.1]);
        last = Some(i);
    }
    if last.is_some_and(|l| l + 1 < sentences.len()) {
        out.push_str(" …");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_split_at_stops_not_abbreviations() {
        let t = "Dr. Smith arrived, e.g. at noon. It rained!  Then J. R. Tolkien left?\nNew line";
        let got: Vec<&str> = sentence_spans(t).iter().map(|&(a, b)| &t[a..b]).collect();
        assert_eq!(
            got,
            vec![
                "Dr. Smith arrived, e.g. at noon.",
                "It rained!",
                "Then J. R. Tolkien left?",
                "New line"
            ]
        );
    }

    #[test]
    fn the_best_sentence_holds_the_rare_question_words() {
        let sources = vec![
            Source::for_test(
                1,
                "The tower is in Paris. It was completed in 1889 for the fair.",
            ),
            Source::for_test(2, "Paris is the capital of France. The tower is tall."),
        ];
        let ev = best_sentences("When was the tower completed?", &sources, 2);
        assert_eq!(ev[0].n, 1);
        assert_eq!(ev[0].text, "It was completed in 1889 for the fair.");
        assert!(ev[0].score > ev[1].score);
        assert!(best_sentences("zebra", &sources, 3).is_empty());
    }

    #[test]
    fn trimming_keeps_a_window_around_the_best_sentence() {
        let filler: Vec<String> = (0..20)
            .map(|i| format!("Sentence number {i} talks about weather."))
            .collect();
        let mut text = filler[..10].join(" ");
        text.push_str(" The treaty was signed in Utrecht in 1713.");
        text.push(' ');
        text.push_str(&filler[10..].join(" "));
        let sources = vec![
            Source::for_test(1, &text),
            Source::for_test(2, "Nothing relevant here at all."),
        ];
        let trim = Trim {
            chars: 120,
            min_share: 0.5,
        };
        let q = "Where was the treaty signed?";
        let out = trim_sources(q, &drop_weak_sources(q, &sources, trim), trim);
        assert_eq!(
            out.len(),
            1,
            "the source without the question's words is dropped"
        );
        let t = out[0].excerpt.as_deref().expect("cut");
        assert!(
            t.contains("The treaty was signed in Utrecht in 1713."),
            "{t}"
        );
        assert!(t.starts_with("… ") && t.ends_with(" …"), "{t}");
        assert!(t.len() < 200, "{t}");
        // Its neighbours come along while the budget lasts.
        assert!(t.contains("number 9") || t.contains("number 10"), "{t}");
        // Whole passages when trimming is off.
        let off = Trim {
            chars: 0,
            min_share: 0.0,
        };
        let all = trim_sources(q, &drop_weak_sources(q, &sources, off), off);
        assert_eq!(all[0].text, text);
        assert_eq!(all[0].excerpt, None);
        assert_eq!(all.len(), 2);
        // Dropping renumbers what is left.
        let swapped = vec![
            Source::for_test(1, "Nothing here."),
            Source::for_test(2, &text),
            Source::for_test(3, "Treaty."),
        ];
        let kept = drop_weak_sources(q, &swapped, trim);
        let ns: Vec<(usize, bool)> = kept.iter().map(|s| (s.n, s.text == text)).collect();
        // "Treaty." holds the commoner word only: under half the best score.
        assert_eq!(ns, vec![(1, false), (2, true)]);
    }
}

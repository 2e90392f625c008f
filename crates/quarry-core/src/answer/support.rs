//! Is each answer sentence backed by the source it cites? A sentence citing
//! `[n]` is supported when every number it states appears in source n (or
//! another source it cites) and most of its words do: small models sometimes
//! cite the right source for a wrong figure, or a source that says something
//! else. Unsupported sentences are marked in every front-end and counted by
//! `quarry eval --answers`; a sentence that cites nothing is not checked.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::answer::citations::strip_citations;
use crate::answer::evidence::{sentence_spans, terms};
use crate::answer::source::Source;

/// Share of a sentence's words that must appear in its cited sources.
const MIN_WORDS: f32 = 0.6;

/// What the check found for one answer.
#[derive(ts_rs::TS, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Support {
    /// Sentences that cite a source.
    pub cited_sentences: usize,
    /// The cited sentences whose sources do not back them, as written.
    pub unsupported: Vec<String>,
}

/// The citation numbers in `sentence` (`[1]`, `[1, 2]`).
fn citations(sentence: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut rest = sentence;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        let numbers: Vec<usize> = inner
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        if !numbers.is_empty() && numbers.len() == inner.split(',').count() {
            out.extend(numbers);
        }
        rest = &rest[open + close + 1..];
    }
    out
}

/// Runs of digits in `text` (with inner separators removed: "1,878" is "1878").
fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner_sep = (c == ',' || c == '.')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() {
            cur.push(c);
        } else if !inner_sep && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The sentences of `answer` with the sources each cites; a citation
/// standing after the full stop ("… this year. [1]") belongs to the
/// sentence before it.
fn cited_sentences(answer: &str) -> Vec<(&str, Vec<usize>)> {
    let mut out: Vec<(&str, Vec<usize>)> = Vec::new();
    for (a, b) in sentence_spans(answer) {
        let (leading, sentence) = leading_markers(&answer[a..b]);
        if let Some((_, prev)) = out.last_mut() {
            prev.extend(leading);
        }
        if !sentence.is_empty() {
            out.push((sentence, citations(sentence)));
        }
    }
    out
}

/// The citation markers `sentence` starts with, and the rest of it.
fn leading_markers(sentence: &str) -> (Vec<usize>, &str) {
    let mut cited = Vec::new();
    let mut rest = sentence.trim_start();
    while rest.starts_with('[') {
        let Some(close) = rest.find(']') else { break };
        let marker = citations(&rest[..=close]);
        if marker.is_empty() {
            break;
        }
        cited.extend(marker);
        rest = rest[close + 1..].trim_start();
    }
    (cited, rest)
}

/// Check every cited sentence of `answer` against `sources`.
pub fn check(answer: &str, sources: &[Source]) -> Support {
    let mut support = Support::default();
    for (sentence, cited) in cited_sentences(answer) {
        if cited.is_empty() {
            continue;
        }
        support.cited_sentences += 1;
        let backing: String = sources
            .iter()
            .filter(|s| cited.contains(&s.n))
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        if !backs(sentence, &backing) {
            support.unsupported.push(sentence.to_string());
        }
    }
    support
}

/// Whether `source` holds the numbers and most of the words of `sentence`.
fn backs(sentence: &str, source: &str) -> bool {
    let claim = strip_citations(sentence);
    let source_numbers: HashSet<String> = numbers(source).into_iter().collect();
    if !numbers(&claim).iter().all(|n| source_numbers.contains(n)) {
        return false;
    }
    let words: Vec<String> = terms(&claim)
        .into_iter()
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
        .map(singular)
        .collect();
    if words.is_empty() {
        return true;
    }
    let have: HashSet<String> = terms(source).into_iter().map(singular).collect();
    let found = words.iter().filter(|w| have.contains(*w)).count();
    found as f32 >= MIN_WORDS * words.len() as f32
}

/// A word without a plural "s" ("states" and "state" match).
fn singular(mut w: String) -> String {
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") {
        w.pop();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_are_checked_against_the_sources_they_cite() {
        let sources = vec![
            Source::for_test(
                1,
                "The Morteratsch glacier lost almost forty metres of length in 2023.",
            ),
            Source::for_test(2, "Ferry ticket sales rose by 1,250 this summer."),
        ];
        let s = check(
            "The Morteratsch glacier lost forty metres [1]. Ticket sales rose by 1250 [2]. \
             Ticket sales rose by 1250 [1]. The glacier lost 45 metres [1]. It was cold.",
            &sources,
        );
        assert_eq!(s.cited_sentences, 4);
        assert_eq!(
            s.unsupported,
            vec![
                "Ticket sales rose by 1250 [1].".to_string(),
                "The glacier lost 45 metres [1].".to_string()
            ]
        );
        // Plurals match their singular.
        assert!(check("Glaciers [1].", &sources).unsupported.is_empty());
        // A citation after the full stop counts for the sentence before it.
        let after = check("The glacier lost 45 metres. [1] It was cold.", &sources);
        assert_eq!(
            after.unsupported,
            vec!["The glacier lost 45 metres.".to_string()]
        );
        // Several sources cited together back a sentence together.
        let both = check("Glacier length fell and ferry sales rose [1, 2].", &sources);
        assert!(both.unsupported.is_empty(), "{both:?}");
    }

    #[test]
    fn markers_and_numbers_are_read_carefully() {
        assert_eq!(citations("a [1] b [2, 3] c [x] [4"), vec![1, 2, 3]);
        assert_eq!(
            numbers("in 1,878 and 3.5 or 7, 8"),
            vec!["1878", "35", "7", "8"]
        );
        assert_eq!(
            strip_citations("Yes [1], see [note] [2]."),
            "Yes , see [note] ."
        );
    }
}

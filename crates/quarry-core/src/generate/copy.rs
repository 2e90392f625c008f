//! Copy bias: a grounded answer should repeat its sources' names, numbers and
//! phrases as they are written there ("three", not "3"; "Epoxides", not
//! "Epoxy"). Before each token is picked, the tokens that would continue the
//! answer as the prompt does — those that follow the answer's last token
//! somewhere in the prompt, or at the start of the answer those the prompt
//! holds (with or without the space before them, capitalised or not) — get a
//! bonus on their logits, as do the end of the turn and a citation's opening
//! bracket, so that the bias never keeps an answer from ending.
//!
//! The bias is a function of the answer so far, applied the same way to the
//! logits of a single step and to each row of a verified draft
//! ([`super::model::LocalModel::generate`]), so prompt-lookup decoding still
//! produces exactly the greedy output.

use std::collections::HashMap;

/// Tokens to favour after each token of the prompt, and at the start.
pub(crate) struct CopyBias {
    bonus: f32,
    /// Each prompt token → the distinct tokens that follow it in the prompt.
    follows: HashMap<u32, Vec<u32>>,
    /// Favoured as the answer's first token.
    starts: Vec<u32>,
    /// Always favoured: the end of the turn, a full stop, citation brackets.
    always: Vec<u32>,
    /// The tokens that open a citation: inside one nothing is favoured.
    openers: Vec<u32>,
}

impl CopyBias {
    /// The bias for answers to `prompt` (token ids). `token_bytes[id]` is
    /// each token's text, `eos` the end-of-turn tokens; `bonus` is added to
    /// the logits of the favoured tokens.
    pub(crate) fn new(prompt: &[u32], token_bytes: &[Vec<u8>], eos: &[u32], bonus: f32) -> Self {
        let mut follows: HashMap<u32, Vec<u32>> = HashMap::new();
        for w in prompt.windows(2) {
            let next = follows.entry(w[0]).or_default();
            if !next.contains(&w[1]) {
                next.push(w[1]);
            }
        }
        let by_text: HashMap<&[u8], u32> = token_bytes
            .iter()
            .enumerate()
            .map(|(id, b)| (b.as_slice(), id as u32))
            .collect();
        let mut starts: Vec<u32> = Vec::new();
        for &id in prompt {
            let Some(text) = token_bytes.get(id as usize) else {
                continue;
            };
            for variant in spellings(text) {
                if let Some(&v) = by_text.get(variant.as_slice()) {
                    starts.push(v);
                }
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let with_text = |texts: &[&[u8]]| -> Vec<u32> {
            texts
                .iter()
                .filter_map(|t| by_text.get(t).copied())
                .collect()
        };
        let openers = with_text(&[b"[", b" ["]);
        let mut always: Vec<u32> = eos.to_vec();
        always.extend(&openers);
        always.extend(with_text(&[b".", b".\n"]));
        always.sort_unstable();
        always.dedup();
        CopyBias {
            bonus,
            follows,
            starts,
            always,
            openers,
        }
    }

    /// Add the bonus to the logits of the tokens favoured after `answer`
    /// (the tokens generated so far). Each favoured token gets it once.
    pub(crate) fn apply(&self, answer: &[u32], logits: &mut [f32]) {
        if answer.last().is_some_and(|t| self.openers.contains(t)) {
            // A citation's number is the model's call alone.
            return;
        }
        let favoured: &[u32] = match answer.last() {
            None => &self.starts,
            Some(last) => self.follows.get(last).map_or(&[], Vec::as_slice),
        };
        let mut boost = |id: u32| {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += self.bonus;
            }
        };
        for &id in favoured {
            boost(id);
        }
        for &id in &self.always {
            if !favoured.contains(&id) {
                boost(id);
            }
        }
    }
}

/// A prompt token's text as an answer might start with it: as it is, without
/// its leading space, and with its first letter in the other case.
fn spellings(text: &[u8]) -> Vec<Vec<u8>> {
    let bare = text.strip_prefix(b" ").unwrap_or(text);
    let mut out = vec![text.to_vec(), bare.to_vec()];
    if let Some((first, rest)) = bare.split_first() {
        let other = if first.is_ascii_uppercase() {
            first.to_ascii_lowercase()
        } else {
            first.to_ascii_uppercase()
        };
        if other != *first {
            let mut v = vec![other];
            v.extend_from_slice(rest);
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: 0 "three", 1 " three", 2 " grounds", 3 "3",
    /// 4 "Three", 5 "[", 6 "<eos>", 7 " on".
    fn vocab() -> Vec<Vec<u8>> {
        [
            "three", " three", " grounds", "3", "Three", "[", "<eos>", " on",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect()
    }

    #[test]
    fn favours_the_prompts_spelling_at_the_start_and_its_continuations_after() {
        // The prompt says " on three grounds".
        let bias = CopyBias::new(&[7, 1, 2], &vocab(), &[6], 2.0);
        let mut first = vec![0.0; 8];
        bias.apply(&[], &mut first);
        // " three", "three" and "Three" are favoured; "3" is not.
        assert_eq!(first, vec![2.0, 2.0, 2.0, 0.0, 2.0, 2.0, 2.0, 2.0]);
        let mut after = vec![0.0; 8];
        bias.apply(&[0, 1], &mut after);
        // After " three" only " grounds" continues the prompt; "[" and the
        // end of the turn stay favoured, once each.
        assert_eq!(after, vec![0.0, 0.0, 2.0, 0.0, 0.0, 2.0, 2.0, 0.0]);
        let mut lost = vec![0.0; 8];
        bias.apply(&[3], &mut lost);
        assert_eq!(lost, vec![0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 0.0]);
        // Inside a citation nothing is favoured.
        let mut cite = vec![0.0; 8];
        bias.apply(&[3, 5], &mut cite);
        assert_eq!(cite, vec![0.0; 8]);
    }

    #[test]
    fn an_end_of_turn_listed_twice_is_favoured_once() {
        let bias = CopyBias::new(&[7, 1, 2], &vocab(), &[6, 6], 2.0);
        let mut after = vec![0.0; 8];
        bias.apply(&[3], &mut after);
        assert_eq!(after[6], 2.0);
    }
}

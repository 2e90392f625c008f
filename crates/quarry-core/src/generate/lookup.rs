//! Prompt-lookup drafting. A grounded answer repeats names, numbers and
//! phrases of its sources, so when the last tokens of the answer also occur in
//! the prompt, the tokens that followed them there are a good guess at what
//! comes next. The model checks a draft in one batched step
//! ([`super::model::LocalModel::generate`]) and keeps the part it would have
//! produced itself: greedy output is unchanged, and every accepted token saves
//! a pass over the weights.

use std::collections::HashMap;

/// Shortest draft proposed.
const MIN_DRAFT: usize = 2;
/// Longest draft proposed.
const MAX_DRAFT: usize = 16;
/// Draft length to start with.
const FIRST_DRAFT: usize = 4;

/// Proposes drafts from the prompt, and adapts their length to how many of
/// the last one the model accepted.
pub(crate) struct Drafter<'p> {
    prompt: &'p [u32],
    /// Start of every token pair of the prompt, in order.
    pairs: HashMap<(u32, u32), Vec<usize>>,
    len: usize,
}

impl<'p> Drafter<'p> {
    /// Index `prompt`'s token pairs.
    pub(crate) fn new(prompt: &'p [u32]) -> Self {
        let mut pairs: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
        for (i, w) in prompt.windows(2).enumerate() {
            pairs.entry((w[0], w[1])).or_default().push(i);
        }
        Drafter {
            prompt,
            pairs,
            len: FIRST_DRAFT,
        }
    }

    /// The tokens that followed the answer's last two tokens (its last three
    /// when they also match, the latest such place otherwise) in the prompt;
    /// at most `room` of them, empty when the pair does not occur.
    pub(crate) fn propose(&self, generated: &[u32], room: usize) -> Vec<u32> {
        let tail = |k: usize| -> Option<u32> {
            let n = generated.len();
            if k < n {
                Some(generated[n - 1 - k])
            } else {
                let p = self.prompt.len();
                (k - n < p).then(|| self.prompt[p - 1 - (k - n)])
            }
        };
        let (Some(last), Some(before)) = (tail(0), tail(1)) else {
            return Vec::new();
        };
        let Some(starts) = self.pairs.get(&(before, last)) else {
            return Vec::new();
        };
        let third = tail(2);
        let follows = |&&i: &&usize| i + 2 < self.prompt.len();
        let three = starts
            .iter()
            .rev()
            .filter(follows)
            .find(|&&i| i > 0 && Some(self.prompt[i - 1]) == third);
        let Some(&i) = three.or_else(|| starts.iter().rev().find(follows)) else {
            return Vec::new();
        };
        let n = self.len.min(room);
        self.prompt[i + 2..(i + 2 + n).min(self.prompt.len())].to_vec()
    }

    /// The model accepted `taken` of a `drafted`-token draft: lengthen drafts
    /// while they are taken whole, shorten them to what was taken otherwise.
    pub(crate) fn record(&mut self, drafted: usize, taken: usize) {
        self.len = if taken == drafted {
            (self.len * 2).min(MAX_DRAFT)
        } else {
            (taken + 1).clamp(MIN_DRAFT, MAX_DRAFT)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_followed_the_same_tokens_in_the_prompt() {
        // "... 1 2 3 4 5 6 ... 9 2 3 7 8"
        let prompt = [1, 2, 3, 4, 5, 6, 0, 9, 2, 3, 7, 8, 0];
        let d = Drafter::new(&prompt);
        // The answer ends in "2 3": the latest place is followed by 7 8.
        assert_eq!(d.propose(&[5, 2, 3], 10), vec![7, 8, 0]);
        // "1 2 3" matches three tokens at the first place: that one wins.
        assert_eq!(d.propose(&[1, 2, 3], 10), vec![4, 5, 6, 0]);
        // Room caps the draft.
        assert_eq!(d.propose(&[1, 2, 3], 2), vec![4, 5]);
        // A pair the prompt never holds: nothing.
        assert!(d.propose(&[3, 2], 10).is_empty());
        // At the start the pair spans the prompt's end and the first token.
        assert_eq!(Drafter::new(&[4, 5, 6, 4]).propose(&[5], 10), vec![6, 4]);
    }

    #[test]
    fn draft_length_follows_acceptance() {
        let prompt: Vec<u32> = (0..100).collect();
        let mut d = Drafter::new(&prompt);
        assert_eq!(d.propose(&[1, 2], 100).len(), FIRST_DRAFT);
        d.record(FIRST_DRAFT, FIRST_DRAFT);
        assert_eq!(d.propose(&[1, 2], 100).len(), 2 * FIRST_DRAFT);
        d.record(8, 0);
        assert_eq!(d.propose(&[1, 2], 100).len(), MIN_DRAFT);
        for _ in 0..10 {
            d.record(d.len, d.len);
        }
        assert_eq!(d.propose(&[1, 2], 100).len(), MAX_DRAFT);
    }
}

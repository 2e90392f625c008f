//! Keeping citations honest: `[n]` markers that point at no source are removed,
//! also while the answer streams.

/// Filters a stream of text, dropping `[n]` (and `[n, m]`) markers whose
/// numbers are not in `1..=sources`. Text that may still become a marker is
/// held back until it is decided.
#[derive(Debug, Clone)]
pub struct CitationFilter {
    sources: usize,
    pending: String,
    cited: Vec<usize>,
}

const MAX_MARKER: usize = 16;

impl CitationFilter {
    /// A filter for an answer with `sources` numbered sources.
    pub fn new(sources: usize) -> Self {
        CitationFilter {
            sources,
            pending: String::new(),
            cited: Vec::new(),
        }
    }

    /// Feed streamed text; returns what can be shown now.
    pub fn push(&mut self, text: &str) -> String {
        let mut out = String::new();
        for c in text.chars() {
            if self.pending.is_empty() {
                if c == '[' {
                    self.pending.push(c);
                } else {
                    out.push(c);
                }
                continue;
            }
            self.pending.push(c);
            if c == ']' {
                let inner = self.pending[1..self.pending.len() - 1].to_string();
                out.push_str(&self.resolve(&inner));
                self.pending.clear();
            } else if !(c.is_ascii_digit() || c == ',' || c == ' ')
                || self.pending.len() > MAX_MARKER
            {
                // Not a citation after all (e.g. "[see above]").
                let p = std::mem::take(&mut self.pending);
                if c == '[' {
                    out.push_str(&p[..p.len() - 1]);
                    self.pending.push('[');
                } else {
                    out.push_str(&p);
                }
            }
        }
        out
    }

    /// End of stream: whatever is held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }

    /// Source numbers cited so far (valid ones only), in order of first use.
    pub fn cited(&self) -> &[usize] {
        &self.cited
    }

    fn resolve(&mut self, inner: &str) -> String {
        let nums: Vec<&str> = inner.split(',').map(str::trim).collect();
        if nums
            .iter()
            .any(|n| n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()))
        {
            // "[]" or "[ ]": not a citation, keep as written.
            return format!("[{inner}]");
        }
        let valid: Vec<usize> = nums
            .iter()
            .filter_map(|n| n.parse::<usize>().ok())
            .filter(|&n| n >= 1 && n <= self.sources)
            .collect();
        for &n in &valid {
            if !self.cited.contains(&n) {
                self.cited.push(n);
            }
        }
        valid
            .iter()
            .map(|n| format!("[{n}]"))
            .collect::<Vec<_>>()
            .join("")
    }
}

/// Filter a whole text at once.
pub fn clean_citations(text: &str, sources: usize) -> (String, Vec<usize>) {
    let mut f = CitationFilter::new(sources);
    let mut out = f.push(text);
    out.push_str(&f.finish());
    (out, f.cited().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn removes_citations_to_missing_sources() {
        let (t, cited) = clean_citations("Paris [1] is big [7]. See [2, 9] and [see above].", 3);
        assert_eq!(t, "Paris [1] is big . See [2] and [see above].");
        assert_eq!(cited, vec![1, 2]);
    }

    #[test]
    fn streaming_equals_batch() {
        let text = "A [1][4] b [2] c [x] d [";
        let mut f = CitationFilter::new(2);
        let mut streamed = String::new();
        for ch in text.chars() {
            streamed.push_str(&f.push(&ch.to_string()));
        }
        streamed.push_str(&f.finish());
        assert_eq!(streamed, clean_citations(text, 2).0);
        assert_eq!(streamed, "A [1] b [2] c [x] d [");
    }

    proptest! {
        #[test]
        fn any_split_gives_same_output(text in "[a-z \\[\\]0-9,]{0,60}", cut in 0usize..60) {
            let cut = cut.min(text.len());
            let mut f = CitationFilter::new(3);
            let mut s = f.push(&text[..cut]);
            s.push_str(&f.push(&text[cut..]));
            s.push_str(&f.finish());
            prop_assert_eq!(s, clean_citations(&text, 3).0);
        }
    }
}

/// The answer text without its `[n]` citation markers.
pub fn strip_citations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find(']') {
            Some(close)
                if close > 0
                    && after[..close]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == ',' || c == ' ') =>
            {
                rest = &after[close + 1..];
            }
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// Post-hoc attribution for answers that cite nothing (small models often
/// don't): each sentence gets the source that shares most of its words, when
/// at least `min_overlap` of the sentence's words appear in that source.
/// Returns the annotated text and the cited source numbers (1-based).
pub fn attribute(answer: &str, sources: &[&str], min_overlap: f32) -> (String, Vec<usize>) {
    let source_words: Vec<std::collections::HashSet<String>> = sources
        .iter()
        .map(|s| words(s).into_iter().collect())
        .collect();
    let mut out = String::with_capacity(answer.len() + 16);
    let mut cited = Vec::new();
    let mut start = 0;
    let bytes: Vec<(usize, char)> = answer.char_indices().collect();
    let mut ends = Vec::new();
    for (k, &(i, c)) in bytes.iter().enumerate() {
        let next_is_space = bytes.get(k + 1).is_none_or(|(_, n)| n.is_whitespace());
        if matches!(c, '.' | '!' | '?' | '。') && next_is_space {
            ends.push(i + c.len_utf8());
        }
    }
    if ends.last().copied() != Some(answer.len()) {
        ends.push(answer.len());
    }
    for end in ends {
        let sentence = &answer[start..end];
        let w = words(sentence);
        let best = source_words
            .iter()
            .enumerate()
            .map(|(i, sw)| (i, w.iter().filter(|x| sw.contains(*x)).count()))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)));
        let body = sentence.trim_end();
        let trailing = &sentence[body.len()..];
        match best {
            Some((i, n)) if !w.is_empty() && n as f32 >= min_overlap * w.len() as f32 => {
                let (text, punct) = match body.char_indices().last() {
                    Some((p, '.' | '!' | '?' | '。')) => (&body[..p], &body[p..]),
                    _ => (body, ""),
                };
                out.push_str(&format!("{text} [{}]{punct}{trailing}", i + 1));
                if !cited.contains(&(i + 1)) {
                    cited.push(i + 1);
                }
            }
            _ => out.push_str(sentence),
        }
        start = end;
    }
    (out, cited)
}

#[cfg(test)]
mod attribution_tests {
    use super::*;

    #[test]
    fn sentences_get_their_best_source() {
        let sources = [
            "The glacier lost forty metres this year.",
            "Sales of ferry tickets rose.",
        ];
        let (t, cited) = attribute(
            "The glacier lost forty metres. Ferry ticket sales rose! Hello there",
            &sources,
            0.5,
        );
        assert_eq!(
            t,
            "The glacier lost forty metres [1]. Ferry ticket sales rose [2]! Hello there"
        );
        assert_eq!(cited, vec![1, 2]);
    }
}

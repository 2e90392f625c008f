//! Token-aware chunking with provenance.
//!
//! A document's blocks are joined with blank lines into one text; chunks never
//! cross a block (so never a heading or page boundary), hold at most
//! `max_tokens` tokens of the embedder's tokenizer, end at the best boundary
//! available (paragraph, line, sentence, word) and overlap the previous chunk
//! by about `overlap_tokens`. Each chunk's text is exactly
//! `text[byte_start..byte_end]` of the document text, and `char_start..char_end`
//! are the same span counted in Unicode scalar values.

use crate::extract::Block;

/// Something that splits text into tokens and reports their byte spans.
pub trait TokenSpans {
    /// Byte spans of the tokens of `text`, in order, without special tokens.
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)>;
}

#[cfg(feature = "tokenizers")]
impl TokenSpans for tokenizers::Tokenizer {
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        match self.encode(text, false) {
            Ok(enc) => enc.get_offsets().to_vec(),
            // A tokenizer failure on odd input falls back to whitespace words.
            Err(_) => Whitespace.token_spans(text),
        }
    }
}

/// Whitespace-separated words as tokens (tests, and a fallback).
#[derive(Debug, Clone, Copy, Default)]
pub struct Whitespace;

impl TokenSpans for Whitespace {
    fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices() {
            match (c.is_whitespace(), start) {
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                (false, None) => start = Some(i),
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, text.len()));
        }
        out
    }
}

/// Chunk sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkerConfig {
    /// Most tokens in one chunk (the embedder adds its special tokens on top).
    pub max_tokens: usize,
    /// Tokens repeated from the end of the previous chunk.
    pub overlap_tokens: usize,
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig {
            max_tokens: 250,
            overlap_tokens: 40,
        }
    }
}

/// One chunk of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the document (0-based).
    pub index: usize,
    /// The text.
    pub text: String,
    /// Page of the block it came from.
    pub page: Option<u32>,
    /// Heading of the block it came from.
    pub heading: Option<String>,
    /// Start in the document text, bytes.
    pub byte_start: usize,
    /// End in the document text, bytes.
    pub byte_end: usize,
    /// Start in the document text, characters.
    pub char_start: usize,
    /// End in the document text, characters.
    pub char_end: usize,
}

/// Splits documents into chunks.
pub struct Chunker<'t, T: TokenSpans + ?Sized> {
    tokens: &'t T,
    config: ChunkerConfig,
}

/// Join blocks into the document text; returns the text and each block's byte range.
pub fn document_text(blocks: &[Block]) -> (String, Vec<(usize, usize)>) {
    let mut text = String::new();
    let mut ranges = Vec::with_capacity(blocks.len());
    for b in blocks {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(b.text.trim_end());
        ranges.push((start, text.len()));
    }
    (text, ranges)
}

impl<'t, T: TokenSpans + ?Sized> Chunker<'t, T> {
    /// A chunker counting tokens with `tokens`.
    pub fn new(tokens: &'t T, config: ChunkerConfig) -> Self {
        assert!(config.max_tokens > 0, "max_tokens must be positive");
        Chunker { tokens, config }
    }

    /// Chunk a document; returns its text (see [`document_text`]) and the chunks.
    pub fn chunk(&self, blocks: &[Block]) -> (String, Vec<Chunk>) {
        let (text, ranges) = document_text(blocks);
        let mut chunks = Vec::new();
        for (b, &(start, end)) in blocks.iter().zip(&ranges) {
            for (s, e) in self.split(&text, start, end) {
                chunks.push(Chunk {
                    index: chunks.len(),
                    text: text[s..e].to_string(),
                    page: b.page,
                    heading: b.heading.clone(),
                    byte_start: s,
                    byte_end: e,
                    char_start: 0,
                    char_end: 0,
                });
            }
        }
        fill_char_offsets(&text, &mut chunks);
        (text, chunks)
    }

    /// Byte spans of the chunks of `text[start..end]`.
    fn split(&self, text: &str, start: usize, end: usize) -> Vec<(usize, usize)> {
        let max = self.config.max_tokens;
        // The tokenizer sees a window of the text: at most 16 bytes per
        // token (a run of text with fewer tokens than that is cut at the
        // window's end), and as little as reaches safely past token `max`.
        // Bytes per token are learnt from the text as it goes, so each byte
        // is tokenized about once; a fixed window of the largest size
        // tokenized English prose four to five times over.
        let largest = max.saturating_mul(16).max(64);
        let enough = max + max / 16 + 4;
        let mut bytes_per_token = 8usize;
        let mut spans = Vec::new();
        let mut pos = skip_ws(text, start, end);
        while pos < end {
            let mut want = (enough + 8).saturating_mul(bytes_per_token).min(largest);
            let (wend, toks) = loop {
                let mut wend = (pos + want).min(end);
                while !text.is_char_boundary(wend) {
                    wend += 1;
                }
                let toks = self.tokens.token_spans(&text[pos..wend]);
                if wend == end || want >= largest || toks.len() > enough {
                    break (wend, toks);
                }
                want = want.saturating_mul(2).min(largest);
            };
            if !toks.is_empty() {
                bytes_per_token = ((wend - pos) / toks.len()).clamp(1, 16) + 1;
            }
            if wend == end && toks.len() <= max {
                push_trimmed(text, pos, end, &mut spans);
                break;
            }
            let hard_end = if toks.len() > max {
                pos + toks[max].0
            } else {
                wend
            };
            let min_cut = pos + (hard_end - pos) / 2;
            let cut = best_boundary(text, min_cut, hard_end).unwrap_or(hard_end);
            let cut = if cut <= pos {
                hard_end.max(next_char(text, pos))
            } else {
                cut
            };
            push_trimmed(text, pos, cut, &mut spans);
            // Overlap: back up `overlap_tokens` tokens from the cut, then forward
            // to a word start so the overlap begins cleanly.
            let cut_tok = toks
                .iter()
                .position(|t| pos + t.0 >= cut)
                .unwrap_or(toks.len());
            let back = cut_tok.saturating_sub(self.config.overlap_tokens);
            let mut next = if self.config.overlap_tokens == 0 || back == 0 {
                cut
            } else {
                let o = pos + toks[back].0;
                sentence_or_word_start(text, o, cut)
            };
            if next <= pos {
                next = cut;
            }
            pos = skip_ws(text, next, end);
        }
        spans
    }
}

fn next_char(text: &str, i: usize) -> usize {
    text[i..]
        .chars()
        .next()
        .map(|c| i + c.len_utf8())
        .unwrap_or(i)
}

fn skip_ws(text: &str, mut i: usize, end: usize) -> usize {
    while i < end {
        let c = text[i..].chars().next().expect("i < end");
        if !c.is_whitespace() {
            break;
        }
        i += c.len_utf8();
    }
    i
}

fn push_trimmed(text: &str, s: usize, e: usize, spans: &mut Vec<(usize, usize)>) {
    let slice = &text[s..e];
    let lead = slice.len() - slice.trim_start().len();
    let trail = slice.len() - slice.trim_end().len();
    if lead + trail < slice.len() {
        spans.push((s + lead, e - trail));
    }
}

/// The best place in `text[lo..hi]` to end a chunk: after a paragraph break,
/// else a line break, else a sentence end, else whitespace. Returns the byte
/// index where the chunk ends.
fn best_boundary(text: &str, lo: usize, hi: usize) -> Option<usize> {
    let mut lo = lo;
    while !text.is_char_boundary(lo) {
        lo += 1;
    }
    if lo >= hi {
        return None;
    }
    let region = &text[lo..hi];
    if let Some(i) = region.rfind("\n\n") {
        return Some(lo + i);
    }
    if let Some(i) = region.rfind('\n') {
        return Some(lo + i);
    }
    let sentence = region
        .char_indices()
        .rev()
        .find(|&(i, c)| {
            matches!(c, '。' | '！' | '？')
                || (matches!(c, '.' | '!' | '?' | ';')
                    && region[i + c.len_utf8()..].starts_with(char::is_whitespace))
        })
        .map(|(i, c)| lo + i + c.len_utf8());
    if sentence.is_some() {
        return sentence;
    }
    region.rfind(char::is_whitespace).map(|i| lo + i)
}

/// From `o`, the next sentence start before `limit`, else the next word start.
fn sentence_or_word_start(text: &str, o: usize, limit: usize) -> usize {
    let region = &text[o..limit];
    let mut prev_end = false;
    let mut word = None;
    let mut prev_ws = false;
    for (i, c) in region.char_indices() {
        if c.is_whitespace() {
            prev_ws = true;
            continue;
        }
        if prev_ws && prev_end {
            return o + i;
        }
        if prev_ws && word.is_none() {
            word = Some(o + i);
        }
        prev_end = matches!(c, '.' | '!' | '?' | '。');
        prev_ws = false;
    }
    word.unwrap_or(o)
}

fn fill_char_offsets(text: &str, chunks: &mut [Chunk]) {
    let mut points: Vec<usize> = chunks
        .iter()
        .flat_map(|c| [c.byte_start, c.byte_end])
        .collect();
    points.sort_unstable();
    points.dedup();
    let mut map = std::collections::HashMap::with_capacity(points.len());
    let mut chars = 0usize;
    let mut last = 0usize;
    for p in points {
        chars += text[last..p].chars().count();
        last = p;
        map.insert(p, chars);
    }
    for c in chunks {
        c.char_start = map[&c.byte_start];
        c.char_end = map[&c.byte_end];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(text: &str, page: Option<u32>) -> Block {
        Block {
            text: text.to_string(),
            page,
            heading: None,
        }
    }

    fn cfg(max: usize, overlap: usize) -> ChunkerConfig {
        ChunkerConfig {
            max_tokens: max,
            overlap_tokens: overlap,
        }
    }

    #[test]
    fn short_text_is_one_chunk() {
        let (_, c) =
            Chunker::new(&Whitespace, cfg(10, 2)).chunk(&[block("  hello world  ", Some(3))]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].text, "hello world");
        assert_eq!(c[0].page, Some(3));
    }

    #[test]
    fn prefers_paragraph_boundaries() {
        let text = "one two three four five six.\n\nseven eight nine ten eleven twelve";
        let (_, c) = Chunker::new(&Whitespace, cfg(8, 0)).chunk(&[block(text, None)]);
        assert_eq!(c[0].text, "one two three four five six.");
        assert!(c[1].text.starts_with("seven"));
    }

    #[test]
    fn chunks_overlap() {
        let text: String = (0..100).map(|i| format!("w{i} ")).collect();
        let (_, c) = Chunker::new(&Whitespace, cfg(20, 5)).chunk(&[block(&text, None)]);
        assert!(c.len() > 5);
        for pair in c.windows(2) {
            assert!(pair[1].byte_start < pair[0].byte_end, "overlap expected");
        }
    }

    #[test]
    fn blocks_are_not_crossed() {
        let (_, c) = Chunker::new(&Whitespace, cfg(100, 10))
            .chunk(&[block("a b c", Some(1)), block("d e f", Some(2))]);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].page, Some(2));
        assert_eq!(c[1].text, "d e f");
    }

    /// Whitespace tokens, counting the bytes handed to the tokenizer.
    struct Counting(std::cell::Cell<usize>);

    impl TokenSpans for Counting {
        fn token_spans(&self, text: &str) -> Vec<(usize, usize)> {
            self.0.set(self.0.get() + text.len());
            Whitespace.token_spans(text)
        }
    }

    #[test]
    fn each_byte_is_tokenized_about_once() {
        let text: String = (0..20_000)
            .map(|i| format!("word{} ", i % 97))
            .collect::<String>();
        let counting = Counting(std::cell::Cell::new(0));
        let (_, c) = Chunker::new(&counting, cfg(250, 40)).chunk(&[block(&text, None)]);
        assert!(c.len() > 80);
        let ratio = counting.0.get() as f64 / text.len() as f64;
        // Overlap alone re-reads 40/210 of the text; a fixed window of 16
        // bytes per token read it 4-5 times.
        assert!(ratio < 1.6, "tokenized {ratio:.2}x the text");
        for w in c.windows(2) {
            assert!(w[1].byte_start < w[0].byte_end);
        }
        // Chunks are full: the cut is the token limit, not the window.
        for ch in &c[..c.len() - 1] {
            let n = Whitespace.token_spans(&ch.text).len();
            assert!((200..=250).contains(&n), "{n} tokens");
        }
    }

    #[test]
    fn a_run_without_boundaries_is_still_cut_at_the_largest_window() {
        // One enormous "word": the window stops growing at 16 bytes per token.
        let text = "x".repeat(50_000);
        let (_, c) = Chunker::new(&Whitespace, cfg(10, 2)).chunk(&[block(&text, None)]);
        assert!(c.len() >= 50_000 / 160, "{} chunks", c.len());
        assert!(c.iter().all(|ch| ch.text.len() <= 160));
    }

    fn text_strategy() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "[a-z]{1,12}",
            "[éüß東京]{1,4}",
            Just(".".to_string()),
            Just("\n".to_string()),
            Just("\n\n".to_string()),
            "[0-9]{1,6}",
        ];
        prop::collection::vec(
            (
                word,
                prop_oneof![Just(" "), Just(""), Just("  "), Just("\t")],
            ),
            0..400,
        )
        .prop_map(|v| v.into_iter().map(|(w, s)| format!("{w}{s}")).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn chunking_invariants(texts in prop::collection::vec(text_strategy(), 1..4), max in 3usize..60, overlap in 0usize..10) {
            let blocks: Vec<Block> = texts.iter().enumerate().map(|(i, t)| block(t, Some(i as u32 + 1))).collect();
            let (doc, chunks) = Chunker::new(&Whitespace, cfg(max, overlap)).chunk(&blocks);
            let (_, ranges) = document_text(&blocks);
            let mut covered = vec![false; doc.len()];
            for c in &chunks {
                // Offsets point at the chunk's text, in bytes and in characters.
                prop_assert_eq!(&doc[c.byte_start..c.byte_end], c.text.as_str());
                let by_chars: String = doc.chars().skip(c.char_start).take(c.char_end - c.char_start).collect();
                prop_assert_eq!(&by_chars, &c.text);
                prop_assert!(!c.text.trim().is_empty());
                // Size respected (whitespace tokens).
                prop_assert!(Whitespace.token_spans(&c.text).len() <= max, "chunk too long: {}", c.text);
                // Never crosses a block.
                prop_assert!(ranges.iter().any(|&(s, e)| s <= c.byte_start && c.byte_end <= e));
                for b in &mut covered[c.byte_start..c.byte_end] { *b = true; }
            }
            // No text lost: every non-whitespace character is in some chunk.
            for (i, ch) in doc.char_indices() {
                if !ch.is_whitespace() {
                    prop_assert!(covered[i], "lost {:?} at {}", ch, i);
                }
            }
            for (i, c) in chunks.iter().enumerate() { prop_assert_eq!(c.index, i); }
        }
    }
}

//! The keyword tokenizer: Unicode words, with Chinese/Japanese/Korean/Thai
//! characters as one token each (those scripts have no spaces; a phrase query
//! over single characters finds exact runs), lower-cased, English stop words
//! removed (so "how can I ..." does not rank documents by "how" and "can"), and
//! ASCII-folded.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, StopWordFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// Lucene's English stop words plus the question words, pronouns and
/// auxiliaries that questions are made of: in a small library BM25's IDF cannot
/// tell that "how" or "can" carry no meaning.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with", "how", "what", "when", "where", "which", "who",
    "whom", "whose", "why", "can", "could", "do", "does", "did", "i", "me", "my", "you", "your",
    "we", "us", "our", "he", "him", "his", "she", "her", "its", "were", "been", "being", "has",
    "have", "had", "would", "should", "shall", "may", "might", "must", "am", "so", "than", "too",
    "very", "about", "from",
];

/// Name under which the analyzer is registered with the index.
pub const ANALYZER: &str = "quarry";

/// Build the analyzer.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer)
        .filter(RemoveLongFilter::limit(64))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            STOP_WORDS.iter().map(|w| w.to_string()),
        ))
        .filter(AsciiFoldingFilter)
        .build()
}

/// True for characters of scripts written without spaces.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF   // Hiragana, Katakana
        | 0x3400..=0x4DBF // CJK ext A
        | 0x4E00..=0x9FFF // CJK unified
        | 0xF900..=0xFAFF // CJK compatibility
        | 0xAC00..=0xD7AF // Hangul syllables
        | 0x0E00..=0x0E7F // Thai
        | 0x20000..=0x2FFFF)
}

/// Splits text into words and single unspaced-script characters.
#[derive(Clone, Default)]
pub struct WordTokenizer;

/// Tokens produced eagerly.
pub struct VecTokenStream {
    tokens: Vec<Token>,
    cursor: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.cursor += 1;
        self.cursor <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.cursor - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.cursor - 1]
    }
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = VecTokenStream;
    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        let mut tokens = Vec::new();
        let mut start: Option<usize> = None;
        let push = |s: usize, e: usize, tokens: &mut Vec<Token>| {
            tokens.push(Token {
                offset_from: s,
                offset_to: e,
                position: tokens.len(),
                text: text[s..e].to_string(),
                position_length: 1,
            });
        };
        for (i, c) in text.char_indices() {
            if is_unspaced(c) {
                if let Some(s) = start.take() {
                    push(s, i, &mut tokens);
                }
                push(i, i + c.len_utf8(), &mut tokens);
            } else if c.is_alphanumeric() {
                if start.is_none() {
                    start = Some(i);
                }
            } else if let Some(s) = start.take() {
                push(s, i, &mut tokens);
            }
        }
        if let Some(s) = start {
            push(s, text.len(), &mut tokens);
        }
        VecTokenStream { tokens, cursor: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(t: &str) -> Vec<String> {
        let mut a = analyzer();
        let mut s = a.token_stream(t);
        let mut out = Vec::new();
        while s.advance() {
            out.push(s.token().text.clone());
        }
        out
    }

    #[test]
    fn keeps_non_english_text() {
        assert_eq!(
            tokens("Crème brûlée, São-Paulo"),
            ["creme", "brulee", "sao", "paulo"]
        );
        assert_eq!(tokens("Straße Москва"), ["strasse", "москва"]);
        assert_eq!(tokens("東京は日本"), ["東", "京", "は", "日", "本"]);
        assert_eq!(tokens("x2 version 3.14"), ["x2", "version", "3", "14"]);
        assert_eq!(tokens("How can I cancel the deal"), ["cancel", "deal"]);
    }
}

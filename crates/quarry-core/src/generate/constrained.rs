//! Constrained decoding: generation whose output can only be a sentence of a
//! grammar — a JSON Schema, a regular expression or a Lark grammar — through
//! llguidance (the grammar engine llama.cpp uses). At each step the engine
//! gives the set of tokens that keep the output valid; the model picks among
//! them. Where the grammar allows exactly one continuation (a JSON object's
//! keys and punctuation), those tokens are forced and run through the model
//! in one batch instead of being decoded one by one.

use std::sync::Arc;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use tokenizers::Tokenizer;

use super::model::{Emitter, GenerateOptions, GenerationStats, LocalModel, Picker, StopReason};
use crate::error::{Error, Result};

/// GGUF token types (`tokenizer.ggml.token_type`).
const TOKEN_CONTROL: i32 = 3;
const TOKEN_UNUSED: i32 = 5;
const TOKEN_BYTE: i32 = 6;

/// The bytes each token of a GGUF vocabulary stands for; control tokens are
/// marked special (llguidance never emits them as text).
pub(super) fn token_bytes(ct: &gguf_file::Content) -> Result<Vec<Vec<u8>>> {
    let tokens = match ct.metadata.get("tokenizer.ggml.tokens") {
        Some(gguf_file::Value::Array(a)) => a,
        _ => return Err(Error::Tokenizer("the GGUF has no token list".into())),
    };
    let types: Vec<i32> = match ct.metadata.get("tokenizer.ggml.token_type") {
        Some(gguf_file::Value::Array(a)) => a.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let byte_level = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .is_some_and(|m| m == "gpt2");
    let unicode_to_byte = gpt2_byte_decoder();
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let text = t.to_string().map(String::as_str).unwrap_or("");
        let kind = types.get(i).copied().unwrap_or(1);
        out.push(match kind {
            TOKEN_CONTROL | TOKEN_UNUSED => special(text),
            TOKEN_BYTE => parse_byte_token(text).map_or_else(|| special(text), |b| vec![b]),
            _ if byte_level => text
                .chars()
                .map(|c| unicode_to_byte.get(&c).copied())
                .collect::<Option<Vec<u8>>>()
                .unwrap_or_else(|| text.as_bytes().to_vec()),
            _ => text.replace('\u{2581}', " ").into_bytes(),
        });
    }
    Ok(out)
}

fn special(text: &str) -> Vec<u8> {
    let mut b = vec![TokTrie::SPECIAL_TOKEN_MARKER];
    b.extend_from_slice(text.as_bytes());
    b
}

/// `<0xNN>` → the byte.
fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

/// GPT-2's byte-level alphabet backwards: the printable character each byte
/// is written as in a byte-level BPE vocabulary, to the byte.
fn gpt2_byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut map = std::collections::HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let c = if printable {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("a valid code point")
        };
        map.insert(c, b);
    }
    map
}

/// A model's vocabulary as llguidance sees it.
struct VocabEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for VocabEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false)
                .map(|e| e.get_ids().to_vec())
                .unwrap_or_default()
        })
    }
}

/// Builds matchers for grammars over one model's vocabulary.
pub(super) struct Grammars {
    factory: ParserFactory,
    n_vocab: usize,
}

impl Grammars {
    /// Over `bytes` (from [`token_bytes`]), padded to `n_vocab` (the width of
    /// the model's logits, often past the tokenizer's last token).
    pub(super) fn new(
        bytes: &[Vec<u8>],
        tokenizer: &Tokenizer,
        eos_ids: &[u32],
        n_vocab: usize,
    ) -> Result<Self> {
        if bytes.len() > n_vocab || eos_ids.is_empty() {
            return Err(Error::Tokenizer(format!(
                "a vocabulary of {} tokens does not fit {n_vocab} logits",
                bytes.len()
            )));
        }
        let mut words = bytes.to_vec();
        while words.len() < n_vocab {
            words.push(special(&format!("<[pad {}]>", words.len())));
        }
        let info = TokRxInfo::new(n_vocab as u32, eos_ids[0]);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eos_ids);
        let env: TokEnv = Arc::new(VocabEnv {
            trie,
            tokenizer: tokenizer.clone(),
        });
        let mut factory = ParserFactory::new_simple(&env).map_err(grammar_err)?;
        factory.quiet();
        Ok(Grammars { factory, n_vocab })
    }

    /// Logits this was built for.
    pub(super) fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    /// A matcher at the start of `grammar`; an invalid grammar is an error.
    pub(super) fn matcher(&self, grammar: TopLevelGrammar) -> Result<Matcher> {
        let parser = self.factory.create_parser(grammar).map_err(grammar_err)?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(e) => Err(Error::InvalidInput(format!("grammar: {e}"))),
            None => Ok(matcher),
        }
    }
}

fn grammar_err(e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("grammar: {e}"))
}

/// Set every logit the grammar does not allow to minus infinity.
pub(super) fn apply_mask(logits: &mut [f32], mask: &SimpleVob) {
    for (i, l) in logits.iter_mut().enumerate() {
        if !mask.is_allowed(i as TokenId) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// A JSON Schema as a grammar whose JSON is written compactly on one line
/// (`{"a": 1, "b": "x"}`), so every key and separator is forced.
pub fn json_grammar(schema: &serde_json::Value) -> TopLevelGrammar {
    let mut schema = schema.clone();
    if let Some(obj) = schema.as_object_mut() {
        obj.insert(
            "x-guidance".into(),
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            }),
        );
    }
    TopLevelGrammar::from_json_schema(schema)
}

/// Longest run of text a cited text may have before a citation.
pub const MAX_UNCITED_CHARS: usize = 300;

/// Text in which every run of at most [`MAX_UNCITED_CHARS`] characters ends
/// with one or more citations `[n]`, `n` one of `numbers` (at least one);
/// a closing `.`, `!` or `?` may follow the last. For summaries: the model
/// writes freely, but cannot write a point without the passage it is from.
pub fn cited_text_grammar(numbers: &[usize]) -> TopLevelGrammar {
    let alternatives: Vec<String> = numbers.iter().map(usize::to_string).collect();
    TopLevelGrammar::from_lark(format!(
        "start: part+ END?\n\
         part: TEXT CITE+\n\
         TEXT: /[^\\[\\]]{{1,{MAX_UNCITED_CHARS}}}/\n\
         CITE: /\\[({})\\]/\n\
         END: /[.!?]/\n",
        alternatives.join("|")
    ))
}

impl LocalModel {
    /// Generate a continuation of `prompt` (already templated) that can only
    /// be a sentence of `grammar`. Tokens the grammar forces are run through
    /// the model in one batch. `on_text` receives text as it is produced and
    /// returns `false` to stop. Output cut short (`max_tokens`, the context,
    /// the caller) is returned as it is, with its [`StopReason`].
    pub fn generate_constrained(
        &mut self,
        prompt: &str,
        grammar: TopLevelGrammar,
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(String, GenerationStats)> {
        let started = Instant::now();
        let prompt_ids = self.prompt_ids(prompt)?;
        let (logits, reused) = self.prefill(&prompt_ids)?;
        let prefill = started.elapsed();
        let mut logits: Vec<f32> = logits.to_dtype(candle_core::DType::F32)?.to_vec1()?;
        let mut matcher = self.grammars(logits.len())?.matcher(grammar)?;
        let mut picker = Picker::new(opts);
        let mut out = Emitter::new(&[]);
        let mut pos = prompt_ids.len();
        let mut first_token = None;
        let mut forced = 0;
        let reason = loop {
            let mut next = matcher.compute_ff_tokens();
            if next.is_empty() {
                let mask = matcher.compute_mask().map_err(grammar_err)?;
                apply_mask(&mut logits, &mask);
                let token = picker.pick_from(&logits)?;
                if self.eos_ids().contains(&token) {
                    break StopReason::EndOfTurn;
                }
                next.push(token);
            } else {
                forced += next.len();
            }
            matcher.consume_tokens(&next).map_err(grammar_err)?;
            first_token.get_or_insert_with(|| started.elapsed());
            if let Some(reason) = self.emit(&mut out, &next, on_text)? {
                break reason;
            }
            if matcher.is_stopped() {
                break StopReason::EndOfTurn;
            }
            if out.generated.len() >= opts.max_tokens {
                break StopReason::MaxTokens;
            }
            if pos + next.len() + 1 >= self.context_length() {
                break StopReason::ContextFull;
            }
            logits = self.step(&next, pos)?;
            pos += next.len();
        };
        let generated = out.generated.len();
        let text = out.finish(reason, on_text);
        let mut stats = GenerationStats::timed(started, prefill, first_token, reason);
        stats.prompt_tokens = prompt_ids.len();
        stats.reused_tokens = reused;
        stats.generated_tokens = generated;
        stats.forced_tokens = forced;
        Ok((text, stats))
    }

    /// Generate JSON valid for `schema` (a JSON Schema) after `prompt`,
    /// parsed. Output cut short is an error that says why.
    pub fn generate_json(
        &mut self,
        prompt: &str,
        schema: &serde_json::Value,
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(serde_json::Value, GenerationStats)> {
        let (text, stats) =
            self.generate_constrained(prompt, json_grammar(schema), opts, on_text)?;
        if stats.stop != StopReason::EndOfTurn {
            return Err(Error::InvalidInput(format!(
                "the model's JSON was cut short ({:?} after {} tokens)",
                stats.stop, stats.generated_tokens
            )));
        }
        let value = serde_json::from_str(&text).map_err(|e| {
            Error::InvalidInput(format!("the model's output is not JSON ({e}): {text}"))
        })?;
        Ok((value, stats))
    }

    fn emit(
        &self,
        out: &mut Emitter<'_>,
        tokens: &[u32],
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Option<StopReason>> {
        for &t in tokens {
            if let Some(reason) = out.push(t, self.tokenizer(), on_text)? {
                return Ok(Some(reason));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet_covers_every_byte_once() {
        let map = gpt2_byte_decoder();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'Ċ'], b'\n');
        assert_eq!(map[&'a'], b'a');
    }

    #[test]
    fn byte_tokens_parse() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xff>"), Some(255));
        assert_eq!(parse_byte_token("<0x>"), None);
        assert_eq!(parse_byte_token("hello"), None);
    }

    /// Grammars over a vocabulary of the 256 single bytes and an end token (257).
    fn byte_grammars() -> Grammars {
        let bytes: Vec<Vec<u8>> = (0..=255u8)
            .map(|b| vec![b])
            .chain(std::iter::once(special("<eos>")))
            .collect();
        let tokenizer = Tokenizer::new(tokenizers::models::bpe::BPE::default());
        Grammars::new(&bytes, &tokenizer, &[256], 257).unwrap()
    }

    #[test]
    fn masks_forbid_what_the_grammar_does_not_allow() {
        // A vocabulary of the 256 single bytes and an end token: a grammar
        // for "a" or "b" then "c" allows those two first and refuses 'c'.
        // (Forced continuations need a real tokenizer: see constrained_real.)
        let g = byte_grammars();
        let mut m = g.matcher(TopLevelGrammar::from_regex("(a|b)c")).unwrap();
        let allowed = |m: &mut Matcher| {
            let mut logits = vec![0.0; 257];
            apply_mask(&mut logits, &m.compute_mask().unwrap());
            (0..257).filter(|&i| logits[i] == 0.0).collect::<Vec<_>>()
        };
        assert_eq!(allowed(&mut m), vec![b'a' as usize, b'b' as usize]);
        assert!(m.consume_token(b'c' as u32).is_err());
    }

    #[test]
    fn cited_text_needs_a_citation_of_a_given_passage_after_every_run() {
        let g = byte_grammars();
        // Whether `text` is accepted up to its end, and may end there.
        let check = |text: &str| -> (bool, bool) {
            let mut m = g.matcher(cited_text_grammar(&[1, 2, 12])).unwrap();
            for b in text.bytes() {
                if m.consume_token(b as u32).is_err() {
                    return (false, false);
                }
            }
            let mut logits = vec![0.0; 257];
            apply_mask(&mut logits, &m.compute_mask().unwrap());
            (true, logits[256] == 0.0)
        };
        assert_eq!(
            check("The lease runs two years [1]. Rent is 8,450.00 a month [2][12]."),
            (true, true)
        );
        assert_eq!(check("The lease runs two years [1]"), (true, true));
        // Not ended: no citation yet, or a number no passage has.
        assert_eq!(check("The lease runs two years."), (true, false));
        assert!(!check("The lease runs two years [3]").0);
        assert!(!check(&format!("{} [1]", "a".repeat(MAX_UNCITED_CHARS + 1))).0);
    }
}

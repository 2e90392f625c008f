//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`, used by
//! Gemma, Phi-3, Llama 2, Mistral) as a `tokenizers` BPE with byte fallback.
//!
//! Such a GGUF stores tokens, scores and token types but no merges. SentencePiece
//! BPE merges the adjacent pair whose joined piece ranks best, so the merges are
//! recovered from the vocabulary: every split of a token into two tokens is a
//! merge, ranked by the joined token (its score, or for Gemma — whose scores do
//! not follow the merge order — its position in the file). This is the same
//! recovery transformers applies to these files, checked against it token for
//! token in the tests.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper, Tokenizer};

use crate::error::{Error, Result};

/// SentencePiece's word-boundary marker.
const SPACE: char = '\u{2581}';

/// Token types of the GGUF `tokenizer.ggml.token_type` array.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

fn err(reason: impl Into<String>) -> Error {
    Error::ModelLoad {
        id: "tokenizer".into(),
        reason: reason.into(),
    }
}

/// The raw vocabulary of a SentencePiece GGUF.
pub(crate) struct SpmVocab {
    /// Token strings, by id.
    pub tokens: Vec<String>,
    /// Scores, by id (0 when the file has none).
    pub scores: Vec<f32>,
    /// Token types, by id (1 = normal when the file has none).
    pub types: Vec<i32>,
}

impl SpmVocab {
    /// Read tokens, scores and types from GGUF metadata.
    pub fn from_gguf(ct: &gguf_file::Content) -> Result<Self> {
        let array = |key: &str| ct.metadata.get(key).and_then(|v| v.to_vec().ok());
        let tokens: Vec<String> = array("tokenizer.ggml.tokens")
            .ok_or_else(|| err("the GGUF has no tokenizer.ggml.tokens"))?
            .iter()
            .map(|v| v.to_string().cloned())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| err(format!("tokenizer.ggml.tokens: {e}")))?;
        let scores = match array("tokenizer.ggml.scores") {
            Some(a) => a.iter().map(|v| v.to_f32().unwrap_or(0.0)).collect(),
            None => vec![0.0; tokens.len()],
        };
        let types = match array("tokenizer.ggml.token_type") {
            Some(a) => a.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        if scores.len() != tokens.len() || types.len() != tokens.len() {
            return Err(err(format!(
                "{} tokens but {} scores and {} token types",
                tokens.len(),
                scores.len(),
                types.len()
            )));
        }
        Ok(SpmVocab {
            tokens,
            scores,
            types,
        })
    }
}

/// Merges implied by a vocabulary: every split of a token into two tokens,
/// best-ranked joined token first (`rank`: higher is better), and for one
/// joined token the split with the longer left piece first.
pub(crate) fn merges_from_vocab(
    tokens: &[String],
    vocab: &HashMap<String, u32>,
    rank: impl Fn(usize) -> f64,
) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut merges: Vec<(f64, usize, &str, &str)> = Vec::new();
    for token in tokens {
        if !seen.insert(token.as_str()) {
            continue;
        }
        // A duplicated token is ranked by its last id, as the dictionary holds it.
        let id = vocab[token.as_str()] as usize;
        let r = rank(id);
        for (at, _) in token.char_indices().skip(1) {
            let (l, rt) = token.split_at(at);
            if vocab.contains_key(l) && vocab.contains_key(rt) {
                merges.push((r, l.chars().count(), l, rt));
            }
        }
    }
    merges.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.cmp(&a.1))
            .then(b.3.chars().count().cmp(&a.3.chars().count()))
    });
    merges
        .into_iter()
        .map(|(_, _, l, r)| (l.to_string(), r.to_string()))
        .collect()
}

/// Build the tokenizer of a SentencePiece GGUF for `architecture`.
pub(crate) fn spm_tokenizer(ct: &gguf_file::Content, architecture: &str) -> Result<Tokenizer> {
    let raw = SpmVocab::from_gguf(ct)?;
    let gemma = architecture.starts_with("gemma");
    // Gemma files store tokens of two or more spaces as real spaces, while the
    // text is looked up with spaces already turned into '▁'.
    let tokens: Vec<String> = if gemma {
        raw.tokens
            .iter()
            .map(|t| {
                if t.contains(' ') && t.trim().is_empty() {
                    SPACE.to_string().repeat(t.chars().count())
                } else {
                    t.clone()
                }
            })
            .collect()
    } else {
        raw.tokens.clone()
    };
    let vocab: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges = if gemma {
        merges_from_vocab(&tokens, &vocab, |id| -(id as f64))
    } else {
        merges_from_vocab(&tokens, &vocab, |id| raw.scores[id] as f64)
    };
    let unk_id = ct
        .metadata
        .get("tokenizer.ggml.unknown_token_id")
        .and_then(|v| v.to_u32().ok())
        .unwrap_or(0) as usize;
    let unk = tokens
        .get(unk_id)
        .cloned()
        .unwrap_or_else(|| "<unk>".into());
    let bpe = BPE::builder()
        .vocab_and_merges(
            vocab
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<tokenizers::models::bpe::Vocab>(),
            merges,
        )
        .unk_token(unk)
        .fuse_unk(true)
        .byte_fallback(true)
        .build()
        .map_err(|e| err(format!("SentencePiece vocabulary: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);

    // Llama-2-style files add a space before the text; Gemma's do not.
    let add_space_prefix = ct
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(!gemma);
    let replace: NormalizerWrapper = Replace::new(" ", SPACE.to_string())
        .map_err(|e| err(e.to_string()))?
        .into();
    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(SPACE.to_string(), " ")
            .map_err(|e| err(e.to_string()))?
            .into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        tokenizer
            .with_normalizer(Some(NormalizerSequence::new(vec![
                Prepend::new(SPACE.to_string()).into(),
                replace,
            ])))
            .map_err(|e| err(e.to_string()))?;
        decoders.push(Strip::new(' ', 1, 0).into());
    } else {
        tokenizer
            .with_normalizer(Some(replace))
            .map_err(|e| err(e.to_string()))?;
    }
    tokenizer.with_decoder(Some(DecoderSequence::new(decoders)));

    // Control tokens are special; user-defined ones (Gemma's "\n\n", "<think>")
    // are matched whole in the text but are not special.
    let control: Vec<AddedToken> = raw
        .tokens
        .iter()
        .zip(&raw.types)
        .filter(|(_, &t)| t == CONTROL)
        .map(|(tok, _)| AddedToken::from(tok.clone(), true).normalized(false))
        .collect();
    tokenizer
        .add_special_tokens(control)
        .map_err(|e| err(e.to_string()))?;
    let user: Vec<AddedToken> = raw
        .tokens
        .iter()
        .zip(&raw.types)
        .filter(|(tok, &t)| t == USER_DEFINED && vocab.contains_key(tok.as_str()))
        .map(|(tok, _)| AddedToken::from(tok.clone(), false).normalized(false))
        .collect();
    tokenizer.add_tokens(user).map_err(|e| err(e.to_string()))?;
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_follow_rank_then_longer_left_piece() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let m = merges_from_vocab(&tokens, &vocab, |id| -(id as f64));
        let pairs: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(
            pairs,
            vec![("a", "b"), ("ab", "c"), ("a", "bc"), ("b", "c")]
        );
    }
}

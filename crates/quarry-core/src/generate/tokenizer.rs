//! A `tokenizers::Tokenizer` from a GGUF's own metadata, so a bare .gguf is
//! all a user needs.
//!
//! candle's `TokenizerFromGguf` builds the BPE vocabulary, merges and special
//! tokens; its pre-tokenizer for pre-types it does not know (`smollm`, `gpt2`,
//! ...) adds a space before the text, which llama.cpp and the models' own
//! tokenizers do not. This module picks the pre-tokenizer from
//! `tokenizer.ggml.pre` and `tokenizer.ggml.add_space_prefix` instead.
//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`) are built by
//! [`super::spm`].

use candle_core::quantized::gguf_file;
use candle_core::quantized::tokenizer::TokenizerFromGguf;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::SplitDelimiterBehavior;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Pre-types whose pipeline candle already builds like the model's own tokenizer.
const HANDLED_BY_CANDLE: &[&str] = &["qwen2", "smaug-bpe", "lfm2", "llama3", "llama-bpe"];

/// GPT-4o's (o200k) split of text into words before byte-level BPE, as
/// tiktoken defines it: pre-type `gpt-4o` (Phi-4-mini). Cased words keep
/// their leading capitals, contractions stay with their word, digits go in
/// threes.
const REGEX_GPT4O: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// Build the tokenizer of a GGUF file.
pub fn tokenizer_from_gguf(ct: &gguf_file::Content) -> Result<Tokenizer> {
    let kind = ct
        .metadata
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_default();
    match kind.as_str() {
        "gpt2" => {}
        "llama" => {
            let arch = ct
                .metadata
                .get("general.architecture")
                .and_then(|v| v.to_string().ok())
                .cloned()
                .unwrap_or_default();
            return super::spm::spm_tokenizer(ct, &arch);
        }
        _ => {
            return Err(Error::ModelLoad {
                id: "tokenizer".into(),
                reason: format!(
                    "tokenizer model '{kind}' is not supported; byte-level BPE ('gpt2') \
                     and SentencePiece ('llama') vocabularies are"
                ),
            });
        }
    }
    let mut tokenizer = Tokenizer::from_gguf(ct).map_err(|e| Error::ModelLoad {
        id: "tokenizer".into(),
        reason: e.to_string(),
    })?;
    let pre = ct
        .metadata
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .cloned()
        .unwrap_or_else(|| "gpt2".into());
    if HANDLED_BY_CANDLE.contains(&pre.as_str()) {
        return Ok(tokenizer);
    }
    let add_prefix_space = ct
        .metadata
        .get("tokenizer.ggml.add_space_prefix")
        .and_then(|v| v.to_bool().ok())
        .unwrap_or(false);
    let byte_level = ByteLevel::new(add_prefix_space, true, true);
    match pre.as_str() {
        // SmolLM: digits one by one, then GPT-2 byte-level.
        "smollm" => {
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                Digits::new(true).into(),
                byte_level.into(),
            ])));
        }
        "gpt-4o" => {
            let split = Split::new(
                SplitPattern::Regex(REGEX_GPT4O.into()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
            tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, false, false).into(),
            ])));
        }
        _ => {
            tokenizer.with_pre_tokenizer(Some(byte_level));
        }
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(add_prefix_space, true, true)));
    tokenizer.with_post_processor(Some(ByteLevelProcessor::new(add_prefix_space, true, true)));
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

    /// Phi-4-mini's split follows tiktoken's o200k pattern (the expected
    /// pieces are what Python's `regex` module finds with that pattern).
    #[test]
    fn gpt4o_split_follows_o200k() {
        let split = Split::new(
            SplitPattern::Regex(REGEX_GPT4O.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .unwrap();
        let text = "The CEO's HTTPServer paid 1234567 EUR/month\n\n  (approx.) naïve";
        let mut pre = PreTokenizedString::from(text);
        split.pre_tokenize(&mut pre).unwrap();
        let pieces: Vec<String> = pre
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect();
        let want = [
            "The",
            " CEO's",
            " HTTPServer",
            " paid",
            " ",
            "123",
            "456",
            "7",
            " EUR",
            "/month",
            "\n\n",
            " ",
            " (",
            "approx",
            ".)",
            " naïve",
        ];
        assert_eq!(pieces, want);
    }
}

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
use tokenizers::processors::byte_level::ByteLevel as ByteLevelProcessor;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

/// Pre-types whose pipeline candle already builds like the model's own tokenizer.
const HANDLED_BY_CANDLE: &[&str] = &["qwen2", "smaug-bpe", "lfm2", "llama3", "llama-bpe"];

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
        _ => {
            tokenizer.with_pre_tokenizer(Some(byte_level));
        }
    }
    tokenizer.with_decoder(Some(ByteLevelDecoder::new(add_prefix_space, true, true)));
    tokenizer.with_post_processor(Some(ByteLevelProcessor::new(add_prefix_space, true, true)));
    Ok(tokenizer)
}

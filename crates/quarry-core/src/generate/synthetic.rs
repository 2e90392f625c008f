//! GGUF files of seeded random weights in the shape of a real decoder.
//!
//! Where a model's real weights cannot be had (Qwen3 here: no registry
//! package carries it), a file of the same architecture, tensor names,
//! metadata and quantization still lets two implementations be compared on
//! identical bytes (Quarry's decoder against candle's reference models) and
//! lets speed be measured: a product costs the same whatever its weights.
//! Nothing here is meant to produce sensible text.

use std::io::{Seek, Write};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// The shape of a synthetic decoder.
#[derive(Debug, Clone)]
pub struct DecoderShape {
    /// `general.architecture`: `llama`, `qwen2` or `qwen3`.
    pub architecture: String,
    /// Transformer blocks.
    pub layers: usize,
    /// Hidden width.
    pub width: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the MLP's hidden layer.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// `context_length` in the metadata.
    pub context: usize,
    /// Output projection tied to the token embeddings (no `output.weight`).
    pub tied: bool,
    /// Llama 3's per-frequency rotary factors (`rope_freqs.weight`).
    pub rope_factors: Option<Vec<f32>>,
}

impl DecoderShape {
    /// Qwen3-1.7B's shape (28 blocks, 2,048 wide, 16/8 heads of 128, tied
    /// embeddings, 151,936 tokens).
    pub fn qwen3_1_7b() -> Self {
        DecoderShape {
            architecture: "qwen3".into(),
            layers: 28,
            width: 2048,
            heads: 16,
            kv_heads: 8,
            head_dim: 128,
            ffn: 6144,
            vocab: 151_936,
            context: 40_960,
            tied: true,
            rope_factors: None,
        }
    }

    /// A model small enough for unit tests in `architecture`'s layout.
    pub fn tiny(architecture: &str) -> Self {
        DecoderShape {
            architecture: architecture.into(),
            layers: 2,
            width: 256,
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            ffn: 512,
            vocab: 512,
            context: 1024,
            tied: false,
            rope_factors: None,
        }
    }
}

/// Llama 3's scaled inverse rotary frequencies as Meta's reference computes
/// them (scaling factor 32, low/high frequency factors 1 and 4, original
/// context 8,192: Llama 3.2's configuration).
pub fn llama3_inv_freq(dim: usize, base: f64) -> Vec<f64> {
    let (factor, low, high, original) = (32.0, 1.0, 4.0, 8192.0);
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    (0..dim)
        .step_by(2)
        .map(|i| {
            let inv = 1.0 / base.powf(i as f64 / dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / inv;
            if wavelen < high_wavelen {
                inv
            } else if wavelen > low_wavelen {
                inv / factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                (1.0 - smooth) * inv / factor + smooth * inv
            }
        })
        .collect()
}

/// The per-frequency factors llama.cpp's converter stores for them as
/// `rope_freqs.weight` (each unscaled frequency over its scaled one).
pub fn llama3_rope_factors(dim: usize, base: f64) -> Vec<f32> {
    llama3_inv_freq(dim, base)
        .iter()
        .enumerate()
        .map(|(j, scaled)| (1.0 / base.powf(2.0 * j as f64 / dim as f64) / scaled) as f32)
        .collect()
}

/// Seeded uniform values in `[-scale, scale)` (splitmix64).
struct Values(u64);

impl Values {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    fn tensor(&mut self, shape: &[usize], scale: f32, offset: f32) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| offset + scale * self.next()).collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }
}

/// Write a GGUF of `shape` with every matrix quantized to `weights` (norms,
/// biases and rotary factors stay f32), values drawn from `seed`.
pub fn write_decoder<W: Write + Seek>(
    w: &mut W,
    shape: &DecoderShape,
    weights: GgmlDType,
    seed: u64,
) -> Result<()> {
    let s = shape;
    let mut values = Values(seed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize| -> Result<()> {
        // Scaled so that a product keeps its input's magnitude.
        let t = values.tensor(&[rows, cols], 1.7 / (cols as f32).sqrt(), 0.0)?;
        tensors.push((name, QTensor::quantize(&t, weights)?));
        Ok(())
    };
    matrix("token_embd.weight".into(), s.vocab, s.width)?;
    if !s.tied {
        matrix("output.weight".into(), s.vocab, s.width)?;
    }
    let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    for i in 0..s.layers {
        matrix(format!("blk.{i}.attn_q.weight"), q, s.width)?;
        matrix(format!("blk.{i}.attn_k.weight"), kv, s.width)?;
        matrix(format!("blk.{i}.attn_v.weight"), kv, s.width)?;
        matrix(format!("blk.{i}.attn_output.weight"), s.width, q)?;
        matrix(format!("blk.{i}.ffn_gate.weight"), s.ffn, s.width)?;
        matrix(format!("blk.{i}.ffn_up.weight"), s.ffn, s.width)?;
        matrix(format!("blk.{i}.ffn_down.weight"), s.width, s.ffn)?;
    }
    let mut small = |name: String, len: usize, scale: f32, offset: f32| -> Result<()> {
        let t = values.tensor(&[len], scale, offset)?;
        tensors.push((name, QTensor::quantize(&t, GgmlDType::F32)?));
        Ok(())
    };
    small("output_norm.weight".into(), s.width, 0.1, 1.0)?;
    for i in 0..s.layers {
        small(format!("blk.{i}.attn_norm.weight"), s.width, 0.1, 1.0)?;
        small(format!("blk.{i}.ffn_norm.weight"), s.width, 0.1, 1.0)?;
        match s.architecture.as_str() {
            "qwen2" => {
                small(format!("blk.{i}.attn_q.bias"), q, 0.5, 0.0)?;
                small(format!("blk.{i}.attn_k.bias"), kv, 0.5, 0.0)?;
                small(format!("blk.{i}.attn_v.bias"), kv, 0.5, 0.0)?;
            }
            "qwen3" => {
                small(format!("blk.{i}.attn_q_norm.weight"), s.head_dim, 0.3, 1.0)?;
                small(format!("blk.{i}.attn_k_norm.weight"), s.head_dim, 0.3, 1.0)?;
            }
            "llama" => {}
            other => {
                return Err(Error::InvalidInput(format!(
                    "no synthetic layout for architecture '{other}'"
                )))
            }
        }
    }
    if let Some(f) = &s.rope_factors {
        let t = Tensor::new(f.as_slice(), &Device::Cpu)?;
        tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32)?,
        ));
    }
    let metadata = metadata(s);
    let md: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(w, &md, &ts)?;
    Ok(())
}

/// The metadata the loaders read, as llama.cpp's converter names it.
fn metadata(s: &DecoderShape) -> Vec<(String, gguf_file::Value)> {
    use gguf_file::Value;
    let a = &s.architecture;
    let n = |v: usize| Value::U32(v as u32);
    vec![
        ("general.architecture".into(), Value::String(a.clone())),
        (
            "general.name".into(),
            Value::String(format!("synthetic {a}")),
        ),
        // candle's qwen3 computes in f32 when this says so (else f16).
        ("general.dtype".into(), Value::U32(0)),
        (format!("{a}.block_count"), n(s.layers)),
        (format!("{a}.context_length"), n(s.context)),
        (format!("{a}.embedding_length"), n(s.width)),
        (format!("{a}.feed_forward_length"), n(s.ffn)),
        (format!("{a}.attention.head_count"), n(s.heads)),
        (format!("{a}.attention.head_count_kv"), n(s.kv_heads)),
        (format!("{a}.attention.key_length"), n(s.head_dim)),
        (format!("{a}.attention.value_length"), n(s.head_dim)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(1e-6),
        ),
        (format!("{a}.rope.dimension_count"), n(s.head_dim)),
        (format!("{a}.rope.freq_base"), Value::F32(1_000_000.0)),
        // A SentencePiece-style vocabulary of placeholders (llama.cpp checks
        // token ids against it; nothing here tokenizes text).
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens(s.vocab)),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(vec![Value::F32(0.0); s.vocab]),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vec![Value::I32(1); s.vocab]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ]
}

/// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, then numbered placeholders.
fn tokens(vocab: usize) -> Vec<gguf_file::Value> {
    let named = ["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let bytes = (0..=255u8).map(|b| format!("<0x{b:02X}>"));
    let rest = (0..).map(|i| format!("t{i}"));
    named
        .into_iter()
        .chain(bytes)
        .chain(rest)
        .take(vocab)
        .map(gguf_file::Value::String)
        .collect()
}

/// Tokens per second of Quarry's decoder on one file.
#[derive(Debug, Clone, Copy)]
pub struct DecoderSpeed {
    /// Prompt tokens read per second (slices of 256, as `ask` reads them).
    pub prefill: f64,
    /// Tokens written per second, one at a time after the prompt.
    pub decode: f64,
}

/// Time Quarry's decoder on `path` (any GGUF it runs, real or synthetic):
/// a prompt of `prompt` token ids, then `decode` single-token steps, greedy
/// over whatever the weights say. Token ids only: no tokenizer is needed.
pub fn decoder_speed(path: &std::path::Path, prompt: usize, decode: usize) -> Result<DecoderSpeed> {
    let mut f = std::fs::File::open(path)?;
    let ct = gguf_file::Content::read(&mut f)?;
    let arch = match ct.metadata.get("general.architecture") {
        Some(gguf_file::Value::String(a)) => a.clone(),
        _ => return Err(Error::InvalidInput("no general.architecture".into())),
    };
    let vocab = ct
        .tensor_infos
        .get("token_embd.weight")
        .map(|t| t.shape.dims()[0])
        .ok_or_else(|| Error::InvalidInput("no token_embd.weight".into()))?;
    let mut d = super::decoder::Decoder::from_gguf(&ct, &mut f, &arch, prompt + decode + 1, false)?;
    let ids: Vec<u32> = (0..prompt)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let start = std::time::Instant::now();
    let mut logits = None;
    for chunk in ids.chunks(super::model::PREFILL_SLICE).enumerate() {
        let (i, slice) = chunk;
        logits = Some(d.forward(slice, i * super::model::PREFILL_SLICE)?);
    }
    let prefill = prompt as f64 / start.elapsed().as_secs_f64();
    let mut next = logits
        .ok_or_else(|| Error::InvalidInput("an empty prompt".into()))?
        .flatten_all()?
        .argmax(0)?
        .to_scalar::<u32>()?;
    let start = std::time::Instant::now();
    for pos in prompt..prompt + decode {
        next = d
            .forward(&[next], pos)?
            .flatten_all()?
            .argmax(0)?
            .to_scalar::<u32>()?;
    }
    Ok(DecoderSpeed {
        prefill,
        decode: decode as f64 / start.elapsed().as_secs_f64(),
    })
}

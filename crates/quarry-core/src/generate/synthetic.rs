//! GGUF files of seeded random weights in the shape of a real decoder.
//!
//! Where a model's real weights cannot be had (Qwen3 and Phi-4-mini here: no registry
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
    /// Leading values of each head that rotate (`None`: all of them).
    pub rope_dim: Option<usize>,
    /// Phi-3's LongRoPE scaling.
    pub longrope: Option<LongRope>,
}

/// Phi-3's LongRoPE: per-frequency divisors for contexts up to the original
/// one and beyond it, and the factor that scales cos and sin.
#[derive(Debug, Clone)]
pub struct LongRope {
    /// `rope_factors_short.weight`.
    pub short: Vec<f32>,
    /// `rope_factors_long.weight`.
    pub long: Vec<f32>,
    /// `rope.scaling.original_context_length`.
    pub original: usize,
    /// `rope.scaling.attn_factor`.
    pub attn_factor: f32,
}

impl LongRope {
    /// Factors in Phi-4-mini's manner for `dim` rotary dimensions: the short
    /// set rising from 1 to 3 over the frequencies, the long set from 1 to
    /// 40; a 32× longer context than the original 4,096 (attention factor
    /// √(1 + ln 32 / ln 4096), as llama.cpp's converter computes it).
    pub fn phi4_like(dim: usize) -> Self {
        let n = dim / 2;
        let ramp = |top: f32| -> Vec<f32> {
            (0..n)
                .map(|i| 1.0 + (top - 1.0) * (i as f32 / (n - 1).max(1) as f32).powi(2))
                .collect()
        };
        LongRope {
            short: ramp(3.0),
            long: ramp(40.0),
            original: 4096,
            attn_factor: (1.0 + 32f32.ln() / 4096f32.ln()).sqrt(),
        }
    }
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
            rope_dim: None,
            longrope: None,
        }
    }

    /// Phi-4-mini-instruct's shape (32 blocks, 3,072 wide, 24/8 heads of
    /// 128 of which 96 rotate, LongRoPE, tied embeddings, 200,064 tokens).
    pub fn phi4_mini() -> Self {
        DecoderShape {
            architecture: "phi3".into(),
            layers: 32,
            width: 3072,
            heads: 24,
            kv_heads: 8,
            head_dim: 128,
            ffn: 8192,
            vocab: 200_064,
            context: 131_072,
            tied: true,
            rope_factors: None,
            rope_dim: Some(96),
            longrope: Some(LongRope::phi4_like(96)),
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
            rope_dim: None,
            longrope: None,
        }
    }

    /// Phi-4-mini's partial rotation (48 of 64), LongRoPE and tied output
    /// on a unit-test-sized phi3.
    pub fn tiny_phi4() -> Self {
        DecoderShape {
            rope_dim: Some(48),
            longrope: Some(LongRope::phi4_like(48)),
            tied: true,
            context: 131_072,
            ..DecoderShape::tiny("phi3")
        }
    }

    /// Rotating dimensions of a head.
    fn rotary(&self) -> usize {
        self.rope_dim.unwrap_or(self.head_dim)
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
    write_with(w, shape, &|_| weights, seed)
}

/// Write a GGUF of `shape` quantized the way llama.cpp's `Q4_K_M` mixes
/// types: Q4_K, with Q6_K for the output (or the tied token table) and for
/// the value and down projections of the first and last eighth of the
/// blocks and every third block between, and Q5_K for fused
/// query/key/value matrices.
pub fn write_decoder_q4_k_m<W: Write + Seek>(
    w: &mut W,
    shape: &DecoderShape,
    seed: u64,
) -> Result<()> {
    let layers = shape.layers;
    let more_bits = |i: usize| i < layers / 8 || i >= 7 * layers / 8 || (i - layers / 8) % 3 == 2;
    let tied = shape.tied;
    let mix = move |name: &str| -> GgmlDType {
        let block = name
            .strip_prefix("blk.")
            .and_then(|r| r.split('.').next())
            .and_then(|i| i.parse::<usize>().ok());
        match (name, block) {
            ("output.weight", _) => GgmlDType::Q6K,
            ("token_embd.weight", _) if tied => GgmlDType::Q6K,
            (n, Some(_)) if n.ends_with("attn_qkv.weight") => GgmlDType::Q5K,
            (n, Some(i))
                if (n.ends_with("attn_v.weight") || n.ends_with("ffn_down.weight"))
                    && more_bits(i) =>
            {
                GgmlDType::Q6K
            }
            _ => GgmlDType::Q4K,
        }
    };
    write_with(w, shape, &mix, seed)
}

/// Write a GGUF of `shape`, each matrix quantized to the type `weights` names for it.
fn write_with<W: Write + Seek>(
    w: &mut W,
    shape: &DecoderShape,
    weights: &dyn Fn(&str) -> GgmlDType,
    seed: u64,
) -> Result<()> {
    let s = shape;
    let mut values = Values(seed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize| -> Result<()> {
        // Scaled so that a product keeps its input's magnitude.
        let t = values.tensor(&[rows, cols], 1.7 / (cols as f32).sqrt(), 0.0)?;
        let q = QTensor::quantize(&t, weights(&name))?;
        tensors.push((name, q));
        Ok(())
    };
    matrix("token_embd.weight".into(), s.vocab, s.width)?;
    if !s.tied {
        matrix("output.weight".into(), s.vocab, s.width)?;
    }
    let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let fused = s.architecture == "phi3";
    for i in 0..s.layers {
        if fused {
            // Phi-3: query, key and value rows in one matrix; gate then up.
            matrix(format!("blk.{i}.attn_qkv.weight"), q + 2 * kv, s.width)?;
        } else {
            matrix(format!("blk.{i}.attn_q.weight"), q, s.width)?;
            matrix(format!("blk.{i}.attn_k.weight"), kv, s.width)?;
            matrix(format!("blk.{i}.attn_v.weight"), kv, s.width)?;
        }
        matrix(format!("blk.{i}.attn_output.weight"), s.width, q)?;
        if fused {
            matrix(format!("blk.{i}.ffn_up.weight"), 2 * s.ffn, s.width)?;
        } else {
            matrix(format!("blk.{i}.ffn_gate.weight"), s.ffn, s.width)?;
            matrix(format!("blk.{i}.ffn_up.weight"), s.ffn, s.width)?;
        }
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
            "llama" | "phi3" => {}
            other => {
                return Err(Error::InvalidInput(format!(
                    "no synthetic layout for architecture '{other}'"
                )))
            }
        }
    }
    let mut factors = |name: &str, f: &[f32]| -> Result<()> {
        let t = Tensor::new(f, &Device::Cpu)?;
        tensors.push((name.into(), QTensor::quantize(&t, GgmlDType::F32)?));
        Ok(())
    };
    if let Some(f) = &s.rope_factors {
        factors("rope_freqs.weight", f)?;
    }
    if let Some(l) = &s.longrope {
        factors("rope_factors_long.weight", &l.long)?;
        factors("rope_factors_short.weight", &l.short)?;
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
    let mut md = vec![
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
        (format!("{a}.rope.dimension_count"), n(s.rotary())),
        (
            format!("{a}.rope.freq_base"),
            // candle's phi3 knows no other base.
            Value::F32(if a == "phi3" { 10_000.0 } else { 1_000_000.0 }),
        ),
        // A SentencePiece-style vocabulary of placeholders (llama.cpp checks
        // token ids against it; nothing here tokenizes text).
        ("tokenizer.ggml.model".into(), Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens(s.vocab, a)),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(vec![Value::F32(0.0); s.vocab]),
        ),
        ("tokenizer.ggml.token_type".into(), token_types(s.vocab, a)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ];
    if let Some(l) = &s.longrope {
        md.push((
            format!("{a}.rope.scaling.original_context_length"),
            n(l.original),
        ));
        md.push((
            format!("{a}.rope.scaling.attn_factor"),
            Value::F32(l.attn_factor),
        ));
    }
    md
}

/// Phi-3's chat markers, which llama.cpp looks up by name in a phi3 vocabulary.
const PHI3_MARKERS: [&str; 5] = [
    "<|endoftext|>",
    "<|assistant|>",
    "<|end|>",
    "<|user|>",
    "<|system|>",
];

/// Special tokens of `architecture`'s vocabulary, placed at its end.
fn markers(architecture: &str) -> &'static [&'static str] {
    if architecture == "phi3" {
        &PHI3_MARKERS
    } else {
        &[]
    }
}

/// `<unk>`, `<s>`, `</s>`, the 256 byte tokens, numbered placeholders, then
/// the architecture's special tokens.
fn tokens(vocab: usize, architecture: &str) -> Vec<gguf_file::Value> {
    let special = markers(architecture);
    let named = ["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let bytes = (0..=255u8).map(|b| format!("<0x{b:02X}>"));
    let rest = (0..).map(|i| format!("t{i}"));
    named
        .into_iter()
        .chain(bytes)
        .chain(rest)
        .take(vocab - special.len())
        .chain(special.iter().map(|s| s.to_string()))
        .map(gguf_file::Value::String)
        .collect()
}

/// Normal tokens (1), and control tokens (3) for the special ones.
fn token_types(vocab: usize, architecture: &str) -> gguf_file::Value {
    let special = markers(architecture).len();
    gguf_file::Value::Array(
        (0..vocab)
            .map(|i| gguf_file::Value::I32(if i + special >= vocab { 3 } else { 1 }))
            .collect(),
    )
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

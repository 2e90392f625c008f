//! How fast this machine runs local models: a short probe of the decoder's
//! quantized matrix products (the work that decides a model's speed), and a
//! measurement of an installed model on a short prompt.
//!
//! The probe runs the products the decoder itself runs (Quarry's kernels
//! where the CPU has them, candle's otherwise) on synthetic Q4_K weights the
//! shape of a 1.5B model's MLP: one token against a set of matrices larger
//! than any cache (decoding streams every weight once per token, so its speed
//! is the bytes read per second), and a block of prompt tokens against one
//! matrix (prefill reuses each weight across the block, so its speed is the
//! multiply-adds per second). [`crate::generate::machine`] turns the two
//! figures into each model's expected speed.

use std::time::{Duration, Instant};

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::linear::Linear;
use super::model::{GenerateOptions, LocalModel};
use super::template::ChatMessage;
use crate::error::Result;

/// Output rows and inputs of a probe matrix (Qwen2.5-1.5B's MLP up-projection).
const ROWS: usize = 8960;
const COLS: usize = 1536;
/// Probe matrices for decoding: 12 × 7.7 MB, more than a laptop's caches.
const MATRICES: usize = 12;
/// Prompt tokens per prefill product (the decoder slices prompts at 256).
const PROMPT_ROWS: usize = 128;
/// GGUF bytes of one Q4_K block of 256 weights.
const Q4K_BLOCK_BYTES: usize = 144;

/// The decoder's product speeds on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductSpeed {
    /// Quantized weights read per second when decoding one token, GB/s of
    /// GGUF-sized Q4_K weights.
    pub decode_gb_s: f64,
    /// Multiply-adds per second over a block of prompt tokens, billions.
    pub prefill_gmac_s: f64,
    /// The kernels that ran ("Quarry AVX-512 VNNI", "Quarry AVX2" or
    /// "candle").
    pub kernels: String,
}

/// A model's speed measured on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelSpeed {
    /// Prompt tokens per second.
    pub prefill_tok_s: f64,
    /// Generated tokens per second (token by token, no prompt lookup).
    pub decode_tok_s: f64,
    /// The prompt's length, tokens.
    pub prompt_tokens: usize,
}

/// Synthetic Q4_K weights: random quants and scales, small block scales so
/// the products stay finite.
fn q4k_bytes(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let blocks = rows * cols / 256;
    let mut bytes = vec![0u8; blocks * Q4K_BLOCK_BYTES];
    let mut s = seed | 1;
    for chunk in bytes.chunks_mut(8) {
        // xorshift64
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        let b = s.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    for block in bytes.chunks_mut(Q4K_BLOCK_BYTES) {
        // d and dmin as f16 0.01 (0x211f).
        block[..4].copy_from_slice(&[0x1f, 0x21, 0x1f, 0x21]);
    }
    bytes
}

fn probe_matrix(seed: u64) -> Result<Linear> {
    let bytes = q4k_bytes(ROWS, COLS, seed);
    let t = qtensor_from_ggml(GgmlDType::Q4K, &bytes, vec![ROWS, COLS], &Device::Cpu)?;
    Linear::new(t, false)
}

/// Run `step` until `time` has passed (at least twice); returns runs per second.
fn rate(time: Duration, mut step: impl FnMut() -> Result<()>) -> Result<f64> {
    step()?; // warm up: repacking, thread pool, page faults
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 2 || start.elapsed() < time {
        step()?;
        runs += 1;
    }
    Ok(f64::from(runs) / start.elapsed().as_secs_f64())
}

/// Measure the decoder's product speeds, spending about `time` in all (plus
/// the set-up: ~100 MB of synthetic weights generated and repacked).
pub fn probe_products(time: Duration) -> Result<ProductSpeed> {
    let matrices = (0..MATRICES as u64)
        .map(|i| probe_matrix(0x9e37_79b9_7f4a_7c15 ^ (i + 1)))
        .collect::<Result<Vec<_>>>()?;
    let one = Tensor::randn(0f32, 1.0, (1, COLS), &Device::Cpu)?;
    let block = Tensor::randn(0f32, 1.0, (PROMPT_ROWS, COLS), &Device::Cpu)?;
    let passes = rate(time / 2, || {
        for m in &matrices {
            std::hint::black_box(m.forward(&one, false)?);
        }
        Ok(())
    })?;
    let bytes_per_pass = (MATRICES * ROWS * COLS / 256 * Q4K_BLOCK_BYTES) as f64;
    let products = rate(time / 2, || {
        std::hint::black_box(matrices[0].forward(&block, false)?);
        Ok(())
    })?;
    let macs = (ROWS * COLS * PROMPT_ROWS) as f64;
    Ok(ProductSpeed {
        decode_gb_s: passes * bytes_per_pass / 1e9,
        prefill_gmac_s: products * macs / 1e9,
        kernels: matrices[0].kernels().to_string(),
    })
}

/// Filler for a measurement prompt: plain prose, numbered so that no two
/// paragraphs tokenize the same.
fn filler(i: usize) -> String {
    format!(
        "Record {i}. The committee met on a Tuesday to review the quarterly \
         figures for the northern warehouse, where deliveries had risen by {} \
         percent while staffing stayed level. Members asked for the shipping \
         logs of the previous season and agreed to meet again after the audit.\n\n",
        i * 7 % 43 + 3
    )
}

/// Measure `model` on this machine: prefill a prompt of about
/// `prompt_tokens` tokens and decode up to 24 tokens, token by token.
pub fn measure_model(model: &mut LocalModel, prompt_tokens: usize) -> Result<ModelSpeed> {
    let mut body = String::new();
    let mut i = 0;
    while model.count_tokens(&body) < prompt_tokens {
        body.push_str(&filler(i));
        i += 1;
    }
    let prompt = model.render_chat(&[ChatMessage::new(
        "user",
        format!("{body}Count from one to one hundred in words, separated by commas."),
    )])?;
    let opts = GenerateOptions {
        max_tokens: 24,
        lookup: false,
        ..Default::default()
    };
    // A short warm-up first: lazy repacking and first-touch page faults are
    // a cost of loading, not of answering.
    let warm_up = model.render_chat(&[ChatMessage::new("user", filler(0))])?;
    let short = GenerateOptions {
        max_tokens: 2,
        ..opts.clone()
    };
    model.generate(&warm_up, &short, &mut |_| true)?;
    model.forget_prefix();
    let (_, stats) = model.generate(&prompt, &opts, &mut |_| true)?;
    model.forget_prefix();
    let prefilled = stats.prompt_tokens.saturating_sub(stats.reused_tokens);
    Ok(ModelSpeed {
        prefill_tok_s: prefilled as f64 / stats.prefill.as_secs_f64().max(1e-9),
        decode_tok_s: stats.generated_tokens.saturating_sub(1) as f64
            / stats.decode.as_secs_f64().max(1e-9),
        prompt_tokens: stats.prompt_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_weights_are_whole_q4k_blocks_with_finite_scales() {
        let b = q4k_bytes(16, 512, 7);
        assert_eq!(b.len(), 16 * 2 * Q4K_BLOCK_BYTES);
        let m = Linear::new(
            qtensor_from_ggml(GgmlDType::Q4K, &b, vec![16, 512], &Device::Cpu).unwrap(),
            false,
        )
        .unwrap();
        let x = Tensor::ones((2, 512), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y: Vec<f32> = m
            .forward(&x, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(y.len(), 32);
        assert!(y.iter().all(|v| v.is_finite()), "{y:?}");
        assert!(y.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn the_probe_measures_both_speeds() {
        let s = probe_products(Duration::from_millis(200)).unwrap();
        assert!(s.decode_gb_s > 0.05 && s.decode_gb_s < 1000.0, "{s:?}");
        assert!(
            s.prefill_gmac_s > 0.05 && s.prefill_gmac_s < 100_000.0,
            "{s:?}"
        );
        assert!(!s.kernels.is_empty());
    }
}

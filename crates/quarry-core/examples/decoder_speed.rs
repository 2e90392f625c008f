//! Speed of Quarry's decoder on a GGUF file, real or synthetic, and of
//! candle's generic Qwen3 path on the same file (what Qwen3 ran on before).
//!
//!     cargo run -p quarry-core --example decoder_speed -- write qwen3-1.7b q4k|q8_0|q4_k_m FILE
//!     cargo run -p quarry-core --example decoder_speed -- time FILE [PROMPT] [DECODE]
//!     cargo run -p quarry-core --example decoder_speed -- candle-qwen3 FILE [PROMPT] [DECODE]
//!
//! `write` makes a file of random weights in Qwen3-1.7B's (or `qwen3-4b`'s,
//! `phi4-mini`'s) shape: the products cost what the real model's do.

use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::quantized::{gguf_file, GgmlDType};
use candle_core::{Device, Tensor};
use quarry_core::generate::synthetic::{
    decoder_speed, llama3_rope_factors, write_decoder, write_decoder_q4_k_m, DecoderShape,
};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| -> Result<usize> {
        Ok(args
            .get(i)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    match args.first().map(String::as_str) {
        Some("write") => {
            let shape = match args.get(1).map(String::as_str) {
                Some("qwen3-1.7b") => DecoderShape::qwen3_1_7b(),
                Some("qwen3-4b") => DecoderShape {
                    layers: 36,
                    width: 2560,
                    heads: 32,
                    ffn: 9728,
                    ..DecoderShape::qwen3_1_7b()
                },
                Some("tiny-qwen3") => DecoderShape::tiny("qwen3"),
                Some("phi4-mini") => DecoderShape::phi4_mini(),
                // Phi-4-mini's partial rotation, LongRoPE and tied output on
                // a unit-test-sized phi3 (the file `logits_agree_with_llama_cpp` holds).
                Some("tiny-phi4") => DecoderShape::tiny_phi4(),
                // Llama 3.2's rotary scaling on a unit-test-sized llama.
                Some("tiny-llama3") => DecoderShape {
                    rope_factors: Some(llama3_rope_factors(64, 1_000_000.0)),
                    ..DecoderShape::tiny("llama")
                },
                other => bail!("unknown shape {other:?}"),
            };
            let path = args.get(3).context("FILE")?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
            // Seed 7, as the unit tests write theirs.
            let weights = match args.get(2).map(String::as_str) {
                Some("q4k") => GgmlDType::Q4K,
                Some("q8_0") => GgmlDType::Q8_0,
                Some("q4_k_m") => return Ok(write_decoder_q4_k_m(&mut out, &shape, 7)?),
                other => bail!("unknown weights {other:?}"),
            };
            write_decoder(&mut out, &shape, weights, 7)?;
        }
        Some("time") => {
            let path = args.get(1).context("FILE")?;
            let s = decoder_speed(path.as_ref(), num(2, 1500)?, num(3, 64)?)?;
            println!("quarry: prefill {:.1} tok/s, decode {:.2} tok/s", s.prefill, s.decode);
        }
        Some("candle-qwen3") => {
            let path = args.get(1).context("FILE")?;
            candle_qwen3(path, num(2, 1500)?, num(3, 64)?)?;
        }
        _ => bail!("usage: decoder_speed write SHAPE WEIGHTS FILE | time FILE [PROMPT] [DECODE] | candle-qwen3 FILE [PROMPT] [DECODE]"),
    }
    Ok(())
}

/// candle 0.11's `quantized_qwen3`, prompt in one pass as candle's examples run it.
fn candle_qwen3(path: &str, prompt: usize, decode: usize) -> Result<()> {
    use candle_transformers::models::quantized_qwen3::ModelWeights;
    let mut f = std::fs::File::open(path)?;
    let ct = gguf_file::Content::read(&mut f)?;
    let mut m = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu)?;
    let ids: Vec<u32> = (0..prompt)
        .map(|i| ((i * 7919 + 13) % 151_936) as u32)
        .collect();
    let start = Instant::now();
    let logits = m.forward(&Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?, 0)?;
    let prefill = prompt as f64 / start.elapsed().as_secs_f64();
    let mut next = logits.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
    let start = Instant::now();
    for pos in prompt..prompt + decode {
        let x = Tensor::new(&[next], &Device::Cpu)?.unsqueeze(0)?;
        next = m
            .forward(&x, pos)?
            .flatten_all()?
            .argmax(0)?
            .to_scalar::<u32>()?;
    }
    let decode = decode as f64 / start.elapsed().as_secs_f64();
    println!("candle qwen3: prefill {prefill:.1} tok/s, decode {decode:.2} tok/s");
    Ok(())
}

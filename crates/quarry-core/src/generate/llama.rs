//! Quarry's own forward pass for GGUF `llama`-architecture models (SmolLM2,
//! Llama 3.x), built for the two phases of a RAG answer:
//!
//! - prompt processing (many tokens): dense f32 matrix products when the model
//!   is small enough to keep a dequantized copy (gemm, both cores), else the
//!   quantized kernels;
//! - decoding (one token): quantized dot products (memory-bound, 4× less data);
//! - a preallocated KV cache written in place (no copy of the whole cache per
//!   token) and grouped-query attention without repeating K/V.

use candle_core::quantized::{gguf_file, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::error::{Error, Result};

/// Models up to this many bytes of f32 weights keep a dense copy for prompts.
const DENSE_BUDGET_BYTES: usize = 1 << 30;

struct Linear {
    q: QMatMul,
    dense: Option<Tensor>,
}

impl Linear {
    fn new(t: QTensor, dense: bool) -> Result<Self> {
        let d = if dense {
            Some(t.dequantize(&Device::Cpu)?)
        } else {
            None
        };
        Ok(Linear {
            q: QMatMul::from_qtensor(t)?,
            dense: d,
        })
    }

    /// `x`: (tokens, in) → (tokens, out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.dense {
            Some(w) if x.dim(0)? > 1 => Ok(x.matmul(&w.t()?)?),
            _ => Ok(self.q.forward(x)?),
        }
    }
}

struct Block {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
    k_cache: Tensor,
    v_cache: Tensor,
}

/// A llama-architecture model.
pub struct Llama {
    embeddings: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    eps: f32,
    max_len: usize,
}

fn md_f32(ct: &gguf_file::Content, key: &str) -> Option<f32> {
    ct.metadata.get(key).and_then(|v| v.to_f32().ok())
}

fn md_usize(ct: &gguf_file::Content, key: &str) -> Result<usize> {
    ct.metadata
        .get(key)
        .and_then(|v| {
            v.to_u32()
                .ok()
                .map(|x| x as usize)
                .or_else(|| v.to_u64().ok().map(|x| x as usize))
        })
        .ok_or_else(|| Error::ModelLoad {
            id: "gguf".into(),
            reason: format!("missing {key}"),
        })
}

impl Llama {
    /// Load from GGUF; `max_len` bounds the KV cache (and the context).
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        max_len: usize,
    ) -> Result<Self> {
        let dev = Device::Cpu;
        let heads = md_usize(ct, "llama.attention.head_count")?;
        let kv_heads = md_usize(ct, "llama.attention.head_count_kv").unwrap_or(heads);
        let layers = md_usize(ct, "llama.block_count")?;
        let width = md_usize(ct, "llama.embedding_length")?;
        let head_dim = width / heads;
        let rope_dim = md_usize(ct, "llama.rope.dimension_count").unwrap_or(head_dim);
        let eps = md_f32(ct, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5);
        let base = md_f32(ct, "llama.rope.freq_base").unwrap_or(10_000.0);
        if md_usize(ct, "llama.expert_count").unwrap_or(0) > 1 {
            return Err(Error::ModelLoad {
                id: "gguf".into(),
                reason: "mixture-of-experts llama models are not supported".into(),
            });
        }
        let params: usize = ct.tensor_infos.values().map(|t| t.shape.elem_count()).sum();
        let dense = params * 4 <= DENSE_BUDGET_BYTES;
        let mut get = |name: &str| -> Result<QTensor> { Ok(ct.tensor(reader, name, &dev)?) };
        let emb_q = get("token_embd.weight")?;
        let embeddings = emb_q.dequantize(&dev)?;
        let norm = get("output_norm.weight")?.dequantize(&dev)?;
        let output = match get("output.weight") {
            Ok(t) => Linear::new(t, dense)?,
            Err(_) => Linear::new(emb_q, dense)?,
        };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = |n: &str| format!("blk.{i}.{n}.weight");
            blocks.push(Block {
                attn_norm: get(&p("attn_norm"))?.dequantize(&dev)?,
                q: Linear::new(get(&p("attn_q"))?, dense)?,
                k: Linear::new(get(&p("attn_k"))?, dense)?,
                v: Linear::new(get(&p("attn_v"))?, dense)?,
                o: Linear::new(get(&p("attn_output"))?, dense)?,
                ffn_norm: get(&p("ffn_norm"))?.dequantize(&dev)?,
                gate: Linear::new(get(&p("ffn_gate"))?, dense)?,
                up: Linear::new(get(&p("ffn_up"))?, dense)?,
                down: Linear::new(get(&p("ffn_down"))?, dense)?,
                k_cache: Tensor::zeros((kv_heads, max_len, head_dim), DType::F32, &dev)?,
                v_cache: Tensor::zeros((kv_heads, max_len, head_dim), DType::F32, &dev)?,
            });
        }
        let theta: Vec<f32> = (0..rope_dim)
            .step_by(2)
            .map(|i| 1.0 / base.powf(i as f32 / rope_dim as f32))
            .collect();
        let theta = Tensor::new(theta.as_slice(), &dev)?.reshape((1, rope_dim / 2))?;
        let pos = Tensor::arange(0, max_len as u32, &dev)?
            .to_dtype(DType::F32)?
            .reshape((max_len, 1))?;
        let angles = pos.matmul(&theta)?;
        Ok(Llama {
            embeddings,
            blocks,
            norm,
            output,
            cos: angles.cos()?,
            sin: angles.sin()?,
            heads,
            kv_heads,
            head_dim,
            eps,
            max_len,
        })
    }

    /// Logits of the last token of `ids`, which sit at positions `pos..`.
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor> {
        let seq = ids.len();
        if pos + seq > self.max_len {
            return Err(Error::InvalidInput(format!(
                "{} tokens exceed the {}-token context",
                pos + seq,
                self.max_len
            )));
        }
        let dev = Device::Cpu;
        let (h, hk, dh) = (self.heads, self.kv_heads, self.head_dim);
        let groups = h / hk;
        let ids_t = Tensor::new(ids, &dev)?;
        let mut x = self.embeddings.index_select(&ids_t, 0)?; // (seq, width)
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let kv_len = pos + seq;
        // Causal mask for the new rows against all keys, repeated per group.
        let mask = if seq > 1 {
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| {
                    (0..kv_len).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            let m = Tensor::from_vec(m, (1, seq, kv_len), &dev)?;
            Some(
                m.broadcast_as((groups, seq, kv_len))?
                    .reshape((1, groups * seq, kv_len))?,
            )
        } else {
            None
        };
        let scale = 1.0 / (dh as f64).sqrt();
        for b in &mut self.blocks {
            let n = candle_nn::ops::rms_norm(&x, &b.attn_norm, self.eps)?;
            let q =
                b.q.forward(&n)?
                    .reshape((seq, h, dh))?
                    .transpose(0, 1)?
                    .contiguous()?;
            let k =
                b.k.forward(&n)?
                    .reshape((seq, hk, dh))?
                    .transpose(0, 1)?
                    .contiguous()?;
            let v =
                b.v.forward(&n)?
                    .reshape((seq, hk, dh))?
                    .transpose(0, 1)?
                    .contiguous()?;
            let q = candle_nn::rotary_emb::rope_i(&q.unsqueeze(0)?, &cos, &sin)?.squeeze(0)?;
            let k = candle_nn::rotary_emb::rope_i(&k.unsqueeze(0)?, &cos, &sin)?.squeeze(0)?;
            b.k_cache.slice_set(&k, 1, pos)?;
            b.v_cache.slice_set(&v, 1, pos)?;
            let keys = b.k_cache.narrow(1, 0, kv_len)?; // (hk, kv, dh)
            let values = b.v_cache.narrow(1, 0, kv_len)?;
            // Query heads of one KV head are consecutive: (hk, groups·seq, dh).
            let q = (q.reshape((hk, groups * seq, dh))? * scale)?;
            let mut scores = q.matmul(&keys.t()?)?; // (hk, groups·seq, kv)
            if let Some(m) = &mask {
                scores = scores.broadcast_add(m)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let ctx = probs.matmul(&values.contiguous()?)?; // (hk, groups·seq, dh)
            let ctx = ctx
                .reshape((h, seq, dh))?
                .transpose(0, 1)?
                .reshape((seq, h * dh))?;
            x = (b.o.forward(&ctx)? + &x)?;
            let n = candle_nn::ops::rms_norm(&x, &b.ffn_norm, self.eps)?;
            let act = (candle_nn::ops::silu(&b.gate.forward(&n)?)? * b.up.forward(&n)?)?;
            x = (b.down.forward(&act)? + &x)?;
        }
        let last = x.narrow(0, seq - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.eps)?;
        Ok(self
            .output
            .forward(&last)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .unsqueeze(0)?)
    }
}

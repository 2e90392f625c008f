//! Quarry's own forward pass for GGUF decoder models of the llama family —
//! `llama` (SmolLM2, Llama 3.x), `qwen2` (Qwen2.5), `qwen3` and `gemma3` — built for
//! the two phases of a RAG answer:
//!
//! - prompt processing (many tokens): dense f32 matrix products when the model
//!   is small enough to keep a dequantized copy (gemm, both cores), else the
//!   quantized kernels;
//! - decoding (one token): quantized products (memory-bound, 4× less data),
//!   query/key/value and gate/up stacked into one product each, and an
//!   attention kernel over the cache split by KV head and position range;
//! - the quantized products are Quarry's own for Q4_K and Q6_K on x86 CPUs
//!   with AVX2 or AVX-512 VNNI ([`super::linear`]), candle's otherwise;
//! - a preallocated KV cache written in place (no copy of the whole cache per
//!   token) and grouped-query attention without repeating K/V.
//!
//! Gemma 3 differs from llama in ways captured by [`Variant`]: embeddings
//! scaled by √width, RMS norms on queries and keys, norms after attention and
//! after the MLP, a tanh-approximated GELU, half-split (NeoX) rotary
//! embeddings, and sliding-window attention on five layers of six (with their
//! own rotary base). candle 0.11's `quantized_gemma3` uses SiLU, masks out the
//! cache for prompts that continue one, never applies the window while
//! decoding and precomputes 128k-position rotary tables per layer (2.4 GB);
//! this module is checked against llama.cpp on the same file instead.
//!
//! Qwen2 is llama with biases on the query, key and value projections and
//! half-split (NeoX) rotary embeddings; it is checked against candle's
//! `quantized_qwen2` on the same file. Qwen3 drops the biases and normalises
//! each head's query and key (RMS) before the rotation; it is checked against
//! candle's `quantized_qwen3` on files of random weights in its shape
//! ([`super::synthetic`]). Llama 3.x files carry `rope_freqs.weight`, one
//! factor per rotary frequency (Llama 3's long-context scaling, applied the
//! way llama.cpp does: each frequency divided by its factor).
//!
//! Phi-3 (Phi-3.x, Phi-4-mini) is llama with fused matrices (query, key and
//! value in one `attn_qkv`, gate and up in one `ffn_up`, cut into the usual
//! parts at load), NeoX rotation of only the first `rope.dimension_count`
//! values of each head (Phi-4-mini rotates 96 of 128), and LongRoPE: one
//! divisor per rotary frequency, a short set for contexts up to the original
//! 4,096 tokens and a long set beyond, with cos and sin scaled by
//! `rope.scaling.attn_factor` — chosen by the context the cache is built for,
//! as llama.cpp chooses by its context size. It is checked against candle's
//! `quantized_phi3` (which has no partial rotation or LongRoPE) and against
//! llama.cpp on files of random weights in its layout.

use candle_core::quantized::{gguf_file, QTensor};
use candle_core::{DType, Device, Tensor};

use super::linear::{Embeddings, Linear, Projections};
use crate::error::{Error, Result};

/// Models up to this many bytes of f32 block weights keep a dense copy for prompts.
const DENSE_BUDGET_BYTES: usize = 1 << 30;

struct Block {
    attn_norm: Tensor,
    /// Query, key and value projections.
    qkv: Projections,
    o: Linear,
    ffn_norm: Tensor,
    /// Gate and up projections of the MLP.
    gate_up: Projections,
    down: Linear,
    /// Qwen2: biases of the query, key and value projections.
    qkv_bias: Option<[Tensor; 3]>,
    /// Gemma, Qwen3: per-head RMS norms of queries and keys.
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    /// Gemma: norms of the attention and MLP outputs before the residual.
    post_attn_norm: Option<Tensor>,
    post_ffn_norm: Option<Tensor>,
    /// Sliding-window size of this layer (Gemma's local layers).
    window: Option<usize>,
    /// Which rotary table: 0 global, 1 local.
    rope: usize,
    k_cache: Tensor,
    v_cache: Tensor,
}

/// How an architecture departs from plain llama.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Llama,
    Qwen2,
    Qwen3,
    Gemma3,
    Phi3,
}

/// A llama-family decoder.
pub struct Decoder {
    variant: Variant,
    /// Token embeddings, quantized as in the file and dequantized to f32 per
    /// looked-up row (an f16 table moved SmolLM2's logits by ~0.9: too lossy).
    embeddings: Embeddings,
    embed_scale: f64,
    blocks: Vec<Block>,
    norm: Tensor,
    output: Linear,
    /// Rotary tables (cos, sin): global, and local for sliding-window layers.
    ropes: Vec<(Tensor, Tensor)>,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Leading values of each head that rotate (the rest pass through).
    rope_dim: usize,
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

/// How the rotary frequencies depart from `base^(-2i/dim)`.
#[derive(Debug, Clone)]
struct RopeScaling {
    /// Divisors of the frequencies one by one: Llama 3's `rope_freqs`,
    /// Phi-3's LongRoPE short or long factors.
    factors: Option<Vec<f32>>,
    /// Multiplies cos and sin (LongRoPE's attention factor; 1 otherwise).
    magnitude: f32,
}

impl RopeScaling {
    const NONE: RopeScaling = RopeScaling {
        factors: None,
        magnitude: 1.0,
    };

    /// The scaling a file asks for, for a cache of `max_len` positions.
    fn from_gguf(
        ct: &gguf_file::Content,
        architecture: &str,
        max_len: usize,
        get: &mut dyn FnMut(&str) -> Result<QTensor>,
    ) -> Result<Self> {
        let mut factors = |name: &str| -> Result<Option<Vec<f32>>> {
            if !ct.tensor_infos.contains_key(name) {
                return Ok(None);
            }
            Ok(Some(
                get(name)?
                    .dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            ))
        };
        if let Some(f) = factors("rope_freqs.weight")? {
            return Ok(RopeScaling {
                factors: Some(f),
                magnitude: 1.0,
            });
        }
        let a = architecture;
        // LongRoPE (Phi-3.x, Phi-4-mini): the short factors up to the
        // original context, the long ones for a longer cache.
        let original = md_usize(ct, &format!("{a}.rope.scaling.original_context_length"))
            .or_else(|_| md_usize(ct, &format!("{a}.context_length")))
            .unwrap_or(max_len);
        let set = if max_len > original { "long" } else { "short" };
        Ok(RopeScaling {
            factors: factors(&format!("rope_factors_{set}.weight"))?,
            magnitude: md_f32(ct, &format!("{a}.rope.scaling.attn_factor")).unwrap_or(1.0),
        })
    }
}

/// Rotary tables (cos, sin) of `max_len` positions × `dim / 2` frequencies,
/// scaled as `scaling` says.
fn rope_table(
    dim: usize,
    base: f32,
    scaling: &RopeScaling,
    max_len: usize,
) -> Result<(Tensor, Tensor)> {
    let factors = scaling.factors.as_deref();
    let dev = Device::Cpu;
    if let Some(f) = factors.filter(|f| f.len() != dim / 2) {
        return Err(Error::ModelLoad {
            id: "gguf".into(),
            reason: format!(
                "the rotary factors are {} for {} frequencies",
                f.len(),
                dim / 2
            ),
        });
    }
    let theta: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| {
            let f = factors.map_or(1.0, |f| f[i / 2]);
            1.0 / base.powf(i as f32 / dim as f32) / f
        })
        .collect();
    let theta = Tensor::new(theta.as_slice(), &dev)?.reshape((1, dim / 2))?;
    let pos = Tensor::arange(0, max_len as u32, &dev)?
        .to_dtype(DType::F32)?
        .reshape((max_len, 1))?;
    let angles = pos.matmul(&theta)?;
    let m = f64::from(scaling.magnitude);
    Ok(((angles.cos()? * m)?, (angles.sin()? * m)?))
}

/// What every block of a model shares: how to read one from the file.
struct BlockShape {
    variant: Variant,
    /// Rows of the query projection, and of the key and of the value ones.
    q: usize,
    kv: usize,
    /// Keep dense f32 copies of the weights for prompts.
    dense: bool,
    /// One block's KV cache: (KV heads, positions, head width).
    cache: (usize, usize, usize),
}

impl BlockShape {
    /// Block `i` with zeroed caches, as a global layer (no window).
    fn load(
        &self,
        ct: &gguf_file::Content,
        get: &mut dyn FnMut(&str) -> Result<QTensor>,
        i: usize,
    ) -> Result<Block> {
        let dev = Device::Cpu;
        let p = |n: &str| format!("blk.{i}.{n}.weight");
        let has = |n: &str| ct.tensor_infos.contains_key(&p(n));
        let mut vector = |name: String| -> Result<Tensor> { Ok(get(&name)?.dequantize(&dev)?) };
        let head_norms = matches!(self.variant, Variant::Gemma3 | Variant::Qwen3);
        let gemma = self.variant == Variant::Gemma3;
        let (q_norm, k_norm) = if head_norms {
            (
                Some(vector(p("attn_q_norm"))?),
                Some(vector(p("attn_k_norm"))?),
            )
        } else {
            (None, None)
        };
        let (post_attn_norm, post_ffn_norm) = if gemma {
            (
                Some(vector(p("post_attention_norm"))?),
                Some(vector(p("post_ffw_norm"))?),
            )
        } else {
            (None, None)
        };
        let qkv_bias = match self.variant {
            Variant::Qwen2 => {
                let bias = |n: &str| format!("blk.{i}.{n}.bias");
                Some([
                    vector(bias("attn_q"))?,
                    vector(bias("attn_k"))?,
                    vector(bias("attn_v"))?,
                ])
            }
            Variant::Llama | Variant::Qwen3 | Variant::Gemma3 | Variant::Phi3 => None,
        };
        let (attn_norm, ffn_norm) = (vector(p("attn_norm"))?, vector(p("ffn_norm"))?);
        // Phi-3 fuses query/key/value and gate/up into one matrix each.
        let qkv = if has("attn_qkv") {
            super::linear::split_rows(&get(&p("attn_qkv"))?, &[self.q, self.kv, self.kv])?
        } else {
            vec![get(&p("attn_q"))?, get(&p("attn_k"))?, get(&p("attn_v"))?]
        };
        let gate_up = if has("ffn_gate") {
            vec![get(&p("ffn_gate"))?, get(&p("ffn_up"))?]
        } else {
            let fused = get(&p("ffn_up"))?;
            let half = fused.shape().dims()[0] / 2;
            super::linear::split_rows(&fused, &[half, half])?
        };
        let (kv_heads, max_len, head_dim) = self.cache;
        Ok(Block {
            attn_norm,
            qkv: Projections::new(qkv, self.dense)?,
            o: Linear::new(get(&p("attn_output"))?, self.dense)?,
            ffn_norm,
            gate_up: Projections::new(gate_up, self.dense)?,
            down: Linear::new(get(&p("ffn_down"))?, self.dense)?,
            qkv_bias,
            q_norm,
            k_norm,
            post_attn_norm,
            post_ffn_norm,
            window: None,
            rope: 0,
            k_cache: Tensor::zeros((kv_heads, max_len, head_dim), DType::F32, &dev)?,
            v_cache: Tensor::zeros((kv_heads, max_len, head_dim), DType::F32, &dev)?,
        })
    }
}

/// Gemma 3's layer pattern: every sixth layer is global, the rest slide.
const GEMMA3_GLOBAL_EVERY: usize = 6;

impl Decoder {
    /// Load a `llama`, `qwen2`, `qwen3`, `gemma3` or `phi3` GGUF; `max_len` bounds the KV cache (and the
    /// context). `allow_dense` lets a small model keep dense copies of its
    /// block weights for prompts.
    pub fn from_gguf<R: std::io::Read + std::io::Seek>(
        ct: &gguf_file::Content,
        reader: &mut R,
        architecture: &str,
        max_len: usize,
        allow_dense: bool,
    ) -> Result<Self> {
        let variant = match architecture {
            "llama" => Variant::Llama,
            "qwen2" => Variant::Qwen2,
            "qwen3" => Variant::Qwen3,
            "gemma3" => Variant::Gemma3,
            "phi3" => Variant::Phi3,
            other => {
                return Err(Error::ModelLoad {
                    id: "gguf".into(),
                    reason: format!("no decoder for architecture '{other}'"),
                })
            }
        };
        let a = architecture;
        let dev = Device::Cpu;
        let heads = md_usize(ct, &format!("{a}.attention.head_count"))?;
        let kv_heads = md_usize(ct, &format!("{a}.attention.head_count_kv")).unwrap_or(heads);
        let layers = md_usize(ct, &format!("{a}.block_count"))?;
        let width = md_usize(ct, &format!("{a}.embedding_length"))?;
        let head_dim = md_usize(ct, &format!("{a}.attention.key_length")).unwrap_or(width / heads);
        let rope_dim = md_usize(ct, &format!("{a}.rope.dimension_count")).unwrap_or(head_dim);
        if rope_dim > head_dim || !rope_dim.is_multiple_of(2) {
            return Err(Error::ModelLoad {
                id: "gguf".into(),
                reason: format!("{rope_dim} rotary dimensions in heads of {head_dim}"),
            });
        }
        let eps = md_f32(ct, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5);
        let base = md_f32(ct, &format!("{a}.rope.freq_base")).unwrap_or(match variant {
            Variant::Llama | Variant::Phi3 => 10_000.0,
            Variant::Qwen2 | Variant::Qwen3 | Variant::Gemma3 => 1_000_000.0,
        });
        if md_usize(ct, &format!("{a}.expert_count")).unwrap_or(0) > 1 {
            return Err(Error::ModelLoad {
                id: "gguf".into(),
                reason: "mixture-of-experts models are not supported".into(),
            });
        }
        // Dense copies pay off for the block weights that prompts multiply;
        // the embedding and output matrices see one row per prompt.
        let block_params: usize = ct
            .tensor_infos
            .iter()
            .filter(|(name, _)| name.starts_with("blk."))
            .map(|(_, t)| t.shape.elem_count())
            .sum();
        let dense = allow_dense && block_params * 4 <= DENSE_BUDGET_BYTES;
        let mut get = |name: &str| -> Result<QTensor> { Ok(ct.tensor(reader, name, &dev)?) };
        let emb_q = get("token_embd.weight")?;
        let embeddings = Embeddings::new(&emb_q)?;
        let norm = get("output_norm.weight")?.dequantize(&dev)?;
        let output = match get("output.weight") {
            Ok(t) => Linear::new(t, false)?,
            Err(_) => Linear::new(emb_q, false)?,
        };
        let window = match variant {
            Variant::Gemma3 => Some(md_usize(ct, &format!("{a}.attention.sliding_window"))?),
            Variant::Llama | Variant::Qwen2 | Variant::Qwen3 | Variant::Phi3 => None,
        };
        let scaling = RopeScaling::from_gguf(ct, a, max_len, &mut get)?;
        let shape = BlockShape {
            variant,
            q: heads * head_dim,
            kv: kv_heads * head_dim,
            dense,
            cache: (kv_heads, max_len, head_dim),
        };
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let mut b = shape.load(ct, &mut get, i)?;
            if window.is_some() && (i + 1) % GEMMA3_GLOBAL_EVERY != 0 {
                b.window = window;
                b.rope = 1;
            }
            blocks.push(b);
        }
        let mut ropes = vec![rope_table(rope_dim, base, &scaling, max_len)?];
        if variant == Variant::Gemma3 {
            let local = md_f32(ct, &format!("{a}.rope.local_freq_base")).unwrap_or(10_000.0);
            ropes.push(rope_table(rope_dim, local, &RopeScaling::NONE, max_len)?);
        }
        Ok(Decoder {
            variant,
            embeddings,
            embed_scale: match variant {
                Variant::Gemma3 => (width as f64).sqrt(),
                Variant::Llama | Variant::Qwen2 | Variant::Qwen3 | Variant::Phi3 => 1.0,
            },
            blocks,
            norm,
            output,
            ropes,
            heads,
            kv_heads,
            head_dim,
            rope_dim,
            eps,
            max_len,
        })
    }

    /// Logits of the last token of `ids`, which sit at positions `pos..`.
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Tensor> {
        let x = self.blocks_forward(ids, pos, false)?;
        let last = x.narrow(0, ids.len() - 1, 1)?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, self.eps)?;
        Ok(self
            .output
            .forward(&last, true)?
            .squeeze(0)?
            .to_dtype(DType::F32)?
            .unsqueeze(0)?)
    }

    /// Logits after each token of `ids` (at positions `pos..`), computed as
    /// that many single-token [`Decoder::forward`] steps would: the quantized
    /// products (no dense copies) and the decoding attention kernel per row,
    /// all rows in one pass over the weights. Speculative decoding verifies
    /// its drafts with this. The rows equal the single steps bit for bit where
    /// a quantized row is computed the same whether it comes alone or with
    /// others: Quarry's Q4_K/Q6_K/Q8_0 kernels (tested; SmolLM2 and Gemma 3
    /// 270M run on them), candle's Q8_0, and the k-quants candle does not
    /// repack. Where
    /// candle's repacked tiles serve several rows and its compact kernels one
    /// (Q4_K/Q6_K on CPUs without Quarry's kernels), rows agree to the last
    /// bits only and a near-tie between two tokens can resolve differently.
    /// Returns one row of logits per token.
    pub fn forward_steps(&mut self, ids: &[u32], pos: usize) -> Result<Vec<Vec<f32>>> {
        let x = self.blocks_forward(ids, pos, true)?;
        let x = candle_nn::ops::rms_norm(&x, &self.norm, self.eps)?;
        Ok(self
            .output
            .forward(&x, false)?
            .to_dtype(DType::F32)?
            .to_vec2()?)
    }

    /// The hidden states (seq, width) after the last block. `exact`: every
    /// row as its own decoding step would compute it (see [`Decoder::forward_steps`]).
    fn blocks_forward(&mut self, ids: &[u32], pos: usize, exact: bool) -> Result<Tensor> {
        let seq = ids.len();
        if seq == 0 || pos + seq > self.max_len {
            return Err(Error::InvalidInput(format!(
                "{} tokens at position {pos} do not fit the {}-token context",
                seq, self.max_len
            )));
        }
        let mut x = self.embeddings.lookup(ids)?; // (seq, width)
        if self.embed_scale != 1.0 {
            x = (x * self.embed_scale)?;
        }
        let step = Step {
            seq,
            pos,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            rope_dim: self.rope_dim,
            eps: self.eps,
            gemma: self.variant == Variant::Gemma3,
            // Gemma and Qwen rotate the two halves of a head (NeoX); llama's
            // GGUF weights are laid out for interleaved pairs.
            half_split: self.variant != Variant::Llama,
            exact,
        };
        let ropes: Vec<(Tensor, Tensor)> = self
            .ropes
            .iter()
            .map(|(c, s)| Ok((c.narrow(0, pos, seq)?, s.narrow(0, pos, seq)?)))
            .collect::<Result<_>>()?;
        let mut masks = Masks::new(&step);
        for b in &mut self.blocks {
            let n = candle_nn::ops::rms_norm(&x, &b.attn_norm, self.eps)?;
            let ctx = step.attention(b, &n, &ropes[b.rope], &mut masks)?;
            x = step.finish_block(b, &ctx, x)?;
        }
        Ok(x)
    }
}

/// The shape of one forward step: `seq` new tokens at positions `pos..`.
struct Step {
    seq: usize,
    pos: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    /// Leading values of each head that rotate.
    rope_dim: usize,
    eps: f32,
    gemma: bool,
    half_split: bool,
    /// Compute every row as its own single-token step would.
    exact: bool,
}

impl Step {
    /// The rest of a block after attention: output projection, residual, MLP.
    fn finish_block(&self, b: &Block, ctx: &Tensor, mut x: Tensor) -> Result<Tensor> {
        let (gemma, eps, dense_ok) = (self.gemma, self.eps, !self.exact);
        let mut attn = b.o.forward(ctx, dense_ok)?;
        if let Some(pn) = &b.post_attn_norm {
            attn = candle_nn::ops::rms_norm(&attn, pn, eps)?;
        }
        x = (attn + &x)?;
        let n = candle_nn::ops::rms_norm(&x, &b.ffn_norm, eps)?;
        let [gate, up]: [Tensor; 2] = b
            .gate_up
            .forward(&n, dense_ok)?
            .try_into()
            .map_err(|_| Error::InvalidInput("gate/up projections".into()))?;
        let gate = if gemma {
            gate.gelu()?
        } else {
            candle_nn::ops::silu(&gate)?
        };
        let mut mlp = b.down.forward(&(gate * up)?, dense_ok)?;
        if let Some(pn) = &b.post_ffn_norm {
            mlp = candle_nn::ops::rms_norm(&mlp, pn, eps)?;
        }
        x = (mlp + &x)?;
        Ok(x)
    }

    fn kv_len(&self) -> usize {
        self.pos + self.seq
    }

    fn groups(&self) -> usize {
        self.heads / self.kv_heads
    }

    /// Split `t` (seq, n·dh) into heads: (n, seq, dh).
    fn split_heads(&self, t: Tensor, n: usize) -> Result<Tensor> {
        Ok(t.reshape((self.seq, n, self.head_dim))?
            .transpose(0, 1)?
            .contiguous()?)
    }

    /// Queries, keys and values of block `b` for the normed input `n`: biases
    /// (Qwen2), per-head norms (Gemma, Qwen3) and rotary embeddings applied.
    fn qkv(&self, b: &Block, n: &Tensor, (cos, sin): &(Tensor, Tensor)) -> Result<[Tensor; 3]> {
        let [mut q, mut k, mut v]: [Tensor; 3] = b
            .qkv
            .forward(n, !self.exact)?
            .try_into()
            .map_err(|_| Error::InvalidInput("query/key/value projections".into()))?;
        if let Some([bq, bk, bv]) = &b.qkv_bias {
            q = q.broadcast_add(bq)?;
            k = k.broadcast_add(bk)?;
            v = v.broadcast_add(bv)?;
        }
        let mut q = self.split_heads(q, self.heads)?;
        let mut k = self.split_heads(k, self.kv_heads)?;
        let v = self.split_heads(v, self.kv_heads)?;
        if let (Some(qn), Some(kn)) = (&b.q_norm, &b.k_norm) {
            q = candle_nn::ops::rms_norm(&q, qn, self.eps)?;
            k = candle_nn::ops::rms_norm(&k, kn, self.eps)?;
        }
        Ok([self.rotate(&q, cos, sin)?, self.rotate(&k, cos, sin)?, v])
    }

    /// `t` (heads, seq, head_dim) with its first `rope_dim` values of each
    /// head rotated; the rest (Phi-4-mini's last 32 of 128) pass through.
    fn rotate(&self, t: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let turn = |t: &Tensor| -> Result<Tensor> {
            let t = t.contiguous()?.unsqueeze(0)?;
            let r = if self.half_split {
                candle_nn::rotary_emb::rope(&t, cos, sin)?
            } else {
                candle_nn::rotary_emb::rope_i(&t, cos, sin)?
            };
            Ok(r.squeeze(0)?)
        };
        if self.rope_dim == self.head_dim {
            return turn(t);
        }
        let rotated = turn(&t.narrow(2, 0, self.rope_dim)?)?;
        let rest = t.narrow(2, self.rope_dim, self.head_dim - self.rope_dim)?;
        Ok(Tensor::cat(&[&rotated, &rest], 2)?.contiguous()?)
    }

    /// Block `b`'s attention for the normed input `n`: the new keys and
    /// values go into its cache; the result is the context (seq, heads·dh).
    fn attention(
        &self,
        b: &mut Block,
        n: &Tensor,
        rope: &(Tensor, Tensor),
        masks: &mut Masks,
    ) -> Result<Tensor> {
        let (h, hk, dh, seq) = (self.heads, self.kv_heads, self.head_dim, self.seq);
        let (groups, kv_len) = (self.groups(), self.kv_len());
        let scale = 1.0 / (dh as f64).sqrt();
        let [q, k, v] = self.qkv(b, n, rope)?;
        b.k_cache.slice_set(&k, 1, self.pos)?;
        b.v_cache.slice_set(&v, 1, self.pos)?;
        if self.exact {
            return self.attention_per_row(b, &q, scale);
        }
        if seq > 1 {
            let rows = quarry_kernels::attention::prompt::PromptRows {
                seq,
                pos: self.pos,
                window: b.window,
            };
            if let Some(ctx) = prompt_attention(&q, &b.k_cache, &b.v_cache, groups, rows, scale)? {
                return Ok(ctx);
            }
        }
        let (mask, start) = masks.get(b.window)?;
        if seq == 1 && mask.is_none() {
            if let Some(ctx) =
                decode_attention(&q, &b.k_cache, &b.v_cache, start, kv_len, groups, scale)?
            {
                return Ok(ctx);
            }
        }
        let keys = b.k_cache.narrow(1, start, kv_len - start)?; // (hk, kv, dh)
        let values = b.v_cache.narrow(1, start, kv_len - start)?;
        // Query heads of one KV head are consecutive: (hk, groups·seq, dh).
        let q = (q.reshape((hk, groups * seq, dh))? * scale)?;
        let mut scores = q.matmul(&keys.t()?)?; // (hk, groups·seq, kv)
        if let Some(m) = &mask {
            scores = scores.broadcast_add(m)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&values.contiguous()?)?; // (hk, groups·seq, dh)
        Ok(ctx
            .reshape((h, seq, dh))?
            .transpose(0, 1)?
            .reshape((seq, h * dh))?)
    }

    /// Attention of each new row with the decoding kernel, as if the rows
    /// had come one step at a time: row `i` sees the cache up to its own
    /// position (and no further back than the layer's window).
    fn attention_per_row(&self, b: &Block, q: &Tensor, scale: f64) -> Result<Tensor> {
        let rows = (0..self.seq)
            .map(|i| {
                let at = self.pos + i;
                let start = b.window.map_or(0, |w| (at + 1).saturating_sub(w));
                let qi = q.narrow(1, i, 1)?;
                decode_attention(
                    &qi,
                    &b.k_cache,
                    &b.v_cache,
                    start,
                    at + 1,
                    self.groups(),
                    scale,
                )?
                .ok_or_else(|| Error::InvalidInput("the KV cache is not contiguous f32".into()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }
}

/// Attention masks of one step, by sliding window (`None`: global layers):
/// causal, and for sliding layers also no further back than the window;
/// built once per window and repeated per group of query heads.
struct Masks {
    seq: usize,
    pos: usize,
    groups: usize,
    built: Vec<(Option<usize>, Option<Tensor>, usize)>,
}

impl Masks {
    fn new(step: &Step) -> Self {
        Masks {
            seq: step.seq,
            pos: step.pos,
            groups: step.groups(),
            built: Vec::new(),
        }
    }

    /// The mask for `window` (none when nothing is hidden), and the first
    /// cached position any new row can see.
    fn get(&mut self, window: Option<usize>) -> Result<(Option<Tensor>, usize)> {
        if let Some((_, m, start)) = self.built.iter().find(|(w, _, _)| *w == window) {
            return Ok((m.clone(), *start));
        }
        let (seq, pos) = (self.seq, self.pos);
        let kv_len = pos + seq;
        // Keys before `start` are outside every new row's window.
        let start = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let visible = kv_len - start;
        let needs = seq > 1 || window.is_some_and(|w| kv_len - start > w);
        let m = if needs {
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| {
                    let q = pos + i;
                    (start..kv_len).map(move |j| {
                        let outside = window.is_some_and(|w| q >= j + w);
                        if j > q || outside {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        }
                    })
                })
                .collect();
            let m = Tensor::from_vec(m, (1, seq, visible), &Device::Cpu)?;
            Some(m.broadcast_as((self.groups, seq, visible))?.reshape((
                1,
                self.groups * seq,
                visible,
            ))?)
        } else {
            None
        };
        self.built.push((window, m.clone(), start));
        Ok((m, start))
    }
}

/// Attention of one new token against the cached keys `start..kv_len`,
/// reading the caches in place ([`quarry_kernels::attention::decode`]).
/// `None` when a tensor is not contiguous f32 on the CPU (the caller then
/// uses candle's path).
fn decode_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    start: usize,
    kv_len: usize,
    groups: usize,
    scale: f64,
) -> Result<Option<Tensor>> {
    with_caches(q, k_cache, v_cache, groups, |q, k, v, shape| {
        quarry_kernels::attention::decode(q, k, v, shape, groups, start, kv_len, scale as f32)
    })
}

/// Causal attention of a prompt slice's rows (queries `q`: heads × seq ×
/// head_dim) against the caches, which already hold their keys and values
/// ([`quarry_kernels::attention::prompt::prefill`]); the context is (seq,
/// heads·head_dim). `None` when a tensor is not contiguous f32 on the CPU.
fn prompt_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    groups: usize,
    rows: quarry_kernels::attention::prompt::PromptRows,
    scale: f64,
) -> Result<Option<Tensor>> {
    with_caches(q, k_cache, v_cache, groups, |q, k, v, shape| {
        quarry_kernels::attention::prompt::prefill(q, k, v, shape, groups, rows, scale as f32)
    })
}

/// Run an attention kernel on the f32 values of the queries `q` (heads ×
/// rows × head_dim) and the caches, in place; its output is (rows,
/// heads·head_dim). `None` when a tensor is not contiguous f32 on the CPU.
fn with_caches(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    groups: usize,
    kernel: impl FnOnce(&[f32], &[f32], &[f32], quarry_kernels::attention::CacheShape) -> Vec<f32>,
) -> Result<Option<Tensor>> {
    let (h, rows, dh) = q.dims3()?;
    let shape = quarry_kernels::attention::CacheShape {
        kv_heads: h / groups,
        max_len: k_cache.dim(1)?,
        head_dim: dh,
    };
    let q = q.contiguous()?;
    let (qs, ql) = q.storage_and_layout();
    let (ks, kl) = k_cache.storage_and_layout();
    let (vs, vl) = v_cache.storage_and_layout();
    let (Some(q), Some(k), Some(v)) = (cpu_f32(&qs, ql), cpu_f32(&ks, kl), cpu_f32(&vs, vl)) else {
        return Ok(None);
    };
    let out = kernel(q, k, v, shape);
    Ok(Some(Tensor::from_vec(out, (rows, h * dh), &Device::Cpu)?))
}

/// The f32 values of a contiguous CPU tensor.
fn cpu_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Option<&'a [f32]> {
    let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    Some(&data[start..end])
}

#[cfg(test)]
mod qwen2_reference {
    use super::*;
    use candle_transformers::models::quantized_qwen2;

    /// Logits of the last position, as a vector.
    fn row(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn argmax(v: &[f32]) -> usize {
        (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    }

    /// Quarry's decoder and candle's `quantized_qwen2` agree on the same GGUF:
    /// after a prompt and after each of a few decoding steps.
    #[test]
    #[ignore = "needs the real models, the 1.1 GB one included: scripts/test.sh fetches them and runs it (--include-ignored)"]
    fn qwen2_logits_agree_with_candles_reference() {
        let dir = std::env::var_os("QUARRY_MODELS_DIR").expect("set QUARRY_MODELS_DIR");
        let path = std::path::Path::new(&dir)
            .join("qwen2.5-coder-1.5b-instruct-q4_k_m/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
        let open = || {
            let mut f =
                std::fs::File::open(&path).expect("fetch qwen2.5-coder-1.5b-instruct-q4_k_m");
            let ct = gguf_file::Content::read(&mut f).unwrap();
            (ct, f)
        };
        let (ct, mut f) = open();
        let mut ours = Decoder::from_gguf(&ct, &mut f, "qwen2", 512, false).unwrap();
        let (ct, mut f) = open();
        let mut reference =
            quantized_qwen2::ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap();
        // "<|im_start|>user\nThe Morteratsch glacier lost forty metres" and more.
        let prompt: Vec<u32> = vec![
            151644, 872, 198, 785, 8127, 261, 1587, 331, 76624, 5558, 35398, 36256, 13, 2585, 1753,
            3084, 1521, 279, 76624, 9052, 30, 151645, 198, 151644, 77091, 198,
        ];
        let mut a = row(&ours.forward(&prompt, 0).unwrap());
        let x = Tensor::new(prompt.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut b = row(&reference.forward(&x, 0).unwrap());
        for (step, pos) in (0..4).zip(prompt.len()..) {
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a
                .iter()
                .zip(&b)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            // Both multiply the same Q4_K/Q6_K weights with activations
            // quantized to 8 bits, in another order: the tolerance is the one
            // the llama tests allow against their references.
            assert!(
                diff < 0.75,
                "step {step}: largest logit difference {diff} (logits up to {scale})"
            );
            eprintln!("step {step}: largest logit difference {diff:.3} (logits up to {scale:.1})");
            let next = argmax(&b);
            assert_eq!(argmax(&a), next, "step {step}: a different next token");
            a = row(&ours.forward(&[next as u32], pos).unwrap());
            let x = Tensor::new(&[next as u32], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            b = row(&reference.forward(&x, pos).unwrap());
        }
    }
}

#[cfg(test)]
mod exact_steps {
    use super::*;

    fn decoder(id: &str, file: &str, arch: &str, max_len: usize) -> Decoder {
        let dir = std::env::var_os("QUARRY_MODELS_DIR").expect("set QUARRY_MODELS_DIR");
        let path = std::path::Path::new(&dir).join(id).join(file);
        let mut f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("fetch {id}: {e}"));
        let ct = gguf_file::Content::read(&mut f).unwrap();
        Decoder::from_gguf(&ct, &mut f, arch, max_len, true).unwrap()
    }

    /// Several tokens through `forward_steps` give bit for bit the logits
    /// that one `forward` per token gives: what lets prompt-lookup decoding
    /// promise the same output as plain greedy decoding.
    fn steps_match_single_steps(mut d: Decoder, prompt_len: usize) {
        let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| 100 + i * 7 % 500).collect();
        let next: Vec<u32> = vec![42, 1337, 7, 99, 512];
        d.forward(&prompt, 0).unwrap();
        let single: Vec<Vec<f32>> = next
            .iter()
            .zip(prompt_len..)
            .map(|(&t, pos)| {
                d.forward(&[t], pos)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap()
            })
            .collect();
        // Garbage after the prompt, then the real rows over it: rows past
        // what is verified must not leak into earlier ones.
        d.forward_steps(&[5, 6, 7, 8, 9, 10, 11], prompt_len)
            .unwrap();
        let rows = d.forward_steps(&next, prompt_len).unwrap();
        assert_eq!(rows.len(), next.len());
        for (i, (a, b)) in rows.iter().zip(&single).enumerate() {
            assert!(a == b, "row {i} differs from its single step");
        }
    }

    #[test]
    #[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
    fn batched_steps_equal_single_steps_llama() {
        let d = decoder(
            "smollm2-135m-instruct-q4_1",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "llama",
            512,
        );
        steps_match_single_steps(d, 40);
    }

    #[test]
    #[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
    fn batched_steps_equal_single_steps_gemma_sliding_window() {
        let d = decoder(
            "gemma3-270m-q4_k_m",
            "gemma-3-270m-q4_k_m.gguf",
            "gemma3",
            1024,
        );
        // Past Gemma 3 270M's 512-token window.
        steps_match_single_steps(d, 600);
    }

    /// Qwen2.5's Q4_K/Q6_K weights go through Quarry's kernels on CPUs that
    /// have them (candle's repacked tiles were only close to its single rows).
    #[test]
    #[ignore = "needs the real models, the 1.1 GB one included: scripts/test.sh fetches them and runs it (--include-ignored)"]
    fn batched_steps_equal_single_steps_qwen2() {
        let d = decoder(
            "qwen2.5-coder-1.5b-instruct-q4_k_m",
            "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            "qwen2",
            512,
        );
        if !quarry_kernels::quantized::simd_available() {
            eprintln!("this CPU has no AVX-512 VNNI: candle's kernels, rows only close");
        }
        steps_match_single_steps(d, 40);
    }
}

#[cfg(test)]
mod synthetic_reference {
    use super::super::synthetic::{
        llama3_inv_freq as hf_llama3_inv_freq, llama3_rope_factors as llama3_factors,
        write_decoder, write_decoder_q4_k_m, DecoderShape, LongRope,
    };
    use super::*;
    use candle_core::quantized::GgmlDType;
    use candle_transformers::models::{quantized_llama, quantized_phi3, quantized_qwen3};
    use std::io::Cursor;

    fn file(shape: &DecoderShape, weights: GgmlDType) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        write_decoder(&mut out, shape, weights, 7).unwrap();
        out.into_inner()
    }

    fn ours(bytes: &[u8], arch: &str, dense: bool) -> Decoder {
        let mut r = Cursor::new(bytes);
        let ct = gguf_file::Content::read(&mut r).unwrap();
        Decoder::from_gguf(&ct, &mut r, arch, 256, dense).unwrap()
    }

    fn row(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn argmax(v: &[f32]) -> usize {
        (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap()
    }

    fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
    }

    const PROMPT: [u32; 23] = [
        1, 17, 300, 42, 9, 511, 256, 3, 77, 78, 79, 128, 64, 32, 16, 8, 4, 2, 100, 200, 300, 400,
        500,
    ];

    /// Logits after the prompt and after each of four greedy steps, from
    /// Quarry's decoder and from `reference`, compared step by step.
    fn agree(
        bytes: &[u8],
        arch: &str,
        dense: bool,
        tolerance: f32,
        mut reference: impl FnMut(&[u32], usize) -> Vec<f32>,
    ) {
        let mut d = ours(bytes, arch, dense);
        let mut a = row(&d.forward(&PROMPT, 0).unwrap());
        let mut b = reference(&PROMPT, 0);
        for (step, pos) in (0..8).zip(PROMPT.len()..) {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = largest_difference(&a, &b);
            eprintln!(
                "{arch} step {step}: largest logit difference {diff:.4} (logits up to {scale:.2})"
            );
            assert!(
                diff < tolerance * scale.max(1.0),
                "{arch} step {step}: largest logit difference {diff} (logits up to {scale})"
            );
            let next = argmax(&b) as u32;
            // Random weights make near-ties; a clear winner must be the same.
            let mut sorted = b.clone();
            sorted.sort_by(|x, y| y.total_cmp(x));
            if sorted[0] - sorted[1] > 2.0 * diff {
                assert_eq!(
                    argmax(&a) as u32,
                    next,
                    "{arch} step {step}: another next token"
                );
            }
            a = row(&d.forward(&[next], pos).unwrap());
            b = reference(&[next], pos);
        }
    }

    /// A reference model's logits after token ids at a position.
    type Reference = Box<dyn FnMut(&[u32], usize) -> Vec<f32>>;

    fn candle_step(mut forward: impl FnMut(&Tensor, usize) -> Tensor + 'static) -> Reference {
        Box::new(move |ids, pos| {
            let x = Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            row(&forward(&x, pos))
        })
    }

    fn candle_qwen3(bytes: &[u8]) -> Reference {
        let mut r = Cursor::new(bytes);
        let ct = gguf_file::Content::read(&mut r).unwrap();
        let mut m = quantized_qwen3::ModelWeights::from_gguf(ct, &mut r, &Device::Cpu).unwrap();
        candle_step(move |x, pos| m.forward(x, pos).unwrap())
    }

    fn candle_phi3(bytes: &[u8]) -> Reference {
        let mut r = Cursor::new(bytes);
        let ct = gguf_file::Content::read(&mut r).unwrap();
        let mut m =
            quantized_phi3::ModelWeights::from_gguf(false, ct, &mut r, &Device::Cpu).unwrap();
        candle_step(move |x, pos| m.forward(x, pos).unwrap())
    }

    /// [`agree`] on files of `shape` in Q8_0, Q4_K and Q6_K (Quarry's kernels
    /// where the CPU has them, candle's otherwise), prompts through the
    /// quantized kernels and through dense copies.
    fn agree_in_each_type(shape: &DecoderShape, reference: fn(&[u8]) -> Reference) {
        let arch = shape.architecture.as_str();
        for weights in [GgmlDType::Q8_0, GgmlDType::Q4K, GgmlDType::Q6K] {
            let bytes = file(shape, weights);
            // For the k-quants both sides quantize activations to 8 bits per
            // 256 the same way: they agree to rounding (a value now and then
            // lands on the other side of a rounding step). For Q8_0 candle
            // keeps an f16 scale per 32 activations and Quarry an f32 one
            // (closer to the f32 product); dense f32 copies for prompts do not
            // quantize activations: within a few percent of the logits' range.
            let quantized = if weights == GgmlDType::Q8_0 {
                0.05
            } else {
                0.02
            };
            for (dense, tolerance) in [(false, quantized), (true, 0.05)] {
                eprintln!("{weights:?}, dense prompt copies: {dense}");
                agree(&bytes, arch, dense, tolerance, reference(&bytes));
            }
        }
    }

    /// Qwen3 (per-head query/key norms, no biases, NeoX rotation) on Quarry's
    /// decoder agrees with candle's `quantized_qwen3` on the same bytes.
    #[test]
    fn qwen3_logits_agree_with_candles_reference() {
        agree_in_each_type(&DecoderShape::tiny("qwen3"), candle_qwen3);
        let tied = DecoderShape {
            tied: true,
            ..DecoderShape::tiny("qwen3")
        };
        let bytes = file(&tied, GgmlDType::Q4K);
        agree(&bytes, "qwen3", false, 0.02, candle_qwen3(&bytes));
    }

    /// Phi-3 (fused query/key/value and gate/up matrices cut at load, NeoX
    /// rotation) on Quarry's decoder agrees with candle's `quantized_phi3`
    /// on the same bytes. candle rotates whole heads and knows no LongRoPE:
    /// those are held to llama.cpp below.
    #[test]
    fn phi3_logits_agree_with_candles_reference() {
        agree_in_each_type(&DecoderShape::tiny("phi3"), candle_phi3);
    }

    /// `bytes` (a GGUF) with every tensor dequantized to f32: the product
    /// its quantized weights stand for, without activation rounding.
    fn dequantized(bytes: &[u8]) -> Vec<u8> {
        let mut r = Cursor::new(bytes);
        let ct = gguf_file::Content::read(&mut r).unwrap();
        let tensors: Vec<(String, QTensor)> = ct
            .tensor_infos
            .keys()
            .map(|name| {
                let q = ct.tensor(&mut r, name, &Device::Cpu).unwrap();
                let f = q.dequantize(&Device::Cpu).unwrap();
                (name.clone(), QTensor::quantize(&f, GgmlDType::F32).unwrap())
            })
            .collect();
        let md: Vec<(&str, &gguf_file::Value)> =
            ct.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let ts: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &md, &ts).unwrap();
        out.into_inner()
    }

    /// A Q4_K_M file's Q5_K matrices (Phi-3's fused query/key/value) run on
    /// Quarry's kernels as Q8_0: the logits stay as close to the f32 product
    /// of the file's weights as candle's own Q5_K product keeps them.
    #[test]
    fn q5k_converted_to_q8_0_is_as_close_as_candles_q5k() {
        let mut out = Cursor::new(Vec::new());
        write_decoder_q4_k_m(&mut out, &DecoderShape::tiny("phi3"), 7).unwrap();
        let bytes = out.into_inner();
        let exact = dequantized(&bytes);
        let truth = candle_phi3(&exact)(&PROMPT, 0);
        let ours = row(&ours(&bytes, "phi3", false).forward(&PROMPT, 0).unwrap());
        let candle = candle_phi3(&bytes)(&PROMPT, 0);
        let (a, b) = (
            largest_difference(&ours, &truth),
            largest_difference(&candle, &truth),
        );
        eprintln!("from the f32 product: Quarry {a:.4}, candle {b:.4}");
        assert!(a < 1.5 * b, "Quarry {a} against candle's {b}");
    }

    /// LongRoPE: within the original context (a cache of 256 positions
    /// against 4,096) only the short factors count; beyond it only the long
    /// ones; and cos and sin carry the attention factor.
    #[test]
    fn longrope_factors_follow_the_context() {
        let logits = |shape: &DecoderShape| -> Vec<f32> {
            row(&ours(&file(shape, GgmlDType::Q8_0), "phi3", false)
                .forward(&PROMPT, 0)
                .unwrap())
        };
        let with = |original: usize, short: f32, long: f32| -> DecoderShape {
            let mut s = DecoderShape::tiny_phi4();
            let l = s.longrope.as_mut().unwrap();
            l.original = original;
            l.short.iter_mut().for_each(|f| *f *= short);
            l.long.iter_mut().for_each(|f| *f *= long);
            s
        };
        // `ours` builds a 256-position cache.
        let base = logits(&with(4096, 1.0, 1.0));
        assert_eq!(base, logits(&with(4096, 1.0, 3.0)), "long factors used");
        assert!(largest_difference(&base, &logits(&with(4096, 3.0, 1.0))) > 1e-3);
        let beyond = logits(&with(128, 1.0, 1.0));
        assert_eq!(beyond, logits(&with(128, 3.0, 1.0)), "short factors used");
        assert!(largest_difference(&beyond, &logits(&with(128, 1.0, 3.0))) > 1e-3);

        let scaling = RopeScaling {
            factors: Some(LongRope::phi4_like(48).short),
            magnitude: 1.19,
        };
        let (cos, sin) = rope_table(48, 10_000.0, &scaling, 64).unwrap();
        let (cos, sin) = (cos.to_vec2::<f32>().unwrap(), sin.to_vec2::<f32>().unwrap());
        for (pos, i) in [(0usize, 0usize), (37, 5), (63, 23)] {
            let norm = (cos[pos][i].powi(2) + sin[pos][i].powi(2)).sqrt();
            assert!(
                (norm - 1.19).abs() < 1e-4,
                "position {pos}, frequency {i}: {norm}"
            );
        }
    }

    /// The rows of a batched step equal single steps bit for bit on Qwen3
    /// too (what prompt-lookup decoding relies on), on Quarry's kernels.
    #[test]
    fn qwen3_batched_steps_equal_single_steps() {
        let bytes = file(&DecoderShape::tiny("qwen3"), GgmlDType::Q4K);
        let mut d = ours(&bytes, "qwen3", false);
        d.forward(&PROMPT, 0).unwrap();
        let next = [42u32, 300, 7, 99, 511];
        let single: Vec<Vec<f32>> = next
            .iter()
            .zip(PROMPT.len()..)
            .map(|(&t, pos)| row(&d.forward(&[t], pos).unwrap()))
            .collect();
        let rows = d.forward_steps(&next, PROMPT.len()).unwrap();
        for (i, (a, b)) in rows.iter().zip(&single).enumerate() {
            assert!(a == b, "row {i} differs from its single step");
        }
    }

    /// llama.cpp's logits on the same files (`bench/llamacpp_logits.py` on
    /// what `decoder_speed write tiny-llama3|tiny-qwen3|tiny-phi4 q8_0` writes, which
    /// are these tests' files; llama-cpp-python 0.3.36, one thread, f32 KV
    /// cache), after 200 prompt tokens (`--prompt-tokens 200`): the eight
    /// highest, as (token, logit).
    const LLAMA_CPP_LLAMA3: [(usize, f32); 8] = [
        (451, 2.6265),
        (248, 2.3295),
        (24, 2.158),
        (131, 2.138),
        (219, 2.1208),
        (359, 2.0237),
        (470, 2.0),
        (287, 1.9884),
    ];
    const LLAMA_CPP_PHI4: [(usize, f32); 8] = [
        (167, 3.4243),
        (241, 2.8397),
        (259, 2.6499),
        (375, 2.607),
        (461, 2.3222),
        (371, 2.1973),
        (489, 2.1715),
        (299, 2.0418),
    ];
    const LLAMA_CPP_QWEN3: [(usize, f32); 8] = [
        (407, 2.7868),
        (247, 2.7472),
        (272, 2.5093),
        (433, 2.2778),
        (302, 2.1868),
        (438, 2.0213),
        (219, 1.8663),
        (318, 1.8044),
    ];

    /// Quarry's decoder agrees with llama.cpp, an implementation independent
    /// of candle, on Qwen3's layout, on a llama file with Llama 3's rotary
    /// factors and on Phi-4-mini's layout (partial rotation, LongRoPE's short
    /// factors and attention factor, tied output: the 256-token context of
    /// both sides is within the original 4,096). Loosely: on random weights llama.cpp's numerics differ from
    /// candle's (which Quarry matches to 1e-5) by up to ~0.065 in these logits,
    /// and on 200 positions the factors move them by less than that — the
    /// factors themselves are checked against Meta's formula below.
    #[test]
    fn logits_agree_with_llama_cpp() {
        let llama3 = DecoderShape {
            rope_factors: Some(llama3_factors(64, 1_000_000.0)),
            ..DecoderShape::tiny("llama")
        };
        for (shape, reference) in [
            (llama3, LLAMA_CPP_LLAMA3),
            (DecoderShape::tiny("qwen3"), LLAMA_CPP_QWEN3),
            (DecoderShape::tiny_phi4(), LLAMA_CPP_PHI4),
        ] {
            let arch = shape.architecture.clone();
            let bytes = file(&shape, GgmlDType::Q8_0);
            let prompt: Vec<u32> = (0..200).map(|i| (i * 7919 + 13) % 512).collect();
            let got = row(&ours(&bytes, &arch, false).forward(&prompt, 0).unwrap());
            for (token, logit) in reference {
                eprintln!(
                    "{arch}: token {token}: ours {:.4}, llama.cpp {logit:.4}",
                    got[token]
                );
                assert!(
                    (got[token] - logit).abs() < 0.08,
                    "{arch}: token {token}: {} against llama.cpp's {logit}",
                    got[token]
                );
            }
            assert_eq!(argmax(&got), reference[0].0, "{arch}: the next token");
        }
    }

    /// Llama 3's `rope_freqs` divide each rotary frequency: factors of 1
    /// change nothing (Quarry agrees with candle's `quantized_llama`, which
    /// ignores the tensor), Llama 3.2's factors change the logits, and the
    /// tables follow the scaled frequencies of Meta's reference (factor 32,
    /// low/high frequency factors 1 and 4, original context 8,192).
    #[test]
    fn llama3_rotary_factors_are_applied() {
        let plain = DecoderShape::tiny("llama");
        let ones = DecoderShape {
            rope_factors: Some(vec![1.0; plain.head_dim / 2]),
            ..plain.clone()
        };
        let bytes = file(&ones, GgmlDType::Q4K);
        let mut r = Cursor::new(bytes.as_slice());
        let ct = gguf_file::Content::read(&mut r).unwrap();
        let mut reference =
            quantized_llama::ModelWeights::from_gguf(ct, &mut r, &Device::Cpu).unwrap();
        let reference = candle_step(move |x, pos| reference.forward(x, pos).unwrap());
        agree(&bytes, "llama", false, 0.02, reference);

        let factors = llama3_factors(plain.head_dim, 1_000_000.0);
        assert!(
            factors.iter().any(|&f| f > 1.0),
            "the test scales some frequencies"
        );
        let scaled = DecoderShape {
            rope_factors: Some(factors.clone()),
            ..plain.clone()
        };
        let a = row(&ours(&file(&ones, GgmlDType::Q8_0), "llama", false)
            .forward(&PROMPT, 0)
            .unwrap());
        let b = row(&ours(&file(&scaled, GgmlDType::Q8_0), "llama", false)
            .forward(&PROMPT, 0)
            .unwrap());
        assert!(
            largest_difference(&a, &b) > 1e-3,
            "the factors changed nothing"
        );

        let (cos, _) = rope_table(
            plain.head_dim,
            1_000_000.0,
            &RopeScaling {
                factors: Some(factors.clone()),
                magnitude: 1.0,
            },
            256,
        )
        .unwrap();
        let cos = cos.to_vec2::<f32>().unwrap();
        for (pos, i) in [(200usize, 0usize), (200, 20), (255, 31)] {
            let inv = hf_llama3_inv_freq(plain.head_dim, 1_000_000.0)[i];
            let want = (pos as f64 * inv).cos() as f32;
            assert!(
                (cos[pos][i] - want).abs() < 1e-3,
                "position {pos}, frequency {i}"
            );
        }
    }
}

//! A BERT encoder for embedding on the CPU.
//!
//! The same network as candle-transformers' `BertModel` (and the same
//! safetensors), arranged for throughput on a CPU: every linear layer runs as
//! one matrix product over all tokens of the batch (`(batch·len) × d`) rather
//! than one per sequence, query/key/value are one fused product, layer norms and
//! softmax use candle's fused kernels, and GELU is the tanh form.

use candle_core::{DType, Module, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The fields of a BERT `config.json` this encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    /// Width of the hidden states.
    pub hidden_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Layer norm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation; only GELU variants are supported.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only absolute position embeddings are supported.
    #[serde(default = "default_pos")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos() -> String {
    "absolute".into()
}

struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl Norm {
    fn load(vb: &VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let (w, b) = if vb.contains_tensor("weight") {
            ("weight", "bias")
        } else {
            ("gamma", "beta")
        };
        Ok(Norm {
            weight: vb.get(size, w)?,
            bias: vb.get(size, b)?,
            eps: eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// A dense layer stored as `(in, out)` so `x · W` needs no transpose.
struct Dense {
    w: Tensor,
    b: Tensor,
}

/// What a [`Dense`] layer does after its matrix product, inside the same pass.
#[derive(Clone, Copy, PartialEq)]
enum Epilogue {
    /// `x · W + b`.
    Bias,
    /// `GELU(x · W + b)`.
    Gelu,
}

impl Dense {
    fn load(vbs: &[VarBuilder], input: usize, output: usize) -> Result<Self> {
        let mut ws = Vec::new();
        let mut bs = Vec::new();
        for vb in vbs {
            ws.push(vb.get((output, input), "weight")?);
            bs.push(vb.get(output, "bias")?);
        }
        let w = Tensor::cat(&ws, 0)?.t()?.contiguous()?;
        let b = Tensor::cat(&bs, 0)?;
        Ok(Dense { w, b })
    }

    /// `x · W + b (+ residual)`, then the epilogue.
    ///
    /// On the CPU this is one gemm whose destination starts out holding the
    /// bias (plus the residual) rows, so no separate add pass reads and writes
    /// the output again and no extra buffer is allocated; GELU runs in place.
    fn forward(&self, x: &Tensor, residual: Option<&Tensor>, epilogue: Epilogue) -> Result<Tensor> {
        if let Some(out) = self.forward_cpu(x, residual, epilogue)? {
            return Ok(out);
        }
        let mut out = x.matmul(&self.w)?.broadcast_add(&self.b)?;
        if let Some(r) = residual {
            out = (out + r)?;
        }
        match epilogue {
            Epilogue::Bias => Ok(out),
            Epilogue::Gelu => fast_gelu(&out),
        }
    }

    fn forward_cpu(
        &self,
        x: &Tensor,
        residual: Option<&Tensor>,
        epilogue: Epilogue,
    ) -> Result<Option<Tensor>> {
        use rayon::prelude::*;
        let (m, k) = x.dims2()?;
        let n = self.b.dim(0)?;
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = self.w.storage_and_layout();
        let (bs, bl) = self.b.storage_and_layout();
        let (Some(x), Some(w), Some(b)) = (
            cpu_f32(&xs, xl, m * k),
            cpu_f32(&ws, wl, k * n),
            cpu_f32(&bs, bl, n),
        ) else {
            return Ok(None);
        };
        let rs = residual.map(|r| r.storage_and_layout());
        let residual = match &rs {
            Some((s, l)) => match cpu_f32(s, l, m * n) {
                Some(r) => Some(r),
                None => return Ok(None),
            },
            None => None,
        };
        let mut out = vec![0f32; m * n];
        out.par_chunks_mut(n)
            .enumerate()
            .for_each(|(row, o)| match residual {
                Some(r) => {
                    for ((o, b), r) in o.iter_mut().zip(b).zip(&r[row * n..(row + 1) * n]) {
                        *o = b + r;
                    }
                }
                None => o.copy_from_slice(b),
            });
        // SAFETY: `out` is m×n, `x` m×k and `w` k×n, all row-major and
        // contiguous (checked by `cpu_f32`), and nothing else aliases `out`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                x.as_ptr(),
                1,
                k as isize,
                w.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism(),
            );
        }
        if epilogue == Epilogue::Gelu {
            out.par_chunks_mut(1 << 14).for_each(|o| {
                for v in o {
                    *v = gelu_tanh(*v);
                }
            });
        }
        Ok(Some(Tensor::from_vec(
            out,
            (m, n),
            &candle_core::Device::Cpu,
        )?))
    }
}

/// The f32 values of a contiguous CPU tensor of `len` elements.
fn cpu_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
    len: usize,
) -> Option<&'a [f32]> {
    let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(data)) = storage else {
        return None;
    };
    let (start, end) = layout.contiguous_offsets()?;
    (end - start == len).then(|| &data[start..end])
}

fn parallelism() -> gemm::Parallelism {
    match candle_core::utils::get_num_threads() {
        0 | 1 => gemm::Parallelism::None,
        n => gemm::Parallelism::Rayon(n),
    }
}

/// A raw pointer that rayon tasks may share because each writes its own
/// disjoint part of the buffer.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: only used for writes to disjoint regions, see `attention`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The element at `offset` (a method, so closures capture the whole
    /// `Send` wrapper rather than its raw pointer field).
    ///
    /// # Safety
    /// `offset` must lie inside the buffer.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        // SAFETY: the caller keeps `offset` inside the buffer.
        unsafe { self.0.add(offset) }
    }
}

/// Self-attention for a batch of right-padded sequences, straight from the
/// fused `(b·len, 3d)` query/key/value rows into a `(b·len, d)` context.
///
/// One task per (sequence, head) reads its query, key and value columns in
/// place (no transposed copies), computes scaled scores against the
/// sequence's real tokens only (padding is skipped, not masked), applies the
/// softmax in a buffer of its own and writes its slice of the context. Rows of
/// padding positions stay zero: nothing reads them (keys never include
/// padding, and pooling masks them out).
fn attention(qkv: &[f32], lens: &[usize], len: usize, heads: usize, head_dim: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let d = heads * head_dim;
    let mut out = vec![0f32; lens.len() * len * d];
    let dst = SharedOut(out.as_mut_ptr());
    let scale = 1.0 / (head_dim as f32).sqrt();
    let stride = (3 * d) as isize;
    (0..lens.len() * heads)
        .into_par_iter()
        .for_each_init(Vec::new, |scores, task| {
            let (seq, head) = (task / heads, task % heads);
            let l = lens[seq];
            if l == 0 {
                return;
            }
            let base = seq * len * 3 * d + head * head_dim;
            let q = qkv[base..].as_ptr();
            let k = qkv[base + d..].as_ptr();
            let v = qkv[base + 2 * d..].as_ptr();
            scores.clear();
            scores.resize(l * l, 0f32);
            // SAFETY: q/k/v address l rows of `head_dim` values with row stride
            // 3d inside `qkv`; `scores` is l×l; the context slice (rows of this
            // sequence, columns of this head) is written by this task only.
            unsafe {
                // scores = scale · Q Kᵀ (Kᵀ read through swapped strides)
                gemm::gemm(
                    l,
                    l,
                    head_dim,
                    scores.as_mut_ptr(),
                    1,
                    l as isize,
                    false,
                    q,
                    1,
                    stride,
                    k,
                    stride,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for row in scores.chunks_mut(l) {
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let mut sum = 0.0;
                for s in row.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let inv = 1.0 / sum;
                for s in row.iter_mut() {
                    *s *= inv;
                }
            }
            unsafe {
                // context rows = P V
                gemm::gemm(
                    l,
                    head_dim,
                    l,
                    dst.at(seq * len * d + head * head_dim),
                    1,
                    d as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    l as isize,
                    v,
                    1,
                    stride,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    out
}

struct Layer {
    qkv: Dense,
    attn_out: Dense,
    attn_norm: Norm,
    intermediate: Dense,
    output: Dense,
    out_norm: Norm,
}

/// The encoder.
pub struct FastBert {
    word: candle_nn::Embedding,
    position: Tensor,
    token_type: candle_nn::Embedding,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
}

impl FastBert {
    /// Load from a BERT checkpoint (with or without a `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> Result<Self> {
        if !cfg.hidden_act.starts_with("gelu") {
            return Err(Error::ModelLoad {
                id: "bert".into(),
                reason: format!("activation '{}' is not supported", cfg.hidden_act),
            });
        }
        if cfg.position_embedding_type != "absolute" {
            return Err(Error::ModelLoad {
                id: "bert".into(),
                reason: format!(
                    "position embeddings '{}' are not supported",
                    cfg.position_embedding_type
                ),
            });
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let d = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let word_w = emb.get_unchecked("word_embeddings.weight")?;
        let position = emb.get_unchecked("position_embeddings.weight")?;
        let type_w = emb.get_unchecked("token_type_embeddings.weight")?;
        let emb_norm = Norm::load(&emb.pp("LayerNorm"), d, cfg.layer_norm_eps)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let att = l.pp("attention");
            let inter_size = l.pp("intermediate.dense").get_unchecked("weight")?.dim(0)?;
            layers.push(Layer {
                qkv: Dense::load(
                    &[
                        att.pp("self.query"),
                        att.pp("self.key"),
                        att.pp("self.value"),
                    ],
                    d,
                    d,
                )?,
                attn_out: Dense::load(&[att.pp("output.dense")], d, d)?,
                attn_norm: Norm::load(&att.pp("output.LayerNorm"), d, cfg.layer_norm_eps)?,
                intermediate: Dense::load(&[l.pp("intermediate.dense")], d, inter_size)?,
                output: Dense::load(&[l.pp("output.dense")], inter_size, d)?,
                out_norm: Norm::load(&l.pp("output.LayerNorm"), d, cfg.layer_norm_eps)?,
            });
        }
        Ok(FastBert {
            word: candle_nn::Embedding::new(word_w, d),
            position,
            token_type: candle_nn::Embedding::new(type_w, d),
            emb_norm,
            layers,
            heads: cfg.num_attention_heads,
            head_dim: d / cfg.num_attention_heads,
            hidden: d,
        })
    }

    /// Hidden states `(batch, len, hidden)` for `ids`, `type_ids` and `mask`
    /// (all `(batch, len)` u32; mask 1 for tokens, 0 for padding).
    pub fn forward(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let (h, dh, d) = (self.heads, self.head_dim, self.hidden);
        let flat_ids = ids.flatten_all()?;
        let x = self.word.forward(&flat_ids)?.reshape((b, len, d))?;
        let x = x.broadcast_add(&self.position.narrow(0, 0, len)?.unsqueeze(0)?)?;
        let x = (x + self
            .token_type
            .forward(&type_ids.flatten_all()?)?
            .reshape((b, len, d))?)?;
        let mut x = self.emb_norm.forward(&x.reshape((b * len, d))?)?;
        let lens = prefix_lengths(mask)?;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, None, Epilogue::Bias)?; // (b·len, 3d)
            let ctx = match &lens {
                Some(lens) => {
                    let (storage, layout) = qkv.storage_and_layout();
                    match cpu_f32(&storage, layout, b * len * 3 * d) {
                        Some(data) => Tensor::from_vec(
                            attention(data, lens, len, h, dh),
                            (b * len, d),
                            &candle_core::Device::Cpu,
                        )?,
                        None => attention_generic(&qkv, mask, b, len, h, dh)?,
                    }
                }
                None => attention_generic(&qkv, mask, b, len, h, dh)?,
            };
            let attn = layer.attn_out.forward(&ctx, Some(&x), Epilogue::Bias)?;
            x = layer.attn_norm.forward(&attn)?;
            let inter = layer.intermediate.forward(&x, None, Epilogue::Gelu)?;
            let out = layer.output.forward(&inter, Some(&x), Epilogue::Bias)?;
            x = layer.out_norm.forward(&out)?;
        }
        Ok(x.reshape((b, len, d))?)
    }
}

/// Attention with tensor ops and an additive mask, for masks that are not
/// right padding or tensors that are not f32 on the CPU.
fn attention_generic(
    qkv: &Tensor,
    mask: &Tensor,
    b: usize,
    len: usize,
    h: usize,
    dh: usize,
) -> Result<Tensor> {
    let d = h * dh;
    // Additive mask: 0 where attended, a large negative number on padding.
    let mask_add = ((mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((b, 1, 1, len))?;
    let scale = 1.0 / (dh as f64).sqrt();
    let qkv = qkv.reshape((b, len, 3, h, dh))?.permute((2, 0, 3, 1, 4))?; // (3, b, h, len, dh)
    let q = (qkv.get(0)?.contiguous()? * scale)?;
    let k = qkv.get(1)?.contiguous()?;
    let v = qkv.get(2)?.contiguous()?;
    let scores = q.matmul(&k.t()?)?.broadcast_add(&mask_add)?; // (b, h, len, len)
    let probs = candle_nn::ops::softmax_last_dim(&scores)?;
    Ok(probs
        .matmul(&v)? // (b, h, len, dh)
        .transpose(1, 2)?
        .reshape((b * len, d))?)
}

/// Each row's number of leading ones when every row of `mask` (`(batch, len)`,
/// 1 for tokens, 0 for padding) is right-padded; `None` otherwise.
fn prefix_lengths(mask: &Tensor) -> Result<Option<Vec<usize>>> {
    let rows: Vec<Vec<u32>> = mask.to_dtype(DType::U32)?.to_vec2()?;
    let mut lens = Vec::with_capacity(rows.len());
    for row in rows {
        let l = row.iter().take_while(|&&m| m != 0).count();
        if row[l..].iter().any(|&m| m != 0) {
            return Ok(None);
        }
        lens.push(l);
    }
    Ok(Some(lens))
}

/// Mean of the token vectors where `mask` is 1: `(batch, len, d)` → `(batch, d)`.
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    Ok(sum.broadcast_div(&count)?)
}

/// GELU (tanh form) as one multi-threaded pass with a rational tanh: libm's
/// `tanhf` took about 15% of embedding time in a profile. The rational
/// approximation differs from `tanh` by under 1e-4.
struct FastGelu;

#[inline]
fn tanh_approx(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let p = x * (135135.0 + x2 * (17325.0 + x2 * (378.0 + x2)));
    let q = 135135.0 + x2 * (62370.0 + x2 * (3150.0 + x2 * 28.0));
    (p / q).clamp(-1.0, 1.0)
}

#[inline]
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + tanh_approx(C * (x + 0.044715 * x * x * x)))
}

impl candle_core::CustomOp1 for FastGelu {
    fn name(&self) -> &'static str {
        "quarry-fast-gelu"
    }

    fn cpu_fwd(
        &self,
        storage: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use rayon::prelude::*;
        let candle_core::CpuStorage::F32(data) = storage else {
            candle_core::bail!("fast GELU takes f32");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("fast GELU takes a contiguous tensor");
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(1 << 14)
            .zip(src.par_chunks(1 << 14))
            .for_each(|(o, i)| {
                for (o, &x) in o.iter_mut().zip(i) {
                    *o = gelu_tanh(x);
                }
            });
        Ok((candle_core::CpuStorage::F32(out), layout.shape().clone()))
    }
}

fn fast_gelu(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.is_contiguous() {
        Ok(x.apply_op1_no_bwd(&FastGelu)?)
    } else {
        Ok(x.gelu()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn fused_dense_matches_matmul_plus_bias() {
        let dense = Dense {
            w: random(&[48, 80], 1),
            b: random(&[80], 2),
        };
        let x = random(&[37, 48], 3);
        let res = random(&[37, 80], 4);
        let plain = x.matmul(&dense.w).unwrap().broadcast_add(&dense.b).unwrap();
        let fused = dense.forward(&x, None, Epilogue::Bias).unwrap();
        assert!(max_diff(&plain, &fused) < 1e-4);
        let with_res = dense.forward(&x, Some(&res), Epilogue::Gelu).unwrap();
        let expected = fast_gelu(&(plain + &res).unwrap()).unwrap();
        assert!(max_diff(&with_res, &expected) < 1e-4);
    }

    #[test]
    fn fused_attention_matches_masked_attention_on_real_tokens() {
        let (b, len, h, dh) = (3, 11, 4, 8);
        let qkv = random(&[b * len, 3 * h * dh], 5);
        let lens = [11usize, 4, 1];
        let mut mask = vec![0u32; b * len];
        for (i, l) in lens.iter().enumerate() {
            mask[i * len..i * len + l].fill(1);
        }
        let mask = Tensor::from_vec(mask, (b, len), &candle_core::Device::Cpu).unwrap();
        assert_eq!(prefix_lengths(&mask).unwrap().unwrap(), lens);
        let generic = attention_generic(&qkv, &mask, b, len, h, dh).unwrap();
        let data: Vec<f32> = qkv.flatten_all().unwrap().to_vec1().unwrap();
        let fused = Tensor::from_vec(
            attention(&data, &lens, len, h, dh),
            (b * len, h * dh),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        // Rows of real tokens agree; padding rows are not computed.
        for (i, &l) in lens.iter().enumerate() {
            let a = generic.narrow(0, i * len, l).unwrap();
            let f = fused.narrow(0, i * len, l).unwrap();
            assert!(max_diff(&a, &f) < 1e-5, "sequence {i}");
        }
        // A mask that is not right padding takes the generic path.
        let holes = Tensor::new(&[[1u32, 0, 1]], &candle_core::Device::Cpu).unwrap();
        assert!(prefix_lengths(&holes).unwrap().is_none());
    }

    #[test]
    fn fast_gelu_matches_tanh_gelu() {
        let xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 / 200.0).collect();
        let t = Tensor::new(xs.as_slice(), &candle_core::Device::Cpu).unwrap();
        let fast: Vec<f32> = fast_gelu(&t).unwrap().to_vec1().unwrap();
        let reference: Vec<f32> = t.gelu().unwrap().to_vec1().unwrap();
        for ((x, a), b) in xs.iter().zip(&fast).zip(&reference) {
            assert!((a - b).abs() < 2e-4, "gelu({x}): {a} vs {b}");
        }
    }
}

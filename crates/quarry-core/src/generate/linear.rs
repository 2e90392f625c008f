//! The decoder's linear maps over quantized GGUF weights: Quarry's own
//! kernels ([`quarry_kernels::quantized`]) for the types they cover on
//! CPUs that have them, candle's quantized products otherwise, and dense f32
//! copies for the prompts of models small enough to keep them.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use quarry_kernels::quantized::{Level, QMatrix, WeightType};

use crate::error::Result;

/// A quantized weight matrix's product: repacked for Quarry's kernels when
/// its type and shape have one on this CPU, else candle's.
enum QuantProduct {
    Packed(QMatrix),
    Candle(QMatMul),
}

impl QuantProduct {
    /// Whether Quarry's kernels run it: then prompts go through it too
    /// (faster than a dense f32 copy: SmolLM2's prefill went from 264 to
    /// over 600 tok/s), so no dense copy is kept.
    fn packed(&self) -> bool {
        matches!(self, QuantProduct::Packed(_))
    }

    fn new(t: QTensor) -> Result<Self> {
        Ok(match Self::pack(&t)? {
            Some(m) => QuantProduct::Packed(m),
            None => QuantProduct::Candle(QMatMul::from_qtensor(t)?),
        })
    }

    /// `t` repacked for Quarry's kernels, when its type and shape have one
    /// on this CPU. Q5_K (the fused query/key/value matrices of a Q4_K_M
    /// Phi-3 file, most of a Q5_K_M file) is converted to Q8_0 first: 1.5×
    /// its memory, and Phi-4-mini's prompts went from 21 to 50 tok/s
    /// against candle's Q5_K product (BENCHMARKS.md).
    fn pack(t: &QTensor) -> Result<Option<QMatrix>> {
        let ty = match t.dtype() {
            GgmlDType::Q4K => WeightType::Q4K,
            GgmlDType::Q6K => WeightType::Q6K,
            GgmlDType::Q8_0 => WeightType::Q8_0,
            GgmlDType::Q5K if Level::detect().is_some() => {
                let q8 = QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?;
                return Self::pack(&q8);
            }
            _ => return Ok(None),
        };
        Ok(match t.shape().dims() {
            [n, k] => QMatrix::new(ty, &t.data()?, *n, *k),
            _ => None,
        })
    }

    /// Which kernels run it, for people.
    fn kernels(&self) -> &'static str {
        match self {
            QuantProduct::Packed(m) => match m.level() {
                Level::Avx512Vnni => "Quarry AVX-512 VNNI",
                Level::Avx2 => "Quarry AVX2",
            },
            QuantProduct::Candle(_) => "candle",
        }
    }

    /// `x`: (tokens, in) → (tokens, out).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            QuantProduct::Candle(q) => Ok(q.forward(x)?),
            QuantProduct::Packed(m) => {
                let rows = x.dim(0)?;
                let xs = x.flatten_all()?.to_vec1::<f32>()?;
                let y = m.matmul(&xs, rows);
                Ok(Tensor::from_vec(y, (rows, m.rows()), &Device::Cpu)?)
            }
        }
    }
}

pub(super) struct Linear {
    q: QuantProduct,
    dense: Option<Tensor>,
}

impl Linear {
    /// `dense`: keep a dense f32 copy for prompts, unless Quarry's kernels
    /// run this weight's type.
    pub(super) fn new(t: QTensor, dense: bool) -> Result<Self> {
        if let Some(m) = QuantProduct::pack(&t)? {
            return Ok(Linear {
                q: QuantProduct::Packed(m),
                dense: None,
            });
        }
        let dense = if dense {
            Some(t.dequantize(&Device::Cpu)?)
        } else {
            None
        };
        Ok(Linear {
            q: QuantProduct::Candle(QMatMul::from_qtensor(t)?),
            dense,
        })
    }

    /// Which kernels run its quantized product, for people.
    pub(super) fn kernels(&self) -> &'static str {
        self.q.kernels()
    }

    /// `x`: (tokens, in) → (tokens, out); the dense copy serves prompts
    /// (several rows) when `dense_ok`.
    pub(super) fn forward(&self, x: &Tensor, dense_ok: bool) -> Result<Tensor> {
        match &self.dense {
            Some(w) if dense_ok && x.dim(0)? > 1 => Ok(x.matmul(&w.t()?)?),
            _ => self.q.forward(x),
        }
    }
}

/// The rows of the 2-D quantized matrix `t` cut into consecutive parts of
/// `sizes` rows: a GGUF's fused matrices (Phi-3's query/key/value and
/// gate/up) as the separate weights [`Projections`] takes. Quantized rows
/// are whole blocks, so each part is a byte range of `t`.
pub(super) fn split_rows(t: &QTensor, sizes: &[usize]) -> Result<Vec<QTensor>> {
    let (rows, cols) = t.shape().dims2()?;
    if sizes.iter().sum::<usize>() != rows {
        return Err(crate::error::Error::ModelLoad {
            id: "gguf".into(),
            reason: format!("a fused matrix of {rows} rows cannot be cut into {sizes:?}"),
        });
    }
    let data = t.data()?;
    let row_bytes = data.len() / rows;
    let mut start = 0;
    sizes
        .iter()
        .map(|&n| {
            let part = &data[start * row_bytes..(start + n) * row_bytes];
            start += n;
            Ok(candle_core::quantized::ggml_file::qtensor_from_ggml(
                t.dtype(),
                part,
                vec![n, cols],
                &Device::Cpu,
            )?)
        })
        .collect()
}

/// Several linear maps of the same input (query/key/value; gate/up). When
/// their weights share a quantization type they are kept as one quantized
/// matrix whose rows are the parts' rows, run as one product: the input is
/// quantized once and the threads meet once instead of once per part, which
/// is most of the cost of a decoding step in a small model. Models with dense
/// copies use the parts' own dense products for prompts, whose outputs come
/// out contiguous (slices of one wide product made the element-wise work after
/// them strided: Gemma's prefill lost 12% that way). Each weight is held
/// once in quantized form either way.
pub(super) struct Projections {
    /// The parts' quantized rows stacked, when their types match.
    stacked: Option<QuantProduct>,
    /// Per-part products: dense copies only (for prompts) when stacked,
    /// complete `Linear`s otherwise; empty when stacked without dense copies.
    parts: Vec<PartProduct>,
    sizes: Vec<usize>,
}

enum PartProduct {
    Full(Linear),
    Dense(Tensor),
}

impl Projections {
    pub(super) fn new(ts: Vec<QTensor>, dense: bool) -> Result<Self> {
        let sizes: Vec<usize> = ts
            .iter()
            .map(|t| t.shape().dims().first().copied().unwrap_or(0))
            .collect();
        let same = ts.windows(2).all(|w| {
            w[0].dtype() == w[1].dtype() && w[0].shape().dims()[1..] == w[1].shape().dims()[1..]
        });
        if ts.len() > 1 && same && ts[0].shape().dims().len() == 2 {
            let dtype = ts[0].dtype();
            let cols = ts[0].shape().dims()[1];
            let mut bytes = Vec::new();
            for t in &ts {
                bytes.extend_from_slice(&t.data()?);
            }
            // Quantized rows are whole blocks, so the parts' bytes one after
            // another are exactly the stacked matrix.
            let stacked = candle_core::quantized::ggml_file::qtensor_from_ggml(
                dtype,
                &bytes,
                vec![sizes.iter().sum(), cols],
                &Device::Cpu,
            )?;
            let stacked = QuantProduct::new(stacked)?;
            let parts = if dense && !stacked.packed() {
                ts.iter()
                    .map(|t| Ok(PartProduct::Dense(t.dequantize(&Device::Cpu)?)))
                    .collect::<Result<_>>()?
            } else {
                Vec::new()
            };
            return Ok(Projections {
                stacked: Some(stacked),
                parts,
                sizes,
            });
        }
        Ok(Projections {
            stacked: None,
            parts: ts
                .into_iter()
                .map(|t| Ok(PartProduct::Full(Linear::new(t, dense)?)))
                .collect::<Result<_>>()?,
            sizes,
        })
    }

    /// `x`: (tokens, in) → one (tokens, out_i) tensor per part; dense copies
    /// serve prompts when `dense_ok`.
    pub(super) fn forward(&self, x: &Tensor, dense_ok: bool) -> Result<Vec<Tensor>> {
        match &self.stacked {
            Some(stacked) if !dense_ok || x.dim(0)? == 1 || self.parts.is_empty() => {
                let y = stacked.forward(x)?;
                let mut out = Vec::with_capacity(self.sizes.len());
                let mut offset = 0;
                for &n in &self.sizes {
                    out.push(y.narrow(1, offset, n)?);
                    offset += n;
                }
                Ok(out)
            }
            _ => self
                .parts
                .iter()
                .map(|p| match p {
                    PartProduct::Full(l) => l.forward(x, dense_ok),
                    PartProduct::Dense(w) => Ok(x.matmul(&w.t()?)?),
                })
                .collect(),
        }
    }
}

/// Token embeddings kept in the GGUF's own quantized form, a row dequantized
/// when a token is looked up: an f32 copy of the table would be 4–7× larger
/// (0.93 GB for Qwen2.5-1.5B's 151,936 × 1,536). A row comes out exactly as
/// from dequantizing the whole table (same blocks, same function).
pub(super) struct Embeddings {
    dtype: GgmlDType,
    bytes: Vec<u8>,
    rows: usize,
    width: usize,
}

impl Embeddings {
    pub(super) fn new(t: &QTensor) -> Result<Self> {
        let (rows, width) = t.shape().dims2()?;
        Ok(Embeddings {
            dtype: t.dtype(),
            bytes: t.data()?.into_owned(),
            rows,
            width,
        })
    }

    /// The rows of `ids`: (ids, width).
    pub(super) fn lookup(&self, ids: &[u32]) -> Result<Tensor> {
        let row_bytes = self.bytes.len() / self.rows;
        let mut out = Vec::with_capacity(ids.len() * self.width);
        for &id in ids {
            let id = id as usize;
            if id >= self.rows {
                return Err(crate::error::Error::InvalidInput(format!(
                    "token id {id} is outside the model's {}-token vocabulary",
                    self.rows
                )));
            }
            let row = &self.bytes[id * row_bytes..(id + 1) * row_bytes];
            let q = candle_core::quantized::ggml_file::qtensor_from_ggml(
                self.dtype,
                row,
                vec![1, self.width],
                &Device::Cpu,
            )?;
            out.extend(
                q.dequantize(&Device::Cpu)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok(Tensor::from_vec(
            out,
            (ids.len(), self.width),
            &Device::Cpu,
        )?)
    }
}

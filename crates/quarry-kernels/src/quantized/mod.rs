//! Products of quantized weight matrices (GGUF k-quants and Q8_0) with f32
//! activations: the matrix products of a decoder step.
//!
//! Weights are repacked once at load into tiles of 16 output rows × 256
//! inputs (64 for Q8_0), so that one AVX-512 VNNI `vpdpbusd` computes 4 products for each of
//! 16 rows and no horizontal sums are needed. The tiles keep the GGUF's bits
//! per weight (Q4_K: 4-bit quants, 6-bit scales as bytes; Q6_K: 6 bits split
//! into a nibble and a bit pair) rather than widening them, because a
//! decoding step streams every weight once and its speed is the bytes it
//! reads; the next tile is prefetched while one is computed. Activations are
//! quantized to 8 bits per 256-value block (per 32 for Q8_0), with the sums
//! the weights' offsets need.
//!
//! One kernel serves one to four activation rows (decoding, draft
//! verification) and prompts (rows in blocks of 64 whose quantized
//! activations stay in cache while a tile column is reused across them). Rows
//! are computed independently: a row's result does not depend on how many
//! rows come with it, so verifying drafts gives exactly the logits of
//! decoding them one by one.
//!
//! The kernels need AVX-512 with VNNI or, half as wide, AVX2 with FMA
//! ([`Level`], chosen at run time); [`QMatrix::new`] returns `None` elsewhere
//! so the caller keeps its portable path.

mod act;
mod q4k;
mod q6k;
mod q8_0;

pub use act::{quantize_rows, Acts, QBlock, QBlock64};

/// Values per quantization block (GGUF's `QK_K`).
pub const BLOCK: usize = 256;
/// Output rows per tile.
pub const TILE_ROWS: usize = 16;
/// Activation rows per kernel call.
const MAX_ROWS: usize = 4;
/// Prompt rows whose quantized activations are reused across a tile column.
const ROW_BLOCK: usize = 64;

/// The SIMD kernels a CPU can run, widest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// AVX-512 F/BW/VL with VNNI, and F16C: 16 rows per instruction.
    Avx512Vnni,
    /// AVX2, FMA and F16C: 8 rows per instruction, products through
    /// `vpmaddubsw`/`vpmaddwd`.
    Avx2,
}

impl Level {
    /// Whether this CPU has what the level needs.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            match self {
                Level::Avx2 => avx2,
                Level::Avx512Vnni => {
                    avx2 && has!("avx512f")
                        && has!("avx512bw")
                        && has!("avx512vl")
                        && has!("avx512vnni")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = self;
            false
        }
    }

    /// The widest level this CPU runs, if any. `QUARRY_SIMD=avx2` caps it
    /// at AVX2 and `QUARRY_SIMD=off` turns Quarry's kernels off (candle's then
    /// run), to measure one against another on the same machine.
    pub fn detect() -> Option<Level> {
        static LEVEL: std::sync::OnceLock<Option<Level>> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let cap = std::env::var("QUARRY_SIMD").unwrap_or_default();
            let allowed: &[Level] = match cap.as_str() {
                "off" => &[],
                "avx2" => &[Level::Avx2],
                _ => &[Level::Avx512Vnni, Level::Avx2],
            };
            allowed.iter().copied().find(|l| l.supported())
        })
    }
}

/// Whether this CPU runs any of the SIMD kernels.
pub fn simd_available() -> bool {
    Level::detect().is_some()
}

/// The GGUF weight types with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    /// 4.5 bits per weight.
    Q4K,
    /// 6.56 bits per weight.
    Q6K,
    /// 8.5 bits per weight, in blocks of 32.
    Q8_0,
}

/// One kernel call: a tile column (`kb` tiles from `tiles`) against
/// consecutive activation rows (`kb` blocks each from `acts`), writing 16
/// outputs per row at `out + row · stride`.
struct Column<T: TileKind> {
    tiles: *const T,
    kb: usize,
    acts: *const T::Act,
    out: *mut f32,
    stride: usize,
}

impl<T: TileKind> Column<T> {
    /// Tile column `nt` of `tiles` (`kb` tiles per column).
    fn at(
        tiles: &[T],
        nt: usize,
        kb: usize,
        acts: *const T::Act,
        out: *mut f32,
        stride: usize,
    ) -> Self {
        let tiles = tiles[nt * kb..].as_ptr();
        Column {
            tiles,
            kb,
            acts,
            out,
            stride,
        }
    }
}

/// A tile type: 16 rows × `Act::VALUES` inputs of one GGUF weight type.
trait TileKind: Sized + Sync {
    /// The activation blocks it multiplies, one per tile.
    type Act: Acts;
    /// GGUF bytes of one row's part of a tile (`Act::VALUES` weights).
    const GGUF_ROW_BYTES: usize;
    /// Pack block column `b` of the 16 rows starting at `row0` of a matrix
    /// with `kb` blocks per row: `(gguf, kb, row0, b)`.
    const PACK: fn(&[u8], usize, usize, usize) -> Self;
    /// Output `row` of the product with one row of activations (`kb` blocks),
    /// in plain Rust with exact integer sums, the SIMD kernels' reference:
    /// `(tiles, kb, row, acts)`.
    fn reference(tiles: &[Self], kb: usize, row: usize, acts: &[Self::Act]) -> f32;
    /// The AVX-512 kernel for 1, 2, 3 and 4 activation rows. Safety: the
    /// CPU has the level's features and the [`Column`]'s pointers cover what
    /// it names.
    #[cfg(target_arch = "x86_64")]
    const KERNELS: [unsafe fn(Column<Self>); 4];
    /// The same with AVX2, for half a tile (8 rows: 0 or 1) per call:
    /// `vpmaddubsw` (pairs of products) and `vpmaddwd` stand for `vpdpbusd`.
    #[cfg(target_arch = "x86_64")]
    const KERNELS_AVX2: [unsafe fn(&Column<Self>, usize); 4];
}

/// A tile type's [`TileKind::KERNELS`] from its generic kernel.
macro_rules! kernels {
    ($($column:ident)::+) => {
        [
            $($column)::+::<1>,
            $($column)::+::<2>,
            $($column)::+::<3>,
            $($column)::+::<4>,
        ]
    };
}
use kernels;

/// Store a kernel's accumulators: 16 outputs per row, rows `stride` apart.
///
/// # Safety
/// AVX-512 F; `out + m · stride` is writable for 16 values for every row `m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn store_rows<const MT: usize>(
    acc: &[std::arch::x86_64::__m512; MT],
    out: *mut f32,
    stride: usize,
) {
    for (m, v) in acc.iter().enumerate() {
        std::arch::x86_64::_mm512_storeu_ps(out.add(m * stride), *v);
    }
}

/// Prefetch `count` cache lines from line `first` of `base` (the next tile,
/// which may lie past the last one: prefetches do not fault).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_lines(base: *const u8, first: usize, count: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for l in first..first + count {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(l * 64) as *const i8) };
    }
}

/// [`store_rows`] for AVX2: 8 outputs per row.
///
/// # Safety
/// AVX; `out + m · stride` is writable for 8 values for every row `m`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn store_rows_avx2<const MT: usize>(
    acc: &[std::arch::x86_64::__m256; MT],
    out: *mut f32,
    stride: usize,
) {
    for (m, v) in acc.iter().enumerate() {
        std::arch::x86_64::_mm256_storeu_ps(out.add(m * stride), *v);
    }
}

/// Repack GGUF data of an `n × k` matrix (shape checked to tile); `None` when
/// the data is not that shape's size.
fn pack_tiles<T: TileKind>(gguf: &[u8], n: usize, k: usize) -> Option<Vec<T>> {
    let kb = k / T::Act::VALUES;
    if !k.is_multiple_of(T::Act::VALUES) || gguf.len() != n * kb * T::GGUF_ROW_BYTES {
        return None;
    }
    let tiles = (0..n / TILE_ROWS)
        .flat_map(|nt| (0..kb).map(move |b| (nt, b)))
        .map(|(nt, b)| T::PACK(gguf, kb, nt * TILE_ROWS, b))
        .collect();
    Some(tiles)
}

/// Run the `level` kernel for `rows` (1..=4) activation rows.
///
/// # Safety
/// The CPU has the level's features; `c.tiles` holds `c.kb` tiles, `c.acts`
/// `rows · kb` blocks, and `c.out + row · c.stride` is writable for 16 values.
unsafe fn column_dispatch<T: TileKind>(level: Level, c: Column<T>, rows: usize) {
    #[cfg(target_arch = "x86_64")]
    match level {
        Level::Avx512Vnni => T::KERNELS[rows.clamp(1, MAX_ROWS) - 1](c),
        Level::Avx2 => {
            let kernel = T::KERNELS_AVX2[rows.clamp(1, MAX_ROWS) - 1];
            kernel(&c, 0);
            kernel(&c, 1);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (level, c, rows);
        unreachable!("no SIMD kernel on this architecture");
    }
}

enum Tiles {
    Q4K(Vec<q4k::Tile>),
    Q6K(Vec<q6k::Tile>),
    Q8_0(Vec<q8_0::Tile>),
}

/// A quantized matrix of `n` output rows and `k` inputs, repacked for the SIMD
/// kernels (Q4_K 8% and Q6_K 1% larger than in the GGUF file, Q8_0 the same
/// size).
pub struct QMatrix {
    n: usize,
    k: usize,
    tiles: Tiles,
    level: Level,
}

impl QMatrix {
    /// Repack the GGUF data of an `n × k` matrix. `None` when this CPU has no
    /// SIMD kernel, the shape does not tile (`n` a multiple of 16, `k` of
    /// 256, or of 64 for Q8_0) or the data is not that shape's size.
    pub fn new(ty: WeightType, gguf: &[u8], n: usize, k: usize) -> Option<Self> {
        Self::with_level(Level::detect()?, ty, gguf, n, k)
    }

    /// As [`QMatrix::new`] with the kernels of `level` (`None` when this CPU
    /// does not have it): lets tests run the narrower kernels too.
    pub fn with_level(
        level: Level,
        ty: WeightType,
        gguf: &[u8],
        n: usize,
        k: usize,
    ) -> Option<Self> {
        if !level.supported() {
            return None;
        }
        Self::pack(level, ty, gguf, n, k)
    }

    /// Repack without asking the CPU (the reference product runs anywhere).
    fn pack(level: Level, ty: WeightType, gguf: &[u8], n: usize, k: usize) -> Option<Self> {
        if n == 0 || k == 0 || !n.is_multiple_of(TILE_ROWS) {
            return None;
        }
        let tiles = match ty {
            WeightType::Q4K => Tiles::Q4K(pack_tiles(gguf, n, k)?),
            WeightType::Q6K => Tiles::Q6K(pack_tiles(gguf, n, k)?),
            WeightType::Q8_0 => Tiles::Q8_0(pack_tiles(gguf, n, k)?),
        };
        Some(QMatrix { n, k, tiles, level })
    }

    /// Output rows.
    pub fn rows(&self) -> usize {
        self.n
    }

    /// Inputs per row.
    pub fn cols(&self) -> usize {
        self.k
    }

    /// The kernels it runs.
    pub fn level(&self) -> Level {
        self.level
    }

    /// `x` (`m × k`, row-major) times the transposed matrix: `m × n`.
    pub fn matmul(&self, x: &[f32], m: usize) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "activations are m × k");
        match &self.tiles {
            Tiles::Q4K(t) => self.product(t, x, m),
            Tiles::Q6K(t) => self.product(t, x, m),
            Tiles::Q8_0(t) => self.product(t, x, m),
        }
    }

    /// [`QMatrix::matmul`] over tiles of one kind: tile columns spread over
    /// the threads, prompt rows in blocks that reuse a column.
    fn product<T: TileKind>(&self, tiles: &[T], x: &[f32], m: usize) -> Vec<f32> {
        let acts = quantize_rows::<T::Act>(x, m, self.k);
        let mut out = vec![0f32; m * self.n];
        let (kb, tiles_n) = (self.k / T::Act::VALUES, self.n / TILE_ROWS);
        let (out_ptr, acts_ptr) = (out.as_mut_ptr() as usize, acts.as_ptr() as usize);
        let run = |nt: usize, r0: usize, rows: usize| {
            let acts = (acts_ptr as *const T::Act).wrapping_add(r0 * kb);
            let out = (out_ptr as *mut f32).wrapping_add(r0 * self.n + nt * TILE_ROWS);
            // SAFETY: `new` checked the CPU and the shape; every (tile column,
            // row) slot of `out` is written by exactly one call.
            unsafe {
                column_dispatch(
                    self.level,
                    Column::at(tiles, nt, kb, acts, out, self.n),
                    rows,
                )
            }
        };
        let pool = candle_core::utils::barrier_pool();
        if m <= MAX_ROWS {
            pool.execute_chunked(tiles_n, |range| range.for_each(|nt| run(nt, 0, m)));
        } else {
            let blocks = m.div_ceil(ROW_BLOCK);
            pool.execute_chunked(blocks * tiles_n, |range| {
                for unit in range {
                    let (rb, nt) = (unit / tiles_n, unit % tiles_n);
                    let end = ((rb + 1) * ROW_BLOCK).min(m);
                    for r0 in (rb * ROW_BLOCK..end).step_by(MAX_ROWS) {
                        run(nt, r0, (end - r0).min(MAX_ROWS));
                    }
                }
            });
        }
        out
    }

    /// The same product in plain Rust over the packed tiles, exact in its
    /// integer sums: the reference the SIMD kernels are tested against.
    pub fn matmul_reference(&self, x: &[f32], m: usize) -> Vec<f32> {
        match &self.tiles {
            Tiles::Q4K(t) => self.reference(t, x, m),
            Tiles::Q6K(t) => self.reference(t, x, m),
            Tiles::Q8_0(t) => self.reference(t, x, m),
        }
    }

    fn reference<T: TileKind>(&self, tiles: &[T], x: &[f32], m: usize) -> Vec<f32> {
        let acts = quantize_rows::<T::Act>(x, m, self.k);
        let kb = self.k / T::Act::VALUES;
        let mut out = vec![0f32; m * self.n];
        for r in 0..m {
            let row_acts = &acts[r * kb..(r + 1) * kb];
            for o in 0..self.n {
                out[r * self.n + o] = T::reference(tiles, kb, o, row_acts);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn ggml(ty: WeightType) -> GgmlDType {
        match ty {
            WeightType::Q4K => GgmlDType::Q4K,
            WeightType::Q6K => GgmlDType::Q6K,
            WeightType::Q8_0 => GgmlDType::Q8_0,
        }
    }

    const TYPES: [WeightType; 3] = [WeightType::Q4K, WeightType::Q6K, WeightType::Q8_0];

    /// The activations as the kernels of `ty` see them (quantized, then
    /// multiplied back by their scales).
    fn seen_activations(ty: WeightType, x: &[f32], m: usize, k: usize) -> Vec<f64> {
        match ty {
            WeightType::Q8_0 => quantize_rows::<QBlock64>(x, m, k)
                .iter()
                .flat_map(|b| (0..64).map(|i| b.qs[i] as f64 * b.d[i / 32] as f64))
                .collect(),
            _ => quantize_rows::<QBlock>(x, m, k)
                .iter()
                .flat_map(|b| b.qs.iter().map(|&q| q as f64 * b.d as f64))
                .collect(),
        }
    }

    /// A matrix from deterministic pseudo-random weights in GGUF bytes, and
    /// its values dequantized by candle (an independent reading of the format).
    fn matrix(ty: WeightType, n: usize, k: usize) -> (Vec<u8>, Vec<f32>) {
        let w: Vec<f32> = (0..n * k)
            .map(|i| (((i * 2654435761) % 1000) as f32 / 500.0 - 1.0) * 0.1)
            .collect();
        let t = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, ggml(ty)).unwrap();
        let deq = q.dequantize(&Device::Cpu).unwrap();
        let deq = deq.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (q.data().unwrap().into_owned(), deq)
    }

    fn activations(m: usize, k: usize) -> Vec<f32> {
        (0..m * k)
            .map(|i| ((i * 7919 % 613) as f32 / 306.0 - 1.0) * 2.0)
            .collect()
    }

    /// The packed product against f64 over the dequantized weights and the
    /// dequantized activations: only float rounding may differ.
    #[test]
    fn packed_product_matches_the_dequantized_weights() {
        let (n, k, m) = (32, 512, 3);
        for ty in TYPES {
            let (gguf, w) = matrix(ty, n, k);
            let x = activations(m, k);
            let a = seen_activations(ty, &x, m, k);
            let mat = QMatrix::pack(Level::Avx2, ty, &gguf, n, k).unwrap();
            let got = mat.matmul_reference(&x, m);
            for r in 0..m {
                for o in 0..n {
                    let want: f64 = (0..k).map(|i| w[o * k + i] as f64 * a[r * k + i]).sum();
                    let g = got[r * n + o] as f64;
                    assert!(
                        (g - want).abs() < 1e-3 * (1.0 + want.abs()),
                        "{ty:?}: {g} vs {want}"
                    );
                }
            }
            assert!(
                QMatrix::pack(Level::Avx2, ty, &gguf[1..], n, k).is_none(),
                "short data"
            );
            assert!(
                QMatrix::pack(Level::Avx2, ty, &gguf, n, k + 1).is_none(),
                "untiled shape"
            );
            assert!(
                QMatrix::pack(Level::Avx2, ty, &gguf, n + 1, k).is_none(),
                "untiled rows"
            );
        }
    }

    /// Every SIMD kernel this CPU runs equals the reference for 1–4 rows and
    /// prompt-sized row counts, and a row's result is the same alone or among
    /// others.
    #[test]
    fn simd_kernels_match_the_reference() {
        let levels = [Level::Avx512Vnni, Level::Avx2];
        // Q8_0 also at SmolLM2's width, which is not a multiple of 256.
        let cases = TYPES
            .map(|ty| (ty, 48, 768))
            .into_iter()
            .chain([(WeightType::Q8_0, 32, 576)]);
        for ((ty, n, k), level) in cases.flat_map(|c| levels.map(|l| (c, l))) {
            let (gguf, _) = matrix(ty, n, k);
            let Some(mat) = QMatrix::with_level(level, ty, &gguf, n, k) else {
                // Without the features the caller must keep its own path.
                assert!(
                    !level.supported(),
                    "{level:?} is supported but gave no matrix"
                );
                eprintln!("{level:?}: not on this CPU");
                continue;
            };
            assert_eq!(
                QMatrix::new(ty, &gguf, n, k).unwrap().level(),
                Level::detect().unwrap()
            );
            for m in [1, 2, 3, 4, 5, 70] {
                let x = activations(m, k);
                let want = mat.matmul_reference(&x, m);
                let got = mat.matmul(&x, m);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{ty:?} {level:?} m={m}: {g} vs {w}"
                    );
                }
                let alone = mat.matmul(&x[(m - 1) * k..], 1);
                assert_eq!(
                    &got[(m - 1) * n..],
                    &alone[..],
                    "{ty:?} {level:?} m={m}: last row alone"
                );
            }
        }
    }
}

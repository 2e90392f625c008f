//! int8 products for an encoder's dense layers: `x · W` with `W` quantized
//! once at load to 8 bits per weight (one scale per output column) and each
//! row of `x` quantized on the fly to 8 bits (one scale per row).
//!
//! An encoder multiplies a whole batch of tokens by every weight matrix, so
//! unlike a decoding step it is bound by arithmetic, not by the bytes it
//! reads: the gain over f32 is four times the products per instruction.
//! Weights are packed in tiles of 16 output columns × 4 inputs (64 bytes), so
//! one AVX-512 VNNI `vpdpbusd` adds 4 products to each of 16 outputs; AVX2
//! takes the same tile in two halves through `vpmaddubsw`/`vpmaddwd`. A
//! kernel call holds up to [`ROWS`] activation rows against one tile column,
//! so each weight load serves all of them.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes: the weights are stored
//! shifted by 128 (unsigned), so the signed activations can be its broadcast
//! memory operand (`{1to16}`: one instruction per row and input group, no
//! separate broadcast), and the shift is taken back through each row's sum
//! of activations, exactly, in integers. The VNNI kernel also finishes the
//! layer in registers (scale, bias, residual, GELU) and writes each output
//! once, so the output buffer is never zeroed or pre-filled. AVX2's
//! `vpmaddubsw` would saturate on a shift, so it moves the sign of each
//! activation onto the weight instead (both then fit in 7 bits).
//!
//! [`I8Matrix::new`] returns `None` where no [`Level`] runs (the caller keeps
//! its f32 path); [`I8Matrix::matmul_reference`] is the same product in
//! plain Rust with exact integer sums, the kernels' reference in tests.

use std::mem::MaybeUninit;

use crate::quantized::Level;

/// Output columns per weight tile.
pub const TILE: usize = 16;
/// Activation rows per kernel call.
pub const ROWS: usize = 6;

/// A `k × n` weight matrix in int8 tiles, with the scales and column sums
/// the product needs.
pub struct I8Matrix {
    k: usize,
    /// `k` rounded up to a multiple of 4 (the padding weights are zero).
    kp: usize,
    n: usize,
    level: Level,
    /// Tile `t` holds columns `16t..16t+16`: `kp / 4` groups of 16 columns ×
    /// 4 inputs, input-minor. For AVX-512 VNNI each weight `q` is stored as
    /// the unsigned byte `q + 128`.
    tiles: Vec<i8>,
    scales: Vec<f32>,
}

/// Rows of activations quantized to int8, each padded to `kp` values.
pub struct I8Rows {
    kp: usize,
    values: Vec<i8>,
    scales: Vec<f32>,
    /// Σ of each row's quantized values (undoes the VNNI weight shift).
    sums: Vec<i32>,
}

impl I8Rows {
    /// Quantize the `m = x.len() / k` rows of `x` (row-major, `k` columns).
    pub fn quantize(x: &[f32], k: usize) -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512bw") {
            // SAFETY: AVX-512 F/BW are present.
            return Self::quantize_with(x, k, |row, q| unsafe { x86::quantize_row(row, q) });
        }
        Self::quantize_portable(x, k)
    }

    /// [`I8Rows::quantize`] in plain Rust: the same values, bit for bit.
    pub fn quantize_portable(x: &[f32], k: usize) -> Self {
        Self::quantize_with(x, k, quantize_row)
    }

    fn quantize_with(
        x: &[f32],
        k: usize,
        row_fn: impl Fn(&[f32], &mut [i8]) -> (f32, i32),
    ) -> Self {
        let kp = k.div_ceil(4) * 4;
        let m = x.len() / k.max(1);
        let mut values = vec![0i8; m * kp];
        let mut scales = Vec::with_capacity(m);
        let mut sums = Vec::with_capacity(m);
        for (row, q) in x.chunks_exact(k).zip(values.chunks_exact_mut(kp)) {
            let (scale, sum) = row_fn(row, &mut q[..k]);
            scales.push(scale);
            sums.push(sum);
        }
        I8Rows {
            kp,
            values,
            scales,
            sums,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.scales.len()
    }
}

/// What a dense layer adds to its product, and the activation after it.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// Added to every row (`n` values).
    pub bias: &'a [f32],
    /// Added too, row for row (as long as the output), when there is one.
    pub residual: Option<&'a [f32]>,
    /// GELU (tanh form) of the sum.
    pub gelu: bool,
}

/// Quantize one row into `q` (as long as the row): its scale and the sum of
/// its quantized values.
fn quantize_row(row: &[f32], q: &mut [i8]) -> (f32, i32) {
    let max = max_abs(row);
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let inv = 1.0 / scale;
    let mut sum = 0i32;
    for (q, v) in q.iter_mut().zip(row) {
        *q = round_to_i8(v * inv);
        sum += *q as i32;
    }
    (scale, sum)
}

/// The largest magnitude in `row`, in 16 lanes the compiler keeps in one
/// vector register (`f32::max` over one accumulator stays scalar: it must
/// order NaNs).
#[inline(always)]
fn max_abs(row: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = row.chunks_exact(16);
    let tail = chunks.remainder();
    for c in chunks {
        for (m, v) in lanes.iter_mut().zip(c) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let mut max = tail
        .iter()
        .fold(0f32, |m, v| if v.abs() > m { v.abs() } else { m });
    for m in lanes {
        max = if m > max { m } else { max };
    }
    max
}

/// `x` (within ±127.5) rounded to the nearest integer, ties to even: adding
/// and taking back 1.5·2²³ leaves no fraction bits, a form the compiler
/// vectorizes (`f32::round` is a library call per value).
#[inline(always)]
fn round_to_i8(x: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    ((x + MAGIC) - MAGIC) as i8
}

impl I8Matrix {
    /// Quantize `w`, a row-major `k × n` matrix (inputs × outputs). `None`
    /// when this CPU runs no int8 kernel or `n` is not a multiple of
    /// [`TILE`].
    pub fn new(w: &[f32], k: usize, n: usize) -> Option<Self> {
        let level = Level::detect()?;
        Self::with_level(w, k, n, level)
    }

    /// [`I8Matrix::new`] at a given level (`None` if this CPU lacks it).
    pub fn with_level(w: &[f32], k: usize, n: usize, level: Level) -> Option<Self> {
        if !level.supported() || n == 0 || !n.is_multiple_of(TILE) || w.len() != k * n {
            return None;
        }
        let kp = k.div_ceil(4) * 4;
        let mut scales = vec![1f32; n];
        for (j, s) in scales.iter_mut().enumerate() {
            let max = (0..k).fold(0f32, |a, i| a.max(w[i * n + j].abs()));
            if max > 0.0 {
                *s = max / 127.0;
            }
        }
        // Padding weights are zero: stored as 128 for VNNI.
        let shift = Self::weight_shift(level);
        let mut tiles = vec![(shift as u8) as i8; n * kp];
        for i in 0..k {
            for j in 0..n {
                let q = (w[i * n + j] / scales[j]).round().clamp(-127.0, 127.0) as i32;
                let (t, c) = (j / TILE, j % TILE);
                tiles[t * kp * TILE + (i / 4) * TILE * 4 + c * 4 + i % 4] = (q + shift) as u8 as i8;
            }
        }
        Some(I8Matrix {
            k,
            kp,
            n,
            level,
            tiles,
            scales,
        })
    }

    /// What is added to each stored weight (VNNI's unsigned operand).
    fn weight_shift(level: Level) -> i32 {
        if level == Level::Avx512Vnni {
            128
        } else {
            0
        }
    }

    /// The quantized weight of input `i`, column `c` of tile `tile`.
    fn weight(&self, tile: &[i8], i: usize, c: usize) -> i32 {
        let b = tile[(i / 4) * TILE * 4 + c * 4 + i % 4];
        if self.level == Level::Avx512Vnni {
            b as u8 as i32 - 128
        } else {
            b as i32
        }
    }

    /// Inputs.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Outputs.
    pub fn n(&self) -> usize {
        self.n
    }

    /// `out = x · W + bias (+ residual)`, then GELU if asked, for the
    /// quantized rows `x` (`out` is `rows × n`, row-major). Every value of
    /// `out` is written, so it may start uninitialised; it is returned
    /// initialised. The VNNI kernel does the whole epilogue in registers.
    ///
    /// # Panics
    /// If `x` was quantized for another `k`, `out` is not `rows × n`, the
    /// bias is not `n` long or the residual not as long as `out`.
    pub fn dense<'o>(
        &self,
        x: &I8Rows,
        epilogue: Epilogue,
        out: &'o mut [MaybeUninit<f32>],
    ) -> &'o mut [f32] {
        assert_eq!(x.kp, self.kp, "activations quantized for another width");
        assert_eq!(out.len(), x.rows() * self.n, "output is not rows × n");
        assert_eq!(epilogue.bias.len(), self.n, "bias is not n long");
        if let Some(r) = epilogue.residual {
            assert_eq!(r.len(), out.len(), "residual is not rows × n");
        }
        #[cfg(target_arch = "x86_64")]
        if self.level == Level::Avx512Vnni {
            self.dense_vnni(x, epilogue, out);
            // SAFETY: the kernel wrote every value of every tile column
            // of every row, and the tiles cover `n`.
            return unsafe { crate::elementwise::assume_init(out) };
        }
        let out = crate::elementwise::bias_rows(out, epilogue.bias, epilogue.residual);
        self.add_products(x, out);
        if epilogue.gelu {
            crate::elementwise::gelu_in_place(out);
        }
        out
    }

    /// [`I8Matrix::dense`] on the VNNI kernel, a block of up to [`ROWS`]
    /// rows against one tile column per call.
    #[cfg(target_arch = "x86_64")]
    fn dense_vnni(&self, x: &I8Rows, epilogue: Epilogue, out: &mut [MaybeUninit<f32>]) {
        for t in 0..self.n / TILE {
            let tile = &self.tiles[t * self.kp * TILE..(t + 1) * self.kp * TILE];
            let cols = t * TILE..(t + 1) * TILE;
            for r0 in (0..x.rows()).step_by(ROWS) {
                let rows = (x.rows() - r0).min(ROWS);
                let at = r0 * self.n + cols.start;
                let block = x86::Block {
                    tile: tile.as_ptr(),
                    acts: x.values[r0 * self.kp..(r0 + rows) * self.kp].as_ptr(),
                    kp: self.kp,
                    row_scales: &x.scales[r0..r0 + rows],
                    row_sums: &x.sums[r0..r0 + rows],
                    col_scales: &self.scales[cols.clone()],
                    bias: epilogue.bias[cols.clone()].as_ptr(),
                    residual: epilogue.residual.map(|r| r[at..].as_ptr()),
                    gelu: epilogue.gelu,
                    out: out[at..].as_mut_ptr().cast(),
                    stride: self.n,
                };
                // SAFETY: the CPU has AVX-512 VNNI (checked in `with_level`);
                // `tile` is kp·16 bytes, `acts` rows·kp; `out` and the
                // residual hold `rows` rows of `n` from column 16t on, and
                // the bias 16 values from there.
                unsafe { x86::block_vnni(&block, rows) };
            }
        }
    }

    /// `out += x · W`, through the kernels whose integer sums are scaled by
    /// [`I8Matrix::store`].
    fn add_products(&self, x: &I8Rows, out: &mut [f32]) {
        for t in 0..self.n / TILE {
            let tile = &self.tiles[t * self.kp * TILE..(t + 1) * self.kp * TILE];
            for r0 in (0..x.rows()).step_by(ROWS) {
                let rows = (x.rows() - r0).min(ROWS);
                let acts = &x.values[r0 * self.kp..(r0 + rows) * self.kp];
                let mut acc = [[0i32; TILE]; ROWS];
                // SAFETY: `level` was checked to be supported in `with_level`;
                // `tile` is kp·16 bytes and `acts` rows·kp.
                unsafe { self.dot(tile, acts, rows, &mut acc) };
                self.store(x, t, r0, rows, &acc, out);
            }
        }
    }

    /// The integer sums of one tile column with up to [`ROWS`] rows (the
    /// levels whose sums are scaled by [`I8Matrix::store`]).
    ///
    /// # Safety
    /// The CPU has `self.level`; `tile` is `kp·16` and `acts` `rows·kp` long.
    unsafe fn dot(&self, tile: &[i8], acts: &[i8], rows: usize, acc: &mut [[i32; TILE]; ROWS]) {
        #[cfg(target_arch = "x86_64")]
        x86::dot_avx2(tile, acts, self.kp, rows, acc);
        #[cfg(not(target_arch = "x86_64"))]
        dot_portable(tile, acts, self.kp, rows, acc);
    }

    /// Scale tile `t`'s sums into `out` (adding).
    fn store(
        &self,
        x: &I8Rows,
        t: usize,
        r0: usize,
        rows: usize,
        acc: &[[i32; TILE]; ROWS],
        out: &mut [f32],
    ) {
        let cols = t * TILE..(t + 1) * TILE;
        let scales = &self.scales[cols.clone()];
        for (r, acc) in acc.iter().enumerate().take(rows) {
            let sx = x.scales[r0 + r];
            let o = &mut out[(r0 + r) * self.n + cols.start..][..TILE];
            for ((o, a), sw) in o.iter_mut().zip(acc).zip(scales) {
                *o += sx * sw * *a as f32;
            }
        }
    }

    /// `out += x · W` in plain Rust with exact integer sums: the kernels
    /// must give the same values.
    pub fn matmul_reference(&self, x: &I8Rows, out: &mut [f32]) {
        for (r, o) in out.chunks_exact_mut(self.n).enumerate() {
            let row = &x.values[r * self.kp..(r + 1) * self.kp];
            for (j, o) in o.iter_mut().enumerate() {
                let (t, c) = (j / TILE, j % TILE);
                let tile = &self.tiles[t * self.kp * TILE..];
                let sum: i32 = (0..self.kp)
                    .map(|i| row[i] as i32 * self.weight(tile, i, c))
                    .sum();
                *o += x.scales[r] * self.scales[j] * sum as f32;
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn dot_portable(tile: &[i8], acts: &[i8], kp: usize, rows: usize, acc: &mut [[i32; TILE]; ROWS]) {
    let _ = (tile, acts, kp, rows, acc);
    unreachable!("no int8 kernel on this architecture");
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ROWS, TILE};
    use std::arch::x86_64::*;

    /// The four activations of row `r` at input group `g`, as one i32.
    ///
    /// # Safety
    /// `acts` covers row `r` of `kp` values.
    #[inline(always)]
    unsafe fn quad(acts: *const i8, kp: usize, r: usize, g: usize) -> i32 {
        std::ptr::read_unaligned(acts.add(r * kp + g * 4) as *const i32)
    }

    /// Run `$kernel::<R>` for `rows` (1..=ROWS) rows, so each row count gets
    /// its accumulators in registers.
    macro_rules! by_rows {
        ($kernel:ident, $rows:expr, $($arg:expr),*) => {
            match $rows {
                1 => $kernel::<1>($($arg),*),
                2 => $kernel::<2>($($arg),*),
                3 => $kernel::<3>($($arg),*),
                4 => $kernel::<4>($($arg),*),
                5 => $kernel::<5>($($arg),*),
                _ => $kernel::<6>($($arg),*),
            }
        };
    }

    /// [`super::quantize_row`] with AVX-512: the largest magnitude, then
    /// each value times `1/scale` rounded to the nearest (ties to even, as
    /// `cvtps2dq` does by default) and saturated to i8.
    ///
    /// # Safety
    /// AVX-512 F/BW; `q` is as long as `row`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_row(row: &[f32], q: &mut [i8]) -> (f32, i32) {
        let n = row.len();
        let tail = (n % 16) as u32;
        let tail_mask: __mmask16 = ((1u32 << tail) - 1) as u16;
        let p = row.as_ptr();
        let mut max = _mm512_setzero_ps();
        for i in (0..n - n % 16).step_by(16) {
            max = _mm512_max_ps(max, _mm512_abs_ps(_mm512_loadu_ps(p.add(i))));
        }
        let last = _mm512_maskz_loadu_ps(tail_mask, p.add(n - n % 16));
        max = _mm512_max_ps(max, _mm512_abs_ps(last));
        let max = _mm512_reduce_max_ps(max);
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let inv = _mm512_set1_ps(1.0 / scale);
        let mut sum = _mm512_setzero_si512();
        let mut i = 0;
        while i < n {
            let mask = if n - i >= 16 { 0xffff } else { tail_mask };
            let v = _mm512_maskz_loadu_ps(mask, p.add(i));
            let r = _mm512_cvtps_epi32(_mm512_mul_ps(v, inv));
            sum = _mm512_add_epi32(sum, r);
            _mm512_mask_cvtsepi32_storeu_epi8(q.as_mut_ptr().add(i) as *mut _, mask, r);
            i += 16;
        }
        (scale, _mm512_reduce_add_epi32(sum))
    }

    /// One VNNI kernel call: a tile column (16 outputs) against up to
    /// [`ROWS`] rows, written to `out` with the layer's epilogue.
    pub(super) struct Block<'a> {
        /// The tile: `kp / 4` groups of 64 bytes (weights + 128).
        pub tile: *const i8,
        /// The rows' quantized activations, `kp` each.
        pub acts: *const i8,
        pub kp: usize,
        pub row_scales: &'a [f32],
        pub row_sums: &'a [i32],
        /// The 16 columns' scales.
        pub col_scales: &'a [f32],
        /// The 16 columns' bias.
        pub bias: *const f32,
        /// Row 0, column 0 of the block in the residual (rows `stride`
        /// apart, as in `out`), when there is one.
        pub residual: Option<*const f32>,
        /// GELU of the result.
        pub gelu: bool,
        /// Row 0, column 0 of the block in the output.
        pub out: *mut f32,
        /// Output row length.
        pub stride: usize,
    }

    /// `out[r][c] = sx[r]·sw[c]·(Σ (w+128)·x − 128·Σx) + bias[c] (+ res[r][c])`
    /// for the block's rows, then GELU if asked.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI; the block's pointers cover `rows` rows.
    pub(super) unsafe fn block_vnni(b: &Block<'_>, rows: usize) {
        by_rows!(vnni, rows, b)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn vnni<const R: usize>(b: &Block<'_>) {
        let (w, a, kp) = (b.tile, b.acts, b.kp);
        let mut sums = [_mm512_setzero_si512(); R];
        for g in 0..kp / 4 {
            let wv = _mm512_loadu_si512(w.add(g * 64) as *const _);
            for (r, s) in sums.iter_mut().enumerate() {
                // A broadcast the compiler folds into the instruction.
                let x = _mm512_set1_epi32(quad(a, kp, r, g));
                *s = _mm512_dpbusd_epi32(*s, wv, x);
            }
        }
        let sw = _mm512_loadu_ps(b.col_scales.as_ptr());
        let bias = _mm512_loadu_ps(b.bias);
        for (r, s) in sums.iter().enumerate() {
            let exact = _mm512_sub_epi32(*s, _mm512_set1_epi32(128 * b.row_sums[r]));
            let scale = _mm512_mul_ps(sw, _mm512_set1_ps(b.row_scales[r]));
            let base = match b.residual {
                Some(res) => _mm512_add_ps(bias, _mm512_loadu_ps(res.add(r * b.stride))),
                None => bias,
            };
            let mut v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, base);
            if b.gelu {
                v = gelu(v);
            }
            _mm512_storeu_ps(b.out.add(r * b.stride), v);
        }
    }

    /// [`crate::elementwise::gelu_tanh`] of 16 values.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn gelu(x: __m512) -> __m512 {
        let c = |v: f32| _mm512_set1_ps(v);
        let u = _mm512_mul_ps(
            c(0.797_884_6),
            _mm512_fmadd_ps(_mm512_mul_ps(c(0.044715), x), _mm512_mul_ps(x, x), x),
        );
        let t = _mm512_min_ps(_mm512_max_ps(u, c(-9.0)), c(9.0));
        let t2 = _mm512_mul_ps(t, t);
        let p = _mm512_fmadd_ps(t2, _mm512_add_ps(t2, c(378.0)), c(17325.0));
        let p = _mm512_mul_ps(t, _mm512_fmadd_ps(t2, p, c(135_135.0)));
        let q = _mm512_fmadd_ps(t2, c(28.0), c(3150.0));
        let q = _mm512_fmadd_ps(t2, _mm512_fmadd_ps(t2, q, c(62370.0)), c(135_135.0));
        let th = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(p, q), c(-1.0)), c(1.0));
        _mm512_mul_ps(_mm512_mul_ps(c(0.5), x), _mm512_add_ps(c(1.0), th))
    }

    /// The same with AVX2: each half tile (8 columns) through
    /// `vpmaddubsw(|x|, sign(w, x))` and `vpmaddwd` with ones.
    ///
    /// # Safety
    /// AVX2; `tile` is `kp·16` bytes, `acts` `rows·kp`.
    pub(super) unsafe fn dot_avx2(
        tile: &[i8],
        acts: &[i8],
        kp: usize,
        rows: usize,
        acc: &mut [[i32; TILE]; ROWS],
    ) {
        for half in 0..2 {
            let w = tile.as_ptr().add(half * 32);
            by_rows!(avx2, rows, w, acts.as_ptr(), kp, half, acc)
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn avx2<const R: usize>(
        w: *const i8,
        a: *const i8,
        kp: usize,
        half: usize,
        acc: &mut [[i32; TILE]; ROWS],
    ) {
        let ones = _mm256_set1_epi16(1);
        let mut sums = [_mm256_setzero_si256(); R];
        for g in 0..kp / 4 {
            let wv = _mm256_loadu_si256(w.add(g * 64) as *const _);
            for (r, s) in sums.iter_mut().enumerate() {
                let x = _mm256_set1_epi32(quad(a, kp, r, g));
                let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(wv, x));
                *s = _mm256_add_epi32(*s, _mm256_madd_epi16(pairs, ones));
            }
        }
        for (s, out) in sums.iter().zip(acc.iter_mut()) {
            _mm256_storeu_si256(out[half * 8..].as_mut_ptr() as *mut _, *s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn levels() -> Vec<Level> {
        [Level::Avx512Vnni, Level::Avx2]
            .into_iter()
            .filter(|l| l.supported())
            .collect()
    }

    /// Every level gives the reference's values, for row counts that fill a
    /// kernel call, leave a remainder, and widths that need padding, with
    /// and without a residual and GELU.
    #[test]
    fn kernels_match_the_exact_reference() {
        for level in levels() {
            for (m, k, n) in [(1, 384, 16), (7, 37, 32), (13, 1536, 48), (6, 4, 16)] {
                let w = random(k * n, 1);
                let x = random(m * k, 2);
                let bias = random(n, 3);
                let res = random(m * n, 4);
                let a = I8Matrix::with_level(&w, k, n, level).unwrap();
                let q = I8Rows::quantize(&x, k);
                for (residual, gelu) in [(None, false), (Some(&res[..]), false), (None, true)] {
                    let epilogue = Epilogue {
                        bias: &bias,
                        residual,
                        gelu,
                    };
                    let mut out = vec![MaybeUninit::uninit(); m * n];
                    let fast = a.dense(&q, epilogue, &mut out);
                    let mut slow: Vec<f32> = (0..m * n)
                        .map(|i| bias[i % n] + residual.map_or(0.0, |r| r[i]))
                        .collect();
                    a.matmul_reference(&q, &mut slow);
                    if gelu {
                        crate::elementwise::gelu_in_place(&mut slow);
                    }
                    for (f, s) in fast.iter().zip(&slow) {
                        assert!(
                            (f - s).abs() <= 1e-4 * s.abs().max(1.0),
                            "{level:?} {m}x{k}x{n} {epilogue:?}: {f} vs {s}"
                        );
                    }
                }
            }
        }
    }

    /// The VNNI kernel's GELU, in registers, is the scalar one, including
    /// where the tanh saturates.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn gelu_in_registers_is_the_scalar_gelu() {
        use std::arch::x86_64::*;
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return; // No AVX-512 kernel on this CPU: nothing to compare.
        }
        for i in (-1000..1000).step_by(16) {
            let xs: [f32; 16] = std::array::from_fn(|j| (i + j as i32) as f32 / 50.0);
            let mut ys = [0f32; 16];
            // SAFETY: AVX-512 F is present (checked above).
            unsafe { _mm512_storeu_ps(ys.as_mut_ptr(), x86::gelu(_mm512_loadu_ps(xs.as_ptr()))) };
            for (x, y) in xs.iter().zip(ys) {
                let want = crate::elementwise::gelu_tanh(*x);
                assert!(
                    (y - want).abs() <= 1e-6 * want.abs().max(1.0),
                    "{x}: {y} vs {want}"
                );
            }
        }
    }

    /// The int8 product stays close to the f32 one (relative to the size of
    /// the outputs).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn int8_product_is_close_to_f32() {
        let level = levels()[0];
        let (m, k, n) = (9, 384, 64);
        let (w, x) = (random(k * n, 3), random(m * k, 4));
        let a = I8Matrix::with_level(&w, k, n, level).unwrap();
        let zero = vec![0f32; n];
        let epilogue = Epilogue {
            bias: &zero,
            residual: None,
            gelu: false,
        };
        let mut out = vec![MaybeUninit::uninit(); m * n];
        let out = a.dense(&I8Rows::quantize(&x, k), epilogue, &mut out);
        let (mut err, mut norm) = (0f32, 0f32);
        for r in 0..m {
            for j in 0..n {
                let exact: f32 = (0..k).map(|i| x[r * k + i] * w[i * n + j]).sum();
                err += (out[r * n + j] - exact).powi(2);
                norm += exact.powi(2);
            }
        }
        assert!(
            (err / norm).sqrt() < 0.02,
            "relative error {}",
            (err / norm).sqrt()
        );
    }

    /// The AVX-512 quantization gives the plain Rust values bit for bit,
    /// for widths with and without a partial vector, and rows of zeros.
    #[test]
    fn quantization_is_the_same_on_every_path() {
        for k in [1, 5, 16, 37, 384, 1536] {
            let mut x = random(3 * k, k as u64);
            x[k..2 * k].fill(0.0);
            let (fast, slow) = (I8Rows::quantize(&x, k), I8Rows::quantize_portable(&x, k));
            assert_eq!(fast.values, slow.values, "k {k}");
            assert_eq!(fast.scales, slow.scales, "k {k}");
            assert_eq!(fast.sums, slow.sums, "k {k}");
        }
    }

    #[test]
    fn shapes_the_kernels_cannot_tile_are_refused() {
        assert!(I8Matrix::with_level(&[0.0; 8 * 10], 8, 10, Level::Avx2).is_none());
        assert!(I8Matrix::with_level(&[0.0; 7], 8, 16, Level::Avx2).is_none());
    }
}

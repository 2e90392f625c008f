//! Activations quantized to 8 bits: per 256-value block for the k-quants,
//! per 32 values (two to a block) for Q8_0.

use super::BLOCK;

/// A block of quantized activations, as one tile kind consumes them.
pub trait Acts: Copy + Send + Sync {
    /// Values per block.
    const VALUES: usize;
    /// The block of zeros.
    const ZERO: Self;
    /// Quantize `VALUES` values.
    fn quantize(x: &[f32]) -> Self;
}

impl Acts for QBlock {
    const VALUES: usize = BLOCK;
    const ZERO: Self = QBlock::ZERO;
    fn quantize(x: &[f32]) -> Self {
        QBlock::quantize(x)
    }
}

/// One block of 256 activations: `x ≈ d · qs`, with the sums of each 32
/// quants packed two to an `i32` (low half: even sub-block) for `vpdpwssd`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub struct QBlock {
    /// Quants in -127..=127.
    pub qs: [i8; BLOCK],
    /// Scale.
    pub d: f32,
    /// Sums of 32-quant sub-blocks (2p, 2p+1) as two i16 in one i32 (Q4_K's mins).
    pub sum_pairs: [i32; 4],
    /// Sums of each 16 quants (Q6_K's offset of 32).
    pub sum16: [i32; 16],
}

impl QBlock {
    const ZERO: QBlock = QBlock {
        qs: [0; BLOCK],
        d: 0.0,
        sum_pairs: [0; 4],
        sum16: [0; 16],
    };

    /// Quantize 256 values: the largest magnitude maps to 127, halves round
    /// to even (as the SIMD path does).
    pub fn quantize(x: &[f32]) -> QBlock {
        #[cfg(target_arch = "x86_64")]
        if super::Level::Avx512Vnni.supported() {
            // SAFETY: the CPU has the features; `x` holds 256 values.
            return unsafe { avx512::quantize(x) };
        }
        Self::quantize_portable(x)
    }

    fn quantize_portable(x: &[f32]) -> QBlock {
        debug_assert_eq!(x.len(), BLOCK);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        let mut b = QBlock::ZERO;
        if amax == 0.0 || !amax.is_finite() {
            return b;
        }
        let id = 127.0 / amax;
        for (q, v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
        }
        b.d = amax / 127.0;
        for (s, chunk) in b.sum16.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = chunk.iter().map(|&q| q as i32).sum();
        }
        b.pair_sums();
        b
    }

    /// Fill `sum_pairs` from `sum16`.
    fn pair_sums(&mut self) {
        let sums: [i32; 8] = std::array::from_fn(|s| self.sum16[2 * s] + self.sum16[2 * s + 1]);
        for (p, pair) in self.sum_pairs.iter_mut().enumerate() {
            *pair = (sums[2 * p] as u16 as u32 | ((sums[2 * p + 1] as u16 as u32) << 16)) as i32;
        }
    }

    /// The sum of sub-block `s`'s quants.
    pub fn sub_sum(&self, s: usize) -> i32 {
        let pair = self.sum_pairs[s / 2] as u32;
        (if s.is_multiple_of(2) {
            pair as u16
        } else {
            (pair >> 16) as u16
        }) as i16 as i32
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{QBlock, QBlock64, BLOCK};
    use core::arch::x86_64::*;

    /// [`QBlock::quantize`] with AVX-512: 16 values per step.
    ///
    /// # Safety
    /// AVX-512 F/BW; `x` holds at least 256 values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize(x: &[f32]) -> QBlock {
        assert!(x.len() >= BLOCK);
        let p = x.as_ptr();
        let mut mx = _mm512_setzero_ps();
        for i in 0..BLOCK / 16 {
            mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(p.add(16 * i))));
        }
        let amax = _mm512_reduce_max_ps(mx);
        let mut b = QBlock::ZERO;
        if amax == 0.0 || !amax.is_finite() {
            return b;
        }
        let id = _mm512_set1_ps(127.0 / amax);
        let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
        for i in 0..BLOCK / 16 {
            let v = _mm512_mul_ps(_mm512_loadu_ps(p.add(16 * i)), id);
            // Round to nearest even (the default rounding mode).
            let q = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(v), lo), hi);
            b.sum16[i] = _mm512_reduce_add_epi32(q);
            _mm_storeu_si128(
                b.qs.as_mut_ptr().add(16 * i) as *mut _,
                _mm512_cvtepi32_epi8(q),
            );
        }
        b.d = amax / 127.0;
        b.pair_sums();
        b
    }

    /// [`QBlock64`]'s quantization with AVX-512: each half is two vectors.
    ///
    /// # Safety
    /// AVX-512 F/BW; `x` holds at least 64 values.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize64(x: &[f32]) -> QBlock64 {
        assert!(x.len() >= 64);
        let mut b = <QBlock64 as super::Acts>::ZERO;
        let (lo, hi) = (_mm512_set1_epi32(-127), _mm512_set1_epi32(127));
        for h in 0..2 {
            let p = x.as_ptr().add(32 * h);
            let v = [_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(16))];
            let amax =
                _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
            if amax == 0.0 || !amax.is_finite() {
                continue;
            }
            let id = _mm512_set1_ps(127.0 / amax);
            let mut sum = _mm512_setzero_si512();
            for (i, v) in v.into_iter().enumerate() {
                let q = _mm512_cvtps_epi32(_mm512_mul_ps(v, id));
                let q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
                sum = _mm512_add_epi32(sum, q);
                _mm_storeu_si128(
                    b.qs.as_mut_ptr().add(32 * h + 16 * i) as *mut _,
                    _mm512_cvtepi32_epi8(q),
                );
            }
            b.d[h] = amax / 127.0;
            b.sum[h] = _mm512_reduce_add_epi32(sum);
        }
        b
    }
}

/// 64 activations quantized in two halves of 32 (`x ≈ d[h] · qs`), the
/// blocks of a Q8_0 tile, with each half's sum for the kernel's offset.
#[derive(Clone, Copy)]
#[repr(C, align(16))]
pub struct QBlock64 {
    /// Quants in -127..=127.
    pub qs: [i8; 64],
    /// Each half's scale.
    pub d: [f32; 2],
    /// Each half's sum of quants.
    pub sum: [i32; 2],
}

impl Acts for QBlock64 {
    const VALUES: usize = 64;
    const ZERO: Self = QBlock64 {
        qs: [0; 64],
        d: [0.0; 2],
        sum: [0; 2],
    };

    /// Each half's largest magnitude maps to 127; halves round to even (as
    /// the SIMD path does, to the bit).
    fn quantize(x: &[f32]) -> Self {
        #[cfg(target_arch = "x86_64")]
        if super::Level::Avx512Vnni.supported() {
            // SAFETY: the CPU has the features; `x` holds 64 values.
            return unsafe { avx512::quantize64(x) };
        }
        Self::quantize_portable(x)
    }
}

impl QBlock64 {
    fn quantize_portable(x: &[f32]) -> Self {
        assert!(x.len() >= 64);
        let mut b = Self::ZERO;
        for h in 0..2 {
            let xs = &x[32 * h..32 * h + 32];
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            if amax == 0.0 || !amax.is_finite() {
                continue;
            }
            let id = 127.0 / amax;
            for (q, v) in b.qs[32 * h..32 * h + 32].iter_mut().zip(xs) {
                *q = (v * id).round_ties_even().clamp(-127.0, 127.0) as i8;
            }
            b.d[h] = amax / 127.0;
            b.sum[h] = b.qs[32 * h..32 * h + 32].iter().map(|&q| q as i32).sum();
        }
        b
    }
}

/// Quantize `m` rows of `k` values (`k` a multiple of the block), spreading
/// rows over candle's worker threads when there are several.
pub fn quantize_rows<A: Acts>(x: &[f32], m: usize, k: usize) -> Vec<A> {
    let kb = k / A::VALUES;
    let mut out = vec![A::ZERO; m * kb];
    let quantize_row = |r: usize, dst: &mut [A]| {
        for (b, q) in dst.iter_mut().enumerate() {
            let at = r * k + b * A::VALUES;
            *q = A::quantize(&x[at..at + A::VALUES]);
        }
    };
    if m == 1 {
        quantize_row(0, &mut out);
        return out;
    }
    let ptr = out.as_mut_ptr() as usize;
    candle_core::utils::barrier_pool().execute_chunked(m, |rows| {
        for r in rows {
            // SAFETY: each row's blocks are written by exactly one task.
            let dst = unsafe { std::slice::from_raw_parts_mut((ptr as *mut A).add(r * kb), kb) };
            quantize_row(r, dst);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_block_reproduces_its_values_and_sums() {
        let x: Vec<f32> = (0..BLOCK)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let b = QBlock::quantize(&x);
        for (q, v) in b.qs.iter().zip(&x) {
            assert!((*q as f32 * b.d - v).abs() <= b.d * 0.5 + 1e-6);
        }
        for s in 0..8 {
            let sum: i32 = b.qs[s * 32..(s + 1) * 32].iter().map(|&q| q as i32).sum();
            assert_eq!(b.sub_sum(s), sum);
            assert_eq!(b.sum16[2 * s] + b.sum16[2 * s + 1], sum);
        }
        assert!(b.qs.iter().any(|&q| q == 127 || q == -127));
        let zero = QBlock::quantize(&[0.0; BLOCK]);
        assert_eq!(zero.d, 0.0);
        // The SIMD and portable paths agree to the bit.
        let p = QBlock::quantize_portable(&x);
        assert_eq!(
            (p.qs, p.d, p.sum_pairs, p.sum16),
            (b.qs, b.d, b.sum_pairs, b.sum16)
        );
    }

    #[test]
    fn halves_of_a_q8_0_block_have_their_own_scale_and_sum() {
        // The second half ten times larger than the first, and one all-zero
        // block's worth of halves.
        let x: Vec<f32> = (0..64)
            .map(|i| ((i * 29 % 67) as f32 - 33.0) / if i < 32 { 30.0 } else { 3.0 })
            .collect();
        let b = QBlock64::quantize(&x);
        for h in 0..2 {
            let qs = &b.qs[32 * h..32 * h + 32];
            for (q, v) in qs.iter().zip(&x[32 * h..]) {
                assert!((*q as f32 * b.d[h] - v).abs() <= b.d[h] * 0.5 + 1e-6);
            }
            assert!(qs.iter().any(|&q| q == 127 || q == -127), "half {h}");
            assert_eq!(b.sum[h], qs.iter().map(|&q| q as i32).sum::<i32>());
        }
        assert!(b.d[1] > 5.0 * b.d[0]);
        let p = QBlock64::quantize_portable(&x);
        assert_eq!((p.qs, p.d, p.sum), (b.qs, b.d, b.sum));
        let mut half_zero = x.clone();
        half_zero[..32].fill(0.0);
        let z = QBlock64::quantize(&half_zero);
        assert_eq!((z.d[0], z.sum[0]), (0.0, 0));
        assert_eq!(z.qs[32..], b.qs[32..]);
    }
}

//! Activations quantized to 8 bits per 256-value block.

use super::BLOCK;

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
    use super::{QBlock, BLOCK};
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
}

/// Quantize `m` rows of `k` values (`k` a multiple of 256), spreading rows over
/// candle's worker threads when there are several.
pub fn quantize_rows(x: &[f32], m: usize, k: usize) -> Vec<QBlock> {
    let kb = k / BLOCK;
    let mut out = vec![QBlock::ZERO; m * kb];
    let quantize_row = |r: usize, dst: &mut [QBlock]| {
        for (b, q) in dst.iter_mut().enumerate() {
            *q = QBlock::quantize(&x[r * k + b * BLOCK..r * k + (b + 1) * BLOCK]);
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
            let dst =
                unsafe { std::slice::from_raw_parts_mut((ptr as *mut QBlock).add(r * kb), kb) };
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
}

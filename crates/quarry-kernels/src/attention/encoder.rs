//! Bidirectional self-attention of an encoder (BERT, XLM-RoBERTa): one
//! sequence's one head, read in place from the fused query/key/value rows a
//! single dense layer produced.
//!
//! The head's keys are copied once, transposed (`[value][position]`, zero
//! past the sequence), so a query's scores against every key are `head_dim`
//! multiply-adds of whole vectors with no horizontal sums; the softmax's
//! exponentials are a polynomial eight or sixteen at a time; the values are
//! copied once into consecutive rows for the weighted sums (in the fused
//! rows their stride maps them onto a few cache sets). Every score is computed
//! (there is no mask: the caller passes real tokens only). The general
//! matrix product this replaces spent more time packing its 32-wide operands
//! than multiplying them, and the softmax around it was scalar `expf`.

use super::{exp_in_place, Level};

/// Positions scored together: the transposed keys are padded to a multiple.
const LANES: usize = 32;
/// Query rows handled together: each key and value row read from cache
/// serves all of them, and their sums are independent chains the CPU
/// overlaps.
const ROWS: usize = 4;

/// The rows of fused QKV a call reads: row `r` holds the queries, keys and
/// values of all heads (`3 · heads · head_dim` values).
#[derive(Debug, Clone, Copy)]
pub struct Fused<'a> {
    /// `(rows, 3 · heads · head_dim)`, row-major.
    pub qkv: &'a [f32],
    /// Attention heads.
    pub heads: usize,
    /// Values per head.
    pub head_dim: usize,
}

/// Buffers one thread reuses from call to call.
#[derive(Debug, Default)]
pub struct Scratch {
    kt: Vec<f32>,
    /// The head's values, one row after another (`[position][value]`): in
    /// the fused rows they lie `3 · heads · head_dim` apart, a stride that
    /// maps them onto a few cache sets, which the weighted sums thrash.
    v: Vec<f32>,
    /// A block's queries, scaled and interleaved `[value][row]`.
    q: Vec<[f32; ROWS]>,
    scores: Vec<f32>,
    /// The last call's context: `len` rows of `head_dim` values.
    pub out: Vec<f32>,
}

/// Attention of head `head` over the sequence at rows `start..start + len`
/// of `fused`, scaled by `1/√head_dim`; the context (`len × head_dim`,
/// row-major) is left in `scratch.out`.
///
/// # Panics
/// If the rows lie outside `fused.qkv` or `head` is not below `heads`.
pub fn sequence_head(fused: Fused, start: usize, len: usize, head: usize, scratch: &mut Scratch) {
    let (dh, d) = (fused.head_dim, fused.heads * fused.head_dim);
    assert!(head < fused.heads, "head {head} of {}", fused.heads);
    assert!(
        (start + len) * 3 * d <= fused.qkv.len(),
        "rows {start}..{} outside the fused QKV",
        start + len
    );
    let padded = len.next_multiple_of(LANES);
    scratch.kt.clear();
    scratch.kt.resize(dh * padded, 0.0);
    for j in 0..len {
        let key = &fused.qkv[(start + j) * 3 * d + d + head * dh..][..dh];
        for (c, &x) in key.iter().enumerate() {
            scratch.kt[c * padded + j] = x;
        }
    }
    scratch.v.clear();
    for j in 0..len {
        let at = (start + j) * 3 * d + 2 * d + head * dh;
        scratch.v.extend_from_slice(&fused.qkv[at..at + dh]);
    }
    scratch.scores.clear();
    scratch.scores.resize(ROWS * padded, 0.0);
    scratch.out.clear();
    scratch.out.resize(len * dh, 0.0);
    let task = Task {
        fused,
        start,
        len,
        head,
        padded,
    };
    match Level::detect() {
        // SAFETY: `detect` checked that the CPU has these features.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { run_avx512(&task, scratch) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { run_avx2(&task, scratch) },
        // SAFETY: plain scalar arithmetic.
        _ => unsafe { task.run::<Scalar>(scratch) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(task: &Task, scratch: &mut Scratch) {
    // SAFETY: the caller checked the features `x86::Zmm` needs.
    unsafe { task.run::<x86::Zmm>(scratch) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(task: &Task, scratch: &mut Scratch) {
    // SAFETY: the caller checked the features `x86::Ymm` needs.
    unsafe { task.run::<x86::Ymm>(scratch) }
}

/// The few vector operations the kernel needs, so one body serves AVX-512,
/// AVX2 and plain Rust.
///
/// # Safety
/// Implementations may use instructions the CPU must have: callers run them
/// only inside functions compiled for (and dispatched to) those features.
unsafe trait Vector: Copy {
    /// f32 values per vector.
    const LANES: usize;
    /// All zeros.
    unsafe fn zero() -> Self;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self;
    /// `LANES` values from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self;
    /// Write the lanes to `p` (unaligned).
    unsafe fn store(self, p: *mut f32);
    /// `a · b + c`, fused where the CPU can.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
}

/// One value at a time, for CPUs without the x86 kernels.
#[derive(Clone, Copy)]
struct Scalar(f32);

// SAFETY: plain Rust.
unsafe impl Vector for Scalar {
    const LANES: usize = 1;
    unsafe fn zero() -> Self {
        Scalar(0.0)
    }
    unsafe fn splat(x: f32) -> Self {
        Scalar(x)
    }
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller passes a readable value.
        Scalar(unsafe { *p })
    }
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller passes a writable value.
        unsafe { *p = self.0 }
    }
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Scalar(a.0 * b.0 + c.0)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Vector;
    use std::arch::x86_64::*;

    /// Sixteen f32 lanes (AVX-512 F).
    #[derive(Clone, Copy)]
    pub(super) struct Zmm(__m512);

    // SAFETY: used only under `run_avx512`, after the CPU was checked.
    unsafe impl Vector for Zmm {
        const LANES: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Zmm(unsafe { _mm512_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Zmm(unsafe { _mm512_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Zmm(unsafe { _mm512_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Zmm(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }
    }

    /// Eight f32 lanes (AVX2 with FMA).
    #[derive(Clone, Copy)]
    pub(super) struct Ymm(__m256);

    // SAFETY: used only under `run_avx2`/`run_avx512`, after the CPU was checked.
    unsafe impl Vector for Ymm {
        const LANES: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Ymm(unsafe { _mm256_setzero_ps() })
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            Ymm(unsafe { _mm256_set1_ps(x) })
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Ymm(unsafe { _mm256_loadu_ps(p) })
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Ymm(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }
    }
}

/// One call's shape, with its keys already transposed into the scratch.
struct Task<'a> {
    fused: Fused<'a>,
    start: usize,
    len: usize,
    head: usize,
    padded: usize,
}

impl Task<'_> {
    /// This head's query of row `r` of the sequence.
    #[inline(always)]
    fn query(&self, r: usize) -> &[f32] {
        let (dh, d) = (self.fused.head_dim, self.fused.heads * self.fused.head_dim);
        &self.fused.qkv[(self.start + r) * 3 * d + self.head * dh..][..dh]
    }

    /// # Safety
    /// `V`'s instructions must be available (see [`Vector`]).
    #[inline(always)]
    unsafe fn run<V: Vector>(&self, scratch: &mut Scratch) {
        let dh = self.fused.head_dim;
        let Scratch {
            kt,
            v,
            q,
            scores,
            out,
        } = scratch;
        for i0 in (0..self.len).step_by(ROWS) {
            let n = ROWS.min(self.len - i0);
            // Past the end, the last row again: computed, never written.
            let rows: [usize; ROWS] = std::array::from_fn(|r| i0 + r.min(n - 1));
            // SAFETY: as this function.
            unsafe { self.scores_of::<V>(rows, kt, q, scores) };
            let mut inv = [0f32; ROWS];
            for (r, inv) in inv.iter_mut().enumerate() {
                *inv = 1.0 / softmax_in_place(&mut scores[r * self.padded..][..self.len]);
            }
            let ctx = &mut out[i0 * dh..(i0 + n) * dh];
            let width = 2 * V::LANES;
            let mut c0 = 0;
            while c0 + width <= dh {
                // SAFETY: as this function; columns c0..c0 + width exist.
                unsafe { self.weighted_values::<V>(v, scores, c0, &inv, ctx) };
                c0 += width;
            }
            if c0 < dh {
                self.weighted_values_tail(v, scores, c0, &inv, ctx);
            }
        }
    }

    /// `scores[r][j] = scale · q_rows[r] · key_j` for every (padded) position,
    /// two vectors of positions at a time with the sums held in registers.
    ///
    /// # Safety
    /// As [`Self::run`].
    #[inline(always)]
    unsafe fn scores_of<V: Vector>(
        &self,
        rows: [usize; ROWS],
        kt: &[f32],
        q: &mut Vec<[f32; ROWS]>,
        scores: &mut [f32],
    ) {
        let (dh, padded) = (self.fused.head_dim, self.padded);
        let scale = 1.0 / (dh as f32).sqrt();
        q.clear();
        q.resize(dh, [0.0; ROWS]);
        for (r, &row) in rows.iter().enumerate() {
            for (q, &x) in q.iter_mut().zip(self.query(row)) {
                q[r] = x * scale;
            }
        }
        let width = 2 * V::LANES;
        assert!(padded % width == 0 && kt.len() >= dh * padded && scores.len() >= ROWS * padded);
        for j0 in (0..padded).step_by(width) {
            // SAFETY: j0 + width ≤ padded (a multiple of width), so every
            // load is inside `kt` (dh × padded) and every store inside
            // `scores` (ROWS × padded), as asserted above.
            unsafe {
                let mut acc = [[V::zero(); 2]; ROWS];
                for (c, qc) in q.iter().enumerate() {
                    let p = kt.as_ptr().add(c * padded + j0);
                    let (k0, k1) = (V::load(p), V::load(p.add(V::LANES)));
                    for (acc, &qr) in acc.iter_mut().zip(qc) {
                        let s = V::splat(qr);
                        acc[0] = V::mul_add(s, k0, acc[0]);
                        acc[1] = V::mul_add(s, k1, acc[1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let o = scores.as_mut_ptr().add(r * padded + j0);
                    acc[0].store(o);
                    acc[1].store(o.add(V::LANES));
                }
            }
        }
    }

    /// Columns `c0..c0 + 2·LANES` of the context rows: the values weighted by
    /// each row's softmax, summed in registers, times `inv` (1 / the row's
    /// sum).
    ///
    /// # Safety
    /// As [`Self::run`], and `c0 + 2·LANES ≤ head_dim`.
    #[inline(always)]
    unsafe fn weighted_values<V: Vector>(
        &self,
        values: &[f32],
        scores: &[f32],
        c0: usize,
        inv: &[f32; ROWS],
        ctx: &mut [f32],
    ) {
        let dh = self.fused.head_dim;
        assert!(scores.len() >= ROWS * self.padded && values.len() >= self.len * dh);
        // SAFETY: each of the len value rows has dh ≥ c0 + 2·LANES values
        // from `c0`; every score index is below ROWS × padded (both
        // asserted); ctx rows hold dh values.
        unsafe {
            let mut acc = [[V::zero(); 2]; ROWS];
            let weights: [*const f32; ROWS] =
                std::array::from_fn(|r| scores.as_ptr().add(r * self.padded));
            for j in 0..self.len {
                let p = values.as_ptr().add(j * dh + c0);
                let (v0, v1) = (V::load(p), V::load(p.add(V::LANES)));
                for (acc, w) in acc.iter_mut().zip(weights) {
                    let w = V::splat(*w.add(j));
                    acc[0] = V::mul_add(w, v0, acc[0]);
                    acc[1] = V::mul_add(w, v1, acc[1]);
                }
            }
            for (r, out) in ctx.chunks_exact_mut(dh).enumerate() {
                let s = V::splat(inv[r]);
                let o = out.as_mut_ptr().add(c0);
                V::mul_add(acc[r][0], s, V::zero()).store(o);
                V::mul_add(acc[r][1], s, V::zero()).store(o.add(V::LANES));
            }
        }
    }

    /// As [`Self::weighted_values`] for the last `head_dim % COLS` columns.
    fn weighted_values_tail(
        &self,
        values: &[f32],
        scores: &[f32],
        c0: usize,
        inv: &[f32; ROWS],
        ctx: &mut [f32],
    ) {
        let dh = self.fused.head_dim;
        for (r, out) in ctx.chunks_exact_mut(dh).enumerate() {
            let out = &mut out[c0..];
            for (j, row) in values.chunks_exact(dh).take(self.len).enumerate() {
                let w = scores[r * self.padded + j] * inv[r];
                for (o, &v) in out.iter_mut().zip(&row[c0..]) {
                    *o += w * v;
                }
            }
        }
    }
}

/// Softmax weights of `scores` in place (not yet divided by their sum);
/// returns the sum. Max and sum are taken sixteen lanes at a time.
#[inline(always)]
fn softmax_in_place(scores: &mut [f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = scores.chunks_exact(16);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for chunk in chunks {
        for (m, &s) in lanes.iter_mut().zip(chunk) {
            *m = if s > *m { s } else { *m };
        }
    }
    let max = lanes.iter().fold(tail, |a, &b| a.max(b));
    for s in scores.iter_mut() {
        *s -= max;
    }
    exp_in_place(scores);
    let mut sums = [0f32; 16];
    let chunks = scores.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (t, &s) in sums.iter_mut().zip(chunk) {
            *t += s;
        }
    }
    sums.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain softmax attention in f64 for one head.
    fn reference(f: Fused, start: usize, len: usize, head: usize) -> Vec<f32> {
        let (dh, d) = (f.head_dim, f.heads * f.head_dim);
        let at = |r: usize, part: usize, c: usize| {
            f.qkv[(start + r) * 3 * d + part * d + head * dh + c] as f64
        };
        let mut out = Vec::new();
        for i in 0..len {
            let scores: Vec<f64> = (0..len)
                .map(|j| {
                    (0..dh).map(|c| at(i, 0, c) * at(j, 1, c)).sum::<f64>() / (dh as f64).sqrt()
                })
                .collect();
            let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            for c in 0..dh {
                let v: f64 = (0..len).map(|j| e[j] * at(j, 2, c)).sum();
                out.push((v / sum) as f32);
            }
        }
        out
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    #[test]
    fn matches_softmax_attention_for_every_head_and_length() {
        // Head widths of MiniLM and e5-small (32), e5-base and bge-m3 (64),
        // and one with a tail of columns (40).
        for (heads, dh) in [(3, 32), (2, 64), (2, 40)] {
            let rows = 80;
            let qkv = values(rows * 3 * heads * dh, 7);
            let fused = Fused {
                qkv: &qkv,
                heads,
                head_dim: dh,
            };
            let mut scratch = Scratch::default();
            for (start, len) in [(0, 1), (1, 31), (5, 32), (10, 33), (0, 80)] {
                for head in 0..heads {
                    sequence_head(fused, start, len, head, &mut scratch);
                    let want = reference(fused, start, len, head);
                    let worst = scratch
                        .out
                        .iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-5,
                        "dh {dh} len {len} head {head}: off by {worst}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside the fused QKV")]
    fn rows_past_the_end_are_refused() {
        let qkv = vec![0f32; 2 * 3 * 64];
        let fused = Fused {
            qkv: &qkv,
            heads: 2,
            head_dim: 32,
        };
        sequence_head(fused, 1, 2, 0, &mut Scratch::default());
    }
}

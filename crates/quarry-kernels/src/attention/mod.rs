//! Attention against a KV cache, read in place: one new token's (decoding,
//! [`decode`]) and a prompt slice's rows ([`prompt::prefill`]); and an
//! encoder's bidirectional attention over fused QKV rows
//! ([`encoder::sequence_head`]).

pub mod encoder;
pub mod prompt;

/// The shape of a KV cache: `kv_heads` heads of `max_len` positions of
/// `head_dim` values each, row-major (head, position, value).
#[derive(Debug, Clone, Copy)]
pub struct CacheShape {
    /// Key/value heads.
    pub kv_heads: usize,
    /// Positions the cache holds.
    pub max_len: usize,
    /// Values per head and position.
    pub head_dim: usize,
}

/// Attention of one new token's queries `q` (`groups` query heads per KV
/// head, `head_dim` values each, head-major) against the cached keys and
/// values at positions `start..kv_len`; returns the context, one `head_dim`
/// row per query head. candle's path for the same step copied the value cache
/// of every layer and spread three tiny matrix products over both threads; at
/// a 1,600-token context decoding ran at half its 300-token speed.
///
/// Work is split by KV head and by ranges of cached positions: each task reads
/// its rows of keys and values once for all the query heads that share them
/// (grouped-query attention) and keeps a partial softmax (max, sum, weighted
/// values); the parts of a head are merged at the end, rescaled to the common
/// max. The split depends only on the shape and `kv_len`, so a token's result
/// is the same whether it is decoded alone or verified among others.
#[allow(clippy::too_many_arguments)]
pub fn decode(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: CacheShape,
    groups: usize,
    start: usize,
    kv_len: usize,
    scale: f32,
) -> Vec<f32> {
    let CacheShape {
        kv_heads: hk,
        max_len,
        head_dim: dh,
    } = shape;
    let len = kv_len - start;
    // Enough tasks to keep every thread busy, none shorter than 64 positions.
    let threads = crate::threads();
    let parts = (2 * threads).div_ceil(hk).min(len.div_ceil(64)).max(1);
    let part_len = len.div_ceil(parts);
    let level = Level::detect();
    let task = |task: usize| {
        let (kvh, part) = (task / parts, task % parts);
        let p0 = (part * part_len).min(len);
        let n = ((part + 1) * part_len).min(len) - p0;
        let base = (kvh * max_len + start + p0) * dh;
        let queries = &q[kvh * groups * dh..(kvh + 1) * groups * dh];
        let (keys, values) = (&k[base..base + n * dh], &v[base..base + n * dh]);
        match level {
            // SAFETY: `detect` checked that the CPU has these features.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { partial_softmax_avx512(queries, keys, values, dh, scale) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { partial_softmax_avx2(queries, keys, values, dh, scale) },
            _ => partial_softmax(queries, keys, values, dh, scale),
        }
    };
    let slots: Vec<std::sync::Mutex<Option<Partial>>> = (0..hk * parts)
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    candle_core::utils::barrier_pool().execute_chunked(hk * parts, |range| {
        for t in range {
            let result = task(t);
            *slots[t].lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
        }
    });
    let partials: Vec<Partial> = slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .expect("every task ran")
        })
        .collect();
    merge(&partials, hk * groups, groups, parts, dh)
}

/// Per query head: the max score, the sum of exp(score - max) and the values
/// weighted by those exponentials.
struct Partial {
    maxes: Vec<f32>,
    sums: Vec<f32>,
    acc: Vec<f32>,
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn partial_softmax_avx512(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    dh: usize,
    scale: f32,
) -> Partial {
    partial_softmax(q, k, v, dh, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn partial_softmax_avx2(q: &[f32], k: &[f32], v: &[f32], dh: usize, scale: f32) -> Partial {
    partial_softmax(q, k, v, dh, scale)
}

/// One task: `queries` (the query heads of one KV head) against `n` cached
/// rows of keys and values.
#[inline(always)]
fn partial_softmax(
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    dh: usize,
    scale: f32,
) -> Partial {
    let groups = queries.len() / dh;
    let n = keys.len() / dh;
    let mut scores = vec![0f32; groups * n];
    for (j, row) in keys.chunks_exact(dh).enumerate() {
        for (g, qh) in queries.chunks_exact(dh).enumerate() {
            scores[g * n + j] = dot(qh, row) * scale;
        }
    }
    let mut maxes = vec![f32::NEG_INFINITY; groups];
    let mut sums = vec![0f32; groups];
    for g in 0..groups {
        let row = &mut scores[g * n..(g + 1) * n];
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        for s in row.iter_mut() {
            *s -= max;
        }
        exp_in_place(row);
        let sum = row.iter().sum::<f32>();
        maxes[g] = max;
        sums[g] = sum;
    }
    let mut acc = vec![0f32; groups * dh];
    for (j, row) in values.chunks_exact(dh).enumerate() {
        for (g, a) in acc.chunks_exact_mut(dh).enumerate() {
            let w = scores[g * n + j];
            for (a, &x) in a.iter_mut().zip(row) {
                *a += w * x;
            }
        }
    }
    Partial { maxes, sums, acc }
}

/// Merge the parts of every head, rescaled to the head's common max.
fn merge(partials: &[Partial], heads: usize, groups: usize, parts: usize, dh: usize) -> Vec<f32> {
    let mut out = vec![0f32; heads * dh];
    for (head, o) in out.chunks_exact_mut(dh).enumerate() {
        let (kvh, g) = (head / groups, head % groups);
        let mine = &partials[kvh * parts..(kvh + 1) * parts];
        let live = || mine.iter().filter(|p| p.sums[g] > 0.0);
        let max = live().fold(f32::NEG_INFINITY, |a, p| a.max(p.maxes[g]));
        let mut denom = 0.0;
        for p in live() {
            let f = (p.maxes[g] - max).exp();
            denom += p.sums[g] * f;
            for (o, &a) in o.iter_mut().zip(&p.acc[g * dh..(g + 1) * dh]) {
                *o += a * f;
            }
        }
        let inv = 1.0 / denom;
        for o in o.iter_mut() {
            *o *= inv;
        }
    }
    out
}

/// Dot product with sixteen independent sums, so it vectorises.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `e^x` for `x ≤ 0` (softmax weights), in place: `x = n·ln 2 + r` with
/// `|r| ≤ ln 2 / 2`, a degree-6 polynomial for `e^r` and `2^n` from the
/// exponent bits; below -87 the result is 0.
#[inline(always)]
pub(crate) fn exp_in_place(xs: &mut [f32]) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    for x in xs.iter_mut() {
        let t = x.max(-87.0);
        let big = t * LOG2E + ROUND;
        let n = big - ROUND;
        let r = (t - n * LN2_HI) - n * LN2_LO;
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
        // `big` has a unit last place, so its low bits hold n (plus 2^22):
        // 2^n's exponent comes from an integer subtraction, which vectorises,
        // where `n as i32` (saturating, NaN-checked) is a compare per value.
        let n_bits = big.to_bits().wrapping_sub(ROUND.to_bits());
        let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
        *x = if *x < -87.0 { 0.0 } else { p * scale };
    }
}

/// The vector instructions the attention kernels are compiled for, picked
/// at run time (`QUARRY_SIMD=avx2` caps them at AVX2, `off` at plain Rust).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// AVX-512 F with FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// Whatever the build targets.
    Portable,
}

impl Level {
    /// The widest this CPU runs.
    pub(crate) fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if std::env::var("QUARRY_SIMD").as_deref() == Ok("off") {
                return Level::Portable;
            }
            let avx2 = has!("avx2") && has!("fma");
            let capped = std::env::var("QUARRY_SIMD").as_deref() == Ok("avx2");
            if avx2 && has!("avx512f") && !capped {
                return Level::Avx512;
            }
            if avx2 {
                return Level::Avx2;
            }
        }
        Level::Portable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulps_down_to_its_cutoff() {
        let xs: Vec<f32> = (0..=200_000).map(|i| -(i as f32) * 0.0005).collect();
        let mut ys = xs.clone();
        exp_in_place(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x < -87.0 {
                assert_eq!(y, 0.0, "e^{x} below the cutoff");
                continue;
            }
            let want = (x as f64).exp();
            let rel = ((y as f64 - want) / want).abs();
            assert!(rel < 5e-7, "e^{x}: {y} against {want}");
        }
        let mut far = [-87.5f32, -100.0, f32::NEG_INFINITY];
        exp_in_place(&mut far);
        assert_eq!(far, [0.0; 3]);
    }

    /// Plain softmax attention, one head at a time.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        s: CacheShape,
        groups: usize,
        start: usize,
        end: usize,
    ) -> Vec<f32> {
        let dh = s.head_dim;
        let mut out = Vec::new();
        for (head, qh) in q.chunks_exact(dh).enumerate() {
            let kvh = head / groups;
            let row = |c: &[f32], p: usize| c[(kvh * s.max_len + p) * dh..][..dh].to_vec();
            let scores: Vec<f32> = (start..end)
                .map(|p| qh.iter().zip(row(k, p)).map(|(a, b)| a * b).sum::<f32>() * 0.5)
                .collect();
            let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let w: Vec<f32> = scores.iter().map(|x| (x - max).exp()).collect();
            let sum: f32 = w.iter().sum();
            let mut o = vec![0f32; dh];
            for (p, w) in (start..end).zip(&w) {
                for (o, x) in o.iter_mut().zip(row(v, p)) {
                    *o += w / sum * x;
                }
            }
            out.extend(o);
        }
        out
    }

    #[test]
    fn matches_plain_softmax_attention() {
        let s = CacheShape {
            kv_heads: 2,
            max_len: 300,
            head_dim: 16,
        };
        let groups = 3;
        let noise = |i: usize| ((i * 2654435761) % 1000) as f32 / 500.0 - 1.0;
        let k: Vec<f32> = (0..2 * 300 * 16).map(noise).collect();
        let v: Vec<f32> = (0..2 * 300 * 16).map(|i| noise(i + 7)).collect();
        let q: Vec<f32> = (0..6 * 16).map(|i| noise(i + 11)).collect();
        for (start, end) in [(0, 1), (0, 257), (40, 290)] {
            let got = decode(&q, &k, &v, s, groups, start, end, 0.5);
            let want = reference(&q, &k, &v, s, groups, start, end);
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{start}..{end}: {a} vs {b}");
            }
        }
    }
}

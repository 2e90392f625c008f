//! Causal attention of a prompt slice's rows against the KV cache, read in
//! place. Each row sees only the cached positions up to its own (and, in a
//! sliding-window layer, no further back than the window), so the masked
//! part of the scores is never computed, no mask is built and no score
//! matrix is materialised: candle's path for the same step (a score
//! product over every cached position, a mask added, a softmax, a second
//! product over a copied value cache) was a quarter of a 1.5B model's prefill.
//!
//! Flash-attention order: tasks are (KV head, block of rows); a task walks
//! the cached positions in blocks, and for each block updates every row's
//! running softmax (max, sum, weighted values) for the query heads that
//! share that KV head, so a block of keys and values is read from memory
//! once for all of them. Exponentials are computed eight or sixteen at a time
//! with a polynomial (relative error below 2e-7); products are compiled for
//! AVX-512 and AVX2 with FMA and picked at run time.

use super::{exp_in_place, CacheShape, Level};

/// Rows of the prompt per task.
const ROW_BLOCK: usize = 16;
/// Cached positions scored together before the running softmax is updated.
const KEY_BLOCK: usize = 64;

/// The rows of a prompt slice: `seq` new tokens at positions `pos..`, in a
/// layer that sees `window` positions back (`None`: every position).
#[derive(Debug, Clone, Copy)]
pub struct PromptRows {
    /// New tokens.
    pub seq: usize,
    /// Position of the first.
    pub pos: usize,
    /// Sliding window, if the layer has one.
    pub window: Option<usize>,
}

impl PromptRows {
    /// The cached positions row `i` sees: `lo..hi`.
    fn visible(&self, i: usize) -> (usize, usize) {
        let at = self.pos + i;
        let lo = self.window.map_or(0, |w| (at + 1).saturating_sub(w));
        (lo, at + 1)
    }
}

/// Causal attention of `rows.seq` new rows: `q` holds their queries head-major
/// (query head, row, `head_dim`), `groups` query heads per KV head; `k` and `v`
/// are the caches (already holding the new rows' keys and values). Returns
/// the context row-major: (row, query head, `head_dim`).
pub fn prefill(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: CacheShape,
    groups: usize,
    rows: PromptRows,
    scale: f32,
) -> Vec<f32> {
    let (hk, dh, seq) = (shape.kv_heads, shape.head_dim, rows.seq);
    let heads = hk * groups;
    assert_eq!(
        q.len(),
        heads * seq * dh,
        "queries are heads × seq × head_dim"
    );
    let blocks = seq.div_ceil(ROW_BLOCK);
    let mut out = vec![0f32; seq * heads * dh];
    let out_ptr = out.as_mut_ptr() as usize;
    let level = Level::detect();
    // Later row blocks see more positions: hand them out first.
    candle_core::utils::barrier_pool().execute_chunked(hk * blocks, |range| {
        for t in range {
            let (rb, kvh) = (blocks - 1 - t / hk, t % hk);
            let task = Task {
                q,
                k,
                v,
                shape,
                groups,
                rows,
                scale,
                kvh,
                r0: rb * ROW_BLOCK,
                r1: ((rb + 1) * ROW_BLOCK).min(seq),
            };
            // SAFETY: `out` holds every (row, head) slot; each task writes
            // only its rows' slots of its KV head's query heads, disjoint
            // from every other task's.
            unsafe { run_task(level, &task, out_ptr as *mut f32) };
        }
    });
    out
}

/// Run `task` with `level`'s instructions.
///
/// # Safety
/// `out` must hold `seq × heads × head_dim` values, and no one else may
/// access the task's slots while it runs.
unsafe fn run_task(level: Level, task: &Task, out: *mut f32) {
    match level {
        // SAFETY: `detect` checked that the CPU has these features.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { run_avx512(task, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { run_avx2(task, out) },
        _ => unsafe { task.run(out) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn run_avx512(task: &Task, out: *mut f32) {
    unsafe { task.run(out) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(task: &Task, out: *mut f32) {
    unsafe { task.run(out) }
}

/// One KV head's query heads for rows `r0..r1`.
struct Task<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    shape: CacheShape,
    groups: usize,
    rows: PromptRows,
    scale: f32,
    kvh: usize,
    r0: usize,
    r1: usize,
}

/// The running softmax of one (row, query head).
struct Running {
    max: f32,
    sum: f32,
}

impl Task<'_> {
    /// # Safety
    /// As [`run_task`].
    #[inline(always)]
    unsafe fn run(&self, out: *mut f32) {
        let (dh, g, seq) = (self.shape.head_dim, self.groups, self.rows.seq);
        let n = (self.r1 - self.r0) * g;
        let mut state: Vec<Running> = (0..n)
            .map(|_| Running {
                max: f32::NEG_INFINITY,
                sum: 0.0,
            })
            .collect();
        let mut acc = vec![0f32; n * dh];
        let mut scores = [0f32; KEY_BLOCK];
        // The block's keys transposed, `[value (dh)][position (KEY_BLOCK)]`,
        // zero past its end: a query's scores for the whole block are then
        // `dh` multiply-adds of full vectors, with no horizontal sums.
        let mut kt = vec![0f32; dh * KEY_BLOCK];
        let lo = self.rows.visible(self.r0).0;
        let hi = self.rows.visible(self.r1 - 1).1;
        let base = self.kvh * self.shape.max_len * dh;
        for j0 in (lo..hi).step_by(KEY_BLOCK) {
            let j1 = (j0 + KEY_BLOCK).min(hi);
            kt.fill(0.0);
            let keys = &self.k[base + j0 * dh..base + j1 * dh];
            for (j, key) in keys.chunks_exact(dh).enumerate() {
                for (d, &x) in key.iter().enumerate() {
                    kt[d * KEY_BLOCK + j] = x;
                }
            }
            for i in self.r0..self.r1 {
                let (a, b) = self.rows.visible(i);
                let (a, b) = (a.max(j0), b.min(j1));
                if a >= b {
                    continue;
                }
                let values = &self.v[base + a * dh..base + b * dh];
                for h in 0..g {
                    let head = self.kvh * g + h;
                    let qh = &self.q[(head * seq + i) * dh..][..dh];
                    let slot = (i - self.r0) * g + h;
                    block_scores(qh, &kt, &mut scores);
                    let s = &mut scores[a - j0..b - j0];
                    for s in s.iter_mut() {
                        *s *= self.scale;
                    }
                    let acc = &mut acc[slot * dh..(slot + 1) * dh];
                    update(&mut state[slot], acc, s, values);
                }
            }
        }
        let heads = self.shape.kv_heads * g;
        for i in self.r0..self.r1 {
            // SAFETY: this row's slots of this KV head's query heads are in
            // bounds and this task's alone (the caller's promise).
            let row = unsafe {
                std::slice::from_raw_parts_mut(out.add((i * heads + self.kvh * g) * dh), g * dh)
            };
            for (h, o) in row.chunks_exact_mut(dh).enumerate() {
                let slot = (i - self.r0) * g + h;
                let inv = 1.0 / state[slot].sum;
                for (o, a) in o.iter_mut().zip(&acc[slot * dh..(slot + 1) * dh]) {
                    *o = a * inv;
                }
            }
        }
    }
}

/// A query's scores against a block of transposed keys (`kt`: `[value][position]`).
#[inline(always)]
fn block_scores(q: &[f32], kt: &[f32], scores: &mut [f32; KEY_BLOCK]) {
    // Sums in a local array the compiler keeps in registers.
    let mut sums = [0f32; KEY_BLOCK];
    for (&x, column) in q.iter().zip(kt.chunks_exact(KEY_BLOCK)) {
        for (s, &k) in sums.iter_mut().zip(column) {
            *s += x * k;
        }
    }
    *scores = sums;
}

/// Fold a block of scores (turned into weights in place) and their value
/// rows into a running softmax.
#[inline(always)]
fn update(run: &mut Running, acc: &mut [f32], scores: &mut [f32], values: &[f32]) {
    let dh = acc.len();
    let block_max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
    if block_max > run.max {
        let mut f = [run.max - block_max];
        exp_in_place(&mut f);
        let f = f[0];
        run.sum *= f;
        for a in acc.iter_mut() {
            *a *= f;
        }
        run.max = block_max;
    }
    for s in scores.iter_mut() {
        *s -= run.max;
    }
    exp_in_place(scores);
    run.sum += scores.iter().sum::<f32>();
    // Sixteen values of the accumulator at a time, in registers across the
    // block's positions (the whole row at once spilled to memory per key).
    let mut c0 = 0;
    for part in acc.chunks_exact_mut(LANES) {
        let mut sum: [f32; LANES] = part.try_into().expect("LANES values");
        for (&w, row) in scores.iter().zip(values.chunks_exact(dh)) {
            for (s, &x) in sum.iter_mut().zip(&row[c0..c0 + LANES]) {
                *s += w * x;
            }
        }
        part.copy_from_slice(&sum);
        c0 += LANES;
    }
    for c in c0..dh {
        for (&w, row) in scores.iter().zip(values.chunks_exact(dh)) {
            acc[c] += w * row[c];
        }
    }
}

/// Accumulator values kept in registers together.
const LANES: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain masked softmax attention, one (row, head) at a time, in f64.
    fn reference(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        s: CacheShape,
        groups: usize,
        rows: PromptRows,
        scale: f32,
    ) -> Vec<f32> {
        let (dh, heads) = (s.head_dim, s.kv_heads * groups);
        let mut out = vec![0f32; rows.seq * heads * dh];
        for i in 0..rows.seq {
            let (lo, hi) = rows.visible(i);
            for head in 0..heads {
                let kvh = head / groups;
                let qh = &q[(head * rows.seq + i) * dh..][..dh];
                let at = |c: &[f32], p: usize| c[(kvh * s.max_len + p) * dh..][..dh].to_vec();
                let scores: Vec<f64> = (lo..hi)
                    .map(|p| {
                        let d: f64 = qh.iter().zip(at(k, p)).map(|(a, b)| (a * b) as f64).sum();
                        d * scale as f64
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = w.iter().sum();
                let o = &mut out[(i * heads + head) * dh..][..dh];
                for (p, w) in (lo..hi).zip(&w) {
                    for (o, x) in o.iter_mut().zip(at(v, p)) {
                        *o += (w / sum * x as f64) as f32;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn polynomial_exp_matches_the_standard_library() {
        let mut xs: Vec<f32> = (0..2000).map(|i| -(i as f32) * 0.05).collect();
        xs.extend([-86.9, -87.5, -200.0, f32::NEG_INFINITY, -1e-9, 0.0]);
        let want: Vec<f32> = xs.iter().map(|x| x.exp()).collect();
        exp_in_place(&mut xs);
        for (got, want) in xs.iter().zip(&want) {
            let err = (got - want).abs() / want.max(1e-30);
            assert!(
                err < 2e-7 || (*want < 1e-37 && *got < 1e-37),
                "{got} vs {want}"
            );
        }
    }

    #[test]
    fn matches_masked_softmax_attention_at_every_level() {
        let s = CacheShape {
            kv_heads: 2,
            max_len: 400,
            head_dim: 40, // not a multiple of 16: the tail is summed too
        };
        let groups = 3;
        let noise = |i: usize| ((i * 2654435761) % 1000) as f32 / 250.0 - 2.0;
        let k: Vec<f32> = (0..2 * 400 * 40).map(noise).collect();
        let v: Vec<f32> = (0..2 * 400 * 40).map(|i| noise(i + 7)).collect();
        let cases = [
            (37, 0, None),       // a first slice, rows in a partial block
            (70, 200, None),     // a later slice: every earlier position too
            (70, 300, Some(96)), // a sliding window smaller than the context
            (1, 17, None),
        ];
        for (seq, pos, window) in cases {
            let rows = PromptRows { seq, pos, window };
            let q: Vec<f32> = (0..6 * seq * 40).map(|i| noise(i + 11)).collect();
            let want = reference(&q, &k, &v, s, groups, rows, 0.3);
            for level in [Level::detect(), Level::Portable] {
                let mut out = vec![0f32; want.len()];
                let blocks = seq.div_ceil(ROW_BLOCK);
                for t in 0..2 * blocks {
                    let rb = t / 2;
                    let task = Task {
                        q: &q,
                        k: &k,
                        v: &v,
                        shape: s,
                        groups,
                        rows,
                        scale: 0.3,
                        kvh: t % 2,
                        r0: rb * ROW_BLOCK,
                        r1: ((rb + 1) * ROW_BLOCK).min(seq),
                    };
                    // SAFETY: `out` is the whole output, used by one task at a time.
                    unsafe { run_task(level, &task, out.as_mut_ptr()) };
                }
                for (a, b) in out.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{seq}@{pos} {window:?}: {a} vs {b}");
                }
            }
            let got = prefill(&q, &k, &v, s, groups, rows, 0.3);
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{seq}@{pos} {window:?}: {a} vs {b}");
            }
        }
    }
}

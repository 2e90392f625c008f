//! Per-value passes of an encoder's dense layers: the bias (and residual)
//! an output starts from, and GELU. Each runs over one slice; callers split
//! the work over threads.

use std::mem::MaybeUninit;

/// Each `bias.len()`-wide row of `out` set to `bias`, plus the same row of
/// `residual` when there is one (`out` and `residual` hold whole rows).
/// `out` may start uninitialised (a fresh buffer need not be zeroed first);
/// it is returned initialised.
pub fn bias_rows<'o>(
    out: &'o mut [MaybeUninit<f32>],
    bias: &[f32],
    residual: Option<&[f32]>,
) -> &'o mut [f32] {
    let n = bias.len();
    assert!(out.len().is_multiple_of(n), "output is not whole rows");
    match residual {
        Some(res) => {
            assert_eq!(
                res.len(),
                out.len(),
                "residual is not as long as the output"
            );
            for (row, res) in out.chunks_exact_mut(n).zip(res.chunks_exact(n)) {
                for ((o, b), r) in row.iter_mut().zip(bias).zip(res) {
                    o.write(b + r);
                }
            }
        }
        None => {
            for row in out.chunks_exact_mut(n) {
                for (o, b) in row.iter_mut().zip(bias) {
                    o.write(*b);
                }
            }
        }
    }
    // SAFETY: `out` is whole rows of `n` (asserted), each value written.
    unsafe { assume_init(out) }
}

/// `out` as initialised values.
///
/// # Safety
/// Every value of `out` has been written.
pub(crate) unsafe fn assume_init(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout; the values are
    // initialised (the caller's promise).
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// `tanh` as a rational function (under 1e-4 from `tanh`): libm's `tanhf`
/// took about 15% of embedding time in a profile.
#[inline(always)]
pub fn tanh_approx(x: f32) -> f32 {
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let p = x * (135135.0 + x2 * (17325.0 + x2 * (378.0 + x2)));
    let q = 135135.0 + x2 * (62370.0 + x2 * (3150.0 + x2 * 28.0));
    (p / q).clamp(-1.0, 1.0)
}

/// GELU, tanh form, of one value.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + tanh_approx(C * (x + 0.044715 * x * x * x)))
}

/// [`gelu_tanh`] of every value, in place.
pub fn gelu_in_place(x: &mut [f32]) {
    for v in x {
        *v = gelu_tanh(*v);
    }
}

/// [`gelu_tanh`] of every value of `src` into `out` (as long as `src`).
pub fn gelu_into(src: &[f32], out: &mut [f32]) {
    for (o, &x) in out.iter_mut().zip(src) {
        *o = gelu_tanh(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_start_from_the_bias_and_the_residual() {
        let mut out = vec![MaybeUninit::uninit(); 6];
        let rows = bias_rows(&mut out, &[1.0, 2.0, 3.0], None);
        assert_eq!(rows, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        let residual = [0.5, 0.0, -1.0, 1.0, 1.0, 1.0];
        let rows = bias_rows(&mut out, &[1.0, 2.0, 3.0], Some(&residual));
        assert_eq!(rows, [1.5, 2.0, 2.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn gelu_is_close_to_the_tanh_form() {
        for i in -400..=400 {
            let x = i as f32 / 40.0;
            let exact = 0.5 * x * (1.0 + (0.797_884_6f32 * (x + 0.044715 * x * x * x)).tanh());
            assert!((gelu_tanh(x) - exact).abs() < 2e-4, "{x}");
        }
        let mut v = vec![-1.0, 0.0, 1.0];
        gelu_in_place(&mut v);
        let mut w = vec![0.0; 3];
        gelu_into(&[-1.0, 0.0, 1.0], &mut w);
        assert_eq!(v, w);
        assert_eq!(v[1], 0.0);
    }
}

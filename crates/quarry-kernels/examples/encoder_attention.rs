//! Time the encoder attention kernel on one thread:
//! `cargo run -p quarry-kernels --example encoder_attention -- [LEN] [HEADS] [HEAD_DIM]`
//! (MiniLM on a squaddev passage: 133 12 32).

use std::time::Instant;

use quarry_kernels::attention::encoder::{sequence_head, Fused, Scratch};

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let (len, heads, dh) = (arg(1, 133), arg(2, 12), arg(3, 32));
    let mut s = 1u32;
    let qkv: Vec<f32> = (0..len * 3 * heads * dh)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    let fused = Fused {
        qkv: &qkv,
        heads,
        head_dim: dh,
    };
    let mut scratch = Scratch::default();
    let mut best = f64::INFINITY;
    for _ in 0..20 {
        let t = Instant::now();
        for _ in 0..10 {
            for head in 0..heads {
                sequence_head(fused, 0, len, head, &mut scratch);
            }
        }
        best = best.min(t.elapsed().as_secs_f64() / 10.0);
    }
    let flops = 4.0 * (len * len * dh * heads) as f64;
    println!(
        "len {len}, {heads} heads of {dh}: {:.1} µs per layer, {:.1} GFLOP/s",
        best * 1e6,
        flops / best / 1e9
    );
}

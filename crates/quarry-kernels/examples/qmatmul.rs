//! Time Quarry's Q4_K/Q6_K/Q8_0 products against candle's on decoder-sized shapes:
//! `cargo run -p quarry-kernels --example qmatmul` (`QUARRY_SIMD=avx2` for
//! Quarry's AVX2 kernels).
use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use quarry_kernels::quantized::{QMatrix, WeightType};

fn main() -> candle_core::Result<()> {
    let dev = Device::Cpu;
    // Qwen2.5-1.5B's gate+up (stacked), down (Q4_K and Q6_K), query, output.
    for (ty, n, k) in [
        (WeightType::Q4K, 17920, 1536),
        (WeightType::Q4K, 1536, 8960),
        (WeightType::Q6K, 1536, 8960),
        (WeightType::Q4K, 1536, 1536),
        (WeightType::Q6K, 151936, 1536),
        // SmolLM2-135M's stacked query/key/value, gate+up, down and output.
        (WeightType::Q8_0, 960, 576),
        (WeightType::Q8_0, 3072, 576),
        (WeightType::Q8_0, 576, 1536),
        (WeightType::Q8_0, 49152, 576),
    ] {
        let w = Tensor::randn(0f32, 0.05, (n, k), &dev)?;
        let dtype = match ty {
            WeightType::Q4K => GgmlDType::Q4K,
            WeightType::Q6K => GgmlDType::Q6K,
            WeightType::Q8_0 => GgmlDType::Q8_0,
        };
        let q = QTensor::quantize(&w, dtype)?;
        let bytes = q.data()?.into_owned();
        let ours = QMatrix::new(ty, &bytes, n, k).expect("a CPU with AVX2 or AVX-512 VNNI");
        let theirs = QMatMul::from_qtensor(q)?;
        let rows: &[usize] = if n > 40_000 { &[1, 4] } else { &[1, 4, 256] };
        for &m in rows {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev)?;
            let xv = x.flatten_all()?.to_vec1::<f32>()?;
            let reps = if m == 1 {
                50
            } else if m == 4 {
                20
            } else {
                3
            };
            theirs.forward(&x)?; // candle repacks lazily on first use
            let t0 = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(theirs.forward(&x)?);
            }
            let candle_s = t0.elapsed().as_secs_f64() / reps as f64;
            let t0 = Instant::now();
            for _ in 0..reps {
                std::hint::black_box(ours.matmul(&xv, m));
            }
            let ours_s = t0.elapsed().as_secs_f64() / reps as f64;
            let bytes_gb = bytes.len() as f64 / 1e9;
            println!(
                "{ty:?} {:?} {n}x{k} m={m}: candle {:.2} ms, quarry {:.2} ms ({:.2}x); quarry reads {:.1} GB/s of GGUF-sized weights",
                ours.level(),
                candle_s * 1e3,
                ours_s * 1e3,
                candle_s / ours_s,
                bytes_gb / ours_s
            );
        }
    }
    Ok(())
}

//! Quarry's own CPU kernels: the loops that run per token and per cached
//! position, where the speed of generation is decided. They live in their own
//! crate so that the dev profile (tests, `cargo run`) optimises them as the
//! release build does, while the rest of the engine builds fast.
//!
//! Work is spread over candle's worker threads: they spin between the model's
//! other operations, so a second pool would compete with them.

pub mod attention;
pub mod elementwise;
pub mod int8;
pub mod quantized;

/// The threads the kernels split their work over: candle's count (which
/// honours `RAYON_NUM_THREADS`), read once. candle works it out again on
/// every call, reading `/proc/cpuinfo` each time on Linux — ten times a
/// text in the encoder.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| candle_core::utils::get_num_threads().max(1))
}

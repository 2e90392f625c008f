//! Q8_0 weights: GGUF blocks of 32 signed 8-bit quants and an f16 scale
//! (`w = d·q`), two blocks to a tile of 16 rows × 64 inputs. Small models
//! keep most of their weights this way (SmolLM2 and Gemma 3 270M after Quarry
//! converts their Q4_1/Q5_0 matrices, and their Q8_0 token tables, which are
//! also their output layers).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the AVX-512 kernel flips
//! each weight's sign bit (`q + 128`) and takes `128 · Σa` back out per block;
//! AVX2 multiplies `|q|` by `a` with `q`'s sign, which `vpmaddubsw` cannot
//! overflow. Both give the exact integer sums.

use super::act::QBlock64;
use super::{Column, TileKind, TILE_ROWS};

/// GGUF's Q8_0 block: d (f16), 32 i8 quants.
const GGUF_BLOCK: usize = 34;
/// Inputs per tile (two GGUF blocks).
const VALUES: usize = 64;

/// 16 rows × 64 inputs of Q8_0 weights (1,088 bytes: 17 cache lines).
#[derive(Clone)]
#[repr(C, align(64))]
pub(super) struct Tile {
    /// `[group of 4 inputs (16)][row (16)][4 bytes]`.
    qs: [i8; VALUES * TILE_ROWS],
    /// Per-row f16 bits of each half's `d`, `[half][row]`.
    d: [[u16; TILE_ROWS]; 2],
}

impl Tile {
    /// Pack tile column `b` of the 16 rows starting at `row0` (`kb` tiles per
    /// row).
    fn pack_block(gguf: &[u8], kb: usize, row0: usize, b: usize) -> Tile {
        let mut t = Tile {
            qs: [0; VALUES * TILE_ROWS],
            d: [[0; TILE_ROWS]; 2],
        };
        for r in 0..TILE_ROWS {
            for h in 0..2 {
                let at = ((row0 + r) * 2 * kb + 2 * b + h) * GGUF_BLOCK;
                let blk = &gguf[at..at + GGUF_BLOCK];
                t.d[h][r] = u16::from_le_bytes([blk[0], blk[1]]);
                for (i, &q) in blk[2..].iter().enumerate() {
                    let (g, j) = (8 * h + i / 4, i % 4);
                    t.qs[(g * TILE_ROWS + r) * 4 + j] = q as i8;
                }
            }
        }
        t
    }
}

/// Output `row` of the product with one row of activations (`kb` blocks), in
/// plain Rust with exact integer sums: the reference for the SIMD kernels.
fn reference_dot_impl(tiles: &[Tile], kb: usize, row: usize, acts: &[QBlock64]) -> f32 {
    let (nt, lane) = (row / TILE_ROWS, row % TILE_ROWS);
    let mut acc = 0f32;
    for (t, a) in tiles[nt * kb..(nt + 1) * kb].iter().zip(acts) {
        for h in 0..2 {
            let mut dot = 0i32;
            for g in 8 * h..8 * h + 8 {
                for j in 0..4 {
                    dot += t.qs[(g * TILE_ROWS + lane) * 4 + j] as i32 * a.qs[4 * g + j] as i32;
                }
            }
            let d = half::f16::from_bits(t.d[h][lane]).to_f32();
            acc += dot as f32 * (d * a.d[h]);
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Column, QBlock64, Tile, TILE_ROWS};
    use core::arch::x86_64::*;

    /// Cache lines of a tile (the next one is prefetched, 9 lines per half).
    const LINES: usize = 17;

    /// One tile column against `MT` activation rows: 16 outputs per row at
    /// `out + row · stride`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI and F16C; `tiles` holds `kb` tiles, `acts` `MT · kb`
    /// blocks, and the outputs are writable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn column<const MT: usize>(c: Column<Tile>) {
        let (tiles, kb, acts) = (c.tiles, c.kb, c.acts);
        let flip = _mm512_set1_epi8(-128);
        let mut acc = [_mm512_setzero_ps(); MT];
        for b in 0..kb {
            let t = &*tiles.add(b);
            let next = tiles.wrapping_add(b + 1) as *const u8;
            let a: [&QBlock64; MT] = std::array::from_fn(|m| &*acts.add(m * kb + b));
            for h in 0..2 {
                super::super::prefetch_lines(next, 9 * h, if h == 0 { 9 } else { LINES - 9 });
                // Two chains of four products each, so they overlap.
                let mut dot = [[_mm512_setzero_si512(); MT]; 2];
                for g in 8 * h..8 * h + 8 {
                    let at = t.qs.as_ptr().add(g * TILE_ROWS * 4);
                    let w = _mm512_xor_si512(_mm512_load_si512(at as *const _), flip);
                    for m in 0..MT {
                        let q = a[m].qs.as_ptr().add(4 * g) as *const i32;
                        let x = _mm512_set1_epi32(q.read_unaligned());
                        dot[g % 2][m] = _mm512_dpbusd_epi32(dot[g % 2][m], w, x);
                    }
                }
                let d = _mm512_cvtph_ps(_mm256_load_si256(t.d[h].as_ptr() as *const _));
                for m in 0..MT {
                    let offset = _mm512_set1_epi32(128 * a[m].sum[h]);
                    let sum = _mm512_sub_epi32(_mm512_add_epi32(dot[0][m], dot[1][m]), offset);
                    let scale = _mm512_mul_ps(d, _mm512_set1_ps(a[m].d[h]));
                    acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[m]);
                }
            }
        }
        super::super::store_rows(&acc, c.out, c.stride);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Column, QBlock64, Tile, TILE_ROWS};
    use core::arch::x86_64::*;

    /// The AVX2 kernel for half a tile (8 rows, `half` 0 or 1).
    ///
    /// # Safety
    /// AVX2, FMA and F16C; pointers as for the AVX-512 kernel.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn half_column<const MT: usize>(c: &Column<Tile>, half: usize) {
        let (tiles, kb, acts) = (c.tiles, c.kb, c.acts);
        let ones = _mm256_set1_epi16(1);
        let rows = half * TILE_ROWS / 2;
        let mut acc = [_mm256_setzero_ps(); MT];
        for b in 0..kb {
            let t = &*tiles.add(b);
            let a: [&QBlock64; MT] = std::array::from_fn(|m| &*acts.add(m * kb + b));
            for h in 0..2 {
                let mut dot = [_mm256_setzero_si256(); MT];
                for g in 8 * h..8 * h + 8 {
                    let at = t.qs.as_ptr().add(g * TILE_ROWS * 4 + 4 * rows);
                    let w = _mm256_load_si256(at as *const _);
                    let w_abs = _mm256_abs_epi8(w);
                    for m in 0..MT {
                        let q = a[m].qs.as_ptr().add(4 * g) as *const i32;
                        let x = _mm256_sign_epi8(_mm256_set1_epi32(q.read_unaligned()), w);
                        let p = _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, x), ones);
                        dot[m] = _mm256_add_epi32(dot[m], p);
                    }
                }
                let d = _mm256_cvtph_ps(_mm_loadu_si128(t.d[h][rows..].as_ptr() as *const _));
                for m in 0..MT {
                    let scale = _mm256_mul_ps(d, _mm256_set1_ps(a[m].d[h]));
                    acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[m]), scale, acc[m]);
                }
            }
        }
        super::super::store_rows_avx2(&acc, c.out.add(rows), c.stride);
    }
}

impl TileKind for Tile {
    type Act = QBlock64;
    const GGUF_ROW_BYTES: usize = 2 * GGUF_BLOCK;
    const PACK: fn(&[u8], usize, usize, usize) -> Self = Tile::pack_block;
    fn reference(tiles: &[Self], kb: usize, row: usize, acts: &[QBlock64]) -> f32 {
        reference_dot_impl(tiles, kb, row, acts)
    }
    #[cfg(target_arch = "x86_64")]
    const KERNELS: [unsafe fn(Column<Self>); 4] = super::kernels!(avx512::column);
    #[cfg(target_arch = "x86_64")]
    const KERNELS_AVX2: [unsafe fn(&Column<Self>, usize); 4] = super::kernels!(avx2::half_column);
}

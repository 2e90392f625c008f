//! Q4_K weights: GGUF blocks of 256 4-bit quants with eight 6-bit scales and
//! mins (`w = d·sc·q − dmin·mn` per 32 values), repacked into tiles.

use super::act::QBlock;
use super::{Column, TileKind, BLOCK, TILE_ROWS};

/// GGUF's Q4_K block: d, dmin (f16), 12 bytes of packed scales, 128 of quants.
const GGUF_BLOCK_BYTES: usize = 144;

/// 16 rows × 256 inputs of Q4_K weights.
#[derive(Clone)]
#[repr(C, align(64))]
pub(super) struct Tile {
    /// `[group of 8 inputs (32)][row (16)][4 bytes]`; byte `j` of group `g`
    /// holds quant `8g + j` in its low nibble and `8g + 4 + j` in its high one.
    qs: [u8; BLOCK / 8 * TILE_ROWS * 4],
    /// 6-bit scales, `[sub-block (8)][row]`.
    sc: [[u8; TILE_ROWS]; 8],
    /// 6-bit mins as i16, `[sub-block pair (4)][row][2]`, for `vpdpwssd`.
    mn: [[i16; 2 * TILE_ROWS]; 4],
    /// Per-row f16 bits of `d` and `dmin`.
    d: [u16; TILE_ROWS],
    dmin: [u16; TILE_ROWS],
}

/// ggml's unpacking of sub-block `j`'s 6-bit scale and min.
fn scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

impl Tile {
    /// Pack block column `b` of the 16 rows starting at `row0`.
    fn pack_block(gguf: &[u8], kb: usize, row0: usize, b: usize) -> Tile {
        let mut t = Tile {
            qs: [0; BLOCK / 8 * TILE_ROWS * 4],
            sc: [[0; TILE_ROWS]; 8],
            mn: [[0; 2 * TILE_ROWS]; 4],
            d: [0; TILE_ROWS],
            dmin: [0; TILE_ROWS],
        };
        for r in 0..TILE_ROWS {
            let at = ((row0 + r) * kb + b) * GGUF_BLOCK_BYTES;
            let blk = &gguf[at..at + GGUF_BLOCK_BYTES];
            t.d[r] = u16::from_le_bytes([blk[0], blk[1]]);
            t.dmin[r] = u16::from_le_bytes([blk[2], blk[3]]);
            let (scales, qs) = (&blk[4..16], &blk[16..]);
            for s in 0..8 {
                let (sc, mn) = scale_min(s, scales);
                t.sc[s][r] = sc;
                t.mn[s / 2][2 * r + s % 2] = mn as i16;
            }
            // Chunk c of 32 bytes holds values 64c.. in its low nibbles and
            // 64c + 32.. in its high ones.
            let mut q = [0u8; BLOCK];
            for c in 0..4 {
                for j in 0..32 {
                    q[64 * c + j] = qs[32 * c + j] & 0x0F;
                    q[64 * c + 32 + j] = qs[32 * c + j] >> 4;
                }
            }
            for g in 0..BLOCK / 8 {
                for j in 0..4 {
                    t.qs[(g * TILE_ROWS + r) * 4 + j] = q[8 * g + j] | (q[8 * g + 4 + j] << 4);
                }
            }
        }
        t
    }
}

/// Output `row` of the product with one row of activations (`kb` blocks), in
/// plain Rust with exact integer sums: the reference for the SIMD kernel.
fn reference_dot_impl(tiles: &[Tile], kb: usize, row: usize, acts: &[QBlock]) -> f32 {
    let (nt, lane) = (row / TILE_ROWS, row % TILE_ROWS);
    let mut acc = 0f32;
    for (t, a) in tiles[nt * kb..(nt + 1) * kb].iter().zip(acts) {
        let (mut dot, mut mins) = (0i32, 0i32);
        for s in 0..8 {
            let mut isum = 0i32;
            for g in 4 * s..4 * s + 4 {
                for j in 0..4 {
                    let byte = t.qs[(g * TILE_ROWS + lane) * 4 + j];
                    isum += (byte & 0x0F) as i32 * a.qs[8 * g + j] as i32;
                    isum += (byte >> 4) as i32 * a.qs[8 * g + 4 + j] as i32;
                }
            }
            dot += isum * t.sc[s][lane] as i32;
            mins += t.mn[s / 2][2 * lane + s % 2] as i32 * a.sub_sum(s);
        }
        let d = half::f16::from_bits(t.d[lane]).to_f32();
        let dmin = half::f16::from_bits(t.dmin[lane]).to_f32();
        acc += dot as f32 * (d * a.d) - mins as f32 * (dmin * a.d);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Column, QBlock, Tile, TILE_ROWS};
    use core::arch::x86_64::*;

    /// Bytes of the next tile prefetched per sub-block (8 × 5 lines cover it).
    const PREFETCH_LINES: usize = 5;

    /// One tile column (`kb` tiles from `tiles`) against `MT` activation rows
    /// (`kb` blocks each, consecutive from `acts`): writes 16 outputs per row
    /// at `out + row · stride`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VNNI and F16C; `tiles` holds `kb` tiles, `acts` `MT · kb`
    /// blocks, and the outputs are writable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn column<const MT: usize>(c: Column<Tile>) {
        let (tiles, kb, acts, out, stride) = (c.tiles, c.kb, c.acts, c.out, c.stride);
        let mask = _mm512_set1_epi8(0x0F);
        let mut acc = [_mm512_setzero_ps(); MT];
        for b in 0..kb {
            let t = &*tiles.add(b);
            let next = tiles.wrapping_add(b + 1) as *const u8;
            let a: [&QBlock; MT] = std::array::from_fn(|m| &*acts.add(m * kb + b));
            let mut dot = [_mm512_setzero_si512(); MT];
            for s in 0..8 {
                super::super::prefetch_lines(next, s * PREFETCH_LINES, PREFETCH_LINES);
                let mut lo = [_mm512_setzero_si512(); MT];
                let mut hi = [_mm512_setzero_si512(); MT];
                for g in 4 * s..4 * s + 4 {
                    let w = _mm512_load_si512(t.qs.as_ptr().add(g * TILE_ROWS * 4) as *const _);
                    let wl = _mm512_and_si512(w, mask);
                    let wh = _mm512_and_si512(_mm512_srli_epi16::<4>(w), mask);
                    for m in 0..MT {
                        let q = a[m].qs.as_ptr().add(8 * g);
                        let al = _mm512_set1_epi32((q as *const i32).read_unaligned());
                        let ah = _mm512_set1_epi32((q.add(4) as *const i32).read_unaligned());
                        lo[m] = _mm512_dpbusd_epi32(lo[m], wl, al);
                        hi[m] = _mm512_dpbusd_epi32(hi[m], wh, ah);
                    }
                }
                let sc = _mm512_cvtepu8_epi32(_mm_load_si128(t.sc[s].as_ptr() as *const _));
                for m in 0..MT {
                    let sum = _mm512_add_epi32(lo[m], hi[m]);
                    dot[m] = _mm512_add_epi32(dot[m], _mm512_mullo_epi32(sum, sc));
                }
            }
            let mut mins = [_mm512_setzero_si512(); MT];
            for p in 0..4 {
                let mn = _mm512_load_si512(t.mn[p].as_ptr() as *const _);
                for m in 0..MT {
                    let pair = _mm512_set1_epi32(a[m].sum_pairs[p]);
                    mins[m] = _mm512_dpwssd_epi32(mins[m], mn, pair);
                }
            }
            let d = _mm512_cvtph_ps(_mm256_load_si256(t.d.as_ptr() as *const _));
            let dmin = _mm512_cvtph_ps(_mm256_load_si256(t.dmin.as_ptr() as *const _));
            for m in 0..MT {
                let da = _mm512_set1_ps(a[m].d);
                let dot_f = _mm512_cvtepi32_ps(dot[m]);
                acc[m] = _mm512_fmadd_ps(dot_f, _mm512_mul_ps(d, da), acc[m]);
                let mins_f = _mm512_cvtepi32_ps(mins[m]);
                acc[m] = _mm512_fnmadd_ps(mins_f, _mm512_mul_ps(dmin, da), acc[m]);
            }
        }
        super::super::store_rows(&acc, out, stride);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Column, QBlock, Tile, TILE_ROWS};
    use core::arch::x86_64::*;

    /// The AVX2 kernel for half a tile (8 rows, `half` 0 or 1).
    ///
    /// # Safety
    /// AVX2, FMA and F16C; pointers as for the AVX-512 kernel.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn half_column<const MT: usize>(c: &Column<Tile>, half: usize) {
        let (tiles, kb, acts) = (c.tiles, c.kb, c.acts);
        let (mask, ones) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi16(1));
        let rows = half * TILE_ROWS / 2;
        let mut acc = [_mm256_setzero_ps(); MT];
        for b in 0..kb {
            let t = &*tiles.add(b);
            let a: [&QBlock; MT] = std::array::from_fn(|m| &*acts.add(m * kb + b));
            let mut dot = [_mm256_setzero_si256(); MT];
            for s in 0..8 {
                let mut sum = [_mm256_setzero_si256(); MT];
                for g in 4 * s..4 * s + 4 {
                    let at = t.qs.as_ptr().add(g * TILE_ROWS * 4 + 4 * rows);
                    let w = _mm256_loadu_si256(at as *const _);
                    let wl = _mm256_and_si256(w, mask);
                    let wh = _mm256_and_si256(_mm256_srli_epi16::<4>(w), mask);
                    for m in 0..MT {
                        let q = a[m].qs.as_ptr().add(8 * g);
                        let al = _mm256_set1_epi32((q as *const i32).read_unaligned());
                        let ah = _mm256_set1_epi32((q.add(4) as *const i32).read_unaligned());
                        let p = _mm256_add_epi16(
                            _mm256_maddubs_epi16(wl, al),
                            _mm256_maddubs_epi16(wh, ah),
                        );
                        sum[m] = _mm256_add_epi32(sum[m], _mm256_madd_epi16(p, ones));
                    }
                }
                let sc =
                    _mm256_cvtepu8_epi32(_mm_loadl_epi64(t.sc[s][rows..].as_ptr() as *const _));
                for m in 0..MT {
                    dot[m] = _mm256_add_epi32(dot[m], _mm256_mullo_epi32(sum[m], sc));
                }
            }
            let mut mins = [_mm256_setzero_si256(); MT];
            for p in 0..4 {
                let mn = _mm256_loadu_si256(t.mn[p][2 * rows..].as_ptr() as *const _);
                for m in 0..MT {
                    let pair = _mm256_set1_epi32(a[m].sum_pairs[p]);
                    mins[m] = _mm256_add_epi32(mins[m], _mm256_madd_epi16(mn, pair));
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(t.d[rows..].as_ptr() as *const _));
            let dmin = _mm256_cvtph_ps(_mm_loadu_si128(t.dmin[rows..].as_ptr() as *const _));
            for m in 0..MT {
                let da = _mm256_set1_ps(a[m].d);
                let dot_f = _mm256_cvtepi32_ps(dot[m]);
                acc[m] = _mm256_fmadd_ps(dot_f, _mm256_mul_ps(d, da), acc[m]);
                let mins_f = _mm256_cvtepi32_ps(mins[m]);
                acc[m] = _mm256_fnmadd_ps(mins_f, _mm256_mul_ps(dmin, da), acc[m]);
            }
        }
        super::super::store_rows_avx2(&acc, c.out.add(rows), c.stride);
    }
}

impl TileKind for Tile {
    type Act = QBlock;
    const GGUF_ROW_BYTES: usize = GGUF_BLOCK_BYTES;
    const PACK: fn(&[u8], usize, usize, usize) -> Self = Tile::pack_block;
    fn reference(tiles: &[Self], kb: usize, row: usize, acts: &[QBlock]) -> f32 {
        reference_dot_impl(tiles, kb, row, acts)
    }
    #[cfg(target_arch = "x86_64")]
    const KERNELS: [unsafe fn(Column<Self>); 4] = super::kernels!(avx512::column);
    #[cfg(target_arch = "x86_64")]
    const KERNELS_AVX2: [unsafe fn(&Column<Self>, usize); 4] = super::kernels!(avx2::half_column);
}

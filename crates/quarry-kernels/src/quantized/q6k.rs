//! Q6_K weights: GGUF blocks of 256 6-bit quants (`w = d·sc·(v − 32)`, an
//! i8 scale per 16 values), repacked into tiles that keep 6 bits per weight:
//! the low four bits as nibbles and the high two bits four to a byte.

use super::act::QBlock;
use super::{Column, TileKind, BLOCK, TILE_ROWS};

/// GGUF's Q6_K block: 128 bytes of low nibbles, 64 of high bit pairs, 16 i8
/// scales, d (f16).
const GGUF_BLOCK_BYTES: usize = 210;

/// 16 rows × 256 inputs of Q6_K weights.
#[derive(Clone)]
#[repr(C, align(64))]
pub(super) struct Tile {
    /// `[group of 8 inputs (32)][row][4 bytes]`: byte `j` of group `g` holds the
    /// low nibbles of values `8g + j` (low) and `8g + 4 + j` (high).
    lo: [u8; BLOCK / 8 * TILE_ROWS * 4],
    /// `[sub-block of 16 inputs (16)][row][4 bytes]`: byte `j` of sub-block `s`
    /// holds the high bit pairs of values `16s + j`, `+4`, `+8`, `+12` at
    /// bits 0, 2, 4 and 6.
    hi: [u8; BLOCK / 16 * TILE_ROWS * 4],
    /// Scales, `[sub-block (16)][row]`.
    sc: [[i8; TILE_ROWS]; 16],
    /// Per-row f16 bits of `d`.
    d: [u16; TILE_ROWS],
}

/// The 256 unsigned 6-bit values (0..63) and 16 scales of one GGUF block, in
/// ggml's order.
fn unpack(blk: &[u8]) -> ([u8; BLOCK], [i8; 16]) {
    let (ql, qh, sc) = (&blk[..128], &blk[128..192], &blk[192..208]);
    let mut v = [0u8; BLOCK];
    for half in 0..2 {
        let (ql, qh, out) = (&ql[64 * half..], &qh[32 * half..], 128 * half);
        for l in 0..32 {
            v[out + l] = (ql[l] & 0x0F) | ((qh[l] & 3) << 4);
            v[out + l + 32] = (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4);
            v[out + l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            v[out + l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    (v, std::array::from_fn(|i| sc[i] as i8))
}

impl Tile {
    /// Pack block column `b` of the 16 rows starting at `row0`.
    fn pack_block(gguf: &[u8], kb: usize, row0: usize, b: usize) -> Tile {
        let mut t = Tile {
            lo: [0; BLOCK / 8 * TILE_ROWS * 4],
            hi: [0; BLOCK / 16 * TILE_ROWS * 4],
            sc: [[0; TILE_ROWS]; 16],
            d: [0; TILE_ROWS],
        };
        for r in 0..TILE_ROWS {
            let at = ((row0 + r) * kb + b) * GGUF_BLOCK_BYTES;
            let blk = &gguf[at..at + GGUF_BLOCK_BYTES];
            let (v, sc) = unpack(blk);
            t.d[r] = u16::from_le_bytes([blk[208], blk[209]]);
            for s in 0..16 {
                t.sc[s][r] = sc[s];
                for j in 0..4 {
                    let hi2 = |i: usize| v[16 * s + 4 * i + j] >> 4;
                    t.hi[(s * TILE_ROWS + r) * 4 + j] =
                        hi2(0) | (hi2(1) << 2) | (hi2(2) << 4) | (hi2(3) << 6);
                }
            }
            for g in 0..BLOCK / 8 {
                for j in 0..4 {
                    t.lo[(g * TILE_ROWS + r) * 4 + j] =
                        (v[8 * g + j] & 0x0F) | ((v[8 * g + 4 + j] & 0x0F) << 4);
                }
            }
        }
        t
    }

    /// The unsigned 6-bit value of input `i` (0..256) of row `lane`.
    fn value(&self, lane: usize, i: usize) -> i32 {
        let (g, j) = (i / 8, i % 4);
        let byte = self.lo[(g * TILE_ROWS + lane) * 4 + j];
        let low = if i % 8 < 4 { byte & 0x0F } else { byte >> 4 };
        let (s, quarter) = (i / 16, (i % 16) / 4);
        let high = (self.hi[(s * TILE_ROWS + lane) * 4 + j] >> (2 * quarter)) & 3;
        (low | (high << 4)) as i32
    }
}

/// Output `row` of the product with one row of activations (`kb` blocks), in
/// plain Rust with exact integer sums: the reference for the SIMD kernel.
fn reference_dot_impl(tiles: &[Tile], kb: usize, row: usize, acts: &[QBlock]) -> f32 {
    let (nt, lane) = (row / TILE_ROWS, row % TILE_ROWS);
    let mut acc = 0f32;
    for (t, a) in tiles[nt * kb..(nt + 1) * kb].iter().zip(acts) {
        let mut dot = 0i32;
        for s in 0..16 {
            let isum: i32 = (16 * s..16 * s + 16)
                .map(|i| t.value(lane, i) * a.qs[i] as i32)
                .sum();
            dot += (isum - 32 * a.sum16[s]) * t.sc[s][lane] as i32;
        }
        acc += dot as f32 * (half::f16::from_bits(t.d[lane]).to_f32() * a.d);
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Column, QBlock, Tile, TILE_ROWS};
    use core::arch::x86_64::*;

    /// Lines of the next tile prefetched per sub-block (16 × 4 cover it).
    const PREFETCH_LINES: usize = 4;
    /// `a | (b & c)` for `vpternlogd`.
    const OR_AND: i32 = 0xF8;

    /// One tile column against `MT` activation rows; see the Q4_K kernel.
    ///
    /// # Safety
    /// As for [`super::column_dispatch`].
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    pub(super) unsafe fn column<const MT: usize>(c: Column<Tile>) {
        let (tiles, kb, acts, out, stride) = (c.tiles, c.kb, c.acts, c.out, c.stride);
        let nib = _mm512_set1_epi8(0x0F);
        let top = _mm512_set1_epi8(0x30);
        let mut acc = [_mm512_setzero_ps(); MT];
        for b in 0..kb {
            let t = &*tiles.add(b);
            let next = tiles.wrapping_add(b + 1) as *const u8;
            let a: [&QBlock; MT] = std::array::from_fn(|m| &*acts.add(m * kb + b));
            let mut dot = [_mm512_setzero_si512(); MT];
            for s in 0..16 {
                super::super::prefetch_lines(next, s * PREFETCH_LINES, PREFETCH_LINES);
                let lo0 = _mm512_load_si512(t.lo.as_ptr().add(2 * s * TILE_ROWS * 4) as *const _);
                let lo1 =
                    _mm512_load_si512(t.lo.as_ptr().add((2 * s + 1) * TILE_ROWS * 4) as *const _);
                let hi = _mm512_load_si512(t.hi.as_ptr().add(s * TILE_ROWS * 4) as *const _);
                // Values 16s + 4q + j for quarter q: a nibble and two high bits.
                let w = [
                    _mm512_ternarylogic_epi32::<OR_AND>(
                        _mm512_and_si512(lo0, nib),
                        _mm512_slli_epi16::<4>(hi),
                        top,
                    ),
                    _mm512_ternarylogic_epi32::<OR_AND>(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(lo0), nib),
                        _mm512_slli_epi16::<2>(hi),
                        top,
                    ),
                    _mm512_ternarylogic_epi32::<OR_AND>(_mm512_and_si512(lo1, nib), hi, top),
                    _mm512_ternarylogic_epi32::<OR_AND>(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(lo1), nib),
                        _mm512_srli_epi16::<2>(hi),
                        top,
                    ),
                ];
                let sc = _mm512_cvtepi8_epi32(_mm_load_si128(t.sc[s].as_ptr() as *const _));
                for m in 0..MT {
                    let q = a[m].qs.as_ptr().add(16 * s);
                    let mut even = _mm512_set1_epi32(-32 * a[m].sum16[s]);
                    let mut odd = _mm512_setzero_si512();
                    for (quarter, wq) in w.iter().enumerate() {
                        let x =
                            _mm512_set1_epi32((q.add(4 * quarter) as *const i32).read_unaligned());
                        if quarter % 2 == 0 {
                            even = _mm512_dpbusd_epi32(even, *wq, x);
                        } else {
                            odd = _mm512_dpbusd_epi32(odd, *wq, x);
                        }
                    }
                    let sum = _mm512_add_epi32(even, odd);
                    dot[m] = _mm512_add_epi32(dot[m], _mm512_mullo_epi32(sum, sc));
                }
            }
            let d = _mm512_cvtph_ps(_mm256_load_si256(t.d.as_ptr() as *const _));
            for m in 0..MT {
                let scale = _mm512_mul_ps(d, _mm512_set1_ps(a[m].d));
                acc[m] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[m]), scale, acc[m]);
            }
        }
        super::super::store_rows(&acc, out, stride);
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Column, QBlock, Tile, TILE_ROWS};
    use core::arch::x86_64::*;

    /// `(a & nib) | (b & top)`.
    #[inline(always)]
    unsafe fn merge(a: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(
            _mm256_and_si256(a, _mm256_set1_epi8(0x0F)),
            _mm256_and_si256(b, _mm256_set1_epi8(0x30)),
        )
    }

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
            let a: [&QBlock; MT] = std::array::from_fn(|m| &*acts.add(m * kb + b));
            let mut dot = [_mm256_setzero_si256(); MT];
            for s in 0..16 {
                let line = |bytes: *const u8, i: usize| {
                    _mm256_loadu_si256(bytes.add(i * TILE_ROWS * 4 + 4 * rows) as *const _)
                };
                let (lo0, lo1) = (line(t.lo.as_ptr(), 2 * s), line(t.lo.as_ptr(), 2 * s + 1));
                let hi = line(t.hi.as_ptr(), s);
                let w = [
                    merge(lo0, _mm256_slli_epi16::<4>(hi)),
                    merge(_mm256_srli_epi16::<4>(lo0), _mm256_slli_epi16::<2>(hi)),
                    merge(lo1, hi),
                    merge(_mm256_srli_epi16::<4>(lo1), _mm256_srli_epi16::<2>(hi)),
                ];
                let sc =
                    _mm256_cvtepi8_epi32(_mm_loadl_epi64(t.sc[s][rows..].as_ptr() as *const _));
                for m in 0..MT {
                    let q = a[m].qs.as_ptr().add(16 * s);
                    let x: [__m256i; 4] = std::array::from_fn(|i| {
                        _mm256_set1_epi32((q.add(4 * i) as *const i32).read_unaligned())
                    });
                    // Each vpmaddubsw pair is at most 2·63·127: two add up
                    // within an i16.
                    let p01 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(w[0], x[0]),
                        _mm256_maddubs_epi16(w[1], x[1]),
                    );
                    let p23 = _mm256_add_epi16(
                        _mm256_maddubs_epi16(w[2], x[2]),
                        _mm256_maddubs_epi16(w[3], x[3]),
                    );
                    let sum = _mm256_add_epi32(
                        _mm256_madd_epi16(p01, ones),
                        _mm256_madd_epi16(p23, ones),
                    );
                    let sum = _mm256_sub_epi32(sum, _mm256_set1_epi32(32 * a[m].sum16[s]));
                    dot[m] = _mm256_add_epi32(dot[m], _mm256_mullo_epi32(sum, sc));
                }
            }
            let d = _mm256_cvtph_ps(_mm_loadu_si128(t.d[rows..].as_ptr() as *const _));
            for m in 0..MT {
                let scale = _mm256_mul_ps(d, _mm256_set1_ps(a[m].d));
                acc[m] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot[m]), scale, acc[m]);
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

//! The 16-bit coarse row filter (AVX-512 with VBMI2 for 16-bit compress):
//! 32 rows per instruction over the coarse copy (`search::coarse`), then
//! the exact f32 coordinates of the rows that pass, by gathers.
//!
//! Safety contract of every `unsafe fn` here: the CPU runs the AVX-512
//! level and VBMI2 (`super::has_vbmi2`), which an `Isa` whose private
//! `vbmi2` flag is set guarantees (it is set only after that detection).

use super::super::Candidates;
use super::avx512::gather_coordinates;
use super::prefetch_blocks32;
use std::arch::x86_64::*;

/// Rows per segment: offsets within one fit the 16-bit lanes.
const SEGMENT: usize = 1 << 16;

/// Lanes of elements `base..min(base + 32, n)`.
#[inline]
fn live32(n: usize, base: usize) -> __mmask32 {
    let left = n - base;
    if left >= 32 {
        u32::MAX
    } else {
        (1u32 << left) - 1
    }
}

/// Stores the 16-bit offsets of `off` that `hit` selects at `dst + *count`,
/// as one whole vector (32 values: `dst` needs 32 of slack), and counts
/// them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn push_hits(dst: *mut u16, count: &mut usize, hit: __mmask32, off: __m512i) {
    _mm512_storeu_si512(
        dst.add(*count).cast(),
        _mm512_maskz_compress_epi16(hit, off),
    );
    *count += hit.count_ones() as usize;
}

/// Rows whose integer distance to `q` is <= `limit`, then their exact
/// coordinates from the f32 columns `exact`. Unsigned compares: a sum of
/// two |differences| of 15-bit values reaches 65,532, past i16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi2,popcnt")]
pub(in crate::arch) unsafe fn collect(
    cols: [&[i16]; 2],
    q: [i16; 2],
    limit: u16,
    exact: [&[f32]; 2],
    cand: &mut Candidates,
) {
    let n = cols[0].len();
    let (qa, qb) = (_mm512_set1_epi16(q[0]), _mm512_set1_epi16(q[1]));
    let lim = _mm512_set1_epi16(limit as i16);
    let first: [u16; 32] = std::array::from_fn(|i| i as u16);
    let lanes = _mm512_loadu_si512(first.as_ptr().cast());
    let step = _mm512_set1_epi16(32);
    let rows = &mut cand.rows;
    rows.clear();
    rows.reserve(n + 32);
    // Offsets within the segment, 16-bit, widened after each segment.
    let mut offsets: Vec<u16> = Vec::with_capacity(SEGMENT.min(n) + 32);
    let (a, b) = (cols[0].as_ptr(), cols[1].as_ptr());
    let ex = [exact[0].as_ptr(), exact[1].as_ptr()];
    let mut start = 0;
    while start < n {
        let end = (start + SEGMENT).min(n);
        let dst = offsets.as_mut_ptr();
        let mut count = 0usize;
        let mut off = lanes;
        let mut base = start;
        // |x - q| <= 32,766 fits i16; the sum of two fits u16.
        let hits = |xa: __m512i, xb: __m512i, live: __mmask32| {
            let d = _mm512_add_epi16(
                _mm512_abs_epi16(_mm512_sub_epi16(xa, qa)),
                _mm512_abs_epi16(_mm512_sub_epi16(xb, qb)),
            );
            _mm512_mask_cmple_epu16_mask(live, d, lim)
        };
        // Two blocks of 32 rows per step, unmasked loads: independent work
        // for the compress unit while the other block's loads wait.
        while base + 64 <= end {
            let h0 = hits(
                _mm512_loadu_si512(a.add(base).cast()),
                _mm512_loadu_si512(b.add(base).cast()),
                u32::MAX,
            );
            let h1 = hits(
                _mm512_loadu_si512(a.add(base + 32).cast()),
                _mm512_loadu_si512(b.add(base + 32).cast()),
                u32::MAX,
            );
            prefetch_blocks32(ex, h0, base);
            prefetch_blocks32(ex, h1, base + 32);
            let off1 = _mm512_add_epi16(off, step);
            push_hits(dst, &mut count, h0, off);
            push_hits(dst, &mut count, h1, off1);
            off = _mm512_add_epi16(off1, step);
            base += 64;
        }
        while base < end {
            let live = live32(end, base);
            let hit = hits(
                _mm512_maskz_loadu_epi16(live, a.add(base)),
                _mm512_maskz_loadu_epi16(live, b.add(base)),
                live,
            );
            prefetch_blocks32(ex, hit, base);
            push_hits(dst, &mut count, hit, off);
            off = _mm512_add_epi16(off, step);
            base += 32;
        }
        offsets.set_len(count);
        rows.extend(offsets.iter().map(|&o| (start + usize::from(o)) as u32));
        start = end;
    }
    gather_coordinates::<false>(exact[0].as_ptr().cast(), exact[1].as_ptr().cast(), n, cand);
}

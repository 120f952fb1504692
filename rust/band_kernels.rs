//! The band search's inner loop: distances of one bucket's rows to a query
//! and the rows within a limit, 16 at a time with AVX-512 gathers where the
//! CPU has them. Same f32 arithmetic as every other path:
//! |vb - qb| + |x_o[row] - qo|.

use crate::columns::Col;
use crate::kernels::Isa;
use crate::search::Neighbour;

/// A bucket's rows, their values in the band dimension, and the query.
#[derive(Clone, Copy)]
pub struct Block<'a> {
    /// Rows of the bucket.
    pub rows: &'a [u32],
    /// Their values in the band dimension.
    pub vals: &'a [f32],
    /// The other dimension's column.
    pub other: Col<'a>,
    /// Query coordinate in the band dimension.
    pub qb: f32,
    /// Query coordinate in the other dimension.
    pub qo: f32,
}

/// Calls `f(row, dist)` for every row of the block (portable version).
#[inline(always)]
pub fn each_distance(b: Block<'_>, mut f: impl FnMut(u32, f32)) {
    match b.other {
        Col::F32(c) => {
            for (&row, &vb) in b.rows.iter().zip(b.vals) {
                f(row, (vb - b.qb).abs() + (c[row as usize] - b.qo).abs());
            }
        }
        Col::F16(c) => {
            for (&row, &vb) in b.rows.iter().zip(b.vals) {
                let xo = half::f16::from_bits(c[row as usize]).to_f32();
                f(row, (vb - b.qb).abs() + (xo - b.qo).abs());
            }
        }
    }
}

/// The distance of every row of the block, into `out` (cleared first).
pub fn distances(isa: Isa, b: Block<'_>, out: &mut Vec<f32>) {
    out.clear();
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `Avx512` is only produced after run-time detection.
        unsafe { x86::distances(b, out) };
        return;
    }
    let _ = isa;
    each_distance(b, |_, dist| out.push(dist));
}

/// Appends to `out` every row of the block other than `exclude` at distance
/// <= `limit`, in block order.
pub fn collect_within(isa: Isa, b: Block<'_>, limit: f32, exclude: u32, out: &mut Vec<Neighbour>) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        // SAFETY: `Avx512` is only produced after run-time detection.
        unsafe { x86::collect_within(b, limit, exclude, out) };
        return;
    }
    let _ = isa;
    each_distance(b, |row, dist| {
        if dist <= limit && row != exclude {
            out.push(Neighbour { row, dist });
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Block;
    use crate::columns::Col;
    use crate::kernels::x86::{gather16, live_mask, store_pairs};
    use crate::search::Neighbour;
    use std::arch::x86_64::*;

    /// Other-dimension values of 16 rows.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn gather_other(other: Col<'_>, r: __m512i, live: __mmask16) -> __m512 {
        match other {
            Col::F32(c) => gather16::<false>(c.as_ptr().cast(), c.len(), r, live),
            Col::F16(c) => gather16::<true>(c.as_ptr().cast(), c.len(), r, live),
        }
    }

    /// Distances and rows of the block's rows `i..i + 16` (masked to `live`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn dist16(b: &Block<'_>, i: usize, live: __mmask16) -> (__m512i, __m512) {
        let r = _mm512_maskz_loadu_epi32(live, b.rows.as_ptr().add(i).cast());
        let vb = _mm512_maskz_loadu_ps(live, b.vals.as_ptr().add(i));
        let xo = gather_other(b.other, r, live);
        let d = _mm512_add_ps(
            _mm512_abs_ps(_mm512_sub_ps(vb, _mm512_set1_ps(b.qb))),
            _mm512_abs_ps(_mm512_sub_ps(xo, _mm512_set1_ps(b.qo))),
        );
        (r, d)
    }

    /// See `super::distances`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn distances(b: Block<'_>, out: &mut Vec<f32>) {
        let n = b.rows.len();
        out.reserve(n + 16);
        let dst = out.as_mut_ptr();
        let mut i = 0;
        while i < n {
            let (_, d) = dist16(&b, i, live_mask(n, i));
            _mm512_storeu_ps(dst.add(i), d);
            i += 16;
        }
        out.set_len(n);
    }

    /// See `super::collect_within`. Hits are compressed in registers and
    /// stored as whole (row, dist) vectors; `out` keeps 16 pairs of slack.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    pub unsafe fn collect_within(b: Block<'_>, limit: f32, exclude: u32, out: &mut Vec<Neighbour>) {
        let n = b.rows.len();
        out.reserve(n + 16);
        let mut count = out.len();
        let dst = out.as_mut_ptr().cast::<i32>();
        let lim = _mm512_set1_ps(limit);
        let skip = _mm512_set1_epi32(exclude as i32);
        let mut i = 0;
        while i < n {
            let live = live_mask(n, i);
            let (r, d) = dist16(&b, i, live);
            let hit = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, lim)
                & _mm512_cmpneq_epi32_mask(r, skip);
            // Branch-free: whether a block has hits is close to a coin flip.
            let rc = _mm512_maskz_compress_epi32(hit, r);
            let dc = _mm512_maskz_compress_epi32(hit, _mm512_castps_si512(d));
            store_pairs(dst.add(2 * count), rc, dc);
            count += (hit as u32).count_ones() as usize;
            i += 16;
        }
        out.set_len(count);
    }
}

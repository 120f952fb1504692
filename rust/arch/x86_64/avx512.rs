//! The AVX-512 level (F, BW, VL, DQ): 16 f32 lanes, mask registers and
//! compress. Hand-written passes for the default two-dimensional subspace
//! and the candidate kernels; the portable bodies, compiled with these
//! features, for the rest. Same arithmetic as `portable.rs`.
//!
//! Safety contract of every `unsafe fn` here: the CPU runs the AVX-512 level (`super::has_avx512`),
//! which `Isa` guarantees, and the inputs meet the preconditions the
//! `Isa` methods check before dispatching (columns of one length, rows
//! within their column, a candidate set's vectors of one length).

use super::super::portable;
use super::super::{Block, Candidates, PenaltyBuffers};
use super::{biased_base, ROW_BIAS};
use crate::column::Col;
use crate::neighbour::Neighbour;
use std::arch::x86_64::*;

/// Elements `at..at + 16` of a column (lanes outside `live` are 0 and
/// never read).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load16<const HALF: bool>(col: *const u8, at: usize, live: __mmask16) -> __m512 {
    if HALF {
        _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, col.cast::<i16>().add(at)))
    } else {
        _mm512_maskz_loadu_ps(live, col.cast::<f32>().add(at))
    }
}

/// Elements at rows `r` of a column of `n` (lanes outside `live`: 0).
/// Float16 has no 16-bit gather: 32 bits are gathered at each element and
/// the low half kept. Only the last element has 2 bytes after it that may
/// lie past the data, so that lane is read on its own.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn gather16<const HALF: bool>(
    col: *const u8,
    n: usize,
    r: __m512i,
    live: __mmask16,
) -> __m512 {
    let idx = _mm512_xor_si512(r, _mm512_set1_epi32(ROW_BIAS));
    if !HALF {
        let base = biased_base(col, 4).cast();
        return _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), live, idx, base);
    }
    let last = (n - 1) as u32 as i32;
    let tail = _mm512_mask_cmpeq_epi32_mask(live, r, _mm512_set1_epi32(last));
    let base = biased_base(col, 2).cast();
    let g = _mm512_mask_i32gather_epi32::<2>(_mm512_setzero_si512(), live & !tail, idx, base);
    let mut x = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    if tail != 0 {
        let bits = col.cast::<u16>().wrapping_add(n - 1).read_unaligned();
        let v = half::f16::from_bits(bits).to_f32();
        x = _mm512_mask_mov_ps(x, tail, _mm512_set1_ps(v));
    }
    x
}

/// 16 distances of rows `base..base + 16` (lanes past `live` masked off).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dist16<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    qa: __m512,
    qb: __m512,
    base: usize,
    live: __mmask16,
) -> __m512 {
    let xa = load16::<HALF>(a, base, live);
    let xb = load16::<HALF>(b, base, live);
    _mm512_add_ps(
        _mm512_abs_ps(_mm512_sub_ps(xa, qa)),
        _mm512_abs_ps(_mm512_sub_ps(xb, qb)),
    )
}

/// Stores 16 (row, dist) pairs at `dst` (32 i32), interleaving the two
/// vectors: `Neighbour` is (row, dist) in memory.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store_pairs(dst: *mut i32, rows: __m512i, dists: __m512i) {
    let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    _mm512_storeu_si512(dst.cast(), _mm512_permutex2var_epi32(rows, lo, dists));
    _mm512_storeu_si512(
        dst.add(16).cast(),
        _mm512_permutex2var_epi32(rows, hi, dists),
    );
}

/// Lanes of rows `base..min(base + 16, n)`.
#[inline]
pub(super) fn live_mask(n: usize, base: usize) -> __mmask16 {
    let left = n - base;
    if left >= 16 {
        0xFFFF
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// Folds lane minima `(d, r)` into `(best, best_row)`: strictly smaller
/// wins, and an equal distance wins only with a lower row, so the result
/// does not depend on how blocks were spread over accumulators.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn fold_min(best: &mut __m512, best_row: &mut __m512i, d: __m512, r: __m512i) {
    let lt = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, *best);
    let eq = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(d, *best);
    let lower = _mm512_mask_cmplt_epu32_mask(eq, r, *best_row);
    let take = lt | lower;
    *best = _mm512_mask_mov_ps(*best, take, d);
    *best_row = _mm512_mask_mov_epi32(*best_row, take, r);
}

/// Nearest row in one pass. Four independent accumulators per 64 rows keep
/// the compare-and-blend chain off the critical path (one chain is latency
/// bound at ~5 cycles per 16 rows); each lane keeps its first minimum, then
/// lanes and accumulators are reduced to the lowest row among equal
/// distances.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn nearest2<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    q: [f32; 2],
) -> Neighbour {
    let (qa, qb) = (_mm512_set1_ps(q[0]), _mm512_set1_ps(q[1]));
    let inf = _mm512_set1_ps(f32::INFINITY);
    let mut best = [inf; 4];
    let mut best_row = [_mm512_setzero_si512(); 4];
    let lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut rows = [
        lane,
        _mm512_add_epi32(lane, _mm512_set1_epi32(16)),
        _mm512_add_epi32(lane, _mm512_set1_epi32(32)),
        _mm512_add_epi32(lane, _mm512_set1_epi32(48)),
    ];
    let step64 = _mm512_set1_epi32(64);
    let mut base = 0;
    while base + 64 <= n {
        for j in 0..4 {
            let d = dist16::<HALF>(a, b, qa, qb, base + 16 * j, 0xFFFF);
            let better = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, best[j]);
            best[j] = _mm512_mask_mov_ps(best[j], better, d);
            best_row[j] = _mm512_mask_mov_epi32(best_row[j], better, rows[j]);
            rows[j] = _mm512_add_epi32(rows[j], step64);
        }
        base += 64;
    }
    // Remaining rows, 16 at a time, into the first accumulator.
    let mut r = _mm512_add_epi32(lane, _mm512_set1_epi32(base as u32 as i32));
    while base < n {
        let live = live_mask(n, base);
        let d = dist16::<HALF>(a, b, qa, qb, base, live);
        let better = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(live, d, best[0]);
        best[0] = _mm512_mask_mov_ps(best[0], better, d);
        best_row[0] = _mm512_mask_mov_epi32(best_row[0], better, r);
        r = _mm512_add_epi32(r, _mm512_set1_epi32(16));
        base += 16;
    }
    let (mut b0, mut r0) = (best[0], best_row[0]);
    for j in 1..4 {
        fold_min(&mut b0, &mut r0, best[j], best_row[j]);
    }
    let dist = _mm512_reduce_min_ps(b0);
    let at = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(b0, _mm512_set1_ps(dist));
    let row = _mm512_mask_reduce_min_epu32(at, r0);
    Neighbour { row, dist }
}

/// Stores the lanes of `rows` that `hit` selects at `dst + *count`, as one
/// whole vector (16 values: `dst` needs 16 of slack), and counts them.
#[inline]
#[target_feature(enable = "avx512f,popcnt")]
unsafe fn push_hits(dst: *mut u32, count: &mut usize, hit: __mmask16, rows: __m512i) {
    _mm512_storeu_si512(
        dst.add(*count).cast(),
        _mm512_maskz_compress_epi32(hit, rows),
    );
    *count += (hit as u32).count_ones() as usize;
}

/// Rows at distance <= `limit`, ascending, into `hits`.
///
/// The callers' limits hold about k of n rows (k = redund_nn), so most
/// blocks of 32 rows hold no hit and one well-predicted branch skips their
/// stores (as in the AVX2 level, where it halved this pass's time). Each
/// block's hit rows are compressed in a register and stored whole (the
/// memory form of compress is microcoded and several times slower on
/// Intel); `hits` keeps 16 slack.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
unsafe fn hit_rows<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    q: [f32; 2],
    limit: f32,
    hits: &mut Vec<u32>,
) {
    let (qa, qb) = (_mm512_set1_ps(q[0]), _mm512_set1_ps(q[1]));
    let lim = _mm512_set1_ps(limit);
    let mut rows = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let step = _mm512_set1_epi32(16);
    hits.clear();
    hits.reserve(n + 16);
    let dst = hits.as_mut_ptr();
    let mut count = 0usize;
    let mut base = 0;
    // Whole blocks of 32 rows without lane masks, then the rest.
    while base + 32 <= n {
        let d0 = dist16::<HALF>(a, b, qa, qb, base, 0xFFFF);
        let d1 = dist16::<HALF>(a, b, qa, qb, base + 16, 0xFFFF);
        let hit0 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(d0, lim);
        let hit1 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(d1, lim);
        let rows1 = _mm512_add_epi32(rows, step);
        if hit0 | hit1 != 0 {
            push_hits(dst, &mut count, hit0, rows);
            push_hits(dst, &mut count, hit1, rows1);
        }
        rows = _mm512_add_epi32(rows1, step);
        base += 32;
    }
    while base < n {
        let live = live_mask(n, base);
        let d = dist16::<HALF>(a, b, qa, qb, base, live);
        let hit = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, lim);
        push_hits(dst, &mut count, hit, rows);
        rows = _mm512_add_epi32(rows, step);
        base += 16;
    }
    hits.set_len(count);
}

/// Rows (except `exclude`) at distance <= `limit`, in no set order. The
/// few hits get their distances recomputed by gathers, with the same
/// arithmetic as the pass, straight into `out`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
#[allow(clippy::too_many_arguments)]
unsafe fn within2<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    q: [f32; 2],
    limit: f32,
    exclude: u32,
    hits: &mut Vec<u32>,
    out: &mut Vec<Neighbour>,
) {
    hit_rows::<HALF>(a, b, n, q, limit, hits);
    if let Some(at) = hits.iter().position(|&r| r == exclude) {
        hits.swap_remove(at);
    }
    let (qa, qb) = (_mm512_set1_ps(q[0]), _mm512_set1_ps(q[1]));
    let count = hits.len();
    out.clear();
    out.reserve(count + 16);
    let o = out.as_mut_ptr().cast::<i32>();
    let mut i = 0;
    while i < count {
        let live = live_mask(count, i);
        let r = _mm512_maskz_loadu_epi32(live, hits.as_ptr().add(i).cast());
        let xa = gather16::<HALF>(a, n, r, live);
        let xb = gather16::<HALF>(b, n, r, live);
        let d = _mm512_castps_si512(_mm512_add_ps(
            _mm512_abs_ps(_mm512_sub_ps(xa, qa)),
            _mm512_abs_ps(_mm512_sub_ps(xb, qb)),
        ));
        store_pairs(o.add(2 * i), r, d);
        i += 16;
    }
    out.set_len(count);
}

super::two_column_passes!("avx512f,avx512bw,avx512vl,avx512dq,popcnt");

/// The portable body compiled for AVX-512; two-dimensional subspaces get
/// one fused pass (distances, least and greatest together).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub(in crate::arch) unsafe fn subsample_distances(
    cols: &[&[f32]],
    q: &[f32],
    out: &mut Vec<f32>,
) -> (f32, f32) {
    let (&[a, b], &[qa, qb]) = (cols, q) else {
        return portable::subsample_body(cols, q, out);
    };
    let n = a.len();
    out.clear();
    out.reserve(n);
    let (qa, qb) = (_mm512_set1_ps(qa), _mm512_set1_ps(qb));
    let mut lo = _mm512_set1_ps(f32::INFINITY);
    let mut hi = _mm512_setzero_ps();
    let mut base = 0;
    while base < n {
        let live = live_mask(n, base);
        let d = dist16::<false>(a.as_ptr().cast(), b.as_ptr().cast(), qa, qb, base, live);
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(base), live, d);
        lo = _mm512_mask_min_ps(lo, live, lo, d);
        hi = _mm512_mask_max_ps(hi, live, hi, d);
        base += 16;
    }
    out.set_len(n);
    (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn rows16(cand: &Candidates, at: usize, live: __mmask16) -> __m512i {
    _mm512_maskz_loadu_epi32(live, cand.rows.as_ptr().add(at).cast())
}

/// Distances of 16 candidates from `at` to `(ca, cb)` (lanes outside
/// `live`: 0): the pass's own arithmetic over the gathered coordinates.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn cand_dist16(
    cand: &Candidates,
    at: usize,
    live: __mmask16,
    ca: __m512,
    cb: __m512,
) -> __m512 {
    let (xa, xb) = (cand.xa.as_ptr().cast(), cand.xb.as_ptr().cast());
    dist16::<false>(xa, xb, ca, cb, at, live)
}

/// The coordinates of the rows in `cand.rows` from columns `a` and `b`
/// (`n` values each) into `cand.xa`, `cand.xb`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(super) unsafe fn gather_coordinates<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    cand: &mut Candidates,
) {
    let count = cand.rows.len();
    for x in [&mut cand.xa, &mut cand.xb] {
        x.clear();
        x.reserve(count + 16);
    }
    let mut i = 0;
    while i < count {
        let live = live_mask(count, i);
        let r = rows16(cand, i, live);
        _mm512_storeu_ps(cand.xa.as_mut_ptr().add(i), gather16::<HALF>(a, n, r, live));
        _mm512_storeu_ps(cand.xb.as_mut_ptr().add(i), gather16::<HALF>(b, n, r, live));
        i += 16;
    }
    cand.xa.set_len(count);
    cand.xb.set_len(count);
}

/// The portable body compiled with DQ's conversions, which vectorise it.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub(in crate::arch) unsafe fn quantise_column(
    col: &[f32],
    c: f64,
    scale: f64,
    span: f64,
    out: &mut [i16],
) {
    portable::quantise_body(col, c, scale, span, out)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(in crate::arch) unsafe fn nearest_of(cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
    let count = cand.len();
    if count == 0 {
        return None;
    }
    let (qa, qb) = (_mm512_set1_ps(q[0]), _mm512_set1_ps(q[1]));
    let mut best = _mm512_set1_ps(f32::INFINITY);
    let mut best_row = _mm512_set1_epi32(-1);
    let mut i = 0;
    while i < count {
        let live = live_mask(count, i);
        let d = cand_dist16(cand, i, live, qa, qb);
        // Rows ascend, so a lane's first minimum is its lowest row.
        let better = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(live, d, best);
        best = _mm512_mask_mov_ps(best, better, d);
        best_row = _mm512_mask_mov_epi32(best_row, better, rows16(cand, i, live));
        i += 16;
    }
    let dist = _mm512_reduce_min_ps(best);
    if dist == f32::INFINITY {
        // No lane ever improved (only overflowing inputs get here): the
        // first candidate, as the portable body answers.
        return portable::nearest_of_body(cand, q);
    }
    let at = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(best, _mm512_set1_ps(dist));
    let row = _mm512_mask_reduce_min_epu32(at, best_row);
    Some(Neighbour { row, dist })
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(in crate::arch) unsafe fn distances_to(
    cand: &mut Candidates,
    c: [f32; 2],
    exclude: u32,
    limit: f32,
) -> usize {
    let count = cand.len();
    let (ca, cb) = (_mm512_set1_ps(c[0]), _mm512_set1_ps(c[1]));
    let t = _mm512_set1_ps(limit);
    let mut within = 0;
    let (inf, skip) = (
        _mm512_set1_ps(f32::INFINITY),
        _mm512_set1_epi32(exclude as i32),
    );
    cand.dist.clear();
    cand.dist.reserve(count + 16);
    let mut i = 0;
    while i < count {
        let live = live_mask(count, i);
        let d = cand_dist16(cand, i, live, ca, cb);
        let excluded = _mm512_cmpeq_epi32_mask(rows16(cand, i, live), skip) & live;
        let d = _mm512_mask_mov_ps(d, excluded, inf);
        _mm512_storeu_ps(cand.dist.as_mut_ptr().add(i), d);
        within += (_mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, t) as u32).count_ones();
        i += 16;
    }
    cand.dist.set_len(count);
    within as usize
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(in crate::arch) unsafe fn count_le2(dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
    let (t1, t2) = (_mm512_set1_ps(t1), _mm512_set1_ps(t2));
    let (mut c1, mut c2) = (0, 0);
    let mut i = 0;
    while i < dist.len() {
        let live = live_mask(dist.len(), i);
        let d = _mm512_maskz_loadu_ps(live, dist.as_ptr().add(i));
        c1 += (_mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, t1) as u32).count_ones();
        c2 += (_mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, t2) as u32).count_ones();
        i += 16;
    }
    (c1 as usize, c2 as usize)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(in crate::arch) unsafe fn emit(
    cand: &Candidates,
    kth: f32,
    ties: usize,
    out: &mut Vec<Neighbour>,
) {
    let count = cand.len();
    let t = _mm512_set1_ps(kth);
    let mut ties = ties;
    out.clear();
    out.reserve(count + 16);
    let o = out.as_mut_ptr().cast::<i32>();
    let mut kept = 0usize;
    let mut i = 0;
    while i < count {
        let live = live_mask(count, i);
        let d = _mm512_maskz_loadu_ps(live, cand.dist.as_ptr().add(i));
        let mut keep = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(live, d, t);
        let mut tied = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(live, d, t);
        while tied != 0 && ties > 0 {
            keep |= tied & tied.wrapping_neg();
            tied &= tied - 1;
            ties -= 1;
        }
        let d = _mm512_castps_si512(d);
        let r = rows16(cand, i, live);
        store_pairs(
            o.add(2 * kept),
            _mm512_maskz_compress_epi32(keep, r),
            _mm512_maskz_compress_epi32(keep, d),
        );
        kept += (keep as u32).count_ones() as usize;
        i += 16;
    }
    out.set_len(kept);
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(in crate::arch) unsafe fn between(dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
    let (l, h) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
    out.clear();
    out.reserve(dist.len() + 16);
    let mut kept = 0usize;
    let mut i = 0;
    while i < dist.len() {
        let live = live_mask(dist.len(), i);
        let d = _mm512_maskz_loadu_ps(live, dist.as_ptr().add(i));
        let above = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(live, d, l);
        let keep = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(above, d, h);
        _mm512_storeu_ps(
            out.as_mut_ptr().add(kept),
            _mm512_maskz_compress_ps(keep, d),
        );
        kept += (keep as u32).count_ones() as usize;
        i += 16;
    }
    out.set_len(kept);
}

/// Other-dimension values of 16 band rows.
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
unsafe fn band_dist16(b: &Block<'_>, i: usize, live: __mmask16) -> (__m512i, __m512) {
    let r = _mm512_maskz_loadu_epi32(live, b.rows.as_ptr().add(i).cast());
    let vb = _mm512_maskz_loadu_ps(live, b.vals.as_ptr().add(i));
    let xo = gather_other(b.other, r, live);
    let d = _mm512_add_ps(
        _mm512_abs_ps(_mm512_sub_ps(vb, _mm512_set1_ps(b.qb))),
        _mm512_abs_ps(_mm512_sub_ps(xo, _mm512_set1_ps(b.qo))),
    );
    (r, d)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(in crate::arch) unsafe fn band_distances(b: Block<'_>, out: &mut Vec<f32>) {
    let n = b.rows.len();
    out.clear();
    out.reserve(n + 16);
    let dst = out.as_mut_ptr();
    let mut i = 0;
    while i < n {
        let (_, d) = band_dist16(&b, i, live_mask(n, i));
        _mm512_storeu_ps(dst.add(i), d);
        i += 16;
    }
    out.set_len(n);
}

/// Hits are compressed in registers and stored as whole (row, dist)
/// vectors; `out` keeps 16 pairs of slack. Branch-free: whether a block
/// has hits is close to a coin flip.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
pub(in crate::arch) unsafe fn band_collect_within(
    b: Block<'_>,
    limit: f32,
    exclude: u32,
    out: &mut Vec<Neighbour>,
) {
    let n = b.rows.len();
    out.reserve(n + 16);
    let mut count = out.len();
    let dst = out.as_mut_ptr().cast::<i32>();
    let lim = _mm512_set1_ps(limit);
    let skip = _mm512_set1_epi32(exclude as i32);
    let mut i = 0;
    while i < n {
        let live = live_mask(n, i);
        let (r, d) = band_dist16(&b, i, live);
        let hit =
            _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, lim) & _mm512_cmpneq_epi32_mask(r, skip);
        let rc = _mm512_maskz_compress_epi32(hit, r);
        let dc = _mm512_maskz_compress_epi32(hit, _mm512_castps_si512(d));
        store_pairs(dst.add(2 * count), rc, dc);
        count += (hit as u32).count_ones() as usize;
        i += 16;
    }
    out.set_len(count);
}

/// The portable body compiled for AVX-512 (the compiler vectorises the
/// weight loops).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
pub(in crate::arch) unsafe fn penalty_weights(
    neighbours: &[Neighbour],
    exp: f64,
    unit: f64,
    p: &mut PenaltyBuffers,
) {
    portable::penalty_body(neighbours, exp, unit, p)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
pub(in crate::arch) unsafe fn widen_f16(bits: &[u16], out: &mut Vec<f32>) {
    let n = bits.len();
    out.clear();
    out.reserve(n);
    let mut i = 0;
    while i < n {
        let x = load16::<true>(bits.as_ptr().cast(), i, live_mask(n, i));
        _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), live_mask(n, i), x);
        i += 16;
    }
    out.set_len(n);
}

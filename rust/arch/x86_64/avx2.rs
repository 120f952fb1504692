//! The AVX2 level (x86-64-v3: AVX2, FMA, F16C, BMI1/2, POPCNT), for the
//! many CPUs without AVX-512 (AMD Zen 2/3, Intel before Ice Lake).
//!
//! 8 f32 lanes and no mask registers or compress instruction: a compare
//! gives a lane mask (`movemask`), and the selected lanes are left-packed
//! by a permutation looked up from that mask (`PACK`), then stored as one
//! whole vector. No PDEP/PEXT (microcoded on Zen 2). Rows past the last
//! whole block of 8 are done by scalar code with the same arithmetic, or by
//! masked loads and gathers. Same arithmetic as `portable.rs` throughout.
//!
//! Safety contract of every `unsafe fn` here: the CPU runs the AVX2 level (`super::has_avx2`),
//! which `Isa` guarantees, and the inputs meet the preconditions the
//! `Isa` methods check before dispatching (columns of one length, rows
//! within their column, a candidate set's vectors of one length).

use super::super::portable;
use super::super::{Block, Candidates, PenaltyBuffers};
use super::{biased_base, prefetch_block, prefetch_blocks32, ROW_BIAS};
use crate::column::Col;
use crate::neighbour::Neighbour;
use std::arch::x86_64::*;

/// `PACK[m]`: the lanes set in the 8-bit mask `m`, lowest first: the
/// permutation that left-packs those lanes (8 KiB, so one load serves each
/// block instead of unpacking a compact table).
static PACK: [[u32; 8]; 256] = {
    let mut table = [[0u32; 8]; 256];
    let mut m = 0;
    while m < 256 {
        let (mut at, mut lane) = (0, 0);
        while lane < 8 {
            if (m >> lane) & 1 == 1 {
                table[m][at] = lane as u32;
                at += 1;
            }
            lane += 1;
        }
        m += 1;
    }
    table
};

/// The permutation that moves the lanes set in `mask` (8 bits) to the
/// front, in order.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pack_perm(mask: u32) -> __m256i {
    _mm256_loadu_si256(PACK[mask as usize & 0xFF].as_ptr().cast())
}

/// Stores the lanes of `v` that `mask` selects at `dst + at`, as one whole
/// vector (`dst` needs 8 of slack). The caller advances its count by the
/// masks' total popcount once per step, so consecutive stores do not wait
/// on each other's counts.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn pack_store(dst: *mut u32, at: usize, mask: u32, v: __m256i) {
    let packed = _mm256_permutevar8x32_epi32(v, pack_perm(mask));
    _mm256_storeu_si256(dst.add(at).cast(), packed);
}

/// `pack_store` of one block, counting its lanes.
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn push_hits(dst: *mut u32, count: &mut usize, mask: u32, v: __m256i) {
    pack_store(dst, *count, mask, v);
    *count += mask.count_ones() as usize;
}

/// `pack_store` of two consecutive blocks (`mask` has 16 bits).
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn push_hits2(dst: *mut u32, count: &mut usize, mask: u32, v0: __m256i, v1: __m256i) {
    let first = (mask & 0xFF).count_ones() as usize;
    pack_store(dst, *count, mask, v0);
    pack_store(dst, *count + first, mask >> 8, v1);
    *count += mask.count_ones() as usize;
}

/// Stores 8 (row, dist) pairs at `dst` (16 i32), interleaving the two
/// vectors: `Neighbour` is (row, dist) in memory.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn store_pairs(dst: *mut i32, rows: __m256i, dists: __m256i) {
    let lo = _mm256_unpacklo_epi32(rows, dists); // r0 d0 r1 d1 | r4 d4 r5 d5
    let hi = _mm256_unpackhi_epi32(rows, dists); // r2 d2 r3 d3 | r6 d6 r7 d7
    _mm256_storeu_si256(dst.cast(), _mm256_permute2x128_si256::<0x20>(lo, hi));
    _mm256_storeu_si256(dst.add(8).cast(), _mm256_permute2x128_si256::<0x31>(lo, hi));
}

/// Left-packs the pairs of `rows` and `dists` that `mask` selects and
/// stores them at pair `*count` of `dst` (8 pairs of slack), counting them.
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn push_pairs(dst: *mut i32, count: &mut usize, mask: u32, rows: __m256i, dists: __m256) {
    let perm = pack_perm(mask);
    let r = _mm256_permutevar8x32_epi32(rows, perm);
    let d = _mm256_permutevar8x32_epi32(_mm256_castps_si256(dists), perm);
    store_pairs(dst.add(2 * *count), r, d);
    *count += mask.count_ones() as usize;
}

/// All-ones in lanes `0..min(left, 8)`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn live8(left: usize) -> __m256i {
    let left = left.min(8) as i32;
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(left),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// |x| (clears the sign bit, as `f32::abs`).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn abs(x: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), x)
}

/// Elements `at..at + 8` of a column of f32 or (`HALF`) float16 bits,
/// widened exactly.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn load8<const HALF: bool>(col: *const u8, at: usize) -> __m256 {
    if HALF {
        _mm256_cvtph_ps(_mm_loadu_si128(col.cast::<u16>().add(at).cast()))
    } else {
        _mm256_loadu_ps(col.cast::<f32>().add(at))
    }
}

/// Distances of rows `base..base + 8`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dist8<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    qa: __m256,
    qb: __m256,
    base: usize,
) -> __m256 {
    let xa = load8::<HALF>(a, base);
    let xb = load8::<HALF>(b, base);
    _mm256_add_ps(abs(_mm256_sub_ps(xa, qa)), abs(_mm256_sub_ps(xb, qb)))
}

/// The scalar distance of row `row` (the tails' arithmetic: the same).
#[inline(always)]
unsafe fn dist1<const HALF: bool>(a: *const u8, b: *const u8, q: [f32; 2], row: usize) -> f32 {
    let x = |col: *const u8| {
        if HALF {
            half::f16::from_bits(col.cast::<u16>().add(row).read_unaligned()).to_f32()
        } else {
            col.cast::<f32>().add(row).read_unaligned()
        }
    };
    (x(a) - q[0]).abs() + (x(b) - q[1]).abs()
}

/// Elements at rows `r` of a column of `n` (lanes outside `live`: 0, not
/// read). Float16 has no 16-bit gather: 32 bits are gathered at each
/// element and the low half kept; only the last element has 2 bytes after
/// it that may lie past the data, so that lane is read on its own.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn gather8<const HALF: bool>(
    col: *const u8,
    n: usize,
    r: __m256i,
    live: __m256i,
) -> __m256 {
    let idx = _mm256_xor_si256(r, _mm256_set1_epi32(ROW_BIAS));
    if !HALF {
        let base = biased_base(col, 4).cast();
        return _mm256_mask_i32gather_ps::<4>(
            _mm256_setzero_ps(),
            base,
            idx,
            _mm256_castsi256_ps(live),
        );
    }
    let last = _mm256_set1_epi32((n - 1) as u32 as i32);
    let tail = _mm256_and_si256(_mm256_cmpeq_epi32(r, last), live);
    let base = biased_base(col, 2).cast();
    let g = _mm256_mask_i32gather_epi32::<2>(
        _mm256_setzero_si256(),
        base,
        idx,
        _mm256_andnot_si256(tail, live),
    );
    let g = _mm256_and_si256(g, _mm256_set1_epi32(0xFFFF));
    let bits = _mm_packus_epi32(_mm256_castsi256_si128(g), _mm256_extracti128_si256::<1>(g));
    let x = _mm256_cvtph_ps(bits);
    if _mm256_testz_si256(tail, tail) == 1 {
        return x;
    }
    let v = half::f16::from_bits(col.cast::<u16>().wrapping_add(n - 1).read_unaligned()).to_f32();
    _mm256_blendv_ps(x, _mm256_set1_ps(v), _mm256_castsi256_ps(tail))
}

/// The lane with the least (distance, row) key, with the scalar `rest`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn reduce_min(best: &[__m256], best_row: &[__m256i], rest: Neighbour) -> Neighbour {
    let mut winner = rest;
    for (&d, &r) in best.iter().zip(best_row) {
        let (mut ds, mut rs) = ([0f32; 8], [0u32; 8]);
        _mm256_storeu_ps(ds.as_mut_ptr(), d);
        _mm256_storeu_si256(rs.as_mut_ptr().cast(), r);
        for (&dist, &row) in ds.iter().zip(&rs) {
            let nb = Neighbour { row, dist };
            if nb.key() < winner.key() {
                winner = nb;
            }
        }
    }
    winner
}

/// Nearest row in one pass: four independent accumulators per 32 rows
/// (one compare-and-blend chain is latency bound); each lane keeps its
/// first minimum, so its lowest row; lanes are then reduced by key.
#[target_feature(enable = "avx2,f16c")]
unsafe fn nearest2<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    q: [f32; 2],
) -> Neighbour {
    let (qa, qb) = (_mm256_set1_ps(q[0]), _mm256_set1_ps(q[1]));
    let mut best = [_mm256_set1_ps(f32::INFINITY); 4];
    let mut best_row = [_mm256_setzero_si256(); 4];
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut rows: [__m256i; 4] =
        std::array::from_fn(|j| _mm256_add_epi32(lane, _mm256_set1_epi32(8 * j as i32)));
    let step32 = _mm256_set1_epi32(32);
    let mut base = 0;
    while base + 32 <= n {
        for j in 0..4 {
            let d = dist8::<HALF>(a, b, qa, qb, base + 8 * j);
            let better = _mm256_cmp_ps::<_CMP_LT_OQ>(d, best[j]);
            best[j] = _mm256_blendv_ps(best[j], d, better);
            best_row[j] = _mm256_blendv_epi8(best_row[j], rows[j], _mm256_castps_si256(better));
            rows[j] = _mm256_add_epi32(rows[j], step32);
        }
        base += 32;
    }
    let mut r = _mm256_add_epi32(lane, _mm256_set1_epi32(base as u32 as i32));
    while base + 8 <= n {
        let d = dist8::<HALF>(a, b, qa, qb, base);
        let better = _mm256_cmp_ps::<_CMP_LT_OQ>(d, best[0]);
        best[0] = _mm256_blendv_ps(best[0], d, better);
        best_row[0] = _mm256_blendv_epi8(best_row[0], r, _mm256_castps_si256(better));
        r = _mm256_add_epi32(r, _mm256_set1_epi32(8));
        base += 8;
    }
    let mut rest = Neighbour {
        row: u32::MAX,
        dist: f32::INFINITY,
    };
    for row in base..n {
        let dist = dist1::<HALF>(a, b, q, row);
        if dist < rest.dist {
            rest = Neighbour {
                row: row as u32,
                dist,
            };
        }
    }
    reduce_min(&best, &best_row, rest)
}

/// Rows at distance <= `limit`, ascending, into `hits`.
///
/// The callers' limits hold about k of n rows (k = redund_nn: ~0.1 % of a
/// large pool), so most blocks of 32 rows hold no hit: a branch skips their
/// four left-pack stores, and it is rarely mispredicted. Measured at
/// ImageNet scale (N = 1,281,167, float16) on an AVX-512 Xeon running this
/// level: the branch-free version spent twice the AVX-512 level's time here.
#[inline]
#[target_feature(enable = "avx2,f16c,popcnt")]
unsafe fn hit_rows<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    q: [f32; 2],
    limit: f32,
    hits: &mut Vec<u32>,
) {
    let (qa, qb) = (_mm256_set1_ps(q[0]), _mm256_set1_ps(q[1]));
    let lim = _mm256_set1_ps(limit);
    let mut rows = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let step = _mm256_set1_epi32(8);
    hits.clear();
    hits.reserve(n + 8);
    let dst = hits.as_mut_ptr();
    let mut count = 0usize;
    let mut base = 0;
    while base + 32 <= n {
        let d0 = dist8::<HALF>(a, b, qa, qb, base);
        let d1 = dist8::<HALF>(a, b, qa, qb, base + 8);
        let d2 = dist8::<HALF>(a, b, qa, qb, base + 16);
        let d3 = dist8::<HALF>(a, b, qa, qb, base + 24);
        let m0 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d0, lim)) as u32;
        let m1 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d1, lim)) as u32;
        let m2 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d2, lim)) as u32;
        let m3 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d3, lim)) as u32;
        let m = m0 | m1 << 8 | m2 << 16 | m3 << 24;
        if m != 0 {
            let rows1 = _mm256_add_epi32(rows, step);
            let rows2 = _mm256_add_epi32(rows1, step);
            let rows3 = _mm256_add_epi32(rows2, step);
            push_hits2(dst, &mut count, m & 0xFFFF, rows, rows1);
            push_hits2(dst, &mut count, m >> 16, rows2, rows3);
        }
        rows = _mm256_add_epi32(rows, _mm256_set1_epi32(32));
        base += 32;
    }
    // Two blocks per step: independent work while the other's loads wait.
    while base + 16 <= n {
        let d0 = dist8::<HALF>(a, b, qa, qb, base);
        let d1 = dist8::<HALF>(a, b, qa, qb, base + 8);
        let m0 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d0, lim)) as u32;
        let m1 = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d1, lim)) as u32;
        let rows1 = _mm256_add_epi32(rows, step);
        push_hits2(dst, &mut count, m0 | m1 << 8, rows, rows1);
        rows = _mm256_add_epi32(rows1, step);
        base += 16;
    }
    if base + 8 <= n {
        let d = dist8::<HALF>(a, b, qa, qb, base);
        let m = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(d, lim)) as u32;
        push_hits(dst, &mut count, m, rows);
        base += 8;
    }
    for row in base..n {
        *dst.add(count) = row as u32;
        count += usize::from(dist1::<HALF>(a, b, q, row) <= limit);
    }
    hits.set_len(count);
}

/// Rows (except `exclude`) at distance <= `limit`, in no set order: the
/// hits' distances are recomputed by gathers, with the pass's arithmetic.
#[target_feature(enable = "avx2,f16c,popcnt")]
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
    out.clear();
    if !HALF {
        // Scalar loads beat AVX2's gathers on AMD (see `gather_coordinates`).
        let dist = |row: u32| dist1::<false>(a, b, q, row as usize);
        out.extend(hits.iter().map(|&row| Neighbour {
            row,
            dist: dist(row),
        }));
        return;
    }
    let (qa, qb) = (_mm256_set1_ps(q[0]), _mm256_set1_ps(q[1]));
    let count = hits.len();
    out.reserve(count + 8);
    let o = out.as_mut_ptr().cast::<i32>();
    let mut i = 0;
    while i < count {
        let live = live8(count - i);
        let r = _mm256_maskload_epi32(hits.as_ptr().add(i).cast(), live);
        let xa = gather8::<HALF>(a, n, r, live);
        let xb = gather8::<HALF>(b, n, r, live);
        let d = _mm256_add_ps(abs(_mm256_sub_ps(xa, qa)), abs(_mm256_sub_ps(xb, qb)));
        store_pairs(o.add(2 * i), r, _mm256_castps_si256(d));
        i += 8;
    }
    out.set_len(count);
}

/// The coordinates of `cand.rows` from columns `a` and `b` (`n` values
/// each) into `cand.xa`, `cand.xb`.
#[target_feature(enable = "avx2,f16c")]
unsafe fn gather_coordinates<const HALF: bool>(
    a: *const u8,
    b: *const u8,
    n: usize,
    cand: &mut Candidates,
) {
    let count = cand.rows.len();
    for x in [&mut cand.xa, &mut cand.xb] {
        x.clear();
        x.reserve(count + 8);
    }
    if !HALF {
        // Scalar loads beat AVX2's gathers on AMD (Zen 3 issues a ymm
        // gather's 8 loads over about 9 cycles, and 3 scalar loads a cycle).
        let (a, b) = (a.cast::<f32>(), b.cast::<f32>());
        let (xa, xb) = (cand.xa.as_mut_ptr(), cand.xb.as_mut_ptr());
        for (i, &r) in cand.rows.iter().enumerate() {
            *xa.add(i) = *a.add(r as usize);
            *xb.add(i) = *b.add(r as usize);
        }
        cand.xa.set_len(count);
        cand.xb.set_len(count);
        return;
    }
    let mut i = 0;
    while i < count {
        // Plain loads for whole blocks: masked loads are slow on AMD.
        let (r, live) = if i + 8 <= count {
            let r = _mm256_loadu_si256(cand.rows.as_ptr().add(i).cast());
            (r, _mm256_set1_epi32(-1))
        } else {
            let live = live8(count - i);
            (
                _mm256_maskload_epi32(cand.rows.as_ptr().add(i).cast(), live),
                live,
            )
        };
        _mm256_storeu_ps(cand.xa.as_mut_ptr().add(i), gather8::<HALF>(a, n, r, live));
        _mm256_storeu_ps(cand.xb.as_mut_ptr().add(i), gather8::<HALF>(b, n, r, live));
        i += 8;
    }
    cand.xa.set_len(count);
    cand.xb.set_len(count);
}

super::two_column_passes!("avx2,fma,f16c,bmi1,bmi2,popcnt");

/// Two-dimensional subspaces in one fused pass (distances, least and
/// greatest together); others by the portable body, vectorised by the
/// compiler.
#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
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
    let (va, vb) = (_mm256_set1_ps(qa), _mm256_set1_ps(qb));
    let (pa, pb) = (a.as_ptr().cast(), b.as_ptr().cast());
    let mut lo = _mm256_set1_ps(f32::INFINITY);
    let mut hi = _mm256_setzero_ps();
    let mut base = 0;
    while base + 8 <= n {
        let d = dist8::<false>(pa, pb, va, vb, base);
        _mm256_storeu_ps(out.as_mut_ptr().add(base), d);
        lo = _mm256_min_ps(lo, d);
        hi = _mm256_max_ps(hi, d);
        base += 8;
    }
    let (mut los, mut his) = ([0f32; 8], [0f32; 8]);
    _mm256_storeu_ps(los.as_mut_ptr(), lo);
    _mm256_storeu_ps(his.as_mut_ptr(), hi);
    let (mut lo, mut hi) = (
        los.into_iter().fold(f32::INFINITY, f32::min),
        his.into_iter().fold(0f32, f32::max),
    );
    for row in base..n {
        let d = dist1::<false>(pa, pb, [qa, qb], row);
        *out.as_mut_ptr().add(row) = d;
        lo = lo.min(d);
        hi = hi.max(d);
    }
    out.set_len(n);
    (lo, hi)
}

/// Hits sparser than one row in this many take the 32-row pass of
/// `collect_coarse`, which stores set bits one by one: about 5 % faster at
/// one hit in 30 rows (N = 50,000, k = 1,000), 25 % slower at one in 3
/// (N = 5,000), than the 8-row permutations of the dense pass.
const SPARSE_ROWS: usize = 20;

/// The 16-bit coarse filter (`search::coarse`): rows whose integer
/// distance |ca - qa| + |cb - qb| is <= `limit`, 32 rows per step where
/// hits are sparse and 16 where they are dense (`SPARSE_ROWS`), then
/// their exact coordinates by gathers. The sum of two |differences| of
/// 15-bit values reaches 65,532, past i16: the compare is unsigned
/// (max_epu16 then equality), since `cmpgt_epi16` is signed.
#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn collect_coarse(
    coarse: [&[i16]; 2],
    q: [i16; 2],
    limit: u16,
    exact: [&[f32]; 2],
    cand: &mut Candidates,
) {
    let n = coarse[0].len();
    let (a, b) = (coarse[0].as_ptr(), coarse[1].as_ptr());
    let ex = [exact[0].as_ptr(), exact[1].as_ptr()];
    let (qa, qb) = (_mm256_set1_epi16(q[0]), _mm256_set1_epi16(q[1]));
    let lim = _mm256_set1_epi16(limit as i16);
    // The rows the last call kept (the same searcher, usually the same
    // pool) tell how dense hits are: see `SPARSE_ROWS`.
    let sparse = cand.rows.len().saturating_mul(SPARSE_ROWS) < n;
    let hits = &mut cand.rows;
    hits.clear();
    hits.reserve(n + 32);
    let dst = hits.as_mut_ptr();
    let mut count = 0usize;
    let mut base = 0;
    // 16 rows' compare results (0xFFFF or 0 per lane).
    let within = |at: usize| {
        let xa = _mm256_loadu_si256(a.add(at).cast());
        let xb = _mm256_loadu_si256(b.add(at).cast());
        let d = _mm256_add_epi16(
            _mm256_abs_epi16(_mm256_sub_epi16(xa, qa)),
            _mm256_abs_epi16(_mm256_sub_epi16(xb, qb)),
        );
        _mm256_cmpeq_epi16(_mm256_max_epu16(d, lim), lim)
    };
    while sparse && base + 32 <= n {
        // One byte per lane: packs interleaves the 128-bit halves (rows
        // 0-7, 16-23, 8-15, 24-31), the permutation puts them in order.
        let bytes = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(
            within(base),
            within(base + 16),
        ));
        let mask = _mm256_movemask_epi8(bytes) as u32;
        prefetch_blocks32(ex, mask, base);
        // Hits are about one row in 30: two stores without a branch take
        // the first two set bits (stores past the count are overwritten
        // later; `dst` has 32 of slack), and a loop the rare rest.
        let row = base as u32;
        let mut m = mask;
        *dst.add(count) = row + m.trailing_zeros();
        m &= m.wrapping_sub(1);
        *dst.add(count + 1) = row + m.trailing_zeros();
        m &= m.wrapping_sub(1);
        let mut at = count + 2;
        while m != 0 {
            *dst.add(at) = row + m.trailing_zeros();
            m &= m - 1;
            at += 1;
        }
        count += mask.count_ones() as usize;
        base += 32;
    }
    // Dense hits (small pools, where k is a large share of the rows): a
    // left-pack of every 8 rows by a permutation, whatever they hold.
    let mut rows0 = _mm256_add_epi32(
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        _mm256_set1_epi32(base as i32),
    );
    let mut rows1 = _mm256_add_epi32(rows0, _mm256_set1_epi32(8));
    let step = _mm256_set1_epi32(16);
    while base + 16 <= n {
        let le = within(base);
        // One byte per lane (0xFF or 0), then one bit per lane.
        let bytes = _mm_packs_epi16(
            _mm256_castsi256_si128(le),
            _mm256_extracti128_si256::<1>(le),
        );
        let mask = _mm_movemask_epi8(bytes) as u32;
        prefetch_block(ex, mask, base);
        push_hits2(dst, &mut count, mask, rows0, rows1);
        rows0 = _mm256_add_epi32(rows0, step);
        rows1 = _mm256_add_epi32(rows1, step);
        base += 16;
    }
    let (qa, qb, limit) = (i32::from(q[0]), i32::from(q[1]), i32::from(limit));
    for row in base..n {
        let d = (i32::from(*a.add(row)) - qa).abs() + (i32::from(*b.add(row)) - qb).abs();
        *dst.add(count) = row as u32;
        count += usize::from(d <= limit);
    }
    hits.set_len(count);
    gather_coordinates::<false>(exact[0].as_ptr().cast(), exact[1].as_ptr().cast(), n, cand);
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn quantise_column(
    col: &[f32],
    c: f64,
    scale: f64,
    span: f64,
    out: &mut [i16],
) {
    portable::quantise_body(col, c, scale, span, out)
}

/// The portable bodies, which the compiler vectorises for AVX2 as well as
/// hand-written code would (no compress needed): lane-wise minima, a
/// select per candidate, counts summed in integer lanes.
#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn nearest_of(cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
    portable::nearest_of_body(cand, q)
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn distances_to(
    cand: &mut Candidates,
    c: [f32; 2],
    exclude: u32,
    limit: f32,
) -> usize {
    portable::distances_to_body(cand, c, exclude, limit)
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn count_le2(dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
    portable::count_le2_body(dist, t1, t2)
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn emit(
    cand: &Candidates,
    kth: f32,
    ties: usize,
    out: &mut Vec<Neighbour>,
) {
    let count = cand.len();
    let t = _mm256_set1_ps(kth);
    let mut ties = ties;
    out.clear();
    out.reserve(count + 8);
    let o = out.as_mut_ptr().cast::<i32>();
    let mut kept = 0usize;
    let mut i = 0;
    while i < count {
        // Plain loads for whole blocks: masked loads are slow on AMD.
        let (d, r, live_bits) = if i + 8 <= count {
            let d = _mm256_loadu_ps(cand.dist.as_ptr().add(i));
            (
                d,
                _mm256_loadu_si256(cand.rows.as_ptr().add(i).cast()),
                0xFF,
            )
        } else {
            let live = live8(count - i);
            let d = _mm256_maskload_ps(cand.dist.as_ptr().add(i), live);
            let r = _mm256_maskload_epi32(cand.rows.as_ptr().add(i).cast(), live);
            (d, r, _mm256_movemask_ps(_mm256_castsi256_ps(live)) as u32)
        };
        let mut keep = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(d, t)) as u32 & live_bits;
        let mut tied = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(d, t)) as u32 & live_bits;
        while tied != 0 && ties > 0 {
            keep |= tied & tied.wrapping_neg();
            tied &= tied - 1;
            ties -= 1;
        }
        push_pairs(o, &mut kept, keep, r, d);
        i += 8;
    }
    out.set_len(kept);
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn between(dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
    let (l, h) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
    out.clear();
    out.reserve(dist.len() + 8);
    let dst = out.as_mut_ptr().cast::<u32>();
    let mut kept = 0usize;
    let mut blocks = dist.chunks_exact(8);
    for block in &mut blocks {
        let d = _mm256_loadu_ps(block.as_ptr());
        let keep = _mm256_and_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(d, l),
            _mm256_cmp_ps::<_CMP_LE_OQ>(d, h),
        );
        let mask = _mm256_movemask_ps(keep) as u32;
        push_hits(dst, &mut kept, mask, _mm256_castps_si256(d));
    }
    for &d in blocks.remainder() {
        *dst.add(kept) = d.to_bits();
        kept += usize::from(d > lo && d <= hi);
    }
    out.set_len(kept);
}

/// Distances and rows of the block's rows `i..i + 8` (lanes outside
/// `live`: row 0, not read).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn band_dist8(b: &Block<'_>, i: usize, live: __m256i) -> (__m256i, __m256) {
    let r = _mm256_maskload_epi32(b.rows.as_ptr().add(i).cast(), live);
    let vb = _mm256_maskload_ps(b.vals.as_ptr().add(i), live);
    let xo = match b.other {
        Col::F32(c) => gather8::<false>(c.as_ptr().cast(), c.len(), r, live),
        Col::F16(c) => gather8::<true>(c.as_ptr().cast(), c.len(), r, live),
    };
    let d = _mm256_add_ps(
        abs(_mm256_sub_ps(vb, _mm256_set1_ps(b.qb))),
        abs(_mm256_sub_ps(xo, _mm256_set1_ps(b.qo))),
    );
    (r, d)
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn band_distances(b: Block<'_>, out: &mut Vec<f32>) {
    let n = b.rows.len();
    out.clear();
    out.reserve(n + 8);
    let dst = out.as_mut_ptr();
    let mut i = 0;
    while i < n {
        let (_, d) = band_dist8(&b, i, live8(n - i));
        _mm256_storeu_ps(dst.add(i), d);
        i += 8;
    }
    out.set_len(n);
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn band_collect_within(
    b: Block<'_>,
    limit: f32,
    exclude: u32,
    out: &mut Vec<Neighbour>,
) {
    let n = b.rows.len();
    out.reserve(n + 8);
    let mut count = out.len();
    let dst = out.as_mut_ptr().cast::<i32>();
    let lim = _mm256_set1_ps(limit);
    let skip = _mm256_set1_epi32(exclude as i32);
    let mut i = 0;
    while i < n {
        let live = live8(n - i);
        let (r, d) = band_dist8(&b, i, live);
        let hit = _mm256_andnot_si256(
            _mm256_cmpeq_epi32(r, skip),
            _mm256_and_si256(
                _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(d, lim)),
                live,
            ),
        );
        let mask = _mm256_movemask_ps(_mm256_castsi256_ps(hit)) as u32;
        push_pairs(dst, &mut count, mask, r, d);
        i += 8;
    }
    out.set_len(count);
}

/// The portable body, vectorised by the compiler for AVX2 (the fixed-point
/// conversions are `portable::floor_to_i64`, which needs no AVX-512 DQ).
#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn penalty_weights(
    neighbours: &[Neighbour],
    exp: f64,
    unit: f64,
    p: &mut PenaltyBuffers,
) {
    portable::penalty_body(neighbours, exp, unit, p)
}

#[target_feature(enable = "avx2,fma,f16c,bmi1,bmi2,popcnt")]
pub(in crate::arch) unsafe fn widen_f16(bits: &[u16], out: &mut Vec<f32>) {
    let n = bits.len();
    out.clear();
    out.reserve(n);
    let dst = out.as_mut_ptr();
    let mut i = 0;
    while i + 8 <= n {
        _mm256_storeu_ps(dst.add(i), load8::<true>(bits.as_ptr().cast(), i));
        i += 8;
    }
    for (j, &b) in bits.iter().enumerate().skip(i) {
        *dst.add(j) = half::f16::from_bits(b).to_f32();
    }
    out.set_len(n);
}

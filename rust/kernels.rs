//! Vectorised passes over the columns of one subspace.
//!
//! Each pass computes the L1 distance of every row to a query, 64 rows at a
//! time into a stack buffer (summed in `dims` order, bit-identical to
//! `search::distance`), and folds the buffer. The default two-dimensional
//! subspace also has hand-written AVX-512 versions, chosen at run time: the
//! passes are the engine's whole inner loop.

use crate::columns::Pool;
use crate::search::Neighbour;

const LANES: usize = 64;

/// Calls `visit(first_row, distances)` for consecutive blocks of rows.
#[inline(always)]
fn blocks(cols: &[&[f32]], q: &[f32], mut visit: impl FnMut(usize, &[f32]) -> bool) {
    let n = cols[0].len();
    let mut buf = [0f32; LANES];
    let mut base = 0;
    while base < n {
        let len = LANES.min(n - base);
        let out = &mut buf[..len];
        let first = &cols[0][base..base + len];
        for (o, &x) in out.iter_mut().zip(first) {
            *o = (x - q[0]).abs();
        }
        for (&c, &qd) in cols.iter().zip(q).skip(1) {
            let col = &c[base..base + len];
            for (o, &x) in out.iter_mut().zip(col) {
                *o += (x - qd).abs();
            }
        }
        if !visit(base, out) {
            return;
        }
        base += len;
    }
}

#[inline(always)]
fn nearest_body(cols: &[&[f32]], q: &[f32]) -> Neighbour {
    // Pass 1: the minimum distance, with independent lanes so it vectorises.
    let mut lanes = [f32::INFINITY; LANES];
    blocks(cols, q, |_, d| {
        for (m, &v) in lanes.iter_mut().zip(d) {
            *m = if v < *m { v } else { *m };
        }
        true
    });
    let best = lanes.iter().copied().fold(f32::INFINITY, f32::min);
    // Pass 2: the lowest row at that distance (usually found early).
    let mut row = 0;
    blocks(cols, q, |base, d| match d.iter().position(|&v| v == best) {
        Some(i) => {
            row = base + i;
            false
        }
        None => true,
    });
    Neighbour {
        dist: best,
        row: row as u32,
    }
}

#[inline(always)]
fn within_body(cols: &[&[f32]], q: &[f32], limit: f32, exclude: u32, out: &mut Vec<Neighbour>) {
    out.clear();
    blocks(cols, q, |base, d| {
        for (chunk_at, chunk) in d.chunks(16).enumerate() {
            // A bit mask per 16 rows: compiles to one vector compare.
            let mut mask = 0u32;
            for (i, &v) in chunk.iter().enumerate() {
                mask |= u32::from(v <= limit) << i;
            }
            while mask != 0 {
                let i = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let row = (base + chunk_at * 16 + i) as u32;
                if row != exclude {
                    out.push(Neighbour {
                        dist: chunk[i],
                        row,
                    });
                }
            }
        }
        true
    });
}

/// Distances of the pool's subsample rows to `q` over `dims` into `out`,
/// and their least and greatest. Simple loops: the compiler vectorises them
/// for whichever instruction set the caller enables.
#[inline(always)]
fn subsample_body(pool: &Pool, dims: &[u32], q: &[f32], out: &mut Vec<f32>) -> (f32, f32) {
    out.clear();
    out.resize(pool.sub_n, 0.0);
    for (&d, &qd) in dims.iter().zip(q) {
        for (o, &x) in out.iter_mut().zip(pool.sub_column(d as usize)) {
            *o += (x - qd).abs();
        }
    }
    // Lane-wise extremes first: a float min over one chain does not
    // vectorise (the compiler may not reorder it).
    let (mut lo, mut hi) = ([f32::INFINITY; 16], [0f32; 16]);
    let mut blocks = out.chunks_exact(16);
    for block in &mut blocks {
        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(block) {
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    }
    let tail = blocks.remainder().iter();
    let lo = lo
        .iter()
        .chain(tail.clone())
        .fold(f32::INFINITY, |m, &v| m.min(v));
    let hi = hi.iter().chain(tail).fold(0f32, |m, &v| m.max(v));
    (lo, hi)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! Hand-written AVX-512 passes for the default two-dimensional subspace,
    //! over f32 columns or float16 columns (`HALF`: widened exactly as they
    //! load). Same arithmetic as the portable bodies: |a - qa| + |b - qb|
    //! in f32. Columns come as raw pointers to `n` elements.
    use super::Neighbour;
    use std::arch::x86_64::*;

    /// Elements `at..at + 16` of a column (lanes outside `live` are 0 and
    /// never read).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn load16<const HALF: bool>(
        col: *const u8,
        at: usize,
        live: __mmask16,
    ) -> __m512 {
        if HALF {
            _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(live, col.cast::<i16>().add(at)))
        } else {
            _mm512_maskz_loadu_ps(live, col.cast::<f32>().add(at))
        }
    }

    /// Elements at rows `r` of a column of `n` (lanes outside `live`: 0).
    /// Float16 has no 16-bit gather: 32 bits are gathered at each element
    /// and the low half kept. Only the last element has 2 bytes after it
    /// that may lie past the data, so that lane is read on its own.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn gather16<const HALF: bool>(
        col: *const u8,
        n: usize,
        r: __m512i,
        live: __mmask16,
    ) -> __m512 {
        if !HALF {
            return _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), live, r, col.cast());
        }
        let last = n as i32 - 1;
        let tail = _mm512_mask_cmpeq_epi32_mask(live, r, _mm512_set1_epi32(last));
        let g =
            _mm512_mask_i32gather_epi32::<2>(_mm512_setzero_si512(), live & !tail, r, col.cast());
        let mut x = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
        if tail != 0 {
            let bits = col.cast::<u16>().add(n - 1).read_unaligned();
            let v = half::f16::from_bits(bits).to_f32();
            x = _mm512_mask_mov_ps(x, tail, _mm512_set1_ps(v));
        }
        x
    }

    /// 16 distances of rows `base..base + 16` (lanes past `n` masked off).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn dist16<const HALF: bool>(
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
    pub(crate) unsafe fn store_pairs(dst: *mut i32, rows: __m512i, dists: __m512i) {
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
    pub(crate) fn live_mask(n: usize, base: usize) -> __mmask16 {
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

    /// Nearest row in one pass. Four independent accumulators per 64 rows
    /// keep the compare-and-blend chain off the critical path (one chain
    /// is latency bound at ~5 cycles per 16 rows); each lane keeps its
    /// first minimum, then lanes and accumulators are reduced to the lowest
    /// row among equal distances.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn nearest2<const HALF: bool>(
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
        let mut r = _mm512_add_epi32(lane, _mm512_set1_epi32(base as i32));
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
        let row = _mm512_mask_reduce_min_epu32(at, r0) as u32;
        Neighbour { row, dist }
    }

    /// Stores the lanes of `rows` that `hit` selects at `dst + *count`, as
    /// one whole vector (16 values: `dst` needs 16 of slack), and counts
    /// them.
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
    /// Branch-free: hits fall at random blocks, so a branch per block would
    /// mispredict about half the time. Each block's hit rows are compressed
    /// in a register and stored whole (the memory form of compress is
    /// microcoded and several times slower on Intel); `hits` keeps 16 slack.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    pub(crate) unsafe fn hit_rows<const HALF: bool>(
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
            push_hits(dst, &mut count, hit0, rows);
            push_hits(dst, &mut count, hit1, rows1);
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

    /// Rows (except `exclude`) at distance <= `limit`, in no set order.
    /// The few hits get their distances recomputed by gathers, with the
    /// same arithmetic as the pass, straight into `out`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn within2<const HALF: bool>(
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

    /// `subsample_body` compiled for AVX-512; two-dimensional subspaces
    /// get one fused pass (distances, least and greatest together).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn subsample(
        pool: &super::Pool,
        dims: &[u32],
        q: &[f32],
        out: &mut Vec<f32>,
    ) -> (f32, f32) {
        let (&[da, db], &[qa, qb]) = (dims, q) else {
            return super::subsample_body(pool, dims, q, out);
        };
        let (a, b) = (pool.sub_column(da as usize), pool.sub_column(db as usize));
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

    pub fn has_avx512() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("popcnt")
    }
}

/// Which compiled version of the passes this CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The baseline target of the build.
    Portable,
    /// x86-64 with AVX-512 (F, BW, VL).
    Avx512,
}

impl Isa {
    /// The best version this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if x86::has_avx512() {
            return Isa::Avx512;
        }
        Isa::Portable
    }

    /// The row nearest to `q` (ties: lowest row).
    pub fn nearest(self, cols: &[&[f32]], q: &[f32]) -> Neighbour {
        #[cfg(target_arch = "x86_64")]
        if let (Isa::Avx512, &[a, b]) = (self, cols) {
            // SAFETY: `Avx512` is only produced after run-time detection;
            // both columns hold `a.len()` elements.
            return unsafe {
                x86::nearest2::<false>(a.as_ptr().cast(), b.as_ptr().cast(), a.len(), [q[0], q[1]])
            };
        }
        nearest_body(cols, q)
    }

    /// `nearest` over two float16 columns (bits) without widening them;
    /// None where there is no AVX-512 (the caller widens instead).
    pub fn nearest_f16(self, a: &[u16], b: &[u16], q: [f32; 2]) -> Option<Neighbour> {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            assert_eq!(a.len(), b.len());
            // SAFETY: run-time detected; both columns hold `a.len()` elements.
            return Some(unsafe {
                x86::nearest2::<true>(a.as_ptr().cast(), b.as_ptr().cast(), a.len(), q)
            });
        }
        let _ = (a, b, q);
        None
    }

    /// `within` over two float16 columns; false (and nothing done) where
    /// there is no AVX-512.
    #[allow(clippy::too_many_arguments)]
    pub fn within_f16(
        self,
        a: &[u16],
        b: &[u16],
        q: [f32; 2],
        limit: f32,
        exclude: u32,
        scratch: &mut Vec<u32>,
        out: &mut Vec<Neighbour>,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            assert_eq!(a.len(), b.len());
            // SAFETY: as in `nearest_f16`.
            unsafe {
                x86::within2::<true>(
                    a.as_ptr().cast(),
                    b.as_ptr().cast(),
                    a.len(),
                    q,
                    limit,
                    exclude,
                    scratch,
                    out,
                )
            };
            return true;
        }
        let _ = (a, b, q, limit, exclude, scratch, out);
        false
    }

    /// Every row (except `exclude`) at distance <= `limit`, in no set order.
    /// `scratch` is the fast path's buffer of hit rows.
    #[allow(clippy::too_many_arguments)]
    pub fn within(
        self,
        cols: &[&[f32]],
        q: &[f32],
        limit: f32,
        exclude: u32,
        scratch: &mut Vec<u32>,
        out: &mut Vec<Neighbour>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if let (Isa::Avx512, &[a, b]) = (self, cols) {
            // SAFETY: as in `nearest`.
            return unsafe {
                x86::within2::<false>(
                    a.as_ptr().cast(),
                    b.as_ptr().cast(),
                    a.len(),
                    [q[0], q[1]],
                    limit,
                    exclude,
                    scratch,
                    out,
                )
            };
        }
        let _ = scratch;
        within_body(cols, q, limit, exclude, out)
    }

    /// Distances of the pool's subsample rows to `q` over `dims` into
    /// `out`; returns the least and the greatest.
    pub fn subsample_distances(
        self,
        pool: &Pool,
        dims: &[u32],
        q: &[f32],
        out: &mut Vec<f32>,
    ) -> (f32, f32) {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected.
            return unsafe { x86::subsample(pool, dims, q, out) };
        }
        subsample_body(pool, dims, q, out)
    }
}

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
fn blocks(pool: &Pool, dims: &[u32], q: &[f32], mut visit: impl FnMut(usize, &[f32]) -> bool) {
    let n = pool.n;
    let mut buf = [0f32; LANES];
    let mut base = 0;
    while base < n {
        let len = LANES.min(n - base);
        let out = &mut buf[..len];
        let first = &pool.column(dims[0] as usize)[base..base + len];
        for (o, &x) in out.iter_mut().zip(first) {
            *o = (x - q[0]).abs();
        }
        for (&d, &qd) in dims.iter().zip(q).skip(1) {
            let col = &pool.column(d as usize)[base..base + len];
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
fn nearest_body(pool: &Pool, dims: &[u32], q: &[f32]) -> Neighbour {
    // Pass 1: the minimum distance, with independent lanes so it vectorises.
    let mut lanes = [f32::INFINITY; LANES];
    blocks(pool, dims, q, |_, d| {
        for (m, &v) in lanes.iter_mut().zip(d) {
            *m = if v < *m { v } else { *m };
        }
        true
    });
    let best = lanes.iter().copied().fold(f32::INFINITY, f32::min);
    // Pass 2: the lowest row at that distance (usually found early).
    let mut row = 0;
    blocks(pool, dims, q, |base, d| {
        match d.iter().position(|&v| v == best) {
            Some(i) => {
                row = base + i;
                false
            }
            None => true,
        }
    });
    Neighbour {
        dist: best,
        row: row as u32,
    }
}

#[inline(always)]
fn within_body(
    pool: &Pool,
    dims: &[u32],
    q: &[f32],
    limit: f32,
    exclude: u32,
    out: &mut Vec<Neighbour>,
) {
    out.clear();
    blocks(pool, dims, q, |base, d| {
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

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! Hand-written AVX-512 passes for the default two-dimensional subspace.
    //! Same arithmetic as the portable bodies: |a - qa| + |b - qb| in f32.
    use super::Neighbour;
    use std::arch::x86_64::*;

    /// 16 distances of rows `base..base + 16` (lanes past `n` masked off).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dist16(
        a: &[f32],
        b: &[f32],
        qa: __m512,
        qb: __m512,
        base: usize,
        live: __mmask16,
    ) -> __m512 {
        let xa = _mm512_maskz_loadu_ps(live, a.as_ptr().add(base));
        let xb = _mm512_maskz_loadu_ps(live, b.as_ptr().add(base));
        _mm512_add_ps(
            _mm512_abs_ps(_mm512_sub_ps(xa, qa)),
            _mm512_abs_ps(_mm512_sub_ps(xb, qb)),
        )
    }

    #[inline]
    fn live_mask(n: usize, base: usize) -> __mmask16 {
        let left = n - base;
        if left >= 16 {
            0xFFFF
        } else {
            ((1u32 << left) - 1) as __mmask16
        }
    }

    /// Nearest row in one pass: each lane keeps its first minimum, then the
    /// lanes are reduced (lowest row among equal distances).
    #[target_feature(enable = "avx512f")]
    pub unsafe fn nearest2(a: &[f32], b: &[f32], q: [f32; 2]) -> Neighbour {
        let n = a.len();
        let (qa, qb) = (_mm512_set1_ps(q[0]), _mm512_set1_ps(q[1]));
        let mut best = _mm512_set1_ps(f32::INFINITY);
        let mut best_row = _mm512_setzero_si512();
        let mut rows = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(16);
        let mut base = 0;
        while base < n {
            let live = live_mask(n, base);
            let d = dist16(a, b, qa, qb, base, live);
            let better = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(live, d, best);
            best = _mm512_mask_mov_ps(best, better, d);
            best_row = _mm512_mask_mov_epi32(best_row, better, rows);
            rows = _mm512_add_epi32(rows, step);
            base += 16;
        }
        let dist = _mm512_reduce_min_ps(best);
        let at = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(best, _mm512_set1_ps(dist));
        let row = _mm512_mask_reduce_min_epu32(at, best_row);
        Neighbour { dist, row }
    }

    /// Rows (except `exclude`) at distance <= `limit`, in row order.
    /// Branch-free: hits are compress-stored into `dist`/`row` scratch
    /// (which must hold n + 16), then paired; hits fall at random blocks, so
    /// a branch per block would mispredict about half the time.
    #[target_feature(enable = "avx512f,popcnt")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn within2(
        a: &[f32],
        b: &[f32],
        q: [f32; 2],
        limit: f32,
        exclude: u32,
        dist: &mut [f32],
        row: &mut [u32],
        out: &mut Vec<Neighbour>,
    ) {
        let n = a.len();
        assert!(dist.len() >= n + 16 && row.len() >= n + 16);
        let (qa, qb) = (_mm512_set1_ps(q[0]), _mm512_set1_ps(q[1]));
        let lim = _mm512_set1_ps(limit);
        let mut rows = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        let step = _mm512_set1_epi32(16);
        let mut count = 0usize;
        let mut base = 0;
        while base < n {
            let live = live_mask(n, base);
            let d = dist16(a, b, qa, qb, base, live);
            let hit = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(live, d, lim);
            _mm512_mask_compressstoreu_ps(dist.as_mut_ptr().add(count).cast(), hit, d);
            _mm512_mask_compressstoreu_epi32(row.as_mut_ptr().add(count).cast(), hit, rows);
            count += (hit as u32).count_ones() as usize;
            rows = _mm512_add_epi32(rows, step);
            base += 16;
        }
        out.clear();
        out.extend(
            dist[..count]
                .iter()
                .zip(&row[..count])
                .filter(|(_, &r)| r != exclude)
                .map(|(&dist, &row)| Neighbour { dist, row }),
        );
    }

    pub fn has_avx512() -> bool {
        std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("popcnt")
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
    pub fn nearest(self, pool: &Pool, dims: &[u32], q: &[f32]) -> Neighbour {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 && dims.len() == 2 {
            let (a, b) = (pool.column(dims[0] as usize), pool.column(dims[1] as usize));
            // SAFETY: `Avx512` is only produced after run-time detection.
            return unsafe { x86::nearest2(a, b, [q[0], q[1]]) };
        }
        nearest_body(pool, dims, q)
    }

    /// Every row (except `exclude`) at distance <= `limit`, in row order.
    /// `scratch` is resized as the fast path needs.
    #[allow(clippy::too_many_arguments)]
    pub fn within(
        self,
        pool: &Pool,
        dims: &[u32],
        q: &[f32],
        limit: f32,
        exclude: u32,
        scratch: &mut (Vec<f32>, Vec<u32>),
        out: &mut Vec<Neighbour>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 && dims.len() == 2 {
            let (a, b) = (pool.column(dims[0] as usize), pool.column(dims[1] as usize));
            scratch.0.resize(pool.n + 16, 0.0);
            scratch.1.resize(pool.n + 16, 0);
            // SAFETY: `Avx512` is only produced after run-time detection.
            return unsafe {
                x86::within2(
                    a,
                    b,
                    [q[0], q[1]],
                    limit,
                    exclude,
                    &mut scratch.0,
                    &mut scratch.1,
                    out,
                )
            };
        }
        let _ = scratch;
        within_body(pool, dims, q, limit, exclude, out)
    }
}

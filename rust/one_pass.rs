//! One pass over the rows per sample: the rows near the sample point, with
//! their coordinates, among which the coverage winner and its k nearest
//! neighbours are then found exactly (`Searcher::nearest_and_knn` says why
//! they are always there).
//!
//! The k nearest of a few thousand candidates are chosen by counting rather
//! than by a comparison sort: the k-th smallest distance is bracketed by
//! vectorised counts of candidates at or below a trial distance (guessed by
//! interpolation, in two dimensions the count grows like the distance
//! squared), and the few distances left in the bracket are sorted. Ties at
//! the k-th distance go to the lowest rows, as `search::knn_brute` orders
//! them: candidates are stored by ascending row.

use crate::kernels::Isa;
use crate::search::Neighbour;

/// Rows near a point in a two-dimensional subspace, ascending, with their
/// two coordinates as f32, plus scratch for the search among them.
#[derive(Debug, Default)]
pub struct Candidates {
    pub(crate) rows: Vec<u32>,
    pub(crate) xa: Vec<f32>,
    pub(crate) xb: Vec<f32>,
    /// Distances of the candidates to a centre (`f32::INFINITY` for the
    /// excluded row).
    dist: Vec<f32>,
    /// The distances left in the bracket of the k-th.
    bracket: Vec<f32>,
}

impl Candidates {
    /// How many rows were collected.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Distance of candidate `i` to `q`, summed as `search::distance` does.
    #[inline]
    fn distance(&self, i: usize, q: [f32; 2]) -> f32 {
        (self.xa[i] - q[0]).abs() + (self.xb[i] - q[1]).abs()
    }
}

/// Brackets holding at most this many distances are sorted.
const SORTED_BRACKET: usize = 32;

impl Isa {
    /// Rows within `limit` of `q` in the subspace of columns `a` and `b`,
    /// with their coordinates, into `cand`.
    pub fn collect(self, a: &[f32], b: &[f32], q: [f32; 2], limit: f32, cand: &mut Candidates) {
        assert_eq!(a.len(), b.len());
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected; both columns hold `a.len()` elements.
            return unsafe {
                x86::collect2::<false>(
                    a.as_ptr().cast(),
                    b.as_ptr().cast(),
                    a.len(),
                    q,
                    limit,
                    cand,
                )
            };
        }
        cand.rows.clear();
        cand.xa.clear();
        cand.xb.clear();
        for (row, (&xa, &xb)) in a.iter().zip(b).enumerate() {
            if (xa - q[0]).abs() + (xb - q[1]).abs() <= limit {
                cand.rows.push(row as u32);
                cand.xa.push(xa);
                cand.xb.push(xb);
            }
        }
    }

    /// `collect` over two float16 columns (bits); false, and nothing done,
    /// where there is no AVX-512 (the caller widens them instead).
    pub fn collect_f16(
        self,
        a: &[u16],
        b: &[u16],
        q: [f32; 2],
        limit: f32,
        cand: &mut Candidates,
    ) -> bool {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            assert_eq!(a.len(), b.len());
            // SAFETY: as in `collect`.
            unsafe {
                x86::collect2::<true>(
                    a.as_ptr().cast(),
                    b.as_ptr().cast(),
                    a.len(),
                    q,
                    limit,
                    cand,
                )
            };
            return true;
        }
        let _ = (a, b, q, limit, cand);
        false
    }

    /// The candidate nearest to `q` (ties: lowest row); None if there are
    /// no candidates.
    pub fn nearest_of(self, cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected; the vectors of `cand` have one length.
            return unsafe { x86::nearest_of(cand, q) };
        }
        (0..cand.len())
            .map(|i| Neighbour {
                row: cand.rows[i],
                dist: cand.distance(i, q),
            })
            .min_by_key(Neighbour::key)
    }

    /// The `k` candidates nearest to `c` other than `exclude`, unordered,
    /// into `out`; false if fewer than `k` of them lie within `limit`
    /// (then `out` is unspecified).
    pub fn nearest_k_of(
        self,
        cand: &mut Candidates,
        c: [f32; 2],
        limit: f32,
        exclude: u32,
        k: usize,
        out: &mut Vec<Neighbour>,
    ) -> bool {
        let within = self.distances_to(cand, c, exclude, limit);
        if within < k {
            return false;
        }
        out.clear();
        if k == 0 {
            return true;
        }
        let (kth, nearer) = self.kth_smallest(&cand.dist, k, limit, within, &mut cand.bracket);
        self.emit(cand, kth, k - nearer, out);
        debug_assert_eq!(out.len(), k);
        true
    }

    /// The k-th smallest of `dist` (1-based; all >= 0, none NaN), given
    /// that `within` (at least k) of them are at or below `limit`, and
    /// how many are smaller than it. `bracket` is scratch.
    pub(crate) fn kth_smallest(
        self,
        dist: &[f32],
        k: usize,
        limit: f32,
        within: usize,
        bracket: &mut Vec<f32>,
    ) -> (f32, usize) {
        // Invariant: count(<= lo) < k <= count(<= hi); `lo` None is below
        // every distance (all are >= 0).
        let (mut lo, mut below) = (None::<f32>, 0usize);
        let (mut hi, mut upto) = (limit, within);
        let mut interpolate = true;
        loop {
            let span = upto - below;
            if span <= SORTED_BRACKET {
                self.between(dist, lo.unwrap_or(-1.0), hi, bracket);
                bracket.sort_unstable_by(f32::total_cmp);
                let kth = bracket[k - below - 1];
                return (kth, below + bracket.partition_point(|&d| d < kth));
            }
            // Two trial distances a few ranks either side of the k-th, so
            // that one count usually leaves a narrow bracket.
            let (l, h) = (f64::from(lo.unwrap_or(0.0)), f64::from(hi));
            let at = |rank: f64| {
                let share = (rank / span as f64).clamp(0.0, 1.0);
                if interpolate {
                    // In two dimensions the count grows like the distance
                    // squared.
                    (l * l + share * (h * h - l * l)).sqrt() as f32
                } else {
                    (l + share * (h - l)) as f32
                }
            };
            let inside = |t: f32| t < hi && lo.is_none_or(|l| t > l);
            let margin = (span / 8).max(4) as f64;
            let want = (k - below) as f64;
            let (t1, t2) = match (at(want - margin), at(want + margin)) {
                (a, b) if inside(a) && inside(b) => (a, b),
                (a, _) if inside(a) => (a, a),
                (_, b) if inside(b) => (b, b),
                _ => {
                    let lo_bits = lo.map_or(0, f32::to_bits);
                    let mid = lo_bits + (hi.to_bits() - lo_bits) / 2;
                    if mid == lo_bits && (lo.is_some() || hi == 0.0) {
                        // No float lies between (or below a `hi` of 0):
                        // every distance in the bracket equals `hi`.
                        return (hi, below);
                    }
                    (f32::from_bits(mid), f32::from_bits(mid))
                }
            };
            let (c1, c2) = self.count_le2(dist, t1, t2);
            if c1 >= k {
                (hi, upto) = (t1, c1);
            } else if c2 >= k {
                (lo, below, hi, upto) = (Some(t1), c1, t2, c2);
            } else {
                (lo, below) = (Some(t2), c2);
            }
            // Interpolate again only while it keeps halving the bracket.
            interpolate = 2 * (upto - below) <= span;
        }
    }

    /// Distances of every candidate to `c` into `cand.dist` (the excluded
    /// row gets infinity), and how many are at or below `limit`.
    fn distances_to(self, cand: &mut Candidates, c: [f32; 2], exclude: u32, limit: f32) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected; the vectors of `cand` have one length.
            return unsafe { x86::distances_to(cand, c, exclude, limit) };
        }
        cand.dist.clear();
        for i in 0..cand.len() {
            let d = cand.distance(i, c);
            let d = if cand.rows[i] == exclude {
                f32::INFINITY
            } else {
                d
            };
            cand.dist.push(d);
        }
        count_le(&cand.dist, limit)
    }

    /// The distances in `(lo, hi]`, into `out`.
    fn between(self, dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected.
            return unsafe { x86::between(dist, lo, hi, out) };
        }
        out.clear();
        out.extend(dist.iter().copied().filter(|&d| d > lo && d <= hi));
    }

    /// How many of `dist` are at or below `t1`, and at or below `t2`.
    fn count_le2(self, dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected.
            return unsafe { x86::count_le2(dist, t1, t2) };
        }
        (count_le(dist, t1), count_le(dist, t2))
    }

    /// The candidates nearer than `kth` and, of those at `kth`, the
    /// `ties` lowest rows, into `out`.
    fn emit(self, cand: &Candidates, kth: f32, ties: usize, out: &mut Vec<Neighbour>) {
        #[cfg(target_arch = "x86_64")]
        if self == Isa::Avx512 {
            // SAFETY: run-time detected; the vectors of `cand` have one length.
            return unsafe { x86::emit(cand, kth, ties, out) };
        }
        let mut ties = ties;
        out.clear();
        for (&row, &dist) in cand.rows.iter().zip(&cand.dist) {
            let take = dist < kth || (dist == kth && ties > 0);
            if dist == kth && take {
                ties -= 1;
            }
            if take {
                out.push(Neighbour { row, dist });
            }
        }
    }
}

/// How many of `dist` are at or below `t` (the portable count; AVX-512
/// counts as it computes, in `x86::distances_to` and `x86::count_le2`).
fn count_le(dist: &[f32], t: f32) -> usize {
    dist.iter().filter(|&&d| d <= t).count()
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    //! AVX-512 versions: the same arithmetic as the portable code above.
    use super::Candidates;
    use crate::kernels::x86::dist16 as kernels_dist16;
    use crate::kernels::x86::{gather16, hit_rows, live_mask, store_pairs};
    use crate::search::Neighbour;
    use std::arch::x86_64::*;

    /// Distances of 16 candidates from `at` to `(ca, cb)` (lanes outside
    /// `live`: 0): the pass's own arithmetic over the gathered coordinates.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn dist16(
        cand: &Candidates,
        at: usize,
        live: __mmask16,
        ca: __m512,
        cb: __m512,
    ) -> __m512 {
        let (xa, xb) = (cand.xa.as_ptr().cast(), cand.xb.as_ptr().cast());
        kernels_dist16::<false>(xa, xb, ca, cb, at, live)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn rows16(cand: &Candidates, at: usize, live: __mmask16) -> __m512i {
        _mm512_maskz_loadu_epi32(live, cand.rows.as_ptr().add(at).cast())
    }

    /// Rows within `limit` of `q`, then their coordinates by gathers.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    pub(super) unsafe fn collect2<const HALF: bool>(
        a: *const u8,
        b: *const u8,
        n: usize,
        q: [f32; 2],
        limit: f32,
        cand: &mut Candidates,
    ) {
        hit_rows::<HALF>(a, b, n, q, limit, &mut cand.rows);
        gather_coordinates::<HALF>(a, b, n, cand);
    }

    /// The coordinates of the rows in `cand.rows` from columns `a` and `b`
    /// (`n` values each) into `cand.xa`, `cand.xb`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(crate) unsafe fn gather_coordinates<const HALF: bool>(
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

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn nearest_of(cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
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
            let d = dist16(cand, i, live, qa, qb);
            // Rows ascend, so a lane's first minimum is its lowest row.
            let better = _mm512_mask_cmp_ps_mask::<_CMP_LT_OQ>(live, d, best);
            best = _mm512_mask_mov_ps(best, better, d);
            best_row = _mm512_mask_mov_epi32(best_row, better, rows16(cand, i, live));
            i += 16;
        }
        let dist = _mm512_reduce_min_ps(best);
        let at = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(best, _mm512_set1_ps(dist));
        let row = _mm512_mask_reduce_min_epu32(at, best_row) as u32;
        Some(Neighbour { row, dist })
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,popcnt")]
    pub(super) unsafe fn distances_to(
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
            let d = dist16(cand, i, live, ca, cb);
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
    pub(super) unsafe fn count_le2(dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
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
    pub(super) unsafe fn emit(cand: &Candidates, kth: f32, ties: usize, out: &mut Vec<Neighbour>) {
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
    pub(super) unsafe fn between(dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The k-th smallest, and how many are smaller, equal sorting.
    #[test]
    fn kth_smallest_equals_sorting() {
        let mut rng = crate::rng::TestRng(3);
        let mut next = || rng.next();
        let mut bracket = Vec::new();
        for trial in 0..400 {
            let len = 1 + next() as usize % 3000;
            // Many ties, zeros, and a spread of magnitudes.
            let dist: Vec<f32> = (0..len)
                .map(|_| match trial % 4 {
                    0 => (next() % 5) as f32,
                    1 => 0.0,
                    2 => (next() % 1000) as f32 * 1e-3 * (1 << (next() % 20)) as f32,
                    _ => next() as f32 / u32::MAX as f32,
                })
                .collect();
            let mut sorted = dist.clone();
            sorted.sort_by(f32::total_cmp);
            let k = 1 + next() as usize % len;
            let limit = sorted[k - 1 + next() as usize % (len - k + 1)];
            let within = sorted.iter().filter(|&&d| d <= limit).count();
            let nearer = sorted.partition_point(|&d| d < sorted[k - 1]);
            for isa in [Isa::Portable, Isa::detect()] {
                let got = isa.kth_smallest(&dist, k, limit, within, &mut bracket);
                assert_eq!(
                    got,
                    (sorted[k - 1], nearer),
                    "trial {trial} k {k} len {len}"
                );
            }
        }
    }
}

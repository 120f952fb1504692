//! Nearest neighbours of a point in an axis-aligned subspace, L1 distance.
//!
//! Strategies (what is computed; `arch` says how each CPU computes it):
//! `Searcher` here (passes over every row), `one_pass` (one pass for the
//! winner and its neighbours), `coarse` (a 16-bit copy that filters rows
//! for that pass) and `band` (reads only rows near the query in one
//! dimension, for large pools).
//!
//! The fast path streams the subspace's columns through vectorised passes: one pass finds the nearest row; for k neighbours, a fixed
//! row subsample first gives a distance limit that holds at least k rows
//! with high probability, one pass collects the rows within it, and a
//! selection keeps the k nearest. If fewer than k rows fall within the limit
//! it is widened and the pass repeated, so the result is always exact.
//! `knn_brute` is the obviously-correct oracle; both order neighbours by
//! (distance, row), so ties go to the lower row index.

pub mod band;
pub mod coarse;
pub mod one_pass;
pub mod pair;

use crate::arch::{Candidates, Isa};
pub use crate::neighbour::Neighbour;
use crate::pool::{Col, Pool};
use coarse::Coarse;

/// L1 distance of `row` to `q` over `dims`, summed in `dims` order.
#[inline]
pub fn distance(pool: &Pool, dims: &[u32], q: &[f32], row: usize) -> f32 {
    let mut s = 0f32;
    for (&d, &qd) in dims.iter().zip(q) {
        s += (pool.value(d as usize, row) - qd).abs();
    }
    s
}

/// Keeps the `k` smallest neighbours (by `cmp_key`) of `v`, unordered.
pub(crate) fn keep_smallest(v: &mut Vec<Neighbour>, k: usize) {
    if v.len() > k {
        v.select_nth_unstable_by_key(k - 1, Neighbour::key);
        v.truncate(k);
    }
}

/// The `k` nearest rows into `out`, unordered, for the indexed searches
/// (band, pair): `collect(limit, out)` pushes every row within `limit`
/// (and may drop rows beyond a tightened one, see `Shrinking`). First with
/// the guess `limit`, then without a bound if the guess held fewer than k.
pub(crate) fn knn_within(
    k: usize,
    limit: f32,
    out: &mut Vec<Neighbour>,
    mut collect: impl FnMut(f32, &mut Vec<Neighbour>),
) {
    let mut start = limit;
    loop {
        out.clear();
        if k == 0 {
            return;
        }
        collect(start, out);
        if out.len() >= k || start == f32::INFINITY {
            break;
        }
        start = f32::INFINITY;
    }
    keep_smallest(out, k);
}

/// The distance limit of a collection of k nearest rows: whenever the
/// buffer fills (`k + k/8 + 64` rows) it keeps the k nearest and tightens
/// the limit to the k-th's distance, so an index scan narrows as it goes.
pub(crate) struct Shrinking {
    limit: std::cell::Cell<f32>,
    k: usize,
    cap: usize,
}

impl Shrinking {
    /// A limit starting at `start`, for `k` rows.
    pub(crate) fn new(start: f32, k: usize) -> Self {
        Shrinking {
            limit: std::cell::Cell::new(start),
            k,
            cap: k + k / 8 + 64,
        }
    }

    /// The current limit.
    pub(crate) fn get(&self) -> f32 {
        self.limit.get()
    }

    /// Called after rows were pushed to `out`.
    pub(crate) fn trim(&self, out: &mut Vec<Neighbour>) {
        if out.len() >= self.cap {
            keep_smallest(out, self.k);
            let kth = out.iter().map(|nb| nb.dist).fold(0.0, f32::max);
            self.limit.set(kth);
        }
    }
}

/// Visits the units (buckets, strips) `0..len` of an index ordered along
/// one dimension outward from `home`: `home` first, then whichever side's
/// next unit has the smaller lower bound `bound(j)` on the distance of its
/// rows, until both sides' bounds exceed `limit()` (re-read each step, so
/// it may tighten). Units for which `skip(j)` holds (empty) are passed over.
#[inline(always)]
pub(crate) fn scan_outward(
    home: usize,
    len: usize,
    skip: impl Fn(usize) -> bool,
    bound: impl Fn(usize) -> f32,
    mut limit: impl FnMut() -> f32,
    mut visit: impl FnMut(usize),
) {
    visit(home);
    let (mut up, mut down) = (home + 1, home);
    loop {
        while up < len && skip(up) {
            up += 1;
        }
        while down > 0 && skip(down - 1) {
            down -= 1;
        }
        let (has_up, has_down) = (up < len, down > 0);
        if !has_up && !has_down {
            return;
        }
        let lb_up = if has_up { bound(up) } else { f32::INFINITY };
        let lb_down = if has_down {
            bound(down - 1)
        } else {
            f32::INFINITY
        };
        let lim = limit();
        // The side is chosen by what is left, not by comparing an exhausted
        // side's infinity: a bound can itself overflow to infinity (values
        // near f32::MAX), and the limit can be infinite.
        let j = if has_up && (!has_down || lb_up <= lb_down) {
            if lb_up > lim {
                return;
            }
            up += 1;
            up - 1
        } else {
            if lb_down > lim {
                return;
            }
            down -= 1;
            down
        };
        visit(j);
    }
}

/// Folds candidates into `best`, the nearest so far (ties: lowest row).
#[inline(always)]
pub(crate) fn fold_nearest(best: &mut Neighbour, candidates: impl Iterator<Item = Neighbour>) {
    let mut best_key = best.key();
    for cand in candidates {
        if cand.key() < best_key {
            best_key = cand.key();
            *best = cand;
        }
    }
}

/// The `k` nearest rows to `q` (excluding `exclude`), by brute force.
/// Written for clarity; the oracle of `Searcher::knn`.
pub fn knn_brute(
    pool: &Pool,
    dims: &[u32],
    q: &[f32],
    k: usize,
    exclude: Option<u32>,
) -> Vec<Neighbour> {
    let mut all: Vec<Neighbour> = (0..pool.n)
        .filter(|&r| Some(r as u32) != exclude)
        .map(|r| Neighbour {
            dist: distance(pool, dims, q, r),
            row: r as u32,
        })
        .collect();
    all.sort_by(Neighbour::cmp_key);
    all.truncate(k);
    all
}

/// Extra subsample ranks beyond the expected one, in standard deviations:
/// the limit then holds k rows except in rare cases, which are retried.
const LIMIT_MARGIN_SD: f64 = 3.0;

/// The subsample rank whose distance bounds the k-th of `avail` rows, with
/// a margin (`usize::MAX`: no useful bound).
fn limit_rank(pool: &Pool, k: usize, avail: usize) -> usize {
    limit_rank_with(pool, k, avail, LIMIT_MARGIN_SD)
}

/// `limit_rank` with a margin of `sd` standard deviations.
fn limit_rank_with(pool: &Pool, k: usize, avail: usize, sd: f64) -> usize {
    if 2 * k >= avail {
        return usize::MAX;
    }
    // Expected subsample rank of the k-th neighbour, plus a margin.
    let expect = k as f64 * pool.sub_n as f64 / pool.n as f64;
    (expect + sd * expect.sqrt() + 4.0).ceil() as usize
}

/// `LIMIT_MARGIN_SD` for the one-pass search, whose candidates all cost
/// gathers: a smaller margin, more often retried.
const ONE_PASS_MARGIN_SD: f64 = 2.0;

/// Per-thread search state: the chosen kernels and reusable buffers.
pub struct Searcher {
    isa: Isa,
    sub_dist: Vec<f32>,
    bracket: Vec<f32>,
    hits: Vec<u32>,
    wide: Vec<Vec<f32>>,
    cand: Candidates,
    centre: Vec<f32>,
}

/// Two float16 columns, which the vector levels read as they are.
fn half_pair<'p>(pool: &'p Pool<'_>, dims: &[u32]) -> Option<(&'p [u16], &'p [u16])> {
    let &[d0, d1] = dims else { return None };
    match (pool.col(d0 as usize), pool.col(d1 as usize)) {
        (Col::F16(a), Col::F16(b)) => Some((a, b)),
        _ => None,
    }
}

/// Widens the subspace's float16 columns into `wide` (one buffer per
/// dimension; f32 columns are left alone). Only small or unusual subspaces
/// take this path, see `band.rs`.
fn widen(isa: Isa, pool: &Pool<'_>, dims: &[u32], wide: &mut Vec<Vec<f32>>) {
    if wide.len() < dims.len() {
        wide.resize_with(dims.len(), Vec::new);
    }
    for (&d, w) in dims.iter().zip(wide.iter_mut()) {
        if let Col::F16(c) = pool.col(d as usize) {
            isa.widen_f16(c, w);
        }
    }
}

/// f32 views of the subspace's columns: the stored ones, or their copies
/// in `wide` (filled by `widen`).
fn views<'s>(pool: &'s Pool<'_>, dims: &[u32], wide: &'s [Vec<f32>]) -> Vec<&'s [f32]> {
    dims.iter()
        .zip(wide)
        .map(|(&d, w)| match pool.col(d as usize) {
            Col::F32(c) => c,
            Col::F16(_) => &w[..],
        })
        .collect()
}

/// `widen` then `views`.
fn columns<'s>(
    isa: Isa,
    pool: &'s Pool<'_>,
    dims: &[u32],
    wide: &'s mut Vec<Vec<f32>>,
) -> Vec<&'s [f32]> {
    widen(isa, pool, dims, wide);
    views(pool, dims, wide)
}

impl Searcher {
    /// A searcher using the best kernels this CPU supports.
    pub fn new() -> Self {
        Self::with_isa(Isa::best())
    }

    /// A searcher using the kernels of `isa`.
    pub fn with_isa(isa: Isa) -> Self {
        Searcher {
            isa,
            sub_dist: Vec::new(),
            bracket: Vec::new(),
            hits: Vec::new(),
            wide: Vec::new(),
            cand: Candidates::default(),
            centre: Vec::new(),
        }
    }

    /// The row nearest to `q` (ties: lowest row).
    pub fn nearest(&mut self, pool: &Pool, dims: &[u32], q: &[f32]) -> Neighbour {
        if let Some((a, b)) = half_pair(pool, dims) {
            if let Some(nb) = self.isa.nearest_f16(a, b, [q[0], q[1]]) {
                return nb;
            }
        }
        let isa = self.isa;
        isa.nearest(&columns(isa, pool, dims, &mut self.wide), q)
    }

    /// A distance within which about `rank` subsample rows (of `sub_n`) lie.
    fn subsample_limit(&mut self, pool: &Pool, dims: &[u32], q: &[f32], rank: usize) -> f32 {
        self.subsample_select(pool, dims, q, rank).0
    }

    /// The distances of subsample row `rank` (infinite past the subsample)
    /// and of the nearest subsample row to `q`.
    fn subsample_select(
        &mut self,
        pool: &Pool,
        dims: &[u32],
        q: &[f32],
        rank: usize,
    ) -> (f32, f32) {
        let m = pool.sub_n;
        if rank >= m {
            return (f32::INFINITY, f32::INFINITY);
        }
        // The default two-dimensional subspace (and up to four) without a
        // heap allocation: this runs once or twice per sample.
        let mut small: [&[f32]; 4] = [&[]; 4];
        let many: Vec<&[f32]>;
        let cols: &[&[f32]] = if dims.len() <= small.len() {
            for (c, &d) in small.iter_mut().zip(dims) {
                *c = pool.sub_column(d as usize);
            }
            &small[..dims.len()]
        } else {
            many = dims.iter().map(|&d| pool.sub_column(d as usize)).collect();
            &many
        };
        let (nearest, farthest) = self.isa.subsample_distances(cols, q, &mut self.sub_dist);
        let (kth, _) = one_pass::kth_smallest(
            self.isa,
            &self.sub_dist,
            rank + 1,
            farthest,
            m,
            &mut self.bracket,
        );
        (kth, nearest)
    }

    /// A distance that holds at least `k` rows around `q` with high
    /// probability (estimated from the subsample; infinite when k is most
    /// of the pool). Callers must still check they found k rows.
    pub fn limit_estimate(&mut self, pool: &Pool, dims: &[u32], q: &[f32], k: usize) -> f32 {
        let rank = limit_rank(pool, k, pool.n - 1);
        self.subsample_limit(pool, dims, q, rank)
    }

    /// The `k` nearest rows to `q` (excluding `exclude`), unordered, written
    /// into `out`. Exactly the set `knn_brute` returns.
    pub fn knn(
        &mut self,
        pool: &Pool,
        dims: &[u32],
        q: &[f32],
        k: usize,
        exclude: Option<u32>,
        out: &mut Vec<Neighbour>,
    ) {
        let avail = pool.n - usize::from(exclude.is_some());
        let k = k.min(avail);
        out.clear();
        if k == 0 {
            return;
        }
        let mut rank = limit_rank(pool, k, avail);
        let skip = exclude.unwrap_or(u32::MAX);
        let mut wide = std::mem::take(&mut self.wide);
        let half = half_pair(pool, dims);
        // Widened only if this level cannot read float16 columns in place.
        let mut widened = false;
        loop {
            let limit = self.subsample_limit(pool, dims, q, rank);
            let done_half = half.is_some_and(|(a, b)| {
                let q = [q[0], q[1]];
                self.isa
                    .within_f16(a, b, q, limit, skip, &mut self.hits, out)
            });
            if !done_half {
                if !widened {
                    widen(self.isa, pool, dims, &mut wide);
                    widened = true;
                }
                let cols = views(pool, dims, &wide);
                self.isa.within(&cols, q, limit, skip, &mut self.hits, out);
            }
            if out.len() >= k || limit == f32::INFINITY {
                break;
            }
            rank = rank.saturating_mul(4);
        }
        self.wide = wide;
        keep_smallest(out, k);
    }
}

impl Searcher {
    /// The row nearest to `q` and, into `out`, the `k` rows nearest to it
    /// (itself excluded), unordered: exactly what `nearest` and then `knn`
    /// around the winner give, usually from one pass over the rows (see
    /// `one_pass`).
    pub fn nearest_and_knn(
        &mut self,
        pool: &Pool,
        coarse: Option<&Coarse>,
        dims: &[u32],
        q: &[f32],
        k: usize,
        out: &mut Vec<Neighbour>,
    ) -> Neighbour {
        if let Some(winner) = self.one_pass(pool, coarse, dims, q, k, out) {
            return winner;
        }
        let winner = self.nearest(pool, dims, q);
        let mut centre = std::mem::take(&mut self.centre);
        centre.clear();
        centre.extend(
            dims.iter()
                .map(|&d| pool.value(d as usize, winner.row as usize)),
        );
        self.knn(pool, dims, &centre, k, Some(winner.row), out);
        self.centre = centre;
        winner
    }

    /// `nearest_and_knn` for two-dimensional subspaces from one pass.
    ///
    /// The pass collects every row within `radius` of `q` (and, from the
    /// coarse copy, a few more), where `radius` is the subsample's estimate
    /// of the (k+1)-th neighbour distance of `q` plus a quarter of its
    /// nearest distance (room for the winner's own distance from `q`; any
    /// radius gives exact results, this one rarely retries). If the
    /// nearest collected row lies within `radius`, it is the winner. By
    /// the triangle inequality every row within
    /// `radius - d(q, winner)` of the winner is too (less a relative 2^-20
    /// that covers f32 rounding), so if at least k of them are, the k
    /// nearest are exactly those collected. Otherwise a second pass
    /// collects every row within the subsample's estimate of the winner's
    /// own k-th neighbour distance, which settles it the same way if k
    /// rows lie within. Failing both (rare) None, and the caller searches
    /// as usual; also None where one pass cannot help.
    fn one_pass(
        &mut self,
        pool: &Pool,
        coarse: Option<&Coarse>,
        dims: &[u32],
        q: &[f32],
        k: usize,
        out: &mut Vec<Neighbour>,
    ) -> Option<Neighbour> {
        let &[d0, d1] = dims else { return None };
        let k = k.min(pool.n - 1);
        let rank = limit_rank_with(pool, k + 1, pool.n, ONE_PASS_MARGIN_SD);
        if k == 0 || rank >= pool.sub_n {
            return None;
        }
        let (kth, nearest) = self.subsample_select(pool, dims, q, rank);
        let radius = round_up(f64::from(kth) + 0.25 * f64::from(nearest));
        if !radius.is_finite() {
            return None;
        }
        let q = [q[0], q[1]];
        let mut cand = std::mem::take(&mut self.cand);
        self.collect_within(pool, coarse, [d0, d1], q, radius, &mut cand);
        // The coarse filter may pass rows beyond `radius`: the winner is
        // certain only if it lies within.
        let winner = self.isa.nearest_of(&cand, q).filter(|w| w.dist <= radius);
        let mut found = None;
        if let Some(winner) = winner {
            let w = winner.row as usize;
            let centre = [pool.value(d0 as usize, w), pool.value(d1 as usize, w)];
            let limit = round_down(
                f64::from(radius) * (1.0 - 1.0 / f64::from(1u32 << 20))
                    - f64::from(winner.dist)
                    - 1e-36,
            );
            let isa = self.isa;
            if one_pass::nearest_k_of(isa, &mut cand, centre, limit, winner.row, k, out) {
                found = Some(winner);
            } else {
                // The winner lies far from `q`, so too few rows were surely
                // collected around it: one more pass, centred on the winner,
                // out to the subsample's estimate of its k-th distance.
                let (kth, _) = self.subsample_select(pool, dims, &centre, rank);
                let around = round_up(f64::from(kth));
                if around.is_finite() {
                    self.collect_within(pool, coarse, [d0, d1], centre, around, &mut cand);
                    found =
                        one_pass::nearest_k_of(isa, &mut cand, centre, around, winner.row, k, out)
                            .then_some(winner);
                }
            }
        }
        self.cand = cand;
        found
    }

    /// Every row within `radius` of `q` in the subspace `dims` (and, from
    /// the coarse copy, a few more), with its coordinates, into `cand`.
    fn collect_within(
        &mut self,
        pool: &Pool,
        coarse: Option<&Coarse>,
        dims: [u32; 2],
        q: [f32; 2],
        radius: f32,
        cand: &mut Candidates,
    ) {
        if coarse.is_some_and(|c| c.collect(self.isa, pool, dims, q, radius, cand)) {
            return;
        }
        let half = half_pair(pool, &dims);
        if half.is_some_and(|(a, b)| self.isa.collect_f16(a, b, q, radius, cand)) {
            return;
        }
        let mut wide = std::mem::take(&mut self.wide);
        let cols = columns(self.isa, pool, &dims, &mut wide);
        self.isa.collect(cols[0], cols[1], q, radius, cand);
        self.wide = wide;
    }
}

/// The least f32 at or above `x`.
fn round_up(x: f64) -> f32 {
    let r = x as f32;
    if f64::from(r) < x {
        r.next_up()
    } else {
        r
    }
}

/// The greatest f32 at or below `x`.
fn round_down(x: f64) -> f32 {
    let r = x as f32;
    if f64::from(r) > x {
        r.next_down()
    } else {
        r
    }
}

impl Default for Searcher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::pool_from_rows;

    use crate::rng::TestRng;

    /// Random pools with coarse values (many ties), duplicate rows and a
    /// constant dimension.
    fn random_pool(
        rng: &mut TestRng,
        n: usize,
        d: usize,
        half: bool,
    ) -> crate::pool::Pool<'static> {
        let mut rows: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                (0..d)
                    .map(|j| match j {
                        0 => 1.5,
                        1 => (rng.next() % 8) as f32,
                        _ => rng.unit() * 4.0 - 2.0,
                    })
                    .collect()
            })
            .collect();
        for i in 0..n / 10 {
            rows[i + n / 2] = rows[i].clone();
        }
        if half {
            return half_pool(&rows);
        }
        pool_from_rows(&rows).unwrap()
    }

    /// A float16 pool used in place (column-major bits), from rows.
    fn half_pool(rows: &[Vec<f32>]) -> crate::pool::Pool<'static> {
        let (n, d) = (rows.len(), rows[0].len());
        let bits: Vec<u8> = (0..d)
            .flat_map(|c| rows.iter().map(move |r| half::f16::from_f32(r[c])))
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let src = crate::pool::Source {
            bytes: Box::leak(bits.into_boxed_slice()),
            dtype: crate::npy::Dtype::F16,
            rows: n,
            cols: d,
            fortran_order: true,
            name: "t",
        };
        crate::pool::Pool::build_with(&[src], &|| true, 0).unwrap()
    }

    fn sorted_set(mut v: Vec<Neighbour>) -> Vec<Neighbour> {
        v.sort_by(Neighbour::cmp_key);
        v
    }

    /// The subsample's distances, least and greatest are the same bits on
    /// every instruction-set level (the vector levels fuse the two-dimensional pass).
    #[test]
    fn subsample_distances_agree_across_isas() {
        let mut rng = TestRng(9);
        for _ in 0..40 {
            let n = 2 + rng.next() as usize % 5000;
            let d = 2 + rng.next() as usize % 4;
            let pool = random_pool(&mut rng, n, d, false);
            for m in 1..=d.min(3) {
                let dims: Vec<u32> = (0..m as u32).map(|j| (j + rng.next()) % d as u32).collect();
                let q: Vec<f32> = (0..m).map(|_| rng.unit() * 4.0 - 2.0).collect();
                let (mut fast, mut slow) = (Vec::new(), Vec::new());
                let cols: Vec<&[f32]> = dims.iter().map(|&d| pool.sub_column(d as usize)).collect();
                let want = Isa::portable().subsample_distances(&cols, &q, &mut slow);
                for isa in Isa::supported() {
                    let got = isa.subsample_distances(&cols, &q, &mut fast);
                    assert_eq!(fast, slow, "{}", isa.name());
                    assert_eq!(got, want, "{}", isa.name());
                }
                let lo = slow.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = slow.iter().copied().fold(0f32, f32::max);
                assert_eq!(want, (lo, hi));
            }
        }
    }

    #[test]
    fn knn_equals_brute_force_on_thousands_of_draws() {
        for isa in Isa::supported() {
            for half in [false, true] {
                knn_matches_brute(&mut Searcher::with_isa(isa), half);
            }
        }
    }

    fn knn_matches_brute(searcher: &mut Searcher, half: bool) {
        let mut rng = TestRng(42);
        let mut out = Vec::new();
        for trial in 0..60 {
            let n = 2 + (rng.next() as usize % 5000);
            let d = 2 + (rng.next() as usize % 5);
            let pool = random_pool(&mut rng, n, d, half);
            assert_eq!(pool.is_f16(), half);
            let coarse = Coarse::build(&pool, searcher.isa).filter(|_| trial % 2 == 0);
            for _ in 0..60 {
                let m = 1 + rng.next() as usize % d.min(3);
                let mut dims: Vec<u32> = Vec::new();
                while dims.len() < m {
                    let x = rng.next() % d as u32;
                    if !dims.contains(&x) {
                        dims.push(x);
                    }
                }
                let k = 1 + rng.next() as usize % 300;
                let from_row = rng.next().is_multiple_of(2);
                let (q, exclude): (Vec<f32>, Option<u32>) = if from_row {
                    let r = rng.next() % n as u32;
                    (
                        dims.iter()
                            .map(|&x| pool.value(x as usize, r as usize))
                            .collect(),
                        Some(r),
                    )
                } else {
                    (dims.iter().map(|_| rng.unit() * 10.0 - 5.0).collect(), None)
                };
                searcher.knn(&pool, &dims, &q, k, exclude, &mut out);
                let expect = knn_brute(&pool, &dims, &q, k, exclude);
                assert_eq!(
                    sorted_set(out.clone()),
                    expect,
                    "trial {trial} dims {dims:?} k {k}"
                );
                if exclude.is_none() {
                    assert_eq!(searcher.nearest(&pool, &dims, &q), expect[0]);
                    let winner =
                        searcher.nearest_and_knn(&pool, coarse.as_ref(), &dims, &q, k, &mut out);
                    assert_eq!(winner, expect[0]);
                    let centre: Vec<f32> = dims
                        .iter()
                        .map(|&x| pool.value(x as usize, winner.row as usize))
                        .collect();
                    assert_eq!(
                        sorted_set(out.clone()),
                        knn_brute(&pool, &dims, &centre, k, Some(winner.row)),
                        "one pass: trial {trial} dims {dims:?} k {k}"
                    );
                }
            }
        }
    }

    /// The one-pass search on pools large enough for it (it must actually
    /// be taken, not fall back), against brute force.
    #[test]
    fn one_pass_equals_brute_force() {
        let mut rng = TestRng(7);
        let mut out = Vec::new();
        for isa in Isa::supported() {
            let mut searcher = Searcher::with_isa(isa);
            for trial in 0..12 {
                let n = 3000 + (rng.next() as usize % 9000);
                let half = trial % 3 == 2;
                let pool = random_pool(&mut rng, n, 4, half);
                let coarse = Coarse::build(&pool, isa).filter(|_| trial % 2 == 0);
                assert_eq!(coarse.is_some(), trial % 2 == 0 && !half);
                let mut taken = 0;
                for _ in 0..100 {
                    let a = rng.next() % 4;
                    let b = (a + 1 + rng.next() % 3) % 4;
                    let dims = [a, b];
                    let k = 1 + rng.next() as usize % (n / 4);
                    let q = [rng.unit() * 6.0 - 3.0, rng.unit() * 10.0 - 1.0];
                    let Some(winner) =
                        searcher.one_pass(&pool, coarse.as_ref(), &dims, &q, k, &mut out)
                    else {
                        continue;
                    };
                    taken += 1;
                    assert_eq!(winner, knn_brute(&pool, &dims, &q, 1, None)[0]);
                    let c = dims.map(|x| pool.value(x as usize, winner.row as usize));
                    assert_eq!(
                        sorted_set(out.clone()),
                        knn_brute(&pool, &dims, &c, k, Some(winner.row)),
                        "trial {trial} dims {dims:?} k {k}"
                    );
                }
                assert!(taken > 80, "one pass taken {taken} of 100 times");
            }
        }
    }

    #[test]
    fn ties_go_to_the_lowest_row() {
        let rows = vec![
            vec![1.0, 1.0],
            vec![0.0, 0.0],
            vec![1.0, 1.0],
            vec![0.0, 0.0],
        ];
        let pool = pool_from_rows(&rows).unwrap();
        let mut s = Searcher::new();
        assert_eq!(s.nearest(&pool, &[0, 1], &[0.9, 0.9]).row, 0);
        assert_eq!(s.nearest(&pool, &[0, 1], &[0.5, 0.5]).row, 0);
        let mut out = Vec::new();
        s.knn(&pool, &[0, 1], &[1.0, 1.0], 2, Some(0), &mut out);
        assert_eq!(
            sorted_set(out).iter().map(|n| n.row).collect::<Vec<_>>(),
            vec![2, 1]
        );
    }
}

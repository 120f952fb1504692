//! Nearest neighbours of a point in an axis-aligned subspace, L1 distance.
//!
//! The fast path streams the subspace's columns through vectorised passes
//! (`kernels.rs`): one pass finds the nearest row; for k neighbours, a fixed
//! row subsample first gives a distance limit that holds at least k rows
//! with high probability, one pass collects the rows within it, and a
//! selection keeps the k nearest. If fewer than k rows fall within the limit
//! it is widened and the pass repeated, so the result is always exact.
//! `knn_brute` is the obviously-correct oracle; both order neighbours by
//! (distance, row), so ties go to the lower row index.

use crate::columns::{Col, Pool};
use crate::kernels::Isa;
use std::cmp::Ordering;

/// A row and its L1 distance to the query. Laid out as (row, dist) so the
/// AVX-512 pass can store both in one interleaved write.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Neighbour {
    /// Row index.
    pub row: u32,
    /// Distance in the subspace, summed in f32 in `dims` order; never
    /// negative (a sum of absolute values), never NaN (inputs are checked).
    pub dist: f32,
}

impl Neighbour {
    /// One integer that orders neighbours nearer first, then lower row: the
    /// bits of a non-negative float order like the float itself, so
    /// selections compare plain u64s instead of calling a comparator.
    #[inline]
    pub fn key(&self) -> u64 {
        debug_assert!(self.dist >= 0.0 && self.dist.is_sign_positive());
        (u64::from(self.dist.to_bits()) << 32) | u64::from(self.row)
    }

    /// Total order: nearer first, then lower row.
    #[inline]
    pub fn cmp_key(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

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
    if 2 * k >= avail {
        return usize::MAX;
    }
    // Expected subsample rank of the k-th neighbour, plus a margin.
    let expect = k as f64 * pool.sub_n as f64 / pool.n as f64;
    (expect + LIMIT_MARGIN_SD * expect.sqrt() + 4.0).ceil() as usize
}

/// Per-thread search state: the chosen kernels and reusable buffers.
pub struct Searcher {
    isa: Isa,
    sub_dist: Vec<u32>,
    hits: Vec<u32>,
    wide: Vec<Vec<f32>>,
}

/// Two float16 columns the AVX-512 passes can read as they are.
fn half_pair<'p>(isa: Isa, pool: &'p Pool<'_>, dims: &[u32]) -> Option<(&'p [u16], &'p [u16])> {
    let &[d0, d1] = dims else { return None };
    match (isa, pool.col(d0 as usize), pool.col(d1 as usize)) {
        (Isa::Avx512, Col::F16(a), Col::F16(b)) => Some((a, b)),
        _ => None,
    }
}

/// f32 views of the subspace's columns; float16 columns are widened into
/// `wide` (only small or unusual subspaces take this path, see `band.rs`).
fn columns<'s>(pool: &'s Pool<'_>, dims: &[u32], wide: &'s mut Vec<Vec<f32>>) -> Vec<&'s [f32]> {
    if wide.len() < dims.len() {
        wide.resize_with(dims.len(), Vec::new);
    }
    dims.iter()
        .zip(wide.iter_mut())
        .map(|(&d, w)| pool.column(d as usize, w))
        .collect()
}

impl Searcher {
    /// A searcher using the best kernels this CPU supports.
    pub fn new() -> Self {
        Self::with_isa(Isa::detect())
    }

    /// A searcher using the given kernels (tests compare them).
    pub fn with_isa(isa: Isa) -> Self {
        Searcher {
            isa,
            sub_dist: Vec::new(),
            hits: Vec::new(),
            wide: Vec::new(),
        }
    }

    /// The row nearest to `q` (ties: lowest row).
    pub fn nearest(&mut self, pool: &Pool, dims: &[u32], q: &[f32]) -> Neighbour {
        if let Some((a, b)) = half_pair(self.isa, pool, dims) {
            if let Some(nb) = self.isa.nearest_f16(a, b, [q[0], q[1]]) {
                return nb;
            }
        }
        self.isa.nearest(&columns(pool, dims, &mut self.wide), q)
    }

    /// A distance within which about `rank` subsample rows (of `sub_n`) lie.
    fn subsample_limit(&mut self, pool: &Pool, dims: &[u32], q: &[f32], rank: usize) -> f32 {
        let m = pool.sub_n;
        if rank >= m {
            return f32::INFINITY;
        }
        // Distances as float bits: non-negative floats order like their
        // bits, and selecting u32s is cheaper than a float comparator.
        self.sub_dist.clear();
        self.sub_dist.resize(m, 0);
        for (&d, &qd) in dims.iter().zip(q) {
            for (o, &x) in self.sub_dist.iter_mut().zip(pool.sub_column(d as usize)) {
                *o = (f32::from_bits(*o) + (x - qd).abs()).to_bits();
            }
        }
        f32::from_bits(*self.sub_dist.select_nth_unstable(rank).1)
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
        let half = half_pair(self.isa, pool, dims);
        let cols = if half.is_some() {
            Vec::new()
        } else {
            columns(pool, dims, &mut wide)
        };
        loop {
            let limit = self.subsample_limit(pool, dims, q, rank);
            let done_half = half.is_some_and(|(a, b)| {
                let q = [q[0], q[1]];
                self.isa
                    .within_f16(a, b, q, limit, skip, &mut self.hits, out)
            });
            if !done_half {
                self.isa.within(&cols, q, limit, skip, &mut self.hits, out);
            }
            if out.len() >= k || limit == f32::INFINITY {
                break;
            }
            rank = rank.saturating_mul(4);
        }
        drop(cols);
        self.wide = wide;
        keep_smallest(out, k);
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
    use crate::columns::tests::pool_from_rows;

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn unit(&mut self) -> f32 {
            self.next() as f32 / (1u64 << 31) as f32
        }
    }

    /// Random pools with coarse values (many ties), duplicate rows and a
    /// constant dimension.
    fn random_pool(rng: &mut Lcg, n: usize, d: usize, half: bool) -> crate::columns::Pool<'static> {
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
    fn half_pool(rows: &[Vec<f32>]) -> crate::columns::Pool<'static> {
        let (n, d) = (rows.len(), rows[0].len());
        let bits: Vec<u8> = (0..d)
            .flat_map(|c| rows.iter().map(move |r| half::f16::from_f32(r[c])))
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let src = crate::columns::Source {
            bytes: Box::leak(bits.into_boxed_slice()),
            dtype: crate::npy::Dtype::F16,
            rows: n,
            cols: d,
            fortran_order: true,
            name: "t",
        };
        crate::columns::Pool::build_with(&[src], &|| true, 0).unwrap()
    }

    fn sorted_set(mut v: Vec<Neighbour>) -> Vec<Neighbour> {
        v.sort_by(Neighbour::cmp_key);
        v
    }

    #[test]
    fn knn_equals_brute_force_on_thousands_of_draws() {
        for isa in [Isa::Portable, Isa::detect()] {
            for half in [false, true] {
                knn_matches_brute(&mut Searcher::with_isa(isa), half);
            }
        }
    }

    fn knn_matches_brute(searcher: &mut Searcher, half: bool) {
        let mut rng = Lcg(42);
        let mut out = Vec::new();
        for trial in 0..60 {
            let n = 2 + (rng.next() as usize % 5000);
            let d = 2 + (rng.next() as usize % 5);
            let pool = random_pool(&mut rng, n, d, half);
            assert_eq!(pool.is_f16(), half);
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
                }
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

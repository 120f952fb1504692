//! Band search: nearest neighbours in a two-dimensional subspace that read
//! only the rows near the query in one of its dimensions.
//!
//! A `BandIndex` groups the rows of one dimension `b` into value buckets
//! (a counting sort: rows of a bucket stay in row order). A query (qb, qo)
//! scans buckets outward from qb, nearer first. Every row of a bucket is at
//! distance at least the bucket's lower bound |qb - nearest member| in `b`
//! alone, so once that bound exceeds the current answer's distance, no
//! unseen row can change the answer and the scan stops. Each scanned row's
//! distance is computed exactly as the brute-force passes do, so results
//! are bit-identical to them (`search::knn_brute` is the oracle in tests).
//!
//! The rows scanned grow like sqrt(k N) rather than N, which is what makes
//! pools of millions of rows affordable. Samples are grouped by their band
//! dimension so one index serves hundreds of samples (see `score/runner.rs`).

use super::{fold_nearest, knn_within, scan_outward, Neighbour, Shrinking};
use crate::arch::{Block, Isa};
use crate::pool::{Col, Pool, SharedOut};
use rayon::prelude::*;

/// Average rows per bucket: small enough that a bucket's bound is tight,
/// large enough that empty buckets are rare in the bulk of the data.
/// Measured at N = 50,000 and 10^6: 128 rows beat 8 and 32 (per-bucket
/// overhead outweighs the slightly looser bounds).
const ROWS_PER_BUCKET: usize = 128;

/// Most buckets per dimension (keeps the per-chunk histograms small).
const MAX_BUCKETS: usize = 1 << 16;

/// The rows of one dimension grouped by value bucket.
pub struct BandIndex {
    /// The dimension indexed.
    pub dim: u32,
    isa: Isa,
    lo: f32,
    scale: f32,
    /// `start[j]..start[j + 1]`: positions of bucket `j` in `rows`/`vals`.
    start: Vec<u32>,
    /// Smallest and largest member value of each bucket (empty: +inf/-inf).
    bmin: Vec<f32>,
    bmax: Vec<f32>,
    rows: Vec<u32>,
    vals: Vec<f32>,
}

/// Rows `from..to` of a column as f32 (float16 widened in bulk, which
/// vectorises, into `buf`).
pub(super) fn values<'a>(
    isa: Isa,
    col: Col<'a>,
    from: usize,
    to: usize,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    match col {
        Col::F32(c) => &c[from..to],
        Col::F16(c) => {
            isa.widen_f16(&c[from..to], buf);
            buf
        }
    }
}

impl Default for BandIndex {
    fn default() -> Self {
        Self::with_isa(Isa::best())
    }
}

impl BandIndex {
    /// An empty index whose searches use the given kernels.
    pub fn with_isa(isa: Isa) -> Self {
        BandIndex {
            dim: 0,
            isa,
            lo: 0.0,
            scale: 0.0,
            start: Vec::new(),
            bmin: Vec::new(),
            bmax: Vec::new(),
            rows: Vec::new(),
            vals: Vec::new(),
        }
    }

    /// Bucket of value `x`: monotone non-decreasing in `x` (float
    /// subtraction and multiplication by a non-negative number are
    /// monotone), which is all the search's bounds rely on.
    #[inline(always)]
    pub(super) fn bucket(&self, x: f32) -> usize {
        let j = (x - self.lo) * self.scale;
        // `as` saturates: below `lo` gives 0.
        (j as usize).min(self.start.len() - 2)
    }

    /// Rebuilds the index for dimension `dim` of `pool`, in parallel on the
    /// current rayon pool. Buffers are reused across dimensions.
    pub fn build(&mut self, pool: &Pool<'_>, dim: u32) {
        let n = pool.n;
        let col = pool.col(dim as usize);
        let buckets = (n / ROWS_PER_BUCKET).clamp(1, MAX_BUCKETS);
        self.dim = dim;
        self.lo = pool.stats.lo[dim as usize] as f32;
        let span = pool.stats.hi[dim as usize] as f32 - self.lo;
        self.scale = if span > 0.0 {
            buckets as f32 / span
        } else {
            0.0
        };
        self.start.clear();
        self.start.resize(buckets + 1, 0);
        let chunk = n.div_ceil(rayon::current_num_threads() * 2).max(4096);
        let this = &*self;
        // Per chunk of rows: bucket counts.
        let parts: Vec<Vec<u32>> = (0..n)
            .step_by(chunk)
            .collect::<Vec<_>>()
            .par_iter()
            .map(|&from| {
                let mut count = vec![0u32; buckets];
                let mut buf = Vec::new();
                for &x in values(this.isa, col, from, (from + chunk).min(n), &mut buf) {
                    count[this.bucket(x)] += 1;
                }
                count
            })
            .collect();
        // Each chunk's first position in every bucket: chunks in row order,
        // so rows within a bucket stay ascending.
        let mut offsets: Vec<Vec<u32>> = vec![vec![0; buckets]; parts.len()];
        let mut at = 0u32;
        for j in 0..buckets {
            self.start[j] = at;
            for (c, count) in parts.iter().enumerate() {
                offsets[c][j] = at;
                at += count[j];
            }
        }
        self.start[buckets] = at;
        self.rows.resize(n, 0);
        self.vals.resize(n, 0.0);
        let rows = SharedOut(self.rows.as_mut_ptr());
        let vals = SharedOut(self.vals.as_mut_ptr());
        let this = &*self;
        offsets.par_iter_mut().enumerate().for_each(|(c, next)| {
            let from = c * chunk;
            let mut buf = Vec::new();
            let xs = values(this.isa, col, from, (from + chunk).min(n), &mut buf);
            for (row, &x) in (from..).zip(xs) {
                let j = this.bucket(x);
                let p = next[j] as usize;
                next[j] += 1;
                // SAFETY: each chunk writes only its own reserved positions
                // of each bucket, and every position is below n.
                unsafe {
                    *rows.ptr().add(p) = row as u32;
                    *vals.ptr().add(p) = x;
                }
            }
        });
        // Member extremes per bucket, from its now contiguous values.
        let (bmin, bmax): (Vec<f32>, Vec<f32>) = (0..buckets)
            .into_par_iter()
            .with_min_len(1024)
            .map(|j| {
                let v = &self.vals[self.start[j] as usize..self.start[j + 1] as usize];
                let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (lo, hi)
            })
            .unzip();
        self.bmin = bmin;
        self.bmax = bmax;
    }

    /// The buckets in value order: `(start, rows, vals)`, bucket `j` at
    /// positions `start[j]..start[j + 1]` of `rows` (ascending within it)
    /// and `vals` (their values in `dim`).
    pub(super) fn buckets(&self) -> (&[u32], &[u32], &[f32]) {
        (&self.start, &self.rows, &self.vals)
    }

    /// Calls `visit(rows, vals)` for buckets in increasing order of their
    /// lower bound on |x - value|, while that bound is <= `limit()`.
    #[inline(always)]
    fn scan(&self, x: f32, limit: impl FnMut() -> f32, mut visit: impl FnMut(&[u32], &[f32])) {
        let range = |j: usize| self.start[j] as usize..self.start[j + 1] as usize;
        scan_outward(
            self.bucket(x),
            self.start.len() - 1,
            |j| self.start[j] == self.start[j + 1],
            // Buckets above x's hold values above x, those below, below.
            |j| (self.bmin[j] - x).max(x - self.bmax[j]),
            limit,
            |j| {
                let r = range(j);
                visit(&self.rows[r.clone()], &self.vals[r]);
            },
        );
    }
}

/// The query in (band dimension, other dimension) terms.
#[derive(Clone, Copy)]
pub struct BandQuery {
    /// The other dimension of the subspace.
    pub other: u32,
    /// Coordinate in the band dimension.
    pub qb: f32,
    /// Coordinate in the other dimension.
    pub qo: f32,
}

impl BandQuery {
    /// A bucket's rows as a kernel input for this query.
    fn block<'a>(&self, rows: &'a [u32], vals: &'a [f32], other: Col<'a>) -> Block<'a> {
        Block {
            rows,
            vals,
            other,
            qb: self.qb,
            qo: self.qo,
        }
    }
}

impl BandIndex {
    /// The row nearest to the query (ties: lowest row); `knn_brute`'s first.
    /// `buf` is scratch for a bucket's distances.
    pub fn nearest(&self, pool: &Pool<'_>, q: BandQuery, buf: &mut Vec<f32>) -> Neighbour {
        let other = pool.col(q.other as usize);
        let mut best = Neighbour {
            row: u32::MAX,
            dist: f32::INFINITY,
        };
        let best_dist = std::cell::Cell::new(f32::INFINITY);
        self.scan(
            q.qb,
            || best_dist.get(),
            |rows, vals| {
                self.isa.band_distances(q.block(rows, vals, other), buf);
                let cands = rows.iter().zip(buf.iter());
                fold_nearest(
                    &mut best,
                    cands.map(|(&row, &dist)| Neighbour { row, dist }),
                );
                best_dist.set(best.dist);
            },
        );
        best
    }

    /// The `k` nearest rows to the query other than `exclude`, unordered,
    /// into `out`: exactly the set `knn_brute` returns. Collects rows within
    /// `limit` (a guess, e.g. `Searcher::limit_estimate`; retried without
    /// it if it held fewer than k rows), selecting down to k whenever the
    /// buffer fills, so the bound also tightens as the scan widens.
    pub fn knn(
        &self,
        pool: &Pool<'_>,
        q: BandQuery,
        k: usize,
        exclude: u32,
        limit: f32,
        out: &mut Vec<Neighbour>,
    ) {
        let k = k.min(pool.n - 1);
        knn_within(k, limit, out, |start, out| {
            self.collect(pool, q, k, exclude, start, out)
        });
    }

    fn collect(
        &self,
        pool: &Pool<'_>,
        q: BandQuery,
        k: usize,
        exclude: u32,
        start: f32,
        out: &mut Vec<Neighbour>,
    ) {
        let other = pool.col(q.other as usize);
        let limit = Shrinking::new(start, k);
        self.scan(
            q.qb,
            || limit.get(),
            |rows, vals| {
                let block = q.block(rows, vals, other);
                self.isa
                    .band_collect_within(block, limit.get(), exclude, out);
                limit.trim(out);
            },
        );
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::pool::tests::column_major_pool;
    use crate::pool::Pool;
    use crate::rng::Stream;
    use crate::search::knn_brute;

    /// Column-major pools with coarse values (ties), duplicate rows, a
    /// constant dimension and heavy tails; stored as f32 or float16.
    pub(in crate::search) fn pool(seed: u64, n: usize, f16_store: bool) -> Pool<'static> {
        let mut rng = Stream::new(seed, 7, 0);
        let d = 4;
        let mut cols = vec![0f32; n * d];
        for r in 0..n {
            let src = if r >= n / 2 && r < n / 2 + n / 10 {
                r - n / 2
            } else {
                r
            };
            for c in 0..d {
                let v = match c {
                    0 => 1.25,
                    1 => (rng.below(8) as f32) * 0.5,
                    2 => (rng.unit_open() as f32 - 0.5).powi(3) * 40.0,
                    _ => rng.unit_open() as f32 * 4.0 - 2.0,
                };
                cols[c * n + r] = v;
                if src != r {
                    cols[c * n + r] = cols[c * n + src];
                }
            }
        }
        column_major_pool(&cols, n, d, f16_store)
    }

    #[test]
    fn band_search_equals_brute_force() {
        for isa in Isa::supported() {
            matches_brute_force(isa);
        }
    }

    fn matches_brute_force(isa: Isa) {
        let mut rng = Stream::new(5, 8, 0);
        let mut index = BandIndex::with_isa(isa);
        let mut out = Vec::new();
        for trial in 0..40 {
            let n = 2 + rng.below(6000) as usize;
            let f16_store = trial % 2 == 1;
            let p = pool(trial, n, f16_store);
            assert_eq!(p.is_f16(), f16_store);
            for b in 0..p.d as u32 {
                index.build(&p, b);
                for _ in 0..25 {
                    let mut o = rng.below(p.d as u32);
                    if o == b {
                        o = (o + 1) % p.d as u32;
                    }
                    let dims = [b.min(o), b.max(o)];
                    let q: Vec<f32> = dims
                        .iter()
                        .map(|_| rng.unit_open() as f32 * 8.0 - 4.0)
                        .collect();
                    let coord =
                        |dim: u32, v: &[f32]| v[dims.iter().position(|&x| x == dim).unwrap()];
                    let bq = BandQuery {
                        other: o,
                        qb: coord(b, &q),
                        qo: coord(o, &q),
                    };
                    let want = knn_brute(&p, &dims, &q, 1, None)[0];
                    let got = index.nearest(&p, bq, &mut Vec::new());
                    assert_eq!(got, want, "trial {trial} n {n} dims {dims:?}");
                    let c = want.row;
                    let centre: Vec<f32> = dims
                        .iter()
                        .map(|&x| p.value(x as usize, c as usize))
                        .collect();
                    let k = 1 + rng.below(400) as usize;
                    let cq = BandQuery {
                        other: o,
                        qb: coord(b, &centre),
                        qo: coord(o, &centre),
                    };
                    let guess = if k.is_multiple_of(3) {
                        f32::INFINITY
                    } else {
                        (rng.unit_open() as f32) * 0.5
                    };
                    index.knn(&p, cq, k, c, guess, &mut out);
                    out.sort_by(Neighbour::cmp_key);
                    let want = knn_brute(&p, &dims, &centre, k, Some(c));
                    assert_eq!(out, want, "trial {trial} n {n} k {k} dims {dims:?}");
                }
            }
        }
    }
}

//! ZCore scoring (DESIGN.md section 2): parameters, each sample's draws and
//! effect (coverage reward, redundancy penalties), and the final scores.
//! The parallel loop over samples lives in `runner.rs`, one sample's
//! penalty weights in `penalty.rs`.
//!
//! Every sample's draws come from a counter-based stream keyed by (seed,
//! sample index), and score changes are summed as fixed-point integers, whose
//! addition is associative. Together these make the scores bit-identical for
//! any thread count and any order of execution.

pub mod penalty;
pub mod rows;
mod runner;

use crate::arch::Isa;
use crate::error::{invalid, CoreError, Result};
use crate::pool::Pool;
use crate::rng::{distinct_dims, triangular, Stream, STREAM_NOISE, STREAM_SAMPLE};
use crate::search::Searcher;
use penalty::Penalties;
pub use runner::{Part, Search, BAND_MIN_ROWS};

/// Scoring parameters, with the paper's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Number of random subspace samples (paper: `n_sample`, 1,000,000).
    pub n_sample: u64,
    /// Dimensions per subspace (paper: `sample_dim`, 2).
    pub sample_dim: usize,
    /// Neighbours penalised per sample (paper: `redund_nn`, 1000).
    pub redund_nn: usize,
    /// Exponent of the inverse-distance penalty (paper: `redund_exp`, 4).
    pub redund_exp: f64,
    /// Add U(0,1) noise per row before normalising (paper: `rand_init`, on).
    pub rand_init: bool,
    /// Seed of every random draw.
    pub seed: u64,
    /// Worker threads (>= 1).
    pub threads: usize,
    /// Search method (results are identical; only speed differs).
    pub search: Search,
    /// Instruction-set level of the kernels (results are identical; only
    /// speed differs).
    pub isa: Isa,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            n_sample: 1_000_000,
            sample_dim: 2,
            redund_nn: 1000,
            redund_exp: 4.0,
            rand_init: true,
            seed: 0,
            threads: 1,
            search: Search::Auto,
            isa: Isa::best(),
        }
    }
}

impl Params {
    /// Checks the parameters against a pool of `n` rows and `d` dimensions.
    pub fn validate(&self, n: usize, d: usize) -> Result<()> {
        if self.n_sample == 0 {
            return Err(invalid!("n_sample must be at least 1"));
        }
        if self.sample_dim == 0 {
            return Err(invalid!("sample_dim must be at least 1"));
        }
        if d < self.sample_dim {
            return Err(invalid!(
                "embeddings have {d} dimension(s), fewer than sample_dim = {}; \
                 lower sample_dim or add dimensions",
                self.sample_dim
            ));
        }
        if self.redund_nn == 0 {
            return Err(invalid!("redund_nn must be at least 1"));
        }
        if !(self.redund_exp.is_finite() && self.redund_exp >= 0.0) {
            return Err(invalid!(
                "redund_exp must be a finite number >= 0, got {}",
                self.redund_exp
            ));
        }
        if self.threads == 0 {
            return Err(invalid!("threads must be at least 1"));
        }
        if n > u32::MAX as usize || d > u32::MAX as usize {
            return Err(invalid!("pool of {n} x {d} is too large"));
        }
        Ok(())
    }
}

/// Fixed-point scale of score accumulators: 2^32 units per score point.
/// i64 holds +-2^31 points, above any reachable |score| (at most n_sample).
pub(crate) const FIXED_ONE: f64 = 4_294_967_296.0;

/// One sample's subspace and sample point.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// The chosen dimensions (distinct).
    pub dims: Vec<u32>,
    /// The sample point, one coordinate per chosen dimension.
    pub q: Vec<f32>,
}

/// The subspace and sample point of sample `index` for this seed.
pub fn draw(pool_stats: &crate::pool::DimStats, seed: u64, index: u64, sample_dim: usize) -> Draw {
    let mut dims = vec![0u32; sample_dim];
    let mut q = vec![0f32; sample_dim];
    draw_into(pool_stats, seed, index, &mut dims, &mut q);
    Draw { dims, q }
}

pub(crate) fn draw_into(
    stats: &crate::pool::DimStats,
    seed: u64,
    index: u64,
    dims: &mut [u32],
    q: &mut [f32],
) {
    let mut rng = Stream::new(seed, STREAM_SAMPLE, index);
    distinct_dims(&mut rng, stats.lo.len() as u32, dims);
    for (qd, &d) in q.iter_mut().zip(dims.iter()) {
        let d = d as usize;
        *qd = triangular(rng.unit_open(), stats.lo[d], stats.md[d], stats.hi[d]) as f32;
    }
}

/// What one sample does to the scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleEffect {
    /// The coverage winner (+1).
    pub winner: u32,
    /// Rows penalised and their penalties (positive; subtracted from scores).
    pub penalties: Vec<(u32, f64)>,
}

/// The effect of one given subspace and sample point (for tests and tracing).
pub fn trace(
    pool: &Pool,
    dims: &[u32],
    q: &[f32],
    redund_nn: usize,
    redund_exp: f64,
) -> SampleEffect {
    let mut searcher = Searcher::new();
    let winner = searcher.nearest(pool, dims, q).row;
    let centre: Vec<f32> = dims
        .iter()
        .map(|&d| pool.value(d as usize, winner as usize))
        .collect();
    let mut neighbours = Vec::new();
    let k = redund_nn.min(pool.n - 1);
    searcher.knn(pool, dims, &centre, k, Some(winner), &mut neighbours);
    let mut p = Penalties::default();
    p.compute(Isa::best(), &neighbours, redund_exp);
    SampleEffect {
        winner,
        penalties: p
            .rows()
            .iter()
            .copied()
            .zip(p.weights().iter().copied())
            .collect(),
    }
}

/// Raw (unnormalised, noise-free) scores: the sum over samples of coverage
/// rewards minus redundancy penalties. `progress(done, total)` is called from
/// the calling thread every ~50 ms and at the end; an error from it stops the
/// workers and is returned.
pub fn raw_scores(
    pool: &Pool,
    p: &Params,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Vec<f64>> {
    Ok(raw_halves(pool, p, progress)?.total())
}

/// Raw scores of the first and second half of the samples, in fixed point.
/// Their sum is exactly the raw score of all samples (integer sums do not
/// depend on order), and their agreement measures convergence: two
/// independent half-runs that rank rows alike mean more samples would
/// change little.
pub struct Halves {
    /// Samples `0 .. n_sample / 2`.
    pub first: Vec<i64>,
    /// Samples `n_sample / 2 .. n_sample`.
    pub second: Vec<i64>,
}

impl Halves {
    /// Each half's raw scores, as floats, at `limit` evenly spaced rows
    /// (all rows when there are no more than `limit`).
    pub fn sampled(&self, limit: usize) -> (Vec<f64>, Vec<f64>) {
        let n = self.first.len();
        let m = n.min(limit.max(1));
        let pick = |v: &[i64]| to_float((0..m).map(|j| v[j * n / m]));
        (pick(&self.first), pick(&self.second))
    }

    /// Raw scores of all samples: the exact sum of the halves, as floats.
    pub fn total(&self) -> Vec<f64> {
        to_float(self.first.iter().zip(&self.second).map(|(a, b)| a + b))
    }
}

/// Raw scores of each half of the samples (see `Halves`).
pub fn raw_halves(
    pool: &Pool,
    p: &Params,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Halves> {
    raw_halves_range(pool, p, 0..p.n_sample, progress)
}

/// The part of `raw_halves` that samples `samples` (a sub-range of
/// `0..p.n_sample`) contribute, each to the half of the whole run it
/// belongs to. Ranges that tile `0..n_sample` sum, element by element, to
/// exactly `raw_halves`: how a run is split over processes or machines
/// (Ray workers) does not change a bit of the result. `progress` counts
/// samples within the range.
pub fn raw_halves_range(
    pool: &Pool,
    p: &Params,
    samples: std::ops::Range<u64>,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Halves> {
    raw_halves_part(pool, p, samples, Part::WHOLE, progress)
}

/// `raw_halves_range` for one `part` of the range (see `Part`): the parts
/// `0..parts` of a range sum, element by element, to exactly the range's
/// halves. `progress(done, total)` then counts the part's own samples
/// (under band search `total` is estimated until every batch is drawn).
pub fn raw_halves_part(
    pool: &Pool,
    p: &Params,
    samples: std::ops::Range<u64>,
    part: Part,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Halves> {
    p.validate(pool.n, pool.d)?;
    if part.parts == 0 || part.index >= part.parts {
        return Err(invalid!(
            "part {} of {} does not exist; parts are numbered 0..parts",
            part.index,
            part.parts
        ));
    }
    if samples.start > samples.end || samples.end > p.n_sample {
        return Err(invalid!(
            "sample range {}..{} is not within 0..n_sample = 0..{}",
            samples.start,
            samples.end,
            p.n_sample
        ));
    }
    runner::run_range(pool, p, samples, part, progress)
}

/// Fixed-point sums back to floats.
pub fn to_float(fixed: impl Iterator<Item = i64>) -> Vec<f64> {
    fixed.map(|v| v as f64 / FIXED_ONE).collect()
}

/// Final scores: raw scores, plus U(0,1) noise per row when `rand_init`,
/// min-max normalised to [0, 1].
pub fn score(
    pool: &Pool,
    p: &Params,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Vec<f32>> {
    Ok(finish_halves(&raw_halves(pool, p, progress)?, p))
}

/// Final scores from the halves: their exact sum, plus U(0,1) noise per
/// row when `rand_init`, min-max normalised to [0, 1] (a constant vector
/// maps to zeros). Streams over rows twice (the noise is recomputed, not
/// stored) so it needs no memory beyond the output.
pub fn finish_halves(h: &Halves, p: &Params) -> Vec<f32> {
    let raw = |row: usize| {
        let v = (h.first[row] + h.second[row]) as f64 / FIXED_ONE;
        if p.rand_init {
            v + Stream::new(p.seed, STREAM_NOISE, row as u64).unit_open()
        } else {
            v
        }
    };
    use rayon::prelude::*;
    let n = h.first.len();
    let (lo, hi) = (0..n)
        .into_par_iter()
        .map(|r| {
            let v = raw(r);
            (v, v)
        })
        .reduce(
            || (f64::INFINITY, f64::NEG_INFINITY),
            |a, b| (a.0.min(b.0), a.1.max(b.1)),
        );
    let span = hi - lo;
    (0..n)
        .into_par_iter()
        .map(|r| {
            if span > 0.0 {
                ((raw(r) - lo) / span) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// Never cancels; for callers without progress reporting.
pub fn no_progress(_: u64, _: u64) -> Result<()> {
    Ok(())
}

/// Returned by progress callbacks that want scoring to stop.
pub fn cancelled() -> CoreError {
    CoreError::Cancelled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::pool_from_rows;
    use crate::search::knn_brute;

    fn clustered_rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Stream::new(seed, 9, 0);
        (0..n)
            .map(|i| {
                (0..d)
                    .map(|j| {
                        ((i % 5) as f32) * 0.7 + (j as f32 * 0.1) + rng.unit_open() as f32 * 0.5
                    })
                    .collect()
            })
            .collect()
    }

    fn params(n_sample: u64, threads: usize) -> Params {
        Params {
            n_sample,
            redund_nn: 50,
            seed: 3,
            threads,
            ..Params::default()
        }
    }

    #[test]
    fn identical_bits_for_any_thread_count() {
        let pool = pool_from_rows(&clustered_rows(300, 6, 1)).unwrap();
        let one = score(&pool, &params(3000, 1), &mut no_progress).unwrap();
        for t in [2, 3, 8] {
            let many = score(&pool, &params(3000, t), &mut no_progress).unwrap();
            assert!(
                one.iter()
                    .zip(&many)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "threads {t}"
            );
        }
    }

    /// Any split of the samples into ranges, each run on its own (as Ray
    /// workers do), sums to the full run's halves bit for bit, on both
    /// search strategies; a range outside 0..n_sample is refused.
    #[test]
    fn sample_ranges_sum_to_the_full_run() {
        let pool = pool_from_rows(&clustered_rows(2500, 5, 8)).unwrap();
        for search in [Search::Brute, Search::Band, Search::Pair] {
            let p = Params {
                search,
                ..params(2_345, 2)
            };
            let full = raw_halves(&pool, &p, &mut no_progress).unwrap();
            for cuts in [
                vec![0, 2_345],
                vec![0, 1, 1_000, 1_172, 2_345],
                vec![0, 700, 2_345],
            ] {
                let mut first = vec![0i64; pool.n];
                let mut second = vec![0i64; pool.n];
                for w in cuts.windows(2) {
                    let part = raw_halves_range(&pool, &p, w[0]..w[1], &mut no_progress).unwrap();
                    first.iter_mut().zip(&part.first).for_each(|(a, b)| *a += b);
                    second
                        .iter_mut()
                        .zip(&part.second)
                        .for_each(|(a, b)| *a += b);
                }
                assert_eq!(first, full.first, "{search:?} {cuts:?}");
                assert_eq!(second, full.second, "{search:?} {cuts:?}");
            }
        }
        // Parts of a range (by band dimension under band search) add up too.
        for search in [Search::Brute, Search::Band, Search::Pair] {
            let p = Params {
                search,
                ..params(1_999, 2)
            };
            let full = raw_halves_range(&pool, &p, 100..1_999, &mut no_progress).unwrap();
            for parts in [1, 2, 3, 7] {
                let mut sum = Halves {
                    first: vec![0; pool.n],
                    second: vec![0; pool.n],
                };
                let mut nonzero = 0;
                let mut finals = 0;
                for index in 0..parts {
                    let part = Part { index, parts };
                    // Progress counts the part's own samples, never more
                    // than it expects, and ends with done == total.
                    let mut last = (0, 0);
                    let mut watch = |done: u64, total: u64| {
                        assert!(done <= total, "{done} of {total}");
                        last = (done, total);
                        Ok(())
                    };
                    let h = raw_halves_part(&pool, &p, 100..1_999, part, &mut watch).unwrap();
                    assert_eq!(last.0, last.1, "{search:?} {parts} {index}");
                    finals += last.0;
                    nonzero += usize::from(h.first.iter().chain(&h.second).any(|&v| v != 0));
                    sum.first
                        .iter_mut()
                        .zip(&h.first)
                        .for_each(|(a, b)| *a += b);
                    sum.second
                        .iter_mut()
                        .zip(&h.second)
                        .for_each(|(a, b)| *a += b);
                }
                assert_eq!(
                    finals, 1_899,
                    "every sample counted once: {search:?} {parts}"
                );
                assert_eq!(sum.first, full.first, "{search:?} {parts}");
                assert_eq!(sum.second, full.second, "{search:?} {parts}");
                // Every part did some of the work (5 dimensions, <= 7 parts:
                // under band search a part may own no dimension).
                assert!(nonzero >= parts.min(5), "{search:?} {parts}: {nonzero}");
            }
        }
        let bad = Part { index: 2, parts: 2 };
        assert!(raw_halves_part(&pool, &params(10, 1), 0..10, bad, &mut no_progress).is_err());
        assert!(raw_halves_range(&pool, &params(10, 1), 5..11, &mut no_progress).is_err());
        let reversed = std::ops::Range { start: 6, end: 5 };
        assert!(raw_halves_range(&pool, &params(10, 1), reversed, &mut no_progress).is_err());
    }

    /// Band search, brute force, per-thread or shared accumulators, f32 or
    /// float16 columns: all exact, so all give the same bits.
    #[test]
    fn every_search_and_accumulator_gives_the_same_bits() {
        let rows = clustered_rows(3000, 6, 4);
        let pool = pool_from_rows(&rows).unwrap();
        let run = |pool: &Pool, search, threads| {
            let p = Params {
                search,
                ..params(4000, threads)
            };
            let h = raw_halves(pool, &p, &mut no_progress).unwrap();
            let scores = finish_halves(&h, &p);
            (h.first, h.second, scores)
        };
        let brute = run(&pool, Search::Brute, 1);
        assert_eq!(
            brute.2,
            score(&pool, &params(4000, 1), &mut no_progress).unwrap()
        );
        assert_eq!(run(&pool, Search::Band, 1), brute);
        assert_eq!(run(&pool, Search::Band, 3), brute);
        assert_eq!(run(&pool, Search::Pair, 1), brute);
        assert_eq!(run(&pool, Search::Pair, 3), brute);
        runner::FORCE_SHARED.store(true, std::sync::atomic::Ordering::Relaxed);
        let shared = run(&pool, Search::Band, 3);
        let shared_pair = run(&pool, Search::Pair, 3);
        runner::FORCE_SHARED.store(false, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(shared, brute);
        assert_eq!(shared_pair, brute);
        // Float16 columns used in place (band search) against their f32 widening.
        let n = rows.len();
        let bits: Vec<u8> = (0..6)
            .flat_map(|c| rows.iter().map(move |r| half::f16::from_f32(r[c])))
            .flat_map(|h| h.to_le_bytes())
            .collect();
        let bits: &'static [u8] = Box::leak(bits.into_boxed_slice());
        let src = crate::pool::Source {
            bytes: bits,
            dtype: crate::npy::Dtype::F16,
            rows: n,
            cols: 6,
            fortran_order: true,
            name: "t",
        };
        let half = Pool::build_with(&[src], &|| true, 0).unwrap();
        assert!(half.is_f16());
        let widened = Pool::build(&[src]).unwrap();
        assert!(!widened.is_f16());
        assert_eq!(run(&half, Search::Auto, 2), run(&widened, Search::Brute, 2));
        assert_eq!(run(&half, Search::Pair, 2), run(&widened, Search::Brute, 2));
    }

    #[test]
    fn traced_sample_matches_brute_force_weights() {
        let rows = clustered_rows(200, 4, 2);
        let pool = pool_from_rows(&rows).unwrap();
        for index in 0..300 {
            let dr = draw(&pool.stats, 11, index, 2);
            let eff = trace(&pool, &dr.dims, &dr.q, 30, 4.0);
            let win = knn_brute(&pool, &dr.dims, &dr.q, 1, None)[0].row;
            assert_eq!(eff.winner, win);
            let c: Vec<f32> = dr
                .dims
                .iter()
                .map(|&d| rows[win as usize][d as usize])
                .collect();
            let nn = knn_brute(&pool, &dr.dims, &c, 30, Some(win));
            if nn[0].dist == 0.0 {
                assert_eq!(eff.penalties, vec![(nn[0].row, 1.0)]);
                continue;
            }
            let w: Vec<f64> = nn.iter().map(|x| 1.0 / f64::from(x.dist).powi(4)).collect();
            let total: f64 = w.iter().sum();
            let mut got = eff.penalties.clone();
            got.sort_by_key(|x| x.0);
            let mut want: Vec<(u32, f64)> =
                nn.iter().zip(&w).map(|(x, w)| (x.row, w / total)).collect();
            want.sort_by_key(|x| x.0);
            assert_eq!(got.len(), want.len());
            for (g, e) in got.iter().zip(&want) {
                assert_eq!(g.0, e.0);
                assert!((g.1 - e.1).abs() < 1e-12 * (1.0 + e.1), "{g:?} {e:?}");
            }
        }
    }

    #[test]
    fn duplicates_constant_dims_and_tiny_pools_work() {
        let rows = vec![
            vec![1.0, 2.0, 3.0],
            vec![1.0, 2.0, 3.0],
            vec![1.0, 5.0, 3.0],
        ];
        let pool = pool_from_rows(&rows).unwrap();
        let s = score(
            &pool,
            &Params {
                n_sample: 500,
                threads: 2,
                ..Params::default()
            },
            &mut no_progress,
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(|v| (0.0..=1.0).contains(v)));
        let two = pool_from_rows(&[vec![0.0, 0.0], vec![1.0, 1.0]]).unwrap();
        let raw = raw_scores(
            &two,
            &Params {
                n_sample: 100,
                ..Params::default()
            },
            &mut no_progress,
        )
        .unwrap();
        // Each sample rewards one row (+1) and fully penalises the other (-1).
        assert!((raw[0] + raw[1]).abs() < 1e-9);
    }

    #[test]
    fn progress_errors_cancel() {
        let pool = pool_from_rows(&clustered_rows(200, 4, 3)).unwrap();
        let mut calls = 0;
        let r = raw_scores(&pool, &params(u64::MAX / 4, 2), &mut |_, _| {
            calls += 1;
            if calls > 2 {
                Err(cancelled())
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap_err(), CoreError::Cancelled);
    }

    #[test]
    fn parameters_are_validated() {
        let p = Params {
            sample_dim: 7,
            ..Params::default()
        };
        assert!(p
            .validate(10, 3)
            .unwrap_err()
            .to_string()
            .contains("fewer than sample_dim"));
        assert!(Params {
            n_sample: 0,
            ..Params::default()
        }
        .validate(10, 3)
        .is_err());
        assert!(Params {
            redund_exp: f64::NAN,
            ..Params::default()
        }
        .validate(10, 3)
        .is_err());
    }
}

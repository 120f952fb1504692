//! Runs all samples of a scoring on worker threads: draws them in batches,
//! orders each batch for locality, and sums every sample's effect into
//! fixed-point accumulators (integer sums, so order and thread count never
//! change the result).
//!
//! Two orders, one per search method:
//! - brute force: samples grouped by the pair of column groups they read,
//!   so a tile of columns comes from memory once for all its samples;
//! - band search: samples grouped by their band dimension, so one
//!   `BandIndex` (built in parallel, shared by all workers) serves every
//!   sample of the group; within it, by their other dimension, so that a
//!   pair with enough samples to pay for a `PairIndex` (huge pools, few
//!   dimensions) gets one.

use super::penalty::Penalties;
use super::{draw_into, Halves, Params, FIXED_ONE};
use crate::error::Result;
use crate::pool::Pool;
use crate::search::band::{BandIndex, BandQuery};
use crate::search::coarse::Coarse;
use crate::search::pair::{strip_rows, PairIndex};
use crate::search::Searcher;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// Samples handed to a worker at a time: small enough that cancellation and
/// progress stay responsive, large enough that claiming is free.
const CHUNK: usize = 64;

/// `CHUNK` for band search, whose samples cost ~100x more and whose
/// stretches (one per band dimension) are short: with 64, the last chunk of
/// each stretch left the other worker idle for ~20 ms, 1,280 times a run.
const BAND_CHUNK: usize = 4;

/// Samples whose draws are made and ordered together (bounds their memory);
/// huge pools under band search take more (`batch_len`).
const BATCH: u64 = 1 << 22;

/// Samples drawn and ordered together for a pool of `n` rows: `BATCH`, or
/// under band search n / 8 for pools above 33.5 million rows, so that a
/// pair of dimensions gathers enough samples in one batch to pay for its
/// pair index (`n_sample="auto"` draws 100 n / redund_nn samples: at
/// n = 10^8 all of them are one batch), while the batch's state (about 64
/// bytes a sample of two dimensions while it is ordered) stays under 8.5
/// bytes per row of the pool.
fn batch_len(n: usize, band: bool) -> u64 {
    if band {
        BATCH.max(n as u64 / 8)
    } else {
        BATCH
    }
}

/// Bytes of f32 columns one inner tile of samples reads, counted at 4 bytes
/// a row (the passes read the 2-byte coarse copy, the gathers a scattered
/// part of the f32 columns). Measured at N = 50,000, D = 1,280, 10^6
/// samples on an AVX-512 machine: 0.75 MiB beat 0.4 and 1.5 MiB by about
/// 8%. At most 3/4 of the CPU's L2 (`tile_bytes`).
const TILE_BYTES: usize = 3 << 18;

/// The same for outer tiles: their columns come from memory once and are
/// then read from L3 by all their inner tiles. Measured as above: 32 MiB
/// beat 4 MiB by 25% and 128 MiB by 15%. At most the CPU's L3: a tile
/// larger than the cache sends every gather to memory.
const L3_TILE_BYTES: usize = 32 << 20;

/// The size in bytes of this CPU's cache of `level` (from Linux sysfs), if
/// known.
fn cache_bytes(level: u32) -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.flatten().find_map(|entry| {
        let read = |name: &str| std::fs::read_to_string(entry.path().join(name)).ok();
        let kind = read("type")?;
        if read("level")?.trim() != level.to_string() || kind.trim() == "Instruction" {
            return None;
        }
        let size = read("size")?;
        let size = size.trim();
        let (digits, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit())?);
        let scale = match unit {
            "K" => 1 << 10,
            "M" => 1 << 20,
            _ => return None,
        };
        digits.parse::<usize>().ok().map(|v| v * scale)
    })
}

/// (inner, outer) tile bytes for this CPU: the measured sizes, shrunk to
/// fit caches smaller than the machine they were measured on.
fn tile_bytes() -> (usize, usize) {
    static TILES: std::sync::OnceLock<(usize, usize)> = std::sync::OnceLock::new();
    *TILES.get_or_init(|| {
        let inner = cache_bytes(2).map_or(TILE_BYTES, |l2| TILE_BYTES.min(l2 / 4 * 3));
        let outer = cache_bytes(3).map_or(L3_TILE_BYTES, |l3| L3_TILE_BYTES.min(l3));
        (inner, outer.max(inner))
    })
}

/// Per-thread accumulators are used while all of them together stay under
/// this many bytes; beyond it, one shared set of atomic accumulators keeps
/// private memory at 16 bytes per row whatever the thread count.
const PER_THREAD_BYTES: usize = 256 << 20;

/// Which share of a range of samples one process runs, when several
/// processes (Ray workers) split one range: `index` of `parts`. Every
/// sample falls in exactly one part, so the parts' halves add up to the
/// whole range's.
///
/// Under band search the samples are split by their band dimension
/// (contiguous groups of dimensions): each part then builds the band
/// indexes of its own dimensions only, the fixed cost that a split by
/// sample index would repeat in every part. Under brute force the range
/// is cut into contiguous sub-ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// This part (`< parts`).
    pub index: usize,
    /// How many parts the range is split into (>= 1).
    pub parts: usize,
}

impl Part {
    /// The whole range.
    pub const WHOLE: Part = Part { index: 0, parts: 1 };

    /// This part's contiguous share of `range`.
    fn cut(self, range: std::ops::Range<u64>) -> std::ops::Range<u64> {
        let len = u128::from(range.end - range.start);
        let at = |i: usize| range.start + (len * i as u128 / self.parts as u128) as u64;
        at(self.index)..at(self.index + 1)
    }

    /// Whether band dimension `dim` (of `d`) is this part's.
    fn owns_dim(self, dim: usize, d: usize) -> bool {
        dim * self.parts / d == self.index
    }
}

/// How samples find their neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Band search for two-dimensional subspaces of large pools, brute
    /// force otherwise.
    Auto,
    /// Vectorised passes over all rows.
    Brute,
    /// Band search (two-dimensional subspaces only; others use brute force),
    /// without pair indexes.
    Band,
    /// Band search with a pair index for every pair of dimensions, however
    /// few its samples (for tests and benchmarks; `Auto` builds one where
    /// it pays).
    Pair,
}

/// A sample's neighbours are searched in a band only if the band is
/// estimated to hold less than 1/BAND_MAX_SHARE of the rows; wider bands
/// are read as whole columns. Measured at N = 1.28M, D = 1280, float16
/// (100,000 samples): 1/6 beat 1/3, 1/16 and 1/48.
const BAND_MAX_SHARE: usize = 6;

/// Pools with at least this many rows use band search under `Search::Auto`.
/// Below it the vectorised passes over every row are faster.
pub const BAND_MIN_ROWS: usize = 100_000;

fn use_band(pool: &Pool<'_>, p: &Params) -> bool {
    p.sample_dim == 2
        && match p.search {
            Search::Auto => pool.n >= BAND_MIN_ROWS || pool.is_f16(),
            Search::Brute => false,
            Search::Band | Search::Pair => true,
        }
}

/// The cost of building a `PairIndex` for N rows, in multiples of N rows read
/// by band searches. Measured on the benchmark's float16 mixtures (two
/// threads): at N = 10^6, D = 64, 100 samples per pair, 8 built indexes
/// that cost 27 % more than band search, 16-64 none; at N = 10^7, D = 4,
/// 500 samples per pair, 8-32 built them (2.2x faster than band search)
/// and 64 did not. The break-even there is 150-250 samples per pair.
const PAIR_BUILD_ROWS: usize = 24;

/// The pairs of dimensions (by `lower * d + upper`) whose samples in a
/// batch get a pair index: under `Search::Auto`, those whose band searches
/// would read more rows (`chosen`'s estimates in the subsample, each capped
/// at the whole-column pass a wide band switches to) than building the
/// index costs. Pairs are counted unordered, so that one index serves the
/// samples of both band dimensions.
fn paired_pairs(p: &Params, d: usize, sub_n: usize, chosen: &[(u32, u32, u32)]) -> Paired {
    match p.search {
        Search::Pair => Paired::All,
        // With fewer samples than pairs, none comes near the hundreds of
        // samples an index needs to pay (dimensions are drawn uniformly);
        // this also bounds the table below by the batch.
        Search::Auto if d * d <= 2 * chosen.len() => {
            let cap = (sub_n / BAND_MAX_SHARE) as u64;
            let mut band = vec![0u64; d * d];
            for &(b, o, rows) in chosen {
                band[b.min(o) as usize * d + b.max(o) as usize] += u64::from(rows).min(cap);
            }
            let build = (PAIR_BUILD_ROWS * sub_n) as u64;
            Paired::Some(band.into_iter().map(|rows| rows > build).collect())
        }
        _ => Paired::None,
    }
}

/// (band, other) dimensions of the samples of a pair with a pair index:
/// the same for both orders, so one index serves the pair. The lower
/// dimension when their sum is even, else the upper: every dimension is the
/// band dimension of about half its pairs, so parts split by band dimension
/// (`Part`) get even shares (always the lower would give dimension 0 all
/// its pairs and the last none).
fn pair_band(x: u32, y: u32) -> (u32, u32) {
    let (lower, upper) = (x.min(y), x.max(y));
    if (lower + upper) % 2 == 0 {
        (lower, upper)
    } else {
        (upper, lower)
    }
}

/// Which pairs of dimensions of a batch use a pair index.
enum Paired {
    None,
    All,
    /// By `lower * d + upper`.
    Some(Vec<bool>),
}

impl Paired {
    /// Whether the pair of dimensions `x` and `y` (of `d`) uses one.
    fn has(&self, x: u32, y: u32, d: usize) -> bool {
        match self {
            Paired::None => false,
            Paired::All => true,
            Paired::Some(table) => table[x.min(y) as usize * d + x.max(y) as usize],
        }
    }
}

/// The draws of a batch of samples, in processing order.
struct Batch {
    m: usize,
    first: u64,
    dims: Vec<u32>,
    q: Vec<f32>,
    /// Sample offsets (in the batch) in processing order.
    order: Vec<u32>,
    /// Band search: the band dimension of each sample (by offset).
    band_dim: Vec<u32>,
    /// Band search: the pairs of dimensions whose samples use a pair index.
    /// Their band dimension is then `pair_band`'s.
    paired: Paired,
}

impl Batch {
    /// The dimension of sample `i`'s (two-dimensional) subspace other than
    /// its band dimension.
    fn other_dim(&self, i: u32) -> u32 {
        let at = i as usize * self.m;
        let b = self.band_dim[i as usize];
        if self.dims[at] == b {
            self.dims[at + 1]
        } else {
            self.dims[at]
        }
    }
}

/// Subsample rows within `radius` of `x` in one dimension: proportional to
/// the rows a band search over that dimension reads.
fn band_rows(sorted_sub: &[f32], x: f32, radius: f32) -> usize {
    let lo = sorted_sub.partition_point(|&v| v < x - radius);
    let hi = sorted_sub.partition_point(|&v| v <= x + radius);
    hi - lo
}

impl Batch {
    /// Draws samples `first..first + len` and orders them (see module doc).
    /// Order does not change results. `check()` is called between slices
    /// of the work (an error stops it), so that Ctrl-C is seen promptly
    /// even while millions of samples are being placed.
    fn new(
        pool: &Pool<'_>,
        p: &Params,
        band: Option<&[Vec<f32>]>,
        first: u64,
        len: usize,
        check: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Batch> {
        let m = p.sample_dim;
        let mut dims = vec![0u32; len * m];
        let mut q = vec![0f32; len * m];
        dims.par_chunks_mut(m)
            .zip(q.par_chunks_mut(m))
            .enumerate()
            .for_each(|(i, (d, x))| draw_into(&pool.stats, p.seed, first + i as u64, d, x));
        let mut band_dim = Vec::new();
        let mut paired = Paired::None;
        // (locality key, sample offset), sorted.
        let keyed: Vec<(u64, u32)> = match band {
            Some(sorted_sub) => {
                // The band dimension of a sample: the one whose band (rows
                // within the estimated k-th neighbour distance, counted in
                // the subsample) is smaller. Outliers far out in one
                // dimension have small bands there and huge ones in the other.
                let k = p.redund_nn.min(pool.n - 1);
                let mut chosen = Vec::with_capacity(len);
                let slice = m << 15;
                for (ds, xs) in dims.chunks(slice).zip(q.chunks(slice)) {
                    check()?;
                    chosen.par_extend(ds.par_chunks(m).zip(xs.par_chunks(m)).map_init(
                        || Searcher::with_isa(p.isa),
                        |searcher, (d, x)| {
                            let radius = searcher.limit_estimate(pool, d, x, k);
                            let rows0 = band_rows(&sorted_sub[d[0] as usize], x[0], radius);
                            let rows1 = band_rows(&sorted_sub[d[1] as usize], x[1], radius);
                            if rows0 <= rows1 {
                                (d[0], d[1], rows0 as u32)
                            } else {
                                (d[1], d[0], rows1 as u32)
                            }
                        },
                    ));
                }
                paired = paired_pairs(p, pool.d, pool.sub_n, &chosen);
                let d = pool.d;
                for c in &mut chosen {
                    if paired.has(c.0, c.1, d) {
                        (c.0, c.1) = pair_band(c.0, c.1);
                    }
                }
                // Grouped by band dimension, then by the other one.
                let keyed = chosen
                    .iter()
                    .enumerate()
                    .map(|(i, &(b, o, _))| (u64::from(b) * d as u64 + u64::from(o), i as u32))
                    .collect();
                band_dim = chosen.iter().map(|c| c.0).collect();
                keyed
            }
            None => {
                // Samples ordered by the pair of column groups they read,
                // at two sizes: tiles whose columns fit in L3, and within
                // them tiles whose columns fit in L2. Within an L3 tile the
                // samples of the run's first half come first: each half
                // has its own accumulators, and one set at a time then
                // competes with the columns for L2 (about 2% at N = 50,000,
                // D = 1,280, 10^6 samples).
                let group = |bytes: usize| (bytes / (2 * 4 * pool.n)).max(1) as u64;
                let (inner, outer) = tile_bytes();
                let (small, large) = (group(inner), group(outer));
                let large = large.div_ceil(small) * small;
                let tile = |lo: u64, hi: u64, g: u64, d: u64| (lo / g) * d.div_ceil(g) + hi / g;
                let per_large = large.div_ceil(small).pow(2);
                dims.par_chunks(m)
                    .enumerate()
                    .map(|(i, d)| {
                        let (lo, hi) = d
                            .iter()
                            .fold((u32::MAX, 0), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                        let (lo, hi) = (u64::from(lo), u64::from(hi));
                        let outer = tile(lo, hi, large, pool.d as u64);
                        let inner = tile(lo % large, hi % large, small, large);
                        let half = u64::from(first + i as u64 >= p.n_sample / 2);
                        ((outer * 2 + half) * per_large + inner, i as u32)
                    })
                    .collect()
            }
        };
        let order = order_by_key(keyed);
        Ok(Batch {
            m,
            first,
            dims,
            q,
            order,
            band_dim,
            paired,
        })
    }
}

/// The offsets of `keyed` (pairs of key and offset, offsets ascending)
/// ordered by key, ties by offset: a stable radix sort over the bits the
/// keys use, 11 at a time. It replaced a comparison sort that took 150 ms
/// of each 10^6 samples on two cores.
fn order_by_key(keyed: Vec<(u64, u32)>) -> Vec<u32> {
    const BITS: u32 = 11;
    const MASK: u64 = (1 << BITS) - 1;
    debug_assert!(keyed.windows(2).all(|w| w[0].1 < w[1].1));
    let top = keyed.iter().map(|k| k.0).max().unwrap_or(0);
    let passes = (u64::BITS - top.leading_zeros()).div_ceil(BITS);
    let mut from = keyed;
    let mut to = vec![(0u64, 0u32); from.len()];
    for pass in 0..passes {
        let digit = |key: u64| ((key >> (pass * BITS)) & MASK) as usize;
        let mut start = vec![0usize; 1 << BITS];
        for &(key, _) in &from {
            start[digit(key)] += 1;
        }
        let mut sum = 0;
        for s in &mut start {
            (*s, sum) = (sum, sum + *s);
        }
        for &item in &from {
            let at = &mut start[digit(item.0)];
            to[*at] = item;
            *at += 1;
        }
        std::mem::swap(&mut from, &mut to);
    }
    from.into_iter().map(|(_, i)| i).collect()
}

/// Where a worker adds its samples' effects: `[first half, second half]`.
enum Sink<'a> {
    Own(&'a mut [Vec<i64>; 2]),
    Shared(&'a [Vec<AtomicI64>; 2]),
}

impl Sink<'_> {
    /// Adds one sample: `FIXED_ONE` to `winner`, minus `amounts` to `rows`.
    fn add_sample(&mut self, half: usize, winner: u32, rows: &[u32], amounts: &[i64]) {
        let one = FIXED_ONE as i64;
        match self {
            Sink::Own(acc) => {
                let acc = &mut acc[half];
                acc[winner as usize] += one;
                for (&row, &v) in rows.iter().zip(amounts) {
                    acc[row as usize] -= v;
                }
            }
            Sink::Shared(acc) => {
                let acc = &acc[half];
                acc[winner as usize].fetch_add(one, Ordering::Relaxed);
                for (&row, &v) in rows.iter().zip(amounts) {
                    acc[row as usize].fetch_sub(v, Ordering::Relaxed);
                }
            }
        }
    }
}

/// How the samples of one stretch of a batch search.
#[derive(Clone, Copy)]
enum Finder<'a> {
    Brute,
    Band(&'a BandIndex),
    Pair(&'a PairIndex),
}

/// Everything workers share while running one stretch of a batch.
struct Stretch<'a> {
    pool: &'a Pool<'a>,
    p: &'a Params,
    batch: &'a Batch,
    order: &'a [u32],
    finder: Finder<'a>,
    mid: u64,
    /// Per dimension, the subsample's values sorted (band search only).
    sorted_sub: &'a [Vec<f32>],
    /// The coarse copy for brute-force passes, where there is one.
    coarse: Option<&'a Coarse>,
}

fn worker(
    job: &Stretch<'_>,
    next: &AtomicU64,
    done: &AtomicU64,
    stop: &AtomicBool,
    mut sink: Sink<'_>,
) {
    let (pool, p, batch) = (job.pool, job.p, job.batch);
    let m = p.sample_dim;
    let mut searcher = Searcher::with_isa(p.isa);
    let mut neighbours = Vec::with_capacity(2 * p.redund_nn + 66);
    let mut dist_buf = Vec::new();
    let mut penalties = Penalties::default();
    let isa = p.isa;
    let k = p.redund_nn.min(pool.n - 1);
    let len = job.order.len();
    while !stop.load(Ordering::Relaxed) {
        let chunk = match job.finder {
            Finder::Brute => CHUNK,
            Finder::Band(_) | Finder::Pair(_) => BAND_CHUNK,
        };
        let start = next.fetch_add(chunk as u64, Ordering::Relaxed) as usize;
        if start >= len {
            break;
        }
        let end = (start + chunk).min(len);
        for &i in &job.order[start..end] {
            let at = i as usize * batch.m;
            let (dims, q) = (&batch.dims[at..at + m], &batch.q[at..at + m]);
            let winner = match job.finder {
                Finder::Brute => {
                    searcher
                        .nearest_and_knn(pool, job.coarse, dims, q, k, &mut neighbours)
                        .row
                }
                Finder::Band(index) => {
                    let b = index.dim;
                    let (o, qb, qo) = band_terms(dims, q, b);
                    let winner = index
                        .nearest(pool, BandQuery { other: o, qb, qo }, &mut dist_buf)
                        .row;
                    let c = BandQuery {
                        other: o,
                        qb: pool.value(b as usize, winner as usize),
                        qo: pool.value(o as usize, winner as usize),
                    };
                    let centre = dims_order(dims, b, c.qb, c.qo);
                    let guess = searcher.limit_estimate(pool, dims, &centre, k);
                    // A wide band is read faster as two whole columns in
                    // order than by gathering its rows (outliers' neighbours
                    // are far, so their bands are wide).
                    let sub = &job.sorted_sub[b as usize];
                    if band_rows(sub, c.qb, guess) * BAND_MAX_SHARE > sub.len() {
                        searcher.knn(pool, dims, &centre, k, Some(winner), &mut neighbours);
                    } else {
                        index.knn(pool, c, k, winner, guess, &mut neighbours);
                    }
                    winner
                }
                Finder::Pair(index) => {
                    let (b, o) = (index.band, index.other);
                    let (_, qb, qo) = band_terms(dims, q, b);
                    let winner = index.nearest(qb, qo).row;
                    let (cb, co) = (
                        pool.value(b as usize, winner as usize),
                        pool.value(o as usize, winner as usize),
                    );
                    let centre = dims_order(dims, b, cb, co);
                    let guess = searcher.limit_estimate(pool, dims, &centre, k);
                    index.knn(cb, co, k, winner, guess, &mut neighbours);
                    winner
                }
            };
            penalties.compute(isa, &neighbours, p.redund_exp);
            let half = usize::from(batch.first + u64::from(i) >= job.mid);
            let (rows, amounts) = penalties.fixed();
            sink.add_sample(half, winner, rows, amounts);
        }
        done.fetch_add((end - start) as u64, Ordering::Relaxed);
    }
}

/// A two-dimensional sample (`dims`, `q`) in the terms of band dimension
/// `b`: (other dimension, coordinate in `b`, coordinate in the other).
fn band_terms(dims: &[u32], q: &[f32], b: u32) -> (u32, f32, f32) {
    if dims[0] == b {
        (dims[1], q[0], q[1])
    } else {
        (dims[0], q[1], q[0])
    }
}

/// Coordinates in (band `b`, other) terms back in `dims` order, as the
/// subsample estimate takes them.
fn dims_order(dims: &[u32], b: u32, xb: f32, xo: f32) -> [f32; 2] {
    if dims[0] == b {
        [xb, xo]
    } else {
        [xo, xb]
    }
}

/// Per dimension, the subsample's values sorted: what band search
/// estimates band sizes from.
fn sorted_subsamples(pool: &Pool<'_>) -> Vec<Vec<f32>> {
    (0..pool.d)
        .map(|d| {
            let mut v = pool.sub_column(d).to_vec();
            v.sort_unstable_by(f32::total_cmp);
            v
        })
        .collect()
}

/// Tests set this to run the shared (atomic) accumulators on small pools.
#[cfg(test)]
pub(crate) static FORCE_SHARED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The accumulators of a run.
enum Accumulators {
    PerThread(Vec<[Vec<i64>; 2]>),
    Shared([Vec<AtomicI64>; 2]),
}

impl Accumulators {
    fn new(n: usize, threads: usize) -> Self {
        let zeros = || vec![0i64; n];
        #[cfg(test)]
        let threads_fit = !FORCE_SHARED.load(Ordering::Relaxed);
        #[cfg(not(test))]
        let threads_fit = true;
        if threads_fit && (threads == 1 || threads * 16 * n <= PER_THREAD_BYTES) {
            Accumulators::PerThread((0..threads).map(|_| [zeros(), zeros()]).collect())
        } else {
            let zeros = || (0..n).map(|_| AtomicI64::new(0)).collect();
            Accumulators::Shared([zeros(), zeros()])
        }
    }

    fn sinks(&mut self, threads: usize) -> Vec<Sink<'_>> {
        match self {
            Accumulators::PerThread(v) => v.iter_mut().map(Sink::Own).collect(),
            Accumulators::Shared(acc) => (0..threads).map(|_| Sink::Shared(acc)).collect(),
        }
    }

    fn into_halves(self) -> Halves {
        match self {
            Accumulators::PerThread(parts) => {
                let mut parts = parts.into_iter();
                let [mut first, mut second] = parts.next().unwrap_or_default();
                for [a, b] in parts {
                    first.iter_mut().zip(a).for_each(|(t, v)| *t += v);
                    second.iter_mut().zip(b).for_each(|(t, v)| *t += v);
                }
                Halves { first, second }
            }
            Accumulators::Shared([a, b]) => Halves {
                first: a.into_iter().map(AtomicI64::into_inner).collect(),
                second: b.into_iter().map(AtomicI64::into_inner).collect(),
            },
        }
    }
}

/// Runs samples `samples.start..samples.end` of a run of `p.n_sample`;
/// `progress(done, total)` (counted within the range) is called from this
/// thread about every 50 ms, and an error from it stops the run. Each
/// sample's effect depends only on (seed, its index), and it goes to the
/// half of the whole run it belongs to, so ranges that tile `0..n_sample`
/// add up exactly to the full run, however they are split.
pub(crate) fn run_range(
    pool: &Pool<'_>,
    p: &Params,
    samples: std::ops::Range<u64>,
    part: Part,
    progress: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Halves> {
    let band = use_band(pool, p);
    // Brute force: this part's share of the range. Band search: the whole
    // range is drawn, and the stretches of other parts' band dimensions
    // are skipped below.
    let samples = if band { samples } else { part.cut(samples) };
    let (start, end) = (samples.start, samples.end);
    let total = end - start;
    let sorted_sub = if band {
        sorted_subsamples(pool)
    } else {
        Vec::new()
    };
    // Only the one-pass search of two-dimensional subspaces reads it.
    let coarse = (!band && p.sample_dim == 2)
        .then(|| Coarse::build(pool, p.isa))
        .flatten();
    let mut acc = Accumulators::new(pool.n, p.threads);
    let mut index = BandIndex::with_isa(p.isa);
    let mut pair = PairIndex::with_isa(p.isa);
    let strip = strip_rows(pool.n, p.redund_nn.min(pool.n - 1));
    let mut first = start;
    // Progress counts this part's samples: done in earlier batches, and
    // expected in all (under band search, estimated from the share of the
    // samples drawn so far whose band dimension is this part's).
    let (mut counted, mut expect) = (0u64, total);
    let (mut own_drawn, mut drawn) = (0u64, 0u64);
    while first < end {
        let len = (end - first).min(batch_len(pool.n, band)) as usize;
        let sub = band.then_some(&sorted_sub[..]);
        let batch = Batch::new(pool, p, sub, first, len, &mut || progress(counted, expect))?;
        let owns = |i: &u32| part.owns_dim(batch.band_dim[*i as usize] as usize, pool.d);
        let own = if band && part.parts > 1 {
            batch.order.iter().filter(|i| owns(i)).count() as u64
        } else {
            len as u64
        };
        (own_drawn, drawn) = (own_drawn + own, drawn + len as u64);
        let undrawn = u128::from(end - first - len as u64);
        expect = own_drawn + (undrawn * u128::from(own_drawn) / u128::from(drawn)) as u64;
        let mut stretch =
            |order: &[u32], finder: Finder<'_>, acc: &mut Accumulators, before: u64| {
                let job = Stretch {
                    pool,
                    p,
                    batch: &batch,
                    order,
                    finder,
                    mid: p.n_sample / 2,
                    sorted_sub: &sorted_sub,
                    coarse: coarse.as_ref(),
                };
                run_stretch(&job, acc, &mut |done| {
                    progress(counted + before + done, expect)
                })
            };
        if band {
            let (mut at, mut before) = (0, 0);
            while at < len {
                let b = batch.band_dim[batch.order[at] as usize];
                let end = at
                    + batch.order[at..]
                        .iter()
                        .position(|&i| batch.band_dim[i as usize] != b)
                        .unwrap_or(len - at);
                if !part.owns_dim(b as usize, pool.d) {
                    at = end;
                    continue;
                }
                index.build(pool, b);
                // Runs of pairs that search the band index are one stretch;
                // each pair that pays for a pair index is one of its own.
                let (mut g, mut run_from) = (at, at);
                while g < end {
                    let o = batch.other_dim(batch.order[g]);
                    let g_end = g + batch.order[g..end]
                        .iter()
                        .position(|&i| batch.other_dim(i) != o)
                        .unwrap_or(end - g);
                    let group = &batch.order[g..g_end];
                    if batch.paired.has(b, o, pool.d) {
                        if run_from < g {
                            let run = &batch.order[run_from..g];
                            stretch(run, Finder::Band(&index), &mut acc, before)?;
                            before += run.len() as u64;
                        }
                        pair.build(pool, &index, o, strip);
                        stretch(group, Finder::Pair(&pair), &mut acc, before)?;
                        before += group.len() as u64;
                        run_from = g_end;
                    }
                    g = g_end;
                }
                if run_from < end {
                    let run = &batch.order[run_from..end];
                    stretch(run, Finder::Band(&index), &mut acc, before)?;
                    before += run.len() as u64;
                }
                at = end;
            }
        } else {
            stretch(&batch.order, Finder::Brute, &mut acc, 0)?;
        }
        counted += own;
        first += len as u64;
    }
    progress(counted, counted)?;
    Ok(acc.into_halves())
}

/// Runs one stretch of samples on `p.threads` workers, reporting progress
/// from this thread.
fn run_stretch(
    job: &Stretch<'_>,
    acc: &mut Accumulators,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    progress(0)?;
    let mut outcome = Ok(());
    let workers = job.p.threads;
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<()>();
        for sink in acc.sinks(workers) {
            let tx = tx.clone();
            let (next, done, stop) = (&next, &done, &stop);
            scope.spawn(move || {
                worker(job, next, done, stop, sink);
                let _ = tx.send(());
            });
        }
        drop(tx);
        let mut finished = 0;
        while finished < workers {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => finished += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if outcome.is_ok() && finished < workers {
                if let Err(e) = progress(done.load(Ordering::Relaxed)) {
                    stop.store(true, Ordering::Relaxed);
                    outcome = Err(e);
                }
            }
        }
    });
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::column_major_pool;
    use crate::rng::Stream;

    /// A float16 pool (used in place, so band search runs under `Auto`),
    /// column-major, with heavy tails.
    fn f16_pool(n: usize, d: usize, seed: u64) -> Pool<'static> {
        let mut rng = Stream::new(seed, 3, 0);
        let cols: Vec<f32> = (0..n * d)
            .map(|_| ((rng.unit_open() as f32) - 0.5).powi(3) * 20.0)
            .collect();
        column_major_pool(&cols, n, d, true)
    }

    /// Under `Auto`, pairs with many samples get a pair index and others
    /// do not (the choice follows the estimated band cost), and the run
    /// gives the bits of brute force whichever is chosen.
    #[test]
    fn auto_builds_pair_indexes_where_they_pay() {
        let pool = f16_pool(3000, 4, 1);
        assert!(use_band(&pool, &Params::default()));
        let p = |search, n_sample, redund_nn| Params {
            search,
            n_sample,
            redund_nn,
            seed: 5,
            threads: 2,
            ..Params::default()
        };
        let paired = |p: &Params, len: usize| {
            let sub = sorted_subsamples(&pool);
            let batch = Batch::new(&pool, p, Some(&sub), 0, len, &mut || Ok(())).unwrap();
            (0..4u32)
                .flat_map(|x| (x + 1..4).map(move |y| (x, y)))
                .filter(|&(x, y)| batch.paired.has(x, y, pool.d))
                .count()
        };
        // Many wide-band samples per pair: every pair pays.
        let many = p(Search::Auto, 6000, 300);
        assert_eq!(paired(&many, 6000), 6);
        // A few samples per pair: none does.
        assert_eq!(paired(&p(Search::Auto, 300, 300), 300), 0);
        assert_eq!(paired(&p(Search::Band, 6000, 300), 6000), 0);
        assert_eq!(paired(&p(Search::Pair, 10, 2), 10), 6);
        let brute =
            super::super::raw_halves(&pool, &p(Search::Brute, 6000, 300), &mut |_, _| Ok(()));
        let auto = super::super::raw_halves(&pool, &many, &mut |_, _| Ok(()));
        let (brute, auto) = (brute.unwrap(), auto.unwrap());
        assert_eq!(auto.first, brute.first);
        assert_eq!(auto.second, brute.second);
    }

    /// The radix order equals sorting (key, offset) pairs, for keys of
    /// every width, with many ties.
    #[test]
    fn radix_order_equals_sorting() {
        let mut rng = crate::rng::Stream::new(21, 0, 0);
        let mut next = || u64::from(rng.next_u32()) << 32 | u64::from(rng.next_u32());
        for bits in [0u32, 1, 10, 11, 12, 22, 33, 63, 64] {
            let len = (next() % 5000) as usize;
            let keyed: Vec<(u64, u32)> = (0..len as u32)
                .map(|i| {
                    let key = if bits == 0 { 0 } else { next() >> (64 - bits) };
                    // Ties: every other key repeats a small value.
                    (if i % 2 == 0 { key } else { key % 7 }, i)
                })
                .collect();
            let mut sorted = keyed.clone();
            sorted.sort_unstable();
            let want: Vec<u32> = sorted.into_iter().map(|(_, i)| i).collect();
            assert_eq!(order_by_key(keyed), want, "{bits}-bit keys");
        }
    }
}

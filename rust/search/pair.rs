//! Pair index: nearest neighbours in one fixed two-dimensional subspace
//! (band dimension `b`, other dimension `o`), for pools so large that many
//! samples share each pair of dimensions.
//!
//! A `BandIndex` bounds a query's distance by the band dimension alone, so
//! it reads every row within the answer's distance in `b`, whatever their
//! value in `o`: about sqrt(k N) rows for a typical query, and millions
//! for a query far out in the tails (an outlier winner, whose k-th
//! neighbour is far), which dominate the cost at N = 10^8. A pair index
//! bounds both dimensions:
//!
//! - the rows are cut into strips of consecutive `BandIndex` buckets of
//!   `b` (so strips hold disjoint, ordered ranges of `b` values), about
//!   `strip_rows` rows each and at most `STRIP_BUCKETS` buckets wide;
//! - within a strip the rows are sorted by their value in `o`, and stored
//!   with both values side by side (no gathers while searching).
//!
//! A query visits strips outward from its own in `b`, and within each
//! strip the rows outward from its `o` value. A row's distance is at least
//! (the strip's distance in `b`) + |qo - its `o` value|, so a direction
//! stops once that bound exceeds the current answer's distance (ties with a
//! lower row must still be read, hence "exceeds"). The rows read grow
//! like k plus a binary search per strip touched, instead of sqrt(k N).
//!
//! Building one costs a counting sort of the pool into strips and a radix
//! sort per strip (linear work, 1.6-1.8 s at N = 10^8 on two threads), so
//! it pays only for pairs with many samples; `score::runner` decides per
//! pair from the samples' estimated band sizes. Distances are
//! computed exactly as the brute-force passes compute them, so results are
//! bit-identical to them (`search::knn_brute` is the oracle in tests).

use super::band::{values, BandIndex};
use super::{fold_nearest, knn_within, scan_outward, Neighbour, Shrinking};
use crate::arch::Isa;
use crate::pool::stats::{from_order_key, order_key};
use crate::pool::{Pool, SharedOut};
use rayon::prelude::*;

/// Rows read at a time within a strip: small, so that a nearest-row query
/// stops soon after its answer, and large enough to vectorise.
const STEP: usize = 32;

/// Rows widened at a time while scattering (float16 pools): the widened
/// values stay in L1/L2 instead of a chunk-sized buffer.
const BLOCK: usize = 8192;

/// Most `BandIndex` buckets in one strip: in the sparse tails, where a
/// strip of `strip_rows` rows would span a wide range of `b` values, most
/// of a far query's reads would be rows far from it in `b` (measured on a
/// heavy-tailed mixture at N = 10^7: 74,000 rows read per 1,000
/// neighbours without this cap, 3,500 with it; the band index has up to
/// 65,536 buckets over the full range).
const STRIP_BUCKETS: usize = 64;

/// Called on a run of positions of one strip: (rows, band values, other
/// values).
type Visit<'v> = dyn FnMut(&[u32], &[f32], &[f32]) + 'v;

/// Scratch buffers of the per-strip sort.
#[derive(Default)]
struct SortScratch {
    keyed: Vec<u64>,
    spare: Vec<u64>,
    rows: Vec<u32>,
    vals: Vec<f32>,
}

impl SortScratch {
    /// Sorts a strip's positions by (`o` value, position): a stable LSD
    /// radix sort over the values' order keys, 11 bits a pass, skipping
    /// passes whose digit is the same for every key (float16 values leave
    /// the low 13 bits zero). The position makes the order unique.
    fn sort_by_o(&mut self, rows: &mut [u32], b: &mut [f32], o: &mut [f32]) {
        const BITS: u32 = 11;
        const MASK: u64 = (1 << BITS) - 1;
        let keyed = &mut self.keyed;
        keyed.clear();
        keyed.extend(
            o.iter()
                .enumerate()
                .map(|(i, &v)| (u64::from(order_key(v)) << 32) | i as u64),
        );
        self.spare.resize(keyed.len(), 0);
        let mut count = [0usize; 1 << BITS];
        for pass in 0..3 {
            let shift = 32 + pass * BITS;
            let digit = |key: u64| ((key >> shift) & MASK) as usize;
            count.fill(0);
            for &key in keyed.iter() {
                count[digit(key)] += 1;
            }
            if count.contains(&keyed.len()) {
                continue;
            }
            let mut sum = 0;
            for c in count.iter_mut() {
                (*c, sum) = (sum, sum + *c);
            }
            for &key in keyed.iter() {
                let at = &mut count[digit(key)];
                self.spare[*at] = key;
                *at += 1;
            }
            std::mem::swap(keyed, &mut self.spare);
        }
        let order = |key: u64| (key & u64::from(u32::MAX)) as usize;
        self.rows.clear();
        self.rows.extend(keyed.iter().map(|&key| rows[order(key)]));
        rows.copy_from_slice(&self.rows);
        self.vals.clear();
        self.vals.extend(keyed.iter().map(|&key| b[order(key)]));
        b.copy_from_slice(&self.vals);
        // The values of `o` are their keys' (no gather).
        for (v, &key) in o.iter_mut().zip(keyed.iter()) {
            *v = from_order_key((key >> 32) as u32);
        }
    }
}

/// One pair of dimensions, its rows in strips of `b` sorted by `o`.
pub struct PairIndex {
    /// The band dimension (strips cut along it).
    pub band: u32,
    /// The other dimension (sorted within strips).
    pub other: u32,
    isa: Isa,
    /// `start[s]..start[s + 1]`: positions of strip `s`.
    start: Vec<usize>,
    /// Smallest and largest band value of each strip.
    smin: Vec<f32>,
    smax: Vec<f32>,
    /// Per position: the row, its value in `o` (ascending within a strip)
    /// and in `b`.
    rows: Vec<u32>,
    ovals: Vec<f32>,
    bvals: Vec<f32>,
}

/// Rows per strip for a pool of `n` rows and `k` neighbours: a strip about
/// as wide in `b` as a typical query's k-th neighbour distance, whose
/// square (the L1 ball's area) holds about k / N of the rows, i.e.
/// sqrt(k N) rows across the full range of `o`. Narrower strips cost a
/// binary search each; wider ones, rows read outside the ball.
pub fn strip_rows(n: usize, k: usize) -> usize {
    (((n as f64) * (k.max(1) as f64)).sqrt() as usize).max(256)
}

impl PairIndex {
    /// An empty index whose passes use the given kernels.
    pub fn with_isa(isa: Isa) -> Self {
        PairIndex {
            band: 0,
            other: 0,
            isa,
            start: Vec::new(),
            smin: Vec::new(),
            smax: Vec::new(),
            rows: Vec::new(),
            ovals: Vec::new(),
            bvals: Vec::new(),
        }
    }

    /// Rebuilds the index for the pair (`band.dim`, `other`) of `pool`, in
    /// parallel on the current rayon pool, from the band index of its band
    /// dimension (whose buckets it cuts into strips). Buffers are reused
    /// across pairs.
    ///
    /// Two passes, neither of which gathers: the rows are read in row order
    /// and scattered to their strips (a counting sort, as `BandIndex::build`
    /// does by bucket), then each strip, small enough for the cache, is
    /// radix-sorted by its `o` values.
    pub fn build(&mut self, pool: &Pool<'_>, band: &BandIndex, other: u32, strip_rows: usize) {
        let (bstart, _, _) = band.buckets();
        let n = pool.n;
        self.band = band.dim;
        self.other = other;
        // Strips: whole buckets, closed at `strip_rows` rows or
        // `STRIP_BUCKETS` buckets, whichever comes first.
        let mut strip_of = vec![0u32; bstart.len() - 1];
        let mut counts = Vec::new();
        let (mut rows_in, mut buckets_in) = (0usize, 0usize);
        for (j, w) in bstart.windows(2).enumerate() {
            let rows = (w[1] - w[0]) as usize;
            strip_of[j] = counts.len() as u32;
            rows_in += rows;
            buckets_in += 1;
            if rows_in > 0 && (rows_in >= strip_rows || buckets_in >= STRIP_BUCKETS) {
                counts.push(rows_in);
                (rows_in, buckets_in) = (0, 0);
            }
        }
        if rows_in > 0 || counts.is_empty() {
            counts.push(rows_in);
        }
        self.start.clear();
        self.start.push(0);
        for c in &counts {
            self.start.push(self.start.last().unwrap() + c);
        }
        let strips = counts.len();
        // Scatter in row order: per chunk of rows, counts per strip, then
        // each chunk's first position in every strip (chunks in row order,
        // so rows within a strip stay ascending).
        let chunk = n.div_ceil(rayon::current_num_threads() * 2).max(4096);
        let (isa, bcol, ocol) = (
            self.isa,
            pool.col(band.dim as usize),
            pool.col(other as usize),
        );
        let froms: Vec<usize> = (0..n).step_by(chunk).collect();
        let parts: Vec<Vec<u32>> = froms
            .par_iter()
            .map(|&from| {
                let mut count = vec![0u32; strips];
                let mut buf = Vec::new();
                for at in (from..(from + chunk).min(n)).step_by(BLOCK) {
                    let to = (at + BLOCK).min(from + chunk).min(n);
                    for &x in values(isa, bcol, at, to, &mut buf) {
                        count[strip_of[band.bucket(x)] as usize] += 1;
                    }
                }
                count
            })
            .collect();
        let mut offsets: Vec<Vec<u32>> = vec![vec![0; strips]; parts.len()];
        for s in 0..strips {
            let mut at = self.start[s] as u32;
            for (c, count) in parts.iter().enumerate() {
                offsets[c][s] = at;
                at += count[s];
            }
        }
        self.rows.resize(n, 0);
        self.ovals.resize(n, 0.0);
        self.bvals.resize(n, 0.0);
        let out = (
            SharedOut(self.rows.as_mut_ptr()),
            SharedOut(self.bvals.as_mut_ptr()),
            SharedOut(self.ovals.as_mut_ptr()),
        );
        offsets
            .par_iter_mut()
            .zip(&froms)
            .for_each(|(next, &from)| {
                let end = (from + chunk).min(n);
                let (mut bbuf, mut obuf) = (Vec::new(), Vec::new());
                for at in (from..end).step_by(BLOCK) {
                    let to = (at + BLOCK).min(end);
                    let bs = values(isa, bcol, at, to, &mut bbuf);
                    let os = values(isa, ocol, at, to, &mut obuf);
                    for ((row, &xb), &xo) in (at..).zip(bs).zip(os) {
                        let s = strip_of[band.bucket(xb)] as usize;
                        let p = next[s] as usize;
                        next[s] += 1;
                        // SAFETY: each chunk writes only the positions it reserved
                        // in each strip (disjoint across chunks), all below n, the
                        // length of the three buffers.
                        unsafe {
                            *out.0.ptr().add(p) = row as u32;
                            *out.1.ptr().add(p) = xb;
                            *out.2.ptr().add(p) = xo;
                        }
                    }
                }
            });
        // Each strip sorted by `o`, in place.
        let mut pieces = Vec::with_capacity(strips);
        let (mut rows, mut bvals, mut ovals) =
            (&mut self.rows[..], &mut self.bvals[..], &mut self.ovals[..]);
        for &len in &counts {
            let (r, rest_r) = rows.split_at_mut(len);
            let (b, rest_b) = bvals.split_at_mut(len);
            let (o, rest_o) = ovals.split_at_mut(len);
            pieces.push((r, b, o));
            (rows, bvals, ovals) = (rest_r, rest_b, rest_o);
        }
        let extremes: Vec<(f32, f32)> = pieces
            .into_par_iter()
            .map_init(SortScratch::default, |scratch, (r, b, o)| {
                scratch.sort_by_o(r, b, o);
                let lo = b.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = b.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                (lo, hi)
            })
            .collect();
        (self.smin, self.smax) = extremes.into_iter().unzip();
    }

    /// Lower bound on |qb - x| for every band value x of strip `s`.
    #[inline(always)]
    fn strip_bound(&self, s: usize, qb: f32) -> f32 {
        (self.smin[s] - qb).max(qb - self.smax[s]).max(0.0)
    }

    /// Calls `visit(rows, bvals, ovals)` on runs of positions in every
    /// strip, nearer first, until the lower bound of what is left exceeds
    /// `limit()` (re-read between runs, so it may tighten as it goes).
    #[inline(always)]
    fn scan(&self, qb: f32, qo: f32, limit: &mut dyn FnMut() -> f32, visit: &mut Visit<'_>) {
        let strips = self.smin.len();
        if strips == 0 {
            return;
        }
        // The first strip whose largest band value reaches qb.
        let home = self.smax.partition_point(|&v| v < qb).min(strips - 1);
        let limit = std::cell::RefCell::new(limit);
        scan_outward(
            home,
            strips,
            |_| false,
            |s| self.strip_bound(s, qb),
            || (limit.borrow_mut())(),
            |s| self.scan_strip(s, qb, qo, &mut *limit.borrow_mut(), visit),
        );
    }

    /// `scan` within strip `s`: outward from qo in both directions.
    #[inline(always)]
    fn scan_strip(
        &self,
        s: usize,
        qb: f32,
        qo: f32,
        limit: &mut dyn FnMut() -> f32,
        visit: &mut Visit<'_>,
    ) {
        let at = self.start[s];
        let len = self.start[s + 1] - at;
        let lb = self.strip_bound(s, qb);
        let o = &self.ovals[at..at + len];
        let mid = o.partition_point(|&v| v < qo);
        let (mut lo, mut hi) = (mid, mid);
        let mut run = |from: usize, to: usize| {
            let r = at + from..at + to;
            visit(
                &self.rows[r.clone()],
                &self.bvals[r.clone()],
                &self.ovals[r],
            );
        };
        while hi < len || lo > 0 {
            let gap_hi = if hi < len { o[hi] - qo } else { f32::INFINITY };
            let gap_lo = if lo > 0 {
                qo - o[lo - 1]
            } else {
                f32::INFINITY
            };
            let lim = limit();
            // As in `scan_outward`: the side by what is left, since a gap
            // can overflow to infinity too.
            if hi < len && (lo == 0 || gap_hi <= gap_lo) {
                if lb + gap_hi > lim {
                    return;
                }
                let to = (hi + STEP).min(len);
                run(hi, to);
                hi = to;
            } else {
                if lb + gap_lo > lim {
                    return;
                }
                let from = lo.saturating_sub(STEP);
                run(from, lo);
                lo = from;
            }
        }
    }

    /// The row nearest to (qb, qo) (ties: lowest row); `knn_brute`'s first.
    pub fn nearest(&self, qb: f32, qo: f32) -> Neighbour {
        let mut best = Neighbour {
            row: u32::MAX,
            dist: f32::INFINITY,
        };
        let best_dist = std::cell::Cell::new(f32::INFINITY);
        self.scan(qb, qo, &mut || best_dist.get(), &mut |rows, bv, ov| {
            let cands = rows
                .iter()
                .zip(bv)
                .zip(ov)
                .map(|((&row, &vb), &vo)| Neighbour {
                    row,
                    dist: pair_distance(vb, qb, vo, qo),
                });
            fold_nearest(&mut best, cands);
            best_dist.set(best.dist);
        });
        best
    }

    /// The `k` nearest rows to (qb, qo) other than `exclude`, unordered,
    /// into `out`: exactly the set `knn_brute` returns. Collects rows within
    /// `limit` (a guess; retried without it if it held fewer than k rows),
    /// selecting down to k whenever the buffer fills, so the bound also
    /// tightens as the scan widens.
    pub fn knn(
        &self,
        qb: f32,
        qo: f32,
        k: usize,
        exclude: u32,
        limit: f32,
        out: &mut Vec<Neighbour>,
    ) {
        let k = k.min(self.rows.len().saturating_sub(1));
        knn_within(k, limit, out, |start, out| {
            self.collect(qb, qo, k, exclude, start, out)
        });
    }

    fn collect(
        &self,
        qb: f32,
        qo: f32,
        k: usize,
        exclude: u32,
        start: f32,
        out: &mut Vec<Neighbour>,
    ) {
        let limit = Shrinking::new(start, k);
        let mut dist = [0f32; STEP];
        self.scan(qb, qo, &mut || limit.get(), &mut |rows, bv, ov| {
            // Distances first (a loop the compiler vectorises), then the
            // rows within the limit.
            let n = rows.len();
            for ((d, &vb), &vo) in dist[..n].iter_mut().zip(bv).zip(ov) {
                *d = pair_distance(vb, qb, vo, qo);
            }
            let lim = limit.get();
            for (&row, &d) in rows.iter().zip(&dist[..n]) {
                if d <= lim && row != exclude {
                    out.push(Neighbour { row, dist: d });
                }
            }
            limit.trim(out);
        });
    }
}

/// L1 distance in the pair's subspace, as `search::distance` sums it:
/// 0 + |x0 - q0| + |x1 - q1| equals |xb - qb| + |xo - qo| in either
/// order (adding 0 to a non-negative value is exact, and addition of two
/// terms is commutative in IEEE arithmetic).
#[inline(always)]
fn pair_distance(vb: f32, qb: f32, vo: f32, qo: f32) -> f32 {
    (vb - qb).abs() + (vo - qo).abs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::band::tests::pool;
    use crate::search::knn_brute;

    /// The per-strip sort keeps every (row, b, o) entry, bit for bit
    /// (o is rebuilt from its key: -0.0 stays -0.0), and orders them by
    /// o, ties by their position, for strips of f32 and float16 values.
    #[test]
    fn strip_sort_is_a_stable_sort_by_o() {
        let mut rng = crate::rng::Stream::new(4, 4, 0);
        let mut scratch = SortScratch::default();
        for trial in 0..60 {
            let len = rng.below(3000) as usize;
            let mut o: Vec<f32> = (0..len)
                .map(|_| match rng.below(5) {
                    0 => -0.0,
                    1 => 0.0,
                    2 => (rng.below(7) as f32) - 3.0,
                    _ => (rng.unit_open() as f32 - 0.5) * 1e3,
                })
                .collect();
            if trial % 2 == 1 {
                o.iter_mut()
                    .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
            }
            let mut rows: Vec<u32> = (0..len as u32).map(|i| i * 3 + 1).collect();
            let mut b: Vec<f32> = (0..len).map(|i| i as f32 * 0.5).collect();
            let mut want: Vec<(u32, u32, u32, u32)> = (0..len)
                .map(|i| (order_key(o[i]), i as u32, rows[i], b[i].to_bits()))
                .collect();
            want.sort_unstable();
            scratch.sort_by_o(&mut rows, &mut b, &mut o);
            let got: Vec<(u32, u32, u32, u32)> = (0..len)
                .map(|i| (order_key(o[i]), (rows[i] - 1) / 3, rows[i], b[i].to_bits()))
                .collect();
            assert_eq!(got, want, "trial {trial}");
        }
    }

    /// Values near f32::MAX, whose distances and bounds overflow to
    /// infinity: band and pair searches end, and still equal brute force
    /// (ties at infinity go to the lowest rows).
    #[test]
    fn overflowing_distances_end_and_equal_brute_force() {
        // Band values spread over [-1.5e38, 1.5e38] (several buckets), other
        // values all below -1e38: from qo = 3e38 every distance overflows,
        // so the limit stays infinite while the bounds overflow too.
        let n = 600;
        let mut cols: Vec<f32> = (0..n)
            .map(|i| -1.5e38 + i as f32 * (3e38 / n as f32))
            .collect();
        cols.extend((0..n).map(|i| -1e38 - (i % 7) as f32 * 1e37));
        let p = crate::pool::tests::column_major_pool(&cols, n, 2, false);
        let mut band = BandIndex::with_isa(Isa::best());
        band.build(&p, 0);
        let mut pair = PairIndex::with_isa(Isa::best());
        let mut out = Vec::new();
        for width in [1, 256, n + 1] {
            pair.build(&p, &band, 1, width);
            for (qb, qo) in [
                (3e38, 3e38),
                (-3e38, 3e38),
                (0.0, 3e38),
                (0.0, -3e38),
                (1.0, 0.0),
            ] {
                let want = knn_brute(&p, &[0, 1], &[qb, qo], 1, None)[0];
                assert_eq!(pair.nearest(qb, qo), want, "{width} {qb} {qo}");
                let q = crate::search::band::BandQuery { other: 1, qb, qo };
                assert_eq!(band.nearest(&p, q, &mut Vec::new()), want);
                for k in [1, 7, n - 1] {
                    let want = knn_brute(&p, &[0, 1], &[qb, qo], k, Some(3));
                    pair.knn(qb, qo, k, 3, f32::INFINITY, &mut out);
                    out.sort_by(Neighbour::cmp_key);
                    assert_eq!(out, want, "pair {width} {qb} {qo} {k}");
                    band.knn(&p, q, k, 3, f32::INFINITY, &mut out);
                    out.sort_by(Neighbour::cmp_key);
                    assert_eq!(out, want, "band {qb} {qo} {k}");
                }
            }
        }
    }

    /// Nearest rows and k nearest equal brute force on pools with ties,
    /// duplicate rows, a constant dimension and heavy tails, float16 and
    /// f32, for strips of every width from one bucket to the whole pool,
    /// with exact, loose and infinite limit guesses.
    #[test]
    fn pair_search_equals_brute_force() {
        let mut rng = crate::rng::Stream::new(9, 8, 0);
        for isa in Isa::supported() {
            let mut band = BandIndex::with_isa(isa);
            let mut pair = PairIndex::with_isa(isa);
            let mut out = Vec::new();
            for trial in 0..24u64 {
                let n = 2 + rng.below(5000) as usize;
                let p = pool(trial + 100, n, trial % 2 == 1);
                for b in 0..p.d as u32 {
                    band.build(&p, b);
                    for o in (0..p.d as u32).filter(|&o| o != b) {
                        let widths = [1, 256, strip_rows(n, 40), n + 1];
                        pair.build(&p, &band, o, widths[rng.below(4) as usize]);
                        assert_eq!(pair.rows.len(), n);
                        let dims = [b.min(o), b.max(o)];
                        for _ in 0..8 {
                            let (qb, qo) = (
                                rng.unit_open() as f32 * 10.0 - 5.0,
                                rng.unit_open() as f32 * 10.0 - 5.0,
                            );
                            let q = if b < o { [qb, qo] } else { [qo, qb] };
                            let want = knn_brute(&p, &dims, &q, 1, None)[0];
                            assert_eq!(pair.nearest(qb, qo), want, "{trial} {b} {o}");
                            let c = want.row;
                            let (cb, co) = (
                                p.value(b as usize, c as usize),
                                p.value(o as usize, c as usize),
                            );
                            let centre = if b < o { [cb, co] } else { [co, cb] };
                            let k = 1 + rng.below(300) as usize;
                            let guess = match rng.below(3) {
                                0 => f32::INFINITY,
                                1 => 0.0,
                                _ => rng.unit_open() as f32,
                            };
                            pair.knn(cb, co, k, c, guess, &mut out);
                            out.sort_by(Neighbour::cmp_key);
                            let want = knn_brute(&p, &dims, &centre, k, Some(c));
                            assert_eq!(out, want, "{trial} n {n} k {k} {b} {o}");
                        }
                    }
                }
            }
        }
    }
}

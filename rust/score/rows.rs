//! A run whose pool is split by rows over several processes (Ray's row
//! sharding, for pools too large for one node): each process holds a
//! `RowShard`, a contiguous range of the global rows, and one coordinator
//! combines the shards' answers sample by sample.
//!
//! Per batch of samples:
//! 1. every shard draws the samples (the draws need only the seed, the
//!    sample index and the *global* per-dimension statistics) and returns
//!    its nearest row to each sample point (`RowShard::winners`);
//! 2. the coordinator keeps the global winner: the smallest (distance,
//!    global row), so ties go to the lower global row as in one process
//!    (`merge_winners`);
//! 3. every shard returns its nearest rows to each winner, the winner
//!    itself excluded by its owner (`RowShard::neighbours`): at first only
//!    its expected share of the `k` nearest with a margin (`first_share`);
//! 4. the coordinator keeps the global `k` nearest and computes their
//!    penalties with the same arithmetic as one process (`merge_penalties`).
//!    The union of the shards' lists holds the global `k` nearest unless a
//!    shard that sent only part of its rows sent none beyond the global
//!    k-th: such samples are asked again, every shard sending its `k`
//!    nearest, and their merge is spliced in (`splice`);
//! 5. every shard adds the reward and the penalties of the rows it owns
//!    (`RowShard::apply`).
//!
//! Distances are computed per row by the same kernels, the neighbour set is
//! exact, the penalty arithmetic does not depend on the order of the
//! neighbours, and the sums are integers: the shards' halves, concatenated,
//! are bit for bit those of one process.
//!
//! The global statistics: minimum and maximum are the shards' minima and
//! maxima. The median is found exactly by a radix selection over the
//! order-preserving 32-bit keys of the values (float16 widens to f32
//! exactly): in each of `KEY_ROUNDS` rounds every shard counts, per
//! dimension, the keys that share the prefix found so far by their next
//! bits (`RowShard::key_histogram`); the coordinator adds the counts and
//! narrows the prefix to the bin holding the wanted rank (`narrow`). After
//! 32 bits the prefix is the key of the value of that rank.

use super::penalty::Penalties;
use super::{draw_into, Halves, Params, FIXED_ONE};
use crate::error::{invalid, Result};
use crate::neighbour::Neighbour;
use crate::pool::stats::{from_order_key as value, order_key as key};
use crate::pool::{DimStats, Pool};
use crate::search::Searcher;
use rayon::prelude::*;

/// Bits of the key each round of the median selection narrows: 2,048 bins
/// per dimension and wanted rank, so one round's counts stay ~20 MB at
/// D = 1,280 while three passes over the shard suffice.
pub const KEY_ROUNDS: [u32; 3] = [11, 11, 10];

/// The two sorted ranks whose values give the median of `n` values (the
/// same rank twice when `n` is odd).
pub fn median_ranks(n: u64) -> [u64; 2] {
    [(n - 1) / 2, n / 2]
}

/// One round of the median selection, on the coordinator: `counts` (the
/// shards' `key_histogram`s added up, `d * 2 * 2^bits`) narrows each
/// dimension's two `prefixes` by `bits` bits, to the bin holding the
/// wanted rank; `ranks` become ranks within that bin.
pub fn narrow(counts: &[u64], prefixes: &mut [u32], ranks: &mut [u64], bits: u32) -> Result<()> {
    let bins = 1usize << bits;
    if counts.len() != prefixes.len() * bins || ranks.len() != prefixes.len() {
        return Err(invalid!(
            "median selection: {} counts for {} prefixes of {bits} bits",
            counts.len(),
            prefixes.len()
        ));
    }
    for ((hist, prefix), rank) in counts.chunks(bins).zip(prefixes.iter_mut()).zip(ranks) {
        let mut seen = 0u64;
        let bin = hist.iter().position(|&c| {
            seen += c;
            seen > *rank
        });
        let Some(bin) = bin else {
            return Err(invalid!(
                "median selection: the shards hold fewer rows than they said"
            ));
        };
        *rank -= seen - hist[bin];
        *prefix = (*prefix << bits) | bin as u32;
    }
    Ok(())
}

/// The global statistics from the shards' minima and maxima (per
/// dimension) and the keys the median selection found (two per dimension),
/// for `n` rows in all: what `Pool::build` computes on the whole pool.
pub fn stats_from(lo: Vec<f64>, hi: Vec<f64>, keys: &[u32], n: u64) -> DimStats {
    let md = keys
        .chunks(2)
        .map(|k| {
            let upper = f64::from(value(k[1]));
            if n % 2 == 1 {
                upper
            } else {
                (f64::from(value(k[0])) + upper) / 2.0
            }
        })
        .collect();
    DimStats { lo, md, hi }
}

/// Each sample's nearest row in one shard: distances, global rows and the
/// row's coordinates in the sample's dimensions (`sample_dim` per sample).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Winners {
    /// Distance to the sample point.
    pub dist: Vec<f32>,
    /// Global row.
    pub row: Vec<u64>,
    /// Coordinates, `sample_dim` per sample.
    pub coords: Vec<f32>,
}

/// Each sample's nearest rows in one shard: `count[i]` of them for sample
/// `i`, in `row` and `dist` one sample after another.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nearby {
    /// Rows listed per sample.
    pub count: Vec<u32>,
    /// Global rows.
    pub row: Vec<u64>,
    /// Their distances to the sample's winner.
    pub dist: Vec<f32>,
    /// Whether the shard holds rows it did not send (it sent its nearest
    /// up to a limit): the merge is exact only if the global k-th nearest
    /// is no farther than the last row sent.
    pub more: Vec<bool>,
}

/// Each sample's penalties, ready for the shards: `offsets` (one more than
/// the samples) delimit each sample's global rows and fixed-point amounts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    /// Start of each sample's penalties, and the end of the last.
    pub offsets: Vec<u64>,
    /// Penalised global rows.
    pub row: Vec<u64>,
    /// Amounts subtracted, `FIXED_ONE` per score point.
    pub fixed: Vec<i64>,
}

/// A contiguous range of a pool's rows, and their share of the run.
pub struct RowShard<'a> {
    pool: Pool<'a>,
    first_row: u64,
    total_rows: u64,
    params: Params,
    stats: Option<DimStats>,
    halves: Halves,
}

impl<'a> RowShard<'a> {
    /// The shard holding global rows `first_row .. first_row + pool.n` of a
    /// pool of `total_rows`, scored with `params` (`threads`, `search` and
    /// `rand_init` are not used: the caller's rayon pool runs the work, and
    /// the noise is added when the halves are finished).
    pub fn new(pool: Pool<'a>, first_row: u64, total_rows: u64, params: Params) -> Result<Self> {
        let end = first_row.checked_add(pool.n as u64);
        if end.is_none_or(|end| end > total_rows) {
            return Err(invalid!(
                "a shard of {} rows from row {first_row} does not fit a pool of {total_rows}",
                pool.n
            ));
        }
        params.validate(total_rows as usize, pool.d)?;
        let n = pool.n;
        Ok(RowShard {
            pool,
            first_row,
            total_rows,
            params,
            stats: None,
            halves: Halves {
                first: vec![0; n],
                second: vec![0; n],
            },
        })
    }

    /// The shard's rows.
    pub fn pool(&self) -> &Pool<'a> {
        &self.pool
    }

    /// The shard's own minimum and maximum per dimension.
    pub fn extremes(&self) -> (&[f64], &[f64]) {
        (&self.pool.stats.lo, &self.pool.stats.hi)
    }

    /// Counts, per dimension and wanted rank, of this shard's keys whose
    /// top `bits_done` bits equal `prefixes[2 * dim + t]`, by their next
    /// `bits` bits: `d * 2 * 2^bits` counts, dimension-major.
    pub fn key_histogram(&self, prefixes: &[u32], bits_done: u32, bits: u32) -> Result<Vec<u32>> {
        let d = self.pool.d;
        if prefixes.len() != 2 * d || bits == 0 || bits_done + bits > 32 {
            return Err(invalid!(
                "median selection: {} prefixes for {d} dimensions, {bits_done} + {bits} bits",
                prefixes.len()
            ));
        }
        let bins = 1usize << bits;
        let mut counts = vec![0u32; d * 2 * bins];
        counts
            .par_chunks_mut(2 * bins)
            .enumerate()
            .for_each(|(dim, out)| {
                let col = self.pool.col(dim);
                let (p0, p1) = (prefixes[2 * dim], prefixes[2 * dim + 1]);
                let rest = 32 - bits_done;
                let bin = |k: u32| ((k << bits_done) >> (32 - bits)) as usize;
                for r in 0..self.pool.n {
                    let k = key(col.get(r));
                    // `checked_shr`: with no bits done every key matches.
                    let top = k.checked_shr(rest).unwrap_or(0);
                    if top == p0 {
                        out[bin(k)] += 1;
                    }
                    if top == p1 {
                        out[bins + bin(k)] += 1;
                    }
                }
            });
        Ok(counts)
    }

    /// Sets the global statistics the samples are drawn from.
    pub fn set_stats(&mut self, stats: DimStats) -> Result<()> {
        let d = self.pool.d;
        if stats.lo.len() != d || stats.md.len() != d || stats.hi.len() != d {
            return Err(invalid!(
                "statistics for {} dimensions given to a shard of {d}",
                stats.lo.len()
            ));
        }
        self.stats = Some(stats);
        Ok(())
    }

    fn draws(&self, first: u64, count: usize) -> Result<(Vec<u32>, Vec<f32>)> {
        let end = first.checked_add(count as u64);
        if end.is_none_or(|end| end > self.params.n_sample) {
            return Err(invalid!(
                "samples {first}..+{count} are not within 0..{}",
                self.params.n_sample
            ));
        }
        let samples: Vec<u64> = (first..first + count as u64).collect();
        self.draws_of(&samples)
    }

    /// The dimensions and sample points of `samples`.
    fn draws_of(&self, samples: &[u64]) -> Result<(Vec<u32>, Vec<f32>)> {
        let Some(stats) = &self.stats else {
            return Err(invalid!("the shard's global statistics are not set"));
        };
        if let Some(&bad) = samples.iter().find(|&&s| s >= self.params.n_sample) {
            return Err(invalid!(
                "sample {bad} is not within 0..{}",
                self.params.n_sample
            ));
        }
        let m = self.params.sample_dim;
        let mut dims = vec![0u32; samples.len() * m];
        let mut q = vec![0f32; samples.len() * m];
        dims.par_chunks_mut(m)
            .zip(q.par_chunks_mut(m))
            .zip(samples.par_iter())
            .for_each(|((d, x), &s)| draw_into(stats, self.params.seed, s, d, x));
        Ok((dims, q))
    }

    /// This shard's nearest row to each of samples `first..first + count`.
    pub fn winners(&self, first: u64, count: usize) -> Result<Winners> {
        let m = self.params.sample_dim;
        let (dims, q) = self.draws(first, count)?;
        let found: Vec<(Neighbour, Vec<f32>)> = dims
            .par_chunks(m)
            .zip(q.par_chunks(m))
            .map_init(
                || Searcher::with_isa(self.params.isa),
                |searcher, (d, x)| {
                    let nb = searcher.nearest(&self.pool, d, x);
                    let at = d
                        .iter()
                        .map(|&d| self.pool.value(d as usize, nb.row as usize));
                    (nb, at.collect())
                },
            )
            .collect();
        let mut out = Winners::default();
        for (nb, at) in found {
            out.dist.push(nb.dist);
            out.row.push(self.first_row + u64::from(nb.row));
            out.coords.extend(at);
        }
        Ok(out)
    }

    /// This shard's `limit` nearest rows (at most k = min(redund_nn, total
    /// rows - 1)) to the global winner of each of `samples` (`rows`, at
    /// `coords`), the winner itself left out; and whether it holds more
    /// rows than it sent (`Nearby::more`).
    pub fn neighbours(
        &self,
        samples: &[u64],
        rows: &[u64],
        coords: &[f32],
        limit: usize,
    ) -> Result<Nearby> {
        let m = self.params.sample_dim;
        if coords.len() != rows.len() * m || samples.len() != rows.len() {
            return Err(invalid!(
                "{} winner coordinates and {} rows for {} samples of {m} dimensions",
                coords.len(),
                rows.len(),
                samples.len()
            ));
        }
        let (dims, _) = self.draws_of(samples)?;
        let k = self.k().min(limit);
        let lists: Vec<(Vec<Neighbour>, bool)> = dims
            .par_chunks(m)
            .zip(coords.par_chunks(m))
            .zip(rows.par_iter())
            .map_init(
                || Searcher::with_isa(self.params.isa),
                |searcher, ((d, centre), &winner)| {
                    let exclude = self.local(winner);
                    let avail = self.pool.n - usize::from(exclude.is_some());
                    let mut out = Vec::new();
                    searcher.knn(&self.pool, d, centre, k, exclude, &mut out);
                    (out, avail > k)
                },
            )
            .collect();
        let mut out = Nearby::default();
        for (list, more) in lists {
            out.count.push(list.len() as u32);
            out.more.push(more);
            out.row
                .extend(list.iter().map(|nb| self.first_row + u64::from(nb.row)));
            out.dist.extend(list.iter().map(|nb| nb.dist));
        }
        Ok(out)
    }

    /// Neighbours penalised per sample: min(redund_nn, total rows - 1).
    fn k(&self) -> usize {
        self.params.redund_nn.min(self.total_rows as usize - 1)
    }

    /// The local row of global `row`, if this shard holds it.
    fn local(&self, row: u64) -> Option<u32> {
        row.checked_sub(self.first_row)
            .filter(|&r| r < self.pool.n as u64)
            .map(|r| r as u32)
    }

    /// Adds samples `first..first + winners.len()`: one point to each
    /// winner, minus its penalties, for the rows this shard holds.
    pub fn apply(&mut self, first: u64, winners: &[u64], merged: &Merged) -> Result<()> {
        if merged.offsets.len() != winners.len() + 1 || !well_formed(merged) {
            return Err(invalid!("penalties and winners of different batches"));
        }
        let half_at = self.params.n_sample / 2;
        let one = FIXED_ONE as i64;
        let (start, n) = (self.first_row, self.pool.n as u64);
        let local = |row: u64| {
            row.checked_sub(start)
                .filter(|&r| r < n)
                .map(|r| r as usize)
        };
        for (i, &winner) in winners.iter().enumerate() {
            let acc = if first + (i as u64) < half_at {
                &mut self.halves.first
            } else {
                &mut self.halves.second
            };
            if let Some(r) = local(winner) {
                acc[r] += one;
            }
            let span = merged.offsets[i] as usize..merged.offsets[i + 1] as usize;
            for (&row, &v) in merged.row[span.clone()].iter().zip(&merged.fixed[span]) {
                if let Some(r) = local(row) {
                    acc[r] -= v;
                }
            }
        }
        Ok(())
    }

    /// The shard's fixed-point raw scores so far, per half of the run.
    pub fn halves(&self) -> &Halves {
        &self.halves
    }
}

/// The global winner of each sample from every shard's `Winners`: the
/// smallest (distance, global row), and its coordinates.
pub fn merge_winners(parts: &[Winners], sample_dim: usize) -> Result<(Vec<u64>, Vec<f32>)> {
    let Some(count) = parts.first().map(|p| p.row.len()) else {
        return Err(invalid!("no shards to merge"));
    };
    if parts.iter().any(|p| {
        p.row.len() != count || p.dist.len() != count || p.coords.len() != count * sample_dim
    }) {
        return Err(invalid!("the shards answered for different samples"));
    }
    let mut rows = Vec::with_capacity(count);
    let mut coords = Vec::with_capacity(count * sample_dim);
    for i in 0..count {
        let best = parts
            .iter()
            .min_by_key(|p| (p.dist[i].to_bits(), p.row[i]))
            .expect("at least one shard");
        rows.push(best.row[i]);
        coords.extend_from_slice(&best.coords[i * sample_dim..(i + 1) * sample_dim]);
    }
    Ok((rows, coords))
}

/// The penalties of each sample from every shard's `Nearby`: the global
/// `k` nearest (smallest distance, then lower global row), weighted as one
/// process weighs them (`Penalties`); and the samples (positions) whose
/// merge is not exact, because a shard that sent only its nearest up to a
/// limit may hold one of the global k nearest it did not send. Those
/// samples get no penalties here: ask every shard for its k nearest and
/// `splice` their merge in.
pub fn merge_penalties(parts: &[Nearby], k: usize, p: &Params) -> Result<(Merged, Vec<u32>)> {
    let Some(count) = parts.first().map(|p| p.count.len()) else {
        return Err(invalid!("no shards to merge"));
    };
    if parts.iter().any(|p| {
        p.count.len() != count
            || p.more.len() != count
            || p.row.len() != p.dist.len()
            || p.count.iter().map(|&c| c as usize).sum::<usize>() != p.row.len()
    }) {
        return Err(invalid!("the shards answered for different samples"));
    }
    // Where each shard's list of each sample starts.
    let starts: Vec<Vec<usize>> = parts
        .iter()
        .map(|p| {
            let mut at = 0;
            p.count
                .iter()
                .map(|&c| {
                    let s = at;
                    at += c as usize;
                    s
                })
                .collect()
        })
        .collect();
    type Key = (u32, u64);
    let per_sample: Vec<Option<(Vec<u64>, Vec<i64>)>> = (0..count)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Penalties::default()),
            |(all, nbs, pen): &mut (Vec<Key>, Vec<Neighbour>, Penalties), i| {
                all.clear();
                // The farthest row sent by a shard that holds more: every
                // row it did not send is farther still.
                let mut horizon: Option<Key> = None;
                let mut blind = false;
                for (part, start) in parts.iter().zip(&starts) {
                    let span = start[i]..start[i] + part.count[i] as usize;
                    let sent = part.dist[span.clone()]
                        .iter()
                        .map(|d| d.to_bits())
                        .zip(part.row[span].iter().copied());
                    let before = all.len();
                    all.extend(sent);
                    if part.more[i] {
                        match all[before..].iter().max() {
                            Some(&last) => horizon = Some(horizon.map_or(last, |h| h.min(last))),
                            None => blind = true,
                        }
                    }
                }
                if all.len() > k {
                    all.select_nth_unstable(k - 1);
                    all.truncate(k);
                }
                let exact = !blind
                    && horizon.is_none_or(|h| all.len() == k && all.iter().all(|&key| key <= h));
                if !exact {
                    return None;
                }
                // The penalty arithmetic sees positions as rows, and breaks
                // ties between duplicates (distance 0) by row: with a
                // duplicate, sort so position order is global row order.
                // Otherwise the order changes nothing.
                if all.iter().any(|&(d, _)| d == 0) {
                    all.sort_unstable();
                }
                nbs.clear();
                nbs.extend(all.iter().enumerate().map(|(j, &(d, _))| Neighbour {
                    row: j as u32,
                    dist: f32::from_bits(d),
                }));
                pen.compute(p.isa, nbs, p.redund_exp);
                let (at, fixed) = pen.fixed();
                Some((
                    at.iter().map(|&j| all[j as usize].1).collect(),
                    fixed.to_vec(),
                ))
            },
        )
        .collect();
    let mut out = Merged {
        offsets: Vec::with_capacity(count + 1),
        ..Merged::default()
    };
    let mut retry = Vec::new();
    out.offsets.push(0);
    for (i, sample) in per_sample.into_iter().enumerate() {
        match sample {
            Some((rows, fixed)) => {
                out.row.extend(rows);
                out.fixed.extend(fixed);
            }
            None => retry.push(i as u32),
        }
        out.offsets.push(out.row.len() as u64);
    }
    Ok((out, retry))
}

/// `merged` with the penalties of the samples at positions `at` (left
/// empty by `merge_penalties`) taken from `redo`, their merge in that order.
pub fn splice(merged: &Merged, at: &[u32], redo: &Merged) -> Result<Merged> {
    let count = merged.offsets.len().saturating_sub(1);
    let ascending = at.windows(2).all(|w| w[0] < w[1]);
    if redo.offsets.len() != at.len() + 1
        || !ascending
        || at.iter().any(|&i| i as usize >= count)
        || !well_formed(merged)
        || !well_formed(redo)
    {
        return Err(invalid!(
            "the redone penalties are not those of the samples left out"
        ));
    }
    let span = |m: &Merged, i: usize| m.offsets[i] as usize..m.offsets[i + 1] as usize;
    let mut out = Merged {
        offsets: vec![0],
        ..Merged::default()
    };
    let mut next = at.iter().enumerate().peekable();
    for i in 0..count {
        let (from, range) = match next.peek() {
            Some(&(j, &a)) if a as usize == i => {
                next.next();
                (redo, span(redo, j))
            }
            _ => (merged, span(merged, i)),
        };
        out.row.extend_from_slice(&from.row[range.clone()]);
        out.fixed.extend_from_slice(&from.fixed[range]);
        out.offsets.push(out.row.len() as u64);
    }
    Ok(out)
}

/// Whether `m`'s offsets start at 0, never decrease and end at its rows.
fn well_formed(m: &Merged) -> bool {
    m.offsets.first() == Some(&0)
        && m.offsets.windows(2).all(|w| w[0] <= w[1])
        && m.offsets.last() == Some(&(m.row.len() as u64))
        && m.row.len() == m.fixed.len()
}

/// How many of its nearest rows a shard of `rows` rows (of `total`) sends
/// for a sample at first: its expected share of the `k` nearest, plus
/// `margin` standard deviations and 8 (at most `k`). With shards of rows
/// in random order the merge is then exact for almost every sample, and
/// the rows sent are about k in all instead of k per shard.
pub fn first_share(k: usize, rows: usize, total: u64, margin: f64) -> usize {
    let expect = k as f64 * rows as f64 / total.max(1) as f64;
    let share = expect + margin * expect.sqrt() + 8.0;
    if share.is_finite() && share < k as f64 {
        share.ceil() as usize
    } else {
        k
    }
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;

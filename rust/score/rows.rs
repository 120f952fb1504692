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
//! 3. every shard returns its `k` nearest rows to each winner, the winner
//!    itself excluded by its owner (`RowShard::neighbours`);
//! 4. the coordinator keeps the global `k` nearest (the union of every
//!    shard's `k` nearest holds them) and computes their penalties with the
//!    same arithmetic as one process (`merge_penalties`);
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
        let Some(stats) = &self.stats else {
            return Err(invalid!("the shard's global statistics are not set"));
        };
        let end = first.checked_add(count as u64);
        if end.is_none_or(|end| end > self.params.n_sample) {
            return Err(invalid!(
                "samples {first}..+{count} are not within 0..{}",
                self.params.n_sample
            ));
        }
        let m = self.params.sample_dim;
        let mut dims = vec![0u32; count * m];
        let mut q = vec![0f32; count * m];
        dims.par_chunks_mut(m)
            .zip(q.par_chunks_mut(m))
            .enumerate()
            .for_each(|(i, (d, x))| draw_into(stats, self.params.seed, first + i as u64, d, x));
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

    /// This shard's `k` nearest rows (k = min(redund_nn, total rows - 1))
    /// to each sample's global winner (`rows`, at `coords`), the winner
    /// itself left out.
    pub fn neighbours(&self, first: u64, rows: &[u64], coords: &[f32]) -> Result<Nearby> {
        let m = self.params.sample_dim;
        if coords.len() != rows.len() * m {
            return Err(invalid!(
                "{} winner coordinates for {} samples of {m} dimensions",
                coords.len(),
                rows.len()
            ));
        }
        let (dims, _) = self.draws(first, rows.len())?;
        let k = self.params.redund_nn.min(self.total_rows as usize - 1);
        let lists: Vec<Vec<Neighbour>> = dims
            .par_chunks(m)
            .zip(coords.par_chunks(m))
            .zip(rows.par_iter())
            .map_init(
                || Searcher::with_isa(self.params.isa),
                |searcher, ((d, centre), &winner)| {
                    let exclude = self.local(winner);
                    let mut out = Vec::new();
                    searcher.knn(&self.pool, d, centre, k, exclude, &mut out);
                    out
                },
            )
            .collect();
        let mut out = Nearby::default();
        for list in lists {
            out.count.push(list.len() as u32);
            out.row
                .extend(list.iter().map(|nb| self.first_row + u64::from(nb.row)));
            out.dist.extend(list.iter().map(|nb| nb.dist));
        }
        Ok(out)
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
        if merged.offsets.len() != winners.len() + 1
            || merged.offsets.last().copied() != Some(merged.row.len() as u64)
            || merged.row.len() != merged.fixed.len()
        {
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
/// process weighs them (`Penalties`).
pub fn merge_penalties(parts: &[Nearby], k: usize, p: &Params) -> Result<Merged> {
    let Some(count) = parts.first().map(|p| p.count.len()) else {
        return Err(invalid!("no shards to merge"));
    };
    if parts.iter().any(|p| {
        p.count.len() != count
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
    let per_sample: Vec<(Vec<u64>, Vec<i64>)> = (0..count)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Penalties::default()),
            |(all, nbs, pen): &mut (Vec<(u32, u64)>, Vec<Neighbour>, Penalties), i| {
                all.clear();
                for (part, start) in parts.iter().zip(&starts) {
                    let span = start[i]..start[i] + part.count[i] as usize;
                    all.extend(
                        part.dist[span.clone()]
                            .iter()
                            .map(|d| d.to_bits())
                            .zip(part.row[span].iter().copied()),
                    );
                }
                if all.len() > k {
                    all.select_nth_unstable(k - 1);
                    all.truncate(k);
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
                (
                    at.iter().map(|&j| all[j as usize].1).collect(),
                    fixed.to_vec(),
                )
            },
        )
        .collect();
    let mut out = Merged {
        offsets: Vec::with_capacity(count + 1),
        ..Merged::default()
    };
    out.offsets.push(0);
    for (rows, fixed) in per_sample {
        out.row.extend(rows);
        out.fixed.extend(fixed);
        out.offsets.push(out.row.len() as u64);
    }
    Ok(out)
}

#[cfg(test)]
#[path = "rows_tests.rs"]
mod tests;

//! Bindings for a run whose pool is split by rows over processes (the Ray
//! backend's row sharding; see `score::rows` for the protocol). A
//! `RowShard` lives in one Ray actor; the merge functions run on the
//! coordinator. Every call releases the GIL.

use super::sharded::part_params;
use super::watch::with_sources;
use super::{to_py, ZCoreError};
use crate::pool::{DimStats, Pool};
use crate::score::rows::{self, Merged, Nearby, Winners};
use crate::score::Params;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use std::sync::Mutex;

type Arr<'py, T> = Bound<'py, PyArray1<T>>;
/// A shard's neighbour lists: counts, rows, distances, more.
type Nearby4<'py> = (Arr<'py, u32>, Arr<'py, u64>, Arr<'py, f32>, Arr<'py, bool>);
/// Penalties: offsets, rows, fixed-point amounts.
type Merged3<'py> = (Arr<'py, u64>, Arr<'py, u64>, Arr<'py, i64>);
/// A shard's neighbour lists as they come in.
type NearbyIn<'py> = (
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, u64>,
    PyReadonlyArray1<'py, f32>,
    PyReadonlyArray1<'py, bool>,
);

/// One shard of a row-sharded run: global rows `first_row ..` of a pool of
/// `total_rows`, held in memory as dimension-major f32, with its share of
/// the run's fixed-point halves.
#[pyclass(module = "zcore_fast._native", frozen)]
pub(super) struct RowShard {
    inner: Mutex<rows::RowShard<'static>>,
    threads: rayon::ThreadPool,
}

impl RowShard {
    /// Runs `f` on the shard, GIL released, on the shard's threads.
    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut rows::RowShard<'static>) -> crate::Result<T> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            let shard: &mut rows::RowShard<'static> = &mut guard;
            self.threads.install(|| f(shard))
        })
        .map_err(to_py)
    }
}

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>) -> PyResult<&'a [T]> {
    Ok(a.as_slice()?)
}

#[pymethods]
impl RowShard {
    /// Builds the shard from `inputs` (its rows of each input, concatenated
    /// along dimensions, as `score` takes them).
    #[new]
    #[pyo3(signature = (inputs, *, first_row, total_rows, n_sample, sample_dim, redund_nn, redund_exp, seed, threads, isa=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        inputs: &Bound<'_, PyAny>,
        first_row: u64,
        total_rows: u64,
        n_sample: u64,
        sample_dim: usize,
        redund_nn: usize,
        redund_exp: f64,
        seed: u64,
        threads: usize,
        isa: Option<&str>,
    ) -> PyResult<Self> {
        let params = part_params(
            py, isa, n_sample, sample_dim, redund_nn, redund_exp, seed, threads,
        )?;
        let pool = with_sources(py, inputs, threads, None, |sources, _, keep_going| {
            Pool::build_until(sources, keep_going).map(Pool::into_owned)
        })?;
        let inner = rows::RowShard::new(pool, first_row, total_rows, params).map_err(to_py)?;
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| ZCoreError::new_err(format!("cannot start threads: {e}")))?;
        Ok(RowShard {
            inner: Mutex::new(inner),
            threads,
        })
    }

    /// (rows, dimensions) of the shard.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        let shard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (shard.pool().n, shard.pool().d)
    }

    /// The shard's own (minimum, maximum) per dimension, float64.
    fn extremes<'py>(&self, py: Python<'py>) -> (Arr<'py, f64>, Arr<'py, f64>) {
        let shard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = shard.extremes();
        (lo.to_vec().into_pyarray(py), hi.to_vec().into_pyarray(py))
    }

    /// One round of the median selection: uint32 counts, `2 * d << bits`.
    fn key_histogram<'py>(
        &self,
        py: Python<'py>,
        prefixes: PyReadonlyArray1<'py, u32>,
        bits_done: u32,
        bits: u32,
    ) -> PyResult<Arr<'py, u32>> {
        let prefixes = slice(&prefixes)?;
        let counts = self.with(py, |s| s.key_histogram(prefixes, bits_done, bits))?;
        Ok(counts.into_pyarray(py))
    }

    /// Sets the global per-dimension statistics.
    fn set_stats(
        &self,
        py: Python<'_>,
        lo: PyReadonlyArray1<'_, f64>,
        md: PyReadonlyArray1<'_, f64>,
        hi: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<()> {
        let stats = DimStats {
            lo: slice(&lo)?.to_vec(),
            md: slice(&md)?.to_vec(),
            hi: slice(&hi)?.to_vec(),
        };
        self.with(py, |s| s.set_stats(stats))
    }

    /// The shard's nearest row to each of samples `first..first + count`:
    /// (distances float32, global rows uint64, coordinates float32).
    fn winners<'py>(
        &self,
        py: Python<'py>,
        first: u64,
        count: usize,
    ) -> PyResult<(Arr<'py, f32>, Arr<'py, u64>, Arr<'py, f32>)> {
        let w = self.with(py, |s| s.winners(first, count))?;
        Ok((
            w.dist.into_pyarray(py),
            w.row.into_pyarray(py),
            w.coords.into_pyarray(py),
        ))
    }

    /// The shard's `limit` nearest rows to the global winner of each of
    /// `samples` (uint64): (counts uint32 per sample, global rows uint64,
    /// distances float32, whether it holds more rows than it sent, bool).
    fn neighbours<'py>(
        &self,
        py: Python<'py>,
        samples: PyReadonlyArray1<'py, u64>,
        rows: PyReadonlyArray1<'py, u64>,
        coords: PyReadonlyArray1<'py, f32>,
        limit: usize,
    ) -> PyResult<Nearby4<'py>> {
        let (samples, rows, coords) = (slice(&samples)?, slice(&rows)?, slice(&coords)?);
        let n = self.with(py, |s| s.neighbours(samples, rows, coords, limit))?;
        Ok((
            n.count.into_pyarray(py),
            n.row.into_pyarray(py),
            n.dist.into_pyarray(py),
            n.more.into_pyarray(py),
        ))
    }

    /// Adds the samples from `first`: winners (uint64) and their penalties
    /// (offsets uint64, rows uint64, fixed-point amounts int64).
    fn apply(
        &self,
        py: Python<'_>,
        first: u64,
        winners: PyReadonlyArray1<'_, u64>,
        offsets: PyReadonlyArray1<'_, u64>,
        rows: PyReadonlyArray1<'_, u64>,
        fixed: PyReadonlyArray1<'_, i64>,
    ) -> PyResult<()> {
        let merged = Merged {
            offsets: slice(&offsets)?.to_vec(),
            row: slice(&rows)?.to_vec(),
            fixed: slice(&fixed)?.to_vec(),
        };
        let winners = slice(&winners)?;
        self.with(py, |s| s.apply(first, winners, &merged))
    }

    /// The shard's fixed-point halves (int64 per row each).
    fn halves<'py>(&self, py: Python<'py>) -> (Arr<'py, i64>, Arr<'py, i64>) {
        let shard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let h = shard.halves();
        (
            h.first.clone().into_pyarray(py),
            h.second.clone().into_pyarray(py),
        )
    }
}

/// The bits each round of the row-sharded median selection narrows.
#[pyfunction]
pub(super) fn median_rounds() -> Vec<u32> {
    rows::KEY_ROUNDS.to_vec()
}

/// The two sorted ranks whose values give the median of `n` values.
#[pyfunction]
pub(super) fn median_ranks(n: u64) -> [u64; 2] {
    rows::median_ranks(n)
}

/// One narrowing round of the median selection on the shards' summed
/// counts (uint64): the new (prefixes uint32, ranks uint64).
#[pyfunction]
pub(super) fn median_narrow<'py>(
    py: Python<'py>,
    counts: PyReadonlyArray1<'py, u64>,
    prefixes: PyReadonlyArray1<'py, u32>,
    ranks: PyReadonlyArray1<'py, u64>,
    bits: u32,
) -> PyResult<(Arr<'py, u32>, Arr<'py, u64>)> {
    let mut p = slice(&prefixes)?.to_vec();
    let mut r = slice(&ranks)?.to_vec();
    rows::narrow(slice(&counts)?, &mut p, &mut r, bits).map_err(to_py)?;
    Ok((p.into_pyarray(py), r.into_pyarray(py)))
}

/// The medians (float64, one per dimension) from the keys the selection
/// found (two per dimension) for `n` rows in all.
#[pyfunction]
pub(super) fn median_values<'py>(
    py: Python<'py>,
    keys: PyReadonlyArray1<'py, u32>,
    n: u64,
) -> PyResult<Arr<'py, f64>> {
    let stats = rows::stats_from(Vec::new(), Vec::new(), slice(&keys)?, n);
    Ok(stats.md.into_pyarray(py))
}

/// The global winner of each sample from every shard's `winners`:
/// (global rows uint64, coordinates float32).
#[pyfunction]
pub(super) fn merge_winners<'py>(
    py: Python<'py>,
    parts: Vec<(
        PyReadonlyArray1<'py, f32>,
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, f32>,
    )>,
    sample_dim: usize,
) -> PyResult<(Arr<'py, u64>, Arr<'py, f32>)> {
    let parts = parts
        .iter()
        .map(|(d, r, c)| {
            Ok(Winners {
                dist: slice(d)?.to_vec(),
                row: slice(r)?.to_vec(),
                coords: slice(c)?.to_vec(),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let (rows, coords) = py
        .detach(|| rows::merge_winners(&parts, sample_dim))
        .map_err(to_py)?;
    Ok((rows.into_pyarray(py), coords.into_pyarray(py)))
}

/// The penalties of each sample from every shard's `neighbours`, `k` of
/// them with exponent `redund_exp`: (offsets uint64, rows uint64, amounts
/// int64), and the positions (uint32) of the samples to ask every shard
/// again for all k (they get no penalties here). Runs on `threads` threads.
#[pyfunction]
#[pyo3(signature = (parts, *, k, redund_exp, threads=1))]
pub(super) fn merge_penalties<'py>(
    py: Python<'py>,
    parts: Vec<NearbyIn<'py>>,
    k: usize,
    redund_exp: f64,
    threads: usize,
) -> PyResult<(Merged3<'py>, Arr<'py, u32>)> {
    let parts = parts
        .iter()
        .map(|(c, r, d, m)| {
            Ok(Nearby {
                count: slice(c)?.to_vec(),
                row: slice(r)?.to_vec(),
                dist: slice(d)?.to_vec(),
                more: slice(m)?.to_vec(),
            })
        })
        .collect::<PyResult<Vec<_>>>()?;
    let params = Params {
        redund_exp,
        ..Params::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ZCoreError::new_err(format!("cannot start threads: {e}")))?;
    let (merged, retry) = py
        .detach(|| pool.install(|| rows::merge_penalties(&parts, k.max(1), &params)))
        .map_err(to_py)?;
    Ok((
        (
            merged.offsets.into_pyarray(py),
            merged.row.into_pyarray(py),
            merged.fixed.into_pyarray(py),
        ),
        retry.into_pyarray(py),
    ))
}

/// `merge_penalties`'s (offsets, rows, amounts) with the samples at
/// positions `at` (uint32) taken from `redo`, their merge in that order.
#[pyfunction]
pub(super) fn splice_penalties<'py>(
    py: Python<'py>,
    merged: (
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, i64>,
    ),
    at: PyReadonlyArray1<'py, u32>,
    redo: (
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, i64>,
    ),
) -> PyResult<Merged3<'py>> {
    let owned = |(o, r, f): &(
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, u64>,
        PyReadonlyArray1<'py, i64>,
    )|
     -> PyResult<Merged> {
        Ok(Merged {
            offsets: slice(o)?.to_vec(),
            row: slice(r)?.to_vec(),
            fixed: slice(f)?.to_vec(),
        })
    };
    let out = rows::splice(&owned(&merged)?, slice(&at)?, &owned(&redo)?).map_err(to_py)?;
    Ok((
        out.offsets.into_pyarray(py),
        out.row.into_pyarray(py),
        out.fixed.into_pyarray(py),
    ))
}

/// How many of its nearest rows a shard of `rows` rows (of `total`) sends
/// at first for a sample: its expected share of the `k` nearest plus
/// `margin` standard deviations and 8, at most `k`.
#[pyfunction]
pub(super) fn first_share(k: usize, rows: usize, total: u64, margin: f64) -> usize {
    rows::first_share(k, rows, total, margin)
}

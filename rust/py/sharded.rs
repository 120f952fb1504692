//! Bindings for a run split over processes (the Ray backend): each process
//! scores a range of the samples into fixed-point halves, the halves are
//! added (integers: exactly, in any order), and one process finishes them
//! into the scores. The result is bit-identical to `score` in one process.

use super::watch::with_pool;
use super::{resolve_isa, ZCoreError, CONVERGENCE_ROWS};
use crate::score::{self as zcore, Halves, Params, Part, Search};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

type I64Array<'py> = Bound<'py, PyArray1<i64>>;

/// Scores samples `start..end` of a run of `n_sample` samples: returns that
/// range's contribution to the fixed-point raw scores of the first and the
/// second half of the whole run (int64, one per row). Summed over ranges
/// that tile `0..n_sample`, they equal the full run's halves exactly. With
/// `parts` > 1, only part `part` of the range (`score::Part`: by band
/// dimension under band search, else a sub-range); the parts sum to the
/// range's halves.
#[pyfunction]
#[pyo3(signature = (inputs, *, n_sample, sample_dim, redund_nn, redund_exp, seed, threads, start, end, progress=None, isa=None, part=0, parts=1))]
#[allow(clippy::too_many_arguments)]
pub(super) fn score_range<'py>(
    py: Python<'py>,
    inputs: &Bound<'py, PyAny>,
    n_sample: u64,
    sample_dim: usize,
    redund_nn: usize,
    redund_exp: f64,
    seed: u64,
    threads: usize,
    start: u64,
    end: u64,
    progress: Option<Py<PyAny>>,
    isa: Option<&str>,
    part: usize,
    parts: usize,
) -> PyResult<(I64Array<'py>, I64Array<'py>)> {
    let params = part_params(
        py, isa, n_sample, sample_dim, redund_nn, redund_exp, seed, threads,
    )?;
    let halves = with_pool(py, inputs, threads, progress.as_ref(), |pool, report| {
        let part = Part { index: part, parts };
        zcore::raw_halves_part(pool, &params, start..end, part, report)
    })?;
    Ok((
        halves.first.into_pyarray(py),
        halves.second.into_pyarray(py),
    ))
}

/// The parameters of a process's part of a run split over processes: the
/// noise is added once, when the summed halves are finished.
#[allow(clippy::too_many_arguments)]
pub(super) fn part_params(
    py: Python<'_>,
    isa: Option<&str>,
    n_sample: u64,
    sample_dim: usize,
    redund_nn: usize,
    redund_exp: f64,
    seed: u64,
    threads: usize,
) -> PyResult<Params> {
    Ok(Params {
        search: Search::Auto,
        isa: resolve_isa(py, isa)?,
        n_sample,
        sample_dim,
        redund_nn,
        redund_exp,
        rand_init: false,
        seed,
        threads,
    })
}

/// The scores of a run from its summed halves (as `score` returns them):
/// (scores float32, first half float64, second half float64), the halves
/// at no more than 2^21 evenly spaced rows, for the convergence report.
#[pyfunction]
#[pyo3(signature = (first, second, *, rand_init, seed, threads=1))]
pub(super) fn finish_halves<'py>(
    py: Python<'py>,
    first: PyReadonlyArray1<'py, i64>,
    second: PyReadonlyArray1<'py, i64>,
    rand_init: bool,
    seed: u64,
    threads: usize,
) -> PyResult<super::Scored<'py>> {
    if first.len()? != second.len()? {
        return Err(PyValueError::new_err(format!(
            "the halves have {} and {} rows; they must be of the same run",
            first.len()?,
            second.len()?
        )));
    }
    let halves = Halves {
        first: first.as_slice()?.to_vec(),
        second: second.as_slice()?.to_vec(),
    };
    let params = Params {
        rand_init,
        seed,
        ..Params::default()
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ZCoreError::new_err(format!("cannot start threads: {e}")))?;
    let (scores, (a, b)) = py.detach(|| {
        pool.install(|| {
            (
                zcore::finish_halves(&halves, &params),
                halves.sampled(CONVERGENCE_ROWS),
            )
        })
    });
    Ok((
        scores.into_pyarray(py),
        a.into_pyarray(py),
        b.into_pyarray(py),
    ))
}

//! Python bindings: conversion only. Every O(N) call runs with the GIL
//! released; errors become the Python exception that means the same thing.

mod columns;
mod parquet;
mod rows;
mod sharded;
mod watch;

use crate::arch::{Isa, ISA_ENV};
use crate::error::CoreError;
use crate::npy::Dtype;
use crate::pool::DimStats;
use crate::score::{self as zcore, Params, Search};
use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::path::PathBuf;
use watch::{with_pool, with_sources};

type F64Array<'py> = Bound<'py, PyArray1<f64>>;
type Draws<'py> = (Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<f32>>);
pub(super) type Scored<'py> = (Bound<'py, PyArray1<f32>>, F64Array<'py>, F64Array<'py>);
type Trace<'py> = (u32, Bound<'py, PyArray1<u32>>, F64Array<'py>);

pyo3::create_exception!(
    _native,
    ZCoreError,
    PyException,
    "A zcore-fast failure that is not a bad argument or a missing file."
);

pyo3::create_exception!(
    _native,
    CancelledError,
    ZCoreError,
    "A call stopped because the event given to `zcore_fast.cancel_on` was set."
);

fn to_py(e: CoreError) -> PyErr {
    match e {
        CoreError::NotFound(m) => PyFileNotFoundError::new_err(m),
        CoreError::InvalidType(m) => PyTypeError::new_err(m),
        CoreError::InvalidValue(m) => PyValueError::new_err(m),
        CoreError::Io(m) => PyOSError::new_err(m),
        CoreError::Cancelled => ZCoreError::new_err("scoring was cancelled"),
    }
}

/// Most rows whose half-run scores are returned for the convergence report:
/// a Spearman rho over 2^21 evenly spaced rows is as informative as over
/// all of them, and returning all would add 16 bytes per row.
pub(super) const CONVERGENCE_ROWS: usize = 1 << 21;

/// Scores the concatenation of `inputs` (paths or arrays). See `zcore_fast.score`.
///
/// Returns (scores float32, raw scores of the first half of the samples,
/// raw scores of the second half), the halves in float64 and without noise,
/// for the convergence report; for pools over 2^21 rows the halves cover
/// evenly spaced rows only.
#[pyfunction]
#[pyo3(signature = (inputs, *, n_sample, sample_dim, redund_nn, redund_exp, rand_init, seed, threads, progress=None, search="auto", isa=None))]
#[allow(clippy::too_many_arguments)]
fn score<'py>(
    py: Python<'py>,
    inputs: &Bound<'py, PyAny>,
    n_sample: u64,
    sample_dim: usize,
    redund_nn: usize,
    redund_exp: f64,
    rand_init: bool,
    seed: u64,
    threads: usize,
    progress: Option<Py<PyAny>>,
    search: &str,
    isa: Option<&str>,
) -> PyResult<Scored<'py>> {
    let isa = resolve_isa(py, isa)?;
    let search = match search {
        "auto" => Search::Auto,
        "brute" => Search::Brute,
        "band" => Search::Band,
        "pair" => Search::Pair,
        other => {
            return Err(PyValueError::new_err(format!(
                "search must be 'auto', 'brute', 'band' or 'pair', got {other:?}"
            )))
        }
    };
    let params = Params {
        search,
        isa,
        n_sample,
        sample_dim,
        redund_nn,
        redund_exp,
        rand_init,
        seed,
        threads,
    };
    let (scores, first, second) =
        with_pool(py, inputs, threads, progress.as_ref(), |pool, report| {
            let halves = zcore::raw_halves(pool, &params, report)?;
            let scores = zcore::finish_halves(&halves, &params);
            let (first, second) = halves.sampled(CONVERGENCE_ROWS);
            Ok((scores, first, second))
        })?;
    Ok((
        scores.into_pyarray(py),
        first.into_pyarray(py),
        second.into_pyarray(py),
    ))
}

/// Writes the dimension-major copy of the concatenated `inputs` to
/// `out_path` (a Fortran-order .npy; float16 when every input is float16,
/// else float32) and returns (rows, cols, dtype name). The caller names,
/// locks and renames the file; a cancelled build leaves it partial.
#[pyfunction]
#[pyo3(signature = (inputs, out_path, *, threads, progress=None))]
fn build_cache(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    out_path: PathBuf,
    threads: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<(usize, usize, &'static str)> {
    let written = with_sources(
        py,
        inputs,
        threads,
        progress.as_ref(),
        |sources, report, _| crate::cache::write_columns(sources, &out_path, report),
    )?;
    let dtype = if written.dtype == Dtype::F16 {
        "float16"
    } else {
        "float32"
    };
    Ok((written.rows, written.cols, dtype))
}

/// Per-dimension (min, median, max) of the concatenated inputs, in float64.
#[pyfunction]
fn dim_stats<'py>(
    py: Python<'py>,
    inputs: &Bound<'py, PyAny>,
) -> PyResult<(F64Array<'py>, F64Array<'py>, F64Array<'py>)> {
    let DimStats { lo, md, hi } = with_pool(py, inputs, 1, None, |pool, _| Ok(pool.stats.clone()))?;
    Ok((
        lo.into_pyarray(py),
        md.into_pyarray(py),
        hi.into_pyarray(py),
    ))
}

/// The subspaces and sample points of samples `start .. start + count`:
/// (dims uint32 (count, sample_dim), q float32 (count, sample_dim)).
#[pyfunction]
#[pyo3(signature = (inputs, *, seed, start, count, sample_dim))]
fn sample_draws<'py>(
    py: Python<'py>,
    inputs: &Bound<'py, PyAny>,
    seed: u64,
    start: u64,
    count: usize,
    sample_dim: usize,
) -> PyResult<Draws<'py>> {
    let (dims, q) = with_pool(py, inputs, 1, None, |pool, _| {
        Params {
            sample_dim,
            ..Params::default()
        }
        .validate(pool.n, pool.d)?;
        let draws: Vec<_> = (0..count as u64)
            .map(|i| zcore::draw(&pool.stats, seed, start + i, sample_dim))
            .collect();
        Ok((
            draws.iter().map(|d| d.dims.clone()).collect::<Vec<_>>(),
            draws.iter().map(|d| d.q.clone()).collect::<Vec<_>>(),
        ))
    })?;
    let shape_err = |e: numpy::FromVecError| PyValueError::new_err(e.to_string());
    if count == 0 {
        return Err(PyValueError::new_err("count must be at least 1"));
    }
    Ok((
        PyArray2::from_vec2(py, &dims).map_err(shape_err)?,
        PyArray2::from_vec2(py, &q).map_err(shape_err)?,
    ))
}

/// What the engine does for one subspace `dims` and sample point `q`:
/// (coverage winner, penalised rows, penalties).
#[pyfunction]
#[pyo3(signature = (inputs, dims, q, *, redund_nn, redund_exp))]
fn trace<'py>(
    py: Python<'py>,
    inputs: &Bound<'py, PyAny>,
    dims: Vec<u32>,
    q: Vec<f32>,
    redund_nn: usize,
    redund_exp: f64,
) -> PyResult<Trace<'py>> {
    if dims.len() != q.len() || dims.is_empty() {
        return Err(PyValueError::new_err(
            "dims and q must be non-empty and of equal length",
        ));
    }
    let effect = with_pool(py, inputs, 1, None, |pool, _| {
        if let Some(&bad) = dims.iter().find(|&&d| d as usize >= pool.d) {
            return Err(CoreError::InvalidValue(format!(
                "dimension {bad} out of range 0..{}",
                pool.d
            )));
        }
        Ok(zcore::trace(pool, &dims, &q, redund_nn.max(1), redund_exp))
    })?;
    let (rows, weights): (Vec<u32>, Vec<f64>) = effect.penalties.into_iter().unzip();
    Ok((
        effect.winner,
        rows.into_pyarray(py),
        weights.into_pyarray(py),
    ))
}

/// The level `name` picks (None: `ZCORE_FAST_ISA`, else the best).
///
/// The variable is read from Python's `os.environ` with the GIL held, not
/// with getenv: a service may change its environment from another thread
/// while a call starts, and getenv racing putenv is undefined behaviour.
fn resolve_isa(py: Python<'_>, name: Option<&str>) -> PyResult<Isa> {
    let setting: Option<String> = match name {
        Some(n) => Some(n.to_owned()),
        None => py
            .import("os")?
            .getattr("environ")?
            .call_method1("get", (ISA_ENV,))?
            .extract()?,
    };
    Isa::from_setting(setting.as_deref()).map_err(to_py)
}

/// The instruction-set level the engine runs: `name`, or when None the one
/// `ZCORE_FAST_ISA` names, or the best this CPU runs. A level the CPU lacks
/// or an unknown name raises ValueError.
#[pyfunction]
#[pyo3(signature = (name=None))]
fn isa_level(py: Python<'_>, name: Option<&str>) -> PyResult<&'static str> {
    resolve_isa(py, name).map(Isa::name)
}

/// Every instruction-set level this CPU runs, lowest first.
#[pyfunction]
fn isa_levels() -> Vec<&'static str> {
    Isa::supported().into_iter().map(Isa::name).collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(sharded::score_range, m)?)?;
    m.add_function(wrap_pyfunction!(sharded::finish_halves, m)?)?;
    m.add_class::<rows::RowShard>()?;
    m.add_function(wrap_pyfunction!(rows::median_rounds, m)?)?;
    m.add_function(wrap_pyfunction!(rows::median_ranks, m)?)?;
    m.add_function(wrap_pyfunction!(rows::median_narrow, m)?)?;
    m.add_function(wrap_pyfunction!(rows::median_values, m)?)?;
    m.add_function(wrap_pyfunction!(rows::merge_winners, m)?)?;
    m.add_function(wrap_pyfunction!(rows::merge_penalties, m)?)?;
    m.add_function(wrap_pyfunction!(rows::splice_penalties, m)?)?;
    m.add_function(wrap_pyfunction!(rows::first_share, m)?)?;
    m.add_function(wrap_pyfunction!(dim_stats, m)?)?;
    m.add_function(wrap_pyfunction!(build_cache, m)?)?;
    m.add_function(wrap_pyfunction!(columns::rows_to_columns, m)?)?;
    m.add_function(wrap_pyfunction!(parquet::decode_parquet_page, m)?)?;
    m.add_function(wrap_pyfunction!(sample_draws, m)?)?;
    m.add_function(wrap_pyfunction!(trace, m)?)?;
    m.add_function(wrap_pyfunction!(isa_level, m)?)?;
    m.add_function(wrap_pyfunction!(isa_levels, m)?)?;
    m.add("ZCoreError", m.py().get_type::<ZCoreError>())?;
    m.add("CancelledError", m.py().get_type::<CancelledError>())?;
    m.add("CANCEL_EVENT", watch::cancel_var(m.py())?)?;
    Ok(())
}

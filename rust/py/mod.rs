//! Python bindings: conversion only. Every O(N) call runs with the GIL
//! released; errors become the Python exception that means the same thing.

use crate::arch::Isa;
use crate::error::CoreError;
use crate::npy::{Dtype, NpyFile};
use crate::pool::{DimStats, Pool, Source};
use crate::score::{self as zcore, Params, Search};
use half::f16;
use numpy::{IntoPyArray, PyArray1, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

type F64Array<'py> = Bound<'py, PyArray1<f64>>;
type Draws<'py> = (Bound<'py, PyArray2<u32>>, Bound<'py, PyArray2<f32>>);
type Scored<'py> = (Bound<'py, PyArray1<f32>>, F64Array<'py>, F64Array<'py>);
type Trace<'py> = (u32, Bound<'py, PyArray1<u32>>, F64Array<'py>);

pyo3::create_exception!(
    _native,
    ZCoreError,
    PyException,
    "A zcore-fast failure that is not a bad argument or a missing file."
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

/// An input kept alive (borrowed array or mapped file) while scoring.
enum Held<'py> {
    F16(PyReadonlyArray2<'py, f16>),
    F32(PyReadonlyArray2<'py, f32>),
    F64(PyReadonlyArray2<'py, f64>),
    File(NpyFile, String),
}

fn hold<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Held<'py>> {
    if obj.is_instance_of::<PyString>() {
        let path: PathBuf = obj.extract()?;
        let file = NpyFile::open(&path).map_err(to_py)?;
        return Ok(Held::File(file, path.display().to_string()));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<f32>>() {
        return Ok(Held::F32(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<f64>>() {
        return Ok(Held::F64(a));
    }
    if let Ok(a) = obj.extract::<PyReadonlyArray2<f16>>() {
        return Ok(Held::F16(a));
    }
    Err(PyTypeError::new_err(
        "expected a path or a 2-D float16/float32/float64 NumPy array",
    ))
}

fn array_source<'a, T>(
    a: &'a PyReadonlyArray2<'_, T>,
    dtype: Dtype,
    name: &'a str,
) -> PyResult<Source<'a>>
where
    T: numpy::Element,
{
    let shape = a.shape();
    let fortran_order = !a.is_c_contiguous() && a.is_fortran_contiguous();
    let slice = a.as_slice().map_err(|_| {
        PyValueError::new_err(format!(
            "{name} is not contiguous; pass np.ascontiguousarray(arr)"
        ))
    })?;
    // SAFETY: reinterpreting initialised floats as their bytes.
    let bytes = unsafe {
        std::slice::from_raw_parts(slice.as_ptr().cast::<u8>(), std::mem::size_of_val(slice))
    };
    Ok(Source {
        bytes,
        dtype,
        rows: shape[0],
        cols: shape[1],
        fortran_order,
        name,
    })
}

/// What the work thread may call to report progress: `(done, total)`; an
/// error back means the caller wants it to stop.
type Report<'a> = &'a mut dyn FnMut(u64, u64) -> Result<(), CoreError>;

/// How often the calling thread wakes to relay progress and check Ctrl-C.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Borrows every input, then runs `f` over them on a work thread (inside a
/// rayon pool of `threads`) while the calling thread, GIL released, wakes
/// every 50 ms to check for Ctrl-C and call `progress(done, total)`.
///
/// Why a separate work thread: Python runs signal handlers only on the main
/// thread, so `check_signals` must be called from the thread that called
/// us, and `ThreadPool::install` would move the work, and any check in it,
/// onto a pool thread. A KeyboardInterrupt or an exception from `progress`
/// makes the next report return `Cancelled`; that Python error is returned.
fn with_pool<T: Send>(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    threads: usize,
    progress: Option<&Py<PyAny>>,
    f: impl FnOnce(&Pool, Report<'_>) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    with_sources(
        py,
        inputs,
        threads,
        progress,
        |sources, report, keep_going| {
            Pool::build_until(sources, keep_going).and_then(|p| f(&p, report))
        },
    )
}

/// Whether the caller still wants the work (false after Ctrl-C).
type KeepGoing<'a> = &'a (dyn Fn() -> bool + Sync);

/// `with_pool`'s machinery, handing `f` the borrowed sources themselves.
fn with_sources<T: Send>(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    threads: usize,
    progress: Option<&Py<PyAny>>,
    f: impl FnOnce(&[Source<'_>], Report<'_>, KeepGoing<'_>) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let held: Vec<Held<'_>> = inputs
        .try_iter()?
        .map(|o| hold(&o?))
        .collect::<PyResult<_>>()?;
    let names: Vec<String> = (0..held.len()).map(|i| format!("array {i}")).collect();
    let sources = held
        .iter()
        .zip(&names)
        .map(|(h, name)| match h {
            Held::F16(a) => array_source(a, Dtype::F16, name),
            Held::F32(a) => array_source(a, Dtype::F32, name),
            Held::F64(a) => array_source(a, Dtype::F64, name),
            Held::File(file, path) => Ok(Source::of_npy(file, path)),
        })
        .collect::<PyResult<Vec<_>>>()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| ZCoreError::new_err(format!("cannot start threads: {e}")))?;
    let (done, total) = (AtomicU64::new(0), AtomicU64::new(0));
    let cancel = AtomicBool::new(false);
    let mut raised: Option<PyErr> = None;
    let mut relay = |final_call: bool| {
        if raised.is_some() {
            return;
        }
        let outcome = Python::attach(|py| {
            py.check_signals()?;
            if let Some(cb) = progress {
                let (d, t) = (done.load(Ordering::Relaxed), total.load(Ordering::Relaxed));
                if t > 0 || final_call {
                    cb.call1(py, (d, t))?;
                }
            }
            Ok::<(), PyErr>(())
        });
        if let Err(e) = outcome {
            cancel.store(true, Ordering::Relaxed);
            raised = Some(e);
        }
    };
    let result = py.detach(|| {
        std::thread::scope(|scope| {
            let (tx, rx) = mpsc::channel::<()>();
            let (done, total, cancel) = (&done, &total, &cancel);
            let (pool, sources) = (&pool, &sources);
            let work = scope.spawn(move || {
                let mut report = |d: u64, t: u64| {
                    done.store(d, Ordering::Relaxed);
                    total.store(t, Ordering::Relaxed);
                    if cancel.load(Ordering::Relaxed) {
                        Err(CoreError::Cancelled)
                    } else {
                        Ok(())
                    }
                };
                let keep_going = || !cancel.load(Ordering::Relaxed);
                let out = pool.install(|| f(sources, &mut report, &keep_going));
                let _ = tx.send(());
                out
            });
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(WATCH_EVERY) {
                relay(false);
            }
            let out = work.join().unwrap_or_else(|_| {
                Err(CoreError::InvalidValue(
                    "internal error: a work thread panicked".into(),
                ))
            });
            if out.is_ok() {
                relay(true);
            }
            out
        })
    });
    match (result, raised) {
        (_, Some(err)) => Err(err),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(to_py(e)),
    }
}

/// Most rows whose half-run scores are returned for the convergence report:
/// a Spearman rho over 2^21 evenly spaced rows is as informative as over
/// all of them, and returning all would add 16 bytes per row.
const CONVERGENCE_ROWS: usize = 1 << 21;

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
    let isa = resolve_isa(isa)?;
    let search = match search {
        "auto" => Search::Auto,
        "brute" => Search::Brute,
        "band" => Search::Band,
        other => {
            return Err(PyValueError::new_err(format!(
                "search must be 'auto', 'brute' or 'band', got {other:?}"
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
fn resolve_isa(name: Option<&str>) -> PyResult<Isa> {
    match name {
        Some(n) => Isa::from_setting(Some(n)),
        None => Isa::from_env(),
    }
    .map_err(to_py)
}

/// The instruction-set level the engine runs: `name`, or when None the one
/// `ZCORE_FAST_ISA` names, or the best this CPU runs. A level the CPU lacks
/// or an unknown name raises ValueError.
#[pyfunction]
#[pyo3(signature = (name=None))]
fn isa_level(name: Option<&str>) -> PyResult<&'static str> {
    resolve_isa(name).map(Isa::name)
}

/// Every instruction-set level this CPU runs, lowest first.
#[pyfunction]
fn isa_levels() -> Vec<&'static str> {
    Isa::supported().into_iter().map(Isa::name).collect()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(score, m)?)?;
    m.add_function(wrap_pyfunction!(dim_stats, m)?)?;
    m.add_function(wrap_pyfunction!(build_cache, m)?)?;
    m.add_function(wrap_pyfunction!(sample_draws, m)?)?;
    m.add_function(wrap_pyfunction!(trace, m)?)?;
    m.add_function(wrap_pyfunction!(isa_level, m)?)?;
    m.add_function(wrap_pyfunction!(isa_levels, m)?)?;
    m.add("ZCoreError", m.py().get_type::<ZCoreError>())?;
    Ok(())
}

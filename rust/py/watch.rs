//! The calling side of every long native call: inputs borrowed, the work
//! run on its own thread with the GIL released, and the calling thread
//! relaying progress and checking for Ctrl-C and cancellation meanwhile.
//!
//! Nothing here is shared between calls: each has its own rayon pool, work
//! thread, progress counters and cancel flag, so calls made from several
//! Python threads at once run side by side and stop independently.

use super::{to_py, CancelledError, ZCoreError};
use crate::error::CoreError;
use crate::npy::{Dtype, NpyFile};
use crate::pool::{Pool, Source};
use half::f16;
use numpy::{PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyString};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// The `contextvars.ContextVar` that `zcore_fast.cancel_on(event)` sets:
/// an object with `is_set()` (a `threading.Event`) whose setting cancels
/// the calls made inside that scope. Created once per interpreter; its
/// value is per thread (per context), so a scope in one thread never
/// touches calls in another.
static CANCEL_VAR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `CANCEL_VAR`, created on first use.
pub(super) fn cancel_var(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    CANCEL_VAR
        .get_or_try_init(py, || {
            let kwargs = PyDict::new(py);
            kwargs.set_item("default", py.None())?;
            let var = py
                .import("contextvars")?
                .getattr("ContextVar")?
                .call(("zcore_fast_cancel",), Some(&kwargs))?;
            Ok::<_, PyErr>(var.unbind())
        })
        .map(|var| var.bind(py))
}

/// The event of the `cancel_on` scope the calling thread is in, if any.
/// Read once, when a call starts: the scope is around the whole call.
fn cancel_event(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    let event = cancel_var(py)?.call_method0("get")?;
    Ok((!event.is_none()).then(|| event.unbind()))
}

/// Raises `CancelledError` once `event` is set.
fn check_event(py: Python<'_>, event: Option<&Py<PyAny>>) -> PyResult<()> {
    if let Some(event) = event {
        if event.call_method0(py, "is_set")?.is_truthy(py)? {
            return Err(CancelledError::new_err(
                "cancelled: the event given to zcore_fast.cancel_on was set",
            ));
        }
    }
    Ok(())
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
pub(super) type Report<'a> = &'a mut dyn FnMut(u64, u64) -> Result<(), CoreError>;

/// How often the calling thread wakes to relay progress and check for
/// Ctrl-C and cancellation.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Borrows every input, then runs `f` over them on a work thread (inside a
/// rayon pool of `threads`) while the calling thread, GIL released, wakes
/// every 50 ms to check for Ctrl-C and for the event of a `cancel_on`
/// scope, and to call `progress(done, total)`.
///
/// Why a separate work thread: Python runs signal handlers only on the main
/// thread, so `check_signals` must be called from the thread that called
/// us, and `ThreadPool::install` would move the work, and any check in it,
/// onto a pool thread. A KeyboardInterrupt, an exception from `progress` or
/// a set cancel event (raised as `CancelledError`) makes the next report return
/// `CoreError::Cancelled`; that Python error is returned. The cancel event
/// is checked at every wake, before the first report too (while the pool
/// is prepared), and not once the work has finished.
pub(super) fn with_pool<T: Send>(
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
pub(super) type KeepGoing<'a> = &'a (dyn Fn() -> bool + Sync);

/// `with_pool`'s machinery, handing `f` the borrowed sources themselves.
pub(super) fn with_sources<T: Send>(
    py: Python<'_>,
    inputs: &Bound<'_, PyAny>,
    threads: usize,
    progress: Option<&Py<PyAny>>,
    f: impl FnOnce(&[Source<'_>], Report<'_>, KeepGoing<'_>) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let event = cancel_event(py)?;
    check_event(py, event.as_ref())?;
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
            if !final_call {
                check_event(py, event.as_ref())?;
            }
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

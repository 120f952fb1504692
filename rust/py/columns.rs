//! Bindings for the column-cache writer on the Python side
//! (`zcore_fast.cache.writer`): row blocks into column runs.

use crate::block_transpose;
use numpy::{Element, PyReadonlyArray2, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Copies columns `first..first + k` of `src` (rows x cols, C order) into
/// `dst` (k x rows, C order): `dst[c, r] = src[r, first + c]`. Both arrays
/// are uint16 or both uint32 (float16 and float32 viewed as their bits);
/// the GIL is released during the copy.
#[pyfunction]
pub(super) fn rows_to_columns(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    first: usize,
    dst: &Bound<'_, PyAny>,
) -> PyResult<()> {
    if let Ok(s) = src.extract::<PyReadonlyArray2<u16>>() {
        return copy(py, s, first, dst.extract::<PyReadwriteArray2<u16>>()?);
    }
    if let Ok(s) = src.extract::<PyReadonlyArray2<u32>>() {
        return copy(py, s, first, dst.extract::<PyReadwriteArray2<u32>>()?);
    }
    Err(PyTypeError::new_err(
        "rows_to_columns takes 2-D uint16 or uint32 arrays (float16 or float32 viewed as bits)",
    ))
}

fn copy<T: Element + Copy + Send + Sync>(
    py: Python<'_>,
    src: PyReadonlyArray2<'_, T>,
    first: usize,
    mut dst: PyReadwriteArray2<'_, T>,
) -> PyResult<()> {
    let (rows, cols) = (src.shape()[0], src.shape()[1]);
    let (k, dst_rows) = (dst.shape()[0], dst.shape()[1]);
    if dst_rows != rows || first + k > cols {
        return Err(PyValueError::new_err(format!(
            "dst of shape ({k}, {dst_rows}) does not take columns {first}..{} of a \
             ({rows}, {cols}) block",
            first + k
        )));
    }
    // `as_slice` also takes Fortran order, whose memory order is not the
    // row-major one the copy reads and writes.
    let contiguous = |c: bool, what: &str| {
        c.then_some(())
            .ok_or_else(|| PyValueError::new_err(format!("{what} must be C-contiguous")))
    };
    contiguous(src.is_c_contiguous(), "src")?;
    contiguous(dst.is_c_contiguous(), "dst")?;
    let s = src
        .as_slice()
        .map_err(|_| PyValueError::new_err("src must be C-contiguous"))?;
    let d = dst
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("dst must be C-contiguous"))?;
    py.detach(|| block_transpose::rows_to_columns(s, rows, cols, first, d));
    Ok(())
}

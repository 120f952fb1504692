//! Bindings for the Parquet page decoder (`zcore_fast.integrations.
//! parquet_pages`, which walks and decompresses the pages).

use crate::parquet_page::{decode_page, Shape, ValueBits, Values};
use numpy::{Element, PyReadonlyArray1, PyReadwriteArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// Decodes one data page of a list<float16> or list<float> column into
/// `out` (uint16 or uint32: the values' bits, one per level). `rep`, `def`
/// and `values` are uint8 arrays: the page's repetition and definition
/// levels (without a length prefix) and its values, PLAIN or, with
/// `dictionary_encoded`, a bit width and indices into `dictionary` (the
/// same dtype as `out`). `first` is where in its row the page's first
/// value falls; returns where the value after the page falls. A page this
/// decoder does not take (nulls, rows not `d` long, damaged runs) raises
/// ValueError; the GIL is released while decoding.
#[pyfunction]
#[pyo3(signature = (rep, def, values, dictionary_encoded, dictionary, out, *, d, max_def, max_rep, first))]
#[allow(clippy::too_many_arguments)]
pub(super) fn decode_parquet_page(
    py: Python<'_>,
    rep: PyReadonlyArray1<'_, u8>,
    def: PyReadonlyArray1<'_, u8>,
    values: PyReadonlyArray1<'_, u8>,
    dictionary_encoded: bool,
    dictionary: &Bound<'_, PyAny>,
    out: &Bound<'_, PyAny>,
    d: usize,
    max_def: u32,
    max_rep: u32,
    first: usize,
) -> PyResult<usize> {
    let shape = Shape {
        d,
        max_def,
        max_rep,
    };
    let page = Page {
        rep: rep.as_slice()?,
        def: def.as_slice()?,
        values: values.as_slice()?,
        dictionary_encoded,
    };
    if let Ok(o) = out.extract::<PyReadwriteArray1<u16>>() {
        return page.decode(py, dictionary.extract()?, o, shape, first);
    }
    if let Ok(o) = out.extract::<PyReadwriteArray1<u32>>() {
        return page.decode(py, dictionary.extract()?, o, shape, first);
    }
    Err(PyTypeError::new_err(
        "out must be a 1-D uint16 or uint32 array (float16 or float32 bits)",
    ))
}

struct Page<'a> {
    rep: &'a [u8],
    def: &'a [u8],
    values: &'a [u8],
    dictionary_encoded: bool,
}

impl Page<'_> {
    fn decode<T: ValueBits + Element + Send + Sync>(
        &self,
        py: Python<'_>,
        dictionary: PyReadonlyArray1<'_, T>,
        mut out: PyReadwriteArray1<'_, T>,
        shape: Shape,
        first: usize,
    ) -> PyResult<usize> {
        let dictionary = dictionary.as_slice()?;
        let out = out.as_slice_mut()?;
        let values = if self.dictionary_encoded {
            Values::Dictionary(self.values)
        } else {
            Values::Plain(self.values)
        };
        py.detach(|| decode_page(self.rep, self.def, values, dictionary, shape, first, out))
            .map_err(|e| PyValueError::new_err(e.0))
    }
}

//! One input matrix as the engine reads it: raw little-endian bytes of any
//! float dtype, C or Fortran order.

use crate::error::{invalid, Result};
use crate::npy::{Dtype, NpyFile};
use half::f16;

/// One input matrix: raw little-endian bytes of `rows x cols` elements.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// Element bytes; need not be aligned.
    pub bytes: &'a [u8],
    /// Element type.
    pub dtype: Dtype,
    /// Number of rows (examples).
    pub rows: usize,
    /// Number of columns (dimensions).
    pub cols: usize,
    /// True for column-major storage.
    pub fortran_order: bool,
    /// A name for error messages (a path, or "array 0").
    pub name: &'a str,
}

impl<'a> Source<'a> {
    /// A memory-mapped `.npy` file as an engine input named `name`.
    pub fn of_npy(file: &'a NpyFile, name: &'a str) -> Self {
        Source {
            bytes: file.data(),
            dtype: file.header.dtype,
            rows: file.rows(),
            cols: file.cols(),
            fortran_order: file.header.fortran_order,
            name,
        }
    }

    /// Checks that `bytes` holds every element the shape promises. The
    /// fields are public, and the SIMD kernels read the bytes unchecked:
    /// this is what keeps a short slice from being read past its end.
    pub fn check(&self) -> Result<()> {
        match self.dtype.bytes_for(self.rows, self.cols) {
            Some(need) if need <= self.bytes.len() => Ok(()),
            Some(need) => Err(invalid!(
                "{}: {} x {} values of {} bytes need {need} bytes, but only {} are given; \
                 the data is truncated: re-create it",
                self.name,
                self.rows,
                self.cols,
                self.dtype.size(),
                self.bytes.len()
            )),
            None => Err(invalid!(
                "{}: shape {} x {} is too large to exist (its byte size overflows); \
                 the data is corrupt: re-create it",
                self.name,
                self.rows,
                self.cols
            )),
        }
    }

    #[inline]
    fn index(&self, row: usize, col: usize) -> usize {
        if self.fortran_order {
            col * self.rows + row
        } else {
            row * self.cols + col
        }
    }

    /// The raw bits of a float16 element (float16 sources only).
    #[inline]
    pub(crate) fn bits16(&self, row: usize, col: usize) -> u16 {
        debug_assert_eq!(self.dtype, Dtype::F16);
        let idx = self.index(row, col);
        u16::from_le_bytes([self.bytes[2 * idx], self.bytes[2 * idx + 1]])
    }

    /// Element `(row, col)` as f32.
    #[inline]
    pub(crate) fn get(&self, row: usize, col: usize) -> f32 {
        let idx = self.index(row, col);
        let b = self.bytes;
        match self.dtype {
            Dtype::F16 => f16::from_le_bytes([b[2 * idx], b[2 * idx + 1]]).to_f32(),
            Dtype::F32 => f32::from_le_bytes(b[4 * idx..4 * idx + 4].try_into().unwrap()),
            Dtype::F64 => f64::from_le_bytes(b[8 * idx..8 * idx + 8].try_into().unwrap()) as f32,
        }
    }
}

/// The row count all `sources` share (an error if they differ or none, or
/// if a source's bytes are shorter than its shape: see `Source::check`).
pub(crate) fn common_rows(sources: &[Source<'_>]) -> Result<usize> {
    let Some(first) = sources.first() else {
        return Err(invalid!("no embeddings given"));
    };
    for source in sources {
        source.check()?;
    }
    let n = first.rows;
    if let Some(bad) = sources.iter().find(|s| s.rows != n) {
        return Err(invalid!(
            "row counts differ: {} has {} rows but {} has {}; concatenated \
             embedding files must describe the same examples in the same order",
            first.name,
            n,
            bad.name,
            bad.rows
        ));
    }
    Ok(n)
}

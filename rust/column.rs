//! One borrowed column of the dimension-major pool, in its stored type.

use half::f16;

/// One column, in its stored type.
#[derive(Clone, Copy)]
pub enum Col<'a> {
    /// f32 values.
    F32(&'a [f32]),
    /// float16 bits.
    F16(&'a [u16]),
}

impl Col<'_> {
    /// The value of `row`, widened to f32 (exactly: every float16 is an
    /// f32).
    #[inline(always)]
    pub fn get(&self, row: usize) -> f32 {
        match self {
            Col::F32(c) => c[row],
            Col::F16(c) => f16::from_bits(c[row]).to_f32(),
        }
    }

    /// Number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        match self {
            Col::F32(c) => c.len(),
            Col::F16(c) => c.len(),
        }
    }

    /// Whether the column has no rows.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

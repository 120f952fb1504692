//! A row and its distance to a query: what every search returns.

use std::cmp::Ordering;

/// A row and its L1 distance to the query. Laid out as (row, dist) so the
/// vector kernels can store both in one interleaved write.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Neighbour {
    /// Row index.
    pub row: u32,
    /// Distance in the subspace, summed in f32 in `dims` order; never
    /// negative (a sum of absolute values), never NaN (inputs are checked).
    pub dist: f32,
}

impl Neighbour {
    /// One integer that orders neighbours nearer first, then lower row: the
    /// bits of a non-negative float order like the float itself, so
    /// selections compare plain u64s instead of calling a comparator.
    #[inline]
    pub fn key(&self) -> u64 {
        debug_assert!(self.dist >= 0.0 && self.dist.is_sign_positive());
        (u64::from(self.dist.to_bits()) << 32) | u64::from(self.row)
    }

    /// Total order: nearer first, then lower row.
    #[inline]
    pub fn cmp_key(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

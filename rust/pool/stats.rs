//! Per-dimension statistics: minimum, median and maximum of each column
//! (the triangular distribution's parameters).

use crate::column::Col;
use half::f16;

/// Per-dimension minimum, median and maximum (the triangular distribution's
/// lo, mode and hi), in f64.
#[derive(Debug, Clone, Default)]
pub struct DimStats {
    /// Minimum per dimension.
    pub lo: Vec<f64>,
    /// Median per dimension (mean of the two middle values for even N, as NumPy).
    pub md: Vec<f64>,
    /// Maximum per dimension.
    pub hi: Vec<f64>,
}

/// (min, median, max) of one column, or None if it holds NaN or Inf. The
/// median by selection, not sorting; for float16 by a histogram of all
/// 65,536 bit patterns, which is exact and linear.
pub(super) fn summarise(col: Col<'_>, scratch: &mut Vec<u32>) -> Option<(f64, f64, f64)> {
    match col {
        Col::F32(c) => summarise_f32(c, scratch),
        Col::F16(c) => summarise_f16(c, scratch),
    }
}

/// The order-preserving key of `v`: keys compare as unsigned integers as
/// the values compare as floats (-0 just below +0).
#[inline]
pub fn order_key(v: f32) -> u32 {
    let b = v.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

/// The value of a key (inverse of `order_key`).
#[inline]
pub fn from_order_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
}

fn summarise_f32(col: &[f32], scratch: &mut Vec<u32>) -> Option<(f64, f64, f64)> {
    if !col.iter().all(|v| v.is_finite()) {
        return None;
    }
    // Totally ordered keys of the floats, so selection compares integers.
    let (key, value) = (order_key, from_order_key);
    scratch.clear();
    scratch.extend(col.iter().map(|&v| key(v)));
    let n = scratch.len();
    let lo = value(*scratch.iter().min()?);
    let hi = value(*scratch.iter().max()?);
    let (left, upper, _) = scratch.select_nth_unstable(n / 2);
    let upper = f64::from(value(*upper));
    let md = if n % 2 == 1 {
        upper
    } else {
        let lower = value(*left.iter().max()?);
        (f64::from(lower) + upper) / 2.0
    };
    Some((f64::from(lo), md, f64::from(hi)))
}

fn summarise_f16(col: &[u16], hist: &mut Vec<u32>) -> Option<(f64, f64, f64)> {
    // Bit patterns ordered like their values (-0 just below +0).
    let key = |b: u16| if b >> 15 == 1 { !b } else { b | 1 << 15 };
    let value = |k: usize| {
        let k = k as u16;
        f64::from(f16::from_bits(if k >> 15 == 1 { k & !(1 << 15) } else { !k }).to_f32())
    };
    hist.clear();
    hist.resize(1 << 16, 0);
    for &b in col {
        hist[usize::from(key(b))] += 1;
    }
    let non_finite = (0..1u32 << 16).any(|b| {
        let b = b as u16;
        b & 0x7C00 == 0x7C00 && hist[usize::from(key(b))] > 0
    });
    if non_finite {
        return None;
    }
    let n = col.len();
    // The value of sorted rank `r`.
    let at_rank = |r: usize| {
        let mut seen = 0usize;
        for (k, &c) in hist.iter().enumerate() {
            seen += c as usize;
            if seen > r {
                return value(k);
            }
        }
        f64::NAN
    };
    let lo = at_rank(0);
    let hi = at_rank(n - 1);
    let upper = at_rank(n / 2);
    let md = if n % 2 == 1 {
        upper
    } else {
        (at_rank(n / 2 - 1) + upper) / 2.0
    };
    Some((lo, md, hi))
}

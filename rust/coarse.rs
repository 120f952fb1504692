//! A coarse 16-bit copy of the pool for the one pass over the rows.
//!
//! Every value becomes the integer round((x - median) * scale), one global
//! scale putting the widest deviation at 16,383, so a difference of two
//! fits an i16 and a two-dimensional L1 distance a u16. The pass then
//! handles 32 rows per instruction instead of 16 and reads half the bytes.
//! It is a filter only: rounding moves each integer coordinate by at most
//! 1/2, so an integer distance exceeds scale * (true distance) by at most 2,
//! and every row within `radius` passes the integer test
//! `dist <= floor(scale * radius + 2)` (with a margin for float rounding).
//! The rows that pass get their exact f32 coordinates by gathers, and all
//! decisions are made on those (see `one_pass.rs`).

use crate::columns::{Col, Pool};
use crate::kernels::Isa;
use crate::one_pass::Candidates;
use rayon::prelude::*;

/// The widest deviation from the median maps to this integer.
const SPAN: f64 = 16383.0;

/// Pools whose coarse copy would be larger than this are not given one.
const MAX_BYTES: usize = 8 << 30;

/// The coarse copy: dimension-major i16, `n` per dimension.
pub struct Coarse {
    n: usize,
    values: Vec<i16>,
    scale: f64,
    centre: Vec<f64>,
}

impl Coarse {
    /// The coarse copy of `pool`, or None where it cannot help: no
    /// AVX-512 with VBMI2 (16-bit compress), float16 columns, every
    /// dimension constant, or too large.
    pub fn build(pool: &Pool<'_>) -> Option<Coarse> {
        if !available() || pool.is_f16() || pool.n * pool.d * 2 > MAX_BYTES {
            return None;
        }
        let s = &pool.stats;
        let widest = (0..pool.d)
            .map(|d| (s.hi[d] - s.md[d]).max(s.md[d] - s.lo[d]))
            .fold(0f64, f64::max);
        if !(widest > 0.0 && widest.is_finite()) {
            return None;
        }
        let scale = SPAN / widest;
        let centre = s.md.clone();
        let mut values = vec![0i16; pool.n * pool.d];
        crate::columns::advise_huge_pages(&mut values);
        values
            .par_chunks_mut(pool.n)
            .enumerate()
            .for_each(|(d, out)| {
                let Col::F32(col) = pool.col(d) else {
                    unreachable!("f16 pools are refused above")
                };
                // SAFETY: `available` (checked above) includes AVX-512.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    x86::quantise_column(col, centre[d], scale, out)
                };
                #[cfg(not(target_arch = "x86_64"))]
                quantise_column(col, centre[d], scale, out);
            });
        Some(Coarse {
            n: pool.n,
            values,
            scale,
            centre,
        })
    }

    fn column(&self, dim: u32) -> &[i16] {
        let at = dim as usize * self.n;
        &self.values[at..at + self.n]
    }

    /// Rows of `pool` within `radius` of `q` in the subspace `dims` (and a
    /// few more), with their exact coordinates, into `cand`. False, and
    /// nothing done, where the integer test cannot be used (`q` outside
    /// the quantised range, or a radius too wide for 16 bits).
    pub fn collect(
        &self,
        isa: Isa,
        pool: &Pool<'_>,
        dims: [u32; 2],
        q: [f32; 2],
        radius: f32,
        cand: &mut Candidates,
    ) -> bool {
        let qa = self.query(dims[0], q[0]);
        let qb = self.query(dims[1], q[1]);
        // Rows within `radius` by the f32 distance are within it times
        // (1 + 2^-22) exactly; each integer coordinate is off by <= 1/2.
        let limit =
            (self.scale * f64::from(radius) * (1.0 + 1.0 / f64::from(1u32 << 20)) + 2.0).floor();
        let (Some(qa), Some(qb)) = (qa, qb) else {
            return false;
        };
        if limit >= 65535.0 || isa != Isa::Avx512 {
            return false;
        }
        let (Col::F32(a), Col::F32(b)) = (pool.col(dims[0] as usize), pool.col(dims[1] as usize))
        else {
            return false;
        };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available` was checked in `build`; the columns hold
        // `n` values each.
        unsafe {
            x86::collect(
                [self.column(dims[0]), self.column(dims[1])],
                [qa, qb],
                limit as u16,
                [a, b],
                cand,
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (a, b, cand);
        true
    }

    /// `q` in the coarse units of dimension `dim`; None outside the range
    /// the rounding bound holds for.
    fn query(&self, dim: u32, q: f32) -> Option<i16> {
        let y = (f64::from(q) - self.centre[dim as usize]) * self.scale;
        (y.abs() <= SPAN + 0.25).then(|| y.round_ties_even().clamp(-SPAN, SPAN) as i16)
    }
}

/// round((x - c) * scale), within +-SPAN for x between the extremes.
/// Ties round to even: one instruction where the caller enables SSE4.1 or
/// later, so the loop below vectorises (any rounding to nearest keeps the
/// error within 1/2, which is all the filter assumes). The rounding only
/// decides which extra rows beyond the radius pass the filter, never a
/// result: every decision is made on exact values within the radius.
#[inline(always)]
fn quantise(x: f64, c: f64, scale: f64) -> i16 {
    ((x - c) * scale).round_ties_even().clamp(-SPAN, SPAN) as i16
}

/// `quantise` of every value of `col` into `out`.
#[inline(always)]
fn quantise_column(col: &[f32], c: f64, scale: f64, out: &mut [i16]) {
    for (o, &x) in out.iter_mut().zip(col) {
        *o = quantise(f64::from(x), c, scale);
    }
}

/// Whether this CPU runs the coarse pass (and builds the copy with DQ's
/// conversions).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        Isa::detect() == Isa::Avx512
            && std::is_x86_feature_detected!("avx512vbmi2")
            && std::is_x86_feature_detected!("avx512dq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use crate::one_pass::x86::gather_coordinates;
    use crate::one_pass::Candidates;
    use std::arch::x86_64::*;

    /// `quantise_column` compiled for AVX-512.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq")]
    pub(super) unsafe fn quantise_column(col: &[f32], c: f64, scale: f64, out: &mut [i16]) {
        super::quantise_column(col, c, scale, out)
    }

    /// Rows per segment: offsets within one fit the 16-bit lanes.
    const SEGMENT: usize = 1 << 16;

    /// Lanes of elements `base..min(base + 32, n)`.
    #[inline]
    fn live32(n: usize, base: usize) -> __mmask32 {
        let left = n - base;
        if left >= 32 {
            u32::MAX
        } else {
            (1u32 << left) - 1
        }
    }

    /// Stores the 16-bit offsets of `off` that `hit` selects at
    /// `dst + *count`, as one whole vector (32 values: `dst` needs 32 of
    /// slack), and counts them.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
    unsafe fn push_hits(dst: *mut u16, count: &mut usize, hit: __mmask32, off: __m512i) {
        _mm512_storeu_si512(
            dst.add(*count).cast(),
            _mm512_maskz_compress_epi16(hit, off),
        );
        *count += hit.count_ones() as usize;
    }

    /// Rows whose integer distance to `q` is <= `limit`, then their exact
    /// coordinates from the f32 columns `exact`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")]
    pub(super) unsafe fn collect(
        cols: [&[i16]; 2],
        q: [i16; 2],
        limit: u16,
        exact: [&[f32]; 2],
        cand: &mut Candidates,
    ) {
        let n = cols[0].len();
        let (qa, qb) = (_mm512_set1_epi16(q[0]), _mm512_set1_epi16(q[1]));
        let lim = _mm512_set1_epi16(limit as i16);
        let first: [u16; 32] = std::array::from_fn(|i| i as u16);
        let lanes = _mm512_loadu_si512(first.as_ptr().cast());
        let step = _mm512_set1_epi16(32);
        let rows = &mut cand.rows;
        rows.clear();
        rows.reserve(n + 32);
        // Offsets within the segment, 16-bit, widened after each segment.
        let mut offsets: Vec<u16> = Vec::with_capacity(SEGMENT.min(n) + 32);
        let (a, b) = (cols[0].as_ptr(), cols[1].as_ptr());
        let mut start = 0;
        while start < n {
            let end = (start + SEGMENT).min(n);
            let dst = offsets.as_mut_ptr();
            let mut count = 0usize;
            let mut off = lanes;
            let mut base = start;
            // |x - q| <= 32,766 fits i16; the sum of two fits u16.
            let hits = |xa: __m512i, xb: __m512i, live: __mmask32| {
                let d = _mm512_add_epi16(
                    _mm512_abs_epi16(_mm512_sub_epi16(xa, qa)),
                    _mm512_abs_epi16(_mm512_sub_epi16(xb, qb)),
                );
                _mm512_mask_cmple_epu16_mask(live, d, lim)
            };
            // Two blocks of 32 rows per step, unmasked loads: independent
            // work for the compress unit while the other block's loads wait.
            while base + 64 <= end {
                let h0 = hits(
                    _mm512_loadu_si512(a.add(base).cast()),
                    _mm512_loadu_si512(b.add(base).cast()),
                    u32::MAX,
                );
                let h1 = hits(
                    _mm512_loadu_si512(a.add(base + 32).cast()),
                    _mm512_loadu_si512(b.add(base + 32).cast()),
                    u32::MAX,
                );
                let off1 = _mm512_add_epi16(off, step);
                push_hits(dst, &mut count, h0, off);
                push_hits(dst, &mut count, h1, off1);
                off = _mm512_add_epi16(off1, step);
                base += 64;
            }
            while base < end {
                let live = live32(end, base);
                let hit = hits(
                    _mm512_maskz_loadu_epi16(live, a.add(base)),
                    _mm512_maskz_loadu_epi16(live, b.add(base)),
                    live,
                );
                push_hits(dst, &mut count, hit, off);
                off = _mm512_add_epi16(off, step);
                base += 32;
            }
            offsets.set_len(count);
            rows.extend(offsets.iter().map(|&o| (start + usize::from(o)) as u32));
            start = end;
        }
        gather_coordinates::<false>(exact[0].as_ptr().cast(), exact[1].as_ptr().cast(), n, cand);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::tests::pool_from_rows;
    use crate::search::distance;

    /// Every row within the radius passes the coarse filter, on pools with
    /// a wide outlier (coarse units), ties and a constant dimension.
    #[test]
    fn coarse_filter_keeps_every_row_within_the_radius() {
        if !available() {
            return;
        }
        let mut rng = crate::rng::TestRng(5);
        let mut unit = || rng.unit();
        // Lengths below one two-block step, around it, and across the
        // 65,536-row segments of the pass.
        let lengths = (0..20)
            .map(|t| 100 + t * 523)
            .chain([3, 33, 64, 65, 127, 65_600]);
        for (trial, n) in lengths.enumerate() {
            let rows: Vec<Vec<f32>> = (0..n)
                .map(|i| {
                    vec![
                        unit() * 2.0 - 1.0,
                        (i % 7) as f32 * 0.25,
                        3.5,
                        if i == 0 {
                            1000.0 * trial as f32
                        } else {
                            unit()
                        },
                    ]
                })
                .collect();
            let pool = pool_from_rows(&rows).unwrap();
            let coarse = Coarse::build(&pool).unwrap();
            let mut cand = Candidates::default();
            for _ in 0..50 {
                let a = (unit() * 4.0) as u32 % 4;
                let b = (a + 1 + (unit() * 3.0) as u32 % 3) % 4;
                let q = [rows[n / 2][a as usize], rows[n / 3][b as usize]];
                let radius = unit() * 0.3;
                assert!(coarse.collect(Isa::detect(), &pool, [a, b], q, radius, &mut cand));
                for (r, row) in rows.iter().enumerate() {
                    let d = distance(&pool, &[a, b], &q, r);
                    if d <= radius {
                        let at = cand.rows.binary_search(&(r as u32)).expect("row kept");
                        assert_eq!(
                            [cand.xa[at], cand.xb[at]],
                            [row[a as usize], row[b as usize]]
                        );
                    }
                }
            }
        }
    }
}

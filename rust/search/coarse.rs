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

use crate::arch::{Candidates, Isa};
use crate::pool::{Col, Pool};
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
    /// The coarse copy of `pool`, or None where it cannot help: float16
    /// columns, every dimension constant, or too large. Every level has a
    /// vectorised 16-bit pass (`Isa::collect_coarse`); `isa` quantises.
    pub fn build(pool: &Pool<'_>, isa: Isa) -> Option<Coarse> {
        if pool.is_f16() || pool.n * pool.d * 2 > MAX_BYTES {
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
        crate::pool::advise_huge_pages(&mut values);
        values
            .par_chunks_mut(pool.n)
            .enumerate()
            .for_each(|(d, out)| {
                let Col::F32(col) = pool.col(d) else {
                    unreachable!("f16 pools are refused above")
                };
                isa.quantise_column(col, centre[d], scale, SPAN, out);
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
        if limit >= 65535.0 {
            return false;
        }
        let (Col::F32(a), Col::F32(b)) = (pool.col(dims[0] as usize), pool.col(dims[1] as usize))
        else {
            return false;
        };
        let coarse = [self.column(dims[0]), self.column(dims[1])];
        isa.collect_coarse(coarse, [qa, qb], limit as u16, [a, b], cand);
        true
    }

    /// `q` in the coarse units of dimension `dim`; None outside the range
    /// the rounding bound holds for.
    fn query(&self, dim: u32, q: f32) -> Option<i16> {
        let y = (f64::from(q) - self.centre[dim as usize]) * self.scale;
        (y.abs() <= SPAN + 0.25).then(|| y.round_ties_even().clamp(-SPAN, SPAN) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::tests::pool_from_rows;
    use crate::search::distance;

    /// Every row within the radius passes the coarse filter, on pools with
    /// a wide outlier (coarse units), ties and a constant dimension.
    #[test]
    fn coarse_filter_keeps_every_row_within_the_radius() {
        for isa in Isa::supported() {
            filter_keeps_rows_within(isa);
        }
    }

    fn filter_keeps_rows_within(isa: Isa) {
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
            let coarse = Coarse::build(&pool, isa).unwrap();
            let mut cand = Candidates::default();
            for _ in 0..50 {
                let a = (unit() * 4.0) as u32 % 4;
                let b = (a + 1 + (unit() * 3.0) as u32 % 3) % 4;
                let q = [rows[n / 2][a as usize], rows[n / 3][b as usize]];
                let radius = unit() * 0.3;
                assert!(coarse.collect(isa, &pool, [a, b], q, radius, &mut cand));
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

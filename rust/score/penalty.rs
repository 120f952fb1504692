//! One sample's redundancy penalties (DESIGN.md section 2, step 4): the
//! weights 1 / d^exp of the winner's neighbours, normalised to sum 1, and
//! their fixed-point amounts for the score accumulators.
//!
//! The arithmetic (`arch::Isa::penalty_weights`) is the same whatever the
//! order of the neighbours (the search methods list them in different
//! orders) and whatever instruction set runs it: each weight is computed
//! alone, and their total is an exact integer sum.

use super::FIXED_ONE;
use crate::arch::{Isa, PenaltyBuffers};
use crate::neighbour::Neighbour;

/// The penalised rows of one sample and their weights (positive, summing
/// to 1 up to rounding; subtracted from the scores).
#[derive(Debug, Default, Clone)]
pub struct Penalties(PenaltyBuffers);

impl Penalties {
    /// The penalties of a sample whose winner has these `neighbours`, with
    /// distance exponent `exp`. A neighbour at distance 0 (a duplicate in
    /// the subspace) takes the whole penalty alone.
    pub fn compute(&mut self, isa: Isa, neighbours: &[Neighbour], exp: f64) {
        isa.penalty_weights(neighbours, exp, FIXED_ONE, &mut self.0);
    }

    /// Penalised rows.
    pub fn rows(&self) -> &[u32] {
        &self.0.rows
    }

    /// Their weights, in the order of `rows`.
    pub fn weights(&self) -> &[f64] {
        &self.0.weights
    }

    /// The rows and their weights in fixed point (`FIXED_ONE` per unit),
    /// rounded to nearest.
    pub fn fixed(&self) -> (&[u32], &[i64]) {
        (&self.0.rows, &self.0.fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(row: u32, dist: f32) -> Neighbour {
        Neighbour { row, dist }
    }

    /// The definition, written plainly: weights 1 / d^exp over their sum.
    fn oracle(neighbours: &[Neighbour], exp: f64) -> Vec<(u32, f64)> {
        let mut sorted = neighbours.to_vec();
        sorted.sort_by_key(Neighbour::key);
        if sorted.is_empty() {
            return Vec::new();
        }
        if sorted[0].dist == 0.0 {
            return vec![(sorted[0].row, 1.0)];
        }
        let raw: Vec<f64> = neighbours
            .iter()
            .map(|n| f64::from(n.dist).powf(-exp))
            .collect();
        let total: f64 = raw.iter().sum();
        neighbours
            .iter()
            .zip(raw)
            .map(|(n, w)| (n.row, w / total))
            .collect()
    }

    #[test]
    fn weights_match_the_definition_in_any_order_and_isa() {
        let mut rng = crate::rng::TestRng(99);
        let mut unit = || rng.unit();
        let mut p = Penalties::default();
        for trial in 0..300 {
            let len = 1 + trial % 37 * 40;
            let mut v: Vec<Neighbour> = (0..len)
                .map(|i| nb(i as u32 * 3, 0.01 + unit() * (1 + trial % 5) as f32))
                .collect();
            if trial % 7 == 0 {
                v[len / 2].dist = 0.0;
            }
            let exp = [4.0, 2.0, 3.0, 1.0, 2.5, 0.0][trial % 6];
            let want = oracle(&v, exp);
            let mut seen: Option<(Vec<u32>, Vec<f64>, Vec<i64>)> = None;
            for isa in Isa::supported() {
                for reversed in [false, true] {
                    let mut order = v.clone();
                    if reversed {
                        order.reverse();
                    }
                    p.compute(isa, &order, exp);
                    let mut got: Vec<(u32, f64, i64)> = p
                        .rows()
                        .to_vec()
                        .into_iter()
                        .zip(p.weights().to_vec())
                        .zip(p.fixed().1.to_vec())
                        .map(|((r, w), f)| (r, w, f))
                        .collect();
                    got.sort_by_key(|x| x.0);
                    let (rows, weights, fixed) = got.into_iter().fold(
                        (Vec::new(), Vec::new(), Vec::new()),
                        |(mut r, mut w, mut f), x| {
                            r.push(x.0);
                            w.push(x.1);
                            f.push(x.2);
                            (r, w, f)
                        },
                    );
                    let mut want_sorted = want.clone();
                    want_sorted.sort_by_key(|x| x.0);
                    assert_eq!(rows, want_sorted.iter().map(|x| x.0).collect::<Vec<_>>());
                    for (g, (_, w)) in weights.iter().zip(&want_sorted) {
                        assert!((g - w).abs() <= 1e-12 * w.max(1e-300) + 1e-300, "{g} {w}");
                    }
                    // Bit-identical across orders and instruction sets.
                    let now = (rows, weights, fixed);
                    if let Some(before) = &seen {
                        assert_eq!(before, &now, "trial {trial}");
                    }
                    seen = Some(now);
                }
            }
        }
    }
}

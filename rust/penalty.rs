//! One sample's redundancy penalties (DESIGN.md section 2, step 4): the
//! weights 1 / d^exp of the winner's neighbours, normalised to sum 1, and
//! their fixed-point amounts for the score accumulators.
//!
//! The arithmetic is the same whatever the order of the neighbours (the
//! search methods list them in different orders) and whatever instruction
//! set runs it: each weight is computed alone, and their total is an exact
//! integer sum. The loops are plain Rust, compiled once more with AVX-512
//! enabled, where the compiler vectorises them.

use crate::kernels::Isa;
use crate::search::Neighbour;
use crate::zcore::FIXED_ONE;

/// The penalised rows of one sample and their weights (positive, summing
/// to 1 up to rounding; subtracted from the scores).
#[derive(Debug, Default, Clone)]
pub struct Penalties {
    /// Penalised rows.
    pub rows: Vec<u32>,
    /// Their weights, in the order of `rows`.
    pub weights: Vec<f64>,
    fixed: Vec<i64>,
}

/// Weights are summed as integer multiples of 2^-52 (exact, so the order
/// of terms cannot matter), `SUM_CHUNK` at a time in an i64.
const SUM_UNIT: f64 = 4_503_599_627_370_496.0;
const SUM_CHUNK: usize = 1024;

impl Penalties {
    /// The penalties of a sample whose winner has these `neighbours`, with
    /// distance exponent `exp`. A neighbour at distance 0 (a duplicate in
    /// the subspace) takes the whole penalty alone.
    pub fn compute(&mut self, isa: Isa, neighbours: &[Neighbour], exp: f64) {
        #[cfg(target_arch = "x86_64")]
        if isa == Isa::Avx512 {
            // SAFETY: `Avx512` is only produced after run-time detection.
            return unsafe { compute_avx512(self, neighbours, exp) };
        }
        let _ = isa;
        compute_body(self, neighbours, exp)
    }

    /// The rows and their weights in fixed point (`FIXED_ONE` per unit),
    /// rounded to nearest.
    pub fn fixed(&self) -> (&[u32], &[i64]) {
        (&self.rows, &self.fixed)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl")]
unsafe fn compute_avx512(p: &mut Penalties, neighbours: &[Neighbour], exp: f64) {
    compute_body(p, neighbours, exp)
}

#[inline(always)]
fn compute_body(p: &mut Penalties, neighbours: &[Neighbour], exp: f64) {
    p.rows.clear();
    p.weights.clear();
    p.fixed.clear();
    let Some(first) = nearest(neighbours) else {
        return;
    };
    if first.dist == 0.0 {
        p.rows.push(first.row);
        p.weights.push(1.0);
        p.fixed.push(FIXED_ONE as i64);
        return;
    }
    // w_j = d_j^-exp, normalised. Scaling by the smallest distance first
    // keeps every ratio in (0, 1], so no power overflows.
    let d0 = f64::from(first.dist);
    p.rows.extend(neighbours.iter().map(|nb| nb.row));
    p.weights
        .extend(neighbours.iter().map(|nb| d0 / f64::from(nb.dist)));
    let w = &mut p.weights[..];
    let int_exp = exp.fract() == 0.0 && (0.0..=64.0).contains(&exp);
    // Common integer exponents get a loop with the power unrolled: `powi`
    // is a libm call per neighbour.
    match exp as u32 {
        2 if int_exp => raise::<2>(w),
        3 if int_exp => raise::<3>(w),
        4 if int_exp => raise::<4>(w),
        e if int_exp => w.iter_mut().for_each(|x| *x = pow_u32(*x, e)),
        _ => w.iter_mut().for_each(|x| *x = x.powf(exp)),
    }
    let total = exact_sum(w);
    // One division, then multiplications: within an ulp of dividing each
    // weight.
    let scale = 1.0 / total;
    w.iter_mut().for_each(|x| *x *= scale);
    p.fixed.clear();
    // w in [0, 1]: adding 0.5 and truncating rounds to nearest without a
    // libm call.
    p.fixed.extend(w.iter().map(|&x| {
        let v = x * FIXED_ONE + 0.5;
        debug_assert!((0.0..=FIXED_ONE + 1.0).contains(&v));
        // SAFETY: finite and within i64 (see above).
        unsafe { v.to_int_unchecked::<i64>() }
    }));
}

/// The nearest neighbour (ties: lowest row), by lanes so it vectorises.
#[inline(always)]
fn nearest(neighbours: &[Neighbour]) -> Option<Neighbour> {
    let mut lanes = [u64::MAX; 8];
    let mut blocks = neighbours.chunks_exact(8);
    for block in &mut blocks {
        for (m, nb) in lanes.iter_mut().zip(block) {
            *m = (*m).min(nb.key());
        }
    }
    let key = blocks
        .remainder()
        .iter()
        .map(Neighbour::key)
        .chain(lanes)
        .min()?;
    (key != u64::MAX).then(|| Neighbour {
        row: key as u32,
        dist: f32::from_bits((key >> 32) as u32),
    })
}

/// The sum of weights in [0, 1], each rounded down to a multiple of 2^-52:
/// an integer sum, so the same in any order.
#[inline(always)]
fn exact_sum(w: &[f64]) -> f64 {
    let mut total = 0u128;
    for chunk in w.chunks(SUM_CHUNK) {
        // Each term is at most 2^52, so a chunk sums to at most 2^62.
        let part: i64 = chunk
            .iter()
            .map(|&x| {
                let v = x * SUM_UNIT;
                debug_assert!((0.0..=SUM_UNIT).contains(&v));
                // SAFETY: x in [0, 1], so v is finite and below 2^53.
                unsafe { v.to_int_unchecked::<i64>() }
            })
            .sum();
        total += part as u128;
    }
    total as f64 / SUM_UNIT
}

/// `x^e` by repeated squaring (the same rounding for the same inputs
/// everywhere, which is all determinism needs).
#[inline(always)]
fn pow_u32(x: f64, mut e: u32) -> f64 {
    let (mut acc, mut base) = (1.0, x);
    while e > 0 {
        if e & 1 == 1 {
            acc *= base;
        }
        base *= base;
        e >>= 1;
    }
    acc
}

/// Raises every weight to the power `E`.
#[inline(always)]
fn raise<const E: u32>(w: &mut [f64]) {
    for x in w.iter_mut() {
        *x = pow_u32(*x, E);
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
            for isa in [Isa::Portable, Isa::detect()] {
                for reversed in [false, true] {
                    let mut order = v.clone();
                    if reversed {
                        order.reverse();
                    }
                    p.compute(isa, &order, exp);
                    let mut got: Vec<(u32, f64, i64)> = p
                        .rows
                        .clone()
                        .into_iter()
                        .zip(p.weights.clone())
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

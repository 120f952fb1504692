//! The search among the rows near a sample point, collected by one pass
//! (`Searcher::nearest_and_knn` says why the answer is always among them):
//! the k nearest of a few thousand candidates, chosen by counting rather
//! than by a comparison sort. The k-th smallest distance is bracketed by
//! vectorised counts of candidates at or below a trial distance (guessed
//! by interpolation, in two dimensions the count grows like the distance
//! squared), and the few distances left in the bracket are sorted. Ties at
//! the k-th distance go to the lowest rows, as `search::knn_brute` orders
//! them: candidates are stored by ascending row.

pub use crate::arch::Candidates;
use crate::arch::Isa;
use crate::neighbour::Neighbour;

/// Brackets holding at most this many distances are sorted.
const SORTED_BRACKET: usize = 32;

/// The `k` candidates nearest to `c` other than `exclude`, unordered,
/// into `out`; false if fewer than `k` of them lie within `limit`
/// (then `out` is unspecified).
pub fn nearest_k_of(
    isa: Isa,
    cand: &mut Candidates,
    c: [f32; 2],
    limit: f32,
    exclude: u32,
    k: usize,
    out: &mut Vec<Neighbour>,
) -> bool {
    let within = isa.distances_to(cand, c, exclude, limit);
    if within < k {
        return false;
    }
    out.clear();
    if k == 0 {
        return true;
    }
    let (kth, nearer) = kth_smallest(isa, &cand.dist, k, limit, within, &mut cand.bracket);
    isa.emit(cand, kth, k - nearer, out);
    debug_assert_eq!(out.len(), k);
    true
}

/// The k-th smallest of `dist` (1-based; all >= 0, none NaN), given
/// that `within` (at least k) of them are at or below `limit`, and
/// how many are smaller than it. `bracket` is scratch.
pub(crate) fn kth_smallest(
    isa: Isa,
    dist: &[f32],
    k: usize,
    limit: f32,
    within: usize,
    bracket: &mut Vec<f32>,
) -> (f32, usize) {
    // Invariant: count(<= lo) < k <= count(<= hi); `lo` None is below
    // every distance (all are >= 0).
    let (mut lo, mut below) = (None::<f32>, 0usize);
    let (mut hi, mut upto) = (limit, within);
    let mut interpolate = true;
    loop {
        let span = upto - below;
        if span <= SORTED_BRACKET {
            isa.between(dist, lo.unwrap_or(-1.0), hi, bracket);
            bracket.sort_unstable_by(f32::total_cmp);
            let kth = bracket[k - below - 1];
            return (kth, below + bracket.partition_point(|&d| d < kth));
        }
        // Two trial distances a few ranks either side of the k-th, so
        // that one count usually leaves a narrow bracket.
        let (l, h) = (f64::from(lo.unwrap_or(0.0)), f64::from(hi));
        let at = |rank: f64| {
            let share = (rank / span as f64).clamp(0.0, 1.0);
            if interpolate {
                // In two dimensions the count grows like the distance
                // squared.
                (l * l + share * (h * h - l * l)).sqrt() as f32
            } else {
                (l + share * (h - l)) as f32
            }
        };
        let inside = |t: f32| t < hi && lo.is_none_or(|l| t > l);
        let margin = (span / 8).max(4) as f64;
        let want = (k - below) as f64;
        let (t1, t2) = match (at(want - margin), at(want + margin)) {
            (a, b) if inside(a) && inside(b) => (a, b),
            (a, _) if inside(a) => (a, a),
            (_, b) if inside(b) => (b, b),
            _ => {
                let lo_bits = lo.map_or(0, f32::to_bits);
                let mid = lo_bits + (hi.to_bits() - lo_bits) / 2;
                if mid == lo_bits && (lo.is_some() || hi == 0.0) {
                    // No float lies between (or below a `hi` of 0):
                    // every distance in the bracket equals `hi`.
                    return (hi, below);
                }
                (f32::from_bits(mid), f32::from_bits(mid))
            }
        };
        let (c1, c2) = isa.count_le2(dist, t1, t2);
        if c1 >= k {
            (hi, upto) = (t1, c1);
        } else if c2 >= k {
            (lo, below, hi, upto) = (Some(t1), c1, t2, c2);
        } else {
            (lo, below) = (Some(t2), c2);
        }
        // Interpolate again only while it keeps halving the bracket.
        interpolate = 2 * (upto - below) <= span;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The k-th smallest, and how many are smaller, equal sorting.
    #[test]
    fn kth_smallest_equals_sorting() {
        let mut rng = crate::rng::TestRng(3);
        let mut next = || rng.next();
        let mut bracket = Vec::new();
        for trial in 0..400 {
            let len = 1 + next() as usize % 3000;
            // Many ties, zeros, and a spread of magnitudes.
            let dist: Vec<f32> = (0..len)
                .map(|_| match trial % 4 {
                    0 => (next() % 5) as f32,
                    1 => 0.0,
                    2 => (next() % 1000) as f32 * 1e-3 * (1 << (next() % 20)) as f32,
                    _ => next() as f32 / u32::MAX as f32,
                })
                .collect();
            let mut sorted = dist.clone();
            sorted.sort_by(f32::total_cmp);
            let k = 1 + next() as usize % len;
            let limit = sorted[k - 1 + next() as usize % (len - k + 1)];
            let within = sorted.iter().filter(|&&d| d <= limit).count();
            let nearer = sorted.partition_point(|&d| d < sorted[k - 1]);
            for isa in Isa::supported() {
                let got = kth_smallest(isa, &dist, k, limit, within, &mut bracket);
                assert_eq!(
                    got,
                    (sorted[k - 1], nearer),
                    "trial {trial} k {k} len {len}"
                );
            }
        }
    }
}

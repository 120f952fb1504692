//! The row-sharded protocol against one process: the shards' halves,
//! concatenated, must be bit for bit `raw_halves` of the whole pool.

use super::*;
use crate::arch::Isa;
use crate::pool::tests::pool_from_rows;
use crate::rng::TestRng;
use crate::score::{no_progress, raw_halves};

/// Rows with clusters, exact duplicates and a few coarse values (ties in
/// distance and in the median), so every tie rule is exercised.
fn rows(n: usize, d: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = TestRng(seed);
    (0..n)
        .map(|i| {
            (0..d)
                .map(|j| {
                    let v = (i % 4) as f32 + rng.unit() * 2.0 - j as f32 * 0.3;
                    match i % 9 {
                        0 => (v * 4.0).round() / 4.0,
                        1 => -1.5,
                        _ => v,
                    }
                })
                .collect()
        })
        .collect()
}

fn params(n_sample: u64, sample_dim: usize, redund_nn: usize) -> Params {
    Params {
        n_sample,
        sample_dim,
        redund_nn,
        seed: 11,
        threads: 2,
        ..Params::default()
    }
}

/// The median selection as the coordinator runs it: two keys per dimension.
fn median_keys(shards: &[RowShard], n: u64) -> Vec<u32> {
    let d = shards[0].pool().d;
    let mut prefixes = vec![0u32; 2 * d];
    let mut ranks: Vec<u64> = (0..d).flat_map(|_| median_ranks(n)).collect();
    let mut done = 0;
    for bits in KEY_ROUNDS {
        let mut counts = vec![0u64; (2 * d) << bits];
        for s in shards {
            let part = s.key_histogram(&prefixes, done, bits).unwrap();
            counts
                .iter_mut()
                .zip(part)
                .for_each(|(a, b)| *a += u64::from(b));
        }
        narrow(&counts, &mut prefixes, &mut ranks, bits).unwrap();
        done += bits;
    }
    prefixes
}

/// Runs the whole protocol over shards cut at `cuts`, as the coordinator
/// does (batches of `batch` samples), and returns the concatenated halves.
fn run_sharded(all: &[Vec<f32>], cuts: &[usize], p: &Params, batch: u64) -> Halves {
    run_sharded_with(all, cuts, p, batch, f64::INFINITY).0
}

/// `run_sharded` where each shard first sends `first_share(.., margin)` of
/// its nearest (infinite margin: all k), the samples whose merge is not
/// exact asked again for all k; also returns how many were asked again.
fn run_sharded_with(
    all: &[Vec<f32>],
    cuts: &[usize],
    p: &Params,
    batch: u64,
    margin: f64,
) -> (Halves, usize) {
    let n = all.len() as u64;
    let mut shards: Vec<RowShard> = cuts
        .windows(2)
        .map(|w| {
            let pool = pool_from_rows(&all[w[0]..w[1]]).unwrap();
            RowShard::new(pool, w[0] as u64, n, p.clone()).unwrap()
        })
        .collect();
    // The global statistics.
    let d = shards[0].pool().d;
    let lo: Vec<f64> = (0..d)
        .map(|j| {
            shards
                .iter()
                .map(|s| s.extremes().0[j])
                .fold(f64::INFINITY, f64::min)
        })
        .collect();
    let hi: Vec<f64> = (0..d)
        .map(|j| {
            shards
                .iter()
                .map(|s| s.extremes().1[j])
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let stats = stats_from(lo, hi, &median_keys(&shards, n), n);
    for s in &mut shards {
        s.set_stats(stats.clone()).unwrap();
    }
    let k = p.redund_nn.min(all.len() - 1);
    let mut first = 0;
    let mut retried = 0;
    while first < p.n_sample {
        let count = batch.min(p.n_sample - first) as usize;
        let w: Vec<Winners> = shards
            .iter()
            .map(|s| s.winners(first, count).unwrap())
            .collect();
        let (rows, coords) = merge_winners(&w, p.sample_dim).unwrap();
        let samples: Vec<u64> = (first..first + count as u64).collect();
        let near: Vec<Nearby> = shards
            .iter()
            .map(|s| {
                let limit = first_share(k, s.pool().n, n, margin);
                s.neighbours(&samples, &rows, &coords, limit).unwrap()
            })
            .collect();
        let (mut merged, retry) = merge_penalties(&near, k, p).unwrap();
        if !retry.is_empty() {
            retried += retry.len();
            let pick = |v: &[u64]| retry.iter().map(|&i| v[i as usize]).collect::<Vec<_>>();
            let (again, again_rows) = (pick(&samples), pick(&rows));
            let m = p.sample_dim;
            let again_coords: Vec<f32> = retry
                .iter()
                .flat_map(|&i| coords[i as usize * m..(i as usize + 1) * m].to_vec())
                .collect();
            let near: Vec<Nearby> = shards
                .iter()
                .map(|s| s.neighbours(&again, &again_rows, &again_coords, k).unwrap())
                .collect();
            let (redo, none) = merge_penalties(&near, k, p).unwrap();
            assert!(
                none.is_empty(),
                "a merge of every shard's k nearest is exact"
            );
            merged = splice(&merged, &retry, &redo).unwrap();
        }
        for s in &mut shards {
            s.apply(first, &rows, &merged).unwrap();
        }
        first += count as u64;
    }
    let halves = Halves {
        first: shards
            .iter()
            .flat_map(|s| s.halves().first.clone())
            .collect(),
        second: shards
            .iter()
            .flat_map(|s| s.halves().second.clone())
            .collect(),
    };
    (halves, retried)
}

#[test]
fn shards_give_the_bits_of_one_process() {
    for (n, d, sample_dim, redund_nn, cuts) in [
        (300, 5, 2, 40, vec![0, 300]),
        (300, 5, 2, 40, vec![0, 2, 151, 300]),
        (301, 4, 3, 1000, vec![0, 100, 200, 301]),
        (250, 6, 1, 7, vec![0, 125, 127, 250]),
        (2, 3, 2, 1000, vec![0, 2]),
        (4, 3, 2, 1000, vec![0, 2, 4]),
    ] {
        let all = rows(n, d, n as u64 + d as u64);
        let p = params(1_501, sample_dim, redund_nn);
        let whole = pool_from_rows(&all).unwrap();
        let want = raw_halves(&whole, &p, &mut no_progress).unwrap();
        for batch in [64, 1_000] {
            let got = run_sharded(&all, &cuts, &p, batch);
            assert_eq!(got.first, want.first, "{n} {cuts:?} {batch}");
            assert_eq!(got.second, want.second, "{n} {cuts:?} {batch}");
        }
    }
}

/// Shards that first send only their share of the k nearest (with a
/// margin, or with none so that most samples are asked again): the same
/// bits, and with the margin almost no sample asked again.
#[test]
fn bounded_first_sends_give_the_same_bits() {
    let all = rows(900, 4, 21);
    let whole = pool_from_rows(&all).unwrap();
    for (redund_nn, cuts) in [(60, vec![0, 300, 600, 900]), (1000, vec![0, 450, 900])] {
        let p = params(1_200, 2, redund_nn);
        let want = raw_halves(&whole, &p, &mut no_progress).unwrap();
        for margin in [3.0, 0.0, -100.0] {
            let (got, retried) = run_sharded_with(&all, &cuts, &p, 500, margin);
            assert_eq!(got.first, want.first, "{redund_nn} {margin}");
            assert_eq!(got.second, want.second, "{redund_nn} {margin}");
            if margin == -100.0 && redund_nn < 900 {
                // A share of 0 rows: every sample is asked again.
                assert_eq!(retried, 1_200);
            }
            if margin == 0.0 && redund_nn < 900 {
                // Shares of 20 + 8 of 60 (a third of the rows each): some
                // samples need more, most do not.
                assert!((1..600).contains(&retried), "{retried}");
            }
            if margin == 3.0 && redund_nn < 900 {
                assert!(retried < 120, "{retried} of 1,200 samples asked again");
            }
        }
    }
    assert_eq!(first_share(1000, 500, 1000, 3.0), 500 + 68 + 8);
    assert_eq!(first_share(1000, 1000, 1000, 3.0), 1000);
    assert_eq!(first_share(10, 5, 10, f64::INFINITY), 10);
}

#[test]
fn every_isa_level_merges_alike() {
    let all = rows(400, 4, 5);
    let whole = pool_from_rows(&all).unwrap();
    let want = raw_halves(&whole, &params(800, 2, 30), &mut no_progress).unwrap();
    for isa in Isa::supported() {
        let p = Params {
            isa,
            ..params(800, 2, 30)
        };
        let got = run_sharded(&all, &[0, 133, 400], &p, 100);
        assert_eq!(got.first, want.first, "{isa:?}");
        assert_eq!(got.second, want.second, "{isa:?}");
    }
}

/// The median selection finds the global median exactly, for odd and even
/// counts, negative values, -0 and +0, and duplicates across shards.
#[test]
fn radix_median_is_exact() {
    let mut rng = TestRng(7);
    for trial in 0..40 {
        let n = 2 + trial * 7;
        let all: Vec<Vec<f32>> = (0..n)
            .map(|i| {
                vec![
                    rng.unit() * 10.0 - 5.0,
                    [-0.0, 0.0, 1.0, -3.0][i % 4],
                    (rng.unit() * 3.0).floor(),
                ]
            })
            .collect();
        let whole = pool_from_rows(&all).unwrap();
        let cut = n / 3;
        let cuts = if cut >= 2 && n - cut >= 2 {
            vec![0, cut, n]
        } else {
            vec![0, n]
        };
        let shards: Vec<RowShard> = cuts
            .windows(2)
            .map(|w| {
                let pool = pool_from_rows(&all[w[0]..w[1]]).unwrap();
                RowShard::new(pool, w[0] as u64, n as u64, params(10, 2, 5)).unwrap()
            })
            .collect();
        let prefixes = median_keys(&shards, n as u64);
        let stats = stats_from(
            whole.stats.lo.clone(),
            whole.stats.hi.clone(),
            &prefixes,
            n as u64,
        );
        for j in 0..3 {
            assert_eq!(
                stats.md[j].to_bits(),
                whole.stats.md[j].to_bits(),
                "n {n} dim {j}"
            );
        }
    }
}

#[test]
fn bad_calls_are_refused() {
    let all = rows(10, 3, 1);
    let pool = pool_from_rows(&all).unwrap();
    assert!(RowShard::new(pool, 5, 12, params(10, 2, 5)).is_err());
    let pool = pool_from_rows(&all).unwrap();
    let mut s = RowShard::new(pool, 0, 10, params(10, 2, 5)).unwrap();
    assert!(s.winners(0, 3).is_err(), "statistics not set");
    s.set_stats(s.pool().stats.clone()).unwrap();
    assert!(s.winners(8, 3).is_err(), "past n_sample");
    assert!(s.neighbours(&[0], &[1], &[0.0], 5).is_err(), "coordinates");
    assert!(
        s.neighbours(&[10], &[1], &[0.0, 0.0], 5).is_err(),
        "past n_sample"
    );
    let one = Merged {
        offsets: vec![0, 0],
        ..Merged::default()
    };
    assert!(splice(&one, &[1], &one).is_err());
    let two = Merged {
        offsets: vec![0, 0, 0],
        ..Merged::default()
    };
    assert!(
        splice(&two, &[1, 0], &two).is_err(),
        "positions out of order"
    );
    let bad = Merged {
        offsets: vec![0, 2, 1],
        row: vec![0],
        fixed: vec![1],
    };
    assert!(s.apply(0, &[1, 2], &bad).is_err(), "offsets that decrease");
    assert!(s.key_histogram(&[0; 6], 30, 11).is_err());
    let wrong = Merged {
        offsets: vec![0],
        ..Merged::default()
    };
    assert!(s.apply(0, &[1], &wrong).is_err());
    assert!(merge_winners(&[], 2).is_err());
}

//! Every level against the portable kernels (the plain reference), bit for
//! bit, on fresh random inputs with ties, duplicates, lengths around every
//! vector width, and float16 columns; plus the `Isa` token's rules.

use super::*;
use crate::rng::TestRng;
use half::f16;

/// Lengths around the vector widths and unroll steps of every level.
const LENGTHS: [usize; 14] = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1000, 4099];

/// Values with many ties (coarse grid) and a spread of magnitudes.
fn values(rng: &mut TestRng, n: usize, coarse: bool) -> Vec<f32> {
    (0..n)
        .map(|_| {
            if coarse {
                (rng.next() % 9) as f32 * 0.5 - 2.0
            } else {
                rng.unit() * 8.0 - 4.0
            }
        })
        .collect()
}

/// float16 bits of `v` and the f32 values they hold.
fn halves(v: &[f32]) -> (Vec<u16>, Vec<f32>) {
    let bits: Vec<u16> = v.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
    let wide = bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
    (bits, wide)
}

fn sorted(mut v: Vec<Neighbour>) -> Vec<Neighbour> {
    v.sort_by(Neighbour::cmp_key);
    v
}

#[test]
fn passes_equal_the_portable_kernels() {
    let reference = Isa::portable();
    let mut rng = TestRng(11);
    let (mut scratch, mut want, mut got) = (Vec::new(), Vec::new(), Vec::new());
    for (trial, n) in LENGTHS.iter().copied().cycle().take(56).enumerate() {
        let coarse = trial % 2 == 0;
        let a = values(&mut rng, n, coarse);
        let b = values(&mut rng, n, coarse);
        let c = values(&mut rng, n, coarse);
        let (a16, a_wide) = halves(&a);
        let (b16, b_wide) = halves(&b);
        let q = [rng.unit() * 6.0 - 3.0, rng.unit() * 6.0 - 3.0, 0.5];
        // Every third trial a small limit: hits in few blocks, as in the
        // engine (the passes skip blocks without one).
        let limit = rng.unit() * if trial % 3 == 0 { 0.05 } else { 4.0 };
        let exclude = rng.next() % (n as u32 + 1);
        for isa in Isa::supported() {
            let name = isa.name();
            for cols in [&[&a[..], &b[..]][..], &[&a[..], &b[..], &c[..]][..]] {
                let q = &q[..cols.len()];
                assert_eq!(
                    isa.nearest(cols, q),
                    reference.nearest(cols, q),
                    "{name} n {n}"
                );
                reference.within(cols, q, limit, exclude, &mut scratch, &mut want);
                isa.within(cols, q, limit, exclude, &mut scratch, &mut got);
                assert_eq!(sorted(got.clone()), sorted(want.clone()), "{name} n {n}");
            }
            // float16 columns read in place equal their widened copies.
            let wide = [&a_wide[..], &b_wide[..]];
            let q2 = [q[0], q[1]];
            if let Some(nb) = isa.nearest_f16(&a16, &b16, q2) {
                assert_eq!(nb, reference.nearest(&wide, &q2), "{name} f16 n {n}");
            }
            reference.within(&wide, &q2, limit, exclude, &mut scratch, &mut want);
            if isa.within_f16(&a16, &b16, q2, limit, exclude, &mut scratch, &mut got) {
                assert_eq!(
                    sorted(got.clone()),
                    sorted(want.clone()),
                    "{name} f16 n {n}"
                );
            }
        }
    }
}

#[test]
fn candidate_kernels_equal_the_portable_kernels() {
    let reference = Isa::portable();
    let mut rng = TestRng(12);
    for (trial, n) in LENGTHS.iter().copied().cycle().take(56).enumerate() {
        let coarse = trial % 2 == 1;
        let a = values(&mut rng, n, coarse);
        let b = values(&mut rng, n, coarse);
        let (a16, b16) = (halves(&a).0, halves(&b).0);
        let q = [rng.unit() * 4.0 - 2.0, rng.unit() * 4.0 - 2.0];
        let limit = rng.unit() * 6.0;
        let mut want = Candidates::default();
        reference.collect(&a, &b, q, limit, &mut want);
        let mut want16 = Candidates::default();
        let widened = [halves(&a).1, halves(&b).1];
        reference.collect(&widened[0], &widened[1], q, limit, &mut want16);
        for isa in Isa::supported() {
            let name = isa.name();
            let mut got = Candidates::default();
            isa.collect(&a, &b, q, limit, &mut got);
            assert_eq!(
                (&got.rows, &got.xa, &got.xb),
                (&want.rows, &want.xa, &want.xb)
            );
            if isa.collect_f16(&a16, &b16, q, limit, &mut got) {
                let got = (&got.rows, &got.xa, &got.xb);
                assert_eq!(got, (&want16.rows, &want16.xa, &want16.xb), "{name}");
            }
            let mut got = Candidates::default();
            isa.collect(&a, &b, q, limit, &mut got);
            assert_eq!(
                isa.nearest_of(&got, q),
                reference.nearest_of(&want, q),
                "{name}"
            );
            let centre = [rng.unit() - 0.5, rng.unit() - 0.5];
            let exclude = got.rows.get(got.len() / 2).copied().unwrap_or(u32::MAX);
            let t = rng.unit() * 3.0;
            let within = isa.distances_to(&mut got, centre, exclude, t);
            assert_eq!(
                within,
                reference.distances_to(&mut want, centre, exclude, t)
            );
            assert_eq!(got.dist, want.dist, "{name}");
            let (t1, t2) = (rng.unit() * 2.0, rng.unit() * 4.0);
            assert_eq!(
                isa.count_le2(&got.dist, t1, t2),
                reference.count_le2(&want.dist, t1, t2)
            );
            let (mut x, mut y) = (Vec::new(), Vec::new());
            isa.between(&got.dist, t1.min(t2), t1.max(t2), &mut x);
            reference.between(&want.dist, t1.min(t2), t1.max(t2), &mut y);
            assert_eq!(x, y, "{name}");
            // Emit at an actual distance, with some of its ties.
            if let Some(&kth) = got.dist.get(got.len() / 3) {
                let ties = got.dist.iter().filter(|&&d| d == kth).count();
                let take = (rng.next() as usize) % (ties + 1);
                let (mut x, mut y) = (Vec::new(), Vec::new());
                isa.emit(&got, kth, take, &mut x);
                reference.emit(&want, kth, take, &mut y);
                assert_eq!(x, y, "{name}");
            }
        }
    }
}

#[test]
fn coarse_collection_equals_a_scalar_filter() {
    let mut rng = TestRng(13);
    for n in LENGTHS.into_iter().chain([65_536 + 70]) {
        let ca: Vec<i16> = (0..n)
            .map(|_| (rng.next() % 32_767) as i16 - 16_383)
            .collect();
        let cb: Vec<i16> = (0..n)
            .map(|_| (rng.next() % 32_767) as i16 - 16_383)
            .collect();
        let (xa, xb) = (values(&mut rng, n, false), values(&mut rng, n, false));
        let q = [(rng.next() % 32_767) as i16 - 16_383, 0];
        // Any limit, small ones (a few hits per 32 rows or none), and the
        // largest (every row; the portable pass's any-test needs limit + 1).
        for limit in [
            (rng.next() % 65_535) as u16,
            (rng.next() % 4_000) as u16,
            u16::MAX,
        ] {
            let want: Vec<u32> = (0..n as u32)
                .filter(|&r| {
                    let d = |c: &[i16], q: i16| (i32::from(c[r as usize]) - i32::from(q)).abs();
                    d(&ca, q[0]) + d(&cb, q[1]) <= i32::from(limit)
                })
                .collect();
            // A fresh buffer, and one whose last call kept every row: the
            // AVX2 pass picks its sparse or dense loop from that count.
            for last in [0, n] {
                for isa in Isa::supported() {
                    let mut cand = Candidates::default();
                    cand.rows.extend(0..last as u32);
                    isa.collect_coarse([&ca, &cb], q, limit, [&xa, &xb], &mut cand);
                    check_coarse(&cand, &want, [&xa, &xb], isa, n);
                }
            }
        }
    }
}

/// A row at exactly the limit is kept, alone in its block of rows and
/// everything else far: the blocks' any-tests must include equality.
#[test]
fn coarse_collection_keeps_rows_at_exactly_the_limit() {
    let mut rng = TestRng(15);
    for n in LENGTHS {
        let (xa, xb) = (values(&mut rng, n, false), values(&mut rng, n, false));
        let q = [-40, 25];
        for limit in [0u16, 1, 77, 16_000] {
            let (mut ca, mut cb) = (vec![16_383i16; n], vec![-16_383i16; n]);
            let want: Vec<u32> = (0..n as u32)
                .filter(|_| rng.next().is_multiple_of(37))
                .collect();
            for &r in &want {
                let split = (rng.next() % (u32::from(limit) + 1)) as i16;
                ca[r as usize] = q[0] - split;
                cb[r as usize] = q[1] + (limit as i16 - split);
            }
            for isa in Isa::supported() {
                let mut cand = Candidates::default();
                isa.collect_coarse([&ca, &cb], q, limit, [&xa, &xb], &mut cand);
                check_coarse(&cand, &want, [&xa, &xb], isa, n);
            }
        }
    }
}

/// `cand` holds exactly the rows `want`, with their coordinates.
fn check_coarse(cand: &Candidates, want: &[u32], exact: [&[f32]; 2], isa: Isa, n: usize) {
    let [xa, xb] = exact;
    assert_eq!(cand.rows, want, "{} n {n}", isa.name());
    let coords: Vec<(f32, f32)> = want
        .iter()
        .map(|&r| (xa[r as usize], xb[r as usize]))
        .collect();
    let got: Vec<(f32, f32)> = cand
        .xa
        .iter()
        .copied()
        .zip(cand.xb.iter().copied())
        .collect();
    assert_eq!(got, coords);
}

#[test]
fn band_kernels_equal_the_portable_kernels() {
    let reference = Isa::portable();
    let mut rng = TestRng(14);
    for (trial, n) in LENGTHS.iter().copied().cycle().take(28).enumerate() {
        let other = values(&mut rng, n, trial % 2 == 0);
        let other16 = halves(&other).0;
        // A bucket: scattered rows, always including the last (the float16
        // gathers read that one alone).
        let mut rows: Vec<u32> = (0..n as u32)
            .filter(|_| rng.next().is_multiple_of(3))
            .collect();
        rows.push(n as u32 - 1);
        let vals = values(&mut rng, rows.len(), false);
        for col in [Col::F32(&other), Col::F16(&other16)] {
            let block = Block {
                rows: &rows,
                vals: &vals,
                other: col,
                qb: rng.unit() - 0.5,
                qo: rng.unit() - 0.5,
            };
            let limit = rng.unit() * 3.0;
            let exclude = rows[rows.len() / 2];
            let (mut want_d, mut want_n) = (Vec::new(), Vec::new());
            reference.band_distances(block, &mut want_d);
            reference.band_collect_within(block, limit, exclude, &mut want_n);
            for isa in Isa::supported() {
                let (mut got_d, mut got_n) = (Vec::new(), vec![Neighbour { row: 7, dist: 1.0 }]);
                isa.band_distances(block, &mut got_d);
                isa.band_collect_within(block, limit, exclude, &mut got_n);
                assert_eq!(got_d, want_d, "{} n {n}", isa.name());
                // Appends after what `out` held.
                assert_eq!(got_n[0], Neighbour { row: 7, dist: 1.0 });
                assert_eq!(got_n[1..], want_n[..], "{} n {n}", isa.name());
            }
        }
    }
}

#[test]
fn float16_widening_is_exact_for_every_bit_pattern() {
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    for isa in Isa::supported() {
        let mut out = Vec::new();
        isa.widen_f16(&bits[3..], &mut out);
        for (&b, &x) in bits[3..].iter().zip(&out) {
            let want = f16::from_bits(b).to_f32();
            assert!(
                x.to_bits() == want.to_bits() || (x.is_nan() && want.is_nan()),
                "{b:#x}"
            );
        }
    }
}

#[test]
fn floor_to_i64_equals_truncation() {
    let mut rng = TestRng(15);
    let edges = [
        0.0,
        0.5,
        1.0,
        1.5,
        2.5,
        4_294_967_296.5,
        4_503_599_627_370_495.5,
    ];
    let two52 = 4_503_599_627_370_496.0;
    let randoms = (0..100_000).map(|i| {
        let x = f64::from(rng.next()) / f64::from(1u32 << 31);
        x * [1.0, 1e3, 4_294_967_296.0, two52][i % 4]
    });
    for v in edges.into_iter().chain([two52, two52 - 1.0]).chain(randoms) {
        assert_eq!(floor_to_i64(v), v as i64, "{v}");
    }
}

#[test]
fn the_isa_token_checks_the_cpu() {
    let supported = Isa::supported();
    assert_eq!(supported[0], Isa::portable());
    assert_eq!(*supported.last().unwrap(), Isa::best());
    for level in Level::ALL {
        assert_eq!(Isa::new(level).is_ok(), level.supported(), "{level:?}");
        assert_eq!(Level::parse(level.name()), Some(level));
        let chosen = Isa::from_setting(Some(&level.name().to_uppercase()));
        match chosen {
            Ok(isa) => assert_eq!(isa.level(), level),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(level.name()) && msg.contains(ISA_ENV), "{msg}");
            }
        }
    }
    assert_eq!(Isa::from_setting(None).unwrap(), Isa::best());
    assert_eq!(Isa::from_setting(Some(" ")).unwrap(), Isa::best());
    let err = Isa::from_setting(Some("sse9")).unwrap_err().to_string();
    assert!(err.contains("sse9") && err.contains("avx2"), "{err}");
}

/// Inputs the vector kernels would read past (columns of different
/// lengths, rows past the other column, distances not computed) panic at
/// the dispatch, on every level, rather than reach unchecked reads.
#[test]
fn kernels_refuse_inputs_they_would_read_past() {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    let refused = |f: &mut dyn FnMut()| catch_unwind(AssertUnwindSafe(f)).is_err();
    let (long, short) = (vec![0.5f32; 64], vec![0.5f32; 8]);
    let other = vec![0.5f32; 16];
    for isa in Isa::supported() {
        let cols = [&long[..], &short[..]];
        assert!(refused(&mut || {
            isa.nearest(&cols, &[0.0, 0.0]);
        }));
        assert!(refused(&mut || {
            isa.within(&cols, &[0.0, 0.0], 1.0, 0, &mut Vec::new(), &mut Vec::new());
        }));
        assert!(refused(&mut || {
            isa.subsample_distances(&cols, &[0.0, 0.0], &mut Vec::new());
        }));
        assert!(refused(&mut || {
            isa.nearest(&[&long[..]], &[0.0, 0.0]);
        }));
        let block = Block {
            rows: &[3, 5000],
            vals: &[0.0, 0.0],
            other: Col::F32(&other),
            qb: 0.0,
            qo: 0.0,
        };
        assert!(refused(&mut || isa.band_distances(block, &mut Vec::new())));
        assert!(refused(&mut || {
            isa.band_collect_within(block, 1.0, 0, &mut Vec::new());
        }));
        let mut cand = Candidates::default();
        isa.collect(&long, &long, [0.5, 0.5], 1.0, &mut cand);
        assert_eq!(cand.len(), 64);
        assert!(refused(&mut || isa.emit(&cand, 0.0, 0, &mut Vec::new())));
        cand.xb.pop();
        assert!(refused(&mut || {
            isa.distances_to(&mut cand, [0.0, 0.0], 0, 1.0);
        }));
        assert!(refused(&mut || {
            isa.nearest_of(&cand, [0.0, 0.0]);
        }));
    }
}

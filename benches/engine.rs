//! Engine micro-benchmark without Python:
//! `cargo bench --bench engine -- N D SAMPLES [brute|band|auto]`.
//! Prints prep time and per-sample time for 1 and all threads (or only
//! `THREADS` threads when that variable is set), at every instruction-set
//! level this CPU runs (or only the one `ZCORE_FAST_ISA` names), with each
//! level's time as a ratio to the best level's, measured in the same run.

use std::time::Instant;
use zcore_fast::arch::{Isa, ISA_ENV};
use zcore_fast::npy::Dtype;
use zcore_fast::pool::{Pool, Source};
use zcore_fast::rng::Stream;
use zcore_fast::score::{self as zcore, Params, Search};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, d, samples) = (
        *args.first().unwrap_or(&50_000),
        *args.get(1).unwrap_or(&1280),
        *args.get(2).unwrap_or(&20_000),
    );
    let search = match std::env::args().nth(4).as_deref() {
        Some("brute") => Search::Brute,
        Some("band") => Search::Band,
        Some("pair") => Search::Pair,
        _ => Search::Auto,
    };
    let mut rng = Stream::new(1, 7, 0);
    let centres: Vec<f32> = (0..20 * d)
        .map(|_| (rng.unit_open() * 4.0 - 2.0) as f32)
        .collect();
    let mut bytes = Vec::with_capacity(n * d * 4);
    for i in 0..n {
        let c = (i * 7919) % 20;
        for j in 0..d {
            let noise = (rng.unit_open() + rng.unit_open() + rng.unit_open() - 1.5) as f32;
            bytes.extend_from_slice(&(centres[c * d + j] + noise).to_le_bytes());
        }
    }
    let src = Source {
        bytes: &bytes,
        dtype: Dtype::F32,
        rows: n,
        cols: d,
        fortran_order: false,
        name: "synthetic",
    };
    let threads = std::thread::available_parallelism().map_or(1, |v| v.get());
    let tp = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    let t = Instant::now();
    let pool = tp.install(|| Pool::build(&[src])).unwrap();
    let prep = t.elapsed().as_secs_f64();
    // THREADS=n measures n threads only.
    let counts = match std::env::var("THREADS").ok().and_then(|v| v.parse().ok()) {
        Some(t) => vec![t],
        None => vec![1, threads],
    };
    let levels = match std::env::var(ISA_ENV) {
        Ok(v) if !v.trim().is_empty() => vec![Isa::from_env().unwrap_or_else(|e| panic!("{e}"))],
        _ => Isa::supported(),
    };
    for th in counts {
        let mut times = Vec::new();
        // Best level first: the reference of the ratios.
        for &isa in levels.iter().rev() {
            let p = Params {
                n_sample: samples as u64,
                threads: th,
                search,
                isa,
                ..Params::default()
            };
            let t = Instant::now();
            tp.install(|| zcore::score(&pool, &p, &mut zcore::no_progress))
                .unwrap();
            let el = t.elapsed().as_secs_f64();
            times.push(el);
            println!(
                "N={n} D={d} samples={samples} threads={th} {search:?} isa={}: prep {prep:.2} s, \
                 scoring {el:.2} s = {:.1} us/sample, {:.2}x the time of {}",
                isa.name(),
                el / samples as f64 * 1e6,
                el / times[0],
                levels.last().unwrap().name(),
            );
        }
    }
}

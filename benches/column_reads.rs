//! The memory floor of the one pass: `cargo bench --bench column_reads -- [N] [D]`.
//!
//! Each two-dimensional sample reads two whole columns of the 16-bit coarse
//! copy (2 N bytes each). The sample order keeps one of them in L2 for many
//! samples; the other comes from L3 or memory every time. This measures how
//! long one thread takes to read a column of the copy's size and layout
//! (N x D i16, dimension-major; default the CIFAR-scale 50,000 x 1,280,
//! 128 MB), picked at random among all D (as the second column is) against
//! one column read over and over (in L2), measured in the same run. The
//! loop itself runs several times faster in L2, so the first figure is the
//! read rate: a floor on the time per sample per thread that no kernel of
//! the pass can go under while that column comes from outside L2.

use std::hint::black_box;
use std::time::Instant;

/// Columns read per measurement.
const READS: usize = 20_000;

/// Sum of one column, 16 lanes at a time (vectorised at any level; the
/// work per byte is far below what an L2 read allows).
fn column_sum(col: &[i16]) -> i32 {
    let mut acc = [0i32; 16];
    for chunk in col.chunks_exact(16) {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.wrapping_add(i32::from(v));
        }
    }
    acc.iter().fold(0, |s, &v| s.wrapping_add(v))
}

/// Microseconds per column read, over `READS` columns drawn from the first
/// `span` of them.
fn per_column(values: &[i16], n: usize, span: usize, seed: u64) -> f64 {
    let mut s = seed | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let picks: Vec<usize> = (0..READS)
        .map(|_| (next() % span as u64) as usize)
        .collect();
    let t = Instant::now();
    let mut check = 0i32;
    for &c in &picks {
        check = check.wrapping_add(column_sum(black_box(&values[c * n..(c + 1) * n])));
    }
    black_box(check);
    t.elapsed().as_secs_f64() * 1e6 / READS as f64
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (n, d) = (
        *args.first().unwrap_or(&50_000),
        *args.get(1).unwrap_or(&1280),
    );
    let values: Vec<i16> = (0..n * d).map(|i| (i % 32_749) as i16).collect();
    let bytes = 2.0 * n as f64;
    let (mut far, mut near) = (Vec::new(), Vec::new());
    for round in 0..5 {
        far.push(per_column(&values, n, d, 7 + round));
        near.push(per_column(&values, n, 1, 7 + round));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (far, near) = (median(&mut far), median(&mut near));
    println!(
        "column of {n} x i16 ({:.0} KB), one thread, median of 5: any of {d} columns \
         {far:.2} us ({:.1} GB/s); the same column again (L2) {near:.2} us ({:.1} GB/s); \
         {:.2}x",
        bytes / 1e3,
        bytes / far / 1e3,
        bytes / near / 1e3,
        far / near
    );
}

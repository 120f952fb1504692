//! Every kernel in plain Rust: the portable level, and the reference the
//! vector levels equal bit for bit. The `*_body` functions are
//! `#[inline(always)]` so the vector levels can also compile them under
//! their own target features, where the compiler vectorises the loops.
//!
//! Arithmetic shared by every level: a distance is |x_a - q_a| + |x_b - q_b|
//! (in `dims` order for more dimensions), in f32; weights are f64.

use super::{Block, Candidates, PenaltyBuffers};
use crate::column::Col;
use crate::neighbour::Neighbour;

const LANES: usize = 64;

/// Calls `visit(first_row, distances)` for consecutive blocks of rows.
#[inline(always)]
fn blocks(cols: &[&[f32]], q: &[f32], mut visit: impl FnMut(usize, &[f32]) -> bool) {
    let n = cols[0].len();
    let mut buf = [0f32; LANES];
    let mut base = 0;
    while base < n {
        let len = LANES.min(n - base);
        let out = &mut buf[..len];
        let first = &cols[0][base..base + len];
        for (o, &x) in out.iter_mut().zip(first) {
            *o = (x - q[0]).abs();
        }
        for (&c, &qd) in cols.iter().zip(q).skip(1) {
            let col = &c[base..base + len];
            for (o, &x) in out.iter_mut().zip(col) {
                *o += (x - qd).abs();
            }
        }
        if !visit(base, out) {
            return;
        }
        base += len;
    }
}

#[inline(always)]
pub(super) fn nearest_body(cols: &[&[f32]], q: &[f32]) -> Neighbour {
    // Pass 1: the minimum distance, with independent lanes so it vectorises.
    let mut lanes = [f32::INFINITY; LANES];
    blocks(cols, q, |_, d| {
        for (m, &v) in lanes.iter_mut().zip(d) {
            *m = if v < *m { v } else { *m };
        }
        true
    });
    let best = lanes.iter().copied().fold(f32::INFINITY, f32::min);
    // Pass 2: the lowest row at that distance (usually found early).
    let mut row = 0;
    blocks(cols, q, |base, d| match d.iter().position(|&v| v == best) {
        Some(i) => {
            row = base + i;
            false
        }
        None => true,
    });
    Neighbour {
        dist: best,
        row: row as u32,
    }
}

pub(super) fn nearest(cols: &[&[f32]], q: &[f32]) -> Neighbour {
    nearest_body(cols, q)
}

pub(super) fn nearest_f16(_: &[u16], _: &[u16], _: [f32; 2]) -> Option<Neighbour> {
    None
}

/// Appends `row` to `dst` at `*count` if `hit`, without a branch: the slot
/// is written either way and the count moves only on a hit (hits fall at
/// random, so a branch would mispredict often). `dst` has a slot past the
/// last hit.
#[inline(always)]
fn push_if<T: Copy>(dst: &mut [T], count: &mut usize, hit: bool, value: T) {
    dst[*count] = value;
    *count += usize::from(hit);
}

/// Calls `hit(i)` for every `i` with `d[i] <= limit`, in order: a bit mask
/// per 16 distances, then its set bits. Hits are a few percent of the
/// rows, so most masks are 0 and the per-row work is the compare alone.
#[inline(always)]
fn each_within(d: &[f32], limit: f32, mut hit: impl FnMut(usize)) {
    let mut chunks = d.chunks_exact(16);
    for (at, chunk) in (&mut chunks).enumerate() {
        let chunk: &[f32; 16] = chunk.try_into().expect("16 values");
        // Most blocks hold no hit: an or of 16 compares vectorises at any
        // level (compares and a move-mask), while the bit mask below is
        // built lane by lane on SSE2, so it runs only for blocks with a hit.
        if !chunk.iter().fold(false, |any, &v| any | (v <= limit)) {
            continue;
        }
        let mut mask = 0u32;
        for (i, &v) in chunk.iter().enumerate() {
            mask |= u32::from(v <= limit) << i;
        }
        while mask != 0 {
            hit(at * 16 + mask.trailing_zeros() as usize);
            mask &= mask - 1;
        }
    }
    let first = d.len() - chunks.remainder().len();
    for (i, &v) in chunks.remainder().iter().enumerate() {
        if v <= limit {
            hit(first + i);
        }
    }
}

#[inline(always)]
pub(super) fn within_body(
    cols: &[&[f32]],
    q: &[f32],
    limit: f32,
    exclude: u32,
    out: &mut Vec<Neighbour>,
) {
    out.clear();
    blocks(cols, q, |base, d| {
        each_within(d, limit, |i| {
            let row = (base + i) as u32;
            if row != exclude {
                out.push(Neighbour { row, dist: d[i] });
            }
        });
        true
    });
}

pub(super) fn within(
    cols: &[&[f32]],
    q: &[f32],
    limit: f32,
    exclude: u32,
    _: &mut Vec<u32>,
    out: &mut Vec<Neighbour>,
) {
    within_body(cols, q, limit, exclude, out)
}

pub(super) fn within_f16(
    _: &[u16],
    _: &[u16],
    _: [f32; 2],
    _: f32,
    _: u32,
    _: &mut Vec<u32>,
    _: &mut Vec<Neighbour>,
) -> bool {
    false
}

/// Distances of the subsample rows to `q` over `cols` into `out`, and their
/// least and greatest. Simple loops: the compiler vectorises them for
/// whichever instruction set the caller enables.
#[inline(always)]
pub(super) fn subsample_body(cols: &[&[f32]], q: &[f32], out: &mut Vec<f32>) -> (f32, f32) {
    out.clear();
    out.resize(cols[0].len(), 0.0);
    for (&col, &qd) in cols.iter().zip(q) {
        for (o, &x) in out.iter_mut().zip(col) {
            *o += (x - qd).abs();
        }
    }
    // Lane-wise extremes first: a float min over one chain does not
    // vectorise (the compiler may not reorder it).
    let (mut lo, mut hi) = ([f32::INFINITY; 16], [0f32; 16]);
    let mut blocks = out.chunks_exact(16);
    for block in &mut blocks {
        for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(block) {
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    }
    let tail = blocks.remainder().iter();
    let lo = lo
        .iter()
        .chain(tail.clone())
        .fold(f32::INFINITY, |m, &v| m.min(v));
    let hi = hi.iter().chain(tail).fold(0f32, |m, &v| m.max(v));
    (lo, hi)
}

pub(super) fn subsample_distances(cols: &[&[f32]], q: &[f32], out: &mut Vec<f32>) -> (f32, f32) {
    subsample_body(cols, q, out)
}

/// `blocks` and `each_within` fused for the two columns of a pass: the 16
/// distances of a step stay in registers instead of a buffer (the same
/// arithmetic in the same order, so the same bits).
#[inline(always)]
pub(super) fn collect_body(a: &[f32], b: &[f32], q: [f32; 2], limit: f32, cand: &mut Candidates) {
    cand.rows.clear();
    let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
    for (at, (xa, xb)) in (&mut ca).zip(&mut cb).enumerate() {
        // Fixed-size arrays, so the loads are whole vectors.
        let (xa, xb): (&[f32; 16], &[f32; 16]) = (
            xa.try_into().expect("16 rows"),
            xb.try_into().expect("16 rows"),
        );
        let d: [f32; 16] = std::array::from_fn(|i| (xa[i] - q[0]).abs() + (xb[i] - q[1]).abs());
        each_within(&d, limit, |i| cand.rows.push((at * 16 + i) as u32));
    }
    let first = a.len() - ca.remainder().len();
    for (i, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        if (x - q[0]).abs() + (y - q[1]).abs() <= limit {
            cand.rows.push((first + i) as u32);
        }
    }
    gather_body(Col::F32(a), Col::F32(b), cand);
}

pub(super) fn collect(a: &[f32], b: &[f32], q: [f32; 2], limit: f32, cand: &mut Candidates) {
    collect_body(a, b, q, limit, cand)
}

pub(super) fn collect_f16(_: &[u16], _: &[u16], _: [f32; 2], _: f32, _: &mut Candidates) -> bool {
    false
}

/// The 16-bit filter in plain Rust, 16 rows a step with u16 lanes (8 to
/// an SSE2 or NEON vector): differences of values within +-16,383 fit i16,
/// and the sum of two of their magnitudes fits u16.
///
/// Most steps hold no hit, so a step first asks whether any row is a hit
/// by or-ing `(limit + 1) - dist`, saturating, over its rows: non-zero
/// exactly where some `dist <= limit`. That is a subtraction and an or per
/// vector at any level; the bit mask of the hits, built lane by lane on
/// SSE2, is built only for steps with a hit.
pub(super) fn collect_coarse(
    coarse: [&[i16]; 2],
    q: [i16; 2],
    limit: u16,
    exact: [&[f32]; 2],
    cand: &mut Candidates,
) {
    cand.rows.clear();
    let dist = |x: i16, y: i16| {
        x.wrapping_sub(q[0])
            .unsigned_abs()
            .wrapping_add(y.wrapping_sub(q[1]).unsigned_abs())
    };
    // Every row is a hit where the limit is the largest u16 (and the
    // saturating test would need 65,536).
    let above = limit.checked_add(1);
    let (mut ca, mut cb) = (coarse[0].chunks_exact(16), coarse[1].chunks_exact(16));
    for (at, (a, b)) in (&mut ca).zip(&mut cb).enumerate() {
        let (a, b): (&[i16; 16], &[i16; 16]) = (a.try_into().unwrap(), b.try_into().unwrap());
        if let Some(above) = above {
            // Two vectors of 8 lanes, or-ed lane by lane.
            let mut any = [0u16; 8];
            for half in 0..2 {
                for (lane, acc) in any.iter_mut().enumerate() {
                    let row = 8 * half + lane;
                    *acc |= above.saturating_sub(dist(a[row], b[row]));
                }
            }
            if any.iter().fold(0, |x, &y| x | y) == 0 {
                continue;
            }
        }
        prefetch_rows([exact[0].as_ptr(), exact[1].as_ptr()], at * 16);
        let mut mask = 0u32;
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            mask |= u32::from(dist(x, y) <= limit) << i;
        }
        while mask != 0 {
            cand.rows.push((at * 16) as u32 + mask.trailing_zeros());
            mask &= mask - 1;
        }
    }
    let first = coarse[0].len() - ca.remainder().len();
    for (i, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        if dist(x, y) <= limit {
            cand.rows.push((first + i) as u32);
        }
    }
    gather_body(Col::F32(exact[0]), Col::F32(exact[1]), cand);
}

/// Starts the f32 line of `row` in both `exact` columns on its way to the
/// cache, while a coarse pass goes on, so that the gathers after the pass
/// find it there instead of waiting on each line in turn (every level's
/// coarse pass calls it). A hint only: on x86-64 its instruction is part of
/// the baseline (SSE); elsewhere nothing is done yet. A prefetch never
/// faults, so the address needs no bound (`wrapping_add`).
#[inline(always)]
pub(super) fn prefetch_rows(exact: [*const f32; 2], row: usize) {
    #[cfg(target_arch = "x86_64")]
    for col in exact {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of the x86-64 baseline, so every CPU this
        // code runs on has the instruction; a prefetch reads nothing and
        // never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(col.wrapping_add(row).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (exact, row);
}

/// The coordinates of `cand.rows` from columns `a` and `b` into `cand.xa`,
/// `cand.xb`.
#[inline(always)]
pub(super) fn gather_body(a: Col<'_>, b: Col<'_>, cand: &mut Candidates) {
    cand.xa.clear();
    cand.xb.clear();
    cand.xa.extend(cand.rows.iter().map(|&r| a.get(r as usize)));
    cand.xb.extend(cand.rows.iter().map(|&r| b.get(r as usize)));
}

/// round((x - c) * scale), clamped to +-span. Ties round to even: one
/// instruction where SSE4.1 or later is enabled, so the loop vectorises
/// (any rounding to nearest keeps the error within 1/2, which is all the
/// coarse filter assumes).
#[inline(always)]
pub(super) fn quantise_body(col: &[f32], c: f64, scale: f64, span: f64, out: &mut [i16]) {
    for (o, &x) in out.iter_mut().zip(col) {
        *o = ((f64::from(x) - c) * scale)
            .round_ties_even()
            .clamp(-span, span) as i16;
    }
}

pub(super) fn quantise_column(col: &[f32], c: f64, scale: f64, span: f64, out: &mut [i16]) {
    quantise_body(col, c, scale, span, out)
}

/// Distance of candidate `i` to `q`.
#[inline(always)]
fn cand_distance(cand: &Candidates, i: usize, q: [f32; 2]) -> f32 {
    (cand.xa[i] - q[0]).abs() + (cand.xb[i] - q[1]).abs()
}

/// The candidate nearest to `q`: the least distance by independent lanes
/// (so it vectorises), then the first candidate at that distance, which
/// is the lowest row (candidates ascend).
#[inline(always)]
pub(super) fn nearest_of_body(cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
    let n = cand.len();
    let (xa, xb) = (&cand.xa[..n], &cand.xb[..n]);
    let mut lanes = [f32::INFINITY; 16];
    let (mut ca, mut cb) = (xa.chunks_exact(16), xb.chunks_exact(16));
    for (a, b) in (&mut ca).zip(&mut cb) {
        for ((m, &x), &y) in lanes.iter_mut().zip(a).zip(b) {
            let d = (x - q[0]).abs() + (y - q[1]).abs();
            *m = if d < *m { d } else { *m };
        }
    }
    let tail = ca.remainder().iter().zip(cb.remainder());
    let best = tail
        .map(|(&x, &y)| (x - q[0]).abs() + (y - q[1]).abs())
        .chain(lanes)
        .fold(f32::INFINITY, |m, d| if d < m { d } else { m });
    let at = (0..n).find(|&i| cand_distance(cand, i, q) == best)?;
    Some(Neighbour {
        row: cand.rows[at],
        dist: best,
    })
}

pub(super) fn nearest_of(cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
    nearest_of_body(cand, q)
}

#[inline(always)]
pub(super) fn distances_to_body(
    cand: &mut Candidates,
    c: [f32; 2],
    exclude: u32,
    limit: f32,
) -> usize {
    let (rows, xa, xb) = (&cand.rows, &cand.xa, &cand.xb);
    cand.dist.clear();
    cand.dist
        .extend(rows.iter().zip(xa.iter().zip(xb)).map(|(&r, (&a, &b))| {
            let d = (a - c[0]).abs() + (b - c[1]).abs();
            if r == exclude {
                f32::INFINITY
            } else {
                d
            }
        }));
    count_le(&cand.dist, limit)
}

pub(super) fn distances_to(cand: &mut Candidates, c: [f32; 2], exclude: u32, limit: f32) -> usize {
    distances_to_body(cand, c, exclude, limit)
}

#[inline(always)]
pub(super) fn between_body(dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
    out.clear();
    out.resize(dist.len() + 1, 0.0);
    let mut count = 0;
    for &d in dist {
        push_if(out, &mut count, d > lo && d <= hi, d);
    }
    out.truncate(count);
}

pub(super) fn between(dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
    between_body(dist, lo, hi, out)
}

/// How many of `dist` are at or below `t` (u32 lanes, so it vectorises
/// 8 to a 256-bit vector; `dist` is far shorter than 2^32).
#[inline(always)]
pub(super) fn count_le(dist: &[f32], t: f32) -> usize {
    dist.iter().map(|&d| u32::from(d <= t)).sum::<u32>() as usize
}

#[inline(always)]
pub(super) fn count_le2_body(dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
    (count_le(dist, t1), count_le(dist, t2))
}

pub(super) fn count_le2(dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
    count_le2_body(dist, t1, t2)
}

pub(super) fn emit(cand: &Candidates, kth: f32, ties: usize, out: &mut Vec<Neighbour>) {
    let mut ties = ties;
    out.clear();
    out.resize(cand.len() + 1, Neighbour { row: 0, dist: 0.0 });
    let mut count = 0;
    for (&row, &dist) in cand.rows.iter().zip(&cand.dist) {
        let tie = dist == kth && ties > 0;
        ties -= usize::from(tie);
        push_if(out, &mut count, dist < kth || tie, Neighbour { row, dist });
    }
    out.truncate(count);
}

/// Calls `f(row, dist)` for every row of the block.
#[inline(always)]
pub(super) fn each_band_distance(b: Block<'_>, mut f: impl FnMut(u32, f32)) {
    match b.other {
        Col::F32(c) => {
            for (&row, &vb) in b.rows.iter().zip(b.vals) {
                f(row, (vb - b.qb).abs() + (c[row as usize] - b.qo).abs());
            }
        }
        Col::F16(c) => {
            for (&row, &vb) in b.rows.iter().zip(b.vals) {
                let xo = widen_one(c[row as usize]);
                f(row, (vb - b.qb).abs() + (xo - b.qo).abs());
            }
        }
    }
}

pub(super) fn band_distances(b: Block<'_>, out: &mut Vec<f32>) {
    out.clear();
    each_band_distance(b, |_, dist| out.push(dist));
}

pub(super) fn band_collect_within(
    b: Block<'_>,
    limit: f32,
    exclude: u32,
    out: &mut Vec<Neighbour>,
) {
    each_band_distance(b, |row, dist| {
        if dist <= limit && row != exclude {
            out.push(Neighbour { row, dist });
        }
    });
}

/// floor(v) as an integer, for 0 <= v <= 2^52, in a form every vector
/// level can compute (x86 before AVX-512 DQ has no f64 -> i64 vector
/// conversion): adding 2^52 rounds v to an integer in the low mantissa
/// bits (every f64 in [2^52, 2^53] is an integer, so the sum is exact up to
/// rounding to nearest), a rounding up is undone, and the bits of the
/// result, less those of 2^52, are the integer. Equal to `v as i64` (which
/// truncates, i.e. floors non-negative v) on that whole range.
#[inline(always)]
pub fn floor_to_i64(v: f64) -> i64 {
    const MAGIC: f64 = 4_503_599_627_370_496.0; // 2^52
    debug_assert!((0.0..=MAGIC).contains(&v));
    let r = (v + MAGIC) - MAGIC;
    let r = if r > v { r - 1.0 } else { r };
    (r + MAGIC).to_bits() as i64 - MAGIC.to_bits() as i64
}

/// Weights are summed as integer multiples of 2^-52 (exact, so the order
/// of terms cannot matter), `SUM_CHUNK` at a time in an i64.
const SUM_UNIT: f64 = 4_503_599_627_370_496.0;
const SUM_CHUNK: usize = 1024;

#[inline(always)]
pub(super) fn penalty_body(neighbours: &[Neighbour], exp: f64, unit: f64, p: &mut PenaltyBuffers) {
    p.rows.clear();
    p.weights.clear();
    p.fixed.clear();
    let Some(first) = nearest_neighbour(neighbours) else {
        return;
    };
    if first.dist == 0.0 {
        p.rows.push(first.row);
        p.weights.push(1.0);
        p.fixed.push(unit as i64);
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
    // w in [0, 1]: adding 0.5 and flooring rounds to nearest.
    p.fixed
        .extend(w.iter().map(|&x| floor_to_i64(x * unit + 0.5)));
}

pub(super) fn penalty_weights(
    neighbours: &[Neighbour],
    exp: f64,
    unit: f64,
    p: &mut PenaltyBuffers,
) {
    penalty_body(neighbours, exp, unit, p)
}

/// The nearest neighbour (ties: lowest row), by lanes so it vectorises.
#[inline(always)]
fn nearest_neighbour(neighbours: &[Neighbour]) -> Option<Neighbour> {
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
        let part: i64 = chunk.iter().map(|&x| floor_to_i64(x * SUM_UNIT)).sum();
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

pub(super) fn widen_f16(bits: &[u16], out: &mut Vec<f32>) {
    out.clear();
    out.extend(bits.iter().map(|&b| widen_one(b)));
}

/// float16 bits to f32, exactly, without a branch, so that a loop of them
/// vectorises at any level (the `half` crate's software conversion
/// branches on the kind of value, and ran a value at a time: 38 % of the
/// portable level's time at ImageNet scale). The exponent and mantissa
/// moved to f32's places read as 2^-112 times the value, for normal and
/// subnormal halves alike, and the product by 2^112 is exact. Infinities
/// and NaNs (exponent all ones) take f32's all-ones exponent instead,
/// keeping their mantissa (a NaN stays a NaN).
#[inline(always)]
fn widen_one(h: u16) -> f32 {
    const TWO_POW_112: f32 = f32::from_bits((127 + 112) << 23);
    let h = u32::from(h);
    let sign = (h & 0x8000) << 16;
    let moved = (h & 0x7fff) << 13;
    let finite = (f32::from_bits(moved) * TWO_POW_112).to_bits();
    let special = 0x7f80_0000 | moved;
    f32::from_bits(
        sign | if h & 0x7c00 == 0x7c00 {
            special
        } else {
            finite
        },
    )
}

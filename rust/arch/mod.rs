//! How each CPU runs the engine's inner loops.
//!
//! The rest of the crate says *what* is computed (searches, penalties); this
//! module says *how*, once per instruction-set level:
//!
//! - `portable.rs`: every kernel in plain Rust, written so the compiler can
//!   vectorise it for any target (SSE2 on x86-64, NEON on aarch64). It is
//!   the reference the other levels must equal bit for bit.
//! - `x86_64/avx2.rs`: x86-64-v3 (AVX2, FMA, F16C, BMI1/2, POPCNT).
//! - `x86_64/avx512.rs`: AVX-512 F/BW/VL/DQ; `x86_64/coarse16.rs` is its
//!   16-bit row filter where the CPU also has VBMI2 (else it uses AVX2's).
//!
//! Every level provides the same functions; `Isa` holds the level and is
//! the one place that dispatches (a `match` per kernel). A new level (NEON,
//! say) is one more module and one more arm per kernel.
//!
//! Soundness: an `Isa` can only be made by detection (`Isa::best`,
//! `Isa::new`, which checks the CPU) or as `Isa::portable()`; its fields
//! are private. So safe code holding an `Isa` cannot reach an instruction
//! the CPU lacks, and every `unsafe` call below rests on that.

use crate::column::Col;
use crate::error::{invalid, Result};
use crate::neighbour::Neighbour;

mod portable;
#[cfg(target_arch = "x86_64")]
mod x86_64;

pub use portable::floor_to_i64;

/// An instruction-set level, by name (what users choose and reports show).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Plain Rust for the build's baseline target.
    Portable,
    /// x86-64-v3: AVX2, FMA, F16C, BMI1, BMI2, POPCNT.
    Avx2,
    /// x86-64 with AVX-512 F, BW, VL and DQ (and everything AVX2 has).
    Avx512,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::Portable, Level::Avx2, Level::Avx512];

    /// The name `ZCORE_FAST_ISA` takes and reports show.
    pub fn name(self) -> &'static str {
        match self {
            Level::Portable => "portable",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// The level called `name` (case-insensitive), if any.
    pub fn parse(name: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name.trim()))
    }

    /// Whether this CPU can run the level.
    pub fn supported(self) -> bool {
        match self {
            Level::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => x86_64::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => x86_64::has_avx512(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

/// The environment variable that picks a level (`portable`, `avx2`,
/// `avx512`); unset or empty means the best this CPU runs.
pub const ISA_ENV: &str = "ZCORE_FAST_ISA";

/// Proof that this CPU runs a level's kernels: made only by checking the
/// CPU (or as the portable level, which every CPU runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isa {
    level: Level,
    /// AVX-512 VBMI2 was detected too (the 16-bit row filter).
    vbmi2: bool,
}

impl Isa {
    /// The portable level.
    pub fn portable() -> Isa {
        Isa {
            level: Level::Portable,
            vbmi2: false,
        }
    }

    /// `level`, if this CPU runs it; else an error naming what it lacks and
    /// what to use instead.
    pub fn new(level: Level) -> Result<Isa> {
        if !level.supported() {
            return Err(invalid!(
                "this CPU cannot run the {} kernels (it supports: {}); \
                 set {ISA_ENV} to one of those, or unset it",
                level.name(),
                Level::ALL
                    .into_iter()
                    .filter(|l| l.supported())
                    .map(Level::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        #[cfg(target_arch = "x86_64")]
        let vbmi2 = level == Level::Avx512 && x86_64::has_vbmi2();
        #[cfg(not(target_arch = "x86_64"))]
        let vbmi2 = false;
        Ok(Isa { level, vbmi2 })
    }

    /// The best level this CPU runs.
    pub fn best() -> Isa {
        let level = Level::ALL
            .into_iter()
            .rev()
            .find(|l| l.supported())
            .unwrap_or(Level::Portable);
        Isa::new(level).unwrap_or_else(|_| Isa::portable())
    }

    /// The level `ZCORE_FAST_ISA` names, or the best one when it is unset
    /// or empty. An unknown name or a level this CPU lacks is an error.
    pub fn from_env() -> Result<Isa> {
        Isa::from_setting(std::env::var(ISA_ENV).ok().as_deref())
    }

    /// `from_env` for a given value of the variable (None: unset).
    pub fn from_setting(value: Option<&str>) -> Result<Isa> {
        match value {
            Some(v) if !v.trim().is_empty() => {
                let level = Level::parse(v).ok_or_else(|| {
                    invalid!(
                        "{ISA_ENV}={v:?} is not a known level; use portable, avx2 or \
                         avx512, or unset it to use the best this CPU runs"
                    )
                })?;
                Isa::new(level)
            }
            _ => Ok(Isa::best()),
        }
    }

    /// Every level this CPU runs, lowest first (tests run them all).
    pub fn supported() -> Vec<Isa> {
        Level::ALL
            .into_iter()
            .filter_map(|l| Isa::new(l).ok())
            .collect()
    }

    /// The level.
    pub fn level(self) -> Level {
        self.level
    }

    /// The level's name.
    pub fn name(self) -> &'static str {
        self.level.name()
    }
}

impl Default for Isa {
    fn default() -> Self {
        Isa::best()
    }
}

/// Rows near a point in a two-dimensional subspace, ascending, with their
/// two coordinates as f32, plus scratch for the search among them
/// (`search::one_pass`).
#[derive(Debug, Default)]
pub struct Candidates {
    /// The rows, ascending.
    pub(crate) rows: Vec<u32>,
    /// Their coordinates in the first dimension.
    pub(crate) xa: Vec<f32>,
    /// Their coordinates in the second dimension.
    pub(crate) xb: Vec<f32>,
    /// Distances of the candidates to a centre (`f32::INFINITY` for the
    /// excluded row).
    pub(crate) dist: Vec<f32>,
    /// The distances left in the bracket of the k-th.
    pub(crate) bracket: Vec<f32>,
}

impl Candidates {
    /// How many rows were collected.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Panics unless the coordinates (and, with `dist`, the distances)
    /// have one entry per row: the vector kernels read them unchecked.
    fn check(&self, dist: bool) {
        let n = self.rows.len();
        assert!(self.xa.len() == n && self.xb.len() == n && (!dist || self.dist.len() == n));
    }
}

/// A bucket's rows for the band search, their values in the band
/// dimension, and the query: `|vb - qb| + |x_o[row] - qo|` per row.
#[derive(Clone, Copy)]
pub struct Block<'a> {
    /// Rows of the bucket.
    pub rows: &'a [u32],
    /// Their values in the band dimension.
    pub vals: &'a [f32],
    /// The other dimension's column.
    pub other: Col<'a>,
    /// Query coordinate in the band dimension.
    pub qb: f32,
    /// Query coordinate in the other dimension.
    pub qo: f32,
}

impl Block<'_> {
    /// Panics unless every row lies in `other` and each has a value: the
    /// vector kernels gather `other[row]` unchecked. (A bucket is ~128
    /// rows; the check is one vectorised pass over them.)
    fn check(&self) {
        assert_eq!(self.rows.len(), self.vals.len());
        let top = self.rows.iter().copied().max().unwrap_or(0) as usize;
        assert!(
            self.rows.is_empty() || top < self.other.len(),
            "row {top} past the column"
        );
    }
}

/// Panics unless there is at least one column, all of one length, and one
/// query coordinate per column: the vector kernels read them unchecked.
fn check_cols(cols: &[&[f32]], q: &[f32]) {
    assert!(!cols.is_empty() && q.len() == cols.len());
    assert!(cols.iter().all(|c| c.len() == cols[0].len()));
}

/// Calls the kernel `$f` of `$isa`'s level with the given arguments.
macro_rules! dispatch {
    ($isa:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $isa.level {
            Level::Portable => portable::$f($($arg),*),
            // SAFETY: an `Isa` of this level exists only if the CPU runs it
            // (see the module doc), and each `Isa` method checks the
            // kernel's input preconditions (lengths, rows) before this.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { x86_64::avx2::$f($($arg),*) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { x86_64::avx512::$f($($arg),*) },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("x86-64 levels are never made on other CPUs"),
        }
    };
}

/// The kernels. Each is documented once here; every level computes the
/// same bits.
impl Isa {
    /// The row nearest to `q` over `cols` (ties: lowest row).
    pub fn nearest(self, cols: &[&[f32]], q: &[f32]) -> Neighbour {
        check_cols(cols, q);
        dispatch!(self, nearest(cols, q))
    }

    /// `nearest` over two float16 columns (bits) without widening them;
    /// None where this level has no such pass (the caller widens).
    pub fn nearest_f16(self, a: &[u16], b: &[u16], q: [f32; 2]) -> Option<Neighbour> {
        assert_eq!(a.len(), b.len());
        dispatch!(self, nearest_f16(a, b, q))
    }

    /// Every row (except `exclude`) at distance <= `limit` over `cols`, in
    /// no set order, into `out`. `scratch` is the fast paths' buffer of hit
    /// rows.
    #[allow(clippy::too_many_arguments)]
    pub fn within(
        self,
        cols: &[&[f32]],
        q: &[f32],
        limit: f32,
        exclude: u32,
        scratch: &mut Vec<u32>,
        out: &mut Vec<Neighbour>,
    ) {
        check_cols(cols, q);
        dispatch!(self, within(cols, q, limit, exclude, scratch, out))
    }

    /// `within` over two float16 columns; false (and nothing done) where
    /// this level has no such pass.
    #[allow(clippy::too_many_arguments)]
    pub fn within_f16(
        self,
        a: &[u16],
        b: &[u16],
        q: [f32; 2],
        limit: f32,
        exclude: u32,
        scratch: &mut Vec<u32>,
        out: &mut Vec<Neighbour>,
    ) -> bool {
        assert_eq!(a.len(), b.len());
        dispatch!(self, within_f16(a, b, q, limit, exclude, scratch, out))
    }

    /// Distances of the rows of `cols` (the pool's subsample columns) to
    /// `q` into `out`; returns the least and the greatest.
    pub fn subsample_distances(self, cols: &[&[f32]], q: &[f32], out: &mut Vec<f32>) -> (f32, f32) {
        check_cols(cols, q);
        dispatch!(self, subsample_distances(cols, q, out))
    }

    /// Rows within `limit` of `q` in the subspace of columns `a` and `b`,
    /// with their coordinates, into `cand`.
    pub fn collect(self, a: &[f32], b: &[f32], q: [f32; 2], limit: f32, cand: &mut Candidates) {
        assert_eq!(a.len(), b.len());
        dispatch!(self, collect(a, b, q, limit, cand))
    }

    /// `collect` over two float16 columns (bits); false, and nothing done,
    /// where this level has no such pass (the caller widens them).
    pub fn collect_f16(
        self,
        a: &[u16],
        b: &[u16],
        q: [f32; 2],
        limit: f32,
        cand: &mut Candidates,
    ) -> bool {
        assert_eq!(a.len(), b.len());
        dispatch!(self, collect_f16(a, b, q, limit, cand))
    }

    /// Rows whose 16-bit coarse distance (|ca - qa| + |cb - qb| over the
    /// coarse columns, values and `q` within +-16,383 so that the sum fits
    /// u16; every level wraps alike beyond that) is at most `limit`, with their exact coordinates from
    /// `exact`, into `cand`. 32 rows a step with AVX-512 VBMI2; with AVX2,
    /// 32 where hits are sparse and 16 where they are dense; 16 at the
    /// portable level, which prefetches the lines of hits on x86-64.
    pub fn collect_coarse(
        self,
        coarse: [&[i16]; 2],
        q: [i16; 2],
        limit: u16,
        exact: [&[f32]; 2],
        cand: &mut Candidates,
    ) {
        let n = coarse[0].len();
        assert!(coarse[1].len() == n && exact[0].len() == n && exact[1].len() == n);
        assert!(
            q.iter().all(|&x| x.unsigned_abs() <= 16_383),
            "q outside +-16,383"
        );
        #[cfg(target_arch = "x86_64")]
        if self.vbmi2 {
            // SAFETY: `vbmi2` is set only after detecting AVX-512 VBMI2 on
            // top of the AVX-512 level; the columns hold `n` values each.
            return unsafe { x86_64::coarse16::collect(coarse, q, limit, exact, cand) };
        }
        match self.level {
            Level::Portable => portable::collect_coarse(coarse, q, limit, exact, cand),
            // SAFETY: the AVX-512 level includes the AVX2 level, and an
            // `Isa` of either exists only if the CPU runs it.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 | Level::Avx512 => unsafe {
                x86_64::avx2::collect_coarse(coarse, q, limit, exact, cand)
            },
            #[cfg(not(target_arch = "x86_64"))]
            _ => unreachable!("x86-64 levels are never made on other CPUs"),
        }
    }

    /// round((x - c) * scale) of every value of `col`, clamped to
    /// +-`span`, into `out` (ties to even).
    pub fn quantise_column(self, col: &[f32], c: f64, scale: f64, span: f64, out: &mut [i16]) {
        dispatch!(self, quantise_column(col, c, scale, span, out))
    }

    /// The candidate nearest to `q` (ties: lowest row); None if there are
    /// no candidates.
    pub fn nearest_of(self, cand: &Candidates, q: [f32; 2]) -> Option<Neighbour> {
        cand.check(false);
        dispatch!(self, nearest_of(cand, q))
    }

    /// Distances of every candidate to `c` into `cand.dist` (the excluded
    /// row gets infinity), and how many are at or below `limit`.
    pub fn distances_to(
        self,
        cand: &mut Candidates,
        c: [f32; 2],
        exclude: u32,
        limit: f32,
    ) -> usize {
        cand.check(false);
        dispatch!(self, distances_to(cand, c, exclude, limit))
    }

    /// The distances in `(lo, hi]`, into `out`.
    pub fn between(self, dist: &[f32], lo: f32, hi: f32, out: &mut Vec<f32>) {
        dispatch!(self, between(dist, lo, hi, out))
    }

    /// How many of `dist` are at or below `t1`, and at or below `t2`.
    pub fn count_le2(self, dist: &[f32], t1: f32, t2: f32) -> (usize, usize) {
        dispatch!(self, count_le2(dist, t1, t2))
    }

    /// The candidates nearer than `kth` and, of those at `kth`, the `ties`
    /// lowest rows, into `out`.
    pub fn emit(self, cand: &Candidates, kth: f32, ties: usize, out: &mut Vec<Neighbour>) {
        cand.check(true);
        dispatch!(self, emit(cand, kth, ties, out))
    }

    /// The distance of every row of the block, into `out` (cleared first).
    pub fn band_distances(self, b: Block<'_>, out: &mut Vec<f32>) {
        b.check();
        dispatch!(self, band_distances(b, out))
    }

    /// Appends to `out` every row of the block other than `exclude` at
    /// distance <= `limit`, in block order.
    pub fn band_collect_within(
        self,
        b: Block<'_>,
        limit: f32,
        exclude: u32,
        out: &mut Vec<Neighbour>,
    ) {
        b.check();
        dispatch!(self, band_collect_within(b, limit, exclude, out))
    }

    /// One sample's penalties (DESIGN.md section 2, step 4) for a winner
    /// with these `neighbours` and distance exponent `exp`: the rows,
    /// their weights 1/d^exp normalised to sum 1, and the weights in fixed
    /// point (`unit` per 1, rounded to nearest). A neighbour at distance 0
    /// takes the whole penalty alone.
    pub fn penalty_weights(
        self,
        neighbours: &[Neighbour],
        exp: f64,
        unit: f64,
        out: &mut PenaltyBuffers,
    ) {
        dispatch!(self, penalty_weights(neighbours, exp, unit, out))
    }

    /// float16 bits widened to f32 (exactly), into `out` (cleared first).
    pub fn widen_f16(self, bits: &[u16], out: &mut Vec<f32>) {
        dispatch!(self, widen_f16(bits, out))
    }
}

/// The output of `Isa::penalty_weights`.
#[derive(Debug, Default, Clone)]
pub struct PenaltyBuffers {
    /// Penalised rows.
    pub rows: Vec<u32>,
    /// Their weights, in the order of `rows`.
    pub weights: Vec<f64>,
    /// The weights in fixed point.
    pub fixed: Vec<i64>,
}

#[cfg(test)]
mod tests;

//! The dimension-major working layout the engine scores from.
//!
//! Sources (memory-mapped files or borrowed NumPy buffers, any float dtype,
//! C or Fortran order) are transposed once into f32 columns, so one sample
//! reads two contiguous columns instead of gathering from every row. Each
//! column also gets its min/median/max, which parameterise the sample
//! points, and a small strided row subsample used to estimate radii.

mod source;
pub mod stats;
mod transpose;

pub(crate) use source::common_rows;
pub use source::Source;
use stats::summarise;
pub use stats::DimStats;
pub(crate) use transpose::advise_huge_pages;
use transpose::transpose;

use crate::error::{invalid, CoreError, Result};
use crate::npy::Dtype;
use half::f16;
use rayon::prelude::*;

/// Rows in the fixed subsample used to estimate neighbour radii.
pub const SUBSAMPLE_ROWS: usize = 2048;

/// Where the dimension-major values live.
enum Store<'a> {
    /// A transposed f32 copy in memory.
    Owned(Vec<f32>),
    /// Borrowed dimension-major f32: a cache file or a Fortran-order array,
    /// used in place so its pages stay file-backed (no private copy).
    F32(&'a [f32]),
    /// Borrowed dimension-major float16 bits, used in place (half the bytes
    /// of f32; values widen to f32 exactly, so results are unchanged).
    F16(&'a [u16]),
}

pub use crate::column::Col;

/// Shares a buffer between threads that write disjoint positions.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut<T>(pub(crate) *mut T);

impl<T> SharedOut<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper).
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}
// SAFETY: only shared by code that writes disjoint indices of the buffer
// (each such use says why its indices are disjoint).
unsafe impl<T> Send for SharedOut<T> {}
unsafe impl<T> Sync for SharedOut<T> {}

/// Pools with at least this many rows score from float16 columns in place
/// (band search); smaller float16 pools are widened to an f32 copy, which
/// the brute-force passes read fastest.
pub const F16_IN_PLACE_ROWS: usize = 1 << 17;

/// The prepared pool: dimension-major columns, a small row subsample, and
/// statistics.
pub struct Pool<'a> {
    /// Rows (examples).
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    store: Store<'a>,
    /// Rows in the subsample (`min(n, SUBSAMPLE_ROWS)`).
    pub sub_n: usize,
    sub: Vec<f32>,
    /// Per-dimension statistics.
    pub stats: DimStats,
}

impl Pool<'_> {
    /// Column `dim` in its stored type.
    #[inline]
    pub fn col(&self, dim: usize) -> Col<'_> {
        let at = dim * self.n..(dim + 1) * self.n;
        match &self.store {
            Store::Owned(v) => Col::F32(&v[at]),
            Store::F32(v) => Col::F32(&v[at]),
            Store::F16(v) => Col::F16(&v[at]),
        }
    }

    /// The value of `row` in dimension `dim`.
    #[inline]
    pub fn value(&self, dim: usize, row: usize) -> f32 {
        self.col(dim).get(row)
    }

    /// The same pool with its columns copied into memory it owns.
    pub fn into_owned(self) -> Pool<'static> {
        let store = match self.store {
            Store::Owned(v) => Store::Owned(v),
            Store::F32(v) => Store::Owned(v.to_vec()),
            Store::F16(v) => Store::Owned(v.iter().map(|&b| f16::from_bits(b).to_f32()).collect()),
        };
        Pool {
            n: self.n,
            d: self.d,
            store,
            sub_n: self.sub_n,
            sub: self.sub,
            stats: self.stats,
        }
    }

    /// True when columns are stored as float16.
    pub fn is_f16(&self) -> bool {
        matches!(self.store, Store::F16(_))
    }

    /// Column `dim` of the subsample: rows `j * n / sub_n` for j in 0..sub_n,
    /// stored contiguously so an estimate reads a few KB, not N rows.
    #[inline]
    pub fn sub_column(&self, dim: usize) -> &[f32] {
        &self.sub[dim * self.sub_n..(dim + 1) * self.sub_n]
    }

    /// Builds the pool from sources concatenated along dimensions. Runs on the
    /// current rayon pool. Refuses mismatched row counts, too few rows, and
    /// NaN/Inf values (naming the rows).
    pub fn build<'a>(sources: &[Source<'a>]) -> Result<Pool<'a>> {
        Self::build_until(sources, &|| true)
    }

    /// `build`, giving up with `CoreError::Cancelled` soon after
    /// `keep_going()` turns false (checked per block of columns), so that
    /// Ctrl-C also stops the preparation of a large pool.
    ///
    /// A single dimension-major source (a cache file, a Fortran-order
    /// array) of f32, or of float16 with many rows, is used in place rather
    /// than copied: memory-mapped pages stay file-backed and can be evicted,
    /// which is what lets a pool larger than RAM be scored.
    pub fn build_until<'a>(
        sources: &[Source<'a>],
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Pool<'a>> {
        Self::build_with(sources, keep_going, F16_IN_PLACE_ROWS)
    }

    /// `build_until`, using float16 sources in place from `f16_rows` rows.
    pub(crate) fn build_with<'a>(
        sources: &[Source<'a>],
        keep_going: &(dyn Fn() -> bool + Sync),
        f16_rows: usize,
    ) -> Result<Pool<'a>> {
        let n = common_rows(sources)?;
        if n > u32::MAX as usize {
            return Err(invalid!("{n} rows exceed the supported 4,294,967,295"));
        }
        let d: usize = sources.iter().map(|s| s.cols).sum();
        if n < 2 {
            return Err(invalid!(
                "need at least 2 rows (examples) to score, got {n}"
            ));
        }
        if d == 0 {
            return Err(invalid!("embeddings have 0 dimensions"));
        }
        let store = match in_place(sources, n, f16_rows) {
            Some(store) => store,
            None => Store::Owned(transpose(sources, n, d, keep_going)),
        };
        if !keep_going() {
            return Err(CoreError::Cancelled);
        }
        let mut pool = Pool {
            n,
            d,
            store,
            sub_n: n.min(SUBSAMPLE_ROWS),
            sub: Vec::new(),
            stats: DimStats::default(),
        };
        let stats: Vec<Option<(f64, f64, f64)>> = (0..d)
            .into_par_iter()
            .map_init(Vec::new, |scratch, dim| summarise(pool.col(dim), scratch))
            .collect();
        let Some(stats) = stats.into_iter().collect::<Option<Vec<_>>>() else {
            pool.check_finite()?;
            return Err(invalid!("embeddings contain NaN or Inf"));
        };
        let sub_n = pool.sub_n;
        let mut sub = vec![0f32; d * sub_n];
        sub.par_chunks_mut(sub_n)
            .enumerate()
            .for_each(|(dim, out)| {
                let col = pool.col(dim);
                for (j, o) in out.iter_mut().enumerate() {
                    *o = col.get(j * n / sub_n);
                }
            });
        pool.sub = sub;
        pool.stats = DimStats {
            lo: stats.iter().map(|t| t.0).collect(),
            md: stats.iter().map(|t| t.1).collect(),
            hi: stats.iter().map(|t| t.2).collect(),
        };
        Ok(pool)
    }

    /// Refuses NaN/Inf, naming the rows (the slow scan of the error path).
    fn check_finite(&self) -> Result<()> {
        let mut bad: Vec<u32> = (0..self.d)
            .into_par_iter()
            .flat_map_iter(|dim| {
                let col = self.col(dim);
                (0..self.n)
                    .filter(move |&r| !col.get(r).is_finite())
                    .map(|r| r as u32)
            })
            .collect();
        if bad.is_empty() {
            return Ok(());
        }
        bad.sort_unstable();
        bad.dedup();
        let shown: Vec<String> = bad.iter().take(8).map(u32::to_string).collect();
        let more = if bad.len() > 8 { ", ..." } else { "" };
        Err(invalid!(
            "embeddings contain NaN or Inf in {} row(s): {}{}; remove or repair \
             those rows before scoring",
            bad.len(),
            shown.join(", "),
            more
        ))
    }
}

/// The store of a single dimension-major source usable without a copy.
fn in_place<'a>(sources: &[Source<'a>], n: usize, f16_rows: usize) -> Option<Store<'a>> {
    let [s] = sources else { return None };
    if !s.fortran_order && s.cols > 1 {
        return None;
    }
    let bytes = s.bytes;
    match s.dtype {
        Dtype::F32 if bytes.as_ptr().align_offset(4) == 0 => {
            // SAFETY: aligned, initialised bytes; every bit pattern is an f32.
            Some(Store::F32(unsafe {
                std::slice::from_raw_parts(bytes.as_ptr().cast(), n * s.cols)
            }))
        }
        Dtype::F16 if n >= f16_rows && bytes.as_ptr().align_offset(2) == 0 => {
            // SAFETY: as above, for u16.
            Some(Store::F16(unsafe {
                std::slice::from_raw_parts(bytes.as_ptr().cast(), n * s.cols)
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pool from a row-major f32 matrix (test helper).
    pub(crate) fn pool_from_rows(rows: &[Vec<f32>]) -> Result<Pool<'static>> {
        let n = rows.len();
        let d = rows.first().map_or(0, Vec::len);
        let bytes: Vec<u8> = rows
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let src = Source {
            bytes: &bytes,
            dtype: Dtype::F32,
            rows: n,
            cols: d,
            fortran_order: false,
            name: "test",
        };
        Pool::build(&[src]).map(Pool::into_owned)
    }

    /// A pool of `n` rows and `d` dimensions from dimension-major `cols`,
    /// stored as float16 (read in place, as band search does) or f32.
    pub(crate) fn column_major_pool(cols: &[f32], n: usize, d: usize, f16: bool) -> Pool<'static> {
        let bytes: Vec<u8> = if f16 {
            cols.iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect()
        } else {
            cols.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        let src = Source {
            bytes,
            dtype: if f16 { Dtype::F16 } else { Dtype::F32 },
            rows: n,
            cols: d,
            fortran_order: true,
            name: "t",
        };
        Pool::build_with(&[src], &|| true, 0).unwrap()
    }

    /// Column `dim` as a vector.
    pub(crate) fn values(pool: &Pool<'_>, dim: usize) -> Vec<f32> {
        (0..pool.n).map(|r| pool.value(dim, r)).collect()
    }

    #[test]
    fn dimension_major_sources_are_used_in_place() {
        let (n, d) = (6usize, 3usize);
        let vals: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.61).cos()).collect();
        let c_order: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut f32_cols: Vec<f32> = Vec::new();
        let mut f16_cols: Vec<u16> = Vec::new();
        for c in 0..d {
            for r in 0..n {
                f32_cols.push(vals[r * d + c]);
                f16_cols.push(f16::from_f32(vals[r * d + c]).to_bits());
            }
        }
        let src = |bytes: &'static [u8], dtype, fortran_order| Source {
            bytes,
            dtype,
            rows: n,
            cols: d,
            fortran_order,
            name: "t",
        };
        let leak = |b: Vec<u8>| -> &'static [u8] { Box::leak(b.into_boxed_slice()) };
        let f32_bytes = leak(f32_cols.iter().flat_map(|v| v.to_le_bytes()).collect());
        let f16_bytes = leak(f16_cols.iter().flat_map(|v| v.to_le_bytes()).collect());
        let copy = Pool::build(&[src(leak(c_order), Dtype::F32, false)]).unwrap();
        let borrowed = Pool::build(&[src(f32_bytes, Dtype::F32, true)]).unwrap();
        assert!(matches!(borrowed.store, Store::F32(_)));
        let half = Pool::build_with(&[src(f16_bytes, Dtype::F16, true)], &|| true, 0).unwrap();
        assert!(half.is_f16());
        let widened = Pool::build(&[src(f16_bytes, Dtype::F16, true)]).unwrap();
        assert!(matches!(widened.store, Store::Owned(_)));
        for dim in 0..d {
            assert_eq!(values(&copy, dim), values(&borrowed, dim));
            assert_eq!(values(&half, dim), values(&widened, dim));
            assert_eq!(copy.stats.md[dim], borrowed.stats.md[dim]);
            assert_eq!(half.stats.md[dim], widened.stats.md[dim]);
            assert_eq!(half.sub_column(dim), widened.sub_column(dim));
        }
    }

    #[test]
    fn float16_histogram_median_equals_selection() {
        let mut rng = crate::rng::Stream::new(3, 1, 0);
        for n in [1usize, 2, 3, 10, 101, 1000, 4097] {
            let bits: Vec<u16> = (0..n)
                .map(|i| match i % 7 {
                    0 => 0x8000, // -0.0
                    1 => 0,
                    _ => f16::from_f64(rng.unit_open() * 20.0 - 10.0).to_bits(),
                })
                .collect();
            let wide: Vec<f32> = bits.iter().map(|&b| f16::from_bits(b).to_f32()).collect();
            let h = summarise(Col::F16(&bits), &mut Vec::new()).unwrap();
            let f = summarise(Col::F32(&wide), &mut Vec::new()).unwrap();
            assert_eq!(h, f, "n {n}");
        }
        let inf = [0u16, 0x7C00];
        assert!(summarise(Col::F16(&inf), &mut Vec::new()).is_none());
        assert!(summarise(Col::F32(&[0.0, f32::NAN]), &mut Vec::new()).is_none());
    }

    #[test]
    fn transposes_sorts_and_summarises() {
        let rows = vec![
            vec![3.0, -1.0, 5.0],
            vec![1.0, -1.0, 5.0],
            vec![2.0, 0.5, 5.0],
            vec![-4.0, -0.0, 5.0],
        ];
        let pool = pool_from_rows(&rows).unwrap();
        assert_eq!(values(&pool, 0), &[3.0, 1.0, 2.0, -4.0]);
        assert_eq!(pool.stats.md[0], 1.5);
        assert_eq!((pool.stats.lo[1], pool.stats.hi[1]), (-1.0, 0.5));
        assert_eq!(pool.stats.md[1], -0.5);
        assert_eq!(pool.sub_n, 4);
        assert_eq!(pool.sub_column(0), values(&pool, 0));
        assert_eq!(
            (pool.stats.lo[2], pool.stats.md[2], pool.stats.hi[2]),
            (5.0, 5.0, 5.0)
        );
    }

    #[test]
    fn build_stops_when_told() {
        let rows: Vec<Vec<f32>> = (0..50).map(|i| vec![i as f32; 40]).collect();
        let bytes: Vec<u8> = rows
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let s = Source {
            bytes: &bytes,
            dtype: Dtype::F32,
            rows: 50,
            cols: 40,
            fortran_order: false,
            name: "t",
        };
        assert!(matches!(
            Pool::build_until(&[s], &|| false),
            Err(CoreError::Cancelled)
        ));
        assert!(Pool::build_until(&[s], &|| true).is_ok());
    }

    #[test]
    fn fortran_f64_and_f16_sources_agree_with_c_f32() {
        let (n, d) = (5usize, 3usize);
        let vals: Vec<f32> = (0..n * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let c32: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut f64_fortran = Vec::new();
        let mut f16_c = Vec::new();
        for c in 0..d {
            for r in 0..n {
                f64_fortran.extend_from_slice(&f64::from(vals[r * d + c]).to_le_bytes());
            }
        }
        for v in &vals {
            f16_c.extend_from_slice(&f16::from_f32(*v).to_le_bytes());
        }
        let mk = |bytes: &[u8], dtype, fortran_order| {
            let s = Source {
                bytes,
                dtype,
                rows: n,
                cols: d,
                fortran_order,
                name: "t",
            };
            Pool::build(&[s]).unwrap().into_owned()
        };
        let a = mk(&c32, Dtype::F32, false);
        let b = mk(&f64_fortran, Dtype::F64, true);
        let h = mk(&f16_c, Dtype::F16, false);
        for dim in 0..d {
            assert_eq!(values(&a, dim), values(&b, dim));
            for (x, y) in values(&a, dim).iter().zip(values(&h, dim)) {
                assert!((x - y).abs() < 1e-3);
            }
        }
    }

    /// The typed transposition equals reading every element on its own
    /// (`Source::get`), for concatenations whose sources mix types and
    /// orders and straddle the 16-column blocks.
    #[test]
    fn transposition_equals_element_reads() {
        let mut rng = crate::rng::Stream::new(8, 1, 0);
        let n = 37;
        let layouts = [
            (5, Dtype::F32, false),
            (17, Dtype::F64, true),
            (9, Dtype::F16, false),
            (20, Dtype::F32, true),
            (3, Dtype::F64, false),
            (1, Dtype::F16, true),
        ];
        let bytes: Vec<Vec<u8>> = layouts
            .iter()
            .map(|&(cols, dtype, _)| {
                (0..n * cols)
                    .flat_map(|_| {
                        let v = rng.unit_open() * 8.0 - 4.0;
                        match dtype {
                            Dtype::F16 => f16::from_f64(v).to_le_bytes().to_vec(),
                            Dtype::F32 => (v as f32).to_le_bytes().to_vec(),
                            Dtype::F64 => v.to_le_bytes().to_vec(),
                        }
                    })
                    .collect()
            })
            .collect();
        let sources: Vec<Source<'_>> = layouts
            .iter()
            .zip(&bytes)
            .map(|(&(cols, dtype, fortran_order), bytes)| Source {
                bytes,
                dtype,
                rows: n,
                cols,
                fortran_order,
                name: "t",
            })
            .collect();
        let pool = Pool::build(&sources).unwrap();
        let mut dim = 0;
        for s in &sources {
            for col in 0..s.cols {
                let want: Vec<f32> = (0..n).map(|row| s.get(row, col)).collect();
                assert_eq!(values(&pool, dim), want, "dimension {dim}");
                dim += 1;
            }
        }
        assert_eq!(dim, pool.d);
    }

    #[test]
    fn refuses_non_finite_rows_naming_them() {
        let rows = vec![
            vec![0.0, 1.0],
            vec![f32::NAN, 1.0],
            vec![0.0, f32::INFINITY],
        ];
        let msg = pool_from_rows(&rows).err().unwrap().to_string();
        assert!(msg.contains("2 row(s): 1, 2"), "{msg}");
    }

    #[test]
    fn refuses_mismatched_rows_and_tiny_pools() {
        let one = pool_from_rows(&[vec![1.0, 2.0]]).err().unwrap().to_string();
        assert!(one.contains("at least 2 rows"), "{one}");
        let a = [0u8; 16];
        let b = [0u8; 12];
        let s1 = Source {
            bytes: &a,
            dtype: Dtype::F32,
            rows: 2,
            cols: 2,
            fortran_order: false,
            name: "a.npy",
        };
        let s2 = Source {
            bytes: &b,
            dtype: Dtype::F32,
            rows: 3,
            cols: 1,
            fortran_order: false,
            name: "b.npy",
        };
        let msg = Pool::build(&[s1, s2]).err().unwrap().to_string();
        assert!(msg.contains("a.npy has 2 rows but b.npy has 3"), "{msg}");
    }
}

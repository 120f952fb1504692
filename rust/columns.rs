//! The dimension-major working layout the engine scores from.
//!
//! Sources (memory-mapped files or borrowed NumPy buffers, any float dtype,
//! C or Fortran order) are transposed once into f32 columns, so one sample
//! reads two contiguous columns instead of gathering from every row. Each
//! column also gets its min/median/max, which parameterise the sample
//! points, and a small strided row subsample used to estimate radii.

use crate::error::{invalid, CoreError, Result};
use crate::npy::Dtype;
use half::f16;
use rayon::prelude::*;

/// One input matrix: raw little-endian bytes of `rows x cols` elements.
#[derive(Clone, Copy)]
pub struct Source<'a> {
    /// Element bytes; need not be aligned.
    pub bytes: &'a [u8],
    /// Element type.
    pub dtype: Dtype,
    /// Number of rows (examples).
    pub rows: usize,
    /// Number of columns (dimensions).
    pub cols: usize,
    /// True for column-major storage.
    pub fortran_order: bool,
    /// A name for error messages (a path, or "array 0").
    pub name: &'a str,
}

impl Source<'_> {
    #[inline]
    fn get(&self, row: usize, col: usize) -> f32 {
        let idx = if self.fortran_order {
            col * self.rows + row
        } else {
            row * self.cols + col
        };
        let b = self.bytes;
        match self.dtype {
            Dtype::F16 => f16::from_le_bytes([b[2 * idx], b[2 * idx + 1]]).to_f32(),
            Dtype::F32 => f32::from_le_bytes(b[4 * idx..4 * idx + 4].try_into().unwrap()),
            Dtype::F64 => f64::from_le_bytes(b[8 * idx..8 * idx + 8].try_into().unwrap()) as f32,
        }
    }
}

/// Per-dimension minimum, median and maximum (the triangular distribution's
/// lo, mode and hi), in f64.
#[derive(Debug, Clone, Default)]
pub struct DimStats {
    /// Minimum per dimension.
    pub lo: Vec<f64>,
    /// Median per dimension (mean of the two middle values for even N, as NumPy).
    pub md: Vec<f64>,
    /// Maximum per dimension.
    pub hi: Vec<f64>,
}

/// Rows in the fixed subsample used to estimate neighbour radii.
pub const SUBSAMPLE_ROWS: usize = 2048;

/// The prepared pool: f32 columns, a small row subsample, and statistics.
pub struct Pool {
    /// Rows (examples).
    pub n: usize,
    /// Dimensions.
    pub d: usize,
    values: Vec<f32>,
    /// Rows in the subsample (`min(n, SUBSAMPLE_ROWS)`).
    pub sub_n: usize,
    sub: Vec<f32>,
    /// Per-dimension statistics.
    pub stats: DimStats,
}

impl Pool {
    /// Column `dim`: the value of every row in that dimension.
    #[inline]
    pub fn column(&self, dim: usize) -> &[f32] {
        &self.values[dim * self.n..(dim + 1) * self.n]
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
    pub fn build(sources: &[Source<'_>]) -> Result<Pool> {
        Self::build_until(sources, &|| true)
    }

    /// `build`, giving up with `CoreError::Cancelled` soon after
    /// `keep_going()` turns false (checked per block of columns), so that
    /// Ctrl-C also stops the preparation of a large pool.
    pub fn build_until(
        sources: &[Source<'_>],
        keep_going: &(dyn Fn() -> bool + Sync),
    ) -> Result<Pool> {
        let Some(first) = sources.first() else {
            return Err(invalid!("no embeddings given"));
        };
        let n = first.rows;
        if let Some(bad) = sources.iter().find(|s| s.rows != n) {
            return Err(invalid!(
                "row counts differ: {} has {} rows but {} has {}; concatenated \
                 embedding files must describe the same examples in the same order",
                first.name,
                n,
                bad.name,
                bad.rows
            ));
        }
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
        let values = transpose(sources, n, d, keep_going);
        if !keep_going() {
            return Err(CoreError::Cancelled);
        }
        check_finite(&values, n)?;
        let stats: Vec<(f64, f64, f64)> = values
            .par_chunks(n)
            .map_init(Vec::new, |scratch, col| summarise(col, scratch))
            .collect();
        let sub_n = n.min(SUBSAMPLE_ROWS);
        let sub: Vec<f32> = values
            .chunks(n)
            .flat_map(|col| (0..sub_n).map(move |j| col[j * n / sub_n]))
            .collect();
        let stats = DimStats {
            lo: stats.iter().map(|t| t.0).collect(),
            md: stats.iter().map(|t| t.1).collect(),
            hi: stats.iter().map(|t| t.2).collect(),
        };
        Ok(Pool {
            n,
            d,
            values,
            sub_n,
            sub,
            stats,
        })
    }
}

/// (min, median, max) of one column; the median by selection, not sorting.
fn summarise(col: &[f32], scratch: &mut Vec<f32>) -> (f64, f64, f64) {
    scratch.clear();
    scratch.extend_from_slice(col);
    let n = scratch.len();
    let lo = col.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = col.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let (left, upper, _) = scratch.select_nth_unstable_by(n / 2, f32::total_cmp);
    let upper = f64::from(*upper);
    let md = if n % 2 == 1 {
        upper
    } else {
        let lower = left.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (f64::from(lower) + upper) / 2.0
    };
    (f64::from(lo), md, f64::from(hi))
}

/// Dimensions transposed per task: 16 f32 of a C-order row share a cache line.
const DIM_BLOCK: usize = 16;

fn transpose(
    sources: &[Source<'_>],
    n: usize,
    d: usize,
    keep_going: &(dyn Fn() -> bool + Sync),
) -> Vec<f32> {
    // (source, column in source) of every output dimension.
    let owners: Vec<(usize, usize)> = sources
        .iter()
        .enumerate()
        .flat_map(|(i, s)| (0..s.cols).map(move |c| (i, c)))
        .collect();
    let mut values = vec![0f32; n * d];
    values
        .par_chunks_mut(n * DIM_BLOCK)
        .enumerate()
        .for_each(|(block, out)| {
            if !keep_going() {
                return;
            }
            let dims = &owners[block * DIM_BLOCK..(block * DIM_BLOCK + out.len() / n)];
            for row in 0..n {
                for (k, &(src, col)) in dims.iter().enumerate() {
                    out[k * n + row] = sources[src].get(row, col);
                }
            }
        });
    values
}

fn check_finite(values: &[f32], n: usize) -> Result<()> {
    let mut bad: Vec<u32> = values
        .par_chunks(n)
        .flat_map_iter(|col| {
            col.iter()
                .enumerate()
                .filter(|(_, v)| !v.is_finite())
                .map(|(r, _)| r as u32)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A pool from a row-major f32 matrix (test helper).
    pub(crate) fn pool_from_rows(rows: &[Vec<f32>]) -> Result<Pool> {
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
        Pool::build(&[src])
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
        assert_eq!(pool.column(0), &[3.0, 1.0, 2.0, -4.0]);
        assert_eq!(pool.stats.md[0], 1.5);
        assert_eq!((pool.stats.lo[1], pool.stats.hi[1]), (-1.0, 0.5));
        assert_eq!(pool.stats.md[1], -0.5);
        assert_eq!(pool.sub_n, 4);
        assert_eq!(pool.sub_column(0), pool.column(0));
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
            Pool::build(&[s]).unwrap()
        };
        let a = mk(&c32, Dtype::F32, false);
        let b = mk(&f64_fortran, Dtype::F64, true);
        let h = mk(&f16_c, Dtype::F16, false);
        for dim in 0..d {
            assert_eq!(a.column(dim), b.column(dim));
            for (x, y) in a.column(dim).iter().zip(h.column(dim)) {
                assert!((x - y).abs() < 1e-3);
            }
        }
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

//! Writes the dimension-major working copy of a pool to a file: a standard
//! Fortran-order `.npy` that the engine then uses in place (`Pool::build`
//! borrows a single Fortran-order source), so scoring a file larger than RAM
//! reads file-backed pages the kernel can evict instead of a private copy.
//!
//! Float16 inputs stay float16 (exact, half the bytes); anything else is
//! stored as f32, the engine's arithmetic type. Naming, keying, locking and
//! the atomic rename are the caller's job (Python `zcore_fast.cache`): this
//! writes whatever path it is given.

use crate::error::{CoreError, Result};
use crate::npy::Dtype;
use crate::pool::SharedOut;
use crate::pool::{common_rows, Source};
use memmap2::MmapMut;
use rayon::prelude::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// Rows transposed per task: a task's input rows stay in cache while it
/// writes them to every column.
const ROW_CHUNK: usize = 4096;

/// Output bytes per progress report (one wave of parallel tasks), small
/// enough that Ctrl-C stops a build promptly (measured: 1.3 s after the
/// signal at ImageNet size, 3.4 s with 128 MiB waves).
const WAVE_BYTES: usize = 32 << 20;

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Rows (examples).
    pub rows: usize,
    /// Columns (dimensions, all sources concatenated).
    pub cols: usize,
    /// Element type: F16 when every source is float16, else F32.
    pub dtype: Dtype,
}

/// The `.npy` v1 header of a Fortran-order `rows x cols` array, padded so
/// the data starts at a multiple of 64 bytes (aligned for any element).
fn header(dtype: Dtype, rows: usize, cols: usize) -> Vec<u8> {
    let descr = if dtype == Dtype::F16 { "<f2" } else { "<f4" };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': True, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

/// Allocates the file's disk blocks up front, so a disk that fills up
/// fails here with an error instead of later, inside a write through the
/// map, with SIGBUS. Filesystems without the call fall back to sparse.
fn reserve(file: &std::fs::File, size: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor and in-range lengths.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        if rc != 0 && rc != libc::EOPNOTSUPP && rc != libc::EINVAL {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    let _ = (file, size);
    Ok(())
}

/// Writes the concatenation of `sources` (same row count) dimension-major to
/// `path`, creating or truncating it. `report(rows_done, rows)` is called
/// between waves of work; an error from it stops the build and is returned
/// (the partial file is left for the caller to remove).
pub fn write_columns(
    sources: &[Source<'_>],
    path: &Path,
    report: &mut dyn FnMut(u64, u64) -> Result<()>,
) -> Result<Written> {
    let rows = common_rows(sources)?;
    let cols: usize = sources.iter().map(|s| s.cols).sum();
    let dtype = if sources.iter().all(|s| s.dtype == Dtype::F16) {
        Dtype::F16
    } else {
        Dtype::F32
    };
    let head = header(dtype, rows, cols);
    let size = head.len() + rows * cols * dtype.size();
    let shown = path.display();
    let io = |what: &str, e: std::io::Error| CoreError::Io(format!("{shown}: cannot {what}: {e}"));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io("create", e))?;
    file.write_all(&head).map_err(|e| io("write", e))?;
    file.set_len(size as u64).map_err(|e| io("resize", e))?;
    reserve(&file, size).map_err(|e| io("reserve disk space for", e))?;
    // SAFETY: a fresh file this process just sized; the caller keeps others
    // away from it (temp name + rename).
    let mut map = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io("memory-map", e))?;
    let data = &mut map[head.len()..];
    let out = SharedOut(data.as_mut_ptr());
    let chunks = rows.div_ceil(ROW_CHUNK);
    let chunk_bytes = ROW_CHUNK * cols * dtype.size();
    let chunks_per_wave = (WAVE_BYTES / chunk_bytes.max(1)).max(rayon::current_num_threads());
    let mut done_chunks = 0;
    while done_chunks < chunks {
        let wave = done_chunks..(done_chunks + chunks_per_wave).min(chunks);
        done_chunks = wave.end;
        wave.into_par_iter().for_each(|chunk| {
            let from = chunk * ROW_CHUNK;
            let to = (from + ROW_CHUNK).min(rows);
            let mut dim0 = 0;
            for s in sources {
                // SAFETY: each task writes rows `from..to` of columns
                // `dim0..dim0 + s.cols`, disjoint from every other task,
                // within `data` (rows * cols elements of `dtype`).
                unsafe { copy_rows(s, dim0, dtype, rows, from..to, out.ptr()) };
                dim0 += s.cols;
            }
        });
        report((done_chunks * ROW_CHUNK).min(rows) as u64, rows as u64)?;
    }
    map.flush().map_err(|e| io("flush", e))?;
    Ok(Written { rows, cols, dtype })
}

/// Rows `rows_in` of `s` into columns `dim0..dim0 + s.cols` of the
/// dimension-major output at `out` (`rows` per column, elements of
/// `dtype`).
///
/// # Safety
/// `out` must hold `(dim0 + s.cols) * rows` elements of `dtype`,
/// `rows_in.end <= rows` (the writes are not bounds-checked), and no other
/// thread may write rows `rows_in` of those columns meanwhile.
unsafe fn copy_rows(
    s: &Source<'_>,
    dim0: usize,
    dtype: Dtype,
    rows: usize,
    rows_in: std::ops::Range<usize>,
    out: *mut u8,
) {
    debug_assert!(rows_in.end <= rows && rows_in.end <= s.rows);
    let same_type = s.dtype == dtype;
    if !s.fortran_order && same_type && dtype == Dtype::F16 {
        return copy_tiles::<2>(s, dim0, rows, rows_in, out);
    }
    if !s.fortran_order && same_type && dtype == Dtype::F32 {
        return copy_tiles::<4>(s, dim0, rows, rows_in, out);
    }
    // Column-major sources read along columns already; other types are
    // converted one value at a time.
    for col in 0..s.cols {
        let column = out.add((dim0 + col) * rows * dtype.size());
        for row in rows_in.clone() {
            if dtype == Dtype::F16 {
                let bits = s.bits16(row, col).to_le_bytes();
                std::ptr::copy_nonoverlapping(bits.as_ptr(), column.add(2 * row), 2);
            } else {
                let v = s.get(row, col).to_le_bytes();
                std::ptr::copy_nonoverlapping(v.as_ptr(), column.add(4 * row), 4);
            }
        }
    }
}

/// `copy_rows` for a row-major source of the output's type, `E` bytes an
/// element, moved as bytes tile by tile: a tile's TILE rows stay in L1
/// while each of its columns is written. Reading every column down all of
/// a task's rows instead (10 MB at D = 1,280 float16) re-read each source
/// line from L3 once per value it holds: 68 % of a build's time.
///
/// # Safety
/// As `copy_rows`, with `E` the size of the output's (and `s`'s) type.
unsafe fn copy_tiles<const E: usize>(
    s: &Source<'_>,
    dim0: usize,
    rows: usize,
    rows_in: std::ops::Range<usize>,
    out: *mut u8,
) {
    const TILE: usize = 32;
    debug_assert_eq!(E, s.dtype.size());
    let cols = s.cols;
    // The task's rows, bounds-checked once (`Source::check` passed).
    let block = &s.bytes[E * rows_in.start * cols..E * rows_in.end * cols];
    for r0 in (0..rows_in.len()).step_by(TILE) {
        let r1 = (r0 + TILE).min(rows_in.len());
        let band = &block[E * r0 * cols..E * r1 * cols];
        for c0 in (0..cols).step_by(TILE) {
            for c in c0..(c0 + TILE).min(cols) {
                let dst = out.add(E * ((dim0 + c) * rows + rows_in.start + r0));
                for (i, row) in band.chunks_exact(E * cols).enumerate() {
                    std::ptr::copy_nonoverlapping(row[E * c..].as_ptr(), dst.add(E * i), E);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npy::NpyFile;
    use crate::pool::Pool;
    use half::f16;

    /// Random shapes, orders and types (the tiled copy for row-major
    /// sources of the output's type, the value loop for the rest) against
    /// the definition: the file's (row, dim) element is the source's.
    #[test]
    fn every_element_lands_where_the_definition_says() {
        let dir = std::env::temp_dir().join(format!("zcore-cache-tiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = crate::rng::TestRng(5);
        for case in 0..40 {
            let rows = 1 + (rng.next() as usize) % (2 * ROW_CHUNK + 77);
            let all_f16 = case % 3 != 2;
            let parts = 1 + (rng.next() as usize) % 3;
            let mut owned = Vec::new();
            for _ in 0..parts {
                let cols = 1 + (rng.next() as usize) % 70;
                let dtype = match (all_f16, rng.next() % 3) {
                    (true, _) => Dtype::F16,
                    (false, 0) => Dtype::F64,
                    (false, 1) => Dtype::F16,
                    _ => Dtype::F32,
                };
                let bytes: Vec<u8> = match dtype {
                    Dtype::F16 => (0..rows * cols)
                        .flat_map(|_| f16::from_f32(rng.unit() - 0.5).to_le_bytes())
                        .collect(),
                    Dtype::F32 => (0..rows * cols)
                        .flat_map(|_| (rng.unit() - 0.5).to_le_bytes())
                        .collect(),
                    Dtype::F64 => (0..rows * cols)
                        .flat_map(|_| (f64::from(rng.unit()) - 0.5).to_le_bytes())
                        .collect(),
                };
                owned.push((bytes, dtype, cols, rng.next().is_multiple_of(2)));
            }
            let sources: Vec<Source<'_>> = owned
                .iter()
                .map(|(bytes, dtype, cols, fortran)| Source {
                    bytes,
                    dtype: *dtype,
                    rows,
                    cols: *cols,
                    fortran_order: *fortran,
                    name: "t",
                })
                .collect();
            let path = dir.join(format!("c{case}.npy"));
            let w = write_columns(&sources, &path, &mut |_, _| Ok(())).unwrap();
            let file = NpyFile::open(&path).unwrap();
            let data = file.data();
            let size = w.dtype.size();
            let mut dim = 0;
            for s in &sources {
                for col in 0..s.cols {
                    for row in 0..rows {
                        let at = size * (dim * rows + row);
                        let got = &data[at..at + size];
                        if w.dtype == Dtype::F16 {
                            assert_eq!(got, s.bits16(row, col).to_le_bytes(), "case {case}");
                        } else {
                            assert_eq!(got, s.get(row, col).to_le_bytes(), "case {case}");
                        }
                    }
                    dim += 1;
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn written_file_is_a_fortran_npy_of_the_concatenation() {
        let dir = std::env::temp_dir().join(format!("zcore-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (n, da, db) = (5000usize, 3usize, 2usize);
        let a: Vec<f32> = (0..n * da).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f16> = (0..n * db)
            .map(|i| f16::from_f32((i as f32 * 0.11).cos()))
            .collect();
        let a_bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        let b_bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
        let src = |bytes, dtype, cols| Source {
            bytes,
            dtype,
            rows: n,
            cols,
            fortran_order: false,
            name: "t",
        };
        let sources = [
            src(&a_bytes[..], Dtype::F32, da),
            src(&b_bytes[..], Dtype::F16, db),
        ];
        let path = dir.join("mixed.npy");
        let w = write_columns(&sources, &path, &mut |_, _| Ok(())).unwrap();
        assert_eq!((w.rows, w.cols, w.dtype), (n, da + db, Dtype::F32));
        let file = NpyFile::open(&path).unwrap();
        assert!(file.header.fortran_order);
        assert_eq!(file.header.data_offset % 64, 0);
        let cached = Source {
            bytes: file.data(),
            dtype: file.header.dtype,
            rows: file.rows(),
            cols: file.cols(),
            fortran_order: true,
            name: "cache",
        };
        let direct = Pool::build(&sources).unwrap();
        let in_place = Pool::build(&[cached]).unwrap();
        for dim in 0..da + db {
            for row in (0..n).step_by(7) {
                assert_eq!(direct.value(dim, row), in_place.value(dim, row));
            }
            assert_eq!(direct.stats.md[dim], in_place.stats.md[dim]);
        }
        // All-float16 sources stay float16.
        let halves = [src(&b_bytes[..], Dtype::F16, db)];
        let path16 = dir.join("half.npy");
        let w = write_columns(&halves, &path16, &mut |_, _| Ok(())).unwrap();
        assert_eq!(w.dtype, Dtype::F16);
        let file = NpyFile::open(&path16).unwrap();
        assert_eq!(file.header.dtype, Dtype::F16);
        assert_eq!(file.data().len(), n * db * 2);
        // A report error stops the build.
        let stopped = write_columns(&halves, &path16, &mut |_, _| Err(CoreError::Cancelled));
        assert_eq!(stopped.unwrap_err(), CoreError::Cancelled);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

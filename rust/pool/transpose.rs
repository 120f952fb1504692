//! The one-time copy of row-major (or mixed) sources into dimension-major
//! f32 columns, in parallel blocks of dimensions.

use super::Source;
use crate::npy::Dtype;
use half::f16;
use rayon::prelude::*;

/// Dimensions transposed per task: 16 f32 of a C-order row share a cache line.
const DIM_BLOCK: usize = 16;

/// Asks the kernel to back `v` with 2 MiB pages where it can (Linux
/// transparent huge pages in "madvise" mode), before it is first written.
/// Samples read scattered rows of large columns; with 4 KiB pages nearly
/// every such read also misses the TLB.
pub(crate) fn advise_huge_pages<T>(v: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let first = start.div_ceil(HUGE) * HUGE;
        if end >= first + HUGE {
            let len = (end - first) / HUGE * HUGE;
            // SAFETY: the range lies inside `v`'s allocation; the advice
            // changes how its pages are backed, never their contents.
            unsafe { libc::madvise(first as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

pub(super) fn transpose(
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
    advise_huge_pages(&mut values);
    values
        .par_chunks_mut(n * DIM_BLOCK)
        .enumerate()
        .for_each(|(block, out)| {
            if !keep_going() {
                return;
            }
            let dims = &owners[block * DIM_BLOCK..(block * DIM_BLOCK + out.len() / n)];
            // Runs of consecutive columns of one source.
            let mut k = 0;
            while k < dims.len() {
                let (src, col) = dims[k];
                let run = dims[k..].iter().take_while(|o| o.0 == src).count();
                copy_columns(&sources[src], col, &mut out[k * n..(k + run) * n]);
                k += run;
            }
        });
    values
}

/// Columns `col..` of `s` as f32 into `out`, dimension-major (as many
/// columns as `out` holds).
fn copy_columns(s: &Source<'_>, col: usize, out: &mut [f32]) {
    match s.dtype {
        Dtype::F16 => copy_typed(s, col, out, |b: [u8; 2]| f16::from_le_bytes(b).to_f32()),
        Dtype::F32 => copy_typed(s, col, out, f32::from_le_bytes),
        Dtype::F64 => copy_typed(s, col, out, |b: [u8; 8]| f64::from_le_bytes(b) as f32),
    }
}

/// `copy_columns` for elements of `W` bytes, read by `value`: one loop per
/// layout and type, so that strides and conversions are known to the
/// compiler (a generic element reader per value took 4x longer).
#[inline(always)]
fn copy_typed<const W: usize>(
    s: &Source<'_>,
    col: usize,
    out: &mut [f32],
    value: impl Fn([u8; W]) -> f32,
) {
    let n = s.rows;
    let run = out.len() / n;
    let read = |b: &[u8]| value(b.try_into().expect("W bytes"));
    if s.fortran_order {
        let src = &s.bytes[col * n * W..(col + run) * n * W];
        for (o, b) in out.iter_mut().zip(src.chunks_exact(W)) {
            *o = read(b);
        }
        return;
    }
    let stride = s.cols * W;
    for row in 0..n {
        let src = &s.bytes[row * stride + col * W..][..run * W];
        for (j, b) in src.chunks_exact(W).enumerate() {
            out[j * n + row] = read(b);
        }
    }
}

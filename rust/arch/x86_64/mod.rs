//! x86-64 levels: detection, and what their kernels share.

use super::portable::prefetch_rows;

/// The entry points every x86 level has for two-column subspaces, written
/// once: each level module defines `nearest2`, `within2`, `hit_rows` and
/// `gather_coordinates` (generic over f32 or float16 columns, `HALF`) and
/// invokes this with the target features of its level; other subspace
/// sizes take the portable bodies, compiled with those features.
macro_rules! two_column_passes {
    ($features:literal) => {
        #[target_feature(enable = $features)]
        pub(in crate::arch) unsafe fn nearest(cols: &[&[f32]], q: &[f32]) -> Neighbour {
            match (cols, q) {
                (&[a, b], &[qa, qb]) => {
                    nearest2::<false>(a.as_ptr().cast(), b.as_ptr().cast(), a.len(), [qa, qb])
                }
                _ => portable::nearest_body(cols, q),
            }
        }

        #[target_feature(enable = $features)]
        pub(in crate::arch) unsafe fn nearest_f16(
            a: &[u16],
            b: &[u16],
            q: [f32; 2],
        ) -> Option<Neighbour> {
            Some(nearest2::<true>(
                a.as_ptr().cast(),
                b.as_ptr().cast(),
                a.len(),
                q,
            ))
        }

        #[target_feature(enable = $features)]
        pub(in crate::arch) unsafe fn within(
            cols: &[&[f32]],
            q: &[f32],
            limit: f32,
            exclude: u32,
            scratch: &mut Vec<u32>,
            out: &mut Vec<Neighbour>,
        ) {
            match (cols, q) {
                (&[a, b], &[qa, qb]) => {
                    let (pa, pb) = (a.as_ptr().cast(), b.as_ptr().cast());
                    within2::<false>(pa, pb, a.len(), [qa, qb], limit, exclude, scratch, out)
                }
                _ => portable::within_body(cols, q, limit, exclude, out),
            }
        }

        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        pub(in crate::arch) unsafe fn within_f16(
            a: &[u16],
            b: &[u16],
            q: [f32; 2],
            limit: f32,
            exclude: u32,
            scratch: &mut Vec<u32>,
            out: &mut Vec<Neighbour>,
        ) -> bool {
            let (pa, pb) = (a.as_ptr().cast(), b.as_ptr().cast());
            within2::<true>(pa, pb, a.len(), q, limit, exclude, scratch, out);
            true
        }

        #[target_feature(enable = $features)]
        pub(in crate::arch) unsafe fn collect(
            a: &[f32],
            b: &[f32],
            q: [f32; 2],
            limit: f32,
            cand: &mut Candidates,
        ) {
            let (pa, pb, n) = (a.as_ptr().cast(), b.as_ptr().cast(), a.len());
            hit_rows::<false>(pa, pb, n, q, limit, &mut cand.rows);
            gather_coordinates::<false>(pa, pb, n, cand);
        }

        #[target_feature(enable = $features)]
        pub(in crate::arch) unsafe fn collect_f16(
            a: &[u16],
            b: &[u16],
            q: [f32; 2],
            limit: f32,
            cand: &mut Candidates,
        ) -> bool {
            let (pa, pb, n) = (a.as_ptr().cast(), b.as_ptr().cast(), a.len());
            hit_rows::<true>(pa, pb, n, q, limit, &mut cand.rows);
            gather_coordinates::<true>(pa, pb, n, cand);
            true
        }
    };
}
pub(super) use two_column_passes;

pub(super) mod avx2;
pub(super) mod avx512;
pub(super) mod coarse16;

/// AVX2 level (x86-64-v3): every feature its kernels enable.
pub(super) fn has_avx2() -> bool {
    std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("fma")
        && std::is_x86_feature_detected!("f16c")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
        && std::is_x86_feature_detected!("popcnt")
}

/// AVX-512 level: F, BW, VL, DQ, on top of the AVX2 level (some AVX-512
/// kernels are the AVX2 ones).
pub(super) fn has_avx512() -> bool {
    has_avx2()
        && std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
        && std::is_x86_feature_detected!("avx512dq")
}

/// The 16-bit coarse filter: the AVX-512 level plus VBMI2 (16-bit
/// compress).
pub(super) fn has_vbmi2() -> bool {
    has_avx512() && std::is_x86_feature_detected!("avx512vbmi2")
}

/// 32-bit gathers take signed indices, but rows go up to 2^32 - 1. Every
/// gather therefore indexes from a base 2^31 elements past the column's
/// start with `row ^ 2^31` reinterpreted as i32, that is `row - 2^31`:
/// base + 2^31 + (row - 2^31) = row, for every u32 row. Only the hardware
/// forms the addresses, all inside the column; the biased base itself is
/// never dereferenced (hence `wrapping_add`).
#[inline(always)]
pub(super) fn biased_base(col: *const u8, elem_bytes: usize) -> *const u8 {
    col.wrapping_add(elem_bytes << 31)
}

/// The bit that `biased_base` flips in each row index.
pub(super) const ROW_BIAS: i32 = i32::MIN;

/// Starts the f32 line of rows `base..base + 16` of both `exact` columns
/// on its way to the cache when `hit` (those rows' compare mask) is not 0
/// (`prefetch_rows`). Without a branch: a block with no hit prefetches row
/// 0's line again, which is already cached.
#[inline]
pub(super) fn prefetch_block(exact: [*const f32; 2], hit: u32, base: usize) {
    prefetch_rows(exact, if hit != 0 { base } else { 0 });
}

/// `prefetch_block` for the two 16-row blocks of a 32-row mask.
#[inline]
pub(super) fn prefetch_blocks32(exact: [*const f32; 2], hit: u32, base: usize) {
    prefetch_block(exact, hit & 0xFFFF, base);
    prefetch_block(exact, hit >> 16, base + 16);
}

#[cfg(test)]
mod tests {
    use half::f16;
    use std::arch::x86_64::*;

    /// Rows from 2^31 - 8 up to u32::MAX - 1 reach the right elements,
    /// without a 16 GB column: the gathers are given a base pointer that
    /// many elements before a small buffer (they only ever form addresses
    /// inside it), as if the column started there.
    #[test]
    fn gathers_reach_rows_beyond_2_pow_31() {
        let data: Vec<f32> = (0..64).map(|i| i as f32 * 1.5 - 7.0).collect();
        let bits: Vec<u16> = data.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
        let picks: [u32; 8] = [0, 5, 9, 17, 31, 40, 62, 63];
        for first in [(1u64 << 31) - 8, 1 << 31, (1 << 32) - 65] {
            let n = first as usize + data.len();
            let base32 = data.as_ptr().cast::<u8>().wrapping_sub(4 * first as usize);
            let base16 = bits.as_ptr().cast::<u8>().wrapping_sub(2 * first as usize);
            let rows: [u32; 8] = picks.map(|p| (first + u64::from(p)) as u32);
            let want: Vec<f32> = picks.iter().map(|&p| data[p as usize]).collect();
            if super::has_avx2() {
                // SAFETY: AVX2 detected; every row maps into `data`/`bits`.
                let (x32, x16) = unsafe {
                    let r = _mm256_loadu_si256(rows.as_ptr().cast());
                    let live = _mm256_set1_epi32(-1);
                    let mut out = ([0f32; 8], [0f32; 8]);
                    let a = super::avx2::gather8::<false>(base32, n, r, live);
                    let b = super::avx2::gather8::<true>(base16, n, r, live);
                    _mm256_storeu_ps(out.0.as_mut_ptr(), a);
                    _mm256_storeu_ps(out.1.as_mut_ptr(), b);
                    out
                };
                assert_eq!(x32.to_vec(), want, "avx2 f32 from {first}");
                assert_eq!(x16.to_vec(), want, "avx2 f16 from {first}");
            }
            if super::has_avx512() {
                let rows16: Vec<u32> = rows.iter().chain(&rows).copied().collect();
                // SAFETY: AVX-512 detected; every row maps into `data`/`bits`.
                let (x32, x16) = unsafe {
                    let r = _mm512_loadu_si512(rows16.as_ptr().cast());
                    let mut out = ([0f32; 16], [0f32; 16]);
                    let a = super::avx512::gather16::<false>(base32, n, r, 0xFFFF);
                    let b = super::avx512::gather16::<true>(base16, n, r, 0xFFFF);
                    _mm512_storeu_ps(out.0.as_mut_ptr(), a);
                    _mm512_storeu_ps(out.1.as_mut_ptr(), b);
                    out
                };
                assert_eq!(x32[..8].to_vec(), want, "avx512 f32 from {first}");
                assert_eq!(x16[8..].to_vec(), want, "avx512 f16 from {first}");
            }
        }
    }
}

//! Counter-based random streams: every draw is a pure function of
//! (seed, stream, index, block), so results do not depend on the order in
//! which samples are processed, on the thread count, or on the backend.
//!
//! The generator is Philox4x32-10 (Salmon et al., SC'11), chosen because it is
//! well tested (it is the cuRAND / JAX / NumPy counter-based generator) and
//! needs only 32x32->64 bit multiplies, which PyTorch can replay on a GPU.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Stream id of the per-sample draws (subspace and sample point).
pub const STREAM_SAMPLE: u32 = 0;
/// Stream id of the per-row `rand_init` noise.
pub const STREAM_NOISE: u32 = 1;

/// Philox4x32 with 10 rounds: four 32-bit outputs for a 128-bit counter.
#[inline]
pub fn philox4x32(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        c = [
            ((p1 >> 32) as u32) ^ c[1] ^ k[0],
            p1 as u32,
            ((p0 >> 32) as u32) ^ c[3] ^ k[1],
            p0 as u32,
        ];
    }
    c
}

/// The draws of one (seed, stream, index): an endless sequence of u32 made
/// from consecutive Philox blocks.
pub struct Stream {
    key: [u32; 2],
    index: u64,
    stream: u32,
    block: u32,
    buf: [u32; 4],
    used: usize,
}

impl Stream {
    /// The stream for item `index` (a sample, or a row for noise).
    pub fn new(seed: u64, stream: u32, index: u64) -> Self {
        Stream {
            key: [seed as u32, (seed >> 32) as u32],
            index,
            stream,
            block: 0,
            buf: [0; 4],
            used: 4,
        }
    }

    /// The next 32 random bits.
    #[inline]
    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            let ctr = [
                self.index as u32,
                (self.index >> 32) as u32,
                self.block,
                self.stream,
            ];
            self.buf = philox4x32(ctr, self.key);
            self.block += 1;
            self.used = 0;
        }
        let v = self.buf[self.used];
        self.used += 1;
        v
    }

    /// An integer in `0..n` by multiply-shift (bias below n / 2^32, far
    /// under Monte-Carlo noise; chosen so a GPU can replay it exactly).
    #[inline]
    pub fn below(&mut self, n: u32) -> u32 {
        ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
    }

    /// A float in the open interval (0, 1) with 32 bits of resolution.
    #[inline]
    pub fn unit_open(&mut self) -> f64 {
        (f64::from(self.next_u32()) + 0.5) * (1.0 / 4_294_967_296.0)
    }
}

/// Inverse CDF of Triangular(lo, mode, hi) at `u` in (0, 1). A degenerate
/// range (lo == hi) gives that constant; mode equal to lo or hi is fine.
#[inline]
pub fn triangular(u: f64, lo: f64, mode: f64, hi: f64) -> f64 {
    let width = hi - lo;
    if width <= 0.0 {
        return lo;
    }
    let split = (mode - lo) / width;
    let x = if u < split {
        lo + (u * width * (mode - lo)).sqrt()
    } else {
        hi - ((1.0 - u) * width * (hi - mode)).sqrt()
    };
    x.clamp(lo, hi)
}

/// Writes `dims.len()` distinct dimensions out of `n_dims`, uniformly, with
/// Floyd's algorithm (one draw per chosen dimension, no rejection loop).
pub fn distinct_dims(rng: &mut Stream, n_dims: u32, dims: &mut [u32]) {
    let m = dims.len() as u32;
    debug_assert!(m <= n_dims);
    for (filled, j) in (n_dims - m..n_dims).enumerate() {
        let t = rng.below(j + 1);
        dims[filled] = if dims[..filled].contains(&t) { j } else { t };
    }
}

/// A small generator for the tests' random inputs (a 64-bit LCG with
/// Knuth's MMIX constants): the same sequence for a seed, everywhere.
#[cfg(test)]
pub(crate) struct TestRng(pub u64);

#[cfg(test)]
impl TestRng {
    /// The next 31 random bits.
    pub(crate) fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }

    /// A float in [0, 1) with 24 bits of resolution.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next() >> 7) as f32 / (1u32 << 24) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_matches_published_known_answers() {
        // Known-answer vectors from the Random123 distribution (kat_vectors).
        assert_eq!(
            philox4x32([0, 0, 0, 0], [0, 0]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn distinct_dims_are_distinct_and_uniform() {
        let mut counts = [0u32; 5];
        for s in 0..20_000 {
            let mut rng = Stream::new(7, STREAM_SAMPLE, s);
            let mut dims = [0u32; 2];
            distinct_dims(&mut rng, 5, &mut dims);
            assert_ne!(dims[0], dims[1]);
            for d in dims {
                counts[d as usize] += 1;
            }
        }
        // Each dim is chosen with probability 2/5: 8000 expected, sd ~ 69.
        for c in counts {
            assert!((7_600..8_400).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn triangular_handles_degenerate_ranges() {
        assert_eq!(triangular(0.3, 2.0, 2.0, 2.0), 2.0);
        let x = triangular(0.5, 0.0, 0.0, 1.0);
        assert!((0.0..=1.0).contains(&x));
        let y = triangular(0.999, 0.0, 1.0, 1.0);
        assert!((0.0..=1.0).contains(&y));
        // Median of Triangular(0, 0.5, 1) is 0.5.
        assert!((triangular(0.5, 0.0, 0.5, 1.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn streams_differ_by_seed_index_and_stream() {
        let a = Stream::new(1, 0, 5).next_u32();
        assert_ne!(a, Stream::new(2, 0, 5).next_u32());
        assert_ne!(a, Stream::new(1, 0, 6).next_u32());
        assert_ne!(a, Stream::new(1, 1, 5).next_u32());
    }
}

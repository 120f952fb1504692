//! Parquet data pages of an embedding column (a list of float16 or float32
//! values per row), decoded for the column cache's writer on the Python
//! side, which walks the pages and decompresses them.
//!
//! Why not leave it to pyarrow: a float16 column written with pyarrow's
//! defaults is dictionary-encoded, and pyarrow decodes 2-byte dictionary
//! values at about 50 M values/s per core, a quarter of its plain decode.
//! Here a page is a few passes over its run-length/bit-packed runs.
//!
//! Only the clean case is handled: one value per level (no nulls, no empty
//! lists), every row exactly `d` values long. Anything else is a
//! [`PageError`], on which the caller reads the row group with pyarrow,
//! whose errors name the row.

use std::fmt;

/// Why a page could not be decoded here (the caller falls back to pyarrow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageError(pub String);

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PageError {}

fn fail<T>(what: impl Into<String>) -> Result<T, PageError> {
    Err(PageError(what.into()))
}

/// A value's bits as stored: float16 as `u16`, float32 as `u32`.
pub trait ValueBits: Copy + Default {
    /// Bytes per plain-encoded value.
    const BYTES: usize;
    /// The value from its little-endian bytes (`b.len() == BYTES`).
    fn from_le(b: &[u8]) -> Self;
}

impl ValueBits for u16 {
    const BYTES: usize = 2;
    fn from_le(b: &[u8]) -> Self {
        u16::from_le_bytes([b[0], b[1]])
    }
}

impl ValueBits for u32 {
    const BYTES: usize = 4;
    fn from_le(b: &[u8]) -> Self {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// How a page's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values<'a> {
    /// PLAIN: the values' little-endian bytes, one after another.
    Plain(&'a [u8]),
    /// RLE_DICTIONARY / PLAIN_DICTIONARY: a bit-width byte, then
    /// run-length/bit-packed indices into the column chunk's dictionary.
    Dictionary(&'a [u8]),
}

/// The column's levels and row length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Values per row.
    pub d: usize,
    /// The definition level of a present value (every level must be it).
    pub max_def: u32,
    /// The repetition level of a value that continues a row (a list of
    /// floats: 1; a row's first value has 0).
    pub max_rep: u32,
}

/// Decodes one data page into `out` (one value per level; `out.len()` is
/// the page's level count). `rep` and `def` are the page's repetition and
/// definition levels (run-length/bit-packed, without a length prefix),
/// `first` the position within its row of the page's first value.
///
/// Checks that every level belongs to a present value and that rows start
/// exactly every `shape.d` values; returns where in its row the value after
/// the page falls.
pub fn decode_page<T: ValueBits>(
    rep: &[u8],
    def: &[u8],
    values: Values<'_>,
    dictionary: &[T],
    shape: Shape,
    first: usize,
    out: &mut [T],
) -> Result<usize, PageError> {
    let Shape {
        d,
        max_def,
        max_rep,
    } = shape;
    if d == 0 || first >= d || max_rep != 1 || max_def == 0 || max_def > 32 {
        return fail(format!(
            "unsupported shape: d {d}, first {first}, max levels {max_rep}/{max_def}"
        ));
    }
    let n = out.len();
    let mut checked = 0;
    for_each_run(def, level_width(max_def), n, |run| {
        let ok = match run {
            Run::Repeat { value, .. } => value == max_def,
            Run::Packed { data, width, count } => {
                let mut all = true;
                unpack(data, width, count, |_, v| all &= v == max_def);
                all
            }
        };
        checked += run.count();
        ok.then_some(())
            .ok_or_else(|| PageError(format!("a missing value near level {checked}")))
    })?;
    let mut col = first;
    for_each_run(rep, level_width(max_rep), n, |run| {
        // `col` is where in its row the run's first value falls: a 0 starts
        // a row, `max_rep` continues one.
        let ok = match run {
            Run::Repeat { value, count } if value == max_rep => {
                let ok = col != 0 && col + count <= d;
                col += count;
                ok
            }
            Run::Repeat { value: 0, count } => {
                let ok = col == 0 && (d == 1 || count == 1);
                col = count % d;
                ok
            }
            Run::Repeat { .. } => false,
            Run::Packed { data, width, count } => {
                let mut ok = true;
                unpack(data, width, count, |_, v| {
                    ok &= v == if col == 0 { 0 } else { max_rep };
                    col += 1;
                    if col == d {
                        col = 0;
                    }
                });
                ok
            }
        };
        if col == d {
            col = 0;
        }
        ok.then_some(())
            .ok_or_else(|| PageError(format!("rows are not {d} values long")))
    })?;
    match values {
        Values::Plain(bytes) => {
            if bytes.len() < n * T::BYTES {
                return fail(format!("{n} plain values need more than the page holds"));
            }
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(T::BYTES)) {
                *o = T::from_le(b);
            }
        }
        Values::Dictionary(bytes) => {
            let Some((&width, runs)) = bytes.split_first() else {
                return fail("a dictionary page without its bit width");
            };
            let mut at = 0;
            let mut bad = false;
            for_each_run(runs, u32::from(width), n, |run| {
                let chunk = &mut out[at..at + run.count()];
                at += run.count();
                match run {
                    Run::Repeat { value, .. } => match dictionary.get(value as usize) {
                        Some(&v) => chunk.fill(v),
                        None => bad = true,
                    },
                    Run::Packed { data, width, .. } => unpack(data, width, chunk.len(), |j, i| {
                        match dictionary.get(i as usize) {
                            Some(&v) => chunk[j] = v,
                            None => bad = true,
                        }
                    }),
                }
                (!bad)
                    .then_some(())
                    .ok_or_else(|| PageError("an index past the dictionary".into()))
            })?;
        }
    }
    Ok(col)
}

/// Bits per level of levels up to `max`.
fn level_width(max: u32) -> u32 {
    32 - max.leading_zeros()
}

/// A run of the run-length/bit-packed hybrid encoding, clipped to the
/// values wanted.
#[derive(Clone, Copy)]
enum Run<'a> {
    Repeat {
        value: u32,
        count: usize,
    },
    Packed {
        data: &'a [u8],
        width: u32,
        count: usize,
    },
}

impl Run<'_> {
    fn count(&self) -> usize {
        match *self {
            Run::Repeat { count, .. } | Run::Packed { count, .. } => count,
        }
    }
}

/// Calls `f` on the runs of `bytes` until `n` values are covered.
fn for_each_run<'a>(
    bytes: &'a [u8],
    width: u32,
    n: usize,
    mut f: impl FnMut(Run<'a>) -> Result<(), PageError>,
) -> Result<(), PageError> {
    if width > 32 {
        return fail(format!("a bit width of {width}"));
    }
    let mut at = 0;
    let mut left = n;
    while left > 0 {
        let Some(header) = uleb128(bytes, &mut at) else {
            return fail(format!("the runs end {left} values early"));
        };
        let run = if header & 1 == 0 {
            let count = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let len = width.div_ceil(8) as usize;
            let Some(raw) = bytes.get(at..at + len) else {
                return fail("a run's value is cut off");
            };
            at += len;
            let mut le = [0u8; 4];
            le[..len].copy_from_slice(raw);
            let value = u32::from_le_bytes(le);
            if width < 32 && value >> width != 0 {
                return fail(format!("a run's value {value} is wider than {width} bits"));
            }
            if count == 0 {
                return fail("an empty run");
            }
            Run::Repeat {
                value,
                count: count.min(left),
            }
        } else {
            let groups = usize::try_from(header >> 1).unwrap_or(usize::MAX);
            let Some(len) = groups.checked_mul(width as usize) else {
                return fail("a bit-packed run past the page");
            };
            let Some(data) = bytes.get(at..).and_then(|b| b.get(..len)) else {
                return fail("a bit-packed run past the page");
            };
            at += len;
            if groups == 0 {
                return fail("an empty bit-packed run");
            }
            Run::Packed {
                data,
                width,
                count: groups.saturating_mul(8).min(left),
            }
        };
        left -= run.count();
        f(run)?;
    }
    Ok(())
}

/// An unsigned LEB128 varint at `bytes[*at..]` (at most 64 bits).
fn uleb128(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Calls `f(j, v)` for the first `count` values of `width` bits packed
/// least-significant bit first in `data` (`count * width <= 8 * data.len()`).
#[inline]
fn unpack(data: &[u8], width: u32, count: usize, mut f: impl FnMut(usize, u32)) {
    debug_assert!(count * width as usize <= 8 * data.len());
    if width == 0 {
        (0..count).for_each(|j| f(j, 0));
        return;
    }
    let mask = (1u64 << width) - 1;
    let w = width as usize;
    // Values whose 8-byte window lies inside `data` are read with one load;
    // the last few byte by byte.
    let fast = if data.len() >= 8 {
        ((data.len() - 8) * 8 / w + 1).min(count)
    } else {
        0
    };
    for j in 0..fast {
        let bit = j * w;
        let at = bit >> 3;
        let window = u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
        f(j, ((window >> (bit & 7)) & mask) as u32);
    }
    for j in fast..count {
        let bit = j * w;
        let at = bit >> 3;
        let mut le = [0u8; 8];
        let tail = &data[at..data.len().min(at + 8)];
        le[..tail.len()].copy_from_slice(tail);
        f(j, ((u64::from_le_bytes(le) >> (bit & 7)) & mask) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::TestRng;

    /// The hybrid encoding of `values`, written the slow way: runs of
    /// equal values of at least `min_repeat` as RLE runs, the rest in
    /// bit-packed groups of 8 (padded with zeros).
    fn encode(values: &[u32], width: u32, min_repeat: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let put = |out: &mut Vec<u8>, mut v: u64| loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        };
        let mut i = 0;
        while i < values.len() {
            let mut j = i;
            while j < values.len() && values[j] == values[i] {
                j += 1;
            }
            if j - i >= min_repeat {
                put(&mut out, ((j - i) as u64) << 1);
                let bytes = values[i].to_le_bytes();
                out.extend_from_slice(&bytes[..width.div_ceil(8) as usize]);
                i = j;
                continue;
            }
            let take = (values.len() - i).min(8 * (1 + (i % 3)));
            let groups = take.div_ceil(8);
            put(&mut out, ((groups as u64) << 1) | 1);
            let mut bits = vec![false; groups * 8 * width as usize];
            for (k, v) in values[i..i + take].iter().enumerate() {
                for b in 0..width as usize {
                    bits[k * width as usize + b] = (v >> b) & 1 == 1;
                }
            }
            for byte in bits.chunks(8) {
                out.push(
                    byte.iter()
                        .enumerate()
                        .map(|(b, &on)| (on as u8) << b)
                        .sum(),
                );
            }
            i += take;
        }
        out
    }

    /// Every level and value checked one at a time, from the definition.
    #[allow(clippy::too_many_arguments)]
    fn oracle(
        rep: &[u32],
        def: &[u32],
        idx: Option<&[u32]>,
        plain: &[u16],
        dictionary: &[u16],
        shape: Shape,
        first: usize,
    ) -> Result<(Vec<u16>, usize), ()> {
        let mut col = first;
        let mut out = Vec::new();
        for i in 0..rep.len() {
            if def[i] != shape.max_def || rep[i] != if col == 0 { 0 } else { 1 } {
                return Err(());
            }
            col = (col + 1) % shape.d;
            out.push(match idx {
                Some(idx) => *dictionary.get(idx[i] as usize).ok_or(())?,
                None => plain[i],
            });
        }
        Ok((out, col))
    }

    #[test]
    fn pages_equal_the_definition_on_random_inputs() {
        let mut rng = TestRng(11);
        let mut failures = 0;
        for case in 0..3000 {
            let d = 1 + (rng.next() % 9) as usize;
            let max_def = 1 + rng.next() % 3;
            let shape = Shape {
                d,
                max_def,
                max_rep: 1,
            };
            let first = (rng.next() as usize) % d;
            let n = (rng.next() % 70) as usize;
            let corrupt = rng.next().is_multiple_of(4);
            let mut rep: Vec<u32> = (0..n)
                .map(|i| !(first + i).is_multiple_of(d) as u32)
                .collect();
            let mut def = vec![max_def; n];
            let dict_len = 1 + (rng.next() % 40) as usize;
            let dictionary: Vec<u16> = (0..dict_len).map(|_| rng.next() as u16).collect();
            let mut idx: Vec<u32> = (0..n)
                .map(|_| {
                    if rng.next().is_multiple_of(3) {
                        0
                    } else {
                        rng.next() % dict_len as u32
                    }
                })
                .collect();
            if corrupt && n > 0 {
                let at = (rng.next() as usize) % n;
                match rng.next() % 3 {
                    0 => rep[at] ^= 1,
                    1 => def[at] = rng.next() % max_def,
                    _ => idx[at] = dict_len as u32 + rng.next() % 3,
                }
            }
            let plain: Vec<u16> = (0..n).map(|_| rng.next() as u16).collect();
            let min_repeat = 1 + (rng.next() % 9) as usize;
            let rep_bytes = encode(&rep, 1, min_repeat);
            let def_bytes = encode(&def, level_width(max_def), min_repeat);
            let width = level_width(dict_len as u32 + 2).max(rng.next() % 17);
            let mut dict_bytes = vec![width as u8];
            dict_bytes.extend(encode(&idx, width, min_repeat));
            let plain_bytes: Vec<u8> = plain.iter().flat_map(|v| v.to_le_bytes()).collect();
            for use_dict in [false, true] {
                let values = if use_dict {
                    Values::Dictionary(&dict_bytes)
                } else {
                    Values::Plain(&plain_bytes)
                };
                let mut out = vec![0u16; n];
                let got = decode_page(
                    &rep_bytes,
                    &def_bytes,
                    values,
                    &dictionary,
                    shape,
                    first,
                    &mut out,
                );
                let want = oracle(
                    &rep,
                    &def,
                    use_dict.then_some(&idx),
                    &plain,
                    &dictionary,
                    shape,
                    first,
                );
                match (got, want) {
                    (Ok(col), Ok((values, end))) => {
                        assert_eq!((out, col), (values, end), "case {case}");
                    }
                    (Err(_), Err(())) => failures += 1,
                    (got, want) => panic!("case {case}: {got:?} against {want:?}"),
                }
            }
        }
        assert!(failures > 500, "the corrupt cases must fail: {failures}");
    }

    #[test]
    fn truncated_or_damaged_runs_are_errors() {
        let shape = Shape {
            d: 4,
            max_def: 3,
            max_rep: 1,
        };
        let rep = encode(&[0, 1, 1, 1, 0, 1, 1, 1], 1, 100);
        let def = encode(&[3; 8], 2, 1);
        let dict = [7u16, 8];
        let idx = [vec![1u8], encode(&[1, 0, 1, 0, 1, 0, 1, 0], 1, 100)].concat();
        // The page's levels and values, the rest as above; the values out.
        let page = |rep: &[u8], values: Values<'_>| {
            let mut out = [0u16; 8];
            decode_page(rep, &def, values, &dict, shape, 0, &mut out).map(|col| (col, out))
        };
        let ok = page(&rep, Values::Dictionary(&idx));
        assert_eq!(ok, Ok((0, [8, 7, 8, 7, 8, 7, 8, 7])));
        for cut in 0..idx.len() {
            let r = page(&rep, Values::Dictionary(&idx[..cut]));
            assert!(r.is_err(), "indices cut at {cut}");
        }
        for cut in 0..rep.len() {
            let r = page(&rep[..cut], Values::Dictionary(&idx));
            assert!(r.is_err(), "levels cut at {cut}");
        }
        let plain = [1u8; 15];
        assert!(
            page(&rep, Values::Plain(&plain)).is_err(),
            "plain values cut off"
        );
        // A huge run count and a 64-bit varint overflow are errors, not panics.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(page(&huge, Values::Dictionary(&idx)).is_err());
        let wide = [vec![40u8], idx[1..].to_vec()].concat();
        let r = page(&rep, Values::Dictionary(&wide));
        assert!(r.is_err(), "a 40-bit width");
    }
}

//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the
//! crate so that `cargo test` replays the checked-in seed corpus and every
//! input that ever crashed through exactly the code the fuzzer ran
//! (`tests/fuzz_corpus.rs`). Each function panics only on a real defect:
//! a wrong answer, a read outside the input, or a disagreement between
//! instruction-set levels. Refusing an input with an error is fine.

use crate::arch::Isa;
use crate::npy::{self, Dtype};
use crate::parquet_page::{decode_page, Shape, ValueBits, Values};
use crate::pool::{Pool, Source};
use crate::score::{self, Params, Search};
use std::sync::OnceLock;

/// `raw_source` pools up to this many values are also scored (and compared
/// across levels) when flag bit 4 asks for it; larger ones are only built.
/// Scoring spawns a worker thread per level, which under AddressSanitizer
/// costs ten times the rest of an execution, so only inputs that ask for it
/// pay it.
const SCORED_VALUES: usize = 256;

/// Runs `body` on a one-thread rayon pool. The engine's parallel loops then
/// run inline on that thread instead of waking (and spinning) the global
/// pool's workers, which otherwise took most of each execution.
fn on_one_thread(body: impl FnOnce() + Send) {
    static POOL: OnceLock<rayon::ThreadPool> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a one-thread pool")
    })
    .install(body);
}

/// Any bytes as a whole `.npy` file. The parser and the checks that
/// `NpyFile::open` trusts either refuse them or describe data that lies
/// entirely inside them; such a pool is then built and must read back
/// every value as `Source::get` does. (Scoring is `raw_source`'s job.)
pub fn npy_file(data: &[u8]) {
    on_one_thread(|| npy_file_body(data));
}

fn npy_file_body(data: &[u8]) {
    let Ok(header) = npy::validate(data) else {
        return;
    };
    let (rows, cols) = (header.shape[0], header.shape[1]);
    let need = header
        .dtype
        .bytes_for(rows, cols)
        .expect("validate accepted a shape whose size overflows");
    let end = header
        .data_offset
        .checked_add(need)
        .expect("validate accepted data that ends past usize::MAX");
    assert!(end <= data.len(), "validate accepted a truncated file");
    let source = Source {
        bytes: &data[header.data_offset..end],
        dtype: header.dtype,
        rows,
        cols,
        fortran_order: header.fortran_order,
        name: "fuzz.npy",
    };
    build_and_check(source);
}

/// Arbitrary `Source` fields over arbitrary bytes: the struct is public, so
/// any caller can fill it. `Pool::build` must refuse it or read back every
/// value exactly as `Source::get` (the obviously-correct oracle) does.
///
/// Layout of `data`: byte 0 picks dtype (low 2 bits), order (bit 2),
/// whether the row count is a full u64 (bit 3, to reach overflowing
/// shapes) and whether a small pool is also scored (bit 4); then the row count (u16 or u64), one byte of columns, and the
/// element bytes.
pub fn raw_source(data: &[u8]) {
    on_one_thread(|| raw_source_body(data));
}

fn raw_source_body(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let dtype = match flags & 3 {
        0 => Dtype::F16,
        1 => Dtype::F32,
        _ => Dtype::F64,
    };
    let (rows, rest) = if flags & 8 != 0 {
        match rest.split_first_chunk::<8>() {
            Some((r, rest)) => (u64::from_le_bytes(*r) as usize, rest),
            None => return,
        }
    } else {
        match rest.split_first_chunk::<2>() {
            Some((r, rest)) => (usize::from(u16::from_le_bytes(*r)), rest),
            None => return,
        }
    };
    let Some((&cols, bytes)) = rest.split_first() else {
        return;
    };
    let source = Source {
        bytes,
        dtype,
        rows,
        cols: usize::from(cols),
        fortran_order: flags & 4 != 0,
        name: "fuzz",
    };
    if let Some(pool) = build_and_check(source) {
        if flags & 16 != 0 && pool.n * pool.d <= SCORED_VALUES {
            score_at_every_level(&pool);
        }
    }
}

/// Builds the pool of `source` (or accepts its refusal) and checks every
/// value against `Source::get`.
fn build_and_check(source: Source<'_>) -> Option<Pool<'_>> {
    let pool = Pool::build(&[source]).ok()?;
    assert_eq!((pool.n, pool.d), (source.rows, source.cols));
    for dim in 0..pool.d {
        for row in 0..pool.n {
            let (got, want) = (pool.value(dim, row), source.get(row, dim));
            assert_eq!(got.to_bits(), want.to_bits(), "value ({row}, {dim})");
        }
    }
    Some(pool)
}

/// Scores `pool` at every instruction-set level the CPU has: the scores
/// must be valid and bit-identical.
fn score_at_every_level(pool: &Pool) {
    let params = |isa| Params {
        n_sample: 8,
        sample_dim: pool.d.min(2),
        redund_nn: 3,
        threads: 1,
        search: Search::Auto,
        isa,
        ..Params::default()
    };
    let mut first: Option<Vec<f32>> = None;
    for isa in Isa::supported() {
        let scores = score::score(pool, &params(isa), &mut score::no_progress)
            .expect("a valid pool and valid parameters must score");
        assert_eq!(scores.len(), pool.n);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        match &first {
            None => first = Some(scores),
            Some(expected) => assert_eq!(&scores, expected, "levels disagree ({})", isa.name()),
        }
    }
}

/// Any bytes as a Parquet data page of an embedding column: levels, values
/// and a dictionary. The decoder refuses it or returns a column position
/// consistent with the page's length, and every value it writes is the
/// plain value or a dictionary entry.
///
/// Layout of `data`: byte 0 holds d - 1 (low 4 bits), float32 (bit 4) and
/// dictionary encoding (bit 5); byte 1 max_def - 1 (low 2 bits) and the
/// first value's place in its row (the rest, modulo d); byte 2 the level
/// count; bytes 3-5 the lengths of the repetition levels, the definition
/// levels and the dictionary (in values); then those, and the values.
pub fn parquet_page(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<6>() else {
        return;
    };
    if head[0] & 16 != 0 {
        parquet_page_of::<u32>(head, rest);
    } else {
        parquet_page_of::<u16>(head, rest);
    }
}

fn parquet_page_of<T: ValueBits + PartialEq + std::fmt::Debug>(head: &[u8; 6], rest: &[u8]) {
    let d = 1 + usize::from(head[0] & 15);
    let shape = Shape {
        d,
        max_def: 1 + u32::from(head[1] & 3),
        max_rep: 1,
    };
    let first = usize::from(head[1] >> 2) % d;
    let n = usize::from(head[2]);
    let (rep_len, def_len) = (usize::from(head[3]), usize::from(head[4]));
    let dict_len = usize::from(head[5]) * T::BYTES;
    if rest.len() < rep_len + def_len + dict_len {
        return;
    }
    let (rep, rest) = rest.split_at(rep_len);
    let (def, rest) = rest.split_at(def_len);
    let (dict_bytes, values) = rest.split_at(dict_len);
    let dictionary: Vec<T> = dict_bytes.chunks_exact(T::BYTES).map(T::from_le).collect();
    let encoded = head[0] & 32 != 0;
    let page = if encoded {
        Values::Dictionary(values)
    } else {
        Values::Plain(values)
    };
    let mut out = vec![T::default(); n];
    let Ok(col) = decode_page(rep, def, page, &dictionary, shape, first, &mut out) else {
        return;
    };
    assert_eq!(
        col,
        (first + n) % d,
        "the page ends elsewhere than its levels say"
    );
    for (i, v) in out.iter().enumerate() {
        if encoded {
            assert!(dictionary.contains(v), "value {i} is not in the dictionary");
        } else {
            assert_eq!(
                *v,
                T::from_le(&values[i * T::BYTES..][..T::BYTES]),
                "value {i}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every file of `fuzz/corpus/<target>` (the seed corpus, and every
    /// input that ever crashed a target, kept as `crash-*`) through the
    /// target's body.
    fn replay(target: &str, body: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 5, "{}: seed corpus missing", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let run = std::panic::catch_unwind(|| body(&data));
            assert!(run.is_ok(), "{} fails again", file.display());
        }
    }

    #[test]
    fn npy_file_corpus_replays() {
        replay("npy_file", super::npy_file);
    }

    #[test]
    fn raw_source_corpus_replays() {
        replay("raw_source", super::raw_source);
    }

    #[test]
    fn parquet_page_corpus_replays() {
        replay("parquet_page", super::parquet_page);
    }

    /// The soundness check the fuzzer would otherwise have to find: a
    /// public `Source` whose bytes are shorter than its shape is refused
    /// before any kernel reads it.
    #[test]
    fn short_source_is_refused_not_read() {
        // f32, C order, 300 rows (u16), 2 columns, but 8 bytes of data.
        let mut data = vec![1u8, 44, 1, 2];
        data.extend_from_slice(&[0u8; 8]);
        super::raw_source(&data);
        let source = crate::pool::Source {
            bytes: &[0u8; 8],
            dtype: crate::npy::Dtype::F32,
            rows: 300,
            cols: 2,
            fortran_order: true,
            name: "short",
        };
        let err = crate::pool::Pool::build(&[source]).err().expect("refused");
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}

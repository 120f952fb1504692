//! Reading `.npy` files (format versions 1, 2 and 3) by memory-mapping them:
//! the header is parsed here, the data is never copied by this module.

use crate::error::{invalid, CoreError, Result};
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;

/// The element types the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// IEEE half precision.
    F16,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl Dtype {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    /// Bytes `rows x cols` elements take, or None when that overflows (a
    /// hostile header's shape can).
    pub fn bytes_for(self, rows: usize, cols: usize) -> Option<usize> {
        rows.checked_mul(cols)?.checked_mul(self.size())
    }
}

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Element type (always little-endian here).
    pub dtype: Dtype,
    /// True when the data is stored column-major.
    pub fortran_order: bool,
    /// The array shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data from the start of the file.
    pub data_offset: usize,
}

/// A memory-mapped 2-D `.npy` file.
pub struct NpyFile {
    /// The parsed header.
    pub header: Header,
    map: Mmap,
}

impl NpyFile {
    /// Opens and maps `path`, checking that it holds a 2-D float array.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CoreError::NotFound(format!("{shown}: no such file; check the path"))
            }
            _ => CoreError::Io(format!("{shown}: cannot open: {e}")),
        })?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(CoreError::InvalidValue(format!(
                "{shown} is a directory, not an .npy file"
            )));
        }
        // SAFETY: the map is read-only; a file truncated by another process
        // while we read it would fault, which is the documented mmap caveat.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| CoreError::Io(format!("{shown}: cannot memory-map: {e}")))?;
        let header = validate(&map).map_err(|e| prefix(e, &shown.to_string()))?;
        Ok(NpyFile { header, map })
    }

    /// Rows (first dimension).
    pub fn rows(&self) -> usize {
        self.header.shape[0]
    }

    /// Columns (second dimension).
    pub fn cols(&self) -> usize {
        self.header.shape[1]
    }

    /// The raw data bytes, in the file's element order.
    pub fn data(&self) -> &[u8] {
        let n = self.rows() * self.cols() * self.header.dtype.size();
        &self.map[self.header.data_offset..self.header.data_offset + n]
    }
}

/// Parses the header of a whole `.npy` file's `bytes` and checks that it
/// describes a 2-D array the bytes hold entirely: what `NpyFile::open`
/// trusts. Errors are not yet prefixed with a file name.
pub fn validate(bytes: &[u8]) -> Result<Header> {
    let header = parse_header(bytes)?;
    if header.shape.len() != 2 {
        return Err(invalid!(
            "array has {} dimension(s) {:?}; expected a 2-D array \
             (rows = examples, columns = embedding dimensions)",
            header.shape.len(),
            header.shape
        ));
    }
    // Checked: a hostile header's shape can overflow, and a wrapped size
    // would let `data()` and the pool read past the mapping.
    let need = header
        .dtype
        .bytes_for(header.shape[0], header.shape[1])
        .ok_or_else(|| {
            invalid!(
                "header shape {:?} is too large to exist (its byte size overflows); \
                 the file is corrupt: re-create it",
                header.shape
            )
        })?;
    let have = bytes.len() - header.data_offset;
    if have < need {
        return Err(invalid!(
            "file is truncated: header promises {need} bytes of data, file holds \
             {have}; re-create the file"
        ));
    }
    Ok(header)
}

fn prefix(e: CoreError, what: &str) -> CoreError {
    match e {
        CoreError::InvalidType(m) => CoreError::InvalidType(format!("{what}: {m}")),
        CoreError::InvalidValue(m) => CoreError::InvalidValue(format!("{what}: {m}")),
        other => other,
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

fn not_npy(detail: &str) -> CoreError {
    CoreError::InvalidValue(format!(
        "not an .npy file ({detail}); save embeddings with numpy.save"
    ))
}

/// Parses the header at the start of `bytes`.
pub fn parse_header(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(not_npy("wrong magic bytes"));
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(not_npy("truncated header"));
            }
            let l = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (l as usize, 12)
        }
        v => return Err(not_npy(&format!("unknown format version {v}"))),
    };
    let end = start + len;
    if bytes.len() < end {
        return Err(not_npy("truncated header"));
    }
    let text =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| not_npy("header is not text"))?;
    let descr = dict_value(text, "descr").ok_or_else(|| not_npy("header has no 'descr'"))?;
    let fortran = dict_value(text, "fortran_order").ok_or_else(|| not_npy("no 'fortran_order'"))?;
    let shape = dict_value(text, "shape").ok_or_else(|| not_npy("header has no 'shape'"))?;
    Ok(Header {
        dtype: parse_descr(descr)?,
        fortran_order: fortran.trim() == "True",
        shape: parse_shape(shape)?,
        data_offset: end,
    })
}

/// The raw text of `key`'s value in the header's Python dict literal.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(quoted) = rest.strip_prefix('\'') {
        quoted.find('\'')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

fn parse_descr(raw: &str) -> Result<Dtype> {
    let descr = raw.trim().trim_matches('\'');
    // At a character boundary: a hostile header may start with any UTF-8.
    let (order, code) = descr.split_at(descr.chars().next().map_or(0, char::len_utf8));
    let little = matches!(order, "<" | "|") || (order == "=" && cfg!(target_endian = "little"));
    let dtype = match code {
        "f2" => Some(Dtype::F16),
        "f4" => Some(Dtype::F32),
        "f8" => Some(Dtype::F64),
        _ => None,
    };
    match dtype {
        Some(d) if little => Ok(d),
        Some(_) => Err(CoreError::InvalidType(format!(
            "big-endian dtype {descr} is not supported; convert with \
             arr.astype('<f4') and save again"
        ))),
        None => Err(CoreError::InvalidType(format!(
            "dtype {descr} is not a float16/float32/float64 array; embeddings \
             must be floating point (cast with arr.astype('float32'))"
        ))),
    }
}

fn parse_shape(raw: &str) -> Result<Vec<usize>> {
    let inner = raw.trim().trim_start_matches('(').trim_end_matches(')');
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| not_npy(&format!("bad shape {raw}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_bytes(version: u8, dict: &str) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(version);
        out.push(0);
        let body = format!("{dict}\n");
        if version == 1 {
            out.extend_from_slice(&(body.len() as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(body.as_bytes());
        out
    }

    #[test]
    fn parses_all_versions_and_orders() {
        for v in 1..=3 {
            let b = header_bytes(
                v,
                "{'descr': '<f2', 'fortran_order': True, 'shape': (7, 3), }",
            );
            let h = parse_header(&b).unwrap();
            assert_eq!(h.dtype, Dtype::F16);
            assert!(h.fortran_order);
            assert_eq!(h.shape, vec![7, 3]);
            assert_eq!(h.data_offset, b.len());
        }
    }

    #[test]
    fn refuses_bad_magic_dtype_and_endianness() {
        assert!(matches!(
            parse_header(b"hello world!"),
            Err(CoreError::InvalidValue(_))
        ));
        let ints = header_bytes(
            1,
            "{'descr': '<i8', 'fortran_order': False, 'shape': (2, 2), }",
        );
        let msg = parse_header(&ints).unwrap_err().to_string();
        assert!(msg.contains("<i8"), "{msg}");
        let big = header_bytes(
            1,
            "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 2), }",
        );
        assert!(parse_header(&big)
            .unwrap_err()
            .to_string()
            .contains("big-endian"));
    }

    /// Hostile headers: a non-ASCII dtype and a shape whose byte size
    /// overflows are errors, not panics or wrapped sizes.
    #[test]
    fn refuses_hostile_dtype_and_overflowing_shape() {
        let b = header_bytes(
            1,
            "{'descr': '\u{e9}4', 'fortran_order': False, 'shape': (2, 2), }",
        );
        assert!(matches!(parse_header(&b), Err(CoreError::InvalidType(_))));
        let b = header_bytes(
            1,
            "{'descr': '\u{e9}', 'fortran_order': False, 'shape': (2, 2), }",
        );
        assert!(parse_header(&b).is_err());
        let dir = std::env::temp_dir().join(format!("zcore-npy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for shape in [
            "(4294967296, 4294967297)",
            "(18446744073709551615, 2)",
            "(2305843009213693952, 4)",
        ] {
            let path = dir.join("huge.npy");
            let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}");
            let mut bytes = header_bytes(1, &dict);
            bytes.extend_from_slice(&[0u8; 64]);
            std::fs::write(&path, &bytes).unwrap();
            let err = NpyFile::open(&path).err().expect("refused");
            assert!(err.to_string().contains("too large to exist"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_one_dimensional_shape() {
        let b = header_bytes(
            1,
            "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }",
        );
        assert_eq!(parse_header(&b).unwrap().shape, vec![5]);
    }
}

//! The one error type of the engine. Messages say what is wrong and what to do.

use std::fmt;

/// Every failure the engine can report. `py.rs` maps each kind to the Python
/// exception that means the same thing.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// A file that should exist does not.
    NotFound(String),
    /// Input that is the wrong kind of thing (dtype, not an .npy file, ...).
    InvalidType(String),
    /// Input of the right kind with a bad value (shape, NaN, parameters ...).
    InvalidValue(String),
    /// An operating-system level I/O failure.
    Io(String),
    /// The caller asked to stop (Ctrl-C or a progress callback).
    Cancelled,
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::NotFound(m)
            | CoreError::InvalidType(m)
            | CoreError::InvalidValue(m)
            | CoreError::Io(m) => f.write_str(m),
            CoreError::Cancelled => f.write_str("scoring was cancelled"),
        }
    }
}

impl std::error::Error for CoreError {}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, CoreError>;

/// Builds an `InvalidValue` error from a format string.
macro_rules! invalid {
    ($($arg:tt)*) => { $crate::error::CoreError::InvalidValue(format!($($arg)*)) };
}
pub(crate) use invalid;

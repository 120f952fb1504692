//! zcore-fast: zero-shot coreset selection (ZCore, arXiv 2411.15349) over
//! memory-mapped embeddings. Pure Rust; the Python bindings live in `py.rs`
//! behind the `python` feature.

pub mod band;
pub mod band_kernels;
pub mod cache;
pub mod coarse;
pub mod columns;
pub mod error;
pub mod kernels;
pub mod npy;
pub mod one_pass;
pub mod penalty;
pub mod rng;
pub mod runner;
pub mod search;
pub mod zcore;

#[cfg(feature = "python")]
mod py;

pub use error::{CoreError, Result};

//! zcore-fast: zero-shot coreset selection (ZCore, arXiv 2411.15349) over
//! memory-mapped embeddings. Pure Rust; the Python bindings live in `py.rs`
//! behind the `python` feature.
//!
//! What is computed, and where:
//! - `npy`, `pool`, `cache`: inputs, the dimension-major working layout
//!   (with per-dimension statistics), and its out-of-core copy;
//!   `block_transpose` turns row blocks into column runs for the copy's
//!   writer on the Python side, and `parquet_page` decodes Parquet data
//!   pages of an embedding column for it;
//! - `rng`: the counter-based random streams behind every draw;
//! - `search`: nearest neighbours in a subspace (passes over every row,
//!   one pass, the 16-bit coarse filter, band search);
//! - `score`: ZCore's semantics, the parallel runner and the penalties.
//!
//! How each CPU computes the inner loops lives apart, in `arch` (one module
//! per instruction-set level behind one dispatching type, `arch::Isa`).
//! Dependencies point one way: `score` -> `search` -> `arch` -> the leaf
//! types (`neighbour`, `column`).

pub mod arch;
pub mod block_transpose;
pub mod cache;
pub mod column;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod neighbour;
pub mod npy;
pub mod parquet_page;
pub mod pool;
pub mod rng;
pub mod score;
pub mod search;

#[cfg(feature = "python")]
mod py;

pub use error::{CoreError, Result};

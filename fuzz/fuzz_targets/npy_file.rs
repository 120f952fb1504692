//! Any bytes as a whole `.npy` file: header parsing, the checks before a
//! file is trusted, building the pool and scoring it at every ISA level.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_fast::fuzzing::npy_file(data));

//! Any bytes as a Parquet data page of an embedding column (levels, values,
//! a dictionary), through the engine's page decoder.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_fast::fuzzing::parquet_page(data));

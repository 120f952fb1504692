//! Arbitrary public `Source` fields over arbitrary bytes: the pool refuses
//! them or reads back every value exactly.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zcore_fast::fuzzing::raw_source(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huis_bfcp::fuzzing::fuzz_bfcp(data));

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huis_fuzz::sdp_negotiation(data));

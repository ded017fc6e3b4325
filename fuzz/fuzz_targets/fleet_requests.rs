#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huis_fleet::fuzz_requests(data));

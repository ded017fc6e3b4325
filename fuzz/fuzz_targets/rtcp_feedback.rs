#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huis_firmware::fuzzing::rtcp_feedback(data));

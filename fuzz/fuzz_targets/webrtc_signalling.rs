#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huis_firmware::fuzzing::webrtc_signalling(data));

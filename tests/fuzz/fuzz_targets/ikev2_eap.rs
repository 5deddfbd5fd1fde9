#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isakmpd::fuzzing::ikev2_eap(data));

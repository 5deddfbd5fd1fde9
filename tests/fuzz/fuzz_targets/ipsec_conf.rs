#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| isakmpd::fuzzing::ipsec_conf(data));

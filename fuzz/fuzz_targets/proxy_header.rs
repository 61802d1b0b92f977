//! The PROXY protocol header decoder (v1 text, v2 binary) on arbitrary bytes: no panic,
//! never more consumed than given, every prefix's answer consistent with the whole's
//! ("need N" honest: a driver reading exactly what is asked ends exactly at the header's
//! end), headers written back read back (checks in `codec::proxy_protocol::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codec::proxy_protocol::fuzzing::proxy_header(data);
});

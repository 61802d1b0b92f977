//! The ManageSieve framer, command parser and response parser on arbitrary bytes: no panic,
//! limits respected, same result however the input is split (checks in
//! `codec::sieve::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codec::sieve::fuzzing::sieve_framer(data);
    codec::sieve::fuzzing::sieve_command(data);
    codec::sieve::fuzzing::sieve_response(data);
});

//! The POP3 line framer, command parser and reply reader on arbitrary bytes: no panic,
//! limits respected, same result however the input is split (checks in
//! `codec::pop3::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codec::pop3::fuzzing::pop3_framer(data);
    codec::pop3::fuzzing::pop3_command(data);
    codec::pop3::fuzzing::pop3_reply(data);
});

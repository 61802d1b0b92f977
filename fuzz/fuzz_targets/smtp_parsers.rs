//! The SMTP framer, command parser and reply reader on arbitrary bytes: no panic, limits
//! respected, same result however the input is split (checks in `codec::smtp::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codec::smtp::fuzzing::smtp_framer(data);
    codec::smtp::fuzzing::smtp_command(data);
    codec::smtp::fuzzing::smtp_reply(data);
});

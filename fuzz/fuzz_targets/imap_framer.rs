//! The IMAP framer and command parser on arbitrary bytes: no panic, limits respected, and
//! the same result however the input is split (the checks live in `codec::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    codec::fuzzing::imap_framer(data);
    codec::fuzzing::imap_command(data);
    codec::fuzzing::imap_response(data);
});

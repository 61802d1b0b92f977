//! The POP3 pre-login session fed arbitrary client bytes in reads of the fuzzer's choosing,
//! with the proxy's part played by `bearergate_fuzz::driver` (which holds the checks).
//!
//! Input: see `bearergate_fuzz::script`. Flags: bit 0 TLS from the start, 1 STLS offered,
//! 2 plaintext authentication allowed, 3 password fallback, 4 no error challenge, 5 a
//! 64-octet line limit, 6–7 failed logins before close (3, 1, 2, 6).
#![no_main]

use bearergate_fuzz::driver::{drive, Setup};
use bearergate_fuzz::script::Script;
use bearergate_fuzz::wire::Wire;
use libfuzzer_sys::fuzz_target;
use session::pop3::{Pop3Session, Pop3SessionConfig};

fuzz_target!(|data: &[u8]| {
    let script = Script::parse(data);
    let mut config = Pop3SessionConfig {
        tls_active: script.flag(0),
        starttls_available: script.flag(1),
        allow_plaintext_auth: script.flag(2),
        password_fallback: script.flag(3),
        error_challenge: !script.flag(4),
        max_auth_failures: [3, 1, 2, 6][usize::from(script.flags >> 6)],
        ..Pop3SessionConfig::default()
    };
    if script.flag(5) {
        config.max_line = codec::pop3::fuzzing::FUZZ_MAX_LINE;
    }
    let setup = Setup {
        wire: Wire::Pop3,
        tls_active: config.tls_active,
        starttls_available: config.starttls_available,
        allow_plaintext_auth: config.allow_plaintext_auth,
        password_fallback: config.password_fallback,
        input_bound: config.max_line + 1,
    };
    drive(Pop3Session::new(config), setup, script);
});

//! The SMTP submission pre-login session fed arbitrary client bytes in reads of the
//! fuzzer's choosing, with the proxy's part played by `bearergate_fuzz::driver` (which
//! holds the checks).
//!
//! Input: see `bearergate_fuzz::script`. Flags: bit 0 TLS from the start, 1 STARTTLS
//! offered, 2 plaintext authentication allowed, 3 password fallback, 4 no error challenge,
//! 5 small line limits (64 octets, AUTH lines 96), 6–7 failed logins before close (3, 1,
//! 2, 6).
#![no_main]

use bearergate_fuzz::driver::{drive, Setup};
use bearergate_fuzz::script::Script;
use bearergate_fuzz::wire::Wire;
use libfuzzer_sys::fuzz_target;
use session::smtp::{SmtpSession, SmtpSessionConfig};

fuzz_target!(|data: &[u8]| {
    let script = Script::parse(data);
    let mut config = SmtpSessionConfig {
        tls_active: script.flag(0),
        starttls_available: script.flag(1),
        allow_plaintext_auth: script.flag(2),
        password_fallback: script.flag(3),
        error_challenge: !script.flag(4),
        max_auth_failures: [3, 1, 2, 6][usize::from(script.flags >> 6)],
        hostname: "mx.example.com".to_owned(),
        ..SmtpSessionConfig::default()
    };
    if script.flag(5) {
        config.limits = codec::smtp::fuzzing::FUZZ_LIMITS;
    }
    let setup = Setup {
        wire: Wire::Smtp,
        tls_active: config.tls_active,
        starttls_available: config.starttls_available,
        allow_plaintext_auth: config.allow_plaintext_auth,
        password_fallback: config.password_fallback,
        input_bound: config.limits.max_line.max(config.limits.max_auth_line) + 1,
    };
    drive(SmtpSession::new(config), setup, script);
});

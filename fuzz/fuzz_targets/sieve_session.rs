//! The ManageSieve pre-login session fed arbitrary client bytes in reads of the fuzzer's
//! choosing, with the proxy's part played by `bearergate_fuzz::driver` (which holds the
//! checks).
//!
//! Input: see `bearergate_fuzz::script`. Flags: bit 0 TLS from the start, 1 STARTTLS
//! offered, 2 plaintext authentication allowed, 3 a backend capability block to relay
//! (with what must not be relayed), 4 no error challenge, 5 small framing limits, 6–7
//! failed logins before close (3, 1, 2, 6).
#![no_main]

use std::sync::Arc;

use bearergate_fuzz::driver::{drive, Setup};
use bearergate_fuzz::script::Script;
use bearergate_fuzz::wire::Wire;
use codec::sieve::Capability;
use libfuzzer_sys::fuzz_target;
use session::sieve::{SieveSession, SieveSessionConfig};

fuzz_target!(|data: &[u8]| {
    let script = Script::parse(data);
    let mut config = SieveSessionConfig {
        tls_active: script.flag(0),
        starttls_available: script.flag(1),
        allow_plaintext_auth: script.flag(2),
        error_challenge: !script.flag(4),
        max_auth_failures: [3, 1, 2, 6][usize::from(script.flags >> 6)],
        ..SieveSessionConfig::default()
    };
    if script.flag(3) {
        config.backend_capabilities = Some(backend_block());
    }
    if script.flag(5) {
        config.limits = codec::sieve::fuzzing::FUZZ_LIMITS;
    }
    let limits = config.limits;
    let setup = Setup {
        wire: Wire::Sieve,
        tls_active: config.tls_active,
        starttls_available: config.starttls_available,
        allow_plaintext_auth: config.allow_plaintext_auth,
        password_fallback: false,
        input_bound: limits.max_command.max(limits.max_line + 1),
    };
    drive(SieveSession::new(config), setup, script);
});

/// Pigeonhole's block as the proxy sees it from its trusted network, plus a value that
/// needs a literal.
fn backend_block() -> Arc<[Capability]> {
    let long = "x".repeat(1_100);
    [
        ("IMPLEMENTATION", Some("Dovecot Pigeonhole")),
        ("SIEVE", Some("fileinto reject envelope vacation enotify")),
        ("NOTIFY", Some("mailto")),
        ("SASL", Some("PLAIN LOGIN")),
        ("STARTTLS", None),
        ("XCLIENT", None),
        ("UNAUTHENTICATE", None),
        ("MAXREDIRECTS", Some("4")),
        ("X-LONG", Some(long.as_str())),
        ("VERSION", Some("1.0")),
    ]
    .into_iter()
    .map(|(name, value)| Capability::new(name, value))
    .collect()
}

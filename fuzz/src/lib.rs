//! What the fuzz targets share: how an input becomes a configuration, the peer's bytes in
//! reads of the fuzzer's choosing and the driver's decisions ([`script`]); the driver that
//! plays the proxy's part around a pre-login session and checks what must always hold
//! ([`driver`]); and the checks that what a session writes is well-formed on its wire
//! ([`wire`]).
//!
//! A panic anywhere here is a finding: either the product broke an invariant, or the
//! harness asserts something the product never promised (then fix the harness).
#![forbid(unsafe_code)]

pub mod driver;
pub mod script;
pub mod wire;

/// Whether `haystack` contains `needle` (a secret) where it has no business being.
///
/// Secrets shorter than six octets are not looked for: they turn up by chance in any
/// `Debug` text.
pub fn shows_secret(haystack: &str, needle: &str) -> bool {
    needle.len() >= 6 && haystack.contains(needle)
}

/// Whether to print the conversation (`BEARERGATE_FUZZ_TRACE=1`), to read a crash's input
/// as the transcript it is.
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("BEARERGATE_FUZZ_TRACE").is_some())
}

/// Prints `bytes` as one side's turn when [`tracing`].
pub fn trace(who: &str, bytes: &[u8]) {
    if tracing() {
        eprintln!("{who}: {:?}", String::from_utf8_lossy(bytes));
    }
}

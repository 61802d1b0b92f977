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

/// Whether `haystack` (a `Debug` text) shows `needle` (a secret) where it has no business
/// being.
///
/// Only the quoted strings of the text are searched: that is where a string value, and so
/// a leaked secret, appears in `Debug` output. The rest is the text's own scaffolding (type
/// and field names, `[REDACTED]`), which a secret such as `Credentials` or `REDACTED` may
/// match by chance without anything having leaked. Secrets shorter than six octets are not
/// looked for: they turn up by chance in any text.
pub fn shows_secret(haystack: &str, needle: &str) -> bool {
    needle.len() >= 6 && quoted(haystack).any(|value| value.contains(needle))
}

/// The contents of the `"..."` strings of a `Debug` text (escapes left as they are).
fn quoted(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find('"')? + 1;
        let bytes = rest.as_bytes();
        let mut end = start;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = end.min(bytes.len());
        let value = rest.get(start..end).unwrap_or("");
        rest = rest.get(end + 1..).unwrap_or("");
        Some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::shows_secret;

    #[test]
    fn only_quoted_values_count() {
        let shown =
            r#"PasswordCredentials { user: "alice", password: SecretBox<str>([REDACTED]) }"#;
        assert!(!shows_secret(shown, "Credentials"));
        assert!(!shows_secret(shown, "REDACTED"));
        assert!(shows_secret(r#"Leak { password: "hunter22" }"#, "hunter22"));
        assert!(shows_secret(
            r#"Leak { a: "x\"y", b: "hunter22" }"#,
            "hunter22"
        ));
    }
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

//! The bench's peers: a fake identity provider and a fake IMAP backend (tokio, in this
//! process), a blocking IMAP client, and the `bearergate` binary run as a child process so its
//! memory and CPU can be read from `/proc`; for the built-in issuer's bench, a blocking
//! HTTP/1.1 client, an authorization server in this process over the proxy's store, and a
//! private PostgreSQL for that store.

pub mod backend;
pub mod client;
// The soak's flapping provider, mail store and clients: only benches/soak.rs uses them.
#[allow(dead_code)]
pub mod flapping_idp;
// A flood of short-lived connections: only benches/flood.rs uses it.
#[allow(dead_code)]
pub mod flood;
// HTTP load and the built-in issuer: only benches/issuer.rs uses them.
#[allow(dead_code)]
pub mod http;
pub mod idp;
#[allow(dead_code)]
pub mod issuer;
#[allow(dead_code)]
pub mod mailstore;
// The issuer bench's PostgreSQL store: only benches/issuer.rs uses it.
#[allow(dead_code)]
pub mod postgres;
pub mod process;
#[allow(dead_code)]
pub mod soak_clients;

use std::error::Error;
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors are reported and end the bench; none is recovered from.
pub type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token as long as a typical signed access token (RFC 6750 `b64token` characters), so the
/// proxy parses, hashes and looks up what a real client sends.
pub fn realistic_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
    let mut state = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0x9E37_79B9_7F4A_7C15, |d| d.as_nanos() as u64)
        | 1;
    (0..len)
        .map(|_| {
            // xorshift64: enough to make every run's token different
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[(state % ALPHABET.len() as u64) as usize])
        })
        .collect()
}

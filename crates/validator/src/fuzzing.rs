//! Entry points for the cargo-fuzz target `jwt_peek` (`fuzz/fuzz_targets/jwt_peek.rs`): what
//! reads a token before its signature is checked. Not an API; the checks live in the target.

use serde_json::{Map, Value};

/// The `iss` a token claims, as issuer routing reads it before any check.
pub fn peek_issuer(token: &str) -> Option<String> {
    crate::jwt::peek_issuer(token)
}

/// The JOSE header as the JWT check reads it before choosing a key, or `None` where that
/// check refuses the token as malformed.
pub fn jwt_header(token: &str) -> Option<Map<String, Value>> {
    crate::jwt::raw_header(token).ok()
}

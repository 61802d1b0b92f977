//! PKCE (RFC 7636), S256 only: `plain` protects nothing against an attacker who can read the
//! authorization request, and RFC 9700 §2.1.1 says to use S256.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ErrorCode, OAuthError};

/// The one method accepted.
pub(crate) const S256: &str = "S256";

/// Checks the authorization request's `code_challenge` and `code_challenge_method`: the
/// challenge to bind the code to, or `None` when a confidential client sent none.
///
/// Public clients must send one; a challenge with `plain` or without a method (which RFC
/// 7636 §4.3 reads as `plain`) is refused rather than quietly accepted.
pub(crate) fn check_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
    public_client: bool,
) -> Result<Option<String>, OAuthError> {
    let Some(challenge) = challenge else {
        if method.is_some() {
            return Err(invalid("code_challenge_method without code_challenge"));
        }
        if public_client {
            return Err(invalid(
                "this client must use PKCE (code_challenge with S256)",
            ));
        }
        return Ok(None);
    };
    if method != Some(S256) {
        return Err(invalid("only code_challenge_method=S256 is supported"));
    }
    if !is_challenge(challenge) {
        return Err(invalid(
            "code_challenge must be 43 to 128 base64url characters",
        ));
    }
    Ok(Some(challenge.to_owned()))
}

/// Whether `verifier` is a well-formed verifier (RFC 7636 §4.1:
/// `code-verifier = 43*128unreserved`) whose S256 transform is `challenge`.
pub(crate) fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    if !(43..=128).contains(&verifier.len()) || !verifier.bytes().all(is_unreserved) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// `code-challenge = 43*128(ALPHA / DIGIT / "-" / "_")` for S256 (base64url, no padding).
fn is_challenge(challenge: &str) -> bool {
    (43..=128).contains(&challenge.len())
        && challenge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// `unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"` (RFC 3986).
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn invalid(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRequest, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_example_matches() {
        assert!(verifier_matches(VERIFIER, CHALLENGE));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXK",
            CHALLENGE
        ));
    }

    #[test]
    fn malformed_verifiers_never_match() {
        // Too short, even if someone made a challenge of it.
        let short = "abc";
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(short));
        assert!(!verifier_matches(short, &challenge));
        // A character outside unreserved.
        let bad = format!("{}+", &VERIFIER[..43]);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(&bad));
        assert!(!verifier_matches(&bad, &challenge));
    }

    #[test]
    fn only_s256_is_accepted() {
        assert_eq!(
            check_challenge(Some(CHALLENGE), Some("S256"), true).unwrap(),
            Some(CHALLENGE.to_owned())
        );
        for method in [Some("plain"), None, Some("s256")] {
            let error = check_challenge(Some(CHALLENGE), method, false).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn public_clients_must_send_a_challenge() {
        assert!(check_challenge(None, None, true).is_err());
        assert_eq!(check_challenge(None, None, false).unwrap(), None);
        assert!(check_challenge(None, Some("S256"), false).is_err());
    }

    #[test]
    fn challenge_shape_is_checked() {
        assert!(check_challenge(Some("short"), Some("S256"), true).is_err());
        let padded = format!("{}=", &CHALLENGE[..42]);
        assert!(check_challenge(Some(&padded), Some("S256"), true).is_err());
        assert!(check_challenge(Some(&"a".repeat(129)), Some("S256"), true).is_err());
    }
}

//! Opaque secrets (codes, refresh tokens, device codes, client secrets, API keys) and the
//! hashes they are stored and looked up by.
//!
//! A secret is 32 random bytes (256 bits, far beyond guessing), base64url without padding.
//! Only its SHA-256 is ever stored, so a copy of the database hands out nothing usable.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{StoreError, TokenHash};

/// Refresh tokens start with this, so that secret scanners can recognise a leaked one.
pub(crate) const REFRESH_PREFIX: &str = "bgr_";
/// API keys start with this (shown once, at creation).
pub(crate) const API_KEY_PREFIX: &str = "bgk_";

/// Bytes of randomness in a secret.
const SECRET_BYTES: usize = 32;
/// Bytes of randomness in an identifier that is not a secret (grant id, `jti`, client id):
/// 128 bits, enough that two never collide.
const ID_BYTES: usize = 16;

/// `N` random bytes from the system generator.
pub(crate) fn random_bytes<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], StoreError> {
    let mut bytes = [0u8; N];
    // The system generator only fails when the OS has no entropy source at all; treated
    // like a broken disk: our fault, nothing issued.
    rng.fill(&mut bytes)
        .map_err(|_| StoreError::Database("the system random generator failed".to_owned()))?;
    Ok(bytes)
}

/// A new opaque secret: 32 random bytes, base64url without padding (43 characters).
pub(crate) fn secret(rng: &SystemRandom) -> Result<String, StoreError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<SECRET_BYTES>(rng)?))
}

/// A new secret with a recognisable prefix (`bgr_…`, `bgk_…`).
pub(crate) fn prefixed_secret(rng: &SystemRandom, prefix: &str) -> Result<String, StoreError> {
    Ok(format!("{prefix}{}", secret(rng)?))
}

/// A new random identifier that is not secret: 16 bytes, base64url (22 characters).
pub(crate) fn random_id(rng: &SystemRandom) -> Result<String, StoreError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<ID_BYTES>(rng)?))
}

/// Random octets that tell apart the access tokens of one grant.
const SUFFIX_BYTES: usize = 6;

/// A short random suffix (8 characters): with the grant id before it, an access token's
/// `jti`. 48 bits suffice among the few tokens one grant mints.
pub(crate) fn token_suffix(rng: &SystemRandom) -> Result<String, StoreError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<SUFFIX_BYTES>(rng)?))
}

/// The hash a secret is stored under: lowercase hex SHA-256 of its exact text.
pub(crate) fn hash(secret: &str) -> TokenHash {
    let digest = Sha256::digest(secret.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    TokenHash(hex)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Whether `presented` is the secret behind `stored`, comparing the hashes in constant time
/// (the hash hides the secret, but a timing oracle on it would still be a gift).
pub(crate) fn matches(presented: &str, stored: &TokenHash) -> bool {
    let presented = hash(presented);
    bool::from(presented.0.as_bytes().ct_eq(stored.0.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_lowercase_hex_sha256() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            hash("abc").0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn secrets_are_43_base64url_characters_and_differ() {
        let rng = SystemRandom::new();
        let a = secret(&rng).unwrap();
        let b = secret(&rng).unwrap();
        assert_eq!(a.len(), 43);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
        assert!(prefixed_secret(&rng, API_KEY_PREFIX)
            .unwrap()
            .starts_with("bgk_"));
        assert_eq!(random_id(&rng).unwrap().len(), 22);
    }

    #[test]
    fn matches_only_the_same_secret() {
        let stored = hash("s3cret");
        assert!(matches("s3cret", &stored));
        assert!(!matches("s3cret ", &stored));
        assert!(!matches("", &stored));
    }
}

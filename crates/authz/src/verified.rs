//! Access tokens whose signature is known good, so that a mail client logging in again and
//! again with one token — or for the first time with a token this process minted — costs a
//! hash instead of an ECDSA verification (≈ 55 µs, two thirds of the in-process check).
//!
//! Only the signature is remembered: expiry and the grant's revocation are checked on every
//! use by the caller, so a revoked grant is still refused at the next login. Keyed by the
//! token's SHA-256, never the token. Bounded: at capacity, entries past their `exp` go first,
//! and if that frees nothing the cache starts over (it is a cache; the next use of a dropped
//! token verifies it again).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest, Sha256};

use crate::jwt::AccessTokenClaims;
use crate::store::UnixTime;

/// Tokens remembered at most: ~300 bytes each, so about 5 MiB when full.
pub(crate) const CAPACITY: usize = 16_384;

type Key = [u8; 32];

/// Verified access tokens' claims, by token hash.
#[derive(Debug, Default)]
pub(crate) struct VerifiedTokens {
    entries: Mutex<HashMap<Key, Arc<AccessTokenClaims>>>,
}

fn key(token: &str) -> Key {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    /// The claims of `token` if its signature was verified (or it was minted here).
    pub(crate) fn get(&self, token: &str) -> Option<Arc<AccessTokenClaims>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(&key(token)).cloned()
    }

    /// Remembers that `token`, whose claims are `claims`, carries a good signature.
    pub(crate) fn insert(&self, token: &str, claims: Arc<AccessTokenClaims>, now: UnixTime) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.retain(|_, claims| claims.exp > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key(token), claims);
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: UnixTime) -> Arc<AccessTokenClaims> {
        Arc::new(AccessTokenClaims {
            iss: "https://auth.example.test".into(),
            sub: "alice".into(),
            aud: crate::jwt::Audience::One("https://auth.example.test".into()),
            client_id: "c".into(),
            scope: "s".into(),
            iat: 0,
            exp,
            jti: "j".into(),
            gid: "g".into(),
        })
    }

    #[test]
    fn remembers_by_token_and_stays_bounded() {
        let cache = VerifiedTokens::default();
        cache.insert("token-a", claims(100), 0);
        assert_eq!(cache.get("token-a").map(|c| c.exp), Some(100));
        assert!(cache.get("token-b").is_none());

        // Full of live entries but one: the expired one goes, the rest stay.
        for i in 1..CAPACITY {
            cache.insert(&format!("live-{i}"), claims(1_000), 0);
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.insert("newest", claims(1_000), 500);
        assert!(
            cache.get("token-a").is_none(),
            "the expired entry went first"
        );
        assert!(cache.get("live-1").is_some());
        assert!(cache.get("newest").is_some());

        // Full of live entries: it starts over rather than grow.
        cache.insert("one-more", claims(1_000), 500);
        assert!(cache.len() <= CAPACITY);
        assert!(cache.get("one-more").is_some());
    }
}

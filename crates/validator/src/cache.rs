//! The answer cache: keyed by SHA-256 of the token, never the token itself.
//!
//! A positive answer lives until `min(exp - now, cache_max_ttl)`, a negative one for
//! `negative_cache_ttl`; each entry carries its own lifetime (moka's per-entry [`Expiry`]).
//! Because the cache's clock ([`Instant`]) and the token's `exp` (wall clock) can drift
//! apart, every read checks `exp` again ([`answer`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::future::Cache;
use moka::Expiry;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::error::InvalidReason;
use crate::identity::Identity;

/// SHA-256 of a token: the cache key and, in its first 8 hex digits, the log tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey([u8; 32]);

impl TokenKey {
    pub(crate) fn of(token: &SecretString) -> Self {
        Self(Sha256::digest(token.expose_secret().as_bytes()).into())
    }

    /// First 8 hex digits of the hash: enough to correlate log lines, useless for guessing.
    pub(crate) fn tag(&self) -> String {
        self.0[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({}…)", self.tag())
    }
}

/// What the identity provider said about a token.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Accepted.
    Valid(Arc<Identity>),
    /// Rejected (the client's fault). Unavailable answers are never cached.
    Invalid(InvalidReason),
}

/// A cache value: the outcome and how long it may be served, fixed when it was fetched.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub outcome: Outcome,
    pub ttl: Duration,
}

/// Cache lifetimes from the configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lifetimes {
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
}

impl Lifetimes {
    /// How long `outcome`, fetched at `now`, may be served from the cache.
    pub(crate) fn ttl(&self, outcome: &Outcome, now: SystemTime) -> Duration {
        match outcome {
            Outcome::Invalid(_) => self.negative_ttl,
            Outcome::Valid(identity) => match identity.expires_at {
                // A clock that went backwards past exp gives zero: not cached.
                Some(exp) => exp
                    .duration_since(now)
                    .unwrap_or(Duration::ZERO)
                    .min(self.max_ttl),
                None => self.max_ttl,
            },
        }
    }
}

/// The answer a cached outcome gives at `now`: a positive answer past the token's `exp`
/// becomes [`InvalidReason::Expired`].
pub(crate) fn answer(outcome: &Outcome, now: SystemTime) -> Result<Arc<Identity>, InvalidReason> {
    match outcome {
        Outcome::Valid(identity) if identity.is_expired_at(now) => Err(InvalidReason::Expired),
        Outcome::Valid(identity) => Ok(Arc::clone(identity)),
        Outcome::Invalid(reason) => Err(reason.clone()),
    }
}

/// Each entry expires after the lifetime it was stored with.
struct PerEntryTtl;

impl Expiry<TokenKey, Cached> for PerEntryTtl {
    fn expire_after_create(&self, _: &TokenKey, value: &Cached, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    // A new answer for a key whose old entry had expired but was not yet evicted replaces
    // it: the new answer's lifetime counts, not what was left of the old one.
    fn expire_after_update(
        &self,
        _: &TokenKey,
        value: &Cached,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(crate) type TokenCache = Cache<TokenKey, Cached>;

pub(crate) fn build(capacity: u64) -> TokenCache {
    Cache::builder()
        .name("bearergate-tokens")
        .max_capacity(capacity)
        .expire_after(PerEntryTtl)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn identity(exp: Option<u64>) -> Outcome {
        Outcome::Valid(Arc::new(Identity {
            user: "alice".into(),
            user_claim: "username".into(),
            backend_user: "alice".into(),
            issuer: "idp".into(),
            scopes: vec!["mail".into()],
            client_id: None,
            expires_at: exp.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        }))
    }

    const NOW: u64 = 1_700_000_000;
    const LIFETIMES: Lifetimes = Lifetimes {
        max_ttl: Duration::from_secs(300),
        negative_ttl: Duration::from_secs(10),
    };

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn positive_ttl_is_bounded_by_exp_and_max() {
        let ttl = |exp| LIFETIMES.ttl(&identity(exp), now());
        assert_eq!(ttl(Some(NOW + 1)), Duration::from_secs(1));
        assert_eq!(ttl(Some(NOW + 299)), Duration::from_secs(299));
        assert_eq!(ttl(Some(NOW + 3600)), Duration::from_secs(300));
        assert_eq!(ttl(None), Duration::from_secs(300));
        assert_eq!(ttl(Some(NOW - 5)), Duration::ZERO);
    }

    #[test]
    fn negative_ttl_is_configured() {
        let ttl = LIFETIMES.ttl(&Outcome::Invalid(InvalidReason::Inactive), now());
        assert_eq!(ttl, Duration::from_secs(10));
    }

    #[test]
    fn cached_answer_never_outlives_exp() {
        let outcome = identity(Some(NOW + 60));
        assert!(answer(&outcome, now()).is_ok());
        assert!(answer(&outcome, now() + Duration::from_secs(59)).is_ok());
        assert_eq!(
            answer(&outcome, now() + Duration::from_secs(60)).unwrap_err(),
            InvalidReason::Expired
        );
        assert!(answer(&identity(None), now() + Duration::from_secs(1 << 30)).is_ok());
        assert_eq!(
            answer(&Outcome::Invalid(InvalidReason::Inactive), now()).unwrap_err(),
            InvalidReason::Inactive
        );
    }

    #[test]
    fn key_is_sha256_and_tag_is_its_prefix() {
        let key = TokenKey::of(&SecretString::from("abc"));
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(key.tag(), "ba7816bf");
        assert_eq!(format!("{key:?}"), "TokenKey(ba7816bf…)");
    }
}

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

/// Identities that issuers with `keep_confirmed_tokens` vouched for, kept until each
/// token's own `exp`, beyond `cache_max_ttl`: while the provider is unavailable, a login
/// with such a token is answered from here instead of "try again later".
///
/// Bounded like the answer cache (`cache_capacity` entries, least used evicted first) and
/// keyed the same way, by the token's hash. What is kept never outlives the token: an entry
/// lives until its `exp` and every read checks `exp` again; a token without `exp` is never
/// kept, since nothing would bound it. A refusal by the provider removes the entry at once.
pub(crate) struct Confirmed {
    tokens: TokenCache,
}

impl Confirmed {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            tokens: build(capacity),
        }
    }

    /// Keeps `identity`, confirmed at `now`, until its `exp`.
    pub(crate) async fn keep(&self, key: TokenKey, identity: &Arc<Identity>, now: SystemTime) {
        let Some(left) = identity
            .expires_at
            .and_then(|exp| exp.duration_since(now).ok())
        else {
            return;
        };
        let outcome = Outcome::Valid(Arc::clone(identity));
        let kept = Cached { outcome, ttl: left };
        self.tokens.insert(key, kept).await;
    }

    /// Forgets `key`: the provider refused the token.
    pub(crate) async fn forget(&self, key: &TokenKey) {
        self.tokens.invalidate(key).await;
    }

    /// The identity kept for `key`: `Ok` while its `exp` is ahead of `now`, `Expired` once
    /// it has passed (the entry then goes), `None` when nothing is kept.
    pub(crate) async fn recall(
        &self,
        key: &TokenKey,
        now: SystemTime,
    ) -> Option<Result<Arc<Identity>, InvalidReason>> {
        let kept = self.tokens.get(key).await?;
        let answer = answer(&kept.outcome, now);
        if answer.is_err() {
            self.tokens.invalidate(key).await;
        }
        Some(answer)
    }

    /// Entries kept, for the validator's `Debug`.
    pub(crate) fn len(&self) -> u64 {
        self.tokens.entry_count()
    }
}

impl fmt::Debug for Confirmed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Confirmed")
            .field("entries", &self.len())
            .finish()
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
            audiences: Vec::new(),
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

    #[tokio::test]
    async fn confirmed_tokens_are_kept_until_exp_and_no_longer() {
        let confirmed = Confirmed::new(10);
        let key = |s: &str| TokenKey::of(&SecretString::from(s));
        let Outcome::Valid(alice) = identity(Some(NOW + 3600)) else {
            unreachable!()
        };
        let Outcome::Valid(forever) = identity(None) else {
            unreachable!()
        };
        confirmed.keep(key("alice"), &alice, now()).await;
        confirmed.keep(key("forever"), &forever, now()).await;
        confirmed
            .keep(key("late"), &alice, now() + Duration::from_secs(3600))
            .await;

        let at = |secs: u64| now() + Duration::from_secs(secs);
        let recalled = confirmed.recall(&key("alice"), at(3599)).await;
        assert!(matches!(recalled, Some(Ok(ref i)) if Arc::ptr_eq(i, &alice)));
        // Never past exp, and the entry goes.
        assert_eq!(
            confirmed.recall(&key("alice"), at(3600)).await,
            Some(Err(InvalidReason::Expired))
        );
        assert_eq!(confirmed.recall(&key("alice"), at(0)).await, None);
        // Without exp nothing bounds the token, and at exp there is nothing left to keep.
        assert_eq!(confirmed.recall(&key("forever"), at(0)).await, None);
        assert_eq!(confirmed.recall(&key("late"), at(0)).await, None);

        confirmed.keep(key("bob"), &alice, now()).await;
        confirmed.forget(&key("bob")).await;
        assert_eq!(confirmed.recall(&key("bob"), at(0)).await, None);
    }

    #[test]
    fn key_is_sha256_and_tag_is_its_prefix() {
        let key = TokenKey::of(&SecretString::from("abc"));
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        assert_eq!(key.tag(), "ba7816bf");
        assert_eq!(format!("{key:?}"), "TokenKey(ba7816bf…)");
    }
}

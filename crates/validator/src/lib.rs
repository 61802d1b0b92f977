//! Bearer token → mail identity.
//!
//! [`Validator::validate`] asks an RFC 7662 introspection endpoint whether a token is active
//! and whose it is, and caches the answer:
//! - keyed by SHA-256 of the token, never the token;
//! - a positive answer for `min(exp - now, cache_max_ttl)`, and never served past `exp`;
//! - a negative answer ([`ValidationError::Invalid`]) for `negative_cache_ttl`;
//! - [`ValidationError::Unavailable`] never;
//! - concurrent validations of one uncached token share a single request (single-flight).
//!
//! This is the only crate of bearergate that speaks HTTP.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

mod cache;
mod config;
mod error;
mod identity;
mod introspection;
mod jwt;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use crate::cache::{Cached, Lifetimes, Outcome, TokenCache, TokenKey};
use crate::identity::Requirements;
use crate::introspection::{IntrospectionClient, Unavailable};

pub use crate::config::{
    IntrospectionConfig, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_MAX_TTL, DEFAULT_NEGATIVE_CACHE_TTL,
    DEFAULT_TIMEOUT, DEFAULT_USERNAME_CLAIM,
};
pub use crate::error::{ConfigError, InvalidReason, ValidationError};
pub use crate::identity::{Identity, CLOCK_LEEWAY};
pub use crate::introspection::MAX_RESPONSE_LEN;
pub use crate::jwt::{
    JwtConfig, JwtValidator, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_JWT_ALGORITHMS,
    DEFAULT_JWT_LEEWAY, MAX_JWKS_LEN,
};

/// Longest token sent to the identity provider: 64 KiB, above any SASL line the proxy
/// accepts. Longer ones are rejected without a request.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Validates bearer tokens. Cheap to clone: clones share the HTTP client, cache and counters.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    cache: TokenCache,
    lifetimes: Lifetimes,
    counters: Counters,
}

/// Where answers come from. One variant per `[validator] kind`.
#[derive(Debug)]
enum Backend {
    Introspection {
        client: IntrospectionClient,
        username_claim: String,
        required_scopes: Vec<String>,
    },
    /// Local validation against the issuer's keys. Answers are cached like introspection's,
    /// which saves the signature check on every login with the same token.
    Jwt(Box<jwt::JwtValidator>),
}

impl Backend {
    /// One fresh answer about `token`: `Ok` with an outcome worth caching, or `Err` when the
    /// identity provider could not be asked.
    async fn fetch(&self, token: &SecretString, tag: &str) -> Result<Outcome, Unavailable> {
        match self {
            Self::Introspection {
                client,
                username_claim,
                required_scopes,
            } => {
                let response = client.introspect(token, tag).await?;
                let requirements = Requirements {
                    username_claim,
                    required_scopes,
                };
                Ok(
                    match identity::evaluate(&response, requirements, SystemTime::now()) {
                        Ok(identity) => Outcome::Valid(Arc::new(identity)),
                        Err(reason) => Outcome::Invalid(reason),
                    },
                )
            }
            Self::Jwt(validator) => match validator.validate_jwt(token).await {
                Ok(identity) => Ok(Outcome::Valid(Arc::new(identity))),
                Err(ValidationError::Invalid(reason)) => Ok(Outcome::Invalid(reason)),
                Err(ValidationError::Unavailable(why)) => Err(why),
            },
        }
    }

    fn requests(&self) -> u64 {
        match self {
            Self::Introspection { client, .. } => client.requests(),
            Self::Jwt(validator) => validator.jwks_requests(),
        }
    }
}

/// Counters since the validator was built, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValidatorStats {
    /// Validations answered from the cache, including those that waited for another
    /// validation of the same token to fetch the answer.
    pub cache_hits: u64,
    /// Validations that had to fetch a fresh answer.
    pub cache_misses: u64,
    /// Requests sent to the identity provider: introspection, or discovery and JWKS for `jwt`.
    pub introspection_requests: u64,
    /// Validations that ended in [`ValidationError::Invalid`] (cached or not).
    pub invalid: u64,
    /// Validations that ended in [`ValidationError::Unavailable`].
    pub unavailable: u64,
}

#[derive(Debug, Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    invalid: AtomicU64,
    unavailable: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Validator {
    /// Builds a validator for an introspection endpoint after checking `config`.
    /// No request is made until the first [`Validator::validate`].
    pub fn new(config: IntrospectionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let client = IntrospectionClient::new(&config)?;
        let inner = Inner {
            backend: Backend::Introspection {
                client,
                username_claim: config.username_claim,
                required_scopes: config.required_scopes,
            },
            cache: cache::build(config.cache_capacity),
            lifetimes: Lifetimes {
                max_ttl: config.cache_max_ttl,
                negative_ttl: config.negative_cache_ttl,
            },
            counters: Counters::default(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Builds a validator that checks JWTs locally against the issuer's keys, caching
    /// answers for at most `cache_max_ttl` (never past the token's `exp`) and refusals for
    /// `negative_cache_ttl`.
    pub fn new_jwt(
        config: JwtConfig,
        cache_max_ttl: std::time::Duration,
        negative_cache_ttl: std::time::Duration,
        cache_capacity: u64,
    ) -> Result<Self, ConfigError> {
        let validator = jwt::JwtValidator::new(config)?;
        let inner = Inner {
            backend: Backend::Jwt(Box::new(validator)),
            cache: cache::build(cache_capacity.max(1)),
            lifetimes: Lifetimes {
                max_ttl: cache_max_ttl,
                negative_ttl: negative_cache_ttl,
            },
            counters: Counters::default(),
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The identity `token` stands for.
    ///
    /// [`ValidationError::Invalid`] when the token is not acceptable (the client's fault);
    /// [`ValidationError::Unavailable`] when the identity provider could not say.
    pub async fn validate(&self, token: &SecretString) -> Result<Arc<Identity>, ValidationError> {
        let result = self.lookup(token).await;
        let counters = &self.inner.counters;
        match &result {
            Ok(_) => {}
            Err(ValidationError::Invalid(_)) => bump(&counters.invalid),
            Err(ValidationError::Unavailable(_)) => bump(&counters.unavailable),
        }
        result
    }

    async fn lookup(&self, token: &SecretString) -> Result<Arc<Identity>, ValidationError> {
        let raw = token.expose_secret();
        if raw.is_empty() {
            return Err(InvalidReason::EmptyToken.into());
        }
        if raw.len() > MAX_TOKEN_LEN {
            return Err(InvalidReason::TokenTooLong.into());
        }

        let inner = &*self.inner;
        let key = TokenKey::of(token);
        let tag = key.tag();
        // Only the first caller for a key runs this; concurrent callers wait for its result.
        // An `Err` (Unavailable) is handed to the waiters but not stored.
        let fetch = async {
            bump(&inner.counters.cache_misses);
            let outcome = inner.backend.fetch(token, &tag).await?;
            let ttl = inner.lifetimes.ttl(&outcome, SystemTime::now());
            Ok::<_, Unavailable>(Cached { outcome, ttl })
        };
        let entry = match inner.cache.entry(key).or_try_insert_with(fetch).await {
            Ok(entry) => entry,
            Err(why) => {
                tracing::debug!(token = %tag, "token validation unavailable");
                return Err(ValidationError::Unavailable(String::clone(&why)));
            }
        };

        let fresh = entry.is_fresh();
        if !fresh {
            bump(&inner.counters.cache_hits);
        }
        match cache::answer(&entry.value().outcome, SystemTime::now()) {
            Ok(identity) => {
                tracing::debug!(token = %tag, user = %identity.user, cached = !fresh, "token valid");
                Ok(identity)
            }
            Err(reason) => {
                if !fresh && matches!(entry.value().outcome, Outcome::Valid(_)) {
                    // The wall clock passed exp before the cache's clock did.
                    inner.cache.invalidate(&key).await;
                }
                tracing::debug!(token = %tag, cached = !fresh, %reason, "token invalid");
                Err(ValidationError::Invalid(reason))
            }
        }
    }

    /// Counters since this validator was built.
    pub fn stats(&self) -> ValidatorStats {
        let c = &self.inner.counters;
        ValidatorStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            introspection_requests: self.inner.backend.requests(),
            invalid: c.invalid.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("backend", &self.inner.backend)
            .field("lifetimes", &self.inner.lifetimes)
            .field("cached_entries", &self.inner.cache.entry_count())
            .field("stats", &self.stats())
            .finish()
    }
}

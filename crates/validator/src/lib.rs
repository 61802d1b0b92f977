//! Bearer token → mail identity.
//!
//! [`Validator::validate`] asks the configured issuers — RFC 7662 introspection, local JWT
//! checks against the issuer's JWKS — whether a token is acceptable and whose it is, applies
//! the issuer's [`Policy`], and caches the answer:
//! - keyed by SHA-256 of the token, never the token;
//! - a positive answer for `min(exp - now, cache_max_ttl)`, and never served past `exp`;
//! - a negative answer ([`ValidationError::Invalid`]) for `negative_cache_ttl`;
//! - [`ValidationError::Unavailable`] never;
//! - concurrent validations of one uncached token share a single request (single-flight);
//! - for issuers with `keep_confirmed_tokens`, a positive answer is also kept until the
//!   token's `exp`, and a validation the provider cannot answer gets it back instead of
//!   "unavailable" (never past `exp`, never for a token refused since; see
//!   `cache::Confirmed`).
//!
//! This is the only crate of bearergate that speaks HTTP.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

mod cache;
pub mod client;
mod config;
mod error;
#[cfg(test)]
mod flapping_tests;
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod identity;
mod introspection;
mod issuer;
mod jwt;
mod load;
mod local;
mod policy;
mod shape;
mod userinfo;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

use crate::cache::{Cached, Confirmed, Lifetimes, Outcome, TokenCache, TokenKey};
use crate::issuer::{Issuer, Judgement};

pub use crate::config::{
    ClientAuth, IntrospectionConfig, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_MAX_TTL,
    DEFAULT_NEGATIVE_CACHE_TTL, DEFAULT_TIMEOUT, DEFAULT_TOKEN_TYPE_HINT, DEFAULT_USERNAME_CLAIM,
};
pub use crate::error::{
    ConfigError, InvalidReason, KeyError, Unavailable, UnavailableKind, ValidationError,
};
pub use crate::guard::{
    CircuitState, GuardConfig, DEFAULT_FAILURE_THRESHOLD, DEFAULT_MAX_CONCURRENT, DEFAULT_OPEN_FOR,
    DEFAULT_QUEUE_TIMEOUT,
};
pub use crate::identity::{Identity, CLOCK_LEEWAY};
pub use crate::introspection::MAX_RESPONSE_LEN;
pub use crate::issuer::{Discovery, IssuerConfig, Source, ValidatorConfig};
pub use crate::jwt::{
    JwtConfig, JwtValidator, DEFAULT_JWKS_REFETCH_INTERVAL, DEFAULT_JWT_ALGORITHMS,
    DEFAULT_JWT_LEEWAY, MAX_JWKS_LEN,
};
pub use crate::local::{LocalIssuer, LocalRefusal, LocalTokens};
pub use crate::policy::{Policy, ScopeKey};
pub use crate::userinfo::{UserinfoConfig, UserinfoRequest};

/// Hints for a validator with no issuer to name (never built by the proxy: it always has
/// one).
static NO_DISCOVERY: Discovery = Discovery {
    openid_configuration: None,
    scope: None,
};

/// Longest token sent to the identity provider: 64 KiB, above any SASL line the proxy
/// accepts. Longer ones are rejected without a request.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

/// Validates bearer tokens. Cheap to clone: clones share the HTTP clients, cache and counters.
#[derive(Clone)]
pub struct Validator {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: Vec<Issuer>,
    /// The built-in authorization server, when configured: judged in process, uncached.
    local: Option<LocalIssuer>,
    cache: TokenCache,
    /// Identities kept for `keep_confirmed_tokens`; `None` when no issuer keeps any.
    confirmed: Option<Confirmed>,
    lifetimes: Lifetimes,
    counters: Counters,
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
    /// Validations the identity provider could not answer that were answered with the
    /// identity it had confirmed earlier (`keep_confirmed_tokens`).
    pub kept_confirmed: u64,
}

/// One issuer's figures, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStats {
    /// The issuer's configured name.
    pub name: String,
    /// Requests sent to it (introspection, userinfo, or discovery and JWKS).
    pub requests: u64,
    /// Its circuit breaker: open while it counts as down.
    pub circuit: CircuitState,
    /// Requests refused without asking it (open circuit, or too many in flight).
    pub rejected: u64,
}

/// Where the answer for a token would come from now, told without asking anyone
/// ([`Validator::answer_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerSource {
    /// The cache holds a valid answer.
    KnownValid,
    /// The cache holds a refusal, or the token is refused on its face (empty, too long).
    KnownInvalid,
    /// The built-in authorization server, in process: no request, never cached.
    InProcess,
    /// An identity provider: a request, or the wait for one already in flight for it.
    /// (A `jwt` issuer checks most tokens locally, but an unknown key id makes it fetch
    /// its keys, so its tokens count here too.)
    Provider,
}

#[derive(Debug, Default)]
struct Counters {
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    invalid: AtomicU64,
    unavailable: AtomicU64,
    kept_confirmed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Validator {
    /// Builds a validator after checking `config`. No request is made until the first
    /// [`Validator::validate`].
    pub fn new(config: ValidatorConfig) -> Result<Self, ConfigError> {
        config.validate().map_err(ConfigError::Keys)?;
        Self::build(config, None)
    }

    /// Builds a validator whose first judge is `local`, an issuer in this process (the
    /// built-in authorization server); `config` may then list no issuers at all.
    pub fn with_local(config: ValidatorConfig, local: LocalIssuer) -> Result<Self, ConfigError> {
        config.validate_beside_local().map_err(ConfigError::Keys)?;
        local.policy.validate()?;
        Self::build(config, Some(local))
    }

    fn build(mut config: ValidatorConfig, local: Option<LocalIssuer>) -> Result<Self, ConfigError> {
        let issuers = std::mem::take(&mut config.issuers)
            .into_iter()
            .map(Issuer::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::assemble(&config, issuers, local))
    }

    /// A validator whose issuers are `issuers` (built by the tests, e.g. scripted ones).
    #[cfg(test)]
    pub(crate) fn with_issuers(config: &ValidatorConfig, issuers: Vec<Issuer>) -> Self {
        Self::assemble(config, issuers, None)
    }

    fn assemble(
        config: &ValidatorConfig,
        issuers: Vec<Issuer>,
        local: Option<LocalIssuer>,
    ) -> Self {
        let keeps = issuers.iter().any(|issuer| issuer.keep_confirmed);
        let inner = Inner {
            issuers,
            local,
            cache: cache::build(config.cache_capacity),
            confirmed: keeps.then(|| Confirmed::new(config.cache_capacity)),
            lifetimes: Lifetimes {
                max_ttl: config.cache_max_ttl,
                negative_ttl: config.negative_cache_ttl,
            },
            counters: Counters::default(),
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The identity `token` stands for.
    ///
    /// [`ValidationError::Invalid`] when the token is not acceptable (the client's fault);
    /// [`ValidationError::Unavailable`] when the identity provider could not say.
    pub async fn validate(&self, token: &SecretString) -> Result<Arc<Identity>, ValidationError> {
        self.count(self.lookup(token).await)
    }

    /// Like [`Validator::validate`], and the token must also carry the scopes its issuer's
    /// `protocol_scopes` demand for `key`.
    pub async fn validate_for(
        &self,
        token: &SecretString,
        key: &ScopeKey,
    ) -> Result<Arc<Identity>, ValidationError> {
        let result = self.lookup(token).await.and_then(|identity| {
            if let Some(policy) = self.policy_of(&identity.issuer) {
                policy.check_protocol(key, &identity.scopes)?;
            }
            Ok(identity)
        });
        self.count(result)
    }

    /// Whether `token` is already known to be valid (a positive, unexpired cache entry),
    /// without asking anyone. A client whose address has run out of failed logins may
    /// still use a token that is known good: limits exist to spare the identity provider
    /// guesses, not to lock out users whose tokens work.
    pub async fn is_known_valid(&self, token: &SecretString) -> bool {
        let key = TokenKey::of(token);
        match self.inner.cache.get(&key).await {
            Some(entry) => cache::answer(&entry.outcome, SystemTime::now()).is_ok(),
            None => false,
        }
    }

    /// Where [`Validator::validate`] would get its answer for `token` now, without asking
    /// anyone: the proxy lets one client address cause only so many requests to identity
    /// providers, and answers from the cache or the built-in issuer cost them nothing.
    pub async fn answer_source(&self, token: &SecretString) -> AnswerSource {
        let raw = token.expose_secret();
        if raw.is_empty() || raw.len() > MAX_TOKEN_LEN {
            return AnswerSource::KnownInvalid;
        }
        if let Some(local) = &self.inner.local {
            if jwt::peek_issuer(raw).as_deref() == Some(local.tokens.issuer()) {
                return AnswerSource::InProcess;
            }
        }
        match self.inner.cache.get(&TokenKey::of(token)).await {
            Some(entry) => match cache::answer(&entry.outcome, SystemTime::now()) {
                Ok(_) => AnswerSource::KnownValid,
                Err(_) => AnswerSource::KnownInvalid,
            },
            None => AnswerSource::Provider,
        }
    }

    /// What to tell an OAUTHBEARER client whose `token` was refused: the discovery hints of
    /// the issuer the token names (a JWT's `iss`), else of the first issuer.
    pub fn discovery_for(&self, token: &SecretString) -> &Discovery {
        let issuers = &self.inner.issuers;
        let iss = jwt::peek_issuer(token.expose_secret());
        if let (Some(iss), Some(local)) = (&iss, &self.inner.local) {
            if iss == local.tokens.issuer() {
                return &local.discovery;
            }
        }
        let named = iss.and_then(|iss| issuers.iter().find(|i| i.answers_for(&iss)));
        match named {
            Some(issuer) => &issuer.discovery,
            None => self.default_discovery(),
        }
    }

    /// What a client whose token was never read is told: the built-in issuer's hints when
    /// there is one (it is where this deployment's users get tokens), else the first
    /// configured issuer's.
    pub fn default_discovery(&self) -> &Discovery {
        match (&self.inner.local, self.inner.issuers.first()) {
            (Some(local), _) => &local.discovery,
            (None, Some(issuer)) => &issuer.discovery,
            (None, None) => &NO_DISCOVERY,
        }
    }

    /// `claimed` (the user a client names beside its token) under the domain and case rules
    /// of the issuer that accepted `identity`, ready to compare with [`Identity::user`].
    /// The backend login never uses it: it always comes from the token.
    pub fn normalise_claimed(&self, identity: &Identity, claimed: &str) -> String {
        match self.policy_of(&identity.issuer) {
            Some(policy) => policy.normalise(claimed),
            None => claimed.to_owned(),
        }
    }

    /// The policy of the issuer (configured or in process) named `name`.
    fn policy_of(&self, name: &str) -> Option<&Policy> {
        if let Some(local) = self.inner.local.as_ref().filter(|l| l.name == name) {
            return Some(&local.policy);
        }
        let issuer = self.inner.issuers.iter().find(|i| i.name == name)?;
        Some(&issuer.policy)
    }

    fn count(
        &self,
        result: Result<Arc<Identity>, ValidationError>,
    ) -> Result<Arc<Identity>, ValidationError> {
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
        if let Some(local) = &inner.local {
            // The built-in issuer's tokens skip the cache: the check is a local call, and
            // it must see a revocation at once.
            if jwt::peek_issuer(raw).as_deref() == Some(local.tokens.issuer()) {
                return local.judge(raw);
            }
        }
        let key = TokenKey::of(token);
        let tag = key.tag();
        // Only the first caller for a key runs this; concurrent callers wait for its result.
        // An `Err` (Unavailable) is handed to the waiters but not stored.
        let fetch = async {
            bump(&inner.counters.cache_misses);
            let outcome = self.fetch(token, &tag).await?;
            self.remember(key, &outcome).await;
            let ttl = inner.lifetimes.ttl(&outcome, SystemTime::now());
            Ok::<_, Unavailable>(Cached { outcome, ttl })
        };
        let entry = match inner.cache.entry(key).or_try_insert_with(fetch).await {
            Ok(entry) => entry,
            Err(why) => return self.recall(&key, &tag, Unavailable::clone(&why)).await,
        };

        let fresh = entry.is_fresh();
        if !fresh {
            bump(&inner.counters.cache_hits);
        }
        match cache::answer(&entry.value().outcome, SystemTime::now()) {
            Ok(identity) => {
                tracing::debug!(token = %tag, user = %identity.user, issuer = %identity.issuer, cached = !fresh, "token valid");
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

    /// Keeps a fresh answer for `keep_confirmed_tokens`: an identity its issuer confirmed,
    /// if that issuer keeps them; a refusal (or an issuer that keeps nothing) removes any
    /// earlier confirmation, so that a refused token is never accepted later.
    async fn remember(&self, key: TokenKey, outcome: &Outcome) {
        let Some(confirmed) = &self.inner.confirmed else {
            return;
        };
        match outcome {
            Outcome::Valid(identity) if self.keeps(&identity.issuer) => {
                confirmed.keep(key, identity, SystemTime::now()).await;
            }
            _ => confirmed.forget(&key).await,
        }
    }

    /// Whether the issuer named `name` has `keep_confirmed_tokens`.
    fn keeps(&self, name: &str) -> bool {
        let issuers = &self.inner.issuers;
        issuers.iter().any(|i| i.name == name && i.keep_confirmed)
    }

    /// The answer when the provider could not say (`why`): the identity it confirmed
    /// earlier, while the token's `exp` is ahead; else "unavailable".
    async fn recall(
        &self,
        key: &TokenKey,
        tag: &str,
        why: Unavailable,
    ) -> Result<Arc<Identity>, ValidationError> {
        let kept = match &self.inner.confirmed {
            Some(confirmed) => confirmed.recall(key, SystemTime::now()).await,
            None => None,
        };
        match kept {
            Some(Ok(identity)) => {
                bump(&self.inner.counters.kept_confirmed);
                tracing::debug!(token = %tag, user = %identity.user, issuer = %identity.issuer, %why, "identity provider unavailable; token valid as confirmed earlier");
                Ok(identity)
            }
            Some(Err(reason)) => {
                tracing::debug!(token = %tag, %reason, "token invalid (confirmed earlier)");
                Err(ValidationError::Invalid(reason))
            }
            None => {
                tracing::debug!(token = %tag, "token validation unavailable");
                Err(ValidationError::Unavailable(why))
            }
        }
    }

    /// Asks the issuers about a token the cache does not know.
    ///
    /// A JWT whose `iss` a configured issuer answers for goes to that issuer alone. Anything
    /// else tries, in order, the issuers that judge opaque tokens: the first acceptance wins,
    /// and so does the first refusal of a token its provider knows (a later, looser issuer
    /// must not accept what an earlier one refused). When every provider reached says it does
    /// not know the token, an unreachable issuer makes the answer "unavailable" (it might
    /// have known it), else the first "unknown" stands.
    async fn fetch(&self, token: &SecretString, tag: &str) -> Result<Outcome, Unavailable> {
        let issuers = &self.inner.issuers;
        if let Some(iss) = jwt::peek_issuer(token.expose_secret()) {
            if let Some(issuer) = issuers.iter().find(|i| i.answers_for(&iss)) {
                return Ok(issuer.fetch(token, tag).await?.into_outcome());
            }
        }
        let candidates: Vec<&Issuer> = issuers
            .iter()
            .filter(|i| i.judges_opaque_tokens())
            .collect();
        if candidates.is_empty() {
            // Only JWT issuers, and the token is none of theirs: the first one says why.
            return match issuers.first() {
                Some(first) => Ok(first.fetch(token, tag).await?.into_outcome()),
                // Only the built-in issuer, and the token is not one of its JWTs.
                None => Ok(Outcome::Invalid(InvalidReason::WrongIssuer)),
            };
        }
        let mut unknown = None;
        let mut unavailable = None;
        for issuer in candidates {
            match issuer.fetch(token, tag).await {
                Ok(Judgement::Unknown(reason)) => {
                    unknown.get_or_insert(reason);
                }
                Ok(judgement) => return Ok(judgement.into_outcome()),
                Err(why) => {
                    unavailable.get_or_insert(why);
                }
            }
        }
        match (unavailable, unknown) {
            (Some(why), _) => Err(why),
            (None, Some(reason)) => Ok(Outcome::Invalid(reason)),
            (None, None) => Err(Unavailable::new(
                UnavailableKind::BadAnswer,
                "no issuer could judge the token",
            )),
        }
    }

    /// Each issuer's requests and circuit state, for metrics.
    pub fn issuer_stats(&self) -> Vec<IssuerStats> {
        self.inner
            .issuers
            .iter()
            .map(|issuer| IssuerStats {
                name: issuer.name.clone(),
                requests: issuer.requests(),
                circuit: issuer.circuit(),
                rejected: issuer.rejected(),
            })
            .collect()
    }

    /// Counters since this validator was built.
    pub fn stats(&self) -> ValidatorStats {
        let c = &self.inner.counters;
        ValidatorStats {
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_misses: c.cache_misses.load(Ordering::Relaxed),
            introspection_requests: self.inner.issuers.iter().map(Issuer::requests).sum(),
            invalid: c.invalid.load(Ordering::Relaxed),
            unavailable: c.unavailable.load(Ordering::Relaxed),
            kept_confirmed: c.kept_confirmed.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("issuers", &self.inner.issuers)
            .field("lifetimes", &self.inner.lifetimes)
            .field("cached_entries", &self.inner.cache.entry_count())
            .field("confirmed", &self.inner.confirmed)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;
    use serde_json::{json, Map, Value};

    use super::*;

    /// An in-process issuer that is never asked: telling its tokens apart must not call it.
    #[derive(Debug)]
    struct Unasked;

    impl LocalTokens for Unasked {
        fn issuer(&self) -> &str {
            "https://mail.example.test"
        }

        fn check(&self, _token: &str) -> Result<Map<String, Value>, LocalRefusal> {
            panic!("answer_source must not judge the token")
        }
    }

    #[tokio::test]
    async fn answer_source_tells_cache_in_process_and_provider_apart() {
        let local = LocalIssuer {
            name: "builtin".into(),
            tokens: Arc::new(Unasked),
            policy: Policy::with_claim("sub"),
            discovery: Discovery::default(),
        };
        let validator =
            Validator::with_local(ValidatorConfig::several(Vec::new()), local).expect("validator");
        let valid_until = |expires_at| {
            let identity = Identity {
                user: "alice".into(),
                user_claim: "sub".into(),
                backend_user: "alice".into(),
                issuer: "idp".into(),
                scopes: Vec::new(),
                client_id: None,
                audiences: Vec::new(),
                expires_at,
            };
            Outcome::Valid(Arc::new(identity))
        };
        let past = SystemTime::now() - Duration::from_secs(1);
        let cached = [
            ("good", valid_until(None)),
            ("bad", Outcome::Invalid(InvalidReason::Inactive)),
            ("stale", valid_until(Some(past))),
        ];
        for (token, outcome) in cached {
            let key = TokenKey::of(&SecretString::from(token));
            let ttl = Duration::from_secs(60);
            validator
                .inner
                .cache
                .insert(key, Cached { outcome, ttl })
                .await;
        }
        let jwt_from = |iss: &str| {
            let claims = json!({ "iss": iss }).to_string();
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
            format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln")
        };
        let cases = [
            ("good".to_owned(), AnswerSource::KnownValid),
            ("bad".to_owned(), AnswerSource::KnownInvalid),
            ("stale".to_owned(), AnswerSource::KnownInvalid),
            (String::new(), AnswerSource::KnownInvalid),
            ("a".repeat(MAX_TOKEN_LEN + 1), AnswerSource::KnownInvalid),
            (
                jwt_from("https://mail.example.test"),
                AnswerSource::InProcess,
            ),
            (jwt_from("https://idp.example.test"), AnswerSource::Provider),
            ("never-seen".to_owned(), AnswerSource::Provider),
        ];
        for (token, source) in cases {
            let found = validator
                .answer_source(&SecretString::from(token.clone()))
                .await;
            assert_eq!(found, source, "{:.20}", token);
        }
    }
}

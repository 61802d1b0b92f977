//! `kind = "jwt"`: local validation of JWT access tokens (RFC 7519, RFC 9068) against the
//! issuer's JWKS.
//!
//! Only asymmetric algorithms are accepted; `none` and `HS*` are always refused. The key is
//! chosen by the header's `kid`, and the signature is checked with exactly the header's
//! algorithm after it has been found both allowed and fitting the key (`kty`, `crv`, the
//! JWK's own `alg`), so a public key can never serve as an HMAC secret.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::{ACCEPT, CACHE_CONTROL};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::{validate_url_key, DEFAULT_TIMEOUT};
use crate::error::{invalid, ConfigError, InvalidReason, ValidationError};
use crate::introspection::{describe, http_client, transport_kind, Unavailable, UnavailableKind};
use crate::MAX_TOKEN_LEN;

/// Default for `leeway`: clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
/// Default for `jwks_refetch_interval`: an unknown `kid` refetches the JWKS at most this often.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// How long a JWKS is used without asking again when its answer has no `Cache-Control:
/// max-age`: a day, so a key the issuer withdrew stops working within a day even when no
/// token names an unknown key.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Largest JWKS or discovery document read.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Shared-secret algorithms: accepted only with a configured `hmac_secret`.
const HMAC_ALGORITHMS: [&str; 3] = ["HS256", "HS384", "HS512"];
/// Default for `allowed_algorithms`.
pub const DEFAULT_JWT_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `[validator]` settings for `kind = "jwt"`.
#[derive(Clone)]
pub struct JwtConfig {
    /// `issuer`: the exact `iss` demanded.
    pub issuer: String,
    /// `audience`: the token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// `jwks_url`; when `None`, discovered from `{issuer}/.well-known/openid-configuration`,
    /// then `{issuer}/.well-known/oauth-authorization-server`.
    pub jwks_url: Option<String>,
    /// `leeway`: clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// `require_typ`: the header `typ` demanded (compared case-insensitively, with or
    /// without the `application/` prefix), e.g. `at+jwt` (RFC 9068).
    pub require_typ: Option<String>,
    /// `allowed_algorithms`: header `alg` values accepted. `none` is always refused, `HS*`
    /// unless `hmac_secret` is set.
    pub allowed_algorithms: Vec<String>,
    /// `hmac_secret`: a secret shared with the issuer, for issuers that sign with HS256/384/
    /// 512. Only then are `HS*` tokens accepted, and only with this secret, never with a JWK.
    pub hmac_secret: Option<SecretString>,
    /// `jwks_refetch_interval`: least time between two JWKS fetches caused by unknown `kid`s.
    pub jwks_refetch_interval: Duration,
    /// `timeout`: limit for one JWKS or discovery request.
    pub timeout: Duration,
}

impl JwtConfig {
    /// A configuration with the defaults for every optional key.
    pub fn new(issuer: impl Into<String>, audiences: Vec<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audiences,
            jwks_url: None,
            leeway: DEFAULT_JWT_LEEWAY,
            require_typ: None,
            allowed_algorithms: DEFAULT_JWT_ALGORITHMS.map(str::to_owned).to_vec(),
            hmac_secret: None,
            jwks_refetch_interval: DEFAULT_JWKS_REFETCH_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Checks every key and the rules between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_url_key("issuer", &self.issuer)?;
        if let Some(url) = &self.jwks_url {
            validate_url_key("jwks_url", url)?;
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(invalid("audience", "needs at least one non-empty audience"));
        }
        if self.allowed_algorithms.is_empty() {
            return Err(invalid("allowed_algorithms", "must not be empty"));
        }
        for alg in &self.allowed_algorithms {
            let hmac = HMAC_ALGORITHMS.contains(&alg.as_str());
            if alg.eq_ignore_ascii_case("none") {
                return Err(invalid(
                    "allowed_algorithms",
                    "\"none\" is never accepted (unsigned tokens)",
                ));
            }
            if hmac && self.hmac_secret.is_none() {
                return Err(invalid(
                    "allowed_algorithms",
                    format!("{alg:?} needs hmac_secret: a public key is never an HMAC secret"),
                ));
            }
            if !hmac && !DEFAULT_JWT_ALGORITHMS.contains(&alg.as_str()) {
                return Err(invalid(
                    "allowed_algorithms",
                    format!("{alg:?} is not a supported algorithm"),
                ));
            }
        }
        if let Some(secret) = &self.hmac_secret {
            // RFC 7518 §3.2: the key must be at least as long as the hash.
            if secret.expose_secret().len() < 32 {
                return Err(invalid("hmac_secret", "must be at least 32 bytes"));
            }
        }
        if self.require_typ.as_deref() == Some("") {
            return Err(invalid("require_typ", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero"));
        }
        Ok(())
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("jwks_url", &self.jwks_url)
            .field("leeway", &self.leeway)
            .field("require_typ", &self.require_typ)
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .field("allowed_algorithms", &self.allowed_algorithms)
            .field("jwks_refetch_interval", &self.jwks_refetch_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One usable key from the JWKS.
#[derive(Clone)]
struct Key {
    jwk: Jwk,
    decoding: DecodingKey,
}

type KeyMap = HashMap<String, Arc<Key>>;

struct RefreshState {
    /// When the last fetch (successful or not) started, once keys have been loaded.
    last_fetch: Option<Instant>,
    /// The JWKS URL, configured or discovered.
    jwks_url: Option<Url>,
    /// Why the last fetch failed, until one succeeds.
    last_error: Option<Unavailable>,
}

/// The issuer's signing keys by `kid`, refetched (single-flight, rate-limited) when a token
/// names an unknown one. A failed refetch keeps the known keys.
pub(crate) struct JwksCache {
    http: reqwest::Client,
    issuer: String,
    timeout: Duration,
    min_interval: Duration,
    keys: RwLock<Arc<KeyMap>>,
    /// When the keys should be fetched again: their `Cache-Control: max-age` (at least
    /// `min_interval`, at most [`DEFAULT_JWKS_MAX_AGE`]), pushed back after a failed refresh.
    stale_at: RwLock<Option<Instant>>,
    /// Bumped by each completed fetch attempt; lets waiters see that a fetch happened.
    generation: AtomicU64,
    loaded: std::sync::atomic::AtomicBool,
    refresh: tokio::sync::Mutex<RefreshState>,
    fetches: AtomicU64,
}

/// Why no key was found.
enum KeyError {
    Unknown,
    Unavailable(Unavailable),
}

impl JwksCache {
    fn new(config: &JwtConfig) -> Result<Self, ConfigError> {
        let jwks_url = match &config.jwks_url {
            Some(url) => Some(Url::parse(url).map_err(|e| invalid("jwks_url", e.to_string()))?),
            None => None,
        };
        Ok(Self {
            http: http_client(config.timeout)?,
            issuer: config.issuer.clone(),
            timeout: config.timeout,
            min_interval: config.jwks_refetch_interval,
            keys: RwLock::new(Arc::new(HashMap::new())),
            stale_at: RwLock::new(None),
            generation: AtomicU64::new(0),
            loaded: std::sync::atomic::AtomicBool::new(false),
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_fetch: None,
                jwks_url,
                last_error: None,
            }),
            fetches: AtomicU64::new(0),
        })
    }

    fn lookup(&self, kid: &str) -> Option<Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(kid).cloned()
    }

    fn is_stale(&self) -> bool {
        let stale_at = self.stale_at.read().unwrap_or_else(|p| p.into_inner());
        stale_at.is_some_and(|at| Instant::now() >= at)
    }

    fn set_stale_at(&self, after: Duration) {
        *self.stale_at.write().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + after);
    }

    fn store(&self, map: KeyMap, max_age: Duration) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
        self.set_stale_at(max_age);
        self.loaded.store(true, Ordering::SeqCst);
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, KeyError> {
        if let Some(key) = self.lookup(kid) {
            if !self.is_stale() {
                return Ok(key);
            }
            return match self.refresh_stale(kid).await {
                Some(refreshed) => refreshed.ok_or(KeyError::Unknown),
                None => Ok(key),
            };
        }
        let seen = self.generation.load(Ordering::SeqCst);
        let mut state = self.refresh.lock().await;
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let loaded = self.loaded.load(Ordering::SeqCst);
        let failed = |state: &RefreshState| match (&state.last_error, loaded) {
            // No keys at all, and the provider could not give them: try again later.
            (Some(why), false) => KeyError::Unavailable(why.clone()),
            _ => KeyError::Unknown,
        };
        if self.generation.load(Ordering::SeqCst) != seen {
            // Someone fetched while we waited, and the kid still is not there.
            return Err(failed(&state));
        }
        if loaded
            && state
                .last_fetch
                .is_some_and(|t| t.elapsed() < self.min_interval)
        {
            return Err(KeyError::Unknown);
        }
        state.last_fetch = Some(Instant::now());
        let result = self.fetch(&mut state).await;
        self.generation.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok((map, max_age)) => {
                state.last_error = None;
                self.store(map, max_age);
                self.lookup(kid).ok_or(KeyError::Unknown)
            }
            Err(why) => {
                tracing::warn!(issuer = %self.issuer, "JWKS fetch failed: {why}");
                state.last_error = Some(why.clone());
                Err(KeyError::Unavailable(why))
            }
        }
    }

    /// The keys' cache lifetime has passed: one caller refetches them while the others go on
    /// with the known keys. `None` means "use the key you have" (someone else is refreshing,
    /// or the refresh failed and the known keys stay); `Some` is the lookup after a refresh,
    /// in which a withdrawn key is gone.
    async fn refresh_stale(&self, kid: &str) -> Option<Option<Arc<Key>>> {
        let Ok(mut state) = self.refresh.try_lock() else {
            return None;
        };
        if !self.is_stale() {
            return None;
        }
        state.last_fetch = Some(Instant::now());
        let result = self.fetch(&mut state).await;
        self.generation.fetch_add(1, Ordering::SeqCst);
        match result {
            Ok((map, max_age)) => {
                self.store(map, max_age);
                Some(self.lookup(kid))
            }
            Err(why) => {
                tracing::warn!(issuer = %self.issuer, "JWKS refresh failed, keeping the known keys: {why}");
                self.set_stale_at(self.min_interval.max(Duration::from_secs(30)));
                None
            }
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<(KeyMap, Duration), Unavailable> {
        let url = match &state.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = self.discover().await?;
                state.jwks_url = Some(url.clone());
                url
            }
        };
        let (document, max_age) = self.get_json(&url).await?;
        let max_age = max_age
            .unwrap_or(DEFAULT_JWKS_MAX_AGE)
            .clamp(self.min_interval, DEFAULT_JWKS_MAX_AGE);
        let Some(Value::Array(keys)) = document.get("keys") else {
            return Err(bad_answer("JWKS has no \"keys\" array".to_owned()));
        };
        let mut map = HashMap::new();
        for raw in keys {
            // RFC 7517 §5: a JWK Set's `keys` holds JWKs, which are JSON objects.
            if !raw.is_object() {
                return Err(bad_answer("JWKS \"keys\" holds a non-object".to_owned()));
            }
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue; // a key type we do not know: ignore it, as RFC 7517 §5 says
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue; // symmetric keys have no business in a public JWKS
            }
            if jwk
                .common
                .public_key_use
                .as_ref()
                .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
            {
                continue;
            }
            let Ok(decoding) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            map.insert(kid, Arc::new(Key { jwk, decoding }));
        }
        // Storing an empty set would drop the known keys and refuse every token as signed
        // by an unknown key ("wrong token") until the next fetch: a set without one usable
        // key is a broken answer, and the known keys stay.
        if map.is_empty() {
            return Err(bad_answer(format!(
                "JWKS has no usable signing key with a kid (of {})",
                keys.len()
            )));
        }
        Ok((map, max_age))
    }

    /// RFC 8414 / OpenID Connect Discovery: the `jwks_uri` of the issuer's metadata.
    async fn discover(&self) -> Result<Url, Unavailable> {
        let base = self.issuer.trim_end_matches('/');
        let mut last_error = None;
        for well_known in ["openid-configuration", "oauth-authorization-server"] {
            let url = Url::parse(&format!("{base}/.well-known/{well_known}"))
                .map_err(|e| bad_answer(format!("discovery URL: {e}")))?;
            match self.get_json(&url).await {
                Ok((metadata, _)) => {
                    if let Some(Value::String(issuer)) = metadata.get("issuer") {
                        if issuer != &self.issuer {
                            return Err(bad_answer(format!(
                                "discovery document names issuer {issuer:?}, not the configured one"
                            )));
                        }
                    }
                    let Some(Value::String(jwks_uri)) = metadata.get("jwks_uri") else {
                        return Err(bad_answer(format!("{url} has no jwks_uri")));
                    };
                    validate_url_key("jwks_url", jwks_uri)
                        .map_err(|e| bad_answer(e.to_string()))?;
                    return Url::parse(jwks_uri).map_err(|e| bad_answer(format!("jwks_uri: {e}")));
                }
                Err(why) => last_error = Some(why),
            }
        }
        Err(match last_error {
            Some(why) => Unavailable::new(why.kind, format!("discovery failed: {}", why.detail)),
            None => bad_answer("discovery failed".to_owned()),
        })
    }

    /// A JSON object and the answer's `Cache-Control: max-age`.
    async fn get_json(
        &self,
        url: &Url,
    ) -> Result<(Map<String, Value>, Option<Duration>), Unavailable> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, self.get_json_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(Unavailable::new(
                UnavailableKind::Timeout,
                format!("{url}: no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    async fn get_json_inner(
        &self,
        url: &Url,
    ) -> Result<(Map<String, Value>, Option<Duration>), Unavailable> {
        let mut response = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                Unavailable::new(transport_kind(&e), format!("{url}: {}", describe(&e)))
            })?;
        let status = response.status();
        if status != StatusCode::OK {
            let kind = if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS
                || status.is_redirection()
            {
                UnavailableKind::Refused(status.as_u16())
            } else {
                UnavailableKind::HttpStatus(status.as_u16())
            };
            return Err(Unavailable::new(
                kind,
                format!("{url} answered HTTP {status}"),
            ));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age);
        let too_large = || bad_answer(format!("{url}: answer is larger than {MAX_JWKS_LEN} bytes"));
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_LEN as u64)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Unavailable::new(transport_kind(&e), format!("{url}: {}", describe(&e))))?
        {
            if bytes.len() + chunk.len() > MAX_JWKS_LEN {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok((map, max_age)),
            Ok(_) => Err(bad_answer(format!(
                "{url}: answer is JSON but not an object"
            ))),
            Err(e) => Err(bad_answer(format!("{url}: answer is not JSON: {e}"))),
        }
    }
}

/// RFC 9111 §5.2.2: `max-age=N` of a `Cache-Control` value; `no-store` and `no-cache`
/// count as zero (fetch again as soon as the rate limit allows).
fn max_age(cache_control: &str) -> Option<Duration> {
    let mut found = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(secs) = lower.strip_prefix("max-age=") {
            found = secs.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    found
}

impl fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).len();
        f.debug_struct("JwksCache")
            .field("issuer", &self.issuer)
            .field("keys", &keys)
            .field("fetches", &self.fetches.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Validates JWT access tokens locally against the issuer's JWKS.
#[derive(Debug)]
pub struct JwtValidator {
    config: JwtConfig,
    jwks: JwksCache,
}

impl JwtValidator {
    /// Builds a JWT validator after checking `config`. Nothing is fetched until the first
    /// validation.
    pub fn new(config: JwtConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let jwks = JwksCache::new(&config)?;
        Ok(Self { config, jwks })
    }

    /// The `iss` this validator accepts.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// HTTP requests sent for discovery and JWKS so far.
    pub fn jwks_requests(&self) -> u64 {
        self.jwks.fetches.load(Ordering::Relaxed)
    }

    /// The claims of `token` once its signature, `alg`, `typ`, `iss`, `aud`, `exp` and `nbf`
    /// have been checked. What the claims must say beyond that is the policy's business.
    pub async fn verify(
        &self,
        token: &SecretString,
    ) -> Result<Map<String, Value>, ValidationError> {
        let raw = token.expose_secret();
        if raw.is_empty() {
            return Err(InvalidReason::EmptyToken.into());
        }
        if raw.len() > MAX_TOKEN_LEN {
            return Err(InvalidReason::TokenTooLong.into());
        }
        let header = raw_header(raw)?;
        let alg_name = match header.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(InvalidReason::MalformedJwt.into()),
        };
        if alg_name == "none" || !self.config.allowed_algorithms.contains(&alg_name) {
            return Err(not_allowed(&alg_name));
        }
        let alg: Algorithm = alg_name.parse().map_err(|_| not_allowed(&alg_name))?;
        if let Some(required) = &self.config.require_typ {
            let typ = match header.get("typ") {
                Some(Value::String(typ)) => typ.as_str(),
                _ => return Err(InvalidReason::WrongType.into()),
            };
            if !same_media_type(typ, required) {
                return Err(InvalidReason::WrongType.into());
            }
        }
        if header.contains_key("crit") {
            // RFC 7515 §4.1.11: we understand no extensions.
            return Err(InvalidReason::MalformedJwt.into());
        }
        let decoding = match (
            &self.config.hmac_secret,
            HMAC_ALGORITHMS.contains(&alg_name.as_str()),
        ) {
            // Only reachable when configured: validate() refuses HS* without a secret.
            (Some(secret), true) => DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            (None, true) => return Err(not_allowed(&alg_name)),
            (_, false) => self.public_key(&header, alg, &alg_name).await?,
        };

        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(raw, &decoding, &validation)
            .map_err(|e| ValidationError::Invalid(map_error(e.kind())))?;
        Ok(data.claims)
    }

    /// The issuer's key the header's `kid` names, checked to fit `alg`.
    async fn public_key(
        &self,
        header: &Map<String, Value>,
        alg: Algorithm,
        alg_name: &str,
    ) -> Result<DecodingKey, ValidationError> {
        let Some(Value::String(kid)) = header.get("kid") else {
            return Err(InvalidReason::UnknownKey.into());
        };

        let key = match self.jwks.key(kid).await {
            Ok(key) => key,
            Err(KeyError::Unknown) => return Err(InvalidReason::UnknownKey.into()),
            Err(KeyError::Unavailable(why)) => return Err(ValidationError::Unavailable(why)),
        };
        if !key_fits(&key.jwk, alg) {
            return Err(not_allowed(alg_name));
        }
        Ok(key.decoding.clone())
    }
}

fn not_allowed(alg: &str) -> ValidationError {
    InvalidReason::AlgorithmNotAllowed {
        alg: alg.to_owned(),
    }
    .into()
}

fn bad_answer(detail: String) -> Unavailable {
    Unavailable::new(UnavailableKind::BadAnswer, detail)
}

/// The JOSE header, decoded by hand so that `none` and unknown algorithms get a clear reason.
pub(crate) fn raw_header(token: &str) -> Result<Map<String, Value>, InvalidReason> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(InvalidReason::MalformedJwt);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| InvalidReason::MalformedJwt)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(InvalidReason::MalformedJwt),
    }
}

/// The `iss` a token claims, read without checking anything: only to choose which
/// configured issuer checks it. `None` for anything that is not a JWT with a string `iss`.
pub(crate) fn peek_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    match serde_json::from_slice::<Map<String, Value>>(&bytes)
        .ok()?
        .remove("iss")
    {
        Some(Value::String(iss)) => Some(iss),
        _ => None,
    }
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared case-insensitively, `application/` optional.
fn same_media_type(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> String {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(str::to_owned)
            .unwrap_or(lower)
    }
    bare(a) == bare(b)
}

/// Whether a JWK may verify `alg`: its key type and curve fit, and its own `alg`, if any,
/// is the same.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if let Some(key_alg) = &jwk.common.key_algorithm {
        if key_alg.to_string() != format!("{alg:?}") {
            return false;
        }
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

fn map_error(kind: &ErrorKind) -> InvalidReason {
    match kind {
        ErrorKind::InvalidSignature => InvalidReason::BadSignature,
        ErrorKind::ExpiredSignature => InvalidReason::Expired,
        ErrorKind::ImmatureSignature => InvalidReason::NotYetValid,
        ErrorKind::InvalidIssuer => InvalidReason::WrongIssuer,
        ErrorKind::InvalidAudience => InvalidReason::WrongAudience,
        ErrorKind::InvalidAlgorithm => InvalidReason::AlgorithmNotAllowed {
            alg: "(does not fit the key)".to_owned(),
        },
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "iss" => InvalidReason::WrongIssuer,
            "aud" => InvalidReason::WrongAudience,
            _ => InvalidReason::Malformed {
                claim: claim.clone(),
                problem: "is missing",
            },
        },
        _ => InvalidReason::MalformedJwt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> JwtConfig {
        JwtConfig::new("https://idp.example", vec!["imap".to_owned()])
    }

    #[test]
    fn defaults_validate() {
        let c = config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.leeway, Duration::from_secs(60));
        assert!(!c.allowed_algorithms.iter().any(|a| a.starts_with("HS")));
    }

    #[test]
    fn hmac_and_none_are_refused_in_config() {
        for alg in ["HS256", "none", "hs512", "XX1"] {
            let mut c = config();
            c.allowed_algorithms = vec![alg.to_owned()];
            assert!(
                matches!(
                    c.validate(),
                    Err(ConfigError::Invalid {
                        key: "allowed_algorithms",
                        ..
                    })
                ),
                "{alg}"
            );
        }
    }

    #[test]
    fn config_errors_name_the_key() {
        let mut c = config();
        c.audiences.clear();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "audience",
                ..
            })
        ));
        let mut c = config();
        c.issuer = "http://idp.example".to_owned();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid { key: "issuer", .. })
        ));
        let text = format!("{:?}", config());
        assert!(text.contains("JwtConfig"), "{text}");
    }

    #[test]
    fn hmac_needs_a_long_enough_shared_secret() {
        let mut c = config();
        c.allowed_algorithms = vec!["HS256".to_owned(), "ES256".to_owned()];
        c.hmac_secret = Some(SecretString::from("0123456789abcdef0123456789abcdef"));
        assert_eq!(c.validate(), Ok(()));
        let text = format!("{c:?}");
        assert!(!text.contains("0123456789abcdef"), "{text}");

        c.hmac_secret = Some(SecretString::from("short"));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "hmac_secret",
                ..
            })
        ));
        // Even with a secret, `none` stays refused.
        c.hmac_secret = Some(SecretString::from("0123456789abcdef0123456789abcdef"));
        c.allowed_algorithms = vec!["none".to_owned()];
        assert!(c.validate().is_err());
    }

    #[test]
    fn cache_control_max_age() {
        let table = [
            ("max-age=3600", Some(3600)),
            ("public, max-age=60, must-revalidate", Some(60)),
            ("Max-Age=\"120\"", Some(120)),
            ("no-cache", Some(0)),
            ("max-age=60, no-store", Some(0)),
            ("public", None),
            ("max-age=soon", None),
        ];
        for (value, want) in table {
            assert_eq!(max_age(value), want.map(Duration::from_secs), "{value}");
        }
    }

    #[test]
    fn typ_comparison() {
        assert!(same_media_type("at+jwt", "at+JWT"));
        assert!(same_media_type("application/at+jwt", "at+jwt"));
        assert!(!same_media_type("JWT", "at+jwt"));
    }
}

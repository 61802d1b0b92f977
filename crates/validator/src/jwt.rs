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
use std::time::{Duration, Instant, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::header::ACCEPT;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::{is_scope_token_byte, validate_url_key, DEFAULT_TIMEOUT};
use crate::error::{ConfigError, InvalidReason, ValidationError};
use crate::identity::{optional_str, user_claim, Identity};
use crate::introspection::{describe, http_client};
use crate::MAX_TOKEN_LEN;

/// Default for `leeway`: clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_JWT_LEEWAY: Duration = Duration::from_secs(60);
/// Default for `jwks_refetch_interval`: an unknown `kid` refetches the JWKS at most this often.
pub const DEFAULT_JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Largest JWKS or discovery document read.
pub const MAX_JWKS_LEN: usize = 256 * 1024;
/// Algorithms that are never accepted, whatever the configuration says.
const REFUSED_ALGORITHMS: [&str; 4] = ["none", "HS256", "HS384", "HS512"];
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
    /// `username_claim`: tried in order; the first that is present as a string wins.
    pub username_claims: Vec<String>,
    /// `required_scope`: every one must be among the token's `scope` / `scp`.
    pub required_scopes: Vec<String>,
    /// `allowed_algorithms`: header `alg` values accepted. `none` and `HS*` are refused.
    pub allowed_algorithms: Vec<String>,
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
            username_claims: vec!["preferred_username".to_owned(), "sub".to_owned()],
            required_scopes: Vec::new(),
            allowed_algorithms: DEFAULT_JWT_ALGORITHMS.map(str::to_owned).to_vec(),
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
        if self.username_claims.is_empty() || self.username_claims.iter().any(String::is_empty) {
            return Err(invalid(
                "username_claim",
                "needs at least one non-empty claim",
            ));
        }
        if let Some(bad) = self
            .required_scopes
            .iter()
            .find(|s| s.is_empty() || !s.bytes().all(is_scope_token_byte))
        {
            return Err(invalid(
                "required_scope",
                format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
            ));
        }
        if self.allowed_algorithms.is_empty() {
            return Err(invalid("allowed_algorithms", "must not be empty"));
        }
        for alg in &self.allowed_algorithms {
            if REFUSED_ALGORITHMS
                .iter()
                .any(|r| r.eq_ignore_ascii_case(alg))
            {
                return Err(invalid(
                    "allowed_algorithms",
                    format!("{alg:?} is never accepted (no shared-secret or unsigned tokens)"),
                ));
            }
            if !DEFAULT_JWT_ALGORITHMS.contains(&alg.as_str()) {
                return Err(invalid(
                    "allowed_algorithms",
                    format!("{alg:?} is not a supported algorithm"),
                ));
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
            .field("username_claims", &self.username_claims)
            .field("required_scopes", &self.required_scopes)
            .field("allowed_algorithms", &self.allowed_algorithms)
            .field("jwks_refetch_interval", &self.jwks_refetch_interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
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
}

/// The issuer's signing keys by `kid`, refetched (single-flight, rate-limited) when a token
/// names an unknown one. A failed refetch keeps the known keys.
pub(crate) struct JwksCache {
    http: reqwest::Client,
    issuer: String,
    timeout: Duration,
    min_interval: Duration,
    keys: RwLock<Arc<KeyMap>>,
    /// Bumped by each completed fetch attempt; lets waiters see that a fetch happened.
    generation: AtomicU64,
    loaded: std::sync::atomic::AtomicBool,
    refresh: tokio::sync::Mutex<RefreshState>,
    fetches: AtomicU64,
}

/// Why no key was found.
enum KeyError {
    Unknown,
    Unavailable(String),
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
            generation: AtomicU64::new(0),
            loaded: std::sync::atomic::AtomicBool::new(false),
            refresh: tokio::sync::Mutex::new(RefreshState {
                last_fetch: None,
                jwks_url,
            }),
            fetches: AtomicU64::new(0),
        })
    }

    fn lookup(&self, kid: &str) -> Option<Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(kid).cloned()
    }

    async fn key(&self, kid: &str) -> Result<Arc<Key>, KeyError> {
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let seen = self.generation.load(Ordering::SeqCst);
        let mut state = self.refresh.lock().await;
        if let Some(key) = self.lookup(kid) {
            return Ok(key);
        }
        let loaded = self.loaded.load(Ordering::SeqCst);
        if loaded && self.generation.load(Ordering::SeqCst) != seen {
            // Someone fetched while we waited, and the kid still is not there.
            return Err(KeyError::Unknown);
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
            Ok(map) => {
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(map);
                self.loaded.store(true, Ordering::SeqCst);
                self.lookup(kid).ok_or(KeyError::Unknown)
            }
            Err(why) => {
                tracing::warn!(issuer = %self.issuer, "JWKS fetch failed: {why}");
                Err(KeyError::Unavailable(why))
            }
        }
    }

    async fn fetch(&self, state: &mut RefreshState) -> Result<KeyMap, String> {
        let url = match &state.jwks_url {
            Some(url) => url.clone(),
            None => {
                let url = self.discover().await?;
                state.jwks_url = Some(url.clone());
                url
            }
        };
        let document = self.get_json(&url).await?;
        let Some(Value::Array(keys)) = document.get("keys") else {
            return Err("JWKS has no \"keys\" array".to_owned());
        };
        let mut map = HashMap::new();
        for raw in keys {
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
        Ok(map)
    }

    /// RFC 8414 / OpenID Connect Discovery: the `jwks_uri` of the issuer's metadata.
    async fn discover(&self) -> Result<Url, String> {
        let base = self.issuer.trim_end_matches('/');
        let mut last_error = String::new();
        for well_known in ["openid-configuration", "oauth-authorization-server"] {
            let url = Url::parse(&format!("{base}/.well-known/{well_known}"))
                .map_err(|e| format!("discovery URL: {e}"))?;
            match self.get_json(&url).await {
                Ok(metadata) => {
                    if let Some(Value::String(issuer)) = metadata.get("issuer") {
                        if issuer != &self.issuer {
                            return Err(format!(
                                "discovery document names issuer {issuer:?}, not the configured one"
                            ));
                        }
                    }
                    let Some(Value::String(jwks_uri)) = metadata.get("jwks_uri") else {
                        return Err(format!("{url} has no jwks_uri"));
                    };
                    validate_url_key("jwks_url", jwks_uri).map_err(|e| e.to_string())?;
                    return Url::parse(jwks_uri).map_err(|e| format!("jwks_uri: {e}"));
                }
                Err(why) => last_error = why,
            }
        }
        Err(format!("discovery failed: {last_error}"))
    }

    async fn get_json(&self, url: &Url) -> Result<Map<String, Value>, String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, self.get_json_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{url}: no answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    async fn get_json_inner(&self, url: &Url) -> Result<Map<String, Value>, String> {
        let mut response = self
            .http
            .get(url.clone())
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {}", describe(&e)))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(format!("{url} answered HTTP {status}"));
        }
        let too_large = || format!("{url}: answer is larger than {MAX_JWKS_LEN} bytes");
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
            .map_err(|e| format!("{url}: {}", describe(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_JWKS_LEN {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(format!("{url}: answer is JSON but not an object")),
            Err(e) => Err(format!("{url}: answer is not JSON: {e}")),
        }
    }
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

    /// HTTP requests sent for discovery and JWKS so far.
    pub fn jwks_requests(&self) -> u64 {
        self.jwks.fetches.load(Ordering::Relaxed)
    }

    /// The identity `token` stands for.
    pub async fn validate_jwt(&self, token: &SecretString) -> Result<Identity, ValidationError> {
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
        if REFUSED_ALGORITHMS.contains(&alg_name.as_str())
            || !self.config.allowed_algorithms.contains(&alg_name)
        {
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
        let Some(Value::String(kid)) = header.get("kid") else {
            return Err(InvalidReason::UnknownKey.into());
        };

        let key = match self.jwks.key(kid).await {
            Ok(key) => key,
            Err(KeyError::Unknown) => return Err(InvalidReason::UnknownKey.into()),
            Err(KeyError::Unavailable(why)) => return Err(ValidationError::Unavailable(why)),
        };
        if !key_fits(&key.jwk, alg) {
            return Err(not_allowed(&alg_name));
        }

        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&self.config.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(raw, &key.decoding, &validation)
            .map_err(|e| ValidationError::Invalid(map_error(e.kind())))?;
        identity(&data.claims, &self.config).map_err(ValidationError::Invalid)
    }
}

fn not_allowed(alg: &str) -> ValidationError {
    InvalidReason::AlgorithmNotAllowed {
        alg: alg.to_owned(),
    }
    .into()
}

/// The JOSE header, decoded by hand so that `none` and unknown algorithms get a clear reason.
fn raw_header(token: &str) -> Result<Map<String, Value>, InvalidReason> {
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

/// The identity in verified claims.
fn identity(claims: &Map<String, Value>, config: &JwtConfig) -> Result<Identity, InvalidReason> {
    let claim = config
        .username_claims
        .iter()
        .find(|c| matches!(claims.get(c.as_str()), Some(Value::String(_))))
        .ok_or_else(|| InvalidReason::NoUserClaim {
            claim: config.username_claims.join(","),
        })?;
    let user = user_claim(claims, claim)?;

    let scopes: Vec<String> = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(scope)), _) => scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        (None | Some(Value::Null), Some(Value::Array(scp))) => scp
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                _ => Err(InvalidReason::Malformed {
                    claim: "scp".to_owned(),
                    problem: "is not an array of strings",
                }),
            })
            .collect::<Result<_, _>>()?,
        (None | Some(Value::Null), None | Some(Value::Null)) => Vec::new(),
        (Some(_), _) => {
            return Err(InvalidReason::Malformed {
                claim: "scope".to_owned(),
                problem: "is not a string",
            })
        }
        (_, Some(_)) => {
            return Err(InvalidReason::Malformed {
                claim: "scp".to_owned(),
                problem: "is not an array of strings",
            })
        }
    };
    if let Some(missing) = config
        .required_scopes
        .iter()
        .find(|required| !scopes.contains(required))
    {
        return Err(InvalidReason::MissingScope {
            scope: missing.clone(),
        });
    }

    let client_id = match optional_str(claims, "client_id")? {
        Some(id) => Some(id.to_owned()),
        None => optional_str(claims, "azp")?.map(str::to_owned),
    };
    let expires_at = match claims.get("exp").and_then(Value::as_u64) {
        Some(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs)),
        None => None,
    };
    Ok(Identity {
        user,
        scopes,
        client_id,
        expires_at,
    })
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
        let mut c = config();
        c.username_claims.clear();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "username_claim",
                ..
            })
        ));
        let text = format!("{:?}", config());
        assert!(text.contains("JwtConfig"), "{text}");
    }

    #[test]
    fn typ_comparison() {
        assert!(same_media_type("at+jwt", "at+JWT"));
        assert!(same_media_type("application/at+jwt", "at+jwt"));
        assert!(!same_media_type("JWT", "at+jwt"));
    }
}

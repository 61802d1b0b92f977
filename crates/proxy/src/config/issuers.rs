//! `[validator]`: the token cache, and the identity providers — one given by keys directly in
//! `[validator]`, or several as `[[validator.issuers]]`.
//!
//! The table is read in two steps so that both shapes share one typed, documented issuer
//! struct with unknown keys refused: the cache keys are taken out first, the rest is one
//! issuer (or the `issuers` list). Errors keep their full key path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::{check_file, duration, read_secret_file, resolve, secret_opt, ConfigError};

/// Keys of `[validator]` that belong to the cache, not to an issuer.
const SHARED_KEYS: [&str; 4] = [
    "cache_max_ttl",
    "negative_cache_ttl",
    "cache_capacity",
    "issuers",
];

/// `[validator]`, typed.
#[derive(Debug, Default)]
pub struct ValidatorConfig {
    /// Upper bound on how long an answer is cached; never past the token's `exp`.
    pub cache_max_ttl: Duration,
    /// How long a refusal is remembered.
    pub negative_cache_ttl: Duration,
    /// Tokens kept in the cache at most.
    pub cache_capacity: u64,
    /// The identity providers, in the order an opaque token tries them.
    pub issuers: Vec<IssuerConfig>,
    /// True when they came from `[[validator.issuers]]` (key paths then carry an index).
    listed: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SharedKeys {
    #[serde(default = "defaults::cache_max_ttl", deserialize_with = "duration")]
    cache_max_ttl: Duration,
    #[serde(
        default = "defaults::negative_cache_ttl",
        deserialize_with = "duration"
    )]
    negative_cache_ttl: Duration,
    #[serde(default = "defaults::cache_capacity")]
    cache_capacity: u64,
    #[serde(default)]
    issuers: Vec<IssuerConfig>,
}

/// Token validation methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidatorKind {
    /// RFC 7662 token introspection.
    Introspection,
    /// Local JWT validation against the issuer's JWKS.
    Jwt,
    /// OpenID userinfo (or Google tokeninfo) for opaque tokens without introspection.
    Userinfo,
}

/// How the proxy authenticates to the introspection endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthKey {
    /// HTTP Basic (RFC 6749 §2.3.1).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// `Authorization: Bearer <client_secret>`.
    Bearer,
}

/// How the token reaches the userinfo endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserinfoRequestKey {
    /// GET with `Authorization: Bearer` (OpenID Connect userinfo).
    #[default]
    Bearer,
    /// POST form `access_token=` (Google tokeninfo).
    Form,
}

/// One identity provider: its keys directly in `[validator]`, or one `[[validator.issuers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Name for logs and metrics; default `default` alone, else the `issuer` URL or
    /// `issuer-N`.
    pub name: Option<String>,
    /// Validation method.
    pub kind: ValidatorKind,
    /// `introspection`: RFC 7662 endpoint.
    pub introspection_url: Option<String>,
    /// `introspection`: the proxy's client id.
    pub client_id: Option<String>,
    /// `introspection`: its secret (or `client_secret_file`); the bearer token for
    /// `client_auth = "bearer"`.
    #[serde(default, deserialize_with = "secret_opt")]
    pub client_secret: Option<SecretString>,
    /// File whose first line is the client secret.
    pub client_secret_file: Option<PathBuf>,
    /// `introspection`: `client_secret_basic`, `client_secret_post` or `bearer`.
    #[serde(default)]
    pub client_auth: ClientAuthKey,
    /// `introspection`: `token_type_hint` sent; `""` sends none.
    #[serde(default = "defaults::token_type_hint")]
    pub token_type_hint: String,
    /// `userinfo`: the endpoint.
    pub userinfo_url: Option<String>,
    /// `userinfo`: `bearer` (OpenID userinfo) or `form` (Google tokeninfo).
    #[serde(default)]
    pub userinfo_request: UserinfoRequestKey,
    /// `jwt`: the exact `iss`; `introspection`: checked when the answer has one. Routes JWTs.
    pub issuer: Option<String>,
    /// `jwt`: `aud` must contain one; `introspection`: checked when the answer has one.
    #[serde(default)]
    pub audience: Vec<String>,
    /// `jwt`: the JWKS URL; default: found through the issuer's discovery document.
    pub jwks_url: Option<String>,
    /// `jwt`: clock skew allowed for `exp` and `nbf`.
    #[serde(default = "defaults::jwt_leeway", deserialize_with = "duration")]
    pub leeway: Duration,
    /// `jwt`: required `typ` header, e.g. `at+jwt` (RFC 9068).
    pub require_typ: Option<String>,
    /// `jwt`: accepted signature algorithms (default RS/PS/ES256-512, EdDSA).
    #[serde(default)]
    pub allowed_algorithms: Vec<String>,
    /// `jwt`: least time between two JWKS fetches caused by unknown key ids.
    #[serde(
        default = "defaults::jwks_refetch_interval",
        deserialize_with = "duration"
    )]
    pub jwks_refetch_interval: Duration,
    /// `jwt`: secret shared with an issuer that signs with HS256/384/512.
    #[serde(default, deserialize_with = "secret_opt")]
    pub hmac_secret: Option<SecretString>,
    /// File whose first line is the HMAC secret.
    pub hmac_secret_file: Option<PathBuf>,
    /// Claim that names the mail user.
    #[serde(default = "defaults::username_claim")]
    pub username_claim: String,
    /// Claims tried in order for the mail user (default: `username_claim`).
    #[serde(default)]
    pub username_claims: Vec<String>,
    /// Appended as `@domain` to a user without one.
    pub username_domain: Option<String>,
    /// `@domain` suffixes removed from the user.
    #[serde(default)]
    pub strip_domains: Vec<String>,
    /// Lower-case the user.
    #[serde(default)]
    pub lowercase_username: bool,
    /// Token user → backend login.
    #[serde(default)]
    pub user_map: BTreeMap<String, String>,
    /// Accepted OAuth clients (`client_id`, else `azp`); empty accepts any.
    #[serde(default)]
    pub allowed_client_ids: Vec<String>,
    /// Space-separated scopes every token must carry; empty means none.
    #[serde(default)]
    pub required_scope: String,
    /// Further space-separated scopes per protocol (`imap`, `smtp`, `sieve`).
    #[serde(default)]
    pub protocol_scopes: BTreeMap<String, String>,
    /// Time allowed for one request to the identity provider.
    #[serde(default = "defaults::validator_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Requests in flight to this identity provider at most.
    #[serde(default = "defaults::max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Consecutive failures after which the provider counts as down.
    #[serde(default = "defaults::failure_threshold")]
    pub failure_threshold: u32,
    /// How long a provider that counts as down is answered "unavailable" at once.
    #[serde(default = "defaults::circuit_open_for", deserialize_with = "duration")]
    pub circuit_open_for: Duration,
    /// `openid-configuration` URL sent to OAUTHBEARER clients in the error challenge.
    pub openid_configuration: Option<String>,
    /// Scope named in the error challenge (the scope a client should ask for).
    pub challenge_scope: Option<String>,
}

mod defaults {
    use std::time::Duration;

    pub fn cache_max_ttl() -> Duration {
        validator::DEFAULT_CACHE_MAX_TTL
    }
    pub fn negative_cache_ttl() -> Duration {
        validator::DEFAULT_NEGATIVE_CACHE_TTL
    }
    pub fn cache_capacity() -> u64 {
        validator::DEFAULT_CACHE_CAPACITY
    }
    pub fn token_type_hint() -> String {
        validator::DEFAULT_TOKEN_TYPE_HINT.to_owned()
    }
    pub fn username_claim() -> String {
        validator::DEFAULT_USERNAME_CLAIM.to_owned()
    }
    pub fn jwt_leeway() -> Duration {
        validator::DEFAULT_JWT_LEEWAY
    }
    pub fn jwks_refetch_interval() -> Duration {
        validator::DEFAULT_JWKS_REFETCH_INTERVAL
    }
    pub fn validator_timeout() -> Duration {
        validator::DEFAULT_TIMEOUT
    }
    pub fn max_concurrent_requests() -> usize {
        validator::DEFAULT_MAX_CONCURRENT
    }
    pub fn failure_threshold() -> u32 {
        validator::DEFAULT_FAILURE_THRESHOLD
    }
    pub fn circuit_open_for() -> Duration {
        validator::DEFAULT_OPEN_FOR
    }
}

/// Turns serde's error into one with the full key path under `prefix`.
fn typed<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    prefix: &str,
) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            prefix.to_owned()
        } else {
            format!("{prefix}.{path}")
        };
        ConfigError::new(key, e.into_inner().to_string())
    })
}

impl ValidatorConfig {
    /// Reads the raw `[validator]` table.
    pub fn from_table(mut table: toml::Table) -> Result<Self, ConfigError> {
        let mut shared = toml::Table::new();
        for key in SHARED_KEYS {
            if let Some(value) = table.remove(key) {
                shared.insert(key.to_owned(), value);
            }
        }
        let shared: SharedKeys = typed(shared, "validator")?;
        let listed = !shared.issuers.is_empty();
        let issuers = if listed {
            if let Some(key) = table.keys().next() {
                return Err(ConfigError::new(
                    format!("validator.{key}"),
                    "with [[validator.issuers]], issuer keys go in each issuer, not in [validator]",
                ));
            }
            shared.issuers
        } else {
            vec![typed(table, "validator")?]
        };
        Ok(Self {
            cache_max_ttl: shared.cache_max_ttl,
            negative_cache_ttl: shared.negative_cache_ttl,
            cache_capacity: shared.cache_capacity,
            issuers,
            listed,
        })
    }

    /// Key path of `field` of issuer `index`.
    fn key(&self, index: usize, field: &str) -> String {
        if self.listed {
            format!("validator.issuers[{index}].{field}")
        } else {
            format!("validator.{field}")
        }
    }

    /// Name of issuer `index`.
    pub fn name(&self, index: usize) -> String {
        let issuer = &self.issuers[index];
        match (&issuer.name, &issuer.issuer) {
            (Some(name), _) => name.clone(),
            (None, _) if !self.listed => "default".to_owned(),
            (None, Some(url)) => url.clone(),
            (None, None) => format!("issuer-{index}"),
        }
    }

    /// Cross-field rules, and the validator's own (checked with placeholder secrets so that
    /// check-config reports what start-up would refuse).
    pub(super) fn validate(&self, base: &Path, errors: &mut Vec<ConfigError>) {
        let before = errors.len();
        for (i, issuer) in self.issuers.iter().enumerate() {
            issuer.check_keys(base, &|field| self.key(i, field), errors);
        }
        if errors.len() > before {
            return;
        }
        let placeholder = |_: &Option<SecretString>, _: &Option<PathBuf>| {
            Ok(Some(SecretString::from(
                "a placeholder, 32 bytes or longer",
            )))
        };
        for i in 0..self.issuers.len() {
            match self.build_one(i, placeholder) {
                Ok(issuer) => {
                    if let Err(validator::ConfigError::Invalid { key, problem }) = issuer.validate()
                    {
                        errors.push(ConfigError::new(self.key(i, key), problem));
                    }
                }
                Err(e) => errors.push(e),
            }
            if (0..i).any(|earlier| self.name(earlier) == self.name(i)) {
                errors.push(ConfigError::new(
                    self.key(i, "name"),
                    format!(
                        "issuer name {:?} is used by an earlier issuer",
                        self.name(i)
                    ),
                ));
            }
        }
        if self.cache_capacity == 0 {
            errors.push(ConfigError::new(
                "validator.cache_capacity",
                "must be at least 1 (set cache_max_ttl and negative_cache_ttl to 0 to disable caching)",
            ));
        }
    }

    /// The validator's configuration, with secrets read from files under `base`.
    pub fn to_validator(&self, base: &Path) -> Result<validator::ValidatorConfig, ConfigError> {
        self.build(|value, file| match (value, file) {
            (Some(value), _) => Ok(Some(value.clone())),
            (None, Some(file)) => {
                let path = resolve(base, file);
                read_secret_file(&path).map(Some).map_err(|e| {
                    ConfigError::new(
                        "validator",
                        format!("cannot read the secret file {}: {e}", path.display()),
                    )
                })
            }
            (None, None) => Ok(None),
        })
    }

    fn build<F>(&self, read_secret: F) -> Result<validator::ValidatorConfig, ConfigError>
    where
        F: Fn(&Option<SecretString>, &Option<PathBuf>) -> Result<Option<SecretString>, ConfigError>,
    {
        let issuers = (0..self.issuers.len())
            .map(|i| self.build_one(i, &read_secret))
            .collect::<Result<_, _>>()?;
        Ok(validator::ValidatorConfig {
            issuers,
            cache_max_ttl: self.cache_max_ttl,
            negative_cache_ttl: self.negative_cache_ttl,
            cache_capacity: self.cache_capacity,
        })
    }

    fn build_one<F>(
        &self,
        index: usize,
        read_secret: F,
    ) -> Result<validator::IssuerConfig, ConfigError>
    where
        F: Fn(&Option<SecretString>, &Option<PathBuf>) -> Result<Option<SecretString>, ConfigError>,
    {
        let c = &self.issuers[index];
        let source = match c.kind {
            ValidatorKind::Introspection => {
                let secret = read_secret(&c.client_secret, &c.client_secret_file)?
                    .unwrap_or_else(|| SecretString::from(String::new()));
                let mut source = validator::IntrospectionConfig::new(
                    c.introspection_url.clone().unwrap_or_default(),
                    c.client_id.clone().unwrap_or_default(),
                    secret,
                );
                source.client_auth = match c.client_auth {
                    ClientAuthKey::ClientSecretBasic => validator::ClientAuth::Basic,
                    ClientAuthKey::ClientSecretPost => validator::ClientAuth::Post,
                    ClientAuthKey::Bearer => validator::ClientAuth::Bearer,
                };
                source.token_type_hint =
                    Some(c.token_type_hint.clone()).filter(|hint| !hint.is_empty());
                source.issuer = c.issuer.clone();
                source.audiences = c.audience.clone();
                source.timeout = c.timeout;
                validator::Source::Introspection(source)
            }
            ValidatorKind::Jwt => {
                let mut source = validator::JwtConfig::new(
                    c.issuer.clone().unwrap_or_default(),
                    c.audience.clone(),
                );
                source.jwks_url = c.jwks_url.clone();
                source.leeway = c.leeway;
                source.require_typ = c.require_typ.clone();
                source.jwks_refetch_interval = c.jwks_refetch_interval;
                if !c.allowed_algorithms.is_empty() {
                    source.allowed_algorithms = c.allowed_algorithms.clone();
                }
                if c.hmac_secret.is_some() || c.hmac_secret_file.is_some() {
                    source.hmac_secret = read_secret(&c.hmac_secret, &c.hmac_secret_file)?;
                }
                source.timeout = c.timeout;
                validator::Source::Jwt(source)
            }
            ValidatorKind::Userinfo => {
                let request = match c.userinfo_request {
                    UserinfoRequestKey::Bearer => validator::UserinfoRequest::Bearer,
                    UserinfoRequestKey::Form => validator::UserinfoRequest::Form,
                };
                let mut source = validator::UserinfoConfig::new(
                    c.userinfo_url.clone().unwrap_or_default(),
                    request,
                );
                source.timeout = c.timeout;
                validator::Source::Userinfo(source)
            }
        };
        let scopes = validator::IntrospectionConfig::parse_scopes;
        let policy = validator::Policy {
            username_claims: if c.username_claims.is_empty() {
                vec![c.username_claim.clone()]
            } else {
                c.username_claims.clone()
            },
            username_domain: c.username_domain.clone(),
            strip_domains: c.strip_domains.clone(),
            lowercase_username: c.lowercase_username,
            allowed_client_ids: c.allowed_client_ids.clone(),
            required_scopes: scopes(&c.required_scope),
            protocol_scopes: c
                .protocol_scopes
                .iter()
                .map(|(protocol, list)| (protocol.clone(), scopes(list)))
                .collect(),
            user_map: c.user_map.clone().into_iter().collect(),
        };
        let guard = validator::GuardConfig {
            max_concurrent: c.max_concurrent_requests,
            queue_timeout: c.timeout,
            failure_threshold: c.failure_threshold,
            open_for: c.circuit_open_for,
        };
        Ok(validator::IssuerConfig {
            name: self.name(index),
            source,
            policy,
            guard,
            discovery: validator::Discovery {
                openid_configuration: c.openid_configuration.clone(),
                scope: c.challenge_scope(),
            },
        })
    }
}

impl IssuerConfig {
    /// The scope a refused client is told to ask for (both mechanisms' error challenges,
    /// like Google's XOAUTH2 one): `challenge_scope`, else the scopes every token needs.
    pub fn challenge_scope(&self) -> Option<String> {
        let required = self.required_scope.split_whitespace().collect::<Vec<_>>();
        self.challenge_scope
            .clone()
            .or_else(|| (!required.is_empty()).then(|| required.join(" ")))
    }

    /// Keys each kind needs, and secret files that must exist.
    fn check_keys(&self, base: &Path, key: &dyn Fn(&str) -> String, errors: &mut Vec<ConfigError>) {
        let kind = match self.kind {
            ValidatorKind::Introspection => "introspection",
            ValidatorKind::Jwt => "jwt",
            ValidatorKind::Userinfo => "userinfo",
        };
        let mut require = |present: bool, field: &str| {
            if !present {
                errors.push(ConfigError::new(
                    key(field),
                    format!("required for kind = \"{kind}\""),
                ));
            }
        };
        match self.kind {
            ValidatorKind::Introspection => {
                require(self.introspection_url.is_some(), "introspection_url");
                if self.client_auth != ClientAuthKey::Bearer {
                    require(self.client_id.is_some(), "client_id");
                }
                require(
                    self.client_secret.is_some() || self.client_secret_file.is_some(),
                    "client_secret",
                );
            }
            ValidatorKind::Jwt => require(self.issuer.is_some(), "issuer"),
            ValidatorKind::Userinfo => require(self.userinfo_url.is_some(), "userinfo_url"),
        }
        // A key of another kind is a misunderstanding that would pass silently (e.g. an
        // `audience` on a userinfo issuer, which checks no audience): refuse it.
        let introspection = self.kind == ValidatorKind::Introspection;
        let jwt = self.kind == ValidatorKind::Jwt;
        let userinfo = self.kind == ValidatorKind::Userinfo;
        let foreign = [
            (
                "introspection_url",
                self.introspection_url.is_some(),
                introspection,
            ),
            ("client_id", self.client_id.is_some(), introspection),
            ("client_secret", self.client_secret.is_some(), introspection),
            (
                "client_secret_file",
                self.client_secret_file.is_some(),
                introspection,
            ),
            ("userinfo_url", self.userinfo_url.is_some(), userinfo),
            ("issuer", self.issuer.is_some(), jwt || introspection),
            ("audience", !self.audience.is_empty(), jwt || introspection),
            ("jwks_url", self.jwks_url.is_some(), jwt),
            ("require_typ", self.require_typ.is_some(), jwt),
            (
                "allowed_algorithms",
                !self.allowed_algorithms.is_empty(),
                jwt,
            ),
            ("hmac_secret", self.hmac_secret.is_some(), jwt),
            ("hmac_secret_file", self.hmac_secret_file.is_some(), jwt),
        ];
        for (field, set, applies) in foreign {
            if set && !applies {
                errors.push(ConfigError::new(
                    key(field),
                    format!("does not apply to kind = \"{kind}\""),
                ));
            }
        }
        for (value, file, field) in [
            (
                &self.client_secret,
                &self.client_secret_file,
                "client_secret_file",
            ),
            (
                &self.hmac_secret,
                &self.hmac_secret_file,
                "hmac_secret_file",
            ),
        ] {
            match (value, file) {
                (Some(_), Some(_)) => errors.push(ConfigError::new(
                    key(field),
                    format!(
                        "give {} or {field}, not both",
                        field.trim_end_matches("_file")
                    ),
                )),
                (None, Some(file)) => check_file(base, file, &key(field), errors),
                _ => {}
            }
        }
    }
}

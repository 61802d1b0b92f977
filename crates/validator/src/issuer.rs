//! One configured identity provider: where its answers come from (introspection, local JWT
//! checks, userinfo), the policy that turns them into a mail user, and what OAUTHBEARER
//! clients are told about it when a token is refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use serde_json::{Map, Value};

use crate::cache::Outcome;
use crate::config::{
    IntrospectionConfig, DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_MAX_TTL, DEFAULT_NEGATIVE_CACHE_TTL,
};
use crate::error::{ConfigError, InvalidReason, ValidationError};
use crate::guard::{Guard, GuardConfig};
use crate::identity::{check_answer, numeric_date, AnswerRules, Identity};
use crate::introspection::{IntrospectionClient, Unavailable};
use crate::jwt::{JwtConfig, JwtValidator};
use crate::load::KeyNotes;
use crate::policy::Policy;
use crate::userinfo::{UserinfoClient, UserinfoConfig};

/// The whole validator: one or more issuers behind one answer cache. Read from `[validator]`
/// (see [`ValidatorConfig::validate`] and [`ValidatorConfig::read_secret_files`]), or built.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// The issuers, in the order an opaque token tries them.
    pub issuers: Vec<IssuerConfig>,
    /// `cache_max_ttl`: longest a positive answer is cached; never beyond the token's `exp`.
    /// `Duration::ZERO` disables positive caching.
    pub cache_max_ttl: Duration,
    /// `negative_cache_ttl`: how long a rejected token stays rejected without asking again.
    /// `Duration::ZERO` disables negative caching.
    pub negative_cache_ttl: Duration,
    /// `cache_capacity`: cached answers at most (positive and negative together).
    pub cache_capacity: u64,
    /// The issuers are `[[validator.issuers]]` (keys in errors carry their index), not one
    /// issuer written in `[validator]` itself.
    pub(crate) listed: bool,
    /// Issuer keys written in `[validator]` itself beside `[[validator.issuers]]`, where
    /// they would mean nothing.
    pub(crate) misplaced: Vec<&'static str>,
}

impl ValidatorConfig {
    /// One issuer with the default cache settings.
    pub fn single(issuer: IssuerConfig) -> Self {
        Self {
            listed: false,
            ..Self::several(vec![issuer])
        }
    }

    /// Several issuers, tried in this order, with the default cache settings.
    pub fn several(issuers: Vec<IssuerConfig>) -> Self {
        Self {
            issuers,
            cache_max_ttl: DEFAULT_CACHE_MAX_TTL,
            negative_cache_ttl: DEFAULT_NEGATIVE_CACHE_TTL,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            listed: true,
            misplaced: Vec::new(),
        }
    }
}

/// One identity provider.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// `name`: for logs and metrics.
    pub name: String,
    /// Where answers come from.
    pub source: Source,
    /// How claims become a mail user.
    pub policy: Policy,
    /// Concurrency limit and circuit breaker for requests to this provider.
    pub guard: GuardConfig,
    /// `keep_confirmed_tokens`: while this provider is unavailable, accept a token it
    /// confirmed earlier until the token's own `exp` (never past it, never a token it
    /// refused since). Off by default: a token revoked during the outage stays usable
    /// until its `exp`, which an operator must choose knowingly.
    pub keep_confirmed_tokens: bool,
    /// What a refused OAUTHBEARER client is told (RFC 7628 §3.2.2).
    pub discovery: Discovery,
    /// What reading the configuration left for [`IssuerConfig::validate`] and
    /// [`ValidatorConfig::read_secret_files`]; empty for a built configuration.
    pub(crate) notes: KeyNotes,
}

impl IssuerConfig {
    /// An issuer with the default policy (user from `username`) and no discovery hints.
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        Self {
            name: name.into(),
            source,
            policy: Policy::with_claim(crate::DEFAULT_USERNAME_CLAIM),
            guard: GuardConfig::default(),
            keep_confirmed_tokens: false,
            discovery: Discovery::default(),
            notes: KeyNotes::default(),
        }
    }

    /// Checks every key of this issuer; the error names the first key at fault.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some((key, problem)) => Err(ConfigError::Invalid { key, problem }),
            None => Ok(()),
        }
    }

    /// The values' own rules (each part stops at its first problem).
    pub(crate) fn check_values(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::Invalid {
                key: "name",
                problem: "must not be empty".to_owned(),
            });
        }
        match &self.source {
            Source::Introspection(config) => config.validate()?,
            Source::Jwt(config) => config.validate()?,
            Source::Userinfo(config) => config.validate()?,
        }
        self.guard.validate()?;
        self.policy.validate()
    }
}

/// Where an issuer's answers come from: one variant per `kind`.
#[derive(Debug, Clone)]
pub enum Source {
    /// RFC 7662 introspection.
    Introspection(IntrospectionConfig),
    /// Local JWT validation against the issuer's JWKS.
    Jwt(JwtConfig),
    /// OpenID userinfo or Google tokeninfo, for opaque tokens without introspection.
    Userinfo(UserinfoConfig),
}

/// The `openid-configuration` and `scope` members of the RFC 7628 error challenge: the one
/// type the whole proxy uses for them, from an issuer's configuration to the challenge.
pub use sasl::Discovery;

/// A running issuer.
#[derive(Debug)]
pub(crate) struct Issuer {
    pub name: String,
    pub policy: Policy,
    pub discovery: Discovery,
    /// `keep_confirmed_tokens`.
    pub keep_confirmed: bool,
    fetcher: Fetcher,
    /// Wraps requests that go to the provider for every token (introspection, userinfo).
    /// Not JWT: its JWKS fetches are rare, rate-limited, and keep the known keys when they
    /// fail, so local checks go on while the provider is down.
    guard: Guard,
}

#[derive(Debug)]
enum Fetcher {
    Introspection {
        client: IntrospectionClient,
        issuer: Option<String>,
        audiences: Vec<String>,
    },
    /// Local validation. Answers are cached like introspection's, which saves the signature
    /// check on every login with the same token.
    Jwt(Box<JwtValidator>),
    Userinfo(UserinfoClient),
    /// A provider played by a test, asked through the same guard and checks as
    /// introspection: real HTTP cannot run under tokio's paused clock, which the tests of
    /// flapping providers need to cover minutes in milliseconds.
    #[cfg(test)]
    Scripted(Script),
}

/// A test's provider: the token in, its introspection answer (or an outage) out.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct Script(pub std::sync::Arc<Answering>);

/// What a [`Script`] runs.
#[cfg(test)]
pub(crate) type Answering =
    dyn Fn(&str) -> Result<Map<String, Value>, Unavailable> + Send + Sync + 'static;

#[cfg(test)]
impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Script")
    }
}

impl Issuer {
    pub(crate) fn new(config: IssuerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let fetcher = match config.source {
            Source::Introspection(source) => Fetcher::Introspection {
                client: IntrospectionClient::new(&source)?,
                issuer: source.issuer,
                audiences: source.audiences,
            },
            Source::Jwt(source) => Fetcher::Jwt(Box::new(JwtValidator::new(source)?)),
            Source::Userinfo(source) => Fetcher::Userinfo(UserinfoClient::new(&source)?),
        };
        Ok(Self {
            guard: Guard::new(&config.name, config.guard),
            name: config.name,
            policy: config.policy,
            discovery: config.discovery,
            keep_confirmed: config.keep_confirmed_tokens,
            fetcher,
        })
    }

    /// An issuer whose provider is `script` (see [`Fetcher::Scripted`]).
    #[cfg(test)]
    pub(crate) fn scripted(config: IssuerConfig, script: Script) -> Result<Self, ConfigError> {
        let mut issuer = Self::new(config)?;
        issuer.fetcher = Fetcher::Scripted(script);
        Ok(issuer)
    }

    /// Whether this issuer checks JWTs whose `iss` is `iss`.
    pub(crate) fn answers_for(&self, iss: &str) -> bool {
        match &self.fetcher {
            Fetcher::Jwt(validator) => validator.issuer() == iss,
            Fetcher::Introspection { issuer, .. } => issuer.as_deref() == Some(iss),
            Fetcher::Userinfo(_) => false,
            #[cfg(test)]
            Fetcher::Scripted(_) => false,
        }
    }

    /// Whether this issuer can judge a token that is not a JWT of a known issuer.
    pub(crate) fn judges_opaque_tokens(&self) -> bool {
        !matches!(self.fetcher, Fetcher::Jwt(_))
    }

    /// The circuit breaker's state, for metrics.
    pub(crate) fn circuit(&self) -> crate::guard::CircuitState {
        self.guard.state()
    }

    /// Requests refused by the guard without asking the provider.
    pub(crate) fn rejected(&self) -> u64 {
        self.guard.rejected()
    }

    /// Requests sent to this identity provider so far.
    pub(crate) fn requests(&self) -> u64 {
        match &self.fetcher {
            Fetcher::Introspection { client, .. } => client.requests(),
            Fetcher::Jwt(validator) => validator.jwks_requests(),
            Fetcher::Userinfo(client) => client.requests(),
            #[cfg(test)]
            Fetcher::Scripted(_) => 0,
        }
    }

    /// One fresh answer about `token`, or `Err` when the identity provider could not be
    /// asked.
    pub(crate) async fn fetch(
        &self,
        token: &SecretString,
        tag: &str,
    ) -> Result<Judgement, Unavailable> {
        let verified = match &self.fetcher {
            Fetcher::Introspection {
                client,
                issuer,
                audiences,
            } => {
                let answer = self.guard.run(client.introspect(token, tag)).await?;
                let rules = AnswerRules {
                    issuer: issuer.as_deref(),
                    audiences,
                };
                check_answer(&answer, rules, SystemTime::now()).map(|exp| (answer, exp))
            }
            Fetcher::Jwt(validator) => match validator.verify(token).await {
                Ok(claims) => jwt_expiry(&claims).map(|exp| (claims, exp)),
                Err(ValidationError::Invalid(reason)) => Err(reason),
                Err(ValidationError::Unavailable(why)) => return Err(why),
            },
            // The answer is normalised to look like introspection's (`active`, numeric
            // `exp`), so the same checks apply.
            Fetcher::Userinfo(client) => match self.guard.run(client.fetch(token, tag)).await? {
                Ok(claims) => check_answer(&claims, AnswerRules::default(), SystemTime::now())
                    .map(|exp| (claims, exp)),
                Err(reason) => Err(reason),
            },
            #[cfg(test)]
            Fetcher::Scripted(Script(script)) => {
                let asked = async {
                    let answer = script(secrecy::ExposeSecret::expose_secret(token))?;
                    crate::shape::introspection(&answer).map_err(|why| {
                        Unavailable::new(crate::error::UnavailableKind::BadAnswer, why)
                    })?;
                    Ok(answer)
                };
                let answer = self.guard.run(asked).await?;
                check_answer(&answer, AnswerRules::default(), SystemTime::now())
                    .map(|exp| (answer, exp))
            }
        };
        let (claims, expires_at) = match verified {
            Ok(verified) => verified,
            Err(reason @ (InvalidReason::Inactive | InvalidReason::RejectedByProvider { .. })) => {
                return Ok(Judgement::Unknown(reason))
            }
            Err(reason) => return Ok(Judgement::Refused(reason)),
        };
        Ok(match self.policy.apply(&claims) {
            Ok(found) => {
                Judgement::Accepted(Arc::new(Identity::new(found, &self.name, expires_at)))
            }
            Err(reason) => Judgement::Refused(reason),
        })
    }
}

/// What one issuer says about a token.
#[derive(Debug)]
pub(crate) enum Judgement {
    /// Valid, and the policy accepts it.
    Accepted(Arc<Identity>),
    /// The provider does not know the token (inactive, or its endpoint refused it): another
    /// issuer may.
    Unknown(InvalidReason),
    /// The provider knows the token, but it fails a check (expired, wrong audience, the
    /// policy). Final: no other issuer is asked, or a looser one could accept what this one
    /// refused.
    Refused(InvalidReason),
}

impl Judgement {
    pub(crate) fn into_outcome(self) -> Outcome {
        match self {
            Judgement::Accepted(identity) => Outcome::Valid(identity),
            Judgement::Unknown(reason) | Judgement::Refused(reason) => Outcome::Invalid(reason),
        }
    }
}

/// A verified JWT always has a numeric `exp` (jsonwebtoken demands it).
fn jwt_expiry(claims: &Map<String, Value>) -> Result<Option<SystemTime>, InvalidReason> {
    numeric_date(claims, "exp")
}

//! The keys of one identity provider's table: their names, the kinds each applies to, and the
//! builder that reads them, in whatever order the file has them, straight into the
//! validator's own types.
//!
//! Every value is read where serde stands on its key, so that a wrong type or an unknown key
//! is reported with its whole path. What depends on another key (`kind` may come last) is
//! decided once the table has been read, and reported by `validate()`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess};
use serde::Deserialize;

use crate::config::{ClientAuth, IntrospectionConfig, DEFAULT_USERNAME_CLAIM};
use crate::guard::GuardConfig;
use crate::issuer::{Discovery, IssuerConfig, Source};
use crate::jwt::JwtConfig;
use crate::policy::{Policy, ScopeKey};
use crate::userinfo::{UserinfoConfig, UserinfoRequest};

use super::KeyNotes;

/// `kind`: where an issuer's answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Kind {
    /// RFC 7662 introspection.
    Introspection,
    /// Local JWT checks against the issuer's keys.
    Jwt,
    /// OpenID userinfo or Google tokeninfo.
    Userinfo,
}

impl Kind {
    /// As written after `kind =`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Introspection => "introspection",
            Kind::Jwt => "jwt",
            Kind::Userinfo => "userinfo",
        }
    }

    /// The kind of a configured source.
    pub(crate) fn of(source: &Source) -> Self {
        match source {
            Source::Introspection(_) => Kind::Introspection,
            Source::Jwt(_) => Kind::Jwt,
            Source::Userinfo(_) => Kind::Userinfo,
        }
    }
}

/// One key of an issuer's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IssuerKey {
    Name,
    Kind,
    IntrospectionUrl,
    ClientId,
    ClientSecret,
    ClientSecretFile,
    ClientAuth,
    TokenTypeHint,
    UserinfoUrl,
    UserinfoRequest,
    Issuer,
    Audience,
    JwksUrl,
    Leeway,
    RequireTyp,
    AllowedAlgorithms,
    JwksRefetchInterval,
    HmacSecret,
    HmacSecretFile,
    UsernameClaim,
    UsernameClaims,
    UsernameDomain,
    StripDomains,
    LowercaseUsername,
    UserMap,
    AllowedClientIds,
    RequiredScope,
    ProtocolScopes,
    Timeout,
    MaxConcurrentRequests,
    FailureThreshold,
    CircuitOpenFor,
    KeepConfirmedTokens,
    OpenidConfiguration,
    ChallengeScope,
}

const ANY: &[Kind] = &[Kind::Introspection, Kind::Jwt, Kind::Userinfo];
const INTROSPECTION: &[Kind] = &[Kind::Introspection];
const JWT: &[Kind] = &[Kind::Jwt];
const USERINFO: &[Kind] = &[Kind::Userinfo];
/// `issuer` and `audience`: always checked by `jwt`, checked when present by `introspection`.
const JWT_OR_INTROSPECTION: &[Kind] = &[Kind::Jwt, Kind::Introspection];

/// Every issuer key: its name and the kinds it applies to. README's identity-provider table
/// and proxy.toml document them.
const KEYS: [(IssuerKey, &str, &[Kind]); 35] = [
    (IssuerKey::Name, "name", ANY),
    (IssuerKey::Kind, "kind", ANY),
    (
        IssuerKey::IntrospectionUrl,
        "introspection_url",
        INTROSPECTION,
    ),
    (IssuerKey::ClientId, "client_id", INTROSPECTION),
    (IssuerKey::ClientSecret, "client_secret", INTROSPECTION),
    (
        IssuerKey::ClientSecretFile,
        "client_secret_file",
        INTROSPECTION,
    ),
    (IssuerKey::ClientAuth, "client_auth", INTROSPECTION),
    (IssuerKey::TokenTypeHint, "token_type_hint", INTROSPECTION),
    (IssuerKey::UserinfoUrl, "userinfo_url", USERINFO),
    (IssuerKey::UserinfoRequest, "userinfo_request", USERINFO),
    (IssuerKey::Issuer, "issuer", JWT_OR_INTROSPECTION),
    (IssuerKey::Audience, "audience", JWT_OR_INTROSPECTION),
    (IssuerKey::JwksUrl, "jwks_url", JWT),
    (IssuerKey::Leeway, "leeway", JWT),
    (IssuerKey::RequireTyp, "require_typ", JWT),
    (IssuerKey::AllowedAlgorithms, "allowed_algorithms", JWT),
    (IssuerKey::JwksRefetchInterval, "jwks_refetch_interval", JWT),
    (IssuerKey::HmacSecret, "hmac_secret", JWT),
    (IssuerKey::HmacSecretFile, "hmac_secret_file", JWT),
    (IssuerKey::UsernameClaim, "username_claim", ANY),
    (IssuerKey::UsernameClaims, "username_claims", ANY),
    (IssuerKey::UsernameDomain, "username_domain", ANY),
    (IssuerKey::StripDomains, "strip_domains", ANY),
    (IssuerKey::LowercaseUsername, "lowercase_username", ANY),
    (IssuerKey::UserMap, "user_map", ANY),
    (IssuerKey::AllowedClientIds, "allowed_client_ids", ANY),
    (IssuerKey::RequiredScope, "required_scope", ANY),
    (IssuerKey::ProtocolScopes, "protocol_scopes", ANY),
    (IssuerKey::Timeout, "timeout", ANY),
    (
        IssuerKey::MaxConcurrentRequests,
        "max_concurrent_requests",
        ANY,
    ),
    (IssuerKey::FailureThreshold, "failure_threshold", ANY),
    (IssuerKey::CircuitOpenFor, "circuit_open_for", ANY),
    (IssuerKey::KeepConfirmedTokens, "keep_confirmed_tokens", ANY),
    (IssuerKey::OpenidConfiguration, "openid_configuration", ANY),
    (IssuerKey::ChallengeScope, "challenge_scope", ANY),
];

/// The names of [`KEYS`], for serde's "unknown field, expected one of" message.
pub(crate) const ISSUER_KEYS: [&str; KEYS.len()] = {
    let mut names = [""; KEYS.len()];
    let mut i = 0;
    while i < KEYS.len() {
        names[i] = KEYS[i].1;
        i += 1;
    }
    names
};

impl IssuerKey {
    /// The key called `name`, if there is one.
    pub(crate) fn named(name: &str) -> Option<Self> {
        KEYS.iter().find(|k| k.1 == name).map(|k| k.0)
    }

    /// As written in the file.
    pub(crate) fn name(self) -> &'static str {
        KEYS.iter().find(|k| k.0 == self).map_or("", |k| k.1)
    }

    fn applies_to(self, kind: Kind) -> bool {
        KEYS.iter()
            .find(|k| k.0 == self)
            .is_some_and(|k| k.2.contains(&kind))
    }
}

/// The secret a `*_file` key stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SecretSlot {
    /// `client_secret`, from `client_secret_file`.
    Client,
    /// `hmac_secret`, from `hmac_secret_file`.
    Hmac,
}

impl SecretSlot {
    /// The key holding the secret itself, and the key naming its file.
    pub(crate) fn keys(self) -> (IssuerKey, IssuerKey) {
        match self {
            SecretSlot::Client => (IssuerKey::ClientSecret, IssuerKey::ClientSecretFile),
            SecretSlot::Hmac => (IssuerKey::HmacSecret, IssuerKey::HmacSecretFile),
        }
    }
}

/// An issuer being read: every kind's settings are filled, since `kind` may come last.
pub(crate) struct IssuerBuilder {
    name: Option<String>,
    kind: Option<Kind>,
    /// Keys read so far, in order.
    given: Vec<IssuerKey>,
    introspection: IntrospectionConfig,
    jwt: JwtConfig,
    userinfo: UserinfoConfig,
    username_claim: Option<String>,
    username_claims: Vec<String>,
    policy: Policy,
    guard: GuardConfig,
    keep_confirmed_tokens: bool,
    discovery: Discovery,
    secret_files: Vec<(SecretSlot, PathBuf)>,
}

impl Default for IssuerBuilder {
    fn default() -> Self {
        Self {
            name: None,
            kind: None,
            given: Vec::new(),
            introspection: IntrospectionConfig::new("", "", SecretString::from("")),
            jwt: JwtConfig::new("", Vec::new()),
            userinfo: UserinfoConfig::new("", UserinfoRequest::Bearer),
            username_claim: None,
            username_claims: Vec::new(),
            policy: Policy::default(),
            guard: GuardConfig::default(),
            keep_confirmed_tokens: false,
            discovery: Discovery::default(),
            secret_files: Vec::new(),
        }
    }
}

/// A finished issuer, and whether its table gave it a `name` (else its place decides one).
pub(crate) struct Built {
    pub config: IssuerConfig,
    pub named: bool,
}

impl IssuerBuilder {
    /// The keys read so far.
    pub(crate) fn given(&self) -> &[IssuerKey] {
        &self.given
    }

    /// Reads the value of `key`, where the map stands.
    pub(crate) fn read<'de, A: MapAccess<'de>>(
        &mut self,
        key: IssuerKey,
        map: &mut A,
    ) -> Result<(), A::Error> {
        use IssuerKey as K;
        if !self.given.contains(&key) {
            self.given.push(key);
        }
        match key {
            K::Name => self.name = Some(map.next_value()?),
            K::Kind => self.kind = Some(map.next_value()?),
            K::IntrospectionUrl => self.introspection.introspection_url = map.next_value()?,
            K::ClientId => self.introspection.client_id = map.next_value()?,
            K::ClientSecret => {
                self.refuse_both(SecretSlot::Client, map)?;
                self.introspection.client_secret = map.next_value::<String>()?.into();
            }
            K::ClientSecretFile => self.secret_file(SecretSlot::Client, map)?,
            K::ClientAuth => self.introspection.client_auth = map.next_value::<ClientAuth>()?,
            K::TokenTypeHint => {
                let hint: String = map.next_value()?;
                self.introspection.token_type_hint = Some(hint).filter(|h| !h.is_empty());
            }
            K::UserinfoUrl => self.userinfo.url = map.next_value()?,
            K::UserinfoRequest => self.userinfo.request = map.next_value()?,
            K::Issuer => {
                let issuer: String = map.next_value()?;
                self.introspection.issuer = Some(issuer.clone());
                self.jwt.issuer = issuer;
            }
            K::Audience => {
                let audiences: Vec<String> = map.next_value()?;
                self.introspection.audiences.clone_from(&audiences);
                self.jwt.audiences = audiences;
            }
            K::JwksUrl => self.jwt.jwks_url = Some(map.next_value()?),
            K::Leeway => self.jwt.leeway = map.next_value::<HumanDuration>()?.0,
            K::RequireTyp => self.jwt.require_typ = Some(map.next_value()?),
            K::AllowedAlgorithms => {
                // `[]` keeps the default list, as leaving the key out does.
                let algorithms: Vec<String> = map.next_value()?;
                if !algorithms.is_empty() {
                    self.jwt.allowed_algorithms = algorithms;
                }
            }
            K::JwksRefetchInterval => {
                self.jwt.jwks_refetch_interval = map.next_value::<HumanDuration>()?.0;
            }
            K::HmacSecret => {
                self.refuse_both(SecretSlot::Hmac, map)?;
                self.jwt.hmac_secret = Some(map.next_value::<String>()?.into());
            }
            K::HmacSecretFile => self.secret_file(SecretSlot::Hmac, map)?,
            K::UsernameClaim => self.username_claim = Some(map.next_value()?),
            K::UsernameClaims => self.username_claims = map.next_value()?,
            K::UsernameDomain => self.policy.username_domain = Some(map.next_value()?),
            K::StripDomains => self.policy.strip_domains = map.next_value()?,
            K::LowercaseUsername => self.policy.lowercase_username = map.next_value()?,
            K::UserMap => self.policy.user_map = map.next_value()?,
            K::AllowedClientIds => self.policy.allowed_client_ids = map.next_value()?,
            K::RequiredScope => {
                let scopes: String = map.next_value()?;
                self.policy.required_scopes = IntrospectionConfig::parse_scopes(&scopes);
            }
            K::ProtocolScopes => {
                let scopes: BTreeMap<ScopeKey, String> = map.next_value()?;
                self.policy.protocol_scopes = scopes
                    .into_iter()
                    .map(|(key, list)| (key, IntrospectionConfig::parse_scopes(&list)))
                    .collect();
            }
            K::Timeout => {
                let timeout = map.next_value::<HumanDuration>()?.0;
                self.introspection.timeout = timeout;
                self.jwt.timeout = timeout;
                self.userinfo.timeout = timeout;
                // Waiting for a free slot costs a login no more than one more request would.
                self.guard.queue_timeout = timeout;
            }
            K::MaxConcurrentRequests => self.guard.max_concurrent = map.next_value()?,
            K::FailureThreshold => self.guard.failure_threshold = map.next_value()?,
            K::CircuitOpenFor => self.guard.open_for = map.next_value::<HumanDuration>()?.0,
            K::KeepConfirmedTokens => self.keep_confirmed_tokens = map.next_value()?,
            K::OpenidConfiguration => {
                self.discovery.openid_configuration = Some(map.next_value()?);
            }
            K::ChallengeScope => self.discovery.scope = Some(map.next_value()?),
        }
        Ok(())
    }

    fn secret_file<'de, A: MapAccess<'de>>(
        &mut self,
        slot: SecretSlot,
        map: &mut A,
    ) -> Result<(), A::Error> {
        self.refuse_both(slot, map)?;
        let path: PathBuf = map.next_value()?;
        self.secret_files.push((slot, path));
        Ok(())
    }

    /// A secret and its file both given: refused at the second of the two keys.
    fn refuse_both<'de, A: MapAccess<'de>>(
        &self,
        slot: SecretSlot,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let (secret, file) = slot.keys();
        if self.given.contains(&secret) && self.given.contains(&file) {
            let message = format!("give {} or {}, not both", secret.name(), file.name());
            return map.next_value_seed(Refuse::Custom(message));
        }
        Ok(())
    }

    /// The issuer, once its whole table has been read.
    pub(crate) fn finish<E: de::Error>(self) -> Result<Built, E> {
        let kind = self.kind.ok_or_else(|| E::missing_field("kind"))?;
        let source = match kind {
            Kind::Introspection => Source::Introspection(self.introspection),
            Kind::Jwt => Source::Jwt(self.jwt),
            Kind::Userinfo => Source::Userinfo(self.userinfo),
        };
        let mut policy = self.policy;
        policy.username_claims = if self.username_claims.is_empty() {
            vec![self
                .username_claim
                .unwrap_or_else(|| DEFAULT_USERNAME_CLAIM.to_owned())]
        } else {
            self.username_claims
        };
        // Both mechanisms' error challenges name a scope, like Google's XOAUTH2 one:
        // `challenge_scope`, else the scopes every token needs.
        let mut discovery = self.discovery;
        if discovery.scope.is_none() && !policy.required_scopes.is_empty() {
            discovery.scope = Some(policy.required_scopes.join(" "));
        }
        let notes = KeyNotes {
            foreign: self
                .given
                .iter()
                .filter(|key| !key.applies_to(kind))
                .map(|key| key.name())
                .collect(),
            secret_files: self
                .secret_files
                .into_iter()
                .filter(|(slot, _)| slot.keys().1.applies_to(kind))
                .collect(),
        };
        let config = IssuerConfig {
            name: self.name.clone().unwrap_or_default(),
            source,
            policy,
            guard: self.guard,
            keep_confirmed_tokens: self.keep_confirmed_tokens,
            discovery,
            notes,
        };
        Ok(Built {
            config,
            named: self.name.is_some(),
        })
    }
}

/// A refusal raised while serde stands on a key, so that the error's path ends in that key.
pub(crate) enum Refuse {
    /// Not a key of this table.
    Unknown {
        key: String,
        expected: &'static [&'static str],
    },
    /// A key that cannot be used here.
    Custom(String),
}

impl<'de> DeserializeSeed<'de> for Refuse {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, _value: D) -> Result<(), D::Error> {
        Err(match self {
            Refuse::Unknown { key, expected } => de::Error::unknown_field(&key, expected),
            Refuse::Custom(message) => de::Error::custom(message),
        })
    }
}

/// A duration written as `"5s"`, `"10m"`, `"1h 30m"`.
pub(crate) struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "`{text}` is not a duration like \"5s\" or \"10m\" ({e})"
                ))
            })
    }
}

//! From a token's verified claims to the mail user: which claim names the user, how it is
//! normalised and mapped, and which clients and scopes are acceptable.
//!
//! The same policy applies whatever the claims came from (introspection, a JWT, userinfo),
//! so an admin who moves from one kind of validation to another keeps the same rules.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::is_scope_token_byte;
use crate::error::{invalid, ConfigError, InvalidReason};

/// What a token must show, and how its user becomes a mail login.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `username_claim(s)`: tried in order; the first present as a string names the user.
    pub username_claims: Vec<String>,
    /// `username_domain`: appended as `@domain` to a user without one, for providers whose
    /// user claim is a bare name while the mail server logs in by address.
    pub username_domain: Option<String>,
    /// `strip_domains`: `@domain` suffixes removed (ASCII case ignored). Only these: stripping
    /// any domain would turn `alice@elsewhere.example` into the local `alice`.
    pub strip_domains: Vec<String>,
    /// `lowercase_username`: lower-case the user's ASCII letters (after the domain rules).
    pub lowercase_username: bool,
    /// `allowed_client_ids`: when not empty, the token's `client_id` (or, without one, its
    /// `azp`) must be one of these: tokens issued to other applications are refused.
    pub allowed_client_ids: Vec<String>,
    /// `required_scope`: scopes every token must carry, whatever the protocol.
    pub required_scopes: Vec<String>,
    /// `protocol_scopes`: further scopes a login needs, by what it is for (the proxy: one key
    /// per protocol), e.g. a send scope for submission only.
    pub protocol_scopes: BTreeMap<ScopeKey, Vec<String>>,
    /// `user_map`: token user (after normalisation) → backend login, for mailboxes whose
    /// login differs from the identity provider's name for the person.
    pub user_map: HashMap<String, String>,
}

/// What the further scopes of `protocol_scopes` are keyed by: a name the application chooses
/// for a kind of login (the proxy names its protocols), opaque to the validator. Build it once
/// (per listener, say) and pass it to [`crate::Validator::validate_for`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(transparent)]
pub struct ScopeKey(String);

impl ScopeKey {
    /// The key named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self(name.into())
    }

    /// The name, as written in `protocol_scopes`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ScopeKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The user found in a token, before and after the policy's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyUser {
    pub user: String,
    pub claim: String,
    pub backend_user: String,
    pub scopes: Vec<String>,
    pub client_id: Option<String>,
    pub audiences: Vec<String>,
}

impl Policy {
    /// A policy that takes the user from `claim` and demands nothing else.
    pub fn with_claim(claim: impl Into<String>) -> Self {
        Self {
            username_claims: vec![claim.into()],
            ..Self::default()
        }
    }

    /// Checks every key; errors name it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.username_claims.is_empty() || self.username_claims.iter().any(String::is_empty) {
            return Err(invalid(
                "username_claim",
                "needs at least one non-empty claim",
            ));
        }
        check_scopes("required_scope", &self.required_scopes)?;
        // Which keys mean something is the application's business (the proxy checks that
        // each names a protocol); a key nobody asks for is never used.
        for scopes in self.protocol_scopes.values() {
            check_scopes("protocol_scopes", scopes)?;
        }
        let domains = self.username_domain.iter().chain(&self.strip_domains);
        if let Some(bad) = domains.clone().find(|d| !is_domain(d)) {
            let key = if self.username_domain.as_ref() == Some(bad) {
                "username_domain"
            } else {
                "strip_domains"
            };
            return Err(invalid(
                key,
                format!("{bad:?} is not a domain (no @, no spaces)"),
            ));
        }
        if let Some(key) = self.user_map.keys().find(|k| self.normalise(k) != **k) {
            return Err(invalid(
                "user_map",
                format!(
                    "key {key:?} can never match: users are compared after the domain and case \
                     rules, which make it {:?}",
                    self.normalise(key)
                ),
            ));
        }
        if self.allowed_client_ids.iter().any(String::is_empty) {
            return Err(invalid("allowed_client_ids", "must not contain \"\""));
        }
        if let Some((from, _)) = self
            .user_map
            .iter()
            .find(|(from, to)| from.is_empty() || to.is_empty() || has_control(to))
        {
            return Err(invalid(
                "user_map",
                format!("entry {from:?} needs a non-empty user on both sides"),
            ));
        }
        Ok(())
    }

    /// Applies the policy to verified claims.
    pub(crate) fn apply(&self, claims: &Map<String, Value>) -> Result<PolicyUser, InvalidReason> {
        let (claim, raw) = self
            .username_claims
            .iter()
            .find_map(|c| match claims.get(c.as_str()) {
                Some(Value::String(user)) => Some((c, user.as_str())),
                _ => None,
            })
            .ok_or_else(|| InvalidReason::NoUserClaim {
                claim: self.username_claims.join(","),
            })?;
        let malformed = |problem| InvalidReason::Malformed {
            claim: claim.clone(),
            problem,
        };
        if raw.is_empty() {
            return Err(malformed("is empty"));
        }
        if has_control(raw) {
            return Err(malformed("contains control characters"));
        }
        let user = self.normalise(raw);

        let clients = clients_of(claims)?;
        if !self.allowed_client_ids.is_empty() {
            // Every client the token names must be allowed: a provider that lets applications
            // add claims could otherwise carry an allowed `client_id` beside a foreign `azp`.
            let foreign = clients
                .iter()
                .find(|id| !self.allowed_client_ids.contains(id));
            if clients.is_empty() || foreign.is_some() {
                return Err(InvalidReason::ClientNotAllowed {
                    client_id: foreign.cloned().unwrap_or_default(),
                });
            }
        }
        let client_id = clients.into_iter().next();

        // An address the provider has not verified is anyone's to claim.
        if claim == "email"
            && matches!(claims.get("email_verified"), Some(v) if v != &Value::Bool(true))
        {
            return Err(InvalidReason::EmailNotVerified);
        }

        let scopes = scopes_of(claims)?;
        missing_scope(&scopes, &self.required_scopes)?;
        let audiences = audiences_of(claims)?;

        let backend_user = self.user_map.get(&user).unwrap_or(&user).clone();
        Ok(PolicyUser {
            user,
            claim: claim.clone(),
            backend_user,
            scopes,
            client_id,
            audiences,
        })
    }

    /// The scopes a login keyed `key` needs beyond `required_scope`.
    pub(crate) fn check_protocol(
        &self,
        key: &ScopeKey,
        scopes: &[String],
    ) -> Result<(), InvalidReason> {
        match self.protocol_scopes.get(key) {
            Some(required) => missing_scope(scopes, required),
            None => Ok(()),
        }
    }

    /// The domain and case rules, as applied to the token's user; also applied to the user a
    /// client claims, so that `alice@example.org` matches a token user stripped to `alice`.
    pub fn normalise(&self, raw: &str) -> String {
        let mut user = raw.to_owned();
        for domain in &self.strip_domains {
            if let Some(at) = user.rfind('@') {
                if user[at + 1..].eq_ignore_ascii_case(domain) {
                    user.truncate(at);
                    break;
                }
            }
        }
        if let Some(domain) = &self.username_domain {
            if !user.contains('@') {
                user = format!("{user}@{domain}");
            }
        }
        if self.lowercase_username {
            // ASCII only: Unicode case folding maps e.g. the Kelvin sign to `k`, which would
            // let a non-ASCII name at the provider collide with an ASCII mailbox.
            user.make_ascii_lowercase();
        }
        user
    }
}

fn missing_scope(scopes: &[String], required: &[String]) -> Result<(), InvalidReason> {
    match required.iter().find(|r| !scopes.contains(r)) {
        Some(scope) => Err(InvalidReason::MissingScope {
            scope: scope.clone(),
        }),
        None => Ok(()),
    }
}

/// The OAuth clients the token names: `client_id` (RFC 7662, RFC 9068) first, then the
/// OpenID `azp` (Keycloak, Google, Entra ID v2 put the client there) when it differs.
fn clients_of(claims: &Map<String, Value>) -> Result<Vec<String>, InvalidReason> {
    let mut clients = Vec::new();
    for claim in ["client_id", "azp"] {
        match claims.get(claim) {
            None | Some(Value::Null) => {}
            Some(Value::String(id)) if clients.contains(id) => {}
            Some(Value::String(id)) => clients.push(id.clone()),
            Some(_) => {
                return Err(InvalidReason::Malformed {
                    claim: claim.to_owned(),
                    problem: "is not a string",
                })
            }
        }
    }
    Ok(clients)
}

/// The token's scopes: `scope` as a space-separated string (RFC 6749, RFC 7662, RFC 9068),
/// else `scp` as a string (Entra ID) or an array of strings (Okta).
pub(crate) fn scopes_of(claims: &Map<String, Value>) -> Result<Vec<String>, InvalidReason> {
    let split = |s: &str| {
        s.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let malformed = |claim: &str, problem| InvalidReason::Malformed {
        claim: claim.to_owned(),
        problem,
    };
    match claims.get("scope") {
        Some(Value::String(scope)) => return Ok(split(scope)),
        None | Some(Value::Null) => {}
        Some(_) => return Err(malformed("scope", "is not a string")),
    }
    match claims.get("scp") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(scp)) => Ok(split(scp)),
        Some(Value::Array(scp)) => scp
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                _ => Err(malformed("scp", "is not an array of strings")),
            })
            .collect(),
        Some(_) => Err(malformed("scp", "is not a string or an array")),
    }
}

/// The token's audiences: `aud` as a string or an array of strings (RFC 7519 §4.1.3, RFC
/// 7662 §2.2). Anything else is malformed: read as "no audience" it would lift a restriction
/// the issuer meant (RFC 8707 resource indicators, checked per protocol by the proxy).
pub(crate) fn audiences_of(claims: &Map<String, Value>) -> Result<Vec<String>, InvalidReason> {
    let malformed = || InvalidReason::Malformed {
        claim: "aud".to_owned(),
        problem: "is not a string or an array of strings",
    };
    match claims.get("aud") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud.clone()]),
        Some(Value::Array(list)) => list
            .iter()
            .map(|aud| aud.as_str().map(str::to_owned).ok_or_else(malformed))
            .collect(),
        Some(_) => Err(malformed()),
    }
}

fn has_control(s: &str) -> bool {
    s.chars().any(char::is_control)
}

fn is_domain(d: &str) -> bool {
    !d.is_empty() && !d.contains('@') && !d.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_scopes(key: &'static str, scopes: &[String]) -> Result<(), ConfigError> {
    match scopes
        .iter()
        .find(|s| s.is_empty() || !s.bytes().all(is_scope_token_byte))
    {
        // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        Some(bad) => Err(invalid(
            key,
            format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
        )),
        None => Ok(()),
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("username_claims", &self.username_claims)
            .field("username_domain", &self.username_domain)
            .field("strip_domains", &self.strip_domains)
            .field("lowercase_username", &self.lowercase_username)
            .field("allowed_client_ids", &self.allowed_client_ids)
            .field("required_scopes", &self.required_scopes)
            .field("protocol_scopes", &self.protocol_scopes)
            .field("user_map_entries", &self.user_map.len())
            .finish()
    }
}

#[cfg(test)]
mod tests;

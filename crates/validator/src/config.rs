//! `[validator]` settings for `kind = "introspection"`.
//!
//! Read from the issuer's table (see `load`); [`IntrospectionConfig::validate`] checks the
//! cross-field rules and names the key at fault.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::error::{invalid, ConfigError};

/// Default for `username_claim`: RFC 7662 §2.2 `username`.
pub const DEFAULT_USERNAME_CLAIM: &str = "username";
/// Default for `cache_max_ttl`: five minutes bounds revocation latency (RFC 7662 §4).
pub const DEFAULT_CACHE_MAX_TTL: Duration = Duration::from_secs(5 * 60);
/// Default for `negative_cache_ttl`: ten seconds blunts token guessing without making a
/// freshly issued token wait long.
pub const DEFAULT_NEGATIVE_CACHE_TTL: Duration = Duration::from_secs(10);
/// Default for `timeout`: five seconds for the whole introspection request, well inside the
/// patience of mail clients.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cache capacity in entries (about 100 000 concurrent users' tokens).
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;
/// Default for `token_type_hint`: the proxy only ever sees access tokens.
pub const DEFAULT_TOKEN_TYPE_HINT: &str = "access_token";

/// How the proxy authenticates itself to the introspection endpoint (RFC 7662 §2.1 demands
/// some authorisation; RFC 6749 §2.3.1 names the two client-secret forms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the URL-encoded id and secret. The default,
    /// and what every provider supports.
    #[default]
    #[serde(rename = "client_secret_basic")]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    #[serde(rename = "client_secret_post")]
    Post,
    /// `Authorization: Bearer <client_secret>`: an endpoint protected by a bearer token of
    /// its own (RFC 7662 §2.1 allows it; some gateways use it).
    #[serde(rename = "bearer")]
    Bearer,
}

/// How to reach an RFC 7662 introspection endpoint and what to demand of its answers
/// beyond `active`.
#[derive(Clone)]
pub struct IntrospectionConfig {
    /// `introspection_url`: the endpoint. `https` in production; plain `http` is accepted
    /// only towards a loopback address (tests, a sidecar), since the token travels in the
    /// request body.
    pub introspection_url: String,
    /// `client_id`: our client identifier (unused for [`ClientAuth::Bearer`]).
    pub client_id: String,
    /// `client_secret` (or `client_secret_file`): our client secret, or the bearer token
    /// for [`ClientAuth::Bearer`]. Never logged.
    pub client_secret: SecretString,
    /// `client_auth`: how the id and secret are presented.
    pub client_auth: ClientAuth,
    /// `token_type_hint`: sent with each request (RFC 7662 §2.1); `None` sends none.
    pub token_type_hint: Option<String>,
    /// `issuer`: when set, an `iss` in the answer must equal it.
    pub issuer: Option<String>,
    /// `audience`: when not empty, an `aud` in the answer must name one of these.
    pub audiences: Vec<String>,
    /// `timeout`: limit for one whole introspection request (connect, send, read the body).
    pub timeout: Duration,
}

impl IntrospectionConfig {
    /// A configuration with the defaults for every optional key.
    pub fn new(
        introspection_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self {
            introspection_url: introspection_url.into(),
            client_id: client_id.into(),
            client_secret,
            client_auth: ClientAuth::Basic,
            token_type_hint: Some(DEFAULT_TOKEN_TYPE_HINT.to_owned()),
            issuer: None,
            audiences: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Splits a space-separated scope list (`""` means none).
    pub fn parse_scopes(required_scope: &str) -> Vec<String> {
        required_scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks every key and the rules between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_url_key("introspection_url", &self.introspection_url)?;
        if self.client_id.is_empty() && self.client_auth != ClientAuth::Bearer {
            return Err(invalid("client_id", "must not be empty"));
        }
        if self.token_type_hint.as_deref() == Some("") {
            return Err(invalid(
                "token_type_hint",
                "must not be empty (leave it out to send none)",
            ));
        }
        if self.issuer.as_deref() == Some("") {
            return Err(invalid("issuer", "must not be empty"));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(invalid("audience", "must not contain \"\""));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero"));
        }
        Ok(())
    }
}

/// `scope-token` characters of RFC 6749 §3.3.
pub(crate) fn is_scope_token_byte(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

pub(crate) fn validate_url_key(key: &'static str, raw: &str) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(key, format!("not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            key,
            "must not carry credentials; use client_id and client_secret",
        ));
    }
    let host = url.host_str().ok_or_else(|| invalid(key, "has no host"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(host) => Ok(()),
        "http" => Err(invalid(
            key,
            "plain http is allowed only to a loopback address; the token would cross the network in clear",
        )),
        other => Err(invalid(key, format!("scheme {other:?} is not http(s)"))),
    }
}

fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("client_auth", &self.client_auth)
            .field("token_type_hint", &self.token_type_hint)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> IntrospectionConfig {
        IntrospectionConfig::new(url, "bearergate", SecretString::from("s3cr3t-value"))
    }

    #[test]
    fn defaults() {
        let c = config("https://idp.example/introspect");
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.client_auth, ClientAuth::Basic);
        assert_eq!(c.token_type_hint.as_deref(), Some("access_token"));
        assert_eq!(c.validate(), Ok(()));

        let mut bearer = config("https://idp.example/introspect");
        bearer.client_auth = ClientAuth::Bearer;
        bearer.client_id.clear();
        assert_eq!(bearer.validate(), Ok(()), "bearer auth needs no client_id");
    }

    #[test]
    fn debug_redacts_secret() {
        let text = format!("{:?}", config("https://idp.example/introspect"));
        assert!(!text.contains("s3cr3t-value"), "{text}");
        assert!(text.contains("[REDACTED]"));
        assert!(text.contains("bearergate"));
    }

    #[test]
    fn parse_scopes_splits_on_spaces() {
        assert!(IntrospectionConfig::parse_scopes("").is_empty());
        assert!(IntrospectionConfig::parse_scopes("   ").is_empty());
        assert_eq!(
            IntrospectionConfig::parse_scopes(" mail  offline_access"),
            vec!["mail".to_owned(), "offline_access".to_owned()]
        );
    }

    #[test]
    fn url_rules() {
        let ok = [
            "https://idp.example/introspect",
            "http://127.0.0.1:8080/introspect",
            "http://localhost/introspect",
            "http://[::1]:9000/i",
        ];
        for url in ok {
            assert_eq!(config(url).validate(), Ok(()), "{url}");
        }
        let bad = [
            "idp.example/introspect",
            "http://idp.example/introspect",
            "http://10.0.0.1/introspect",
            "ftp://idp.example/x",
            "https://user:pw@idp.example/introspect",
        ];
        for url in bad {
            match config(url).validate() {
                Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "introspection_url"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_key() {
        let mut c = config("https://idp.example/introspect");
        c.timeout = Duration::ZERO;
        let err = c.validate().unwrap_err();
        assert!(err.to_string().starts_with("validator.timeout:"), "{err}");

        let mut c = config("https://idp.example/introspect");
        c.client_id.clear();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "client_id",
                ..
            })
        ));

        let mut c = config("https://idp.example/introspect");
        c.token_type_hint = Some(String::new());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "token_type_hint",
                ..
            })
        ));
    }
}

//! `[validator]` settings for `kind = "introspection"`.
//!
//! The proxy reads `proxy.toml` and fills [`IntrospectionConfig`]; [`IntrospectionConfig::validate`]
//! checks the cross-field rules and names the key at fault.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::error::ConfigError;

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

/// How to reach an RFC 7662 introspection endpoint and what to demand of its answers.
#[derive(Clone)]
pub struct IntrospectionConfig {
    /// `introspection_url`: the endpoint. `https` in production; plain `http` is accepted
    /// only towards a loopback address (tests, a sidecar), since the token travels in the
    /// request body.
    pub introspection_url: String,
    /// `client_id`: our client identifier for HTTP Basic authentication (RFC 6749 §2.3.1).
    pub client_id: String,
    /// `client_secret` (or `client_secret_file`): our client secret. Never logged.
    pub client_secret: SecretString,
    /// `username_claim`: the response member naming the mail user; must be a non-empty string.
    pub username_claim: String,
    /// `required_scope`, split on spaces: every one must be among the token's `scope`.
    pub required_scopes: Vec<String>,
    /// `cache_max_ttl`: longest a positive answer is cached; never beyond the token's `exp`.
    /// `Duration::ZERO` disables positive caching.
    pub cache_max_ttl: Duration,
    /// `negative_cache_ttl`: how long a rejected token stays rejected without asking again.
    /// `Duration::ZERO` disables negative caching.
    pub negative_cache_ttl: Duration,
    /// `timeout`: limit for one whole introspection request (connect, send, read the body).
    pub timeout: Duration,
    /// Maximum number of cached answers (positive and negative together).
    pub cache_capacity: u64,
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
            username_claim: DEFAULT_USERNAME_CLAIM.to_owned(),
            required_scopes: Vec::new(),
            cache_max_ttl: DEFAULT_CACHE_MAX_TTL,
            negative_cache_ttl: DEFAULT_NEGATIVE_CACHE_TTL,
            timeout: DEFAULT_TIMEOUT,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// Splits the `required_scope` key's value (space-separated; `""` means none) into
    /// [`IntrospectionConfig::required_scopes`].
    pub fn parse_scopes(required_scope: &str) -> Vec<String> {
        required_scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks every key and the rules between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_url(&self.introspection_url)?;
        if self.client_id.is_empty() {
            return Err(invalid("client_id", "must not be empty"));
        }
        if self.username_claim.is_empty() {
            return Err(invalid("username_claim", "must not be empty"));
        }
        if let Some(bad) = self
            .required_scopes
            .iter()
            .find(|s| s.is_empty() || !s.bytes().all(is_scope_token_byte))
        {
            // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            return Err(invalid(
                "required_scope",
                format!("{bad:?} is not a valid scope token (RFC 6749 §3.3)"),
            ));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero"));
        }
        if self.cache_capacity == 0 {
            return Err(invalid(
                "cache_capacity",
                "must be at least 1 (set cache_max_ttl and negative_cache_ttl to 0 to disable caching)",
            ));
        }
        Ok(())
    }
}

/// `scope-token` characters of RFC 6749 §3.3.
pub(crate) fn is_scope_token_byte(b: u8) -> bool {
    b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b)
}

fn validate_url(raw: &str) -> Result<(), ConfigError> {
    validate_url_key("introspection_url", raw)
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

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

impl fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("introspection_url", &self.introspection_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .field("username_claim", &self.username_claim)
            .field("required_scopes", &self.required_scopes)
            .field("cache_max_ttl", &self.cache_max_ttl)
            .field("negative_cache_ttl", &self.negative_cache_ttl)
            .field("timeout", &self.timeout)
            .field("cache_capacity", &self.cache_capacity)
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
        assert_eq!(c.username_claim, "username");
        assert_eq!(c.cache_max_ttl, Duration::from_secs(300));
        assert_eq!(c.negative_cache_ttl, Duration::from_secs(10));
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.cache_capacity, 100_000);
        assert!(c.required_scopes.is_empty());
        assert_eq!(c.validate(), Ok(()));
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
        c.required_scopes = vec!["ma\"il".to_owned()];
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "required_scope",
                ..
            })
        ));

        let mut c = config("https://idp.example/introspect");
        c.cache_capacity = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "cache_capacity",
                ..
            })
        ));
    }
}

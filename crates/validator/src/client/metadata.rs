//! The issuer's metadata (RFC 8414, or OpenID Connect Discovery 1.0): where its endpoints
//! are, read from the document the issuer publishes, never guessed.
//!
//! RFC 8414 §3.3: the `issuer` in the document must be the issuer it was fetched for, or
//! the document must not be used (an attacker's document could otherwise send our refresh
//! token elsewhere). Every endpoint must be `https`, or `http` on a loopback address for
//! tests and local issuers, so that no token ever crosses a network in clear text.

use reqwest::Url;
use serde_json::{Map, Value};

use super::error::RequestError;

/// RFC 8414 §3: the well-known suffix of the authorization server metadata.
pub const OAUTH_WELL_KNOWN: &str = "/.well-known/oauth-authorization-server";
/// OpenID Connect Discovery 1.0 §4: the well-known suffix of the provider configuration.
pub const OPENID_WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// What bearergate needs from an issuer's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMetadata {
    /// The issuer identifier, exactly as in the document.
    pub issuer: String,
    /// RFC 6749 §3.1, for the code flow.
    pub authorization_endpoint: Option<Url>,
    /// RFC 6749 §3.2.
    pub token_endpoint: Url,
    /// RFC 8628 §4.
    pub device_authorization_endpoint: Option<Url>,
    /// RFC 7009 (RFC 8414 §2).
    pub revocation_endpoint: Option<Url>,
    /// RFC 8414 §2; empty when the document does not say.
    pub code_challenge_methods_supported: Vec<String>,
    /// RFC 8414 §2; empty when the document does not say (then `client_secret_basic`).
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// RFC 9207 §3: the authorization response carries `iss`.
    pub authorization_response_iss_parameter_supported: bool,
}

impl ServerMetadata {
    /// Whether the issuer supports PKCE with S256, or does not say (many issuers that do
    /// support it leave `code_challenge_methods_supported` out).
    pub fn allows_s256(&self) -> bool {
        self.code_challenge_methods_supported.is_empty()
            || self
                .code_challenge_methods_supported
                .iter()
                .any(|m| m == "S256")
    }
}

/// The metadata URLs to try for `issuer`, in order: RFC 8414 §3.1 (the well-known part
/// goes between the host and any path), then OpenID Discovery (appended to the issuer).
pub fn well_known_urls(issuer: &str) -> Result<Vec<Url>, RequestError> {
    let url = issuer_url(issuer)?;
    let path = url.path().trim_end_matches('/');
    let origin = url.origin().ascii_serialization();
    let oauth = format!("{origin}{OAUTH_WELL_KNOWN}{path}");
    let openid = format!("{origin}{path}{OPENID_WELL_KNOWN}");
    [oauth, openid]
        .iter()
        .map(|raw| {
            Url::parse(raw).map_err(|e| RequestError::Setup(format!("metadata URL {raw}: {e}")))
        })
        .collect()
}

/// The issuer identifier as a URL: `https` (or loopback `http`), no query or fragment
/// (RFC 8414 §2).
pub fn issuer_url(issuer: &str) -> Result<Url, RequestError> {
    let url = Url::parse(issuer)
        .map_err(|e| RequestError::Setup(format!("issuer {issuer:?} is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(RequestError::Setup(format!(
            "issuer {issuer:?} must not have a query or fragment (RFC 8414 §2)"
        )));
    }
    check_transport(&url, "issuer").map_err(RequestError::Setup)?;
    Ok(url)
}

/// Whether tokens may be sent to `url`: `https`, or `http` to a loopback address.
pub fn check_transport(url: &Url, what: &str) -> Result<(), String> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(format!(
            "{what} {url} is neither https nor http on a loopback address"
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Reads a metadata document fetched for `issuer`. A trailing `/` the user typed is
/// forgiven; any other difference between `issuer` and the document's `issuer` refuses it.
pub fn parse(issuer: &str, document: &Map<String, Value>) -> Result<ServerMetadata, RequestError> {
    let bad = |detail: String| RequestError::server(Some(200), detail);
    let named = document
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the metadata document has no issuer".to_owned()))?;
    if named != issuer && named != issuer.trim_end_matches('/') {
        return Err(RequestError::Setup(format!(
            "the metadata document names the issuer {:?}, not {issuer:?} (RFC 8414 §3.3); \
             use exactly the issuer it names if you trust it",
            super::error::printable(named, 200)
        )));
    }
    let endpoint = |name: &str| -> Result<Option<Url>, RequestError> {
        let Some(value) = document.get(name) else {
            return Ok(None);
        };
        let raw = value
            .as_str()
            .ok_or_else(|| bad(format!("metadata {name} is not a string")))?;
        let url = Url::parse(raw).map_err(|e| bad(format!("metadata {name} is not a URL: {e}")))?;
        check_transport(&url, name).map_err(bad)?;
        if url.fragment().is_some() {
            return Err(bad(format!("metadata {name} has a fragment")));
        }
        Ok(Some(url))
    };
    let strings = |name: &str| -> Vec<String> {
        document
            .get(name)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let token_endpoint = endpoint("token_endpoint")?
        .ok_or_else(|| bad("the metadata document has no token_endpoint".to_owned()))?;
    Ok(ServerMetadata {
        issuer: named.to_owned(),
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint,
        device_authorization_endpoint: endpoint("device_authorization_endpoint")?,
        revocation_endpoint: endpoint("revocation_endpoint")?,
        code_challenge_methods_supported: strings("code_challenge_methods_supported"),
        token_endpoint_auth_methods_supported: strings("token_endpoint_auth_methods_supported"),
        authorization_response_iss_parameter_supported: document
            .get("authorization_response_iss_parameter_supported")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test documents are objects"),
        }
    }

    #[test]
    fn well_known_urls_follow_rfc_8414_then_openid() {
        let table = [
            (
                "https://mail.example.test",
                [
                    "https://mail.example.test/.well-known/oauth-authorization-server",
                    "https://mail.example.test/.well-known/openid-configuration",
                ],
            ),
            (
                "https://login.example.test/tenant/v2.0",
                [
                    "https://login.example.test/.well-known/oauth-authorization-server/tenant/v2.0",
                    "https://login.example.test/tenant/v2.0/.well-known/openid-configuration",
                ],
            ),
            (
                "http://127.0.0.1:8443/",
                [
                    "http://127.0.0.1:8443/.well-known/oauth-authorization-server",
                    "http://127.0.0.1:8443/.well-known/openid-configuration",
                ],
            ),
        ];
        for (issuer, want) in table {
            let urls = well_known_urls(issuer).unwrap();
            let got: Vec<&str> = urls.iter().map(Url::as_str).collect();
            assert_eq!(got, want, "{issuer}");
        }
    }

    #[test]
    fn cleartext_issuers_only_on_loopback() {
        assert!(issuer_url("http://127.0.0.1:1/").is_ok());
        assert!(issuer_url("http://[::1]:1").is_ok());
        assert!(issuer_url("http://localhost:1").is_ok());
        assert!(issuer_url("http://mail.example.test").is_err());
        assert!(issuer_url("ftp://mail.example.test").is_err());
        assert!(issuer_url("https://mail.example.test/?tenant=1").is_err());
        assert!(issuer_url("mail.example.test").is_err());
    }

    #[test]
    fn document_must_name_the_issuer() {
        let doc = object(json!({
            "issuer": "https://mail.example.test",
            "token_endpoint": "https://mail.example.test/auth/token",
            "device_authorization_endpoint": "https://mail.example.test/auth/device",
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": true,
        }));
        let meta = parse("https://mail.example.test/", &doc).unwrap();
        assert_eq!(meta.issuer, "https://mail.example.test");
        assert!(meta.allows_s256());
        assert!(meta.authorization_response_iss_parameter_supported);
        assert!(meta.authorization_endpoint.is_none());
        let error = parse("https://other.example.test", &doc).unwrap_err();
        assert!(matches!(error, RequestError::Setup(_)), "{error:?}");
    }

    #[test]
    fn endpoints_must_be_safe_urls() {
        let with = |name: &str, value: Value| {
            let mut doc = object(json!({
                "issuer": "https://mail.example.test",
                "token_endpoint": "https://mail.example.test/auth/token",
            }));
            doc.insert(name.to_owned(), value);
            parse("https://mail.example.test", &doc)
        };
        assert!(with("token_endpoint", json!("http://mail.example.test/token")).is_err());
        assert!(with("token_endpoint", json!(42)).is_err());
        assert!(with("revocation_endpoint", json!("https://x.test/r#f")).is_err());
        assert!(with("code_challenge_methods_supported", json!(["plain"]))
            .is_ok_and(|meta| !meta.allows_s256()));
        let no_token = object(json!({"issuer": "https://mail.example.test"}));
        assert!(matches!(
            parse("https://mail.example.test", &no_token),
            Err(RequestError::Server { .. })
        ));
    }
}

//! The RFC 7662 §2.1 request and the transport half of §2.2: turn a token into the
//! identity provider's JSON answer, or say why it could not be had.
//!
//! Everything that goes wrong here is the identity provider's fault or ours (wrong client
//! credentials, wrong URL), never the client's: it all ends as `Unavailable`, and so does a
//! 200 whose JSON is not a well-formed RFC 7662 answer ([`crate::shape`]).

use std::error::Error as _;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{redirect, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::config::{ClientAuth, IntrospectionConfig};
use crate::error::ConfigError;
use crate::shape;

/// Largest introspection response read: 64 KiB is far above any real answer (a few hundred
/// bytes) and keeps a broken or hostile endpoint from filling our memory.
pub const MAX_RESPONSE_LEN: usize = 64 * 1024;

/// Why the identity provider gave no usable answer. The text is for the log and for
/// [`crate::ValidationError::Unavailable`]; it never contains the token or our secret.
pub(crate) use crate::error::{Unavailable, UnavailableKind};

/// An HTTP client bound to one introspection endpoint and our credentials for it.
pub(crate) struct IntrospectionClient {
    http: reqwest::Client,
    url: Url,
    /// `Basic …` or `Bearer …`, marked sensitive; `None` for `client_secret_post`.
    authorization: Option<HeaderValue>,
    /// The form parameters after `token=`: the hint and, for `client_secret_post`, our
    /// credentials. Built once; holds the secret, so never logged.
    form_tail: SecretString,
    timeout: Duration,
    requests: AtomicU64,
}

impl IntrospectionClient {
    pub(crate) fn new(config: &IntrospectionConfig) -> Result<Self, ConfigError> {
        let url = Url::parse(&config.introspection_url).map_err(|e| ConfigError::Invalid {
            key: "introspection_url",
            problem: format!("not a URL: {e}"),
        })?;
        let http = http_client(config.timeout)?;
        Ok(Self {
            http,
            url,
            authorization: match config.client_auth {
                ClientAuth::Basic => Some(basic_authorization(
                    &config.client_id,
                    &config.client_secret,
                )?),
                ClientAuth::Bearer => Some(bearer_authorization(&config.client_secret)?),
                ClientAuth::Post => None,
            },
            form_tail: form_tail(config),
            timeout: config.timeout,
            requests: AtomicU64::new(0),
        })
    }

    /// Number of introspection requests sent so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Asks the identity provider about `token`; `tag` identifies it in the log.
    pub(crate) async fn introspect(
        &self,
        token: &SecretString,
        tag: &str,
    ) -> Result<Map<String, Value>, Unavailable> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // reqwest's own timeout covers the body too; this one also bounds our reading loop.
        match tokio::time::timeout(self.timeout, self.exchange(token, tag)).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(
                tag,
                UnavailableKind::Timeout,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    async fn exchange(
        &self,
        token: &SecretString,
        tag: &str,
    ) -> Result<Map<String, Value>, Unavailable> {
        let body = format!(
            "token={}{}",
            form_urlencode(token.expose_secret()),
            self.form_tail.expose_secret()
        );
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization.clone());
        }
        let mut response = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.unavailable(tag, transport_kind(&e), describe(&e)))?;

        let status = response.status();
        if status == StatusCode::BAD_REQUEST && refuses_the_token(&mut response).await {
            tracing::debug!(
                token = tag,
                "introspection endpoint cannot judge this kind of token"
            );
            return Ok(Map::from_iter([("active".to_owned(), Value::Bool(false))]));
        }
        if status != StatusCode::OK {
            return Err(self.refused(tag, status));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_RESPONSE_LEN as u64)
        {
            return Err(self.unavailable(tag, UnavailableKind::BadAnswer, too_large()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unavailable(tag, transport_kind(&e), describe(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_LEN {
                return Err(self.unavailable(tag, UnavailableKind::BadAnswer, too_large()));
            }
            bytes.extend_from_slice(&chunk);
        }
        match serde_json::from_slice::<Value>(&bytes) {
            // A malformed answer is the provider failing, not the token being bad: it
            // fails here, inside the guarded request, so that the breaker counts it.
            Ok(Value::Object(map)) => match shape::introspection(&map) {
                Ok(()) => Ok(map),
                Err(why) => Err(self.unavailable(
                    tag,
                    UnavailableKind::BadAnswer,
                    format!("answer is not an RFC 7662 answer: {why}"),
                )),
            },
            Ok(_) => Err(self.unavailable(
                tag,
                UnavailableKind::BadAnswer,
                "answer is JSON but not an object".to_owned(),
            )),
            Err(e) => Err(self.unavailable(
                tag,
                UnavailableKind::BadAnswer,
                format!("answer is not JSON: {e}"),
            )),
        }
    }

    /// Any status but 200. 4xx and 3xx mean our side is misconfigured, so they are logged
    /// as errors: every user is being turned away until an operator acts.
    fn refused(&self, tag: &str, status: StatusCode) -> Unavailable {
        let url = self.url.as_str();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            tracing::error!(
                token = tag, %url, status = status.as_u16(),
                "identity provider refused the proxy's introspection credentials; \
                 check validator.client_id and validator.client_secret"
            );
            return Unavailable::new(
                UnavailableKind::Refused(status.as_u16()),
                format!("identity provider refused our client credentials (HTTP {status})"),
            );
        }
        if status.is_client_error() || status.is_redirection() {
            tracing::error!(
                token = tag, %url, status = status.as_u16(),
                "introspection endpoint rejected the proxy's request; \
                 check validator.introspection_url and the client's registration"
            );
            return Unavailable::new(
                UnavailableKind::Refused(status.as_u16()),
                format!("introspection endpoint answered HTTP {status}"),
            );
        }
        self.unavailable(
            tag,
            UnavailableKind::HttpStatus(status.as_u16()),
            format!("identity provider answered HTTP {status}"),
        )
    }

    fn unavailable(&self, tag: &str, kind: UnavailableKind, why: String) -> Unavailable {
        tracing::warn!(token = tag, url = %self.url, "token introspection failed: {why}");
        Unavailable::new(kind, why)
    }
}

impl fmt::Debug for IntrospectionClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrospectionClient")
            .field("url", &self.url.as_str())
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "[REDACTED]"),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether a 400 answer is about the token rather than our request: some providers (node
/// `oidc-provider` for a JWT it issued) answer `unsupported_token_type` instead of
/// `{"active": false}`. Such a token is one this endpoint will never accept, so it counts as
/// inactive (the client's fault, and with several issuers the next one is asked), not as an
/// outage. `invalid_token` is not taken so: gateways answer it for our own expired
/// credentials, which must show as an outage, not as every user's wrong token.
async fn refuses_the_token(response: &mut reqwest::Response) -> bool {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        if bytes.len() + chunk.len() > MAX_RESPONSE_LEN {
            return false;
        }
        bytes.extend_from_slice(&chunk);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(body)) => matches!(
            body.get("error").and_then(Value::as_str),
            Some("unsupported_token_type")
        ),
        _ => false,
    }
}

fn too_large() -> String {
    format!("answer is larger than {MAX_RESPONSE_LEN} bytes")
}

/// The HTTP client every request to the identity provider goes through: rustls, no
/// redirects (one would resend the token to wherever the Location points), `timeout` for
/// connecting and for the whole request.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, ConfigError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(redirect::Policy::none())
        .user_agent(concat!("bearergate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ConfigError::HttpClient(error_chain(&e)))
}

/// `&token_type_hint=…` and, for `client_secret_post` (RFC 6749 §2.3.1), `&client_id=…&
/// client_secret=…`.
fn form_tail(config: &IntrospectionConfig) -> SecretString {
    let mut tail = String::new();
    if let Some(hint) = &config.token_type_hint {
        tail.push_str("&token_type_hint=");
        tail.push_str(&form_urlencode(hint));
    }
    if config.client_auth == ClientAuth::Post {
        tail.push_str("&client_id=");
        tail.push_str(&form_urlencode(&config.client_id));
        tail.push_str("&client_secret=");
        tail.push_str(&form_urlencode(config.client_secret.expose_secret()));
    }
    SecretString::from(tail)
}

/// RFC 6750 §2.1: the endpoint's own bearer token.
fn bearer_authorization(token: &SecretString) -> Result<HeaderValue, ConfigError> {
    let mut value =
        HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
            ConfigError::Invalid {
                key: "client_secret",
                problem: "is not usable in an HTTP header".to_owned(),
            }
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// RFC 6749 §2.3.1: id and secret are each form-urlencoded, then joined and base64'd.
fn basic_authorization(
    client_id: &str,
    client_secret: &SecretString,
) -> Result<HeaderValue, ConfigError> {
    let credentials = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret.expose_secret())
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .map_err(|e| ConfigError::HttpClient(format!("authorization header: {e}")))?;
    value.set_sensitive(true);
    Ok(value)
}

/// `application/x-www-form-urlencoded` serialisation of one name or value (WHATWG URL
/// §5.2): `*-._` and ASCII alphanumerics stay, space becomes `+`, every other byte `%XX`.
pub(crate) fn form_urlencode(input: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(input.len());
    for &b in input.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0F)]));
            }
        }
    }
    out
}

/// A transport error in a few words, with its causes (e.g. "connection refused").
/// The kind of a transport failure: a timeout, or anything else that kept the answer away.
pub(crate) fn transport_kind(e: &reqwest::Error) -> UnavailableKind {
    if e.is_timeout() {
        UnavailableKind::Timeout
    } else {
        UnavailableKind::Unreachable
    }
}

pub(crate) fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    format!("{what}: {}", error_chain(e))
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_urlencode_known_answers() {
        let table = [
            ("mF_9.B5f-4.1JqM", "mF_9.B5f-4.1JqM"),
            ("a+b/c=", "a%2Bb%2Fc%3D"),
            ("a b", "a+b"),
            ("100%:&~", "100%25%3A%26%7E"),
            ("é", "%C3%A9"),
            ("", ""),
        ];
        for (input, expected) in table {
            assert_eq!(form_urlencode(input), expected, "{input:?}");
        }
    }

    #[test]
    fn basic_authorization_urlencodes_before_base64() {
        // RFC 6749 §2.3.1 example credentials.
        let value = basic_authorization("s6BhdRkqt3", &SecretString::from("gX1fBat3bV")).unwrap();
        assert_eq!(
            value.to_str().unwrap(),
            "Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW"
        );
        assert!(value.is_sensitive());

        // ':' and '+' in the id and secret are escaped, so the split at ':' stays unambiguous.
        let value = basic_authorization("my:client", &SecretString::from("p+ss w%rd")).unwrap();
        let encoded = value.to_str().unwrap().strip_prefix("Basic ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(decoded, b"my%3Aclient:p%2Bss+w%25rd");
    }

    #[test]
    fn debug_hides_credentials() {
        let config = IntrospectionConfig::new(
            "https://idp.example/introspect",
            "bearergate",
            SecretString::from("hunter2-secret"),
        );
        let client = IntrospectionClient::new(&config).unwrap();
        let text = format!("{client:?}");
        assert!(!text.contains("hunter2"), "{text}");
        let encoded = base64::engine::general_purpose::STANDARD.encode("bearergate:hunter2-secret");
        assert!(!text.contains(&encoded), "{text}");
        assert!(text.contains("[REDACTED]"));
    }
}

//! Userinfo mode: for identity providers that issue opaque access tokens but offer no
//! RFC 7662 introspection to third parties (Google, Microsoft), ask an endpoint that only
//! answers for a valid token and turn its answer into an introspection-style object.
//!
//! Two ways of presenting the token, see [`UserinfoRequest`]:
//! - OpenID Connect Core §5.3 userinfo: `GET` with `Authorization: Bearer <token>`
//!   (RFC 6750 §2.1), e.g. `https://graph.microsoft.com/oidc/userinfo`;
//! - Google's tokeninfo: `POST` of the form `access_token=<token>` to
//!   `https://oauth2.googleapis.com/tokeninfo`, never the query string, which ends up in
//!   access logs.
//!
//! The status decides: 200 with a JSON object means the provider accepts the token;
//! 400, 401 and 403 mean it does not (RFC 6750 §3.1: `invalid_request`, `invalid_token`,
//! `insufficient_scope`; Google answers 400, Microsoft Graph 401); anything else, and any
//! answer we cannot read — not JSON, or claims of the wrong types ([`crate::shape`]) —
//! means it could not say. A misconfigured URL that answers 401 turns
//! every user away as "invalid"; nothing on the wire tells that apart from a bad token.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{validate_url_key, DEFAULT_TIMEOUT};
use crate::error::{ConfigError, InvalidReason};
use crate::introspection::{
    describe, form_urlencode, http_client, transport_kind, Unavailable, UnavailableKind,
    MAX_RESPONSE_LEN,
};
use crate::shape;

/// How the token is presented to the endpoint (`userinfo_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserinfoRequest {
    /// `GET` with `Authorization: Bearer <token>` and no body: OpenID Connect userinfo
    /// (Core §5.3.1), e.g. Microsoft's `https://graph.microsoft.com/oidc/userinfo`.
    Bearer,
    /// `POST` of `application/x-www-form-urlencoded` `access_token=<token>`: Google's
    /// `https://oauth2.googleapis.com/tokeninfo`.
    Form,
}

/// How to reach a userinfo (or tokeninfo) endpoint.
#[derive(Debug, Clone)]
pub struct UserinfoConfig {
    /// `userinfo_url`: the endpoint. `https` in production; plain `http` is accepted only
    /// towards a loopback address, since the token travels with every request.
    pub url: String,
    /// How the token is sent.
    pub request: UserinfoRequest,
    /// `timeout`: limit for one whole request (connect, send, read the body).
    pub timeout: Duration,
}

impl UserinfoConfig {
    /// A configuration with [`DEFAULT_TIMEOUT`].
    pub fn new(url: impl Into<String>, request: UserinfoRequest) -> Self {
        Self {
            url: url.into(),
            request,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Checks every key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_url_key("userinfo_url", &self.url)?;
        if self.timeout.is_zero() {
            return Err(ConfigError::Invalid {
                key: "timeout",
                problem: "must be greater than zero".to_owned(),
            });
        }
        Ok(())
    }
}

/// An HTTP client bound to one userinfo endpoint. Holds no secret of its own: the only
/// secret is the token, which lives only as long as one request.
pub(crate) struct UserinfoClient {
    http: reqwest::Client,
    url: Url,
    /// `host[:port]` of `url`, to name the endpoint in error texts.
    endpoint: String,
    request: UserinfoRequest,
    timeout: Duration,
    requests: AtomicU64,
}

impl UserinfoClient {
    /// Checks `config` and builds the client. No request is made.
    pub(crate) fn new(config: &UserinfoConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let url = Url::parse(&config.url).map_err(|e| ConfigError::Invalid {
            key: "userinfo_url",
            problem: format!("not a URL: {e}"),
        })?;
        let host = url.host_str().unwrap_or_default();
        let endpoint = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            http: http_client(config.timeout)?,
            url,
            endpoint,
            request: config.request,
            timeout: config.timeout,
            requests: AtomicU64::new(0),
        })
    }

    /// Number of requests sent so far.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Asks the endpoint about `token`; `tag` identifies it in the log.
    ///
    /// `Ok(Ok(claims))` when the provider accepts the token ([`normalise`]d, so they can be
    /// judged like an introspection answer), `Ok(Err(reason))` when it says the token is bad,
    /// `Err` when it could not say.
    pub(crate) async fn fetch(
        &self,
        token: &SecretString,
        tag: &str,
    ) -> Result<Result<Map<String, Value>, InvalidReason>, Unavailable> {
        let Some(request) = self.build(token) else {
            tracing::debug!(token = tag, "token cannot be sent as a bearer token");
            return Ok(Err(InvalidReason::Inactive));
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        // reqwest's own timeout covers the body too; this one also bounds our reading loop.
        match tokio::time::timeout(self.timeout, self.exchange(request, tag)).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(
                tag,
                UnavailableKind::Timeout,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    /// The request for `token`, or `None` when it cannot be a bearer token: RFC 6750 §2.1
    /// `b64token` is visible ASCII without spaces, so no provider issued one with other
    /// bytes and asking would only cost a request. The form body escapes every byte, so
    /// there any token goes.
    fn build(&self, token: &SecretString) -> Option<reqwest::RequestBuilder> {
        let raw = token.expose_secret();
        let builder = match self.request {
            UserinfoRequest::Bearer => {
                if !raw.bytes().all(|b| b.is_ascii_graphic()) {
                    return None;
                }
                let mut value = HeaderValue::from_str(&format!("Bearer {raw}")).ok()?;
                // Kept out of Debug output and of HTTP/2 header compression tables.
                value.set_sensitive(true);
                self.http.get(self.url.clone()).header(AUTHORIZATION, value)
            }
            UserinfoRequest::Form => self
                .http
                .post(self.url.clone())
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("access_token={}", form_urlencode(raw))),
        };
        Some(builder.header(ACCEPT, "application/json"))
    }

    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        tag: &str,
    ) -> Result<Result<Map<String, Value>, InvalidReason>, Unavailable> {
        let mut response = request
            .send()
            .await
            .map_err(|e| self.unavailable(tag, transport_kind(&e), describe(&e)))?;

        let status = response.status();
        if matches!(
            status,
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            tracing::debug!(
                token = tag, url = %self.url, status = status.as_u16(),
                "identity provider rejected the token"
            );
            return Ok(Err(InvalidReason::RejectedByProvider {
                status: status.as_u16(),
            }));
        }
        if status != StatusCode::OK {
            return Err(self.refused(tag, status));
        }

        let bytes = read_bounded(&mut response)
            .await
            .map_err(|(kind, why)| self.unavailable(tag, kind, why))?;
        let mut claims = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(self.unavailable(
                    tag,
                    UnavailableKind::BadAnswer,
                    "answer is JSON but not an object".to_owned(),
                ))
            }
            Err(e) => {
                return Err(self.unavailable(
                    tag,
                    UnavailableKind::BadAnswer,
                    format!("answer is not JSON: {e}"),
                ))
            }
        };
        normalise(&mut claims, SystemTime::now());
        // Inside the guarded request, so that the breaker counts a malformed answer.
        if let Err(why) = shape::userinfo(&claims) {
            return Err(self.unavailable(
                tag,
                UnavailableKind::BadAnswer,
                format!("answer is not a userinfo answer: {why}"),
            ));
        }
        Ok(Ok(claims))
    }

    /// A status that says nothing about the token. 3xx and 4xx (other than the three that
    /// reject the token, and 429) mean our side is misconfigured, so they are logged as
    /// errors: every user is being turned away until an operator acts.
    fn refused(&self, tag: &str, status: StatusCode) -> Unavailable {
        let why = format!("answered HTTP {status}");
        if status.is_redirection()
            || (status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS)
        {
            tracing::error!(
                token = tag, url = %self.url, status = status.as_u16(),
                "userinfo endpoint rejected the proxy's request; check validator.userinfo_url"
            );
            return Unavailable::new(
                UnavailableKind::Refused(status.as_u16()),
                format!("userinfo endpoint {}: {why}", self.endpoint),
            );
        }
        self.unavailable(tag, UnavailableKind::HttpStatus(status.as_u16()), why)
    }

    /// Logs `why` and names the endpoint in it; `why` never holds the token.
    fn unavailable(&self, tag: &str, kind: UnavailableKind, why: String) -> Unavailable {
        tracing::warn!(token = tag, url = %self.url, "userinfo request failed: {why}");
        Unavailable::new(kind, format!("userinfo endpoint {}: {why}", self.endpoint))
    }
}

impl fmt::Debug for UserinfoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserinfoClient")
            .field("url", &self.url.as_str())
            .field("request", &self.request)
            .field("timeout", &self.timeout)
            .field("requests", &self.requests())
            .finish_non_exhaustive()
    }
}

/// The body, refused once it passes [`MAX_RESPONSE_LEN`] (announced or actual), never
/// truncated.
async fn read_bounded(
    response: &mut reqwest::Response,
) -> Result<Vec<u8>, (UnavailableKind, String)> {
    let too_large = || {
        (
            UnavailableKind::BadAnswer,
            format!("answer is larger than {MAX_RESPONSE_LEN} bytes"),
        )
    };
    if response
        .content_length()
        .is_some_and(|len| len > MAX_RESPONSE_LEN as u64)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| (transport_kind(&e), describe(&e)))?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_LEN {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Makes a userinfo or tokeninfo answer judgeable like an RFC 7662 answer at time `now`:
/// - `exp` as a string of digits (Google) becomes a number;
/// - without `exp`, an `expires_in` (number or string of digits; seconds from now, as in
///   RFC 6749 §5.1) becomes `exp = now + expires_in`;
/// - `email_verified` `"true"`/`"false"` (Google) becomes a boolean;
/// - `active` is set to `true`. Userinfo has no `active` member; the 200 itself is the
///   provider's word that the token is valid, and the shared checks demand `active: true`.
///   A member of that name in a userinfo answer would be a provider extension meaning
///   something else (an account flag, say), so it is overwritten, never read.
///
/// Anything else that is malformed (`exp: "soon"`) is left for [`crate::shape::userinfo`]
/// to report as a broken answer.
pub(crate) fn normalise(claims: &mut Map<String, Value>, now: SystemTime) {
    if let Some(exp) = claims.get("exp").and_then(digit_string) {
        claims.insert("exp".to_owned(), Value::from(exp));
    }
    if matches!(claims.get("exp"), None | Some(Value::Null)) {
        let lifetime = match claims.get("expires_in") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(other) => digit_string(other),
            None => None,
        };
        let now_secs = now.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        if let Some(exp) = lifetime.zip(now_secs).and_then(|(l, n)| n.checked_add(l)) {
            claims.insert("exp".to_owned(), Value::from(exp));
        }
    }
    let verified = match claims.get("email_verified") {
        Some(Value::String(s)) if s == "true" => Some(true),
        Some(Value::String(s)) if s == "false" => Some(false),
        _ => None,
    };
    if let Some(verified) = verified {
        claims.insert("email_verified".to_owned(), Value::Bool(verified));
    }
    claims.insert("active".to_owned(), Value::Bool(true));
}

/// `1*DIGIT` as a string, when it fits a `u64`. `str::parse` alone would also take `+5`.
fn digit_string(value: &Value) -> Option<u64> {
    match value {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::identity::{check_answer, AnswerRules};

    const NOW_SECS: u64 = 1_700_000_000;
    const TAG: &str = "t4g";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn normalised(answer: Value) -> Value {
        let Value::Object(mut claims) = answer else {
            panic!("test answers are objects");
        };
        normalise(&mut claims, at(NOW_SECS));
        Value::Object(claims)
    }

    #[test]
    fn google_tokeninfo_is_normalised() {
        let answer = json!({
            "azp": "123.apps.googleusercontent.com", "aud": "123.apps.googleusercontent.com",
            "sub": "1057", "scope": "https://mail.google.com/ openid",
            "exp": "1700003599", "expires_in": "3599",
            "email": "a@b", "email_verified": "true", "access_type": "offline",
        });
        let mut expected = answer.clone();
        expected["exp"] = json!(1_700_003_599_u64);
        expected["email_verified"] = json!(true);
        expected["active"] = json!(true);
        assert_eq!(normalised(answer), expected);
    }

    #[test]
    fn normalisation_known_answers() {
        // (answer, the members normalisation sets besides `active: true`)
        let table = [
            // exp: digits become a number; anything else is left for the shape check.
            (json!({"exp": "0"}), json!({"exp": 0})),
            (json!({"exp": NOW_SECS}), json!({})),
            (json!({"exp": "+5"}), json!({})),
            (json!({"exp": "-5"}), json!({})),
            (json!({"exp": ""}), json!({})),
            (json!({"exp": "1.5"}), json!({})),
            (json!({"exp": "99999999999999999999"}), json!({})),
            // expires_in only: exp = now + expires_in.
            (json!({"expires_in": 60}), json!({"exp": NOW_SECS + 60})),
            (
                json!({"expires_in": "3599"}),
                json!({"exp": NOW_SECS + 3599}),
            ),
            (
                json!({"exp": null, "expires_in": 5}),
                json!({"exp": NOW_SECS + 5}),
            ),
            // exp wins over expires_in, even as a string.
            (
                json!({"exp": "1700000100", "expires_in": 5}),
                json!({"exp": 1_700_000_100_u64}),
            ),
            // Unusable expires_in: no exp invented.
            (json!({"expires_in": -5}), json!({})),
            (json!({"expires_in": 1.5}), json!({})),
            (json!({"expires_in": "soon"}), json!({})),
            (json!({"expires_in": u64::MAX}), json!({})),
            // email_verified.
            (
                json!({"email_verified": "false"}),
                json!({"email_verified": false}),
            ),
            (json!({"email_verified": true}), json!({})),
            (json!({"email_verified": "TRUE"}), json!({})),
            // active is the 200's, never the provider's.
            (json!({}), json!({})),
            (json!({"active": false}), json!({})),
            (json!({"active": "no"}), json!({})),
        ];
        for (answer, changes) in table {
            let mut expected = answer.clone();
            for (name, value) in changes.as_object().unwrap() {
                expected[name] = value.clone();
            }
            expected["active"] = json!(true);
            assert_eq!(normalised(answer.clone()), expected, "{answer}");
        }
    }

    #[test]
    fn normalised_answers_pass_the_introspection_checks() {
        let judge = |answer: Value, now: u64| {
            let Value::Object(claims) = normalised(answer) else {
                unreachable!()
            };
            check_answer(&claims, AnswerRules::default(), at(now))
        };
        let google = json!({"sub": "1", "email": "a@b", "scope": "https://mail.google.com/ openid",
                            "exp": "1700000600", "email_verified": "true"});
        assert_eq!(
            judge(google.clone(), NOW_SECS),
            Ok(Some(at(NOW_SECS + 600)))
        );
        assert_eq!(judge(google, NOW_SECS + 600), Err(InvalidReason::Expired));

        let microsoft = json!({"sub": "OLu859SGc2Sr9ZsqbkG-QbeLgJlb41KcdiPoLYNpSFA",
                               "name": "Mikah Ollenburg", "email": "mikoll@contoso.com"});
        assert_eq!(judge(microsoft, NOW_SECS), Ok(None));

        let short = json!({"email": "a@b", "expires_in": 0});
        assert_eq!(judge(short, NOW_SECS), Err(InvalidReason::Expired));
    }

    /// One request as the tiny server saw it.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        /// Names in lower case.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            let mut values = self.headers.iter().filter(|(n, _)| n == name);
            let value = values.next().map(|(_, v)| v.as_str());
            assert!(values.next().is_none(), "{name} sent twice");
            value
        }
    }

    /// Serves one connection on a loopback port: reads one request, writes `answer` (`None`:
    /// never answers) and hands back what it read. Returns the URL and that request.
    async fn serve_once(answer: Option<Vec<u8>>) -> (String, JoinHandle<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/userinfo", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i;
                }
                let mut chunk = [0_u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-request");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
            let mut lines = head.split("\r\n");
            let mut first = lines.next().unwrap().split(' ');
            let (method, path) = (
                first.next().unwrap().to_owned(),
                first.next().unwrap().to_owned(),
            );
            let headers: Vec<(String, String)> = lines
                .filter_map(|line| line.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = buf.split_off(head_end + 4);
            while body.len() < length {
                let mut chunk = [0_u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed mid-body");
                body.extend_from_slice(&chunk[..n]);
            }
            let Some(answer) = answer else {
                return std::future::pending().await;
            };
            // The client may hang up first (e.g. on an oversized body).
            let _ = stream.write_all(&answer).await;
            Seen {
                method,
                path,
                headers,
                body,
            }
        });
        (url, task)
    }

    fn answer(status: u16, content_type: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn json_answer(status: u16, body: &Value) -> Vec<u8> {
        answer(status, "application/json", &body.to_string())
    }

    fn client(url: &str, request: UserinfoRequest) -> UserinfoClient {
        let mut config = UserinfoConfig::new(url, request);
        config.timeout = Duration::from_secs(5);
        UserinfoClient::new(&config).unwrap()
    }

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    type Fetched = Result<Result<Map<String, Value>, InvalidReason>, Unavailable>;

    /// `answer` to one request made in `request` mode; the outcome and the request seen.
    async fn exchange(request: UserinfoRequest, token: &str, answer: Vec<u8>) -> (Fetched, Seen) {
        let (url, seen) = serve_once(Some(answer)).await;
        let client = client(&url, request);
        let fetched = client.fetch(&secret(token), TAG).await;
        assert_eq!(client.requests(), 1);
        (fetched, seen.await.unwrap())
    }

    #[tokio::test]
    async fn bearer_is_a_get_with_only_the_authorization_header() {
        let token = "ya29.a0-B_c~d+e/f==";
        let (fetched, seen) = exchange(
            UserinfoRequest::Bearer,
            token,
            json_answer(200, &json!({"sub": "1", "email": "a@b"})),
        )
        .await;
        assert_eq!(
            Value::Object(fetched.unwrap().unwrap()),
            json!({"sub": "1", "email": "a@b", "active": true})
        );
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            ("GET", "/userinfo")
        );
        assert_eq!(
            seen.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
        assert_eq!(seen.header("accept"), Some("application/json"));
        assert_eq!(seen.header("content-length"), None);
        assert_eq!(seen.header("transfer-encoding"), None);
        assert_eq!(seen.header("content-type"), None);
        assert!(seen.body.is_empty());
    }

    #[tokio::test]
    async fn form_is_a_post_of_the_percent_encoded_token() {
        let (fetched, seen) = exchange(
            UserinfoRequest::Form,
            "ya29.a+b/c= é&x",
            json_answer(200, &json!({"sub": "1"})),
        )
        .await;
        assert!(fetched.unwrap().is_ok());
        assert_eq!(seen.method, "POST");
        assert_eq!(
            String::from_utf8(seen.body.clone()).unwrap(),
            "access_token=ya29.a%2Bb%2Fc%3D+%C3%A9%26x"
        );
        assert_eq!(
            seen.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(seen.header("authorization"), None);
    }

    #[tokio::test]
    async fn google_answer_is_normalised() {
        let (fetched, _) = exchange(
            UserinfoRequest::Form,
            "ya29.token",
            json_answer(
                200,
                &json!({
                    "azp": "1.apps", "aud": "1.apps", "sub": "1057",
                    "scope": "https://mail.google.com/ openid", "exp": "1700000000",
                    "expires_in": "3599", "email": "a@b", "email_verified": "true",
                }),
            ),
        )
        .await;
        let claims = fetched.unwrap().unwrap();
        assert_eq!(claims["exp"], json!(1_700_000_000_u64));
        assert_eq!(claims["email_verified"], json!(true));
        assert_eq!(claims["active"], json!(true));
    }

    #[tokio::test]
    async fn expires_in_alone_sets_exp_from_now() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (fetched, _) = exchange(
            UserinfoRequest::Form,
            "ya29.token",
            json_answer(200, &json!({"sub": "1", "expires_in": "3599"})),
        )
        .await;
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let exp = fetched.unwrap().unwrap()["exp"].as_u64().unwrap();
        assert!((before + 3599..=after + 3599).contains(&exp), "{exp}");
    }

    #[tokio::test]
    async fn rejections_are_invalid() {
        let answers = [
            (
                UserinfoRequest::Form,
                json_answer(400, &json!({"error": "invalid_token"})),
            ),
            (UserinfoRequest::Bearer, answer(401, "text/plain", "")),
            (UserinfoRequest::Bearer, answer(403, "text/plain", "")),
        ];
        for (request, answer) in answers {
            let (fetched, _) = exchange(request, "bad-token", answer).await;
            assert!(
                matches!(
                    fetched,
                    Ok(Err(InvalidReason::RejectedByProvider {
                        status: 400 | 401 | 403
                    }))
                ),
                "{fetched:?}"
            );
        }
    }

    /// The `Unavailable` text for `answer` to a Bearer request.
    async fn unavailable(answer: Vec<u8>) -> Unavailable {
        let (fetched, _) = exchange(UserinfoRequest::Bearer, "tok", answer).await;
        let why = fetched.unwrap_err();
        assert!(
            why.detail.starts_with("userinfo endpoint 127.0.0.1:"),
            "{why}"
        );
        why
    }

    #[tokio::test]
    async fn other_statuses_are_unavailable() {
        for status in [500, 503, 429, 404, 302, 204] {
            let why = unavailable(answer(status, "text/plain", "")).await;
            assert!(
                why.detail.contains(&format!("answered HTTP {status}")),
                "{why}"
            );
        }
    }

    #[tokio::test]
    async fn unreadable_answers_are_unavailable() {
        let html = "<!DOCTYPE html><html><body>Sign in</body></html>";
        let why = unavailable(answer(200, "text/html", html)).await;
        assert!(why.detail.contains("answer is not JSON"), "{why}");
        let why = unavailable(json_answer(200, &json!(["sub"]))).await;
        assert!(why.detail.contains("not an object"), "{why}");
        let why = unavailable(answer(200, "application/json", "")).await;
        assert!(why.detail.contains("answer is not JSON"), "{why}");
        // JSON, but not a userinfo answer: an outage, never "wrong token".
        for (body, problem) in [
            (json!({}), "empty object"),
            (json!({"sub": 42}), "\"sub\" is not a string"),
            (
                json!({"sub": "1", "exp": "soon"}),
                "\"exp\" is not a NumericDate",
            ),
            (
                json!({"email": "a@b", "email_verified": "yes"}),
                "\"email_verified\"",
            ),
        ] {
            let why = unavailable(json_answer(200, &body)).await;
            assert_eq!(why.kind, UnavailableKind::BadAnswer, "{body}");
            assert!(why.detail.contains(problem), "{body}: {why}");
        }
    }

    #[tokio::test]
    async fn oversized_answers_are_unavailable() {
        let filler = "x".repeat(MAX_RESPONSE_LEN);
        let announced = json_answer(200, &json!({ "sub": filler }));
        let why = unavailable(announced).await;
        assert!(why.detail.contains("larger than 65536 bytes"), "{why}");

        // Chunked, so only counting while reading can tell.
        let mut chunked = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n"
            .to_vec();
        for _ in 0..=MAX_RESPONSE_LEN / 4096 {
            chunked.extend_from_slice(format!("1000\r\n{}\r\n", " ".repeat(4096)).as_bytes());
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let why = unavailable(chunked).await;
        assert!(why.detail.contains("larger than 65536 bytes"), "{why}");
    }

    #[tokio::test]
    async fn silence_is_unavailable_after_the_timeout() {
        let (url, _seen) = serve_once(None).await;
        let mut config = UserinfoConfig::new(url, UserinfoRequest::Bearer);
        config.timeout = Duration::from_millis(200);
        let client = UserinfoClient::new(&config).unwrap();
        let why = client.fetch(&secret("tok"), TAG).await.unwrap_err();
        assert!(
            why.detail.starts_with("userinfo endpoint 127.0.0.1:"),
            "{why}"
        );
        assert!(
            why.detail.contains("no answer within 200 ms") || why.detail.contains("timed out"),
            "{why}"
        );
    }

    async fn refused_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/userinfo", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let client = client(&refused_url().await, UserinfoRequest::Form);
        let why = client.fetch(&secret("tok"), TAG).await.unwrap_err();
        assert!(why.detail.contains("cannot connect"), "{why}");
        assert_eq!(client.requests(), 1);
    }

    #[tokio::test]
    async fn token_unfit_for_a_header_is_invalid_without_a_request() {
        let client = client(&refused_url().await, UserinfoRequest::Bearer);
        for token in [
            "tok\r\nX-Injected: 1",
            "tök",
            "tok\0",
            "two words",
            "tab\tbed",
        ] {
            assert_eq!(
                client.fetch(&secret(token), TAG).await,
                Ok(Err(InvalidReason::Inactive))
            );
        }
        assert_eq!(client.requests(), 0);
    }

    #[test]
    fn new_validates_the_config() {
        let config = UserinfoConfig::new("http://idp.example/userinfo", UserinfoRequest::Bearer);
        assert!(matches!(
            UserinfoClient::new(&config),
            Err(ConfigError::Invalid {
                key: "userinfo_url",
                ..
            })
        ));
    }

    /// A `MakeWriter` collecting every log line.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn the_token_appears_in_no_log_error_or_debug() {
        const TOKEN: &str = "ya29.VERY-SECRET-TOKEN-4711";
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let mut texts = Vec::new();
        let answers = [
            json_answer(200, &json!({"sub": "1"})),
            answer(401, "text/plain", ""),
            answer(400, "application/json", "{\"error\":\"invalid_token\"}"),
            answer(500, "text/plain", ""),
            answer(404, "text/plain", ""),
            answer(200, "text/html", "<html>"),
            json_answer(200, &json!({ "sub": "x".repeat(MAX_RESPONSE_LEN) })),
        ];
        for request in [UserinfoRequest::Bearer, UserinfoRequest::Form] {
            for answer in answers.clone() {
                let (url, _seen) = serve_once(Some(answer)).await;
                let config = UserinfoConfig::new(url, request);
                let client = UserinfoClient::new(&config).unwrap();
                let fetched = client.fetch(&secret(TOKEN), TAG).await;
                texts.push(format!("{fetched:?} {config:?} {client:?}"));
            }
            let client = client(&refused_url().await, request);
            texts.push(format!("{:?}", client.fetch(&secret(TOKEN), TAG).await));
        }
        let (url, _seen) = serve_once(None).await;
        let mut config = UserinfoConfig::new(url, UserinfoRequest::Bearer);
        config.timeout = Duration::from_millis(200);
        let fetched = UserinfoClient::new(&config)
            .unwrap()
            .fetch(&secret(TOKEN), TAG)
            .await;
        texts.push(format!("{fetched:?}"));

        let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("identity provider rejected the token"),
            "{log}"
        );
        assert!(log.contains("userinfo request failed"), "{log}");
        texts.push(log);
        for text in &texts {
            for leak in [TOKEN, "SECRET"] {
                assert!(!text.contains(leak), "{leak:?} leaked into: {text}");
            }
        }
    }
}

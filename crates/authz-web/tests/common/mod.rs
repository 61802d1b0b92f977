//! A router over a real `AuthServer` (SQLite in memory), a fake password check, and a tiny
//! browser: requests, cookies, and the fields of the forms the pages carry.
#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;

use authz::store::SqliteStore;
use authz::AuthServer;
use authz_web::{router, PasswordCheck, PeerAddr, WebConfig};
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tower::ServiceExt as _;

pub const ISSUER: &str = "http://127.0.0.1:8443";
pub const MAIL: &str = "urn:ietf:params:oauth:scope:mail";
pub const PASSWORD: &str = "correct horse";

/// Knows `alice`; can be switched to "backend down".
#[derive(Debug, Default)]
pub struct FakePasswords {
    pub down: AtomicBool,
    pub checks: AtomicUsize,
}

impl PasswordCheck for FakePasswords {
    fn check<'a>(
        &'a self,
        user: &'a str,
        password: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, String>> + Send + 'a>> {
        Box::pin(async move {
            self.checks.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err("backend unreachable".to_owned());
            }
            Ok(user == "alice" && password == PASSWORD)
        })
    }
}

/// How to build the harness.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub secure_cookies: bool,
    pub anonymous_registration: bool,
    pub templates_dir: Option<PathBuf>,
    /// Default: the defaults, but an account lock that outlasts any test.
    pub signin_limits: Option<authz::signin::SignInLimits>,
    /// `public_url`; default [`ISSUER`].
    pub issuer: Option<String>,
    /// The mail services RFC 8707 `resource` may name (none by default).
    pub mail_resources: Vec<authz::resource::MailResource>,
}

pub struct Harness {
    pub router: Router,
    pub server: Arc<AuthServer>,
    pub passwords: Arc<FakePasswords>,
    /// The server's clock (Unix seconds); tests move it forward.
    pub clock: Arc<AtomicI64>,
}

impl Harness {
    pub fn advance(&self, seconds: i64) {
        self.clock.fetch_add(seconds, Ordering::SeqCst);
    }
}

pub fn settings(options: &Options) -> authz::Settings {
    let mut settings: authz::Settings = serde_json::from_value(serde_json::json!({
        "public_url": options.issuer.as_deref().unwrap_or(ISSUER),
        "listen": "127.0.0.1:8443",
        "plaintext": true,
        "state_dir": "/nonexistent",
        "client_registration": { "anonymous": options.anonymous_registration },
    }))
    .expect("test settings");
    settings.mail_resources = options.mail_resources.clone();
    settings
}

pub fn config(
    options: &Options,
) -> (
    WebConfig,
    Arc<AuthServer>,
    Arc<FakePasswords>,
    Arc<AtomicI64>,
) {
    let store = SqliteStore::open_in_memory().expect("store");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let clock = Arc::new(AtomicI64::new(i64::try_from(now).expect("a sane clock")));
    let read = Arc::clone(&clock);
    let server = AuthServer::new(settings(options), Arc::new(store))
        .expect("server")
        .with_clock(Arc::new(move || read.load(Ordering::SeqCst)));
    let server = Arc::new(server);
    let passwords = Arc::new(FakePasswords::default());
    let config = WebConfig {
        server: Arc::clone(&server),
        passwords: passwords.clone(),
        normalise_user: Arc::new(|typed: &str| typed.trim().to_lowercase()),
        templates_dir: options.templates_dir.clone(),
        secure_cookies: options.secure_cookies,
        signin_limits: options.signin_limits.clone().unwrap_or_else(|| {
            authz::signin::SignInLimits {
                failure_delay: std::time::Duration::from_secs(600),
                max_failure_delay: std::time::Duration::from_secs(600),
                ..Default::default()
            }
        }),
        mail: Default::default(),
    };
    (config, server, passwords, clock)
}

pub fn harness(options: Options) -> Harness {
    let (config, server, passwords, clock) = config(&options);
    Harness {
        router: router(config).expect("router"),
        server,
        passwords,
        clock,
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn location(&self) -> &str {
        self.header(header::LOCATION).expect("a Location header")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    /// The `name=value` of our session cookie, if set.
    pub fn cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find(|value| value.contains("bearergate="))
            .and_then(|value| value.split(';').next())
            .map(str::to_owned)
    }

    /// The `value` of the first `<input … name="NAME" value="…">`.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Every `<input>`'s name and value, in order (values un-escaped).
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut fields = Vec::new();
        for input in self.body.split("<input").skip(1) {
            let tag = input.split('>').next().unwrap_or("");
            let attr = |attr: &str| {
                let start = tag.find(&format!("{attr}=\""))? + attr.len() + 2;
                let end = tag[start..].find('"')? + start;
                Some(unescape(&tag[start..end]))
            };
            if let Some(name) = attr("name") {
                fields.push((name, attr("value").unwrap_or_default()));
            }
        }
        fields
    }
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// A request builder with the usual headers of a browser on our pages.
pub struct Call {
    request: axum::http::request::Builder,
    body: Body,
}

impl Call {
    pub fn get(uri: &str) -> Self {
        Self {
            request: Request::builder().method(Method::GET).uri(uri),
            body: Body::empty(),
        }
    }

    /// A form POST.
    pub fn post(uri: &str, pairs: &[(&str, &str)]) -> Self {
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in pairs {
            body.append_pair(name, value);
        }
        Self::post_raw(uri, "application/x-www-form-urlencoded", body.finish())
    }

    pub fn post_raw(uri: &str, content_type: &str, body: impl Into<Body>) -> Self {
        Self {
            request: Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(header::CONTENT_TYPE, content_type),
            body: body.into(),
        }
    }

    pub fn cookie(self, cookie: &str) -> Self {
        self.header(header::COOKIE.as_str(), cookie)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.request = self.request.header(name, value);
        self
    }

    pub fn peer(mut self, address: &str) -> Self {
        let address: SocketAddr = address.parse().expect("socket address");
        self.request = self.request.extension(PeerAddr(address));
        self
    }

    pub async fn send(self, router: &Router) -> Reply {
        let request = self.request.body(self.body).expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let bytes = axum::body::to_bytes(body, 1 << 20).await.expect("body");
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
        }
    }
}

/// PKCE: a verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned();
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    (verifier, URL_SAFE_NO_PAD.encode(digest.as_ref()))
}

/// `a=b&…` of the pairs.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        query.append_pair(name, value);
    }
    query.finish()
}

/// The query parameters of a URL.
pub fn url_params(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location)
        .or_else(|_| url::Url::parse(&format!("{ISSUER}{location}")))
        .expect("a URL");
    url.query_pairs().into_owned().collect()
}

/// Signs `alice` in from scratch; the session cookie afterwards.
pub async fn sign_in(router: &Router) -> String {
    let page = Call::get("/auth/signin").send(router).await;
    assert_eq!(page.status, StatusCode::OK);
    let cookie = page.cookie().expect("a session cookie on the first page");
    let csrf = page.field("csrf").expect("a csrf field");
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &csrf),
            ("return_to", "/auth/device/verify"),
            ("username", "Alice"),
            ("password", PASSWORD),
        ],
    )
    .cookie(&cookie)
    .header("origin", ISSUER)
    .send(router)
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    reply.cookie().expect("a new session cookie at sign-in")
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "authz-web-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

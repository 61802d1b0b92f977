//! What the flow tests share: a server over an in-memory SQLite store with a clock the test
//! moves, and helpers for the requests a client makes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use secrecy::SecretString;

use crate::model::{
    AuthorizationRequest, ClientCredentials, CredentialsVia, PendingAuthorization, TokenRequest,
    TokenResponse,
};
use crate::store::{SqliteStore, Store};
use crate::{AuthServer, OAuthError, Settings};

/// RFC 7636 appendix B.
pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// S256 of [`VERIFIER`].
pub(crate) const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The issuer of every test server.
pub(crate) const ISSUER: &str = "https://auth.example.test";
/// A loopback redirect an unregistered client may use.
pub(crate) const LOOPBACK: &str = "http://127.0.0.1:49152/callback";

/// Settings from TOML lines added to the required keys.
pub(crate) fn settings(extra: &str) -> Settings {
    let text = format!(
        "public_url = \"{ISSUER}\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"unused\"\n{extra}"
    );
    toml::from_str(&text).expect("test settings parse")
}

/// A server, its store and its clock.
pub(crate) struct Harness {
    pub(crate) server: AuthServer,
    pub(crate) store: Arc<SqliteStore>,
    now: Arc<AtomicI64>,
}

impl Harness {
    /// A server with default settings plus `extra` TOML.
    pub(crate) fn new(extra: &str) -> Self {
        Self::with_settings(settings(extra))
    }

    /// A server with these settings (for fields no TOML sets, such as `mail_resources`).
    pub(crate) fn with_settings(settings: Settings) -> Self {
        let store = Arc::new(SqliteStore::open_in_memory().expect("in-memory store"));
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let now = Arc::new(AtomicI64::new(i64::try_from(start).expect("time fits")));
        let clock_now = now.clone();
        let shared: Arc<dyn Store> = store.clone();
        let server = AuthServer::new(settings, shared)
            .expect("server starts")
            .with_clock(Arc::new(move || clock_now.load(Ordering::SeqCst)));
        Harness { server, store, now }
    }

    /// Another instance over the same store and clock (several processes, one database).
    pub(crate) fn second_server(&self, extra: &str) -> AuthServer {
        let clock_now = self.now.clone();
        let shared: Arc<dyn Store> = self.store.clone();
        AuthServer::new(settings(extra), shared)
            .expect("server starts")
            .with_clock(Arc::new(move || clock_now.load(Ordering::SeqCst)))
    }

    /// The test clock.
    pub(crate) fn now(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub(crate) fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }

    /// Signs `user` in, approves, and returns the code from the redirect.
    pub(crate) fn code_for(&self, user: &str, request: &AuthorizationRequest) -> String {
        let pending = self.server.authorize(request).expect("request accepted");
        let url = self.server.approve(user, &pending).expect("approved");
        param(&url, "code").expect("code in the redirect")
    }

    /// The code flow from request to tokens (`openid` and mail) for a public client with PKCE.
    pub(crate) fn tokens_for(&self, user: &str, client_id: &str, redirect: &str) -> TokenResponse {
        let scope = format!("openid {}", crate::scope::MAIL);
        let code = self.code_for(user, &pkce_request(client_id, redirect, &scope));
        self.server
            .token(
                &code_exchange(&code, redirect, VERIFIER),
                &public(client_id),
            )
            .expect("tokens")
    }

    /// Approves `pending` for `user`.
    pub(crate) fn approve(&self, user: &str, pending: &PendingAuthorization) -> String {
        self.server.approve(user, pending).expect("approved")
    }
}

/// A code request with PKCE S256 and `scope`.
pub(crate) fn pkce_request(client_id: &str, redirect: &str, scope: &str) -> AuthorizationRequest {
    AuthorizationRequest {
        response_type: Some("code".to_owned()),
        client_id: Some(client_id.to_owned()),
        redirect_uri: Some(redirect.to_owned()),
        scope: Some(scope.to_owned()),
        state: Some("st&te".to_owned()),
        code_challenge: Some(CHALLENGE.to_owned()),
        code_challenge_method: Some("S256".to_owned()),
        nonce: Some("n-0S6_WzA2Mj".to_owned()),
        response_mode: None,
        resource: Vec::new(),
    }
}

/// A token request redeeming `code`.
pub(crate) fn code_exchange(code: &str, redirect: &str, verifier: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("authorization_code".to_owned()),
        code: Some(code.to_owned()),
        redirect_uri: Some(redirect.to_owned()),
        code_verifier: Some(verifier.to_owned()),
        ..TokenRequest::default()
    }
}

/// A token request with a refresh token.
pub(crate) fn refresh(token: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("refresh_token".to_owned()),
        refresh_token: Some(token.to_owned()),
        ..TokenRequest::default()
    }
}

/// A public client naming itself.
pub(crate) fn public(client_id: &str) -> ClientCredentials {
    ClientCredentials {
        client_id: Some(client_id.to_owned()),
        secret: None,
        via: CredentialsVia::None,
    }
}

/// A confidential client with HTTP Basic.
pub(crate) fn basic(client_id: &str, secret: &str) -> ClientCredentials {
    ClientCredentials {
        client_id: Some(client_id.to_owned()),
        secret: Some(SecretString::from(secret.to_owned())),
        via: CredentialsVia::Basic,
    }
}

/// A query parameter of a URL.
pub(crate) fn param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The error code of a failed call.
pub(crate) fn code_of<T: std::fmt::Debug>(result: Result<T, OAuthError>) -> &'static str {
    result.expect_err("expected an error").code.name()
}

//! The built-in issuer's side of the bench: its `[issuer]` table, and a [`Minter`] — an
//! [`AuthServer`] in this process over the very store the proxy under test holds open (the
//! SQLite file, which WAL mode lets a second process share, or the PostgreSQL database), so
//! codes that need a signed-in approval and refresh-token chains can be made without a
//! browser, then redeemed over HTTP.
//!
//! The bench signs in as [`USER`] with an unregistered public client ([`CLIENT_ID`], PKCE
//! S256, a loopback redirect), the way a desktop mail client uses the server by default.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use authz::model::{AuthorizationRequest, ClientCredentials, TokenRequest, TokenResponse};
use authz::store::{PostgresStore, SqliteStore, Store};
use authz::AuthServer;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::http::form;
use super::BenchResult;

/// Who approves every authorization; the token's `sub` and the IMAP login's user.
pub const USER: &str = "alice";
/// An unregistered public client: PKCE and a loopback redirect are all it needs.
pub const CLIENT_ID: &str = "bench-mail-client";
/// Never followed: the code is taken from the URL the approval returns.
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";

/// The `[issuer]` table: plain HTTP on loopback (no TLS in the measured path), passwords
/// checked by the backend (never used: codes are approved in process), and the store in
/// `state_dir` — or in the PostgreSQL database at `store` — which outlives any one proxy so
/// that a restart finds the same grants.
pub fn issuer_table(listen: SocketAddr, state_dir: &Path, store: Option<&str>) -> String {
    let store = store.map_or_else(String::new, |url| format!("store = \"{url}\"\n"));
    format!(
        r#"
[issuer]
public_url = "http://{listen}"
listen = "{listen}"
plaintext = true
state_dir = "{state_dir}"
users = "backend"
{store}"#,
        state_dir = state_dir.display(),
    )
}

/// The same table, as the server's settings.
pub fn issuer_settings(table: &str) -> BenchResult<authz::Settings> {
    #[derive(serde::Deserialize)]
    struct File {
        issuer: authz::Settings,
    }
    Ok(toml::from_str::<File>(table)?.issuer)
}

/// An authorization code with the PKCE verifier its challenge came from.
#[derive(Debug, Clone)]
pub struct Code {
    pub code: String,
    pub verifier: String,
}

impl Code {
    /// The token request that redeems it.
    pub fn request(&self) -> TokenRequest {
        TokenRequest {
            grant_type: Some("authorization_code".to_owned()),
            code: Some(self.code.clone()),
            redirect_uri: Some(REDIRECT_URI.to_owned()),
            code_verifier: Some(self.verifier.clone()),
            ..TokenRequest::default()
        }
    }

    /// The same as a token endpoint form body.
    pub fn form(&self) -> String {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", &self.code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", &self.verifier),
            ("client_id", CLIENT_ID),
        ])
    }
}

/// The token request that spends `refresh_token`.
pub fn refresh_request(refresh_token: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("refresh_token".to_owned()),
        refresh_token: Some(refresh_token.to_owned()),
        ..TokenRequest::default()
    }
}

/// The same as a token endpoint form body.
pub fn refresh_form(refresh_token: &str) -> String {
    form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT_ID),
    ])
}

/// How the public client identifies itself: its id in the body, no secret.
pub fn caller() -> ClientCredentials {
    ClientCredentials {
        client_id: Some(CLIENT_ID.to_owned()),
        ..ClientCredentials::default()
    }
}

/// The token endpoint's JSON answer: the access and refresh tokens, or why not.
pub fn tokens_of(status: u16, body: &[u8]) -> BenchResult<(String, String)> {
    let answer: serde_json::Value = serde_json::from_slice(body)?;
    let field = |name: &str| answer.get(name).and_then(|v| v.as_str()).map(str::to_owned);
    match (status, field("access_token"), field("refresh_token")) {
        (200, Some(access), Some(refresh)) => Ok((access, refresh)),
        _ => Err(format!(
            "token endpoint answered {status}: {}",
            field("error").unwrap_or_default()
        )
        .into()),
    }
}

/// An authorization server in this process over the proxy's store.
#[derive(Debug)]
pub struct Minter {
    server: Arc<AuthServer>,
    /// Makes every PKCE verifier different.
    counter: AtomicU64,
}

impl Minter {
    /// Opens the store the proxy made: the database of `settings.store`, else the file under
    /// `settings.state_dir`. Its signing key is the proxy's, so tokens minted here verify
    /// there.
    pub fn open(settings: authz::Settings) -> BenchResult<Self> {
        let store: Arc<dyn Store> = match &settings.store {
            Some(url) => Arc::new(PostgresStore::open(url, Path::new("."))?),
            None => {
                let path = settings.state_dir.join(bearergate::issuer::STORE_FILE);
                Arc::new(SqliteStore::open(&path)?)
            }
        };
        let server = AuthServer::new(settings, store)?;
        Ok(Self {
            server: Arc::new(server),
            counter: AtomicU64::new(0),
        })
    }

    pub fn server(&self) -> &Arc<AuthServer> {
        &self.server
    }

    /// An authorization request checked and approved by [`USER`]: what the sign-in and
    /// consent pages end in.
    pub fn code(&self) -> BenchResult<Code> {
        let seed = format!(
            "bench-{}-{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        );
        let verifier = URL_SAFE_NO_PAD.encode(Sha256::digest(seed.as_bytes()));
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let request = AuthorizationRequest {
            response_type: Some("code".to_owned()),
            client_id: Some(CLIENT_ID.to_owned()),
            redirect_uri: Some(REDIRECT_URI.to_owned()),
            code_challenge: Some(challenge),
            code_challenge_method: Some("S256".to_owned()),
            ..AuthorizationRequest::default()
        };
        let pending = self
            .server
            .authorize(&request)
            .map_err(|e| format!("authorize: {e:?}"))?;
        let url = self
            .server
            .approve(USER, &pending)
            .map_err(|e| format!("approve: {e:?}"))?;
        let code = url
            .split_once('?')
            .map_or("", |(_, query)| query)
            .split('&')
            .find_map(|pair| pair.strip_prefix("code="))
            .ok_or("the approval's redirect has no code")?;
        Ok(Code {
            code: code.to_owned(),
            verifier,
        })
    }

    /// `count` codes.
    pub fn codes(&self, count: usize) -> BenchResult<Vec<Code>> {
        (0..count).map(|_| self.code()).collect()
    }

    /// A new grant's first tokens, redeemed in process.
    pub fn grant(&self) -> BenchResult<TokenResponse> {
        let code = self.code()?;
        Ok(self.server.token(&code.request(), &caller())?)
    }
}

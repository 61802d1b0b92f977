//! Two authorization servers — two instances — over two PostgreSQL stores (each with its
//! own pool) on one real database: whatever one instance does, the other honours at once.
//! A code minted by one is redeemed by the other; a device authorization started on one is
//! approved and polled on the other; a refresh token rotated by one and replayed on the
//! other revokes the family; a grant revoked through one is refused by the other's token
//! check; a token signed with a key the other instance made after a rotation verifies.

#[path = "support/postgres.rs"]
mod test_server;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use authz::model::{
    AuthorizationRequest, ClientCredentials, TokenRejection, TokenRequest, TokenResponse,
};
use authz::store::{PostgresStore, Store, StoreUrl};
use authz::{AuthServer, Settings};
use test_server::TestPostgres;

/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:49152/callback";
const CLIENT: &str = "mail-app";
const LIFETIME: i64 = 600;

/// The database, and two instances over it sharing a clock the test moves.
struct Instances {
    a: AuthServer,
    b: AuthServer,
    now: Arc<AtomicI64>,
    _server: TestPostgres,
}

fn settings() -> Settings {
    toml::from_str(&format!(
        "public_url = \"https://auth.example.test\"\nlisten = \"127.0.0.1:0\"\n\
         state_dir = \"unused\"\nsigning_key_lifetime = \"{LIFETIME}s\"\n"
    ))
    .expect("settings parse")
}

impl Instances {
    fn start() -> Self {
        let server = TestPostgres::start();
        server.create_database("issuer");
        let url = StoreUrl::new(server.url("issuer"));
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let now = Arc::new(AtomicI64::new(i64::try_from(start).expect("time fits")));
        let instance = || {
            let store: Arc<dyn Store> =
                Arc::new(PostgresStore::open(&url, Path::new(".")).expect("store opens"));
            let clock = now.clone();
            AuthServer::new(settings(), store)
                .expect("server starts")
                .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)))
        };
        let (a, b) = (instance(), instance());
        Self {
            a,
            b,
            now,
            _server: server,
        }
    }

    fn advance(&self, seconds: i64) {
        self.now.fetch_add(seconds, Ordering::SeqCst);
    }
}

fn public() -> ClientCredentials {
    ClientCredentials {
        client_id: Some(CLIENT.to_owned()),
        ..ClientCredentials::default()
    }
}

/// `user` approves a PKCE code request on `server`; the code.
fn code_from(server: &AuthServer, user: &str) -> String {
    let request = AuthorizationRequest {
        response_type: Some("code".to_owned()),
        client_id: Some(CLIENT.to_owned()),
        redirect_uri: Some(REDIRECT.to_owned()),
        scope: Some(authz::MAIL_SCOPE.to_owned()),
        state: Some("state".to_owned()),
        code_challenge: Some(CHALLENGE.to_owned()),
        code_challenge_method: Some("S256".to_owned()),
        ..AuthorizationRequest::default()
    };
    let pending = server.authorize(&request).expect("request accepted");
    let redirect = server.approve(user, &pending).expect("approved");
    let url = url::Url::parse(&redirect).expect("redirect URL");
    let code = url.query_pairs().find(|(name, _)| name == "code");
    code.expect("code in the redirect").1.into_owned()
}

fn redeem(server: &AuthServer, code: &str) -> TokenResponse {
    let request = TokenRequest {
        grant_type: Some("authorization_code".to_owned()),
        code: Some(code.to_owned()),
        redirect_uri: Some(REDIRECT.to_owned()),
        code_verifier: Some(VERIFIER.to_owned()),
        ..TokenRequest::default()
    };
    server.token(&request, &public()).expect("code redeemed")
}

fn refresh(server: &AuthServer, token: &str) -> Result<TokenResponse, authz::OAuthError> {
    let request = TokenRequest {
        grant_type: Some("refresh_token".to_owned()),
        refresh_token: Some(token.to_owned()),
        ..TokenRequest::default()
    };
    server.token(&request, &public())
}

fn kid(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt)
        .expect("a JWT")
        .kid
        .expect("a kid")
}

#[test]
fn a_code_minted_by_one_instance_is_redeemed_by_the_other_once() {
    let i = Instances::start();
    let code = code_from(&i.a, "alice");
    let tokens = redeem(&i.b, &code);
    for server in [&i.a, &i.b] {
        let claims = server
            .check_access_token(&tokens.access_token)
            .expect("valid on both instances");
        assert_eq!(claims.user, "alice");
    }
    // The replay on the first instance is refused and revokes what the code started.
    let replay = TokenRequest {
        grant_type: Some("authorization_code".to_owned()),
        code: Some(code),
        redirect_uri: Some(REDIRECT.to_owned()),
        code_verifier: Some(VERIFIER.to_owned()),
        ..TokenRequest::default()
    };
    let refused = i.a.token(&replay, &public()).unwrap_err();
    assert_eq!(refused.code.name(), "invalid_grant");
    assert_eq!(
        i.b.check_access_token(&tokens.access_token),
        Err(TokenRejection::Revoked)
    );
}

#[test]
fn a_refresh_token_rotated_by_one_instance_and_replayed_on_the_other_revokes_the_family() {
    let i = Instances::start();
    let tokens = redeem(&i.a, &code_from(&i.a, "alice"));
    let rotated = refresh(&i.a, &tokens.refresh_token).expect("rotated on A");
    assert!(i.b.check_access_token(&rotated.access_token).is_ok());
    let reuse = refresh(&i.b, &tokens.refresh_token).unwrap_err();
    assert_eq!(reuse.code.name(), "invalid_grant");
    // The whole family is gone, on both instances.
    assert_eq!(
        refresh(&i.a, &rotated.refresh_token)
            .unwrap_err()
            .code
            .name(),
        "invalid_grant"
    );
    for server in [&i.a, &i.b] {
        assert_eq!(
            server.check_access_token(&rotated.access_token),
            Err(TokenRejection::Revoked)
        );
    }
}

#[test]
fn a_grant_revoked_through_one_instance_is_refused_by_the_other_at_once() {
    let i = Instances::start();
    let tokens = redeem(&i.b, &code_from(&i.b, "bob"));
    assert!(i.a.check_access_token(&tokens.access_token).is_ok());
    i.b.revoke(&public(), &tokens.refresh_token)
        .expect("revoked on B");
    assert_eq!(
        i.a.check_access_token(&tokens.access_token),
        Err(TokenRejection::Revoked)
    );
    assert_eq!(
        refresh(&i.a, &tokens.refresh_token)
            .unwrap_err()
            .code
            .name(),
        "invalid_grant"
    );
}

#[test]
fn a_device_authorization_moves_between_instances() {
    let i = Instances::start();
    let started =
        i.a.device_authorization(None, &[], &public())
            .expect("device authorization on A");
    i.b.device_decide(&started.user_code, "carol", true)
        .expect("approved on B");
    let poll = TokenRequest {
        grant_type: Some(authz::DEVICE_CODE_GRANT.to_owned()),
        device_code: Some(started.device_code.clone()),
        ..TokenRequest::default()
    };
    let tokens = i.a.token(&poll, &public()).expect("tokens on A");
    assert_eq!(
        i.b.check_access_token(&tokens.access_token).unwrap().user,
        "carol"
    );
    // Finished once: a second poll, on the other instance, gets nothing.
    i.advance(60);
    assert_eq!(
        i.b.token(&poll, &public()).unwrap_err().code.name(),
        "invalid_grant"
    );
}

#[test]
fn a_key_made_by_one_instance_after_rotation_verifies_on_the_other() {
    let i = Instances::start();
    let before = redeem(&i.a, &code_from(&i.a, "dave"));
    let first = kid(&before.access_token);
    i.advance(LIFETIME);
    i.b.rotate_keys().expect("B rotates");
    let after = redeem(&i.b, &code_from(&i.b, "dave"));
    let second = kid(&after.access_token);
    assert_ne!(second, first, "B signs with its new key");
    // A has not read the new key; the token names it, so A reads the store before refusing.
    assert_eq!(
        i.a.check_access_token(&after.access_token).unwrap().user,
        "dave"
    );
    // A's own rotation finds B's young key and makes none; A signs with it too.
    i.a.rotate_keys().expect("A rotates");
    let from_a = redeem(&i.a, &code_from(&i.a, "dave"));
    assert_eq!(kid(&from_a.access_token), second);
    // The retired key stays trusted and published while its tokens live.
    assert!(i.b.check_access_token(&before.access_token).is_ok());
    for server in [&i.a, &i.b] {
        let jwks = server.jwks();
        let mut kids: Vec<&str> = jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .filter_map(|key| key["kid"].as_str())
            .collect();
        kids.sort_unstable();
        let mut want = [first.as_str(), second.as_str()];
        want.sort_unstable();
        assert_eq!(kids, want);
    }
}

//! `[validator] kind = "jwt"` end to end: tokens signed by keys the test makes, checked against
//! a JWKS discovered from an in-test issuer, then a real Dovecot session behind the proxy.

use serde_json::{json, Value};

use crate::support::jwks::{JwksServer, TestKey};
use crate::support::{
    assert_refused, connect, fetch_first, login, test_message, try_oauthbearer, unix_now, Proxy,
    TestEnv, TlsMode,
};

const AUD: &str = "bearergate";

fn start_proxy(env: &TestEnv, issuer: &str) -> Proxy {
    start_proxy_with(env, issuer, "30s")
}

/// `refetch`: the proxy's `jwks_refetch_interval`.
fn start_proxy_with(env: &TestEnv, issuer: &str, refetch: &str) -> Proxy {
    let issuer = issuer.to_owned();
    env.start_proxy(move |c| {
        c.validator.kind = "jwt".into();
        c.validator.extra.extend([
            format!("issuer = \"{issuer}\""),
            format!("audience = [\"{AUD}\"]"),
            "username_claims = [\"username\"]".to_owned(),
            format!("jwks_refetch_interval = \"{refetch}\""),
        ]);
    })
}

fn claims(issuer: &str, user: &str) -> Value {
    json!({
        "iss": issuer, "aud": AUD, "exp": unix_now() + 600,
        "username": user, "scope": "mail",
    })
}

#[tokio::test]
async fn es256_token_logs_in_and_fetches_byte_identical() {
    let env = TestEnv::new("jwt-login");
    let key = TestKey::es256("k1");
    let issuer = JwksServer::start(&[&key]).await;
    let proxy = start_proxy(&env, &issuer.issuer);
    let delivered = env.dovecot.deliver("alice", &test_message("jwt", 8 * 1024));

    let token = key.sign(&claims(&issuer.issuer, "alice"));
    assert!(
        fetch_first(&env, &proxy, "alice", &token).await == delivered,
        "fetched message differs from delivered"
    );
    assert!(issuer.jwks_hits() >= 1, "JWKS never fetched");
}

#[tokio::test]
async fn foreign_key_and_wrong_audience_are_rejected() {
    let env = TestEnv::new("jwt-reject");
    let key = TestKey::es256("k1");
    let impostor = TestKey::es256("k1-impostor");
    let issuer = JwksServer::start(&[&key]).await;
    let proxy = start_proxy(&env, &issuer.issuer);

    let forged = impostor.sign_as("k1", &claims(&issuer.issuer, "alice"));
    assert_refused(
        &try_oauthbearer(&env, &proxy, "alice", &forged).await,
        "foreign key",
    );

    let mut wrong_aud = claims(&issuer.issuer, "alice");
    wrong_aud["aud"] = json!("someone-else");
    let token = key.sign(&wrong_aud);
    assert_refused(
        &try_oauthbearer(&env, &proxy, "alice", &token).await,
        "wrong aud",
    );
}

#[tokio::test]
async fn rotated_key_is_picked_up_with_one_jwks_fetch() {
    let env = TestEnv::new("jwt-rotate");
    let old = TestKey::es256("old");
    let issuer = JwksServer::start(&[&old]).await;
    // No rate limit, so the rotation needs no waiting; the single-flight still allows
    // only one fetch per unknown kid.
    let proxy = start_proxy_with(&env, &issuer.issuer, "0s");

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(
        &mut client,
        "a",
        "alice",
        &old.sign(&claims(&issuer.issuer, "alice")),
    )
    .await;
    let before = issuer.jwks_hits();
    assert!(before >= 1, "JWKS never fetched");

    let new = TestKey::es256("new");
    issuer.replace_keys(&[&new]);

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(
        &mut client,
        "a",
        "alice",
        &new.sign(&claims(&issuer.issuer, "alice")),
    )
    .await;
    assert_eq!(
        issuer.jwks_hits(),
        before + 1,
        "want exactly one more JWKS fetch"
    );
}

//! The validator's policy and several issuers, end to end in front of Dovecot: user
//! normalisation and mapping decide which mailbox is opened, a mismatch is logged with the
//! claim compared, per-protocol scopes, and JWT plus introspection issuers side by side.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::imap_client::AuthOutcome;
use crate::support::jwks::{JwksServer, TestKey};
use crate::support::userinfo::UserinfoServer;
use crate::support::{
    connect, fetch_first, login, test_message, try_oauthbearer, unix_now, TestEnv, TlsMode,
};

fn challenge_member(outcome: &AuthOutcome, member: &str) -> Option<String> {
    let challenge = outcome.challenge.as_ref()?;
    challenge
        .get(member)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[tokio::test]
async fn normalised_and_mapped_users_open_the_right_mailbox() {
    let env = TestEnv::new("policy-map");
    let proxy = env.start_proxy(|c| {
        c.validator.extra.extend([
            "strip_domains = [\"example.org\"]".to_owned(),
            "lowercase_username = true".to_owned(),
            "user_map = { \"carol@corp.example\" = \"bob\" }".to_owned(),
        ]);
    });
    let for_alice = env.dovecot.deliver("alice", &test_message("alice", 2_048));
    let for_bob = env.dovecot.deliver("bob", &test_message("bob", 3_072));

    // "Alice@Example.ORG" from the identity provider is the mail user "alice".
    let token = env.idp.issue("Alice@Example.ORG");
    assert!(fetch_first(&env, &proxy, "alice", &token).await == for_alice);
    // A client that names the full address gets the same rules applied to its claim.
    assert!(fetch_first(&env, &proxy, "alice@example.org", &token).await == for_alice);

    // carol's token logs in to bob's mailbox: the backend login is the mapped one, while the
    // client names the token's own user.
    let token = env.idp.issue("carol@corp.example");
    assert!(fetch_first(&env, &proxy, "carol@corp.example", &token).await == for_bob);
}

#[tokio::test]
async fn a_mismatch_is_logged_with_the_claim_compared() {
    let env = TestEnv::new("policy-mismatch");
    let proxy = env.start_proxy(|c| {
        c.validator
            .extra
            .push("username_claims = [\"email\", \"username\"]".to_owned());
    });
    let token = env.idp.issue_with("alice", |claims| {
        claims.insert("email".to_owned(), json!("alice@example.org"));
    });
    let outcome = try_oauthbearer(&env, &proxy, "bob@example.org", &token).await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    let line = "claimed user `bob@example.org` is not the token's user `alice@example.org` \
                (from claim `email` of issuer default)";
    assert!(
        proxy.wait_for_log(line, Duration::from_secs(5)),
        "log lacks the explanation: {}",
        proxy.log()
    );
}

#[tokio::test]
async fn protocol_scopes_are_demanded_for_their_protocol() {
    let env = TestEnv::new("policy-scopes");
    let proxy = env.start_proxy(|c| {
        c.validator
            .extra
            .push("protocol_scopes = { imap = \"mail.imap\", smtp = \"mail.send\" }".to_owned());
    });
    let without = env.idp.issue("alice");
    let outcome = try_oauthbearer(&env, &proxy, "alice", &without).await;
    assert_eq!(
        challenge_member(&outcome, "status").as_deref(),
        Some("insufficient_scope"),
        "{outcome:?}"
    );
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );

    let with = env.idp.issue_with("alice", |claims| {
        claims.insert("scope".to_owned(), json!("mail mail.imap"));
    });
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let status = login(&mut client, "a", "alice", &with).await;
    assert_eq!(status.kind, "OK");
}

#[tokio::test]
async fn a_jwt_issuer_and_an_introspection_issuer_side_by_side() {
    let env = TestEnv::new("policy-issuers");
    let key = TestKey::es256("k1");
    let jwt_issuer = JwksServer::start(&[&key]).await;
    let discovery = format!("{}/.well-known/openid-configuration", jwt_issuer.issuer);
    let idp_url = env.idp.url();
    let raw = format!(
        r#"[validator]
cache_max_ttl = "1m"

[[validator.issuers]]
name = "sso"
kind = "jwt"
issuer = "{iss}"
audience = ["bearergate"]
username_claims = ["preferred_username"]
openid_configuration = "{discovery}"
challenge_scope = "mail-jwt"

[[validator.issuers]]
name = "legacy"
kind = "introspection"
introspection_url = "{idp_url}"
client_id = "{id}"
client_secret = "{secret}"
required_scope = "mail"
challenge_scope = "mail"
"#,
        iss = jwt_issuer.issuer,
        id = crate::support::idp::CLIENT_ID,
        secret = crate::support::idp::CLIENT_SECRET,
    );
    let proxy = env.start_proxy(|c| c.validator.raw = Some(raw));
    let delivered = env.dovecot.deliver("alice", &test_message("both", 1_024));

    let jwt = key.sign(&json!({
        "iss": jwt_issuer.issuer, "aud": "bearergate", "exp": unix_now() + 600,
        "preferred_username": "alice",
    }));
    assert!(fetch_first(&env, &proxy, "alice", &jwt).await == delivered);
    assert_eq!(env.idp.requests(), 0, "the JWT went to its own issuer only");

    let opaque = env.idp.issue("alice");
    assert!(fetch_first(&env, &proxy, "alice", &opaque).await == delivered);
    assert_eq!(env.idp.requests(), 1);

    // A refused JWT is told its own issuer's discovery document and scope.
    let expired = key.sign(&json!({
        "iss": jwt_issuer.issuer, "aud": "bearergate", "exp": unix_now() - 3_600,
        "preferred_username": "alice",
    }));
    let outcome = try_oauthbearer(&env, &proxy, "alice", &expired).await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    assert_eq!(
        env.idp.requests(),
        1,
        "a refused JWT is never sent to the other issuer"
    );
    assert_eq!(
        challenge_member(&outcome, "openid-configuration"),
        Some(discovery)
    );
    assert_eq!(
        challenge_member(&outcome, "scope").as_deref(),
        Some("mail-jwt")
    );
    // An unknown opaque token gets the first issuer's.
    let outcome = try_oauthbearer(&env, &proxy, "alice", "not-a-known-token").await;
    assert_eq!(
        challenge_member(&outcome, "scope").as_deref(),
        Some("mail-jwt")
    );
    assert!(proxy.log().contains("logged in"), "{}", proxy.log());
}

#[tokio::test]
async fn userinfo_and_tokeninfo_tokens_log_in() {
    let env = TestEnv::new("policy-userinfo");
    let server = UserinfoServer::start().await;
    let raw = format!(
        r#"[validator]
[[validator.issuers]]
name = "oidc-userinfo"
kind = "userinfo"
userinfo_url = "{base}/userinfo"
username_claims = ["email"]
strip_domains = ["example.org"]

[[validator.issuers]]
name = "google"
kind = "userinfo"
userinfo_url = "{base}/tokeninfo"
userinfo_request = "form"
username_claims = ["email"]
strip_domains = ["example.org"]
allowed_client_ids = ["mail-app.apps.example"]
"#,
        base = server.base
    );
    let proxy = env.start_proxy(|c| c.validator.raw = Some(raw));
    let delivered = env
        .dovecot
        .deliver("alice", &test_message("userinfo", 1_024));

    server.register_userinfo(
        "opaque-userinfo",
        json!({"sub": "1", "email": "alice@example.org"}),
    );
    assert!(fetch_first(&env, &proxy, "alice", "opaque-userinfo").await == delivered);

    // Google's tokeninfo: exp and expires_in as strings, azp names the app.
    let exp = (unix_now() + 600).to_string();
    server.register_tokeninfo(
        "ya29.tokeninfo",
        json!({"azp": "mail-app.apps.example", "aud": "mail-app.apps.example",
               "email": "alice@example.org", "email_verified": "true",
               "exp": exp, "expires_in": "600", "scope": "https://mail.google.com/"}),
    );
    assert!(fetch_first(&env, &proxy, "alice", "ya29.tokeninfo").await == delivered);

    // A token of another app is refused even though tokeninfo knows it.
    server.register_tokeninfo(
        "ya29.other-app",
        json!({"azp": "someone-else", "email": "alice@example.org", "exp": exp}),
    );
    let outcome = try_oauthbearer(&env, &proxy, "alice", "ya29.other-app").await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    assert!(
        proxy.wait_for_log("issued to client \"someone-else\"", Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    // An address Google has not verified names nobody.
    server.register_tokeninfo(
        "ya29.unverified",
        json!({"azp": "mail-app.apps.example", "email": "alice@example.org",
               "email_verified": "false", "exp": exp}),
    );
    let outcome = try_oauthbearer(&env, &proxy, "alice", "ya29.unverified").await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    assert!(
        proxy.wait_for_log("email address is not verified", Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    // Unknown to both: 401 and 400 are refusals, not outages.
    let outcome = try_oauthbearer(&env, &proxy, "alice", "nobody-knows-me").await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    // userinfo knows 1 of the 5 tokens; tokeninfo is asked about the other 4.
    assert_eq!(server.requests(), 5 + 4);
}

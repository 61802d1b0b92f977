//! Against a real third-party issuer, npm's `oidc-provider` (`tests/oidc`): its JWT access
//! tokens (RFC 9068, found through discovery and its JWKS, including a key rotation while the
//! proxy runs) and its opaque tokens (RFC 7662 introspection) log in through the proxy to a
//! real Dovecot; tokens for another resource are refused.

use std::time::Duration;

use serde_json::json;

use crate::support::imap_client::AuthOutcome;
use crate::support::oidc_provider::{
    jwt_parts, OidcProvider, INTROSPECTION_CLIENT_ID, INTROSPECTION_CLIENT_SECRET, MAIL_CLIENT_ID,
    MAIL_USER, OTHER_RESOURCE, RESOURCE,
};
use crate::support::{assert_refused, fetch_first, test_message, try_oauthbearer, Proxy, TestEnv};

/// The provider logs a request as it arrives, before answering it: by the time the proxy
/// has its answer the line is in the pipe, and this bounds only the reader thread.
const LOG_DEADLINE: Duration = Duration::from_secs(5);

/// The proxy validating the provider's JWTs for [`RESOURCE`]; `refetch` is its
/// `jwks_refetch_interval`.
fn start_jwt_proxy(env: &TestEnv, provider: &OidcProvider, refetch: &str) -> Proxy {
    let issuer = provider.issuer().to_owned();
    let refetch = refetch.to_owned();
    env.start_proxy(move |c| {
        c.validator.kind = "jwt".into();
        c.validator.required_scope = "mail".into();
        c.validator.extra.extend([
            format!("issuer = \"{issuer}\""),
            format!("audience = [\"{RESOURCE}\"]"),
            "username_claims = [\"username\"]".to_owned(),
            "require_typ = \"at+jwt\"".to_owned(),
            format!("jwks_refetch_interval = \"{refetch}\""),
        ]);
    })
}

fn assert_accepted(outcome: &AuthOutcome, what: &str) {
    assert!(
        outcome.challenge.is_none() && outcome.tagged.kind == "OK",
        "{what}: want OK: {outcome:?}"
    );
}

fn kid(token: &str) -> String {
    let (header, _) = jwt_parts(token);
    header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("JWT header without kid: {header}"))
        .to_owned()
}

#[tokio::test]
async fn jwt_access_token_logs_in_and_fetches_byte_identical() {
    let env = TestEnv::new("oidc-jwt");
    let provider = OidcProvider::start();
    let proxy = start_jwt_proxy(&env, &provider, "30s");
    let delivered = env
        .dovecot
        .deliver(MAIL_USER, &test_message("oidc-provider jwt", 8 * 1024));

    let token = provider.client_credentials_token(Some(RESOURCE));
    // What makes this an RFC 9068 token for the proxy, as the provider made it.
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(claims["iss"], provider.issuer(), "{claims}");
    assert_eq!(claims["aud"], RESOURCE, "{claims}");
    assert_eq!(claims["scope"], "mail", "{claims}");
    assert_eq!(claims["username"], MAIL_USER, "{claims}");
    assert_eq!(claims["client_id"], MAIL_CLIENT_ID, "{claims}");

    assert!(
        fetch_first(&env, &proxy, MAIL_USER, &token).await == delivered,
        "fetched message differs from delivered"
    );
    assert!(
        provider.wait_for_log("GET /jwks", LOG_DEADLINE),
        "the proxy never fetched the provider's JWKS; provider log:\n{}",
        provider.log()
    );
}

#[tokio::test]
async fn opaque_token_logs_in_through_introspection() {
    let env = TestEnv::new("oidc-introspect");
    let provider = OidcProvider::start();
    let introspection_url = provider.introspection_url();
    let proxy = env.start_proxy(|c| {
        c.validator.kind = "introspection".into();
        c.validator.introspection_url = introspection_url;
        c.validator.client_id = INTROSPECTION_CLIENT_ID.into();
        c.validator.client_secret = INTROSPECTION_CLIENT_SECRET.into();
        c.validator.username_claim = "username".into();
        c.validator.required_scope = "mail".into();
    });
    let delivered = env
        .dovecot
        .deliver(MAIL_USER, &test_message("oidc-provider opaque", 8 * 1024));

    let token = provider.client_credentials_token(None);
    assert_eq!(
        token.matches('.').count(),
        0,
        "want an opaque token without a resource indicator: {token:?}"
    );
    assert!(
        fetch_first(&env, &proxy, MAIL_USER, &token).await == delivered,
        "fetched message differs from delivered"
    );
    assert!(
        provider.wait_for_log("POST /token/introspection", LOG_DEADLINE),
        "the proxy never introspected; provider log:\n{}",
        provider.log()
    );
    assert!(
        !provider.log().contains("introspection.error"),
        "the provider refused an introspection request (client authentication?):\n{}",
        provider.log()
    );

    // A token the provider never issued: it answers {"active": false}.
    let unknown = "x".repeat(token.len());
    assert_refused(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &unknown).await,
        "unknown token",
    );

    // A JWT it issued: it will not introspect it (HTTP 400 unsupported_token_type). That is
    // a refused token, not an outage: NO [AUTHENTICATIONFAILED], never [UNAVAILABLE].
    let jwt = provider.client_credentials_token(Some(RESOURCE));
    assert_refused(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &jwt).await,
        "JWT at introspection",
    );
}

#[tokio::test]
async fn rotated_keys_are_followed_and_retired_keys_refused() {
    let env = TestEnv::new("oidc-rotate");
    let provider = OidcProvider::start();
    // No rate limit on JWKS refetches, so an unknown kid is looked up at once.
    let proxy = start_jwt_proxy(&env, &provider, "0s");

    let first = provider.client_credentials_token(Some(RESOURCE));
    // Tokens of the first key the proxy has not seen yet (the cache would answer for `first`).
    let first_during_grace = provider.client_credentials_token(Some(RESOURCE));
    let first_after_retire = provider.client_credentials_token(Some(RESOURCE));
    let first_kid = kid(&first);
    assert_eq!(provider.jwks_kids(), [first_kid.as_str()]);
    assert_accepted(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &first).await,
        "first key",
    );

    // Graceful rotation: the new key signs, the old one stays published.
    let second_kid = provider.rotate_keys_keeping_old();
    assert_ne!(second_kid, first_kid);
    assert_eq!(
        provider.jwks_kids(),
        [second_kid.as_str(), first_kid.as_str()]
    );
    let second = provider.client_credentials_token(Some(RESOURCE));
    let second_after_retire = provider.client_credentials_token(Some(RESOURCE));
    assert_eq!(kid(&second), second_kid, "token not signed by the new key");
    assert_accepted(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &second).await,
        "second key",
    );
    assert_eq!(kid(&first_during_grace), first_kid);
    assert_accepted(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &first_during_grace).await,
        "first key while still published",
    );

    // Hard rotation: only the third key is published. Its token makes the proxy refetch the
    // JWKS, after which tokens of the retired keys must fail.
    let third_kid = provider.rotate_keys();
    assert_eq!(provider.jwks_kids(), [third_kid.as_str()]);
    let third = provider.client_credentials_token(Some(RESOURCE));
    assert_eq!(kid(&third), third_kid, "token not signed by the newest key");
    assert_accepted(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &third).await,
        "third key",
    );
    assert_refused(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &first_after_retire).await,
        "first key after it was retired",
    );
    assert_refused(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &second_after_retire).await,
        "second key after it was retired",
    );
}

#[tokio::test]
async fn tokens_for_another_resource_or_without_mail_scope_are_refused() {
    let env = TestEnv::new("oidc-reject");
    let provider = OidcProvider::start();
    let proxy = start_jwt_proxy(&env, &provider, "30s");

    let other = provider.client_credentials_token(Some(OTHER_RESOURCE));
    let (_, claims) = jwt_parts(&other);
    assert_eq!(claims["aud"], OTHER_RESOURCE, "{claims}");
    assert_eq!(claims["username"], MAIL_USER, "{claims}");
    assert_refused(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &other).await,
        "other audience",
    );

    // Right audience, but the client asked for no scope, so the token has none.
    let answer =
        provider.token_request(&[("grant_type", "client_credentials"), ("resource", RESOURCE)]);
    let unscoped = answer["access_token"].as_str().expect("access_token");
    let (_, claims) = jwt_parts(unscoped);
    assert_eq!(claims.get("scope"), None, "{claims}");
    assert_eq!(claims["aud"], json!(RESOURCE), "{claims}");
    assert_refused(
        &try_oauthbearer(&env, &proxy, MAIL_USER, unscoped).await,
        "no mail scope",
    );

    // The proxy's own audience works on the same proxy, so the refusals above were not
    // caused by a broken set-up.
    let good = provider.client_credentials_token(Some(RESOURCE));
    assert_accepted(
        &try_oauthbearer(&env, &proxy, MAIL_USER, &good).await,
        "right audience",
    );
}

//! The JSON endpoints.

mod common;

use axum::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn metadata_and_jwks() {
    let h = harness(Options::default());
    let metadata = Call::get("/.well-known/oauth-authorization-server")
        .send(&h.router)
        .await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert!(metadata
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let json = metadata.json();
    assert_eq!(json["issuer"], ISSUER);
    assert_eq!(json["token_endpoint"], format!("{ISSUER}/auth/token"));

    let openid = Call::get("/.well-known/openid-configuration")
        .send(&h.router)
        .await;
    assert_eq!(openid.status, StatusCode::OK);
    assert_eq!(openid.json()["issuer"], ISSUER);

    let jwks = Call::get("/auth/jwks.json").send(&h.router).await;
    assert_eq!(jwks.status, StatusCode::OK);
    assert!(jwks.json()["keys"]
        .as_array()
        .is_some_and(|keys| !keys.is_empty()));
}

#[tokio::test(flavor = "multi_thread")]
async fn token_errors_are_json_and_never_cached() {
    let h = harness(Options::default());
    let cases = [
        Call::post("/auth/token", &[("grant_type", "password")]),
        Call::post(
            "/auth/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", "nope"),
                ("client_id", "x"),
            ],
        ),
        // A repeated parameter.
        Call::post_raw(
            "/auth/token",
            "application/x-www-form-urlencoded",
            "grant_type=refresh_token&grant_type=refresh_token",
        ),
        // Not a form.
        Call::post_raw("/auth/token", "application/json", "{}"),
    ];
    let expected = [
        "unsupported_grant_type",
        "invalid_grant",
        "invalid_request",
        "invalid_request",
    ];
    for (call, code) in cases.into_iter().zip(expected) {
        let reply = call.send(&h.router).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{code}: {}",
            reply.body
        );
        assert_eq!(reply.json()["error"], code, "{}", reply.body);
        assert!(reply.json()["error_description"].is_string());
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        assert_eq!(reply.header("pragma"), Some("no-cache"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_and_body_secrets_together_are_refused() {
    let h = harness(Options::default());
    let basic = format!("Basic {}", STANDARD.encode("app:secret"));
    let reply = Call::post(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_secret", "secret"),
        ],
    )
    .header("authorization", &basic)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_client_via_basic_is_401_with_a_challenge() {
    let h = harness(Options::default());
    let secret = h
        .server
        .add_client(
            "conf",
            &["https://app.example/cb".to_owned()],
            Some("App"),
            true,
        )
        .expect("client")
        .expect("a secret");
    // Percent-encoded per RFC 6749 §2.3.1; a wrong secret.
    let basic = format!("Basic {}", STANDARD.encode(format!("conf:{}x", secret)));
    let reply = Call::post(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "whatever"),
        ],
    )
    .header("authorization", &basic)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert_eq!(reply.json()["error"], "invalid_client");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Basic realm=\"bearergate\"")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));

    // The right secret through Basic gets past client authentication (then the grant fails).
    let basic = format!("Basic {}", STANDARD.encode(format!("conf:{secret}")));
    let reply = Call::post(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "whatever"),
        ],
    )
    .header("authorization", &basic)
    .send(&h.router)
    .await;
    assert_eq!(reply.json()["error"], "invalid_grant", "{}", reply.body);

    // Introspection with the right credentials; an unknown token is inactive.
    let reply = Call::post(
        "/auth/introspect",
        &[("token", "unknown"), ("token_type_hint", "x")],
    )
    .header("authorization", &basic)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["active"], false);

    // Revocation of an unknown token: 200, empty.
    let reply = Call::post("/auth/revoke", &[("token", "unknown")])
        .header("authorization", &basic)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_refused() {
    let h = harness(Options::default());
    let big = format!("grant_type=x&pad={}", "a".repeat(70_000));
    let reply = Call::post_raw("/auth/token", "application/x-www-form-urlencoded", big)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["error"], "invalid_request");
}

#[tokio::test(flavor = "multi_thread")]
async fn device_authorization_answers_with_codes() {
    let h = harness(Options::default());
    let reply = Call::post(
        "/auth/device",
        &[("client_id", "cli-tool"), ("scope", MAIL)],
    )
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let json = reply.json();
    assert!(json["device_code"].is_string());
    let user_code = json["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(
        json["verification_uri"],
        format!("{ISSUER}/auth/device/verify")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_needs_a_valid_bearer_token() {
    let h = harness(Options::default());
    let none = Call::get("/auth/userinfo").send(&h.router).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let bad = Call::get("/auth/userinfo")
        .header("authorization", "Bearer not-a-token")
        .send(&h.router)
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bad.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
}

fn registration(redirect: &str) -> String {
    serde_json::json!({
        "client_name": "Registered",
        "redirect_uris": [redirect],
        "token_endpoint_auth_method": "none",
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn registration_needs_a_key_unless_anonymous() {
    let h = harness(Options::default());
    // Not a native client (an https redirect): the open native registration does not apply.
    let body = registration("https://app.example/cb");
    let reply = Call::post_raw("/auth/register", "application/json", body.clone())
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    let wrong = Call::post_raw("/auth/register", "application/json", body.clone())
        .header("authorization", "Bearer bgk_wrong")
        .send(&h.router)
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    assert!(wrong
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    let key = h
        .server
        .create_api_key(&[authz::store::PERMISSION_CLIENT_REGISTRATION.to_owned()])
        .expect("key");
    let reply = Call::post_raw("/auth/register", "application/json", body)
        .header("authorization", &format!("Bearer {key}"))
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert!(reply.json()["client_id"].is_string());

    let broken = Call::post_raw("/auth/register", "application/json", "{not json")
        .header("authorization", &format!("Bearer {key}"))
        .send(&h.router)
        .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    assert_eq!(broken.json()["error"], "invalid_client_metadata");
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_registration_is_rate_limited_per_address() {
    let h = harness(Options {
        anonymous_registration: true,
        ..Options::default()
    });
    let body = registration("https://app.example/cb");
    for _ in 0..10 {
        let reply = Call::post_raw("/auth/register", "application/json", body.clone())
            .peer("198.51.100.1:5000")
            .send(&h.router)
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    }
    let limited = Call::post_raw("/auth/register", "application/json", body.clone())
        .peer("198.51.100.1:5001")
        .send(&h.router)
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.json()["error"], "temporarily_unavailable");
    assert!(limited.header("retry-after").is_some());
    // Another address is not affected.
    let other = Call::post_raw("/auth/register", "application/json", body)
        .peer("198.51.100.2:5000")
        .send(&h.router)
        .await;
    assert_eq!(other.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread")]
async fn device_authorization_is_limited_per_address_without_a_secret() {
    // Anyone may start a device authorization for any public client id: each one is a row
    // in the store and a live user code, so they are limited per address.
    let h = harness(Options::default());
    let start = |peer: &'static str| {
        let router = h.router.clone();
        async move {
            Call::post(
                "/auth/device",
                &[("client_id", "cli-tool"), ("scope", MAIL)],
            )
            .peer(peer)
            .send(&router)
            .await
        }
    };
    let mut limited = None;
    for attempt in 0..200 {
        let reply = start("203.0.113.9:4000").await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((attempt, reply));
            break;
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let (attempt, reply) = limited.expect("the device endpoint is limited");
    assert!(
        attempt >= 10,
        "a few devices per address are fine: {attempt}"
    );
    assert_eq!(reply.json()["error"], "temporarily_unavailable");
    assert!(reply.header("retry-after").is_some());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    // Another address is not affected.
    assert_eq!(start("203.0.113.10:4000").await.status, StatusCode::OK);
}

//! The mail-client OAuth profile over HTTP: open native registration (no key, rate-limited
//! apart), repeatable RFC 8707 `resource` through the pages and the token and device
//! endpoints, and `invalid_target`.

mod common;

use authz::resource::MailResource;
use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;

const REDIRECT: &str = "http://127.0.0.1:8123/cb";
const IMAP: &str = "imap://mail.example.test";
const SMTP: &str = "smtp://mail.example.test";

fn options() -> Options {
    let service = |scheme: &str, port| MailResource {
        scheme: scheme.to_owned(),
        host: "mail.example.test".to_owned(),
        port,
    };
    Options {
        mail_resources: vec![service("imap", 993), service("smtp", 465)],
        ..Options::default()
    }
}

fn native_registration() -> String {
    serde_json::json!({
        "client_name": "Native Mail",
        "redirect_uris": ["http://127.0.0.1/cb"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token",
                        "urn:ietf:params:oauth:grant-type:device_code"],
    })
    .to_string()
}

async fn register(h: &Harness, peer: &str) -> Reply {
    Call::post_raw("/auth/register", "application/json", native_registration())
        .peer(peer)
        .send(&h.router)
        .await
}

fn aud(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("three parts");
    let bytes = URL_SAFE_NO_PAD.decode(part).expect("base64url");
    serde_json::from_slice::<serde_json::Value>(&bytes).expect("claims")["aud"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn native_clients_register_without_a_key_and_are_limited_apart() {
    let h = harness(options());
    let reply = register(&h, "198.51.100.7:5000").await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    let json = reply.json();
    assert!(json["client_id"].as_str().unwrap().starts_with("bgn1."));
    assert!(json.get("client_secret").is_none());
    assert!(h.server.clients().unwrap().is_empty(), "nothing stored");

    for _ in 1..30 {
        assert_eq!(
            register(&h, "198.51.100.7:5001").await.status,
            StatusCode::CREATED
        );
    }
    let limited = register(&h, "198.51.100.7:5002").await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert!(limited.header("retry-after").is_some());
    assert_eq!(
        register(&h, "198.51.100.8:5000").await.status,
        StatusCode::CREATED
    );

    // Without a key, anything but a public native client is refused as before (401, and
    // it spends no bucket).
    let web = serde_json::json!({
        "redirect_uris": ["https://app.example/cb"],
        "token_endpoint_auth_method": "none",
    })
    .to_string();
    let reply = Call::post_raw("/auth/register", "application/json", web)
        .peer("198.51.100.9:5000")
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
    assert!(reply
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
}

#[tokio::test(flavor = "multi_thread")]
async fn resources_travel_through_sign_in_and_consent_into_the_token() {
    let h = harness(options());
    let client_id = register(&h, "198.51.100.7:5000").await.json()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (verifier, challenge) = pkce();
    let start = format!(
        "/auth/authorize?{}",
        query(&[
            ("response_type", "code"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("scope", MAIL),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", IMAP),
            ("resource", SMTP),
        ])
    );
    // Through the sign-in page and back: both resources survive the return path.
    let reply = Call::get(&start).send(&h.router).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(url_params(reply.location())["return_to"], start);
    let cookie = sign_in(&h.router).await;
    let consent = Call::get(&start).cookie(&cookie).send(&h.router).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.body.contains("Native Mail"), "{}", consent.body);
    assert!(consent.body.contains("unverified"), "{}", consent.body);
    let mut form = consent.fields();
    let resources: Vec<&str> = form
        .iter()
        .filter(|(name, _)| name == "resource")
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(resources, [IMAP, SMTP]);
    form.push(("action".into(), "approve".into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let reply = Call::post("/auth/authorize", &pairs)
        .cookie(&cookie)
        .header("origin", ISSUER)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let code = url_params(reply.location())["code"].clone();

    // The token endpoint takes `resource` more than once, too: here it narrows to IMAP.
    let tokens = Call::post(
        "/auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", &client_id),
            ("resource", IMAP),
            ("resource", IMAP),
        ],
    )
    .send(&h.router)
    .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let json = tokens.json();
    assert_eq!(aud(json["access_token"].as_str().unwrap()), IMAP);
    let refresh_token = json["refresh_token"].as_str().unwrap().to_owned();

    // A refresh gets the whole grant back; one naming another host is invalid_target.
    let wider = Call::post(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", &client_id),
            ("resource", "imap://elsewhere.example"),
        ],
    )
    .send(&h.router)
    .await;
    assert_eq!(wider.status, StatusCode::BAD_REQUEST, "{}", wider.body);
    assert_eq!(wider.json()["error"], "invalid_target");
    let refreshed = Call::post(
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", &client_id),
        ],
    )
    .send(&h.router)
    .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let access = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(aud(&access), serde_json::json!([IMAP, SMTP]));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_resources_are_invalid_target_everywhere() {
    let h = harness(options());
    let cookie = sign_in(&h.router).await;
    let (_, challenge) = pkce();
    let start = format!(
        "/auth/authorize?{}",
        query(&[
            ("response_type", "code"),
            ("client_id", "some-cli"),
            ("redirect_uri", REDIRECT),
            ("state", "s"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("resource", "imap://elsewhere.example"),
        ])
    );
    let reply = Call::get(&start).cookie(&cookie).send(&h.router).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(reply.location().starts_with(REDIRECT));
    assert_eq!(url_params(reply.location())["error"], "invalid_target");

    let device = Call::post(
        "/auth/device",
        &[
            ("client_id", "tv-app"),
            ("resource", "smtp://mail.example.test#x"),
        ],
    )
    .send(&h.router)
    .await;
    assert_eq!(device.status, StatusCode::BAD_REQUEST, "{}", device.body);
    assert_eq!(device.json()["error"], "invalid_target");
    let device = Call::post(
        "/auth/device",
        &[
            ("client_id", "tv-app"),
            ("resource", SMTP),
            ("resource", IMAP),
        ],
    )
    .send(&h.router)
    .await;
    assert_eq!(device.status, StatusCode::OK, "{}", device.body);
}

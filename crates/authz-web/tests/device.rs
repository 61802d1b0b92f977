//! The device flow through the pages.

mod common;

use axum::http::StatusCode;
use common::*;

async fn start_device(h: &Harness) -> (String, String) {
    let reply = Call::post(
        "/auth/device",
        &[("client_id", "cli-tool"), ("scope", MAIL)],
    )
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let json = reply.json();
    (
        json["device_code"].as_str().unwrap().to_owned(),
        json["user_code"].as_str().unwrap().to_owned(),
    )
}

async fn poll(h: &Harness, device_code: &str) -> Reply {
    Call::post(
        "/auth/token",
        &[
            ("grant_type", authz::DEVICE_CODE_GRANT),
            ("device_code", device_code),
            ("client_id", "cli-tool"),
        ],
    )
    .send(&h.router)
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_with_a_sloppily_typed_code() {
    let h = harness(Options::default());
    let (device_code, user_code) = start_device(&h).await;

    // Not signed in: sign-in first, coming back with the code.
    let link = format!(
        "/auth/device/verify?{}",
        query(&[("user_code", &user_code)])
    );
    let reply = Call::get(&link).send(&h.router).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(url_params(reply.location())["return_to"], link);

    let cookie = sign_in(&h.router).await;
    let entry = Call::get("/auth/device/verify")
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(entry.status, StatusCode::OK);
    for needle in [
        "XXXX-XXXX",
        "<label for=\"user_code\">",
        "autocomplete=\"off\"",
        "autocapitalize=\"characters\"",
    ] {
        assert!(entry.body.contains(needle), "{needle}:\n{}", entry.body);
    }
    let csrf = entry.field("csrf").unwrap();
    assert_eq!(entry.field("action").as_deref(), Some("lookup"));

    // Typed in lower case without the dash: found, and shown with a GET.
    let sloppy = user_code.replace('-', "").to_lowercase();
    let reply = Call::post(
        "/auth/device/verify",
        &[
            ("csrf", &csrf),
            ("action", "lookup"),
            ("user_code", &sloppy),
        ],
    )
    .cookie(&cookie)
    .header("origin", ISSUER)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let confirm_uri = reply.location().to_owned();
    assert_eq!(url_params(&confirm_uri)["user_code"], user_code);

    let confirm = Call::get(&confirm_uri)
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    for needle in [
        user_code.as_str(),
        "cli-tool",
        "unverified",
        "read and send your mail",
    ] {
        assert!(confirm.body.contains(needle), "{needle}:\n{}", confirm.body);
    }
    assert_eq!(
        confirm.field("user_code").as_deref(),
        Some(user_code.as_str())
    );

    // Before approval the client waits.
    assert_eq!(
        poll(&h, &device_code).await.json()["error"],
        "authorization_pending"
    );

    let reply = Call::post(
        "/auth/device/verify",
        &[
            ("csrf", &csrf),
            ("action", "approve"),
            ("user_code", &user_code),
        ],
    )
    .cookie(&cookie)
    .header("origin", ISSUER)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/auth/device/verify?done=approved");
    let done = Call::get(reply.location())
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert!(done.body.contains("You can return to your device"));

    h.advance(11);
    let tokens = poll(&h, &device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert!(tokens.json()["access_token"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_from_the_confirmation() {
    let h = harness(Options::default());
    let (device_code, user_code) = start_device(&h).await;
    let cookie = sign_in(&h.router).await;
    let link = format!(
        "/auth/device/verify?{}",
        query(&[("user_code", &user_code)])
    );
    let confirm = Call::get(&link).cookie(&cookie).send(&h.router).await;
    let reply = Call::post(
        "/auth/device/verify",
        &[
            ("csrf", &confirm.field("csrf").unwrap()),
            ("action", "deny"),
            ("user_code", &user_code),
        ],
    )
    .cookie(&cookie)
    .send(&h.router)
    .await;
    assert_eq!(reply.location(), "/auth/device/verify?done=denied");
    let done = Call::get(reply.location())
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert!(done.body.contains("denied"));
    assert_eq!(
        poll(&h, &device_code).await.json()["error"],
        "access_denied"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_lock_entry_after_max_attempts() {
    let h = harness(Options::default());
    let (_, user_code) = start_device(&h).await;
    let cookie = sign_in(&h.router).await;
    let entry = Call::get("/auth/device/verify")
        .cookie(&cookie)
        .send(&h.router)
        .await;
    let csrf = entry.field("csrf").unwrap();
    let max = h.server.settings().max_attempts;
    let guess = |code: &'static str| {
        let (router, cookie, csrf) = (h.router.clone(), cookie.clone(), csrf.clone());
        async move {
            Call::post(
                "/auth/device/verify",
                &[("csrf", &csrf), ("action", "lookup"), ("user_code", code)],
            )
            .cookie(&cookie)
            .send(&router)
            .await
        }
    };
    for attempt in 1..max {
        let reply = guess("WXYZ-WXYZ").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "attempt {attempt}");
        assert_eq!(reply.field("user_code").as_deref(), Some("WXYZ-WXYZ"));
    }
    let last = guess("WXYZ-WXYZ").await;
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.body.contains("Too many wrong codes"));
    assert!(
        last.field("user_code").is_none(),
        "no entry form when locked"
    );

    // Now even the right code is refused in this session, by lookup, link or approval.
    let right = Call::post(
        "/auth/device/verify",
        &[
            ("csrf", &csrf),
            ("action", "approve"),
            ("user_code", &user_code),
        ],
    )
    .cookie(&cookie)
    .send(&h.router)
    .await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    let link = format!(
        "/auth/device/verify?{}",
        query(&[("user_code", &user_code)])
    );
    let right = Call::get(&link).cookie(&cookie).send(&h.router).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);

    // Another session is not locked.
    let other = sign_in(&h.router).await;
    let fine = Call::get(&link).cookie(&other).send(&h.router).await;
    assert_eq!(fine.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_are_also_counted_per_address() {
    let h = harness(Options::default());
    let max = h.server.settings().max_attempts;
    let mut refused = false;
    // Fresh sessions each time, one address: the address bucket ends it.
    'sessions: for _ in 0..20 {
        let cookie = sign_in(&h.router).await;
        let entry = Call::get("/auth/device/verify")
            .cookie(&cookie)
            .send(&h.router)
            .await;
        let csrf = entry.field("csrf").unwrap();
        for _ in 0..max {
            let reply = Call::post(
                "/auth/device/verify",
                &[
                    ("csrf", &csrf),
                    ("action", "lookup"),
                    ("user_code", "WXYZ-WXYZ"),
                ],
            )
            .cookie(&cookie)
            .peer("203.0.113.9:1234")
            .send(&h.router)
            .await;
            if reply.status == StatusCode::TOO_MANY_REQUESTS
                && reply.body.contains("from your network")
            {
                refused = true;
                break 'sessions;
            }
        }
    }
    assert!(refused, "the per-address limit stepped in");
}

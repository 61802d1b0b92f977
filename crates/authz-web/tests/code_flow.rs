//! The authorization code flow with PKCE through the pages, as a browser and a client do it.

mod common;

use axum::http::StatusCode;
use common::*;

const REDIRECT: &str = "http://127.0.0.1:8123/cb";

fn authorize_uri(client_id: &str, challenge: &str, redirect: &str) -> String {
    format!(
        "/auth/authorize?{}",
        query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", &format!("openid {MAIL}")),
            ("state", "st<a>te"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_through_the_pages() {
    let h = harness(Options::default());
    h.server
        .add_client(
            "thunder",
            &["http://127.0.0.1/cb".to_owned()],
            Some("Thunder Mail"),
            false,
        )
        .expect("client");
    let (verifier, challenge) = pkce();
    let start = authorize_uri("thunder", &challenge, REDIRECT);

    // Not signed in: off to the sign-in page, which comes back here.
    let reply = Call::get(&start).send(&h.router).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let signin = reply.location().to_owned();
    assert!(signin.starts_with("/auth/signin?return_to="), "{signin}");
    assert_eq!(url_params(&signin)["return_to"], start);

    // The sign-in page: a cookie, a CSRF token, the return path, accessible fields.
    let page = Call::get(&signin).send(&h.router).await;
    assert_eq!(page.status, StatusCode::OK);
    let first_cookie = page.cookie().expect("cookie on the first page");
    let csrf = page.field("csrf").expect("csrf");
    assert_eq!(page.field("return_to").as_deref(), Some(start.as_str()));
    for needle in [
        "<html lang=\"en\">",
        "<main>",
        "<label for=\"username\">",
        "<label for=\"password\">",
        "name=\"username\"",
        "type=\"password\"",
    ] {
        assert!(
            page.body.contains(needle),
            "{needle} missing:\n{}",
            page.body
        );
    }
    assert!(!page.body.contains("<script"));

    // Sign in (user name typed in another case): 303 back, with a NEW session id.
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &csrf),
            ("return_to", &start),
            ("username", " Alice "),
            ("password", PASSWORD),
        ],
    )
    .cookie(&first_cookie)
    .header("origin", ISSUER)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(reply.location(), start);
    let cookie = reply.cookie().expect("a rotated cookie");
    assert_ne!(
        cookie, first_cookie,
        "the session id must change at sign-in"
    );

    // The old id is worth nothing now.
    let stale = Call::get(&start)
        .cookie(&first_cookie)
        .send(&h.router)
        .await;
    assert_eq!(stale.status, StatusCode::SEE_OTHER);
    assert!(stale.location().starts_with("/auth/signin"));

    // The consent page.
    let consent = Call::get(&start).cookie(&cookie).send(&h.router).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    for needle in [
        "Thunder Mail",
        "thunder",
        "127.0.0.1",
        "know who you are",
        "read and send your mail",
        "alice",
        "<a href=\"/auth/signout\">not you? sign out</a>",
        "<form method=\"post\" action=\"/auth/authorize\">",
        "value=\"approve\"",
        "value=\"deny\"",
    ] {
        assert!(consent.body.contains(needle), "{needle}:\n{}", consent.body);
    }
    assert!(
        !consent.body.contains("unverified"),
        "an admin's client is verified"
    );
    // The state is escaped in the hidden field, and comes back intact.
    assert!(consent.body.contains("st&lt;a&gt;te"));
    let fields = consent.fields();
    let names: Vec<&str> = fields.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
            "csrf"
        ]
    );

    // Approve: 303 to the client with code, state and iss.
    let mut form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    form.push(("action", "approve"));
    let reply = Call::post("/auth/authorize", &form)
        .cookie(&cookie)
        .header("origin", ISSUER)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let back = reply.location().to_owned();
    assert!(back.starts_with(REDIRECT), "{back}");
    let params = url_params(&back);
    assert_eq!(params["state"], "st<a>te");
    assert_eq!(params["iss"], ISSUER);
    let code = params["code"].clone();

    // The client redeems the code.
    let tokens = Call::post(
        "/auth/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
            ("client_id", "thunder"),
        ],
    )
    .send(&h.router)
    .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    assert_eq!(tokens.header("cache-control"), Some("no-store"));
    assert_eq!(tokens.header("pragma"), Some("no-cache"));
    let json = tokens.json();
    let access = json["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["id_token"].is_string());

    // Userinfo with it.
    let info = Call::get("/auth/userinfo")
        .header("authorization", &format!("Bearer {access}"))
        .send(&h.router)
        .await;
    assert_eq!(info.status, StatusCode::OK, "{}", info.body);
    assert_eq!(info.json()["sub"], "alice");

    // A second run asks again: a loopback redirect cannot prove who the client is.
    let (_, challenge) = pkce();
    let again = authorize_uri("thunder", &challenge, REDIRECT);
    let reply = Call::get(&again).cookie(&cookie).send(&h.router).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.body.contains("value=\"approve\""));
}

/// Approves the consent page `page` shows; the Location it answers with.
async fn approve(h: &Harness, cookie: &str, page: &Reply) -> String {
    let mut form: Vec<(String, String)> = page.fields();
    form.push(("action".into(), "approve".into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let reply = Call::post("/auth/authorize", &pairs)
        .cookie(cookie)
        .header("origin", ISSUER)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    reply.location().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn remembered_consent_skips_the_page() {
    let h = harness(Options::default());
    let web = "https://webmail.example/cb";
    h.server
        .add_client("webmail", &[web.to_owned()], Some("Webmail"), false)
        .expect("client");
    let cookie = sign_in(&h.router).await;
    let (_, challenge) = pkce();
    let start = authorize_uri("webmail", &challenge, web);
    let consent = Call::get(&start).cookie(&cookie).send(&h.router).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    // The consent page may send the browser on to the client: no form-action limit.
    let csp = consent.header("content-security-policy").unwrap();
    assert!(!csp.contains("form-action"), "{csp}");
    let back = approve(&h, &cookie, &consent).await;
    assert!(back.starts_with(web));

    let reply = Call::get(&start).cookie(&cookie).send(&h.router).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert!(reply.location().starts_with(web));
    assert!(url_params(reply.location()).contains_key("code"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_sends_access_denied() {
    let h = harness(Options::default());
    let cookie = sign_in(&h.router).await;
    let (_, challenge) = pkce();
    // An unregistered public client with a loopback redirect: allowed, shown unverified.
    let start = authorize_uri("some-cli", &challenge, REDIRECT);
    let consent = Call::get(&start).cookie(&cookie).send(&h.router).await;
    assert_eq!(consent.status, StatusCode::OK, "{}", consent.body);
    assert!(consent.body.contains("unverified"), "{}", consent.body);
    let mut form: Vec<(String, String)> = consent.fields();
    form.push(("action".into(), "deny".into()));
    let pairs: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let reply = Call::post("/auth/authorize", &pairs)
        .cookie(&cookie)
        .header("origin", ISSUER)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let params = url_params(reply.location());
    assert_eq!(params["error"], "access_denied");
    assert!(!params.contains_key("code"));
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_redirect_is_an_error_page_never_a_redirect() {
    let h = harness(Options::default());
    let cookie = sign_in(&h.router).await;
    let (_, challenge) = pkce();
    let start = authorize_uri("unknown-app", &challenge, "https://evil.example/cb");
    for cookie in [None, Some(cookie.as_str())] {
        let mut call = Call::get(&start);
        if let Some(cookie) = cookie {
            call = call.cookie(cookie);
        }
        let reply = call.send(&h.router).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert!(reply.header("location").is_none());
        assert!(reply.body.contains("<main>"));
        assert!(!reply.body.contains("evil.example/cb\""), "{}", reply.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_post_without_valid_csrf_does_nothing() {
    let h = harness(Options::default());
    let cookie = sign_in(&h.router).await;
    let (_, challenge) = pkce();
    let start = authorize_uri("some-cli", &challenge, REDIRECT);
    let consent = Call::get(&start).cookie(&cookie).send(&h.router).await;
    let fields = consent.fields();
    let good_csrf = consent.field("csrf").expect("csrf");
    let without: Vec<(&str, &str)> = fields
        .iter()
        .filter(|(name, _)| name != "csrf")
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .chain([("action", "approve")])
        .collect();

    // Missing, wrong, and right-but-for-another-session.
    let other_cookie = sign_in(&h.router).await;
    let cases = [
        (None, cookie.as_str()),
        (Some("AAAA"), cookie.as_str()),
        (Some(good_csrf.as_str()), other_cookie.as_str()),
    ];
    for (csrf, cookie) in cases {
        let mut form = without.clone();
        if let Some(csrf) = csrf {
            form.push(("csrf", csrf));
        }
        let reply = Call::post("/auth/authorize", &form)
            .cookie(cookie)
            .header("origin", ISSUER)
            .send(&h.router)
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(reply.header("location").is_none());
        assert!(reply
            .body
            .contains("This form expired; go back and try again"));
    }

    // The right token but from a foreign page.
    let mut form = without.clone();
    form.push(("csrf", &good_csrf));
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let reply = Call::post("/auth/authorize", &form)
            .cookie(&cookie)
            .header(name, value)
            .send(&h.router)
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{name}: {value}");
        assert!(reply.header("location").is_none());
    }

    // A browser on our own page with `Referrer-Policy: no-referrer` sends `Origin: null`
    // beside `Sec-Fetch-Site: same-origin`: that is our page.
    let reply = Call::post("/auth/authorize", &form)
        .cookie(&cookie)
        .header("origin", "null")
        .header("sec-fetch-site", "same-origin")
        .send(&h.router)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "Origin: null from our page"
    );

    // And with everything right it works, so the refusals above were the checks.
    let reply = Call::post("/auth/authorize", &form)
        .cookie(&cookie)
        .header("origin", ISSUER)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(url_params(reply.location()).contains_key("code"));
}

#[tokio::test(flavor = "multi_thread")]
async fn consent_post_when_signed_out_goes_to_signin_with_the_request() {
    let h = harness(Options::default());
    let page = Call::get("/auth/signin").send(&h.router).await;
    let cookie = page.cookie().expect("cookie");
    let csrf = page.field("csrf").expect("csrf");
    let (_, challenge) = pkce();
    let reply = Call::post(
        "/auth/authorize",
        &[
            ("response_type", "code"),
            ("client_id", "some-cli"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("csrf", &csrf),
            ("action", "approve"),
        ],
    )
    .cookie(&cookie)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let return_to = url_params(reply.location())["return_to"].clone();
    assert!(return_to.starts_with("/auth/authorize?response_type=code&client_id=some-cli"));
    assert!(!return_to.contains("csrf") && !return_to.contains("action"));
}

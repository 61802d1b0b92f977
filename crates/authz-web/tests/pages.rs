//! Sign-in and sign-out pages, cookies, headers, templates.

mod common;

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use common::*;

fn assert_security_headers(reply: &Reply, what: &str) {
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    let csp = reply.header("content-security-policy").expect(what);
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{what}: {csp}");
    }
    assert!(!csp.contains("unsafe"), "{what}: {csp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_everywhere() {
    let h = harness(Options::default());
    let cookie = sign_in(&h.router).await;
    let replies = [
        ("signin", Call::get("/auth/signin").send(&h.router).await),
        (
            "metadata",
            Call::get("/.well-known/oauth-authorization-server")
                .send(&h.router)
                .await,
        ),
        ("jwks", Call::get("/auth/jwks.json").send(&h.router).await),
        (
            "token",
            Call::post("/auth/token", &[]).send(&h.router).await,
        ),
        ("404", Call::get("/nothing/here").send(&h.router).await),
        (
            "405",
            Call::post("/auth/jwks.json", &[]).send(&h.router).await,
        ),
        (
            "device",
            Call::get("/auth/device/verify")
                .cookie(&cookie)
                .send(&h.router)
                .await,
        ),
        ("style", Call::get("/auth/style.css").send(&h.router).await),
    ];
    for (what, reply) in &replies {
        assert_security_headers(reply, what);
    }
    let [(_, signin), (_, metadata), (_, jwks), _, (_, not_found), (_, not_allowed), (_, device), (_, style)] =
        &replies;
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(not_allowed.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(signin.header("cache-control"), Some("no-store"));
    assert!(metadata
        .header("cache-control")
        .unwrap()
        .contains("max-age=300"));
    assert!(jwks
        .header("cache-control")
        .unwrap()
        .contains("max-age=300"));
    assert!(style
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
    // Pages whose forms only come back here also limit form targets.
    let csp = device.header("content-security-policy").unwrap();
    assert!(csp.contains("form-action 'self'"), "{csp}");
    // The sign-in page's form may end at a client's redirect URI: no form-action there.
    let csp = signin.header("content-security-policy").unwrap();
    assert!(!csp.contains("form-action"), "{csp}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_flags() {
    let secure = harness(Options {
        secure_cookies: true,
        ..Options::default()
    });
    let page = Call::get("/auth/signin").send(&secure.router).await;
    let set = page.header("set-cookie").expect("a cookie");
    assert!(set.starts_with("__Host-bearergate="), "{set}");
    for flag in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(set.contains(flag), "{set}");
    }
    let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
    assert_eq!(value.len(), 43, "32 bytes base64url");

    let plain = harness(Options::default());
    let page = Call::get("/auth/signin").send(&plain.router).await;
    let set = page.header("set-cookie").expect("a cookie");
    assert!(
        set.starts_with("bearergate=") && !set.contains("Secure"),
        "{set}"
    );
    // A browser that has one keeps it.
    let cookie = page.cookie().unwrap();
    let again = Call::get("/auth/signin")
        .cookie(&cookie)
        .send(&plain.router)
        .await;
    assert!(again.header("set-cookie").is_none());
    assert_eq!(again.field("csrf"), page.field("csrf"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_password_rerenders_with_401_and_keeps_the_user_signed_out() {
    let h = harness(Options::default());
    let page = Call::get("/auth/signin?return_to=/auth/device/verify")
        .send(&h.router)
        .await;
    let cookie = page.cookie().unwrap();
    let csrf = page.field("csrf").unwrap();
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &csrf),
            ("return_to", "/auth/device/verify"),
            ("username", "alice"),
            ("password", "wrong"),
        ],
    )
    .cookie(&cookie)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body.contains("Wrong user name or password"));
    assert_eq!(reply.field("username").as_deref(), Some("alice"));
    assert!(
        !reply.body.contains("wrong\""),
        "the password is never echoed"
    );
    assert!(reply.cookie().is_none());
    let device = Call::get("/auth/device/verify")
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(device.status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread")]
async fn signin_csrf_and_origin_are_checked_before_the_password() {
    let h = harness(Options::default());
    let page = Call::get("/auth/signin").send(&h.router).await;
    let cookie = page.cookie().unwrap();
    let csrf = page.field("csrf").unwrap();
    let form = |csrf: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("username".to_owned(), "alice".to_owned()),
            ("password".to_owned(), PASSWORD.to_owned()),
        ]
    };
    let send = |form: Vec<(String, String)>, cookie: Option<String>, origin: &'static str| {
        let router = h.router.clone();
        async move {
            let pairs: Vec<(&str, &str)> =
                form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            let mut call = Call::post("/auth/signin", &pairs).header("origin", origin);
            if let Some(cookie) = cookie {
                call = call.cookie(&cookie);
            }
            call.send(&router).await
        }
    };
    let no_cookie = send(form(&csrf), None, ISSUER).await;
    let wrong = send(form("nope"), Some(cookie.clone()), ISSUER).await;
    let foreign = send(form(&csrf), Some(cookie.clone()), "https://evil.example").await;
    for reply in [&no_cookie, &wrong, &foreign] {
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    }
    // Refused with the session it came with: nothing rotated, nobody signed in.
    assert!(wrong.cookie().is_none() && foreign.cookie().is_none());
    assert!(wrong
        .body
        .contains("This form expired; go back and try again"));
    assert_eq!(
        h.passwords.checks.load(Ordering::SeqCst),
        0,
        "no password was checked"
    );
    // The same form with everything right signs in.
    let ok = send(form(&csrf), Some(cookie.clone()), ISSUER).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ok.location(),
        "/auth/device/verify",
        "the default return_to"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn return_to_cannot_leave_the_site() {
    let h = harness(Options::default());
    for evil in [
        "https://evil.example/",
        "//evil.example/x",
        "/auth//evil.example",
        "/elsewhere",
    ] {
        let page = Call::get(&format!("/auth/signin?{}", query(&[("return_to", evil)])))
            .send(&h.router)
            .await;
        assert_eq!(
            page.field("return_to").as_deref(),
            Some("/auth/device/verify"),
            "{evil}"
        );
        let cookie = page.cookie().unwrap();
        let reply = Call::post(
            "/auth/signin",
            &[
                ("csrf", &page.field("csrf").unwrap()),
                ("return_to", evil),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .cookie(&cookie)
        .send(&h.router)
        .await;
        assert_eq!(reply.location(), "/auth/device/verify", "{evil}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signin_limiter_answers_429() {
    let h = harness(Options::default());
    let page = Call::get("/auth/signin").send(&h.router).await;
    let cookie = page.cookie().unwrap();
    let csrf = page.field("csrf").unwrap();
    let mut limited = None;
    for attempt in 0..100 {
        let reply = Call::post(
            "/auth/signin",
            &[
                ("csrf", &csrf),
                ("username", "alice"),
                ("password", "guess"),
            ],
        )
        .cookie(&cookie)
        .peer("192.0.2.7:4000")
        .send(&h.router)
        .await;
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((attempt, reply));
            break;
        }
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let (attempt, reply) = limited.expect("the limiter stepped in");
    assert!(attempt >= 1, "at least one attempt is allowed");
    assert!(
        reply.body.contains("Too many attempts, try again in"),
        "{}",
        reply.body
    );
    assert!(reply.header("retry-after").is_some());
    // Refused before the password is checked: even the right one does not get in now.
    let checks = h.passwords.checks.load(Ordering::SeqCst);
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .cookie(&cookie)
    .peer("192.0.2.7:4000")
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.passwords.checks.load(Ordering::SeqCst), checks);
}

#[tokio::test(flavor = "multi_thread")]
async fn password_backend_down_is_503() {
    let h = harness(Options::default());
    h.passwords.down.store(true, Ordering::SeqCst);
    let page = Call::get("/auth/signin").send(&h.router).await;
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &page.field("csrf").unwrap()),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .cookie(&page.cookie().unwrap())
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.body.contains("cannot check passwords right now"));
    assert!(
        !reply.body.contains("backend unreachable"),
        "the reason is logged, not shown"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signout_needs_a_post_with_csrf() {
    let h = harness(Options::default());
    let cookie = sign_in(&h.router).await;
    let page = Call::get("/auth/signout")
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice"));
    // Still signed in after merely looking at the page, and after a forged POST.
    let forged = Call::post("/auth/signout", &[("csrf", "x")])
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let device = Call::get("/auth/device/verify")
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(device.status, StatusCode::OK);

    let reply = Call::post("/auth/signout", &[("csrf", &page.field("csrf").unwrap())])
        .cookie(&cookie)
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(reply.location(), "/auth/signin");
    let new_cookie = reply.cookie().expect("a new id");
    assert_ne!(new_cookie, cookie);
    for cookie in [cookie, new_cookie] {
        let device = Call::get("/auth/device/verify")
            .cookie(&cookie)
            .send(&h.router)
            .await;
        assert_eq!(device.status, StatusCode::SEE_OTHER, "signed out");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn template_override_dir_replaces_signin() {
    let dir = temp_dir("override");
    std::fs::write(
        dir.join("signin.html"),
        "{% extends \"base.html\" %}{% block content %}<p>CUSTOM {{ username }}</p>\
         <form method=\"post\" action=\"{{ action }}\"><input type=\"hidden\" name=\"csrf\" \
         value=\"{{ csrf }}\"></form>{% endblock %}",
    )
    .unwrap();
    std::fs::write(dir.join("style.css"), "body { color: black }").unwrap();
    let h = harness(Options {
        templates_dir: Some(dir.clone()),
        ..Options::default()
    });
    let page = Call::get("/auth/signin").send(&h.router).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<p>CUSTOM </p>"), "{}", page.body);
    assert!(page.field("csrf").is_some());
    // The others stay built in.
    assert!(page.body.contains("<html lang=\"en\">"));
    let style = Call::get("/auth/style.css").send(&h.router).await;
    assert_eq!(style.body, "body { color: black }");

    // A template that does not parse stops the start, naming the file.
    std::fs::write(dir.join("consent.html"), "{% if %}").unwrap();
    let (config, ..) = config(&Options {
        templates_dir: Some(dir.clone()),
        ..Options::default()
    });
    let error = authz_web::router(config).expect_err("a broken template");
    assert!(error.to_string().contains("consent.html"), "{error}");
    std::fs::remove_dir_all(dir).ok();
}

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
async fn refusals_of_every_kind_carry_the_security_headers() {
    let h = harness(Options::default());
    let big = "a".repeat(70_000);
    let page = Call::get("/auth/signin").send(&h.router).await;
    let cookie = page.cookie().unwrap();
    let replies = [
        (
            "413 token",
            Call::post("/auth/token", &[("pad", &big)])
                .send(&h.router)
                .await,
        ),
        (
            "413 page",
            Call::post("/auth/signin", &[("pad", &big)])
                .cookie(&cookie)
                .send(&h.router)
                .await,
        ),
        (
            "403 page",
            Call::post("/auth/signin", &[("csrf", "x")])
                .send(&h.router)
                .await,
        ),
        (
            "400 authorize",
            Call::get("/auth/authorize?client_id=a&client_id=b")
                .send(&h.router)
                .await,
        ),
        (
            "401 userinfo",
            Call::get("/auth/userinfo").send(&h.router).await,
        ),
    ];
    for (what, reply) in &replies {
        assert_security_headers(reply, what);
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    }
    assert_eq!(replies[0].1.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(replies[1].1.status, StatusCode::BAD_REQUEST);
    assert_eq!(replies[2].1.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_parameter_names_are_not_echoed_on_pages() {
    let h = harness(Options::default());
    let name = "Your account is locked, call +1 555 0100";
    let twice = query(&[(name, "1"), (name, "2")]);
    let reply = Call::get(&format!("/auth/authorize?{twice}"))
        .send(&h.router)
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(!reply.body.contains("locked"), "{}", reply.body);
    // A parameter of ours is still named, to help whoever debugs a client.
    let reply = Call::get("/auth/authorize?client_id=a&client_id=b")
        .send(&h.router)
        .await;
    assert!(reply.body.contains("client_id"), "{}", reply.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_issuer_gets_a_secure_host_cookie_and_hsts() {
    // Plaintext behind a TLS terminator (`plaintext = true` with an https public_url) is
    // still https to the browser: the cookie must not be sent over plain http.
    let h = harness(Options {
        issuer: Some("https://auth.example.test".to_owned()),
        secure_cookies: false,
        ..Options::default()
    });
    let page = Call::get("/auth/signin").send(&h.router).await;
    let set = page.header("set-cookie").expect("a cookie");
    assert!(set.starts_with("__Host-bearergate="), "{set}");
    assert!(set.contains("; Secure"), "{set}");
    let hsts = page.header("strict-transport-security").expect("HSTS");
    assert!(hsts.starts_with("max-age="), "{hsts}");
    let token = Call::post("/auth/token", &[]).send(&h.router).await;
    assert!(token.header("strict-transport-security").is_some());

    // A plain-http issuer (tests, loopback) gets neither.
    let plain = harness(Options::default());
    let page = Call::get("/auth/signin").send(&plain.router).await;
    assert!(page.header("strict-transport-security").is_none());
    assert!(!page.header("set-cookie").unwrap().contains("Secure"));
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_credentials_are_refused_before_the_password_check() {
    let h = harness(Options::default());
    let page = Call::get("/auth/signin").send(&h.router).await;
    let cookie = page.cookie().unwrap();
    let csrf = page.field("csrf").unwrap();
    let long_password = "p".repeat(authz::passwd::MAX_PASSWORD_LEN + 1);
    let long_user = format!("{}@example.test", "u".repeat(400));
    for (user, password) in [("alice", long_password.as_str()), (&long_user, PASSWORD)] {
        let reply = Call::post(
            "/auth/signin",
            &[("csrf", &csrf), ("username", user), ("password", password)],
        )
        .cookie(&cookie)
        .header("origin", ISSUER)
        .send(&h.router)
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
        assert!(reply.body.contains("too long"), "{}", reply.body);
    }
    assert_eq!(h.passwords.checks.load(Ordering::SeqCst), 0);
    // The longest password accepted still reaches the check.
    let longest = "p".repeat(authz::passwd::MAX_PASSWORD_LEN);
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &csrf),
            ("username", "alice"),
            ("password", &longest),
        ],
    )
    .cookie(&cookie)
    .header("origin", ISSUER)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.passwords.checks.load(Ordering::SeqCst), 1);
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

#[tokio::test(flavor = "multi_thread")]
async fn override_templates_are_escaped_too() {
    // An admin's template is HTML-escaped like the built-in ones, whatever it contains.
    let dir = temp_dir("escape");
    std::fs::write(
        dir.join("signin.html"),
        "<p>{{ username }}</p><p title=\"{{ username }}\">x</p>\
         <input type=\"hidden\" name=\"csrf\" value=\"{{ csrf }}\">",
    )
    .unwrap();
    let h = harness(Options {
        templates_dir: Some(dir.clone()),
        ..Options::default()
    });
    let page = Call::get("/auth/signin").send(&h.router).await;
    let cookie = page.cookie().unwrap();
    let hostile = "\"><script>alert(1)</script>";
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &page.field("csrf").unwrap()),
            ("username", hostile),
            ("password", "wrong"),
        ],
    )
    .cookie(&cookie)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(!reply.body.contains("<script>"), "{}", reply.body);
    assert!(!reply.body.contains("\"><"), "{}", reply.body);
    assert!(reply.body.contains("&lt;script&gt;"), "{}", reply.body);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_rotates_the_session_id() {
    // Session fixation: an id planted in the browser before sign-in is worth nothing after.
    let h = harness(Options::default());
    let page = Call::get("/auth/signin").send(&h.router).await;
    let planted = page.cookie().unwrap();
    let reply = Call::post(
        "/auth/signin",
        &[
            ("csrf", &page.field("csrf").unwrap()),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .cookie(&planted)
    .send(&h.router)
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let fresh = reply.cookie().expect("a new id at sign-in");
    assert_ne!(fresh, planted);
    let with_planted = Call::get("/auth/device/verify")
        .cookie(&planted)
        .send(&h.router)
        .await;
    assert_eq!(with_planted.status, StatusCode::SEE_OTHER, "not signed in");
    let with_fresh = Call::get("/auth/device/verify")
        .cookie(&fresh)
        .send(&h.router)
        .await;
    assert_eq!(with_fresh.status, StatusCode::OK);
    // The old session's CSRF token does not work with the new id either.
    let signout = Call::post("/auth/signout", &[("csrf", &page.field("csrf").unwrap())])
        .cookie(&fresh)
        .send(&h.router)
        .await;
    assert_eq!(signout.status, StatusCode::FORBIDDEN);
}

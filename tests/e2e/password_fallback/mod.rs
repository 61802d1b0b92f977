//! The password fallback (`password_fallback = true`) as a security boundary: the proxy takes
//! IMAP LOGIN / AUTHENTICATE PLAIN and SMTP AUTH PLAIN / LOGIN itself, has the backend check
//! the password, and answers the client itself. A refused password leaves the client in the
//! proxy's pre-login session (OAuth still offered, failures counted, delayed, and throttled per
//! address), never in the backend's; the master user is never a client's to use. Against the
//! real Dovecot (IMAP, submission) and Postfix (`login = "xclient"`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::dovecot::{MASTER_PASSWORD, MASTER_USER};
use crate::support::imap_client::{capability_line, last_status, ImapClient, Status};
use crate::support::ports::free_port;
use crate::support::{
    b64, connect, http_get, metric_value, oauthbearer_b64, test_message, xoauth2_b64, Proxy,
    ProxyConfig, TestEnv, TlsMode,
};

/// alice's password in the test Dovecot.
const RIGHT: &str = "alicepass";

/// Dovecot's own brute-force penalty off (anvil: 2 s after a failure from an address, doubling
/// up to 15 s, and applied to every later login from it, right or wrong). Every test client
/// is 127.0.0.1, so it would soon exceed the test client's 10 s read timeout and would hide
/// the proxy's own failure delay. Dovecot still answers each failure after about 0.5 s.
const NO_PENALTY: &str =
    "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}";

/// A Dovecot without its brute-force penalty, the fake IdP and certificates.
fn env(label: &str) -> TestEnv {
    TestEnv::with_dovecot(label, |b| b.config(NO_PENALTY))
}

/// The standard IMAP listeners (implicit TLS, STARTTLS, plaintext with
/// `allow_plaintext_auth`), each with the password fallback, changed by `tweak`.
fn fallback_proxy(env: &TestEnv, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
    env.start_proxy(|c| {
        c.each_listener(|l| l.extra.push("password_fallback = true".into()));
        tweak(c);
    })
}

/// A `[metrics]` table on a free port; returns its address.
fn with_metrics(config: &mut ProxyConfig) -> SocketAddr {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config
        .extra_toml
        .push_str(&format!("\n[metrics]\nlisten = \"{addr}\"\n"));
    addr
}

/// `bearergate_logins_total` for this protocol, credential and outcome; the sample must exist.
fn logins(metrics: SocketAddr, protocol: &str, credential: &str, outcome: &str) -> f64 {
    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "/metrics: {status}");
    let labels = [
        ("protocol", protocol),
        ("credential", credential),
        ("outcome", outcome),
    ];
    metric_value(&body, "bearergate_logins_total", &labels).unwrap_or_else(|| {
        panic!("no bearergate_logins_total sample with {labels:?} in /metrics:\n{body}")
    })
}

/// The proxy's own refusal of a password, exactly.
fn assert_auth_failed(line: &str, tag: &str) {
    assert_eq!(
        line,
        format!("{tag} NO [AUTHENTICATIONFAILED] Authentication failed."),
        "want the proxy's refusal"
    );
}

/// `tag OK [CAPABILITY …] Logged in.` with Dovecot's post-login capabilities.
fn assert_logged_in(status: &Status, tag: &str) {
    assert!(
        status.tag == tag
            && status.is("OK", Some("CAPABILITY"))
            && status.line.ends_with("] Logged in."),
        "want `{tag} OK [CAPABILITY …] Logged in.`: {status:?}"
    );
    let caps = status.capabilities();
    assert!(
        caps.iter().any(|c| c == "IMAP4REV1") && !caps.iter().any(|c| c.starts_with("AUTH=")),
        "want Dovecot's post-login capabilities: {caps:?}"
    );
}

/// The connection is still in the proxy's pre-login session: CAPABILITY offers the proxy's
/// OAuth mechanisms, which the test Dovecot (`auth_mechanisms = plain login`) does not.
async fn assert_with_proxy(client: &mut ImapClient, tag: &str) {
    let lines = client.command(tag, "CAPABILITY").await;
    assert_eq!(last_status(&lines).kind, "OK", "{lines:?}");
    let caps = lines
        .iter()
        .find_map(|l| capability_line(l))
        .unwrap_or_else(|| panic!("no * CAPABILITY in {lines:?}"));
    for mech in ["AUTH=OAUTHBEARER", "AUTH=XOAUTH2"] {
        assert!(
            caps.iter().any(|c| c == mech),
            "{mech} missing: not the proxy's session any more? {caps:?}"
        );
    }
}

async fn select_and_fetch(client: &mut ImapClient, message: &[u8]) {
    let select = client.command("s", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        client.fetch_body("f", 1).await == message,
        "fetched message differs from the delivered one"
    );
}

#[tokio::test]
async fn wrong_password_leaves_the_client_with_the_proxy() {
    let env = env("pwfb-wrong");
    let message = env
        .dovecot
        .deliver("alice", &test_message("after a wrong password", 1_500));
    let proxy = fallback_proxy(&env, |_| {});
    let token = env.idp.issue("alice");
    for (tls, mech) in [
        (TlsMode::Implicit, "XOAUTH2"),
        (TlsMode::None, "OAUTHBEARER"),
    ] {
        let (mut client, _) = connect(&env, &proxy, tls).await;
        let reply = client.command("a", "LOGIN alice wrongpass").await;
        assert_eq!(reply.len(), 1, "{tls:?}: {reply:?}");
        assert_auth_failed(&reply[0], "a");
        assert_with_proxy(&mut client, "c").await;
        let response = match mech {
            "XOAUTH2" => xoauth2_b64("alice", &token),
            _ => oauthbearer_b64("alice", &token),
        };
        let outcome = client.authenticate("b", mech, &response, true).await;
        assert!(outcome.challenge.is_none(), "{tls:?} {mech}: {outcome:?}");
        assert_logged_in(&outcome.tagged, "b");
        select_and_fetch(&mut client, &message).await;
    }
    assert_eq!(
        env.idp.requests(),
        1,
        "one introspection for the token (then cached); passwords never reach the IdP"
    );
}

#[tokio::test]
async fn right_password_logs_in_and_relays() {
    let env = env("pwfb-right");
    let message = env
        .dovecot
        .deliver("alice", &test_message("app password", 3_000));
    let proxy = fallback_proxy(&env, |_| {});
    for (tls, login) in [
        (TlsMode::Implicit, format!("LOGIN alice {RIGHT}")),
        (TlsMode::None, format!("LOGIN \"alice\" \"{RIGHT}\"")),
    ] {
        let (mut client, _) = connect(&env, &proxy, tls).await;
        let reply = client.command("a", &login).await;
        assert_eq!(reply.len(), 1, "{tls:?}: {reply:?}");
        assert_logged_in(&last_status(&reply), "a");
        select_and_fetch(&mut client, &message).await;
        let logout = client.command("z", "LOGOUT").await;
        assert!(logout.iter().any(|l| l.starts_with("* BYE")), "{logout:?}");
    }
    assert_eq!(env.idp.requests(), 0, "passwords never reach the IdP");
}

#[tokio::test]
async fn third_wrong_password_ends_the_connection() {
    let env = env("pwfb-max-failures");
    // max_auth_failures left at its default, 3
    let proxy = fallback_proxy(&env, |_| {});
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    for tag in ["a", "b"] {
        let reply = client.command(tag, "LOGIN alice wrongpass").await;
        assert_eq!(reply.len(), 1, "no BYE before the third failure: {reply:?}");
        assert_auth_failed(&reply[0], tag);
    }
    client.send(b"c LOGIN alice wrongpass\r\n").await;
    let rest = client.read_to_eof().await;
    assert!(
        rest.iter()
            .any(|l| l == "c NO [AUTHENTICATIONFAILED] Authentication failed."),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.starts_with("* BYE")),
        "want * BYE then close: {rest:?}"
    );
    // A fourth try, with the right password, has nobody left to answer it.
    let _ = client
        .try_send(format!("d LOGIN alice {RIGHT}\r\n").as_bytes())
        .await;
    assert_eq!(client.try_read_line().await, None, "the connection is over");
    assert_eq!(env.idp.requests(), 0);
}

#[tokio::test]
async fn login_literal_gets_one_continuation() {
    let env = env("pwfb-literal");
    let message = env
        .dovecot
        .deliver("alice", &test_message("literal password", 1_000));
    let proxy = fallback_proxy(&env, |_| {});

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    client.send(b"a LOGIN alice {9}\r\n").await;
    let go = client.read_line().await;
    assert!(go.starts_with('+'), "want one continuation: {go:?}");
    client.send(format!("{RIGHT}\r\n").as_bytes()).await;
    let next = client.read_line().await;
    let status = Status::parse(&next)
        .unwrap_or_else(|| panic!("want the tagged OK next, not a second continuation: {next:?}"));
    assert_logged_in(&status, "a");
    select_and_fetch(&mut client, &message).await;

    // Both strings literals, wrong password: one continuation per literal, then the NO.
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    client.send(b"b LOGIN {5}\r\n").await;
    let go = client.read_line().await;
    assert!(go.starts_with('+'), "user literal: {go:?}");
    client.send(b"alice {9}\r\n").await;
    let go = client.read_line().await;
    assert!(go.starts_with('+'), "password literal: {go:?}");
    client.send(b"wrongpass\r\n").await;
    assert_auth_failed(&client.read_line().await, "b");
    assert_with_proxy(&mut client, "c").await;
    assert_eq!(env.idp.requests(), 0);
}

#[tokio::test]
async fn authenticate_plain_with_and_without_initial_response() {
    let env = env("pwfb-plain");
    let message = env
        .dovecot
        .deliver("alice", &test_message("AUTHENTICATE PLAIN", 1_000));
    let proxy = fallback_proxy(&env, |_| {});
    for sasl_ir in [true, false] {
        let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
        let right = b64(format!("\0alice\0{RIGHT}"));
        let outcome = client.authenticate("a", "PLAIN", &right, sasl_ir).await;
        assert!(
            outcome.challenge.is_none(),
            "SASL-IR {sasl_ir}: {outcome:?}"
        );
        assert_logged_in(&outcome.tagged, "a");
        select_and_fetch(&mut client, &message).await;

        let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
        let wrong = b64("\0alice\0wrongpass");
        let outcome = client.authenticate("b", "PLAIN", &wrong, sasl_ir).await;
        assert_auth_failed(&outcome.tagged.line, "b");
        assert_with_proxy(&mut client, "c").await;
    }

    // An authorization id goes to Dovecot as such; Dovecot does not let alice act as bob.
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let as_bob = b64(format!("bob\0alice\0{RIGHT}"));
    let outcome = client.authenticate("d", "PLAIN", &as_bob, true).await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "alice acting as bob: {outcome:?}"
    );
    assert_with_proxy(&mut client, "e").await;
    assert_eq!(env.idp.requests(), 0, "passwords never reach the IdP");
}

#[tokio::test]
async fn a_client_can_never_use_the_master_user() {
    let env = env("pwfb-master");
    let proxy = fallback_proxy(&env, |_| {});
    let master_login = format!("alice*{MASTER_USER}");
    let master_plain = b64(format!("alice\0{MASTER_USER}\0{MASTER_PASSWORD}"));

    // Dovecot itself takes both forms: only the proxy stands in the way.
    let mut direct = ImapClient::connect_plain(env.dovecot.imap_addr()).await;
    direct.read_line().await;
    let reply = direct
        .command("a", &format!("LOGIN \"{master_login}\" {MASTER_PASSWORD}"))
        .await;
    assert_eq!(
        last_status(&reply).kind,
        "OK",
        "Dovecot directly: {reply:?}"
    );
    let mut direct = ImapClient::connect_plain(env.dovecot.imap_addr()).await;
    direct.read_line().await;
    let outcome = direct.authenticate("a", "PLAIN", &master_plain, true).await;
    assert_eq!(outcome.tagged.kind, "OK", "Dovecot directly: {outcome:?}");

    for login in [
        format!("LOGIN \"{master_login}\" \"{MASTER_PASSWORD}\""),
        format!("LOGIN \"{master_login}\" {MASTER_PASSWORD}"),
    ] {
        let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
        let reply = client.command("a", &login).await;
        assert!(
            last_status(&reply).is("NO", Some("AUTHENTICATIONFAILED")),
            "{login}: {reply:?}"
        );
        assert_with_proxy(&mut client, "b").await;
    }
    // `*` may not stand in an atom (RFC 3501 list-wildcards): unquoted, the proxy's parser
    // refuses the command (BAD) where Dovecot is lenient. Either way, no login.
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let reply = client
        .command("a", &format!("LOGIN {master_login} {MASTER_PASSWORD}"))
        .await;
    assert!(
        ["NO", "BAD"].contains(&last_status(&reply).kind.as_str()),
        "unquoted: {reply:?}"
    );
    assert_with_proxy(&mut client, "b").await;
    for sasl_ir in [true, false] {
        let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
        let outcome = client
            .authenticate("a", "PLAIN", &master_plain, sasl_ir)
            .await;
        assert!(
            outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
            "PLAIN with the master user as authcid (SASL-IR {sasl_ir}): {outcome:?}"
        );
        assert_with_proxy(&mut client, "b").await;
    }
    assert_eq!(env.idp.requests(), 0);
}

#[tokio::test]
async fn failed_logins_are_delayed_and_the_delay_doubles() {
    let env = env("pwfb-delay");
    let proxy = fallback_proxy(&env, |c| {
        c.auth_limits = vec!["failure_delay = \"400ms\"".into()];
    });
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    // A master-user name is refused by the proxy itself: no backend time in the waits, so
    // they are the proxy's delays alone.
    let login = format!("LOGIN \"alice*{MASTER_USER}\" wrongpass");
    let mut waits = Vec::new();
    for (tag, least) in [("a", 400), ("b", 800)] {
        let started = Instant::now();
        let reply = client.command(tag, &login).await;
        let waited = started.elapsed();
        assert_auth_failed(&reply[reply.len() - 1], tag);
        assert!(
            waited >= Duration::from_millis(least),
            "failure {tag}: answered after {waited:?}, want at least {least} ms"
        );
        waits.push(waited);
    }
    // Doubling, not a constant delay: the second wait is about 400 ms longer.
    assert!(
        waits[1] >= waits[0] + Duration::from_millis(300),
        "the delay did not grow: {waits:?}"
    );
}

#[tokio::test]
async fn parallel_guesses_share_one_budget() {
    let env = env("pwfb-parallel");
    let proxy = fallback_proxy(&env, |c| {
        c.auth_limits = vec![
            "failure_delay = \"0s\"".into(),
            "address_failures = 4".into(),
            "address_failure_refill = \"1h\"".into(),
        ];
    });
    // Twelve wrong passwords at once, each on its own connection: the budget is taken when
    // an attempt starts, so only four reach the backend however they overlap.
    let mut clients = Vec::new();
    for _ in 0..12 {
        clients.push(connect(&env, &proxy, TlsMode::Implicit).await.0);
    }
    let attempts = clients.into_iter().enumerate().map(|(n, mut client)| {
        tokio::spawn(async move {
            let tag = format!("p{n}");
            let reply = client.command(&tag, "LOGIN alice wrongpass").await;
            last_status(&reply)
        })
    });
    let mut failed = 0;
    let mut throttled = 0;
    for attempt in attempts.collect::<Vec<_>>() {
        let status = attempt.await.expect("attempt task");
        if status.is("NO", Some("AUTHENTICATIONFAILED")) {
            failed += 1;
        } else if status.is("NO", Some("UNAVAILABLE")) {
            throttled += 1;
        } else {
            panic!("unexpected reply {status:?}");
        }
    }
    assert_eq!((failed, throttled), (4, 8));
}

#[tokio::test]
async fn an_address_out_of_failures_is_told_to_try_later() {
    let env = env("pwfb-throttle");
    let mut metrics = None;
    let proxy = fallback_proxy(&env, |c| {
        c.auth_limits = vec![
            "failure_delay = \"0s\"".into(),
            "address_failures = 2".into(),
            "address_failure_refill = \"1h\"".into(),
        ];
        metrics = Some(with_metrics(c));
    });
    let metrics = metrics.expect("metrics address");
    let token = env.idp.issue("alice");
    for tag in ["a", "b"] {
        let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
        let reply = client.command(tag, "LOGIN alice wrongpass").await;
        assert_auth_failed(&reply[reply.len() - 1], tag);
    }

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let reply = client.command("c", &format!("LOGIN alice {RIGHT}")).await;
    assert!(
        last_status(&reply).is("NO", Some("UNAVAILABLE")),
        "the right password, from an address out of failures: {reply:?}"
    );
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("d", "XOAUTH2", &xoauth2_b64("alice", &token), true)
        .await;
    assert!(
        outcome.tagged.is("NO", Some("UNAVAILABLE")),
        "a good token, from an address out of failures: {outcome:?}"
    );
    assert_eq!(env.idp.requests(), 0, "the IdP was not asked");
    assert!(
        !env.dovecot.log().contains("Login: user=<alice>"),
        "Dovecot was not asked:\n{}",
        env.dovecot.log()
    );
    assert_eq!(logins(metrics, "imap", "password", "refused"), 2.0);
    assert_eq!(logins(metrics, "imap", "password", "throttled"), 1.0);
    assert_eq!(logins(metrics, "imap", "token", "throttled"), 1.0);
}

#[tokio::test]
async fn logins_are_counted_by_credential() {
    let env = env("pwfb-metrics");
    let mut metrics = None;
    let proxy = fallback_proxy(&env, |c| metrics = Some(with_metrics(c)));
    let metrics = metrics.expect("metrics address");

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let reply = client.command("a", "LOGIN alice wrongpass").await;
    assert_auth_failed(&reply[reply.len() - 1], "a");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let reply = client.command("a", &format!("LOGIN alice {RIGHT}")).await;
    assert_logged_in(&last_status(&reply), "a");
    let token = env.idp.issue("alice");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("alice", &token), true)
        .await;
    assert_logged_in(&outcome.tagged, "a");

    assert_eq!(logins(metrics, "imap", "password", "refused"), 1.0);
    assert_eq!(logins(metrics, "imap", "password", "success"), 1.0);
    assert_eq!(logins(metrics, "imap", "token", "success"), 1.0);
    assert_eq!(logins(metrics, "imap", "token", "refused"), 0.0);
}

mod smtp;
mod xclient;

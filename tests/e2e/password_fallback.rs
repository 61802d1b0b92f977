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
    for (tag, least) in [("a", 400), ("b", 800)] {
        let started = Instant::now();
        let reply = client.command(tag, "LOGIN alice wrongpass").await;
        let waited = started.elapsed();
        assert_auth_failed(&reply[reply.len() - 1], tag);
        assert!(
            waited >= Duration::from_millis(least),
            "failure {tag}: answered after {waited:?}, want at least {least} ms"
        );
    }
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

/// The SMTP submission listener, with Dovecot submission (relaying to a sink) behind it.
mod smtp {
    use super::*;
    use crate::support::SmtpSink;

    const RELAY_DEADLINE: Duration = Duration::from_secs(20);
    const INVALID: &str = "535 5.7.8 Authentication credentials invalid";
    const SUCCESS: &str = "235 2.7.0 Authentication successful";

    pub(super) async fn read_reply(client: &mut ImapClient) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = client.read_line().await;
            assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "not an SMTP reply line: {line:?} (after {lines:?})"
            );
            let done = line.len() == 3 || line.as_bytes()[3] == b' ';
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    pub(super) async fn command(client: &mut ImapClient, line: &str) -> Vec<String> {
        client.send(format!("{line}\r\n").as_bytes()).await;
        read_reply(client).await
    }

    fn last(reply: &[String]) -> &str {
        reply.last().expect("a reply has lines")
    }

    /// Connect, read the `220`, EHLO.
    pub(super) async fn session(
        env: &TestEnv,
        addr: SocketAddr,
        tls: TlsMode,
    ) -> (ImapClient, Vec<String>) {
        let mut client = match tls {
            TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
            TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
        };
        let greeting = read_reply(&mut client).await;
        assert!(last(&greeting).starts_with("220 "), "{greeting:?}");
        let caps = ehlo(&mut client).await;
        (client, caps)
    }

    async fn ehlo(client: &mut ImapClient) -> Vec<String> {
        let reply = command(client, "EHLO client.test").await;
        assert!(last(&reply).starts_with("250 "), "EHLO: {reply:?}");
        reply
    }

    /// Still the proxy's session: its EHLO offers OAUTHBEARER and nothing of the backend's
    /// (XCLIENT, XFORWARD); MAIL before AUTH is refused.
    async fn assert_with_proxy(client: &mut ImapClient) {
        let caps = ehlo(client).await;
        assert!(
            caps.iter()
                .any(|l| l[4..].starts_with("AUTH ") && l.contains("OAUTHBEARER")),
            "not the proxy's EHLO: {caps:?}"
        );
        assert!(
            !caps.iter().any(|l| {
                let l = l.to_ascii_uppercase();
                l.contains("XCLIENT") || l.contains("XFORWARD")
            }),
            "the backend's EHLO reached the client: {caps:?}"
        );
        let reply = command(client, "MAIL FROM:<alice@example.test>").await;
        assert!(
            last(&reply).starts_with("530 "),
            "MAIL before AUTH: {reply:?}"
        );
    }

    /// `AUTH mech initial`; an error challenge (`334` + base64) gets the mechanism's dummy.
    pub(super) async fn auth_token(client: &mut ImapClient, mech: &str, initial: &str) -> String {
        let mut reply = command(client, &format!("AUTH {mech} {initial}")).await;
        if last(&reply).starts_with("334 ") {
            let dummy = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
            reply = command(client, dummy).await;
        }
        assert_eq!(reply.len(), 1, "{reply:?}");
        reply.remove(0)
    }

    async fn submit(client: &mut ImapClient, sink: &SmtpSink, n: usize, subject: &str) {
        let message = test_message(subject, 1_500);
        for line in [
            "MAIL FROM:<alice@example.test>",
            "RCPT TO:<bob@example.test>",
        ] {
            let reply = command(client, line).await;
            assert!(last(&reply).starts_with("250 "), "{line}: {reply:?}");
        }
        let reply = command(client, "DATA").await;
        assert!(last(&reply).starts_with("354 "), "DATA: {reply:?}");
        client.send(&message).await;
        client.send(b".\r\n").await;
        let reply = read_reply(client).await;
        assert!(last(&reply).starts_with("250 "), "end of DATA: {reply:?}");
        let got = sink.wait_for(n, RELAY_DEADLINE);
        assert!(
            got[n - 1].data.ends_with(&message),
            "relayed message:\n{}",
            String::from_utf8_lossy(&got[n - 1].data)
        );
    }

    fn start(env: &TestEnv, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
        let mut config = ProxyConfig::submission(env);
        config.each_listener(|l| l.extra.push("password_fallback = true".into()));
        tweak(&mut config);
        env.start_proxy_with(&config)
    }

    fn smtp_env(label: &str) -> (SmtpSink, TestEnv) {
        let sink = SmtpSink::start();
        let env = TestEnv::with_dovecot(label, |b| b.submission(sink.port()).config(NO_PENALTY));
        (sink, env)
    }

    #[tokio::test]
    async fn wrong_password_leaves_the_client_with_the_proxy() {
        let (sink, env) = smtp_env("pwfb-smtp-wrong");
        let proxy = start(&env, |_| {});
        let token = env.idp.issue("alice");
        for (n, tls) in [(1, TlsMode::Implicit), (2, TlsMode::None)] {
            let (mut client, _) = session(&env, proxy.addr(tls), tls).await;
            let reply = command(
                &mut client,
                &format!("AUTH PLAIN {}", b64("\0alice\0wrong")),
            )
            .await;
            assert_eq!(reply, [INVALID], "{tls:?}");
            assert_with_proxy(&mut client).await;
            let reply = auth_token(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
            assert_eq!(reply, SUCCESS, "{tls:?}");
            submit(&mut client, &sink, n, "token after a wrong password").await;
        }
        assert_eq!(env.idp.requests(), 1, "the token once; never a password");
    }

    #[tokio::test]
    async fn auth_login_and_plain_dances() {
        let (sink, env) = smtp_env("pwfb-smtp-login");
        let proxy = start(&env, |_| {});
        let addr = proxy.addr(TlsMode::Implicit);
        let user = b64("alice");
        let mut delivered = 0;
        for password in [RIGHT, "wrongpass"] {
            // AUTH LOGIN, both prompts
            let (mut client, _) = session(&env, addr, TlsMode::Implicit).await;
            assert_eq!(
                command(&mut client, "AUTH LOGIN").await,
                ["334 VXNlcm5hbWU6"]
            );
            assert_eq!(command(&mut client, &user).await, ["334 UGFzc3dvcmQ6"]);
            let reply = command(&mut client, &b64(password)).await;
            // AUTH LOGIN with the user as initial response
            let (mut with_ir, _) = session(&env, addr, TlsMode::Implicit).await;
            let prompt = command(&mut with_ir, &format!("AUTH LOGIN {user}")).await;
            assert_eq!(prompt, ["334 UGFzc3dvcmQ6"]);
            let reply_ir = command(&mut with_ir, &b64(password)).await;
            // AUTH PLAIN without an initial response
            let (mut plain, _) = session(&env, addr, TlsMode::Implicit).await;
            assert_eq!(command(&mut plain, "AUTH PLAIN").await, ["334 "]);
            let reply_plain = command(&mut plain, &b64(format!("\0alice\0{password}"))).await;

            let mut clients = [(client, reply), (with_ir, reply_ir), (plain, reply_plain)];
            for (i, (client, reply)) in clients.iter_mut().enumerate() {
                if password == RIGHT {
                    assert!(last(reply).starts_with("235 "), "{i}: {reply:?}");
                    delivered += 1;
                    submit(client, &sink, delivered, "password").await;
                } else {
                    assert_eq!(*reply, [INVALID], "{i}");
                    assert_with_proxy(client).await;
                }
            }
        }
        assert_eq!(env.idp.requests(), 0, "passwords never reach the IdP");
    }

    #[tokio::test]
    async fn a_client_can_never_use_the_master_user() {
        let (sink, env) = smtp_env("pwfb-smtp-master");
        let proxy = start(&env, |_| {});
        let addr = proxy.addr(TlsMode::Implicit);
        let master_plain = b64(format!("alice\0{MASTER_USER}\0{MASTER_PASSWORD}"));
        let master_login = b64(format!("alice*{MASTER_USER}"));

        // Dovecot itself takes both: only the proxy stands in the way.
        let (mut direct, _) = session(&env, env.dovecot.submission_addr(), TlsMode::None).await;
        let reply = command(&mut direct, &format!("AUTH PLAIN {master_plain}")).await;
        assert!(
            last(&reply).starts_with("235 "),
            "Dovecot directly: {reply:?}"
        );
        let (mut direct, _) = session(&env, env.dovecot.submission_addr(), TlsMode::None).await;
        command(&mut direct, &format!("AUTH LOGIN {master_login}")).await;
        let reply = command(&mut direct, &b64(MASTER_PASSWORD)).await;
        assert!(
            last(&reply).starts_with("235 "),
            "Dovecot directly: {reply:?}"
        );

        let (mut client, _) = session(&env, addr, TlsMode::Implicit).await;
        let reply = command(&mut client, &format!("AUTH PLAIN {master_plain}")).await;
        assert!(
            last(&reply).starts_with("535 "),
            "PLAIN as the master user: {reply:?}"
        );
        assert_with_proxy(&mut client).await;
        let (mut client, _) = session(&env, addr, TlsMode::Implicit).await;
        let prompt = command(&mut client, &format!("AUTH LOGIN {master_login}")).await;
        assert_eq!(prompt, ["334 UGFzc3dvcmQ6"]);
        let reply = command(&mut client, &b64(MASTER_PASSWORD)).await;
        assert!(
            last(&reply).starts_with("535 "),
            "LOGIN as alice*master: {reply:?}"
        );
        assert_with_proxy(&mut client).await;
        assert!(sink.messages().is_empty());
        assert_eq!(env.idp.requests(), 0);
    }

    #[tokio::test]
    async fn client_xclient_before_login_is_the_proxys_to_refuse() {
        let (sink, env) = smtp_env("pwfb-smtp-xclient");
        let proxy = start(&env, |_| {});
        for tls in [TlsMode::Implicit, TlsMode::None] {
            let (mut client, _) = session(&env, proxy.addr(tls), tls).await;
            let reply = command(&mut client, "XCLIENT ADDR=203.0.113.9 LOGIN=alice").await;
            assert!(
                last(&reply).starts_with('5'),
                "{tls:?}: XCLIENT must be refused by the proxy: {reply:?}"
            );
            assert_with_proxy(&mut client).await;
            // and after a refused password too
            let reply = command(
                &mut client,
                &format!("AUTH PLAIN {}", b64("\0alice\0wrong")),
            )
            .await;
            assert_eq!(reply, [INVALID], "{tls:?}");
            let reply = command(&mut client, "XCLIENT ADDR=203.0.113.9 LOGIN=alice").await;
            assert!(last(&reply).starts_with('5'), "{tls:?}: {reply:?}");
            assert_with_proxy(&mut client).await;
        }
        assert!(sink.messages().is_empty());
    }

    #[tokio::test]
    async fn client_xclient_after_a_password_login_is_not_accepted_by_dovecot() {
        let (sink, env) = smtp_env("pwfb-smtp-xclient-after");
        let proxy = start(&env, |_| {});
        let (mut client, _) = session(&env, proxy.addr(TlsMode::Implicit), TlsMode::Implicit).await;
        let reply = command(
            &mut client,
            &format!("AUTH PLAIN {}", b64(format!("\0alice\0{RIGHT}"))),
        )
        .await;
        assert!(last(&reply).starts_with("235 "), "{reply:?}");
        // relayed: the proxy is a byte pipe now
        let reply = command(&mut client, "XCLIENT ADDR=203.0.113.9").await;
        assert!(
            !last(&reply).starts_with("220"),
            "Dovecot took the client's XCLIENT after login: {reply:?}"
        );
        submit(&mut client, &sink, 1, "after a refused XCLIENT").await;
    }

    #[tokio::test]
    async fn an_address_out_of_failures_gets_454() {
        let (sink, env) = smtp_env("pwfb-smtp-throttle");
        let proxy = start(&env, |c| {
            c.auth_limits = vec![
                "failure_delay = \"0s\"".into(),
                "address_failures = 2".into(),
                "address_failure_refill = \"1h\"".into(),
            ];
        });
        let addr = proxy.addr(TlsMode::Implicit);
        for _ in 0..2 {
            let (mut client, _) = session(&env, addr, TlsMode::Implicit).await;
            let reply = command(
                &mut client,
                &format!("AUTH PLAIN {}", b64("\0alice\0wrong")),
            )
            .await;
            assert_eq!(reply, [INVALID]);
        }
        let (mut client, _) = session(&env, addr, TlsMode::Implicit).await;
        let right = b64(format!("\0alice\0{RIGHT}"));
        let reply = command(&mut client, &format!("AUTH PLAIN {right}")).await;
        assert!(
            last(&reply).starts_with("454 4.7.0 "),
            "right password: {reply:?}"
        );
        let (mut client, _) = session(&env, addr, TlsMode::Implicit).await;
        let token = env.idp.issue("alice");
        let reply = auth_token(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
        assert!(reply.starts_with("454 4.7.0 "), "good token: {reply:?}");
        assert_eq!(env.idp.requests(), 0, "the IdP was not asked");
        assert!(sink.messages().is_empty());
    }
}

/// `login = "xclient"` (Postfix): the proxy vouches for the user with XCLIENT, so a password
/// it cannot check must never be accepted there, and XCLIENT stays the proxy's.
mod xclient {
    use std::fs;
    use std::net::IpAddr;
    use std::process::Command;

    use super::smtp::{auth_token, command, read_reply};
    use super::*;
    use crate::support::postfix::Postfix;
    use crate::support::proxy::ListenerConfig;
    use crate::support::{run, TestCerts, TestDir};

    /// A whole config: one plaintext SMTP listener in front of an xclient backend.
    fn xclient_config(dir: &TestDir, password_fallback: bool) -> String {
        let certs = TestCerts::generate(dir.path());
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [[listeners]]\nprotocol = \"smtp\"\nlisten = \"127.0.0.1:{}\"\ntls = \"none\"\n\
             allow_plaintext_auth = true\npassword_fallback = {password_fallback}\n\
             backend = \"submission\"\n\n\
             [backends.submission]\naddress = \"127.0.0.1:25\"\ntls = \"none\"\n\
             login = \"xclient\"\n\n\
             [validator]\nkind = \"introspection\"\n\
             introspection_url = \"http://127.0.0.1:8080/introspect\"\n\
             client_id = \"bearergate\"\nclient_secret = \"secret\"\n\
             username_claim = \"username\"\nrequired_scope = \"mail\"\n",
            certs.cert_pem.display(),
            certs.key_pem.display(),
            free_port()
        )
    }

    fn check_config(dir: &TestDir, name: &str, config: &str) -> std::process::Output {
        let path = dir.path().join(name);
        fs::write(&path, config).expect("write config");
        run(Command::new(env!("CARGO_BIN_EXE_bearergate"))
            .arg("check-config")
            .arg("--config")
            .arg(&path))
    }

    #[test]
    fn check_config_refuses_password_fallback_with_xclient() {
        let dir = TestDir::new("pwfb-xclient-config");
        let good = check_config(&dir, "good.toml", &xclient_config(&dir, false));
        assert!(
            good.status.success(),
            "the same config without the fallback is valid: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        let bad = check_config(&dir, "bad.toml", &xclient_config(&dir, true));
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success(), "accepted:\n{stderr}");
        assert!(
            stderr.contains("password_fallback") && stderr.to_lowercase().contains("xclient"),
            "want an error naming password_fallback and xclient:\n{stderr}"
        );
    }

    /// The proxy in front of `postfix`: one plaintext SMTP listener (`allow_plaintext_auth`)
    /// and `login = "xclient"`.
    fn xclient_proxy(env: &TestEnv, postfix: &Postfix) -> Proxy {
        let mut config = env.proxy_config();
        config.listeners = vec![ListenerConfig::smtp(TlsMode::None)];
        let backend = config.backend_mut("imap");
        backend.name = "submission".into();
        backend.address = postfix.addr().to_string();
        backend.login = "xclient".into();
        backend.master_user_format = "{user}".into();
        env.start_proxy_with(&config)
    }

    /// XOAUTH2 as alice through the proxy on `client`, then the client's own `XCLIENT
    /// LOGIN=bob`, which the relay carries to Postfix: its reply.
    async fn relayed_xclient(env: &TestEnv, client: &mut ImapClient) -> Vec<String> {
        let greeting = read_reply(client).await;
        assert!(
            greeting[greeting.len() - 1].starts_with("220 "),
            "{greeting:?}"
        );
        command(client, "EHLO client.test").await;
        let token = env.idp.issue("alice");
        let reply = auth_token(client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
        assert!(reply.starts_with("235 "), "{reply}");
        command(client, "XCLIENT LOGIN=bob").await
    }

    /// The client comes from an address Postfix trusts with XCLIENT (127.0.0.1, the proxy's
    /// own): after the proxy's `XCLIENT ADDR=127.0.0.1 LOGIN=alice`, Postfix judges the next
    /// XCLIENT by that address, so the client could make itself bob. The proxy sees XCLIENT
    /// in the post-login EHLO and refuses to hand the connection over.
    #[tokio::test]
    async fn a_client_that_could_re_xclient_itself_is_never_handed_the_connection() {
        let env = env("pwfb-xclient-relay");
        let postfix = Postfix::builder(env.dir.path()).start();
        let proxy = xclient_proxy(&env, &postfix);
        let mut client = ImapClient::connect_plain(proxy.addr(TlsMode::None)).await;
        let greeting = read_reply(&mut client).await;
        assert!(
            greeting[greeting.len() - 1].starts_with("220 "),
            "{greeting:?}"
        );
        command(&mut client, "EHLO client.test").await;
        let token = env.idp.issue("alice");
        let reply = auth_token(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token)).await;
        assert!(reply.starts_with("454 4.7.0 "), "{reply}");
        // Still the proxy's session: MAIL before AUTH is refused by the proxy itself.
        let reply = command(&mut client, "MAIL FROM:<bob@example.test>").await;
        assert!(
            reply.last().is_some_and(|l| l.starts_with("530 ")),
            "{reply:?}"
        );
        assert!(
            proxy.wait_for_log("still offers XCLIENT", Duration::from_secs(10)),
            "{}",
            proxy.log()
        );
    }

    /// As deployed: Postfix trusts only the proxy's address with XCLIENT, and the client
    /// comes from elsewhere (127.0.0.2), so its relayed XCLIENT is refused.
    #[tokio::test]
    async fn client_xclient_is_refused_when_only_the_proxy_is_an_xclient_host() {
        let env = env("pwfb-xclient-narrow");
        let postfix = Postfix::builder(env.dir.path()).start();
        let proxy = xclient_proxy(&env, &postfix);
        let local = IpAddr::from([127, 0, 0, 2]);
        let mut client = ImapClient::connect_plain_from(local, proxy.addr(TlsMode::None)).await;
        let reply = relayed_xclient(&env, &mut client).await;
        assert!(
            reply.last().is_some_and(|l| l.starts_with("550 ")),
            "want Postfix's 550 insufficient authorization: {reply:?}\n{}",
            postfix.log()
        );
        let reply = command(&mut client, "MAIL FROM:<alice@example.test>").await;
        assert!(
            reply.last().is_some_and(|l| l.starts_with("250 ")),
            "still alice's session: {reply:?}"
        );
    }
}

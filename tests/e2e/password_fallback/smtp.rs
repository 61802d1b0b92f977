//! The SMTP submission listener, with Dovecot submission (relaying to a sink) behind it.

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

/// Dovecot submission trusts the proxy with XCLIENT: password and token logins both tell it
/// the client's own address first, so its log, penalties and limits are the client's.
#[tokio::test]
async fn smtp_logins_tell_dovecot_the_clients_address() {
    let (_sink, env) = smtp_env("pwfb-smtp-rip");
    let proxy = start(&env, |_| {});
    let addr = proxy.addr(TlsMode::None);
    let token = env.idp.issue("bob");
    for (local, mech, initial) in [
        ([127, 0, 0, 2], "PLAIN", b64(format!("\0alice\0{RIGHT}"))),
        ([127, 0, 0, 3], "XOAUTH2", xoauth2_b64("bob", &token)),
    ] {
        let local = std::net::IpAddr::from(local);
        let mut client = ImapClient::connect_plain_from(local, addr).await;
        let greeting = read_reply(&mut client).await;
        assert!(last(&greeting).starts_with("220 "), "{greeting:?}");
        ehlo(&mut client).await;
        let reply = auth_token(&mut client, mech, &initial).await;
        assert_eq!(reply, SUCCESS, "{mech}");
        let user = if mech == "PLAIN" { "alice" } else { "bob" };
        let needle = format!("Login: user=<{user}>");
        let log = crate::imap_backend::wait_for_dovecot_log(&env.dovecot, &needle);
        let line = log
            .lines()
            .find(|l| l.contains("submission-login") && l.contains(&needle))
            .unwrap_or_else(|| panic!("no submission login line for {user}:\n{log}"));
        assert!(line.contains(&format!("rip={local}")), "{line}");
    }
}

//! Security properties: no authentication in the clear, no STARTTLS command injection, bounded
//! lines, bounded failures and idle time, and no secrets in the logs.

use std::time::{Duration, Instant};

use crate::support::dovecot::MASTER_PASSWORD;
use crate::support::idp::{CLIENT_ID, CLIENT_SECRET};
use crate::support::imap_client::{last_status, ImapClient, Status};
use crate::support::proxy::READY_MARKER;
use crate::support::{
    b64, connect, login, oauthbearer_b64, oauthbearer_raw, random_token, xoauth2_b64, xoauth2_raw,
    TestEnv, TlsMode,
};

#[tokio::test]
async fn no_authentication_before_starttls_and_login_is_refused() {
    let env = TestEnv::new("privacy");
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});
    let (mut client, _) = connect(&env, &proxy, TlsMode::Starttls).await;

    let ir = oauthbearer_b64("alice", &token);
    let lines = client
        .command("a", &format!("AUTHENTICATE OAUTHBEARER {ir}"))
        .await;
    assert!(
        last_status(&lines).is("NO", Some("PRIVACYREQUIRED")),
        "{lines:?}"
    );
    // Without an initial response the proxy must refuse at once, not ask for the token.
    let lines = client.command("b", "AUTHENTICATE XOAUTH2").await;
    assert!(
        !lines.iter().any(|l| l.starts_with('+')),
        "asked for a token in the clear: {lines:?}"
    );
    assert!(
        last_status(&lines).is("NO", Some("PRIVACYREQUIRED")),
        "{lines:?}"
    );
    let lines = client.command("c", "LOGIN alice alicepass").await;
    assert!(
        last_status(&lines).is("NO", Some("PRIVACYREQUIRED")),
        "{lines:?}"
    );
    assert_eq!(env.idp.requests(), 0, "nothing may be validated before TLS");

    // After TLS, LOGIN is still refused (the proxy only takes bearer tokens).
    client.starttls("d", env.certs.client_config()).await;
    let lines = client.command("e", "LOGIN alice alicepass").await;
    assert_eq!(last_status(&lines).kind, "NO", "{lines:?}");
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let lines = client.command("a", "LOGIN alice alicepass").await;
    assert_eq!(last_status(&lines).kind, "NO", "{lines:?}");
    login(&mut client, "b", "alice", &token).await;
}

#[tokio::test]
async fn commands_pipelined_behind_starttls_are_never_executed() {
    let env = TestEnv::new("injection");
    let proxy = env.start_proxy(|_| {});
    let (mut client, _) = connect(&env, &proxy, TlsMode::Starttls).await;

    client.send(b"a STARTTLS\r\nb NOOP\r\n").await;
    let lines = client.read_until_tagged("a").await;
    assert!(
        !lines.iter().any(|l| l.starts_with("b ")),
        "injected command answered: {lines:?}"
    );
    assert_eq!(last_status(&lines).kind, "OK", "{lines:?}");
    client.upgrade_tls(env.certs.client_config()).await;

    let lines = client.command("c", "NOOP").await;
    assert!(
        !lines.iter().any(|l| l.starts_with("b ")),
        "injected command answered: {lines:?}"
    );
    assert!(
        lines.last().is_some_and(|l| l.starts_with("c OK")),
        "{lines:?}"
    );
}

/// Read until a `BAD` status line (tagged `tag` or untagged); panics on anything tagged else.
async fn read_bad(client: &mut ImapClient, tag: &str) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        let status = Status::parse(&line);
        lines.push(line);
        let Some(status) = status else { continue };
        if status.kind == "BAD" && (status.tag == tag || status.tag == "*") {
            return lines;
        }
        assert!(
            status.tag == "*",
            "want BAD for the long line, got {lines:?}"
        );
    }
}

#[tokio::test]
async fn over_long_line_is_bad_then_repeated_closes() {
    let env = TestEnv::new("longline");
    let proxy = env.start_proxy(|_| {});
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let mut long = b"x NOOP ".to_vec();
    // Well over the line limit (a 16 KiB token, base64-encoded, plus the command: ~24 KiB).
    long.resize(long.len() + 40 * 1024, b'A');

    // Without CRLF first: the proxy must not wait for the end to judge the length.
    client.send(&long).await;
    client.send(b"\r\n").await;
    read_bad(&mut client, "x").await;
    let lines = client.command("y", "CAPABILITY").await;
    assert_eq!(
        last_status(&lines).kind,
        "OK",
        "usable after one long line: {lines:?}"
    );

    let mut again = long.clone();
    again.extend_from_slice(b"\r\n");
    client.send(&again).await;
    let rest = client.read_to_eof().await;
    assert!(
        rest.iter().any(|l| l.starts_with("* BYE")),
        "want * BYE then close: {rest:?}"
    );
    assert_eq!(env.idp.requests(), 0);
}

#[tokio::test]
async fn third_failed_authentication_ends_the_session() {
    let env = TestEnv::new("failures");
    let proxy = env.start_proxy(|c| c.each_listener(|l| l.max_auth_failures = Some(3)));
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let bad = random_token();
    for (round, tag) in ["a", "b", "c"].into_iter().enumerate() {
        let outcome = client
            .authenticate(tag, "OAUTHBEARER", &oauthbearer_b64("alice", &bad), true)
            .await;
        assert!(
            outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
            "{outcome:?}"
        );
        let bye = outcome.untagged.iter().any(|l| l.starts_with("* BYE"));
        assert!(
            !bye || round == 2,
            "BYE after {} failures: {outcome:?}",
            round + 1
        );
    }
    let rest = client.read_to_eof().await;
    assert!(
        rest.iter().any(|l| l.starts_with("* BYE")),
        "want * BYE then close: {rest:?}"
    );
}

#[tokio::test]
async fn idle_unauthenticated_connection_is_closed() {
    let env = TestEnv::new("idle");
    let proxy = env.start_proxy(|c| {
        c.each_listener(|l| l.preauth_idle_timeout = Some("1s".into()));
    });
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let (mut client, _) = connect(&env, &proxy, tls).await;
        let started = Instant::now();
        let rest = client.read_to_eof().await;
        let waited = started.elapsed();
        assert!(
            rest.iter().any(|l| l.starts_with("* BYE")),
            "{tls:?}: want * BYE: {rest:?}"
        );
        assert!(
            waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
            "{tls:?}: closed after {waited:?} with a 1 s idle timeout"
        );
    }
}

#[tokio::test]
async fn logs_never_contain_tokens_or_passwords() {
    let env = TestEnv::new("secrets");
    env.dovecot
        .deliver("alice", b"Subject: s\r\n\r\nsecret-free body\r\n");
    let token = env.idp.issue("alice");
    let unknown = random_token();
    let proxy = env.start_proxy(|c| c.log_level = "trace".into());

    // A whole successful session, both mechanisms, then failures (challenge path).
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    client.command("b", "SELECT INBOX").await;
    client.fetch_body("c", 1).await;
    client.command("d", "LOGOUT").await;
    client.read_to_eof().await;
    let (mut client, _) = connect(&env, &proxy, TlsMode::Starttls).await;
    client.starttls("a", env.certs.client_config()).await;
    let ok = client
        .authenticate("b", "XOAUTH2", &xoauth2_b64("alice", &token), false)
        .await;
    assert_eq!(ok.tagged.kind, "OK", "{ok:?}");
    client.command("c", "LOGOUT").await;
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    for (tag, user, tok) in [("a", "alice", &unknown), ("b", "bob", &token)] {
        let no = client
            .authenticate(tag, "OAUTHBEARER", &oauthbearer_b64(user, tok), true)
            .await;
        assert_eq!(no.tagged.kind, "NO", "{no:?}");
    }
    // a third failure on that connection would end it (max_auth_failures)
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let no = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("bob", &token), false)
        .await;
    assert_eq!(no.tagged.kind, "NO", "{no:?}");
    client.command("b", "LOGOUT").await;
    client.read_to_eof().await;

    let log = proxy.log();
    assert!(log.contains(READY_MARKER), "the log was captured: {log}");
    let mut secrets = vec![
        ("master password".to_string(), MASTER_PASSWORD.to_string()),
        ("introspection secret".into(), CLIENT_SECRET.into()),
        (
            "introspection Basic credentials".into(),
            b64(format!("{CLIENT_ID}:{CLIENT_SECRET}")),
        ),
    ];
    for (name, tok) in [("token", &token), ("unknown token", &unknown)] {
        secrets.push((name.into(), tok.to_string()));
        // any 32-character piece of the random part
        secrets.push((format!("{name} fragment"), tok[60..92].to_string()));
        for user in ["alice", "bob"] {
            secrets.push((
                format!("{name} OAUTHBEARER base64"),
                oauthbearer_b64(user, tok),
            ));
            secrets.push((format!("{name} OAUTHBEARER"), oauthbearer_raw(user, tok)));
            secrets.push((format!("{name} XOAUTH2 base64"), xoauth2_b64(user, tok)));
            secrets.push((format!("{name} XOAUTH2"), xoauth2_raw(user, tok)));
        }
    }
    for (name, secret) in secrets {
        assert!(!log.contains(&secret), "the proxy log contains the {name}");
    }
}

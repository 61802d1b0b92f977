//! What the IMAP listener says to a client before login, beside the token checks: the error
//! challenge that can be turned off for clients that never answer it, the scope it names,
//! and how an ordinary TLS hang-up is logged.

use std::time::Duration;

use crate::support::{connect, random_token, xoauth2_b64, TestEnv, TlsMode};

#[tokio::test]
async fn without_the_error_challenge_a_refused_token_fails_at_once() {
    let env = TestEnv::new("imap-no-challenge");
    let proxy =
        env.start_proxy(|c| c.each_listener(|l| l.extra.push("error_challenge = false".into())));
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    for (tag, sasl_ir) in [("a", true), ("b", false)] {
        let outcome = client
            .authenticate(
                tag,
                "XOAUTH2",
                &xoauth2_b64("alice", &random_token()),
                sasl_ir,
            )
            .await;
        assert!(outcome.challenge.is_none(), "{outcome:?}");
        assert!(
            outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
            "{outcome:?}"
        );
    }
    // A good token still logs in on the same connection.
    let token = env.idp.issue("alice");
    let outcome = client
        .authenticate("c", "XOAUTH2", &xoauth2_b64("alice", &token), true)
        .await;
    assert_eq!(outcome.tagged.kind, "OK", "{outcome:?}");
}

#[tokio::test]
async fn the_xoauth2_error_challenge_names_the_required_scope() {
    let env = TestEnv::new("imap-xoauth2-scope");
    let proxy = env.start_proxy(|_| {});
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("alice", &random_token()), true)
        .await;
    let challenge = outcome.challenge.expect("an error challenge");
    assert_eq!(challenge["status"], "401", "{challenge}");
    assert_eq!(challenge["schemes"], "bearer", "{challenge}");
    assert_eq!(challenge["scope"], "mail", "{challenge}");
    assert!(outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")));
}

#[tokio::test]
async fn a_tls_hang_up_without_close_notify_is_an_ordinary_close() {
    let env = TestEnv::new("close-notify");
    let proxy = env.start_proxy(|_| {});
    let (client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let peer = format!("peer={}", client.local_addr());
    // Dropping the client closes the socket without a TLS close_notify, as most mail
    // clients do when they quit.
    drop(client);
    assert!(
        proxy.wait_for_log("outcome=\"client-closed\"", Duration::from_secs(10)),
        "no ordinary close logged:\n{}",
        proxy.log()
    );
    let log = proxy.log();
    let closing: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(&peer) && line.contains("closed"))
        .collect();
    assert_eq!(closing.len(), 1, "{log}");
    assert!(!closing[0].contains("io-error"), "{}", closing[0]);
    assert!(!closing[0].contains("close_notify"), "{}", closing[0]);
}

#[tokio::test]
async fn a_busy_client_is_still_cut_at_the_prelogin_deadline() {
    let env = TestEnv::new("prelogin-deadline");
    let proxy = env.start_proxy(|c| {
        c.each_listener(|l| {
            l.preauth_idle_timeout = Some("30s".into());
            l.extra.push("preauth_deadline = \"1s\"".into());
        })
    });
    // The deadline counts from the connection, the TLS handshake included.
    let started = std::time::Instant::now();
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    // Busy all the time: each NOOP is answered at once, so the idle timer never runs out;
    // only the deadline ends the connection.
    let mut rounds = 0u32;
    let mut goodbye = None;
    while client.try_send(b"a NOOP\r\n").await.is_ok() {
        let Some(line) = client.try_read_line().await else {
            break;
        };
        if line.starts_with("* BYE") {
            goodbye = Some(line);
        }
        rounds += 1;
        assert!(rounds < 10_000_000, "never cut off");
    }
    assert!(goodbye.is_some(), "no BYE before the close");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        proxy.wait_for_log("outcome=\"prelogin-deadline\"", Duration::from_secs(10)),
        "{}",
        proxy.log()
    );
}

#[tokio::test]
async fn a_claimed_user_cannot_forge_log_lines() {
    let env = TestEnv::new("log-forging");
    let proxy = env.start_proxy(|_| {});
    let token = env.idp.issue("alice");
    // The OAUTHBEARER authorization identity may carry CR LF; it is quoted in the refusal's
    // log line, which must stay one line.
    let claimed = "bob\r\n2026-01-01T00:00:00Z  INFO forged: logged in as admin";
    let response = crate::support::b64(crate::support::oauthbearer_raw(claimed, &token));
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("a", "OAUTHBEARER", &response, true)
        .await;
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{outcome:?}"
    );
    assert!(
        proxy.wait_for_log("login refused", Duration::from_secs(5)),
        "{}",
        proxy.log()
    );
    let log = proxy.log();
    assert!(
        !log.lines()
            .any(|line| line.contains("INFO forged") && !line.contains("login refused")),
        "a client's text started a log line of its own:\n{log}"
    );
}

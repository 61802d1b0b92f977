//! Successful logins through the proxy with real clients (curl, Python imaplib) and the raw
//! client; what the client fetches must be byte-identical to what was delivered.

use std::fs;
use std::process::Command;

use crate::support::imap_client::{capability_line, last_status};
use crate::support::{
    client_script, connect, expect_success, login, run, test_message, xoauth2_b64, TestEnv, TlsMode,
};

fn assert_caps(caps: &[String], present: &[&str], absent: &[&str], context: &str) {
    for cap in present {
        assert!(
            caps.iter().any(|c| c == cap),
            "{context}: {cap} missing from {caps:?}"
        );
    }
    for cap in absent {
        assert!(
            !caps.iter().any(|c| c == cap),
            "{context}: {cap} must not be in {caps:?}"
        );
    }
}

const OAUTH_CAPS: &[&str] = &[
    "IMAP4REV1",
    "SASL-IR",
    "ID",
    "AUTH=XOAUTH2",
    "AUTH=OAUTHBEARER",
];

#[tokio::test]
async fn greetings_advertise_what_each_listener_allows() {
    let env = TestEnv::new("greetings");
    let proxy = env.start_proxy(|_| {});

    let (_, greeting) = connect(&env, &proxy, TlsMode::Implicit).await;
    let caps = greeting.capabilities();
    assert_caps(
        &caps,
        OAUTH_CAPS,
        &["LOGINDISABLED", "STARTTLS"],
        "implicit TLS greeting",
    );

    let (_, greeting) = connect(&env, &proxy, TlsMode::None).await;
    let caps = greeting.capabilities();
    assert_caps(
        &caps,
        OAUTH_CAPS,
        &["LOGINDISABLED"],
        "allow_plaintext_auth greeting",
    );

    let (mut client, greeting) = connect(&env, &proxy, TlsMode::Starttls).await;
    let caps = greeting.capabilities();
    assert_caps(
        &caps,
        &["IMAP4REV1", "STARTTLS", "LOGINDISABLED"],
        &[],
        "STARTTLS greeting",
    );
    assert!(
        !caps.iter().any(|c| c.starts_with("AUTH=")),
        "no AUTH= before TLS: {caps:?}"
    );

    client.starttls("a", env.certs.client_config()).await;
    let lines = client.command("b", "CAPABILITY").await;
    assert_eq!(last_status(&lines).kind, "OK", "{lines:?}");
    let caps = lines
        .iter()
        .find_map(|l| capability_line(l))
        .unwrap_or_else(|| panic!("no * CAPABILITY in {lines:?}"));
    assert_caps(
        &caps,
        OAUTH_CAPS,
        &["LOGINDISABLED", "STARTTLS"],
        "after STARTTLS",
    );
}

fn curl_fetch(env: &TestEnv, url: &str, token: &str, starttls: bool) -> Vec<u8> {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--cacert")
        .arg(&env.certs.ca_pem)
        .args(["--oauth2-bearer", token, "--user", "alice:"]);
    if starttls {
        cmd.arg("--ssl-reqd");
    }
    let out = run(cmd.arg(url));
    expect_success(&format!("curl {url}"), &out);
    out.stdout
}

#[tokio::test]
async fn curl_oauthbearer_fetches_exact_bytes_over_implicit_tls_and_starttls() {
    let env = TestEnv::new("curl");
    let message = env
        .dovecot
        .deliver("alice", &test_message("curl", 8 * 1024));
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});

    let port = proxy.addr(TlsMode::Implicit).port();
    let fetched = curl_fetch(
        &env,
        &format!("imaps://localhost:{port}/INBOX;UID=1"),
        &token,
        false,
    );
    assert!(
        fetched == message,
        "curl (imaps) got {} bytes, delivered {}:\n{}",
        fetched.len(),
        message.len(),
        String::from_utf8_lossy(&fetched)
    );

    let port = proxy.addr(TlsMode::Starttls).port();
    let fetched = curl_fetch(
        &env,
        &format!("imap://localhost:{port}/INBOX;UID=1"),
        &token,
        true,
    );
    assert!(
        fetched == message,
        "curl (STARTTLS) got {} bytes, delivered {}",
        fetched.len(),
        message.len()
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn python_imaplib_xoauth2_fetches_exact_bytes() {
    let env = TestEnv::new("imaplib");
    let message = env
        .dovecot
        .deliver("alice", &test_message("imaplib", 16 * 1024));
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});

    let outfile = env.dir.path().join("imaplib-fetched.eml");
    let port = proxy.addr(TlsMode::Implicit).port().to_string();
    let out = run(Command::new("python3")
        .arg(client_script("imaplib_xoauth2_fetch.py"))
        .args(["localhost", &port])
        .arg(&env.certs.ca_pem)
        .args(["alice", "1"])
        .arg(&outfile)
        .env("BG_TOKEN", &token));
    expect_success("imaplib XOAUTH2 client", &out);
    let fetched = fs::read(&outfile).expect("read what imaplib fetched");
    assert!(
        fetched == message,
        "imaplib got {} bytes, delivered {}",
        fetched.len(),
        message.len()
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn login_relays_backend_capabilities_and_second_login_hits_the_cache() {
    let env = TestEnv::new("cache");
    let message = env
        .dovecot
        .deliver("alice", &test_message("cache", 2 * 1024));
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let ok = login(&mut client, "a", "alice", &token).await;
    // Dovecot's post-login capabilities, not the proxy's pre-login list.
    let caps = ok.capabilities();
    assert_caps(
        &caps,
        &["IMAP4REV1", "IDLE", "SORT"],
        &["UNAUTHENTICATE"],
        "login OK",
    );
    let select = client.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        client.fetch_body("c", 1).await == message,
        "first session fetch differs"
    );
    let logout = client.command("d", "LOGOUT").await;
    assert!(logout.iter().any(|l| l.starts_with("* BYE")), "{logout:?}");

    // Same token, other mechanism, no SASL-IR: answered from the cache.
    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("alice", &token), false)
        .await;
    assert_eq!(outcome.tagged.kind, "OK", "{outcome:?}");
    assert!(outcome.challenge.is_none(), "{outcome:?}");
    let select = client.command("b", "EXAMINE INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");

    assert_eq!(
        env.idp.requests(),
        1,
        "two logins with one token: one introspection"
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn large_message_is_fetched_identical() {
    let env = TestEnv::new("large");
    let message = env
        .dovecot
        .deliver("alice", &test_message("large", 200 * 1024));
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    let select = client.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    let fetched = client.fetch_body("c", 1).await;
    assert_eq!(
        fetched.len(),
        message.len(),
        "length of the 200 KiB message"
    );
    assert!(fetched == message, "200 KiB message differs");
}

#[tokio::test]
async fn append_through_the_relay_round_trips_bytes() {
    let env = TestEnv::new("append");
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy(|_| {});
    let first = test_message("append sync literal", 40 * 1024);
    let second = test_message("append LITERAL+", 3 * 1024);

    let (mut client, _) = connect(&env, &proxy, TlsMode::Implicit).await;
    login(&mut client, "a", "alice", &token).await;
    let appended = client.append("b", "INBOX", &first).await;
    assert_eq!(last_status(&appended).kind, "OK", "{appended:?}");

    // Non-synchronising literal: command, literal and CRLF in one write.
    let mut command = format!("c APPEND INBOX {{{}+}}\r\n", second.len()).into_bytes();
    command.extend_from_slice(&second);
    command.extend_from_slice(b"\r\n");
    client.send(&command).await;
    let appended = client.read_until_tagged("c").await;
    assert_eq!(last_status(&appended).kind, "OK", "{appended:?}");

    let select = client.command("d", "SELECT INBOX").await;
    assert!(select.iter().any(|l| l == "* 2 EXISTS"), "{select:?}");
    assert!(
        client.fetch_body("e", 1).await == first,
        "APPENDed message 1 differs"
    );
    assert!(
        client.fetch_body("f", 2).await == second,
        "APPENDed message 2 differs"
    );
}

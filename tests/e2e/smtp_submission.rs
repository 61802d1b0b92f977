//! SMTP submission through the proxy to a real Dovecot submission service, which relays to
//! the in-process [`SmtpSink`]: real clients (curl, Python smtplib) and a raw client; what
//! the sink receives must be what the client sent, plus only what Dovecot adds.
//!
//! What Dovecot 2.3.19 submission adds to a relayed message: exactly one `Received:` header
//! field, prepended; every byte the client sent follows unchanged. See
//! [`assert_relayed_intact`] for its exact shape. (curl 7.88 names itself in EHLO after the
//! uploaded file, e.g. `EHLO curl-implicit.eml`, as it appends the file name to the URL's
//! path; smtplib uses the local FQDN, or `[127.0.0.1]` when that has no dot.)

use std::fs;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::imap_client::ImapClient;
use crate::support::ports::closed_addr;
use crate::support::{
    b64, b64_decode, client_script, expect_success, oauthbearer_raw, random_token, run,
    test_message, unix_now, xoauth2_b64, IdpMode, Proxy, ProxyConfig, SinkMessage, SmtpSink,
    TestEnv, TlsMode,
};

/// How long a submitted message may take to reach the sink through Dovecot.
const RELAY_DEADLINE: Duration = Duration::from_secs(20);
/// The longest AUTH line the proxy accepts: a 16 KiB token base64-encoded and the command
/// (RFC 4954 §4's 12,288 is a minimum; other commands keep it as their limit).
const MAX_AUTH_LINE: usize = 24_236;
/// The longest response the SASL layer takes, in base64 without padding: 17,406 octets.
const MAX_RESPONSE_B64: usize = 23_208;

/// A sink, then a Dovecot whose submission service relays to it (dropped in reverse order:
/// Dovecot first).
fn smtp_env(label: &str) -> (SmtpSink, TestEnv) {
    let sink = SmtpSink::start();
    let env = TestEnv::with_dovecot(label, |b| b.submission(sink.port()));
    (sink, env)
}

fn start_proxy(env: &TestEnv, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
    let mut config = ProxyConfig::submission(env);
    tweak(&mut config);
    env.start_proxy_with(&config)
}

/// A message for submission: the usual test message with 8-bit text and IMAP-looking lines,
/// then lines that need dot-stuffing on the wire (one is a lone `.`, which would end DATA
/// early if any hop forgot to stuff it).
fn smtp_message(subject: &str, size: usize) -> Vec<u8> {
    let mut message = test_message(subject, size);
    message.extend_from_slice(b".leading dot\r\n.\r\n..two dots\r\n. dot space\r\nlast line\r\n");
    message
}

/// What arrived must be one `Received:` header field that Dovecot prepended, followed by
/// exactly the bytes the client submitted. `helo`, when given, is the EHLO name the client
/// gave the proxy, which the proxy replays to Dovecot.
///
/// Dovecot 2.3.19 submission (`submission_add_received_header`, on by default) adds, folded
/// over five lines, each continuation line starting with one TAB:
/// ```text
/// Received: from <EHLO name> ([127.0.0.1])
///         by backend.test with ESMTPA
///         id <22 characters>
///         (envelope-from <alice@example.test>)
///         for <bob@example.test>; <RFC 5322 date>
/// ```
/// `[127.0.0.1]` is the proxy's address (nothing forwards the client's to submission), and
/// `ESMTPA` (not `ESMTPSA`) because the proxy-to-Dovecot hop is plaintext here.
fn assert_relayed_intact(sent: &[u8], got: &SinkMessage, helo: Option<&str>) {
    assert!(
        got.data.len() > sent.len() && got.data.ends_with(sent),
        "the relayed message ({} bytes) does not end with the {} bytes submitted:\n{}",
        got.data.len(),
        sent.len(),
        String::from_utf8_lossy(&got.data)
    );
    let added = std::str::from_utf8(&got.data[..got.data.len() - sent.len()])
        .expect("Dovecot's added header is ASCII");
    let lines: Vec<&str> = added
        .strip_suffix("\r\n")
        .unwrap_or_else(|| panic!("added header does not end with CRLF: {added:?}"))
        .split("\r\n")
        .collect();
    let shape_ok = lines.len() == 5
        && lines[0].starts_with("Received: from ")
        && lines[0].ends_with(" ([127.0.0.1])")
        && lines[1] == "\tby backend.test with ESMTPA"
        && lines[2].starts_with("\tid ")
        && lines[3] == "\t(envelope-from <alice@example.test>)"
        && lines[4].starts_with("\tfor <bob@example.test>; ");
    assert!(shape_ok, "Dovecot added something else: {added:?}");
    if let Some(helo) = helo {
        assert_eq!(
            lines[0],
            format!("Received: from {helo} ([127.0.0.1])"),
            "the client's EHLO name, replayed by the proxy"
        );
    }
}

fn assert_envelope(got: &SinkMessage) {
    assert!(
        got.mail_from.starts_with("<alice@example.test>"),
        "envelope sender {:?}",
        got.mail_from
    );
    assert_eq!(got.rcpt_to.len(), 1, "recipients {:?}", got.rcpt_to);
    assert!(
        got.rcpt_to[0].starts_with("<bob@example.test>"),
        "recipient {:?}",
        got.rcpt_to
    );
}

// ---- a raw SMTP client over the line client --------------------------------------------

/// One reply's lines, up to the one with a space after the code.
async fn read_reply(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        let last = line.len() == 3 || line.as_bytes().get(3) == Some(&b' ');
        assert!(
            line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
            "not an SMTP reply line: {line:?} (after {lines:?})"
        );
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// Send one line (CRLF added) and read the reply.
async fn command(client: &mut ImapClient, line: &str) -> Vec<String> {
    client.send(format!("{line}\r\n").as_bytes()).await;
    read_reply(client).await
}

fn last(reply: &[String]) -> &str {
    reply.last().expect("a reply has lines")
}

/// Connect to the listener of this TLS mode and read the `220` greeting.
async fn smtp_connect(env: &TestEnv, proxy: &Proxy, tls: TlsMode) -> ImapClient {
    let addr = proxy.addr(tls);
    let mut client = match tls {
        TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
        TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
    };
    let greeting = read_reply(&mut client).await;
    assert!(
        last(&greeting).starts_with("220 localhost "),
        "greeting {greeting:?}"
    );
    client
}

async fn ehlo(client: &mut ImapClient, name: &str) -> Vec<String> {
    let reply = command(client, &format!("EHLO {name}")).await;
    assert!(last(&reply).starts_with("250 "), "EHLO: {reply:?}");
    reply
}

/// `STARTTLS`, `220`, handshake.
async fn starttls(client: &mut ImapClient, env: &TestEnv) {
    let reply = command(client, "STARTTLS").await;
    assert_eq!(reply, ["220 2.0.0 Ready to start TLS"], "STARTTLS");
    client.upgrade_tls(env.certs.client_config()).await;
}

/// The outcome of an AUTH exchange.
#[derive(Debug)]
struct SmtpAuth {
    /// The error challenge (decoded JSON), if the server sent one.
    challenge: Option<Value>,
    /// The final reply.
    reply: Vec<String>,
}

/// `AUTH mech` with `response` (base64) as initial response, or after an empty `334 `. An
/// error challenge is decoded and answered with the mechanism's dummy.
async fn auth(client: &mut ImapClient, mech: &str, response: &str, initial: bool) -> SmtpAuth {
    let mut pending = if initial {
        client
            .send(format!("AUTH {mech} {response}\r\n").as_bytes())
            .await;
        None
    } else {
        client.send(format!("AUTH {mech}\r\n").as_bytes()).await;
        Some(response.to_string())
    };
    let dummy = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
    let mut challenge = None;
    loop {
        let reply = read_reply(client).await;
        let Some(data) = last(&reply).strip_prefix("334 ") else {
            return SmtpAuth { challenge, reply };
        };
        if let Some(response) = pending.take() {
            assert_eq!(data, "", "first challenge must be empty: {reply:?}");
            client.send(format!("{response}\r\n").as_bytes()).await;
            continue;
        }
        assert!(challenge.is_none(), "a second error challenge: {reply:?}");
        let json = b64_decode(data);
        challenge = Some(
            serde_json::from_slice(&json)
                .unwrap_or_else(|e| panic!("error challenge is not JSON ({e}): {json:?}")),
        );
        client.send(format!("{dummy}\r\n").as_bytes()).await;
    }
}

fn oauthbearer(user: &str, token: &str) -> String {
    b64(oauthbearer_raw(user, token))
}

/// MAIL, RCPT, DATA (dot-stuffed here) and QUIT after a successful AUTH.
async fn submit(client: &mut ImapClient, message: &[u8]) {
    let reply = command(client, "MAIL FROM:<alice@example.test>").await;
    assert!(last(&reply).starts_with("250 "), "MAIL: {reply:?}");
    let reply = command(client, "RCPT TO:<bob@example.test>").await;
    assert!(last(&reply).starts_with("250 "), "RCPT: {reply:?}");
    let reply = command(client, "DATA").await;
    assert!(last(&reply).starts_with("354 "), "DATA: {reply:?}");
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    client.send(&data).await;
    let reply = read_reply(client).await;
    assert!(last(&reply).starts_with("250 "), "end of DATA: {reply:?}");
    let reply = command(client, "QUIT").await;
    assert!(last(&reply).starts_with("221 "), "QUIT: {reply:?}");
}

fn challenge_status(outcome: &SmtpAuth) -> String {
    let challenge = outcome
        .challenge
        .as_ref()
        .unwrap_or_else(|| panic!("no error challenge before the failure: {outcome:?}"));
    match challenge.get("status") {
        Some(Value::String(status)) => status.clone(),
        other => panic!("challenge without a string status ({other:?}): {challenge}"),
    }
}

/// The token is at fault: the mechanism's error challenge, then `535 5.7.8`.
fn assert_refused(outcome: &SmtpAuth, mech: &str) {
    let want = if mech == "OAUTHBEARER" {
        "invalid_token"
    } else {
        "401"
    };
    assert_eq!(challenge_status(outcome), want, "{mech}: {outcome:?}");
    assert!(
        last(&outcome.reply).starts_with("535 5.7.8 "),
        "{mech}: want 535 5.7.8 after the challenge: {outcome:?}"
    );
}

/// Both mechanisms for `user` and `token` on the implicit-TLS listener, each on its own
/// connection: OAUTHBEARER with an initial response, XOAUTH2 after an empty challenge.
async fn both_mechanisms(
    env: &TestEnv,
    proxy: &Proxy,
    user: &str,
    token: &str,
) -> [(&'static str, SmtpAuth); 2] {
    let mut client = smtp_connect(env, proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    let bearer = auth(&mut client, "OAUTHBEARER", &oauthbearer(user, token), true).await;
    let mut client = smtp_connect(env, proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    let xoauth2 = auth(&mut client, "XOAUTH2", &xoauth2_b64(user, token), false).await;
    [("OAUTHBEARER", bearer), ("XOAUTH2", xoauth2)]
}

/// Someone else is at fault: `454 4.7.0`, and no error challenge.
fn assert_unavailable(outcomes: &[(&str, SmtpAuth)]) {
    for (mech, outcome) in outcomes {
        assert!(
            outcome.challenge.is_none() && last(&outcome.reply).starts_with("454 4.7.0 "),
            "{mech}: want 454 4.7.0: {outcome:?}"
        );
    }
}

// ---- real clients ----------------------------------------------------------------------

fn curl_send(
    env: &TestEnv,
    url: &str,
    token: &str,
    message_file: &std::path::Path,
    starttls: bool,
) {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "30"])
        .arg("--cacert")
        .arg(&env.certs.ca_pem)
        .args(["--oauth2-bearer", token, "--user", "alice:"])
        .args(["--mail-from", "alice@example.test"])
        .args(["--mail-rcpt", "bob@example.test"])
        .arg("--upload-file")
        .arg(message_file);
    if starttls {
        cmd.arg("--ssl-reqd");
    }
    let out = run(cmd.arg(url));
    expect_success(&format!("curl {url}"), &out);
}

#[tokio::test]
async fn curl_submits_exact_bytes_over_implicit_tls_and_starttls() {
    let (sink, env) = smtp_env("smtp-curl");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});

    let implicit = smtp_message("curl smtps", 20 * 1024);
    let file = env.dir.path().join("curl-implicit.eml");
    fs::write(&file, &implicit).expect("write message");
    let port = proxy.addr(TlsMode::Implicit).port();
    curl_send(
        &env,
        &format!("smtps://localhost:{port}"),
        &token,
        &file,
        false,
    );
    let got = sink.wait_for(1, RELAY_DEADLINE);
    assert_envelope(&got[0]);
    assert_relayed_intact(&implicit, &got[0], None);

    let starttls = smtp_message("curl STARTTLS", 3 * 1024);
    let file = env.dir.path().join("curl-starttls.eml");
    fs::write(&file, &starttls).expect("write message");
    let port = proxy.addr(TlsMode::Starttls).port();
    curl_send(
        &env,
        &format!("smtp://localhost:{port}"),
        &token,
        &file,
        true,
    );
    let got = sink.wait_for(2, RELAY_DEADLINE);
    assert_envelope(&got[1]);
    assert_relayed_intact(&starttls, &got[1], None);

    assert_eq!(env.idp.requests(), 1, "one token, one introspection");
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn python_smtplib_xoauth2_submits_over_implicit_tls_and_starttls() {
    let (sink, env) = smtp_env("smtplib");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    for (n, (mode, tls)) in [
        ("implicit", TlsMode::Implicit),
        ("starttls", TlsMode::Starttls),
    ]
    .into_iter()
    .enumerate()
    {
        let message = smtp_message(&format!("smtplib {mode}"), 6 * 1024);
        let file = env.dir.path().join(format!("smtplib-{mode}.eml"));
        fs::write(&file, &message).expect("write message");
        let port = proxy.addr(tls).port().to_string();
        let out = run(Command::new("python3")
            .arg(client_script("smtplib_xoauth2_send.py"))
            .args(["localhost", &port])
            .arg(&env.certs.ca_pem)
            .args([mode, "alice", "alice@example.test", "bob@example.test"])
            .arg(&file)
            .env("BG_TOKEN", &token));
        expect_success(&format!("smtplib XOAUTH2 client ({mode})"), &out);
        let got = sink.wait_for(n + 1, RELAY_DEADLINE);
        assert_envelope(&got[n]);
        assert_relayed_intact(&message, &got[n], None);
    }
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn plain_authzid_backend_login_submits() {
    let (sink, env) = smtp_env("smtp-authzid");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |c| {
        c.backend_mut("submission").login = "plain-authzid".into()
    });
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "authzid.client.test").await;
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert_eq!(
        outcome.reply,
        ["235 2.7.0 Authentication successful"],
        "{outcome:?}"
    );
    let message = smtp_message("plain-authzid", 2 * 1024);
    submit(&mut client, &message).await;
    let got = sink.wait_for(1, RELAY_DEADLINE);
    assert_envelope(&got[0]);
    assert_relayed_intact(&message, &got[0], Some("authzid.client.test"));
}

// ---- refused logins ---------------------------------------------------------------------

#[tokio::test]
async fn token_of_another_user_gets_535_after_the_challenge() {
    let (_sink, env) = smtp_env("smtp-wronguser");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    for (mech, outcome) in both_mechanisms(&env, &proxy, "bob", &token).await {
        assert_refused(&outcome, mech);
    }

    // A client that answers the error challenge by sending its response again (as smtplib
    // does, its callback not knowing better) gets the same 535, not a second challenge.
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    let response = xoauth2_b64("bob", &token);
    let reply = command(&mut client, &format!("AUTH XOAUTH2 {response}")).await;
    assert!(last(&reply).starts_with("334 "), "{reply:?}");
    let reply = command(&mut client, &response).await;
    assert!(last(&reply).starts_with("535 5.7.8 "), "{reply:?}");

    // smtplib itself, for the wrong user: AUTH fails with 535.
    let file = env.dir.path().join("unsent.eml");
    fs::write(&file, smtp_message("never sent", 1_024)).expect("write message");
    let port = proxy.addr(TlsMode::Implicit).port().to_string();
    let out = run(Command::new("python3")
        .arg(client_script("smtplib_xoauth2_send.py"))
        .args(["localhost", &port])
        .arg(&env.certs.ca_pem)
        .args(["implicit", "bob", "bob@example.test", "alice@example.test"])
        .arg(&file)
        .env("BG_TOKEN", &token));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("SMTPAuthenticationError(535, b'5.7.8 "),
        "smtplib as the wrong user: {stderr}"
    );

    // The connection stays usable: the right user with the same token gets in.
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    let refused = auth(&mut client, "XOAUTH2", &xoauth2_b64("bob", &token), true).await;
    assert_refused(&refused, "XOAUTH2");
    let ok = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert_eq!(ok.reply, ["235 2.7.0 Authentication successful"], "{ok:?}");
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn expired_and_inactive_tokens_get_535() {
    let (_sink, env) = smtp_env("smtp-expired");
    let expired = env.idp.issue_with("alice", |claims| {
        claims.insert("exp".into(), (unix_now() - 60).into());
        claims.insert("iat".into(), (unix_now() - 3660).into());
    });
    let inactive = env.idp.issue_with("alice", |claims| {
        claims.insert("active".into(), false.into());
    });
    let proxy = start_proxy(&env, |_| {});
    for token in [&expired, &inactive] {
        for (mech, outcome) in both_mechanisms(&env, &proxy, "alice", token).await {
            assert_refused(&outcome, mech);
        }
    }
}

#[tokio::test]
async fn idp_unavailable_or_down_gets_454() {
    let (_sink, mut env) = smtp_env("smtp-idpdown");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    env.idp.set_mode(IdpMode::Unavailable);
    assert_unavailable(&both_mechanisms(&env, &proxy, "alice", &token).await);
    env.idp.shutdown();
    assert_unavailable(&both_mechanisms(&env, &proxy, "alice", &token).await);
}

#[tokio::test]
async fn backend_down_gets_454() {
    let (_sink, env) = smtp_env("smtp-backenddown");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |c| {
        c.backend_mut("submission").address = closed_addr().to_string()
    });
    assert_unavailable(&both_mechanisms(&env, &proxy, "alice", &token).await);
}

// ---- protocol rules before login ----------------------------------------------------------

#[tokio::test]
async fn auth_before_starttls_gets_530_and_ehlo_offers_auth_only_under_tls() {
    let (_sink, env) = smtp_env("smtp-tlsfirst");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let mut client = smtp_connect(&env, &proxy, TlsMode::Starttls).await;
    let caps = ehlo(&mut client, "client.test").await;
    assert!(
        caps.iter()
            .any(|l| l == "250-STARTTLS" || l == "250 STARTTLS"),
        "{caps:?}"
    );
    assert!(
        !caps.iter().any(|l| l[4..].starts_with("AUTH")),
        "AUTH before TLS: {caps:?}"
    );

    let reply = command(
        &mut client,
        &format!("AUTH OAUTHBEARER {}", oauthbearer("alice", &token)),
    )
    .await;
    assert_eq!(reply, ["530 5.7.0 Must issue a STARTTLS command first"]);
    let reply = command(&mut client, "AUTH XOAUTH2").await;
    assert_eq!(reply, ["530 5.7.0 Must issue a STARTTLS command first"]);
    assert_eq!(env.idp.requests(), 0, "no token may be checked before TLS");

    starttls(&mut client, &env).await;
    let caps = ehlo(&mut client, "client.test").await;
    assert!(
        caps.iter().any(|l| &l[4..] == "AUTH OAUTHBEARER XOAUTH2"),
        "AUTH after STARTTLS: {caps:?}"
    );
    assert!(!caps.iter().any(|l| &l[4..] == "STARTTLS"), "{caps:?}");
    let ok = auth(
        &mut client,
        "OAUTHBEARER",
        &oauthbearer("alice", &token),
        true,
    )
    .await;
    assert_eq!(ok.reply, ["235 2.7.0 Authentication successful"], "{ok:?}");
}

#[tokio::test]
async fn mail_before_auth_gets_530() {
    let (sink, env) = smtp_env("smtp-mailfirst");
    let proxy = start_proxy(&env, |_| {});
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    for line in [
        "MAIL FROM:<alice@example.test>",
        "RCPT TO:<bob@example.test>",
        "DATA",
    ] {
        let reply = command(&mut client, line).await;
        assert_eq!(reply, ["530 5.7.0 Authentication required"], "{line}");
    }
    // still alive, and nothing reached the backend
    assert_eq!(command(&mut client, "NOOP").await, ["250 2.0.0 OK"]);
    assert!(sink.transcript().is_empty(), "{:?}", sink.transcript());
}

#[tokio::test]
async fn over_long_auth_lines_are_refused_whole_and_the_limit_itself_is_accepted() {
    let (_sink, env) = smtp_env("smtp-longline");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});

    // An OAUTHBEARER response padded with an extension key (RFC 7628 §3.1: ignored) so that
    // its base64 is exactly `len` characters; the token in it is valid.
    let padded = |len: usize| -> String {
        assert_eq!(len % 4, 0);
        let base = oauthbearer_raw("alice", &token);
        let raw_len = len / 4 * 3;
        let pad = raw_len - base.len() - "pad=\x01".len();
        let raw = base.replacen(
            "\x01auth=",
            &format!("\x01pad={}\x01auth=", "x".repeat(pad)),
            1,
        );
        let encoded = b64(&raw);
        assert_eq!(encoded.len(), len);
        encoded
    };

    // The AUTH command line: 17 + 24,220 = 24,237 octets, one over the limit.
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    let line = format!("AUTH OAUTHBEARER {}", padded(24_220));
    assert_eq!(line.len(), MAX_AUTH_LINE + 1);
    let reply = command(&mut client, &line).await;
    assert_eq!(reply, ["500 5.5.2 Line too long"], "over-long AUTH command");
    // Nothing of the line was taken as a command or a token, and the session goes on.
    assert_eq!(command(&mut client, "NOOP").await, ["250 2.0.0 OK"]);
    assert_eq!(
        env.idp.requests(),
        0,
        "a refused line must not be introspected"
    );

    // A response line after `334 `: 24,240 octets of base64, over the limit.
    let reply = command(&mut client, "AUTH OAUTHBEARER").await;
    assert_eq!(reply, ["334 "]);
    let reply = command(&mut client, &padded(24_240)).await;
    assert_eq!(
        reply,
        ["500 5.5.6 Authentication Exchange line is too long"],
        "over-long AUTH response"
    );
    // A second over-long line closes the connection (DESIGN.md: "then close if it repeats").
    assert_eq!(
        read_reply(&mut client).await,
        ["421 4.7.0 Too many long lines, closing connection"]
    );
    assert_eq!(client.read_to_eof().await, Vec::<String>::new());
    assert_eq!(
        env.idp.requests(),
        0,
        "a refused line must not be introspected"
    );

    // The largest response the SASL layer takes: accepted, whole, and the padded token
    // logs in.
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.test").await;
    let reply = command(&mut client, "AUTH OAUTHBEARER").await;
    assert_eq!(reply, ["334 "]);
    let response = padded(MAX_RESPONSE_B64);
    let reply = command(&mut client, &response).await;
    assert_eq!(
        reply,
        ["235 2.7.0 Authentication successful"],
        "23,208-octet response"
    );
    assert_eq!(env.idp.requests(), 1);
}

#[tokio::test]
async fn commands_injected_behind_starttls_are_discarded() {
    let (_sink, env) = smtp_env("smtp-injection");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let mut client = smtp_connect(&env, &proxy, TlsMode::Starttls).await;
    ehlo(&mut client, "client.test").await;
    // STARTTLS and an injected EHLO in one write (CVE-2011-0411).
    client.send(b"STARTTLS\r\nEHLO injected.test\r\n").await;
    let reply = read_reply(&mut client).await;
    assert_eq!(reply, ["220 2.0.0 Ready to start TLS"]);
    // upgrade_tls fails the test if anything followed the 220 in clear text
    client.upgrade_tls(env.certs.client_config()).await;

    // The first reply under TLS answers the first command sent under TLS.
    assert_eq!(
        command(&mut client, "NOOP").await,
        ["250 2.0.0 OK"],
        "the injected EHLO was answered"
    );
    // Nor was it processed silently: the session still wants an EHLO before AUTH.
    let reply = command(
        &mut client,
        &format!("AUTH OAUTHBEARER {}", oauthbearer("alice", &token)),
    )
    .await;
    assert_eq!(reply, ["503 5.5.1 EHLO first"]);
    let caps = ehlo(&mut client, "client.test").await;
    assert_eq!(caps[0], "250-localhost", "{caps:?}");
    let ok = auth(
        &mut client,
        "OAUTHBEARER",
        &oauthbearer("alice", &token),
        true,
    )
    .await;
    assert_eq!(ok.reply, ["235 2.7.0 Authentication successful"], "{ok:?}");
}

#[tokio::test]
async fn without_the_error_challenge_a_refused_token_gets_535_at_once() {
    let (_sink, env) = smtp_env("smtp-no-challenge");
    let proxy = start_proxy(&env, |c| {
        c.each_listener(|l| l.extra.push("error_challenge = false".into()))
    });
    let token = env.idp.issue("bob");
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.example").await;
    for mech in ["XOAUTH2", "OAUTHBEARER"] {
        let response = if mech == "XOAUTH2" {
            xoauth2_b64("alice", &token)
        } else {
            oauthbearer("alice", &token)
        };
        let outcome = auth(&mut client, mech, &response, true).await;
        assert!(outcome.challenge.is_none(), "{mech}: {outcome:?}");
        assert_eq!(
            outcome.reply,
            ["535 5.7.8 Authentication credentials invalid"],
            "{mech}"
        );
    }
}

#[tokio::test]
async fn the_xoauth2_error_challenge_names_the_required_scope() {
    let (_sink, env) = smtp_env("smtp-xoauth2-scope");
    let proxy = start_proxy(&env, |_| {});
    let mut client = smtp_connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client, "client.example").await;
    let outcome = auth(
        &mut client,
        "XOAUTH2",
        &xoauth2_b64("alice", &random_token()),
        true,
    )
    .await;
    let challenge = outcome.challenge.expect("an error challenge");
    assert_eq!(challenge["status"], "401", "{challenge}");
    // No challenge_scope is configured: the scope every token needs is named, as Google does.
    assert_eq!(challenge["scope"], "mail", "{challenge}");
    assert_eq!(
        outcome.reply,
        ["535 5.7.8 Authentication credentials invalid"]
    );
}

//! POP3 (RFC 1939) through the proxy to a real Dovecot (`dovecot-pop3d`): Python poplib and
//! curl retrieve a 1 MiB message byte for byte over implicit TLS and STLS; a raw client
//! checks the proxy's own replies (CAPA before and after STLS, the error challenge,
//! `-ERR [AUTH]`, `-ERR [SYS/TEMP]`); the password fallback with USER/PASS, the
//! plain-authzid strategy, STLS and implicit TLS towards the backend, the client's address
//! forwarded with XCLIENT, and `check-config` for POP3 listeners.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::imap_client::ImapClient;
use crate::support::ports::{closed_addr, free_port};
use crate::support::{
    b64, b64_decode, expect_success, http_get, metric_value, oauthbearer_b64, run, test_message,
    xoauth2_b64, Dovecot, Idp, IdpMode, Proxy, ProxyConfig, TestCerts, TestDir, TestEnv, TlsMode,
};

/// Dovecot's own brute-force penalty off (anvil): every test client is 127.0.0.1, and a
/// penalty after one wrong password would delay every later login from it.
const NO_PENALTY: &str =
    "service anvil {\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }\n}";

/// alice's password in the test Dovecot.
const RIGHT: &str = "alicepass";

/// The size of the message retrieved: large enough to take many reads both ways.
const LARGE: usize = 1024 * 1024;

fn pop3_env(label: &str) -> TestEnv {
    TestEnv::with_dovecot(label, |b| b.pop3().config(NO_PENALTY))
}

/// A Dovecot with POP3 that offers STLS and implicit TLS, with a certificate from the test
/// CA.
fn tls_env(label: &str) -> TestEnv {
    let dir = TestDir::new(label);
    let certs = TestCerts::generate(dir.path());
    let dovecot = Dovecot::builder(dir.path())
        .tls(&certs.cert_pem, &certs.key_pem)
        .pop3()
        .config(NO_PENALTY)
        .start();
    TestEnv {
        dovecot,
        idp: Idp::start(),
        certs,
        dir,
    }
}

fn start_proxy(env: &TestEnv, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
    let mut config = ProxyConfig::pop3(env);
    tweak(&mut config);
    env.start_proxy_with(&config)
}

/// The usual test message (8-bit UTF-8 text, IMAP-looking lines), padded to `size`, then
/// lines a POP3 server must dot-stuff (one is a lone `.`, which would end the RETR reply
/// early if any hop forgot) and raw 8-bit octets that are not UTF-8.
fn pop3_message(subject: &str, size: usize) -> Vec<u8> {
    let mut message = test_message(subject, size);
    message.extend_from_slice(b".leading dot\r\n.\r\n..two dots\r\n. dot space\r\n");
    message.extend_from_slice(b"raw 8-bit \x80\x81\xfe\xff latin-1 \xe9t\xe9 \xc3\x28\r\n");
    message.extend_from_slice(b"+OK not a reply\r\n-ERR nor this\r\nlast line\r\n");
    message
}

fn assert_same(what: &str, got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let around = |bytes: &[u8]| {
        let end = bytes.len().min(first + 80);
        String::from_utf8_lossy(&bytes[first.saturating_sub(80)..end]).into_owned()
    };
    panic!(
        "{what}: got {} bytes, delivered {}; first difference at {first}:\n got: {:?}\nwant: {:?}",
        got.len(),
        want.len(),
        around(got),
        around(want)
    );
}

// ---- a raw POP3 client over the line client ----------------------------------------------

/// Connect to the proxy's listener of this TLS mode and read its greeting.
async fn pop3_connect(env: &TestEnv, proxy: &Proxy, tls: TlsMode) -> ImapClient {
    let addr = proxy.addr(tls);
    let mut client = match tls {
        TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
        TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
    };
    let greeting = client.read_line().await;
    assert_eq!(greeting, "+OK bearergate ready.", "greeting");
    client
}

/// Send one line (CRLF added) and read the one-line reply.
async fn command(client: &mut ImapClient, line: &str) -> String {
    client.send(format!("{line}\r\n").as_bytes()).await;
    client.read_line().await
}

/// The lines of a multi-line reply after its `+OK`, up to the `.`.
async fn read_block(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        if line == "." {
            return lines;
        }
        lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
    }
}

/// `CAPA`: the capability lines.
async fn capa(client: &mut ImapClient) -> Vec<String> {
    let first = command(client, "CAPA").await;
    assert!(first.starts_with("+OK"), "CAPA: {first:?}");
    read_block(client).await
}

/// `STLS`, `+OK`, handshake.
async fn stls(client: &mut ImapClient, env: &TestEnv) {
    let reply = command(client, "STLS").await;
    assert_eq!(reply, "+OK Begin TLS negotiation", "STLS");
    client.upgrade_tls(env.certs.client_config()).await;
}

/// The outcome of an AUTH exchange.
#[derive(Debug)]
struct Pop3Auth {
    /// The error challenge (decoded JSON), if the server sent one.
    challenge: Option<Value>,
    /// The final `+OK` or `-ERR` line.
    done: String,
}

/// `AUTH mech` with `response` (base64) as initial response, or after an empty `+ `. An
/// error challenge is decoded and answered with the mechanism's dummy.
async fn auth(client: &mut ImapClient, mech: &str, response: &str, initial: bool) -> Pop3Auth {
    let mut pending = if initial {
        client
            .send(format!("AUTH {mech} {response}\r\n").as_bytes())
            .await;
        None
    } else {
        client.send(format!("AUTH {mech}\r\n").as_bytes()).await;
        Some(response.to_owned())
    };
    let dummy = if mech == "OAUTHBEARER" { "AQ==" } else { "" };
    let mut challenge = None;
    loop {
        let line = client.read_line().await;
        let Some(data) = line.strip_prefix("+ ") else {
            return Pop3Auth {
                challenge,
                done: line,
            };
        };
        if let Some(response) = pending.take() {
            assert_eq!(data, "", "the first continuation must be empty");
            client.send(format!("{response}\r\n").as_bytes()).await;
            continue;
        }
        assert!(challenge.is_none(), "a second error challenge: {line:?}");
        let json = b64_decode(data);
        challenge = Some(
            serde_json::from_slice(&json)
                .unwrap_or_else(|e| panic!("error challenge is not JSON ({e}): {json:?}")),
        );
        client.send(format!("{dummy}\r\n").as_bytes()).await;
    }
}

const LOGGED_IN: &str = "+OK Logged in.";
const AUTH_FAILED: &str = "-ERR [AUTH] Authentication failed.";
const UNAVAILABLE: &str =
    "-ERR [SYS/TEMP] Authentication service temporarily unavailable; try again later.";

/// A refused token: the mechanism's error challenge, then `-ERR [AUTH]`.
fn assert_refused(outcome: &Pop3Auth, mech: &str) {
    let want = if mech == "OAUTHBEARER" {
        "invalid_token"
    } else {
        "401"
    };
    let status = outcome
        .challenge
        .as_ref()
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str);
    assert_eq!(status, Some(want), "{mech}: {outcome:?}");
    assert_eq!(outcome.done, AUTH_FAILED, "{mech}: {outcome:?}");
}

/// Logged in: `STAT` answers with the maildrop (Dovecot's, through the relay).
async fn assert_stat(client: &mut ImapClient, messages: usize) {
    let stat = command(client, "STAT").await;
    assert!(
        stat.starts_with(&format!("+OK {messages} ")),
        "STAT after login: {stat:?}"
    );
}

// ---- real clients -------------------------------------------------------------------------

/// Python poplib: connect (`implicit` TLS, or `stls`), print CAPA as JSON, log in (`initial`:
/// `AUTH XOAUTH2 <response>`; `continuation`: `AUTH XOAUTH2`, `+ `, the response;
/// `password`: USER/PASS with $BG_PASSWORD), RETR the message and write its bytes.
///
/// usage: python3 -c SCRIPT HOST PORT CAFILE MODE FLOW USER MSGNUM OUTFILE ($BG_TOKEN)
const POPLIB: &str = r#"
import base64, json, os, poplib, ssl, sys
host, port, cafile, mode, flow, user, number, out = sys.argv[1:9]
ctx = ssl.create_default_context(cafile=cafile)
if mode == "implicit":
    pop = poplib.POP3_SSL(host, int(port), context=ctx, timeout=60)
else:
    pop = poplib.POP3(host, int(port), timeout=60)
    pop.stls(context=ctx)
print(json.dumps(pop.capa()))
if flow == "password":
    pop.user(user)
    reply = pop.pass_(os.environ["BG_PASSWORD"])
else:
    token = os.environ["BG_TOKEN"]
    response = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
    if flow == "initial":
        reply = pop._shortcmd("AUTH XOAUTH2 " + response)
    else:
        pop._shortcmd("AUTH XOAUTH2")
        reply = pop._shortcmd(response)
assert reply.startswith(b"+OK"), reply
_, lines, _ = pop.retr(int(number))
with open(out, "wb") as f:
    f.write(b"".join(line + b"\r\n" for line in lines))
pop.quit()
"#;

/// Runs [`POPLIB`] against the proxy's `tls` listener; returns the process output and the
/// bytes retrieved (empty when it failed).
fn poplib(
    env: &TestEnv,
    proxy: &Proxy,
    tls: TlsMode,
    flow: &str,
    secret: &str,
    out: &str,
) -> (Output, Vec<u8>) {
    let mode = match tls {
        TlsMode::Implicit => "implicit",
        _ => "stls",
    };
    let outfile = env.dir.path().join(out);
    let port = proxy.addr(tls).port().to_string();
    let output = run(Command::new("python3")
        .arg("-c")
        .arg(POPLIB)
        .args(["localhost", &port])
        .arg(&env.certs.ca_pem)
        .args([mode, flow, "alice", "1"])
        .arg(&outfile)
        .env("BG_TOKEN", secret)
        .env("BG_PASSWORD", secret));
    let fetched = fs::read(&outfile).unwrap_or_default();
    (output, fetched)
}

/// curl's RETR of message 1 (`pop3s://`, or `pop3://` with `--ssl-reqd` for STLS).
fn curl(env: &TestEnv, proxy: &Proxy, tls: TlsMode, token: &str) -> Output {
    let port = proxy.addr(tls).port();
    let url = match tls {
        TlsMode::Implicit => format!("pop3s://localhost:{port}/1"),
        _ => format!("pop3://localhost:{port}/1"),
    };
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--max-time", "60"])
        .arg("--cacert")
        .arg(&env.certs.ca_pem)
        .args(["--oauth2-bearer", token, "--user", "alice:"]);
    if tls != TlsMode::Implicit {
        cmd.arg("--ssl-reqd");
    }
    run(cmd.arg(url))
}

// ---- tests --------------------------------------------------------------------------------

#[tokio::test]
async fn poplib_xoauth2_retrieves_a_large_message_exactly_over_implicit_tls_and_stls() {
    let env = pop3_env("pop3-poplib");
    let message = env.dovecot.deliver("alice", &pop3_message("poplib", LARGE));
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    for (tls, flow) in [
        (TlsMode::Implicit, "initial"),
        (TlsMode::Starttls, "continuation"),
    ] {
        let out = format!("poplib-{flow}.eml");
        let (output, fetched) = poplib(&env, &proxy, tls, flow, &token, &out);
        expect_success(&format!("poplib XOAUTH2 ({tls:?}, {flow})"), &output);
        let caps: Value = serde_json::from_slice(&output.stdout).expect("CAPA as JSON");
        assert_eq!(
            caps["SASL"],
            serde_json::json!(["OAUTHBEARER", "XOAUTH2"]),
            "the proxy's CAPA under TLS: {caps}"
        );
        assert!(caps.get("STLS").is_none(), "no STLS under TLS: {caps}");
        assert_same(&format!("poplib RETR ({tls:?})"), &fetched, &message);
    }
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn curl_oauthbearer_retrieves_a_large_message_exactly_over_implicit_tls_and_stls() {
    let env = pop3_env("pop3-curl");
    let message = env.dovecot.deliver("alice", &pop3_message("curl", LARGE));
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    for tls in [TlsMode::Implicit, TlsMode::Starttls] {
        let out = curl(&env, &proxy, tls, &token);
        expect_success(&format!("curl ({tls:?})"), &out);
        assert_same(&format!("curl RETR ({tls:?})"), &out.stdout, &message);
    }
    // curl 7.88 picks OAUTHBEARER where CAPA offers it.
    assert!(
        proxy
            .log()
            .contains("mechanism=\"OAUTHBEARER\"}: logged in"),
        "curl did not log in with OAUTHBEARER:\n{}",
        proxy.log()
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn raw_login_relays_the_backends_transaction_state_and_pipelined_commands() {
    let env = pop3_env("pop3-raw");
    let message = env.dovecot.deliver("alice", &pop3_message("raw", 4_096));
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});

    // Before login the proxy answers CAPA itself: nothing of the transaction state.
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    let before = capa(&mut client).await;
    assert_eq!(
        before,
        [
            "SASL OAUTHBEARER XOAUTH2",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "IMPLEMENTATION bearergate"
        ]
    );
    assert_eq!(
        command(&mut client, "STAT").await,
        "-ERR Authenticate first."
    );

    // A command pipelined behind AUTH waits for the login and goes to Dovecot.
    let response = oauthbearer_b64("alice", &token);
    client
        .send(format!("AUTH OAUTHBEARER {response}\r\nSTAT\r\n").as_bytes())
        .await;
    assert_eq!(client.read_line().await, LOGGED_IN);
    let stat = client.read_line().await;
    assert_eq!(stat, format!("+OK 1 {}", message.len()), "pipelined STAT");

    // After login CAPA is Dovecot's.
    let after = capa(&mut client).await;
    assert!(
        after.iter().any(|c| c == "UIDL") && after.iter().any(|c| c == "TOP"),
        "Dovecot's CAPA after login: {after:?}"
    );
    let top = command(&mut client, "TOP 1 0").await;
    assert!(top.starts_with("+OK"), "TOP: {top:?}");
    let headers = read_block(&mut client).await;
    assert!(
        headers.iter().any(|h| h == "Subject: raw"),
        "TOP 1 0: {headers:?}"
    );
    assert_eq!(command(&mut client, "QUIT").await, "+OK Logging out.");
    assert!(client.try_read_line().await.is_none(), "closed after QUIT");
}

#[tokio::test]
async fn a_refused_token_gets_the_error_challenge_then_err_auth() {
    let env = pop3_env("pop3-refused");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;

    // A token the identity provider does not know, with an initial response.
    let outcome = auth(
        &mut client,
        "XOAUTH2",
        &xoauth2_b64("alice", "not-a-known-token"),
        true,
    )
    .await;
    assert_refused(&outcome, "XOAUTH2");
    // alice's token claimed for bob, after the empty continuation.
    let outcome = auth(
        &mut client,
        "OAUTHBEARER",
        &oauthbearer_b64("bob", &token),
        false,
    )
    .await;
    assert_refused(&outcome, "OAUTHBEARER");
    // The connection stays usable: the right user gets in.
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), false).await;
    assert_eq!(outcome.done, LOGGED_IN, "{outcome:?}");
    assert_stat(&mut client, 0).await;

    // curl with a bad token: login denied (67).
    let out = curl(&env, &proxy, TlsMode::Implicit, "not-a-known-token");
    assert_eq!(
        out.status.code(),
        Some(67),
        "curl with a refused token: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // With error_challenge = false, -ERR [AUTH] at once.
    let proxy = start_proxy(&env, |c| {
        c.each_listener(|l| l.extra.push("error_challenge = false".into()))
    });
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("bob", &token), true).await;
    assert!(outcome.challenge.is_none(), "{outcome:?}");
    assert_eq!(outcome.done, AUTH_FAILED);
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn identity_provider_or_backend_down_gets_sys_temp() {
    let mut env = pop3_env("pop3-down");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let down = start_proxy(&env, |c| {
        c.backend_mut("pop3").address = closed_addr().to_string()
    });

    // The backend cannot be reached.
    let mut client = pop3_connect(&env, &down, TlsMode::Implicit).await;
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert!(outcome.challenge.is_none(), "{outcome:?}");
    assert_eq!(outcome.done, UNAVAILABLE);

    // The identity provider answers 503, then is gone.
    env.idp.set_mode(IdpMode::Unavailable);
    assert_unavailable(&env, &proxy, &token).await;
    env.idp.shutdown();
    assert_unavailable(&env, &proxy, &token).await;
}

/// Both mechanisms on one connection get `-ERR [SYS/TEMP]` without a challenge.
async fn assert_unavailable(env: &TestEnv, proxy: &Proxy, token: &str) {
    let mut client = pop3_connect(env, proxy, TlsMode::Implicit).await;
    for (mech, response) in [
        ("XOAUTH2", xoauth2_b64("alice", token)),
        ("OAUTHBEARER", oauthbearer_b64("alice", token)),
    ] {
        let outcome = auth(&mut client, mech, &response, true).await;
        assert!(outcome.challenge.is_none(), "{mech}: {outcome:?}");
        assert_eq!(outcome.done, UNAVAILABLE, "{mech}");
    }
}

#[tokio::test]
async fn auth_before_stls_gets_err_auth_and_capa_offers_sasl_only_under_tls() {
    let env = pop3_env("pop3-tlsfirst");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    let mut client = pop3_connect(&env, &proxy, TlsMode::Starttls).await;
    let before = capa(&mut client).await;
    assert_eq!(
        before,
        [
            "STLS",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "IMPLEMENTATION bearergate"
        ],
        "no SASL and no USER before STLS"
    );
    let refused = command(
        &mut client,
        &format!("AUTH XOAUTH2 {}", xoauth2_b64("alice", &token)),
    )
    .await;
    assert!(
        refused.starts_with("-ERR [AUTH] "),
        "AUTH before STLS: {refused:?}"
    );
    let refused = command(&mut client, "USER alice").await;
    assert!(
        refused.starts_with("-ERR [AUTH] "),
        "USER before STLS: {refused:?}"
    );
    let refused = command(&mut client, "AUTH").await;
    assert!(
        refused.starts_with("-ERR [AUTH] "),
        "AUTH before STLS: {refused:?}"
    );

    // A command sent in clear text behind STLS is never answered: it is discarded before
    // the handshake (which would fail if the proxy had answered it in clear text).
    client.send(b"STLS\r\nCAPA\r\n").await;
    assert_eq!(client.read_line().await, "+OK Begin TLS negotiation");
    client.upgrade_tls(env.certs.client_config()).await;
    let after = capa(&mut client).await;
    assert_eq!(
        after,
        [
            "SASL OAUTHBEARER XOAUTH2",
            "RESP-CODES",
            "AUTH-RESP-CODE",
            "IMPLEMENTATION bearergate"
        ],
        "SASL and no STLS after it"
    );
    assert_eq!(
        command(&mut client, "STLS").await,
        "-ERR Command not permitted when TLS active"
    );
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert_eq!(outcome.done, LOGGED_IN, "{outcome:?}");
    assert_stat(&mut client, 0).await;

    // The plaintext listener with allow_plaintext_auth offers SASL without TLS.
    let mut client = pop3_connect(&env, &proxy, TlsMode::None).await;
    let caps = capa(&mut client).await;
    assert!(
        caps.contains(&"SASL OAUTHBEARER XOAUTH2".to_owned()),
        "{caps:?}"
    );
    assert_eq!(
        command(&mut client, "STLS").await,
        "-ERR STLS not available on this port."
    );
}

/// A `[metrics]` table on a free port; returns its address.
fn with_metrics(config: &mut ProxyConfig) -> SocketAddr {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config
        .extra_toml
        .push_str(&format!("\n[metrics]\nlisten = \"{addr}\"\n"));
    addr
}

fn pop3_logins(metrics: SocketAddr, credential: &str, outcome: &str) -> f64 {
    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "/metrics: {status}");
    let labels = [
        ("protocol", "pop3"),
        ("credential", credential),
        ("outcome", outcome),
    ];
    metric_value(&body, "bearergate_logins_total", &labels).unwrap_or_else(|| {
        panic!("no bearergate_logins_total sample with {labels:?} in /metrics:\n{body}")
    })
}

#[tokio::test]
async fn password_fallback_with_user_and_pass() {
    let env = pop3_env("pop3-password");
    let message = env
        .dovecot
        .deliver("alice", &pop3_message("password", 64 * 1024));
    let token = env.idp.issue("alice");
    let mut metrics = None;
    let proxy = start_proxy(&env, |c| {
        c.each_listener(|l| l.extra.push("password_fallback = true".into()));
        metrics = Some(with_metrics(c));
    });
    let metrics = metrics.expect("metrics address");

    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    let caps = capa(&mut client).await;
    assert!(
        caps.contains(&"SASL OAUTHBEARER XOAUTH2 PLAIN LOGIN".to_owned())
            && caps.contains(&"USER".to_owned()),
        "CAPA with the password fallback: {caps:?}"
    );
    // A wrong password: the proxy's own refusal; the client stays with the proxy.
    assert_eq!(command(&mut client, "USER alice").await, "+OK");
    assert_eq!(command(&mut client, "PASS wrong").await, AUTH_FAILED);
    // The master user is never the client's: refused without asking the backend.
    assert_eq!(command(&mut client, "USER alice*proxymaster").await, "+OK");
    assert_eq!(
        command(&mut client, "PASS masterpass").await,
        AUTH_FAILED,
        "the master user through the fallback"
    );
    // OAuth still works on the same connection.
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert_eq!(outcome.done, LOGGED_IN, "{outcome:?}");
    assert_stat(&mut client, 1).await;

    // The right password, raw: then Dovecot's maildrop.
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    assert_eq!(command(&mut client, "USER alice").await, "+OK");
    assert_eq!(
        command(&mut client, &format!("PASS {RIGHT}")).await,
        LOGGED_IN
    );
    assert_stat(&mut client, 1).await;

    // AUTH PLAIN with the password, over STLS.
    let mut client = pop3_connect(&env, &proxy, TlsMode::Starttls).await;
    stls(&mut client, &env).await;
    let plain = b64(format!("\0alice\0{RIGHT}"));
    let outcome = auth(&mut client, "PLAIN", &plain, true).await;
    assert_eq!(outcome.done, LOGGED_IN, "{outcome:?}");
    assert_stat(&mut client, 1).await;

    // poplib's USER/PASS, and the message exactly.
    let (output, fetched) = poplib(
        &env,
        &proxy,
        TlsMode::Implicit,
        "password",
        RIGHT,
        "poplib-password.eml",
    );
    expect_success("poplib USER/PASS", &output);
    assert_same("poplib RETR after USER/PASS", &fetched, &message);
    let (output, _) = poplib(
        &env,
        &proxy,
        TlsMode::Starttls,
        "password",
        "wrong",
        "poplib-wrong.eml",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("-ERR [AUTH] Authentication failed."),
        "poplib with a wrong password: {stderr}"
    );

    assert!(pop3_logins(metrics, "password", "success") >= 3.0);
    assert!(pop3_logins(metrics, "password", "refused") >= 3.0);
    assert!(pop3_logins(metrics, "token", "success") >= 1.0);
}

#[tokio::test]
async fn plain_authzid_backend_login_retrieves_the_message() {
    let env = pop3_env("pop3-authzid");
    let message = env
        .dovecot
        .deliver("alice", &pop3_message("plain-authzid", 32 * 1024));
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |c| {
        c.backend_mut("pop3").login = "plain-authzid".into()
    });
    let out = curl(&env, &proxy, TlsMode::Implicit, &token);
    expect_success("curl over a plain-authzid backend", &out);
    assert_same("curl RETR (plain-authzid)", &out.stdout, &message);

    // A wrong master password is the proxy's configuration, not the client's token.
    let proxy = start_proxy(&env, |c| {
        let backend = c.backend_mut("pop3");
        backend.login = "plain-authzid".into();
        backend.master_password = "wrong".into();
    });
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert_eq!(outcome.done, UNAVAILABLE, "{outcome:?}");
}

/// Dovecot's own XOAUTH2 error challenge (`passdb oauth2`), decoded.
const DOVECOT_XOAUTH2_CHALLENGE: &str = r#"{"status":"401","schemes":"bearer","scope":"mail"}"#;

#[tokio::test]
async fn passthrough_forwards_the_token_and_relays_dovecots_challenge() {
    // A Dovecot that validates tokens itself against the same IdP, requiring the `dovecot`
    // scope.
    let dir = TestDir::new("pop3-passthrough");
    let certs = TestCerts::generate(dir.path());
    let idp = Idp::start();
    let url = idp
        .url()
        .replacen("http://", "http://bearergate:introsecret@", 1);
    let dovecot = Dovecot::builder(dir.path())
        .oauth2(&url)
        .pop3()
        .config(NO_PENALTY)
        .start();
    let env = TestEnv {
        dovecot,
        idp,
        certs,
        dir,
    };
    let message = env
        .dovecot
        .deliver("alice", &pop3_message("passthrough", 8 * 1024));
    let proxy = start_proxy(&env, |c| c.backend_mut("pop3").login = "passthrough".into());

    // Both sides accept it; the token (longer than an AUTH line may be) reaches Dovecot
    // after its `+ `.
    let token = env.idp.issue_with("alice", |claims| {
        claims.insert("scope".into(), Value::from("mail dovecot"));
    });
    for (mech, response) in [
        ("XOAUTH2", xoauth2_b64("alice", &token)),
        ("OAUTHBEARER", oauthbearer_b64("alice", &token)),
    ] {
        let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
        let outcome = auth(&mut client, mech, &response, true).await;
        assert_eq!(outcome.done, LOGGED_IN, "{mech}: {outcome:?}");
        assert_stat(&mut client, 1).await;
    }
    let out = curl(&env, &proxy, TlsMode::Implicit, &token);
    expect_success("curl over a passthrough backend", &out);
    assert_same("curl RETR (passthrough)", &out.stdout, &message);

    // Dovecot refuses a token without its scope: its own challenge reaches the client
    // unchanged, then the proxy's -ERR [AUTH].
    let refused = env.idp.issue("alice");
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = auth(
        &mut client,
        "XOAUTH2",
        &xoauth2_b64("alice", &refused),
        true,
    )
    .await;
    let challenge: Value =
        serde_json::from_str(DOVECOT_XOAUTH2_CHALLENGE).expect("Dovecot's challenge");
    assert_eq!(outcome.challenge, Some(challenge), "{outcome:?}");
    assert_eq!(outcome.done, AUTH_FAILED);
}

#[tokio::test]
async fn master_login_with_a_wrong_master_password_is_unavailable() {
    let env = pop3_env("pop3-badmaster");
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |c| {
        c.backend_mut("pop3").master_password = "wrong".into()
    });
    let mut client = pop3_connect(&env, &proxy, TlsMode::Implicit).await;
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert!(outcome.challenge.is_none(), "{outcome:?}");
    assert_eq!(outcome.done, UNAVAILABLE);
    assert!(
        proxy.wait_for_log("backend refused the login at login", Duration::from_secs(5)),
        "the configuration error is logged:\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn stls_and_implicit_tls_to_the_backend() {
    let env = tls_env("pop3-betls");
    let message = env
        .dovecot
        .deliver("alice", &pop3_message("backend tls", 16 * 1024));
    let token = env.idp.issue("alice");
    let verified = [
        "tls_verify = true".to_owned(),
        format!("ca_file = {:?}", env.certs.ca_pem.display().to_string()),
        "server_name = \"localhost\"".to_owned(),
    ];
    for (mode, address) in [
        ("starttls", env.dovecot.pop3_addr()),
        (
            "implicit",
            env.dovecot.pop3s_addr().expect("Dovecot pop3s port"),
        ),
    ] {
        let proxy = start_proxy(&env, |c| {
            let backend = c.backend_mut("pop3");
            backend.tls = mode.into();
            backend.address = address.to_string();
            backend.extra.extend(verified.iter().cloned());
        });
        let out = curl(&env, &proxy, TlsMode::Implicit, &token);
        expect_success(&format!("curl over a {mode} backend"), &out);
        assert_same(
            &format!("RETR over a {mode} backend"),
            &out.stdout,
            &message,
        );
    }
}

#[tokio::test]
async fn client_address_is_forwarded_to_dovecot_with_xclient() {
    let dir = TestDir::new("pop3-xclient");
    let certs = TestCerts::generate(dir.path());
    let dovecot = Dovecot::builder(dir.path())
        .pop3()
        .config(
            "login_log_format_elements = user=<%u> method=%m rip=%r rport=%{rport} \
             real_rip=%{real_rip} lip=%l mpid=%e %c session=<%{session}>",
        )
        .start();
    let env = TestEnv {
        dovecot,
        idp: Idp::start(),
        certs,
        dir,
    };
    let token = env.idp.issue("alice");
    let proxy = start_proxy(&env, |_| {});
    // From 127.0.0.2: Dovecot sees the proxy at 127.0.0.1.
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut client = ImapClient::connect_plain_from(from, proxy.addr(TlsMode::None)).await;
    assert_eq!(client.read_line().await, "+OK bearergate ready.");
    let client_port = client.local_addr().port();
    let outcome = auth(&mut client, "XOAUTH2", &xoauth2_b64("alice", &token), true).await;
    assert_eq!(outcome.done, LOGGED_IN, "{outcome:?}");

    let log = crate::imap_backend::wait_for_dovecot_log(
        &env.dovecot,
        "pop3-login: Info: Login: user=<alice>",
    );
    let line = log
        .lines()
        .find(|l| l.contains("pop3-login: Info: Login: user=<alice>"))
        .expect("login line");
    let field = |key: &str| -> String {
        line.split([',', ' '])
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key}= in {line}"))
            .to_owned()
    };
    assert_eq!(field("rip"), "127.0.0.2", "{line}");
    assert_eq!(field("rport"), client_port.to_string(), "{line}");
    assert_eq!(field("real_rip"), "127.0.0.1", "{line}");
    let session = field("session");
    let session = session.trim_start_matches('<').trim_end_matches('>');
    assert!(
        proxy.log().contains(&format!("session{{id={session} ")),
        "Dovecot session <{session}> is not a proxy session id: {line}"
    );
}

#[tokio::test]
async fn an_idle_client_is_disconnected_without_a_word() {
    let env = pop3_env("pop3-idle");
    let proxy = start_proxy(&env, |c| {
        c.each_listener(|l| l.preauth_idle_timeout = Some("1s".into()))
    });
    let mut client = pop3_connect(&env, &proxy, TlsMode::None).await;
    assert_eq!(client.read_to_eof().await, Vec::<String>::new());
}

#[test]
fn check_config_takes_pop3_listeners_but_not_towards_xclient() {
    let env = pop3_env("pop3-checkconfig");
    let check = |config: &ProxyConfig, name: &str| {
        let path = env.dir.path().join(name);
        fs::write(&path, config.render()).expect("write config");
        run(Command::new(env!("CARGO_BIN_EXE_bearergate"))
            .arg("check-config")
            .arg("--config")
            .arg(&path))
    };
    let mut config = ProxyConfig::pop3(&env);
    config.each_listener(|l| l.extra.push("password_fallback = true".into()));
    let out = check(&config, "pop3-ok.toml");
    expect_success("check-config with POP3 listeners", &out);

    config.backend_mut("pop3").login = "xclient".into();
    let out = check(&config, "pop3-xclient.toml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("listeners[0].backend")
            && stderr.contains("only SMTP listeners"),
        "check-config must refuse xclient for POP3:\n{stderr}"
    );
}

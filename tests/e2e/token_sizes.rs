//! Token sizes through the proxy to the real Dovecot: a 16 KiB token (an Entra ID token
//! with its groups is about 12 KiB) logs in on every protocol with the real clients —
//! curl (IMAP, OAUTHBEARER with SASL-IR), Python smtplib (XOAUTH2 with and without an
//! initial response), sievelib (OAUTHBEARER as one quoted string) and poplib (XOAUTH2 both
//! ways) — and a 17 KiB token gets each protocol's "too long" reply, never "invalid
//! base64", without reaching the identity provider. A ManageSieve literal announced at
//! 4 GiB gets `BYE` and a closed connection instead of a deaf one.

use std::fs;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::imap_client::{literal_size, ImapClient};
use crate::support::{
    expect_success, oauthbearer_b64, run, test_message, xoauth2_b64, ProxyConfig, SmtpSink,
    TestEnv, TlsMode,
};

/// The largest token the proxy takes: 16 KiB.
const LARGEST: usize = 16 * 1_024;
/// A token over it: 17 KiB.
const TOO_LARGE: usize = 17 * 1_024;
/// How long a submitted message may take to reach the sink through Dovecot.
const RELAY_DEADLINE: Duration = Duration::from_secs(20);

/// Neither a refusal of a large token nor anything else the proxy says is "invalid base64".
fn assert_no_base64_talk(what: &str, text: &str) {
    assert!(
        !text.to_ascii_lowercase().contains("base64"),
        "{what} speaks of base64: {text}"
    );
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---- IMAP: curl ---------------------------------------------------------------------------

fn curl_imap(env: &TestEnv, port: u16, token: &str) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["--silent", "--show-error", "--verbose", "--max-time", "30"])
        .arg("--cacert")
        .arg(&env.certs.ca_pem)
        .args(["--oauth2-bearer", token, "--user", "alice:"])
        .arg(format!("imaps://localhost:{port}/INBOX;UID=1"));
    run(&mut cmd)
}

#[tokio::test]
async fn imap_curl_fetches_with_a_16_kib_token_and_17_kib_gets_toobig() {
    let env = TestEnv::new("sizes-imap");
    let message = env
        .dovecot
        .deliver("alice", &test_message("sizes", 4 * 1_024));
    let proxy = env.start_proxy(|_| {});
    let port = proxy.addr(TlsMode::Implicit).port();

    // curl: OAUTHBEARER, the token in the AUTHENTICATE line (SASL-IR).
    let token = env.idp.issue_sized("alice", LARGEST);
    let out = curl_imap(&env, port, &token);
    expect_success("curl with a 16 KiB token", &out);
    assert!(out.stdout == message, "curl fetched other bytes");
    assert_eq!(env.idp.requests(), 1);

    // 17 KiB: BAD [TOOBIG], and the identity provider is not asked.
    let large = env.idp.issue_sized("alice", TOO_LARGE);
    let out = curl_imap(&env, port, &large);
    assert!(!out.status.success(), "curl logged in with a 17 KiB token");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.contains("BAD [TOOBIG] SASL response too long."),
        "curl with a 17 KiB token: {said}"
    );
    assert_no_base64_talk("IMAP", &said);
    assert_eq!(env.idp.requests(), 1, "a refused size is not introspected");

    // XOAUTH2 on a continuation line (imaplib's way): the same both ways; the session
    // reads on after the first over-large response and closes at the second.
    let mut client =
        ImapClient::connect_tls(proxy.addr(TlsMode::Implicit), env.certs.client_config()).await;
    client.read_line().await;
    let outcome = client
        .authenticate("a", "XOAUTH2", &xoauth2_b64("alice", &large), false)
        .await;
    assert_eq!(
        outcome.tagged.line, "a BAD [TOOBIG] SASL response too long.",
        "{outcome:?}"
    );
    let outcome = client
        .authenticate("b", "XOAUTH2", &xoauth2_b64("alice", &large), false)
        .await;
    assert!(outcome.tagged.is("BAD", Some("TOOBIG")), "{outcome:?}");
    let rest = client.read_to_eof().await;
    assert_eq!(rest, ["* BYE Too many invalid commands."]);

    let mut client =
        ImapClient::connect_tls(proxy.addr(TlsMode::Implicit), env.certs.client_config()).await;
    client.read_line().await;
    let outcome = client
        .authenticate("c", "XOAUTH2", &xoauth2_b64("alice", &token), false)
        .await;
    assert!(outcome.tagged.is("OK", Some("CAPABILITY")), "{outcome:?}");
    let lines = client.command("d", "SELECT INBOX").await;
    assert!(
        lines.iter().any(|l| l == "* 1 EXISTS"),
        "Dovecot's SELECT after a 16 KiB login: {lines:?}"
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

// ---- SMTP: smtplib ------------------------------------------------------------------------

/// Python smtplib: EHLO, AUTH XOAUTH2 (with the initial response when FLOW is `initial`,
/// after `334 ` when `continuation`), then submit MSGFILE from USER to bob. Prints the AUTH
/// reply code and text; exit status 0 only when the message was accepted, 3 when AUTH was
/// refused.
///
/// usage: python3 -c SCRIPT HOST PORT CAFILE FLOW USER MSGFILE ($BG_TOKEN)
const SMTPLIB: &str = r#"
import os, smtplib, ssl, sys
host, port, cafile, flow, user, msgfile = sys.argv[1:7]
token = os.environ["BG_TOKEN"]
smtp = smtplib.SMTP_SSL(host, int(port), context=ssl.create_default_context(cafile=cafile), timeout=30)
smtp.ehlo()
try:
    code, reply = smtp.auth(
        "XOAUTH2",
        lambda challenge=None: f"user={user}\x01auth=Bearer {token}\x01\x01",
        initial_response_ok=(flow == "initial"),
    )
except smtplib.SMTPAuthenticationError as err:
    print(f"AUTH {err.smtp_code} {err.smtp_error.decode()}")
    sys.exit(3)
print(f"AUTH {code} {reply.decode()}")
with open(msgfile, "rb") as f:
    refused = smtp.sendmail(f"{user}@example.test", ["bob@example.test"], f.read())
assert not refused, refused
smtp.quit()
"#;

fn smtplib(env: &TestEnv, port: u16, flow: &str, token: &str, msgfile: &std::path::Path) -> Output {
    run(Command::new("python3")
        .arg("-c")
        .arg(SMTPLIB)
        .args(["localhost", &port.to_string()])
        .arg(&env.certs.ca_pem)
        .args([flow, "alice"])
        .arg(msgfile)
        .env("BG_TOKEN", token))
}

/// Lines of one SMTP reply, up to the one without a `-` after its code.
async fn smtp_reply(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        let last = line.as_bytes().get(3) != Some(&b'-');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

#[tokio::test]
async fn smtp_smtplib_submits_with_a_16_kib_token_both_ways_and_17_kib_gets_500() {
    let sink = SmtpSink::start();
    let env = TestEnv::with_dovecot("sizes-smtp", |b| b.submission(sink.port()));
    let proxy = env.start_proxy_with(&ProxyConfig::submission(&env));
    let port = proxy.addr(TlsMode::Implicit).port();
    let token = env.idp.issue_sized("alice", LARGEST);
    let large = env.idp.issue_sized("alice", TOO_LARGE);

    for (n, flow) in ["initial", "continuation"].into_iter().enumerate() {
        let message = test_message(&format!("smtplib {flow}"), 2 * 1_024);
        let file = env.dir.path().join(format!("smtplib-{flow}.eml"));
        fs::write(&file, &message).expect("write message");
        let out = smtplib(&env, port, flow, &token, &file);
        expect_success(&format!("smtplib with a 16 KiB token ({flow})"), &out);
        let got = sink.wait_for(n + 1, RELAY_DEADLINE);
        assert!(
            got[n].data.ends_with(&message),
            "the message Dovecot relayed ({flow})"
        );

        // 17 KiB: 500 5.5.6 on the AUTH line and on the response line alike.
        let out = smtplib(&env, port, flow, &large, &file);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("AUTH 500 5.5.6 Authentication Exchange line is too long"),
            "smtplib with a 17 KiB token ({flow}): {said}"
        );
        assert_no_base64_talk("SMTP", &said);
    }
    assert_eq!(env.idp.requests(), 1, "one token introspected, once");

    // Only AUTH lines grew: any other command over 12,288 octets is still too long.
    let mut client =
        ImapClient::connect_tls(proxy.addr(TlsMode::Implicit), env.certs.client_config()).await;
    smtp_reply(&mut client).await;
    client.send(b"EHLO client.test\r\n").await;
    smtp_reply(&mut client).await;
    let long = format!("NOOP {}\r\n", "x".repeat(12_289 - 5));
    client.send(long.as_bytes()).await;
    assert_eq!(smtp_reply(&mut client).await, ["500 5.5.2 Line too long"]);
    client.send(b"NOOP\r\n").await;
    assert_eq!(smtp_reply(&mut client).await, ["250 2.0.0 OK"]);
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

// ---- ManageSieve: sievelib and a raw client -----------------------------------------------

/// sievelib (PyPI 1.6) over STARTTLS with OAUTHBEARER: it sends the token base64 as one
/// quoted string whatever its length. Lists the scripts after login (Dovecot answers).
/// Exit status 0 when logged in, 3 when refused (the server's text printed).
///
/// usage: python3 -c SCRIPT HOST PORT USER ($BG_TOKEN; the CA in $SSL_CERT_FILE)
const SIEVELIB: &str = r#"
import os, sys
from sievelib.managesieve import Client
host, port, user = sys.argv[1:4]
client = Client(host, int(port))
if not client.connect(user, os.environ["BG_TOKEN"], starttls=True, authmech="OAUTHBEARER"):
    print(f"refused: {client.errcode!r} {client.errmsg!r}")
    sys.exit(3)
print(f"LISTSCRIPTS {client.listscripts()!r}")
client.logout()
"#;

fn sievelib(env: &TestEnv, port: u16, token: &str) -> Output {
    run(Command::new("python3")
        .arg("-c")
        .arg(SIEVELIB)
        .args(["localhost", &port.to_string(), "alice"])
        .env("BG_TOKEN", token)
        .env("SSL_CERT_FILE", &env.certs.ca_pem))
}

/// Lines of one ManageSieve response, up to its `OK`/`NO`/`BYE`.
async fn sieve_response(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let mut line = client.read_line().await;
        if let Some(n) = literal_size(&line) {
            line.push_str(&String::from_utf8_lossy(&client.read_bytes(n).await));
        }
        let done = ["OK", "NO", "BYE"]
            .iter()
            .any(|s| line.split([' ', '(']).next() == Some(s));
        lines.push(line);
        if done {
            return lines;
        }
    }
}

#[tokio::test]
async fn sieve_sievelib_logs_in_with_a_quoted_16_kib_token_and_17_kib_gets_no() {
    let env = TestEnv::with_dovecot("sizes-sieve", |b| b.sieve());
    let proxy = env.start_proxy_with(&ProxyConfig::managesieve(&env));
    let port = proxy.addr(TlsMode::Starttls).port();
    let token = env.idp.issue_sized("alice", LARGEST);

    let out = sievelib(&env, port, &token);
    expect_success("sievelib with a 16 KiB token", &out);
    assert!(text(&out).contains("LISTSCRIPTS"), "{}", text(&out));

    let large = env.idp.issue_sized("alice", TOO_LARGE);
    let out = sievelib(&env, port, &large);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("SASL response too long."),
        "sievelib with 17 KiB: {said}"
    );
    assert_no_base64_talk("ManageSieve", &said);
    assert_eq!(env.idp.requests(), 1, "one token introspected, once");

    // The same token as a literal initial response, then Dovecot answers LISTSCRIPTS.
    let addr = proxy.addr(TlsMode::Implicit);
    let mut client = ImapClient::connect_tls(addr, env.certs.client_config()).await;
    sieve_response(&mut client).await;
    let response = xoauth2_b64("alice", &token);
    let command = format!(
        "AUTHENTICATE \"XOAUTH2\" {{{}+}}\r\n{response}\r\n",
        response.len()
    );
    client.send(command.as_bytes()).await;
    assert_eq!(sieve_response(&mut client).await, ["OK \"Logged in.\""]);
    client.send(b"LISTSCRIPTS\r\n").await;
    let listing = sieve_response(&mut client).await;
    assert_eq!(
        listing.last().map(String::as_str),
        Some("OK \"Listscripts completed.\"")
    );
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

#[tokio::test]
async fn sieve_a_literal_announced_at_4_gib_closes_the_connection_instead_of_going_deaf() {
    let env = TestEnv::with_dovecot("sizes-sieve-literal", |b| b.sieve());
    let proxy = env.start_proxy_with(&ProxyConfig::managesieve(&env));
    let addr = proxy.addr(TlsMode::Implicit);
    for announce in ["{4294967296}", "{4294967296+}"] {
        let mut client = ImapClient::connect_tls(addr, env.certs.client_config()).await;
        sieve_response(&mut client).await;
        let command = format!("AUTHENTICATE \"OAUTHBEARER\" {announce}\r\nNOOP\r\n");
        client.send(command.as_bytes()).await;
        assert_eq!(
            client.read_line().await,
            "BYE \"Literal too large.\"",
            "{announce}"
        );
        assert_eq!(
            client.read_to_eof().await,
            Vec::<String>::new(),
            "{announce}"
        );
    }
    // A literal over the limit but small enough to skip: NO, and the session reads on.
    let mut client = ImapClient::connect_tls(addr, env.certs.client_config()).await;
    sieve_response(&mut client).await;
    let script = "#".repeat(70_000);
    let command = format!("PUTSCRIPT \"x\" {{70000+}}\r\n{script}\r\nNOOP\r\n");
    client.send(command.as_bytes()).await;
    assert_eq!(
        sieve_response(&mut client).await,
        ["NO \"Literal too large.\""]
    );
    assert_eq!(
        sieve_response(&mut client).await,
        ["OK \"NOOP completed.\""]
    );
    assert_eq!(env.idp.requests(), 0);
}

// ---- POP3: poplib and a raw client --------------------------------------------------------

/// Python poplib: AUTH XOAUTH2 with the response as the initial response (FLOW `initial`) or
/// after `+ ` (`continuation`), then RETR 1 into OUTFILE. Exit status 0 when retrieved, 3
/// when AUTH was refused (the server's line printed).
///
/// usage: python3 -c SCRIPT HOST PORT CAFILE FLOW USER OUTFILE ($BG_TOKEN)
const POPLIB: &str = r#"
import base64, os, poplib, ssl, sys
host, port, cafile, flow, user, out = sys.argv[1:7]
pop = poplib.POP3_SSL(host, int(port), context=ssl.create_default_context(cafile=cafile), timeout=30)
token = os.environ["BG_TOKEN"]
response = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
try:
    if flow == "initial":
        reply = pop._shortcmd("AUTH XOAUTH2 " + response)
    else:
        pop._shortcmd("AUTH XOAUTH2")
        reply = pop._shortcmd(response)
except poplib.error_proto as err:
    print(f"refused: {err.args[0].decode()}")
    sys.exit(3)
_, lines, _ = pop.retr(1)
with open(out, "wb") as f:
    f.write(b"".join(line + b"\r\n" for line in lines))
pop.quit()
"#;

fn poplib(env: &TestEnv, port: u16, flow: &str, token: &str, out: &std::path::Path) -> Output {
    run(Command::new("python3")
        .arg("-c")
        .arg(POPLIB)
        .args(["localhost", &port.to_string()])
        .arg(&env.certs.ca_pem)
        .args([flow, "alice"])
        .arg(out)
        .env("BG_TOKEN", token))
}

#[tokio::test]
async fn pop3_poplib_retrieves_with_a_16_kib_token_both_ways_and_17_kib_gets_err() {
    let env = TestEnv::with_dovecot("sizes-pop3", |b| b.pop3());
    let message = env
        .dovecot
        .deliver("alice", &test_message("sizes pop3", 4 * 1_024));
    let proxy = env.start_proxy_with(&ProxyConfig::pop3(&env));
    let port = proxy.addr(TlsMode::Implicit).port();
    let token = env.idp.issue_sized("alice", LARGEST);
    let large = env.idp.issue_sized("alice", TOO_LARGE);

    for flow in ["initial", "continuation"] {
        let file = env.dir.path().join(format!("poplib-{flow}.eml"));
        let out = poplib(&env, port, flow, &token, &file);
        expect_success(&format!("poplib with a 16 KiB token ({flow})"), &out);
        let fetched = fs::read(&file).expect("what poplib retrieved");
        assert!(fetched == message, "poplib RETR ({flow}) differs");

        let out = poplib(&env, port, flow, &large, &file);
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("refused: -ERR Authentication line too long."),
            "poplib with a 17 KiB token ({flow}): {said}"
        );
        assert_no_base64_talk("POP3", &said);
    }

    // OAUTHBEARER too, raw: the session reads on after one over-large response.
    let mut client =
        ImapClient::connect_tls(proxy.addr(TlsMode::Implicit), env.certs.client_config()).await;
    assert_eq!(client.read_line().await, "+OK bearergate ready.");
    let over = oauthbearer_b64("alice", &large);
    client
        .send(format!("AUTH OAUTHBEARER {over}\r\n").as_bytes())
        .await;
    assert_eq!(
        client.read_line().await,
        "-ERR Authentication line too long."
    );
    let response = oauthbearer_b64("alice", &token);
    client
        .send(format!("AUTH OAUTHBEARER {response}\r\n").as_bytes())
        .await;
    assert_eq!(client.read_line().await, "+OK Logged in.");
    client.send(b"STAT\r\n").await;
    let stat = client.read_line().await;
    assert!(stat.starts_with("+OK 1 "), "Dovecot's STAT: {stat:?}");
    assert_eq!(env.idp.requests(), 1, "one token introspected, once");
    assert_eq!(env.idp.protocol_errors(), Vec::<String>::new());
}

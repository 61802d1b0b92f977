//! A new mail client that knows nothing but `alice@example.test` sets itself up against the
//! built-in issuer (openid-client, `tests/issuer/newclient.mjs`): it reads PACC, discovers the
//! issuer, registers itself without a key as a public native client, and runs code + PKCE
//! through a loopback redirect. Its token then logs in with imaplib, smtplib, poplib and
//! sievelib at the servers PACC named.

use std::fs;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::issuer::{IssuerEnv, IssuerOptions, USER};
use crate::support::{client_script, expect_success, run, test_message};

/// The address the client starts from; its local part is the harness's user.
const ADDRESS: &str = "alice@example.test";
/// Dovecot's submission relays at once; this bounds only the sink's reader.
const RELAY_DEADLINE: Duration = Duration::from_secs(10);

/// Python poplib over implicit TLS: `AUTH XOAUTH2` with an initial response, RETR 1 written
/// to OUTFILE. usage: python3 -c POPLIB HOST PORT CAFILE USER OUTFILE ($BG_TOKEN)
const POPLIB: &str = r#"
import base64, os, poplib, ssl, sys
host, port, cafile, user, out = sys.argv[1:6]
pop = poplib.POP3_SSL(host, int(port), context=ssl.create_default_context(cafile=cafile),
                      timeout=60)
token = os.environ["BG_TOKEN"]
response = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
reply = pop._shortcmd("AUTH XOAUTH2 " + response)
assert reply.startswith(b"+OK"), reply
_, lines, _ = pop.retr(1)
with open(out, "wb") as f:
    f.write(b"".join(line + b"\r\n" for line in lines))
pop.quit()
"#;

/// The `host` and `port` PACC gives for `protocol`, checked to be the listener `want`.
fn pacc_server(protocols: &Value, protocol: &str, want: u16) -> (String, String) {
    let server = &protocols[protocol];
    let host = server["host"].as_str().unwrap_or_default().to_owned();
    let port = server["port"].as_u64().unwrap_or_default();
    assert_eq!(port, u64::from(want), "{protocol}: {server}");
    assert_eq!(host, "localhost", "{protocol}: {server}");
    (host, port.to_string())
}

#[tokio::test]
async fn a_new_mail_client_sets_itself_up_from_an_address() {
    let options = IssuerOptions {
        pop3: true,
        ..IssuerOptions::default()
    };
    let env = IssuerEnv::new("autoconfig-new-client", options);
    let _proxy = env.start();
    assert_eq!(ADDRESS.split('@').next(), Some(USER));
    let delivered = env
        .env
        .dovecot
        .deliver(USER, &test_message("a new mail client", 4 * 1024));

    let report = env.script("newclient.mjs", &[&env.url, ADDRESS], &[]);
    report.assert_success();
    for step in ["pacc", "register", "authorize", "token"] {
        report.step(step);
    }
    let token = report.field("token", "access_token");
    let protocols = report.step("pacc")["protocols"].clone();
    let ca = &env.env.certs.ca_pem;

    // IMAP: imaplib fetches what Dovecot delivered.
    let (host, port) = pacc_server(&protocols, "imap", env.imap.port());
    let fetched_file = env.env.dir.path().join("new-client-imap.eml");
    let out = run(Command::new("python3")
        .arg(client_script("imaplib_xoauth2_fetch.py"))
        .args([host.as_str(), port.as_str()])
        .arg(ca)
        .args([USER, "1"])
        .arg(&fetched_file)
        .env("BG_TOKEN", &token));
    expect_success("imaplib with the new client's token", &out);
    assert!(fs::read(&fetched_file).expect("fetched") == delivered);

    // SMTP submission: smtplib, relayed by Dovecot to the sink.
    let (host, port) = pacc_server(&protocols, "smtp", env.smtp.port());
    let message = test_message("sent by a new mail client", 2 * 1024);
    let message_file = env.env.dir.path().join("new-client-submission.eml");
    fs::write(&message_file, &message).expect("write message");
    let out = run(Command::new("python3")
        .arg(client_script("smtplib_xoauth2_send.py"))
        .args([host.as_str(), port.as_str()])
        .arg(ca)
        .args(["implicit", USER, ADDRESS, "bob@example.test"])
        .arg(&message_file)
        .env("BG_TOKEN", &token));
    expect_success("smtplib with the new client's token", &out);
    let got = env.sink.wait_for(1, RELAY_DEADLINE);
    assert!(got[0].data.ends_with(&message), "relayed message differs");

    // POP3: poplib retrieves the same message.
    let (host, port) = pacc_server(&protocols, "pop3", env.pop3.expect("pop3").port());
    let retrieved_file = env.env.dir.path().join("new-client-pop3.eml");
    let out = run(Command::new("python3")
        .args(["-c", POPLIB, host.as_str(), port.as_str()])
        .arg(ca)
        .arg(USER)
        .arg(&retrieved_file)
        .env("BG_TOKEN", &token));
    expect_success("poplib with the new client's token", &out);
    assert!(fs::read(&retrieved_file).expect("retrieved") == delivered);

    // ManageSieve: sievelib after STARTTLS.
    let (host, port) = pacc_server(&protocols, "managesieve", env.sieve.port());
    let script = "require [\"fileinto\"];\nfileinto \"INBOX\";\n";
    let script_file = env.env.dir.path().join("new-client.sieve");
    fs::write(&script_file, script).expect("write script");
    let outfile = env.env.dir.path().join("new-client-getscript.txt");
    let out = run(Command::new("python3")
        .arg(client_script("sievelib_oauthbearer.py"))
        .args([host.as_str(), port.as_str(), USER, "newclient"])
        .arg(&script_file)
        .arg(&outfile)
        .env("BG_TOKEN", &token)
        .env("SSL_CERT_FILE", ca));
    expect_success("sievelib with the new client's token", &out);
    // sievelib's getscript joins the script's lines with "\n" (no final newline).
    assert_eq!(
        fs::read_to_string(&outfile).expect("the script sievelib read back"),
        script.trim_end_matches('\n')
    );
}

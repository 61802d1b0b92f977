//! SMTP submission with `login = "xclient"` against a real Postfix: Python's smtplib logs in
//! to the proxy with XOAUTH2; the proxy vouches for the user and the client's address with
//! XCLIENT; Postfix (which relays only for authenticated sessions) delivers the message into
//! a maildir and logs the XCLIENT'd identity. And a Postfix that does not trust the proxy
//! with XCLIENT: the client is told to try again later.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::idp::{CLIENT_ID, CLIENT_SECRET};
use crate::support::ports::free_port;
use crate::support::postfix::{Postfix, HOSTNAME};
use crate::support::proxy::{BackendConfig, ListenerConfig, ValidatorConfig};
use crate::support::{run, Idp, Proxy, ProxyConfig, TestCerts, TestDir, TlsMode};

const WAIT: Duration = Duration::from_secs(10);
/// The EHLO name the client uses; the proxy forwards it (EHLO and XCLIENT HELO=).
const CLIENT_EHLO: &str = "client.example";

/// smtplib, the usual XOAUTH2 idiom (`initial_response_ok=True`), then MAIL/RCPT/DATA one by
/// one so every reply code is seen. Prints `STEP CODE TEXT` lines and the client's own
/// address as `LOCAL IP PORT`.
/// The client connects from 127.0.0.2: Postfix trusts only the proxy (127.0.0.1) with
/// XCLIENT, and a client at a trusted address would be refused by the proxy (it could
/// re-XCLIENT itself after login).
/// usage: python3 -c SCRIPT HOST PORT USER FROM TO MSGFILE (token in $BG_TOKEN)
const CLIENT: &str = r#"
import os, smtplib, sys
host, port, user, sender, rcpt, msgfile = sys.argv[1:7]
token = os.environ["BG_TOKEN"]
message = open(msgfile, "rb").read()
def say(step, code, text):
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    print(step, code, text.replace("\n", " | "), flush=True)
smtp = smtplib.SMTP(host, int(port), local_hostname="client.example", timeout=30,
                    source_address=("127.0.0.2", 0))
local = smtp.sock.getsockname()
print("LOCAL", local[0], local[1], flush=True)
code, text = smtp.ehlo()
say("EHLO", code, text)
try:
    code, text = smtp.auth("XOAUTH2",
                           lambda x=None: f"user={user}\x01auth=Bearer {token}\x01\x01",
                           initial_response_ok=True)
except smtplib.SMTPResponseException as err:
    code, text = err.smtp_code, err.smtp_error
say("AUTH", code, text)
if code != 235:
    sys.exit(0)
for step, call in (("MAIL", lambda: smtp.mail(sender)),
                   ("RCPT", lambda: smtp.rcpt(rcpt)),
                   ("DATA", lambda: smtp.data(message))):
    code, text = call()
    say(step, code, text)
say("QUIT", *smtp.quit())
"#;

/// What the client saw: each step's reply, and its own address.
#[derive(Debug)]
struct Session {
    replies: HashMap<String, (u16, String)>,
    local: SocketAddr,
    transcript: String,
}

impl Session {
    fn reply(&self, step: &str) -> &(u16, String) {
        self.replies
            .get(step)
            .unwrap_or_else(|| panic!("no {step} reply:\n{}", self.transcript))
    }
}

/// Run the smtplib client against `addr`, sending `message` from bob to `rcpt`.
fn submit(
    dir: &TestDir,
    addr: SocketAddr,
    user: &str,
    token: &str,
    rcpt: &str,
    message: &[u8],
) -> Session {
    let msgfile = dir.path().join("message.eml");
    fs::write(&msgfile, message).expect("write the message file");
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .arg(user)
        .arg("bob@example.test")
        .arg(rcpt)
        .arg(&msgfile)
        .env("BG_TOKEN", token));
    let transcript = format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "smtplib client failed: {transcript}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut replies = HashMap::new();
    let mut local = None;
    for line in stdout.lines() {
        let mut parts = line.splitn(3, ' ');
        let (step, a, b) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        if step == "LOCAL" {
            local = Some(SocketAddr::new(
                a.parse().expect("client ip"),
                b.parse().expect("client port"),
            ));
        } else {
            let code = a
                .parse()
                .unwrap_or_else(|_| panic!("reply code in {line:?}"));
            replies.insert(step.to_owned(), (code, b.to_owned()));
        }
    }
    Session {
        replies,
        local: local.unwrap_or_else(|| panic!("no LOCAL line:\n{transcript}")),
        transcript,
    }
}

/// Everything a test needs: a Postfix, the fake IdP, and the proxy in front of Postfix with
/// one plaintext SMTP listener (loopback, `allow_plaintext_auth`) and `login = "xclient"`.
struct XclientEnv {
    // field order is drop order: the proxy first, the directory last
    proxy: Proxy,
    idp: Idp,
    postfix: Postfix,
    dir: TestDir,
}

impl XclientEnv {
    fn start(label: &str, authorize_xclient: bool) -> Self {
        let dir = TestDir::new(label);
        let certs = TestCerts::generate(dir.path());
        let postfix = Postfix::builder(dir.path())
            .authorize_xclient(authorize_xclient)
            .start();
        let idp = Idp::start();
        let config = ProxyConfig {
            log_format: "text".into(),
            log_level: "debug".into(),
            tls_cert: certs.cert_pem.clone(),
            tls_key: certs.key_pem.clone(),
            listeners: vec![ListenerConfig {
                protocol: "smtp".into(),
                listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
                tls: TlsMode::None,
                allow_plaintext_auth: true,
                backend: "submission".into(),
                preauth_idle_timeout: None,
                max_auth_failures: None,
                extra: vec!["hostname = \"proxy.test\"".into()],
            }],
            backends: vec![BackendConfig {
                name: "submission".into(),
                address: postfix.addr().to_string(),
                tls: "none".into(),
                login: "xclient".into(),
                // rendered by the harness, ignored for xclient
                master_user: "unused".into(),
                master_password: "unused".into(),
                master_user_format: "{user}".into(),
                extra: Vec::new(),
            }],
            validator: ValidatorConfig {
                kind: "introspection".into(),
                introspection_url: idp.url(),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                username_claim: "username".into(),
                required_scope: "mail".into(),
                cache_max_ttl: "5m".into(),
                negative_cache_ttl: "10s".into(),
                timeout: "2s".into(),
                extra: Vec::new(),
                raw: None,
            },
            extra_toml: String::new(),
            top_level: Vec::new(),
            auth_limits: vec!["failure_delay = \"0s\"".into()],
        };
        let proxy = Proxy::start(dir.path(), &config);
        Self {
            proxy,
            idp,
            postfix,
            dir,
        }
    }

    fn submit(&self, rcpt: &str, message: &[u8]) -> Session {
        let token = self.idp.issue("alice");
        submit(
            &self.dir,
            self.proxy.addr(TlsMode::None),
            "alice",
            &token,
            rcpt,
            message,
        )
    }
}

/// A message with CRLF line ends, 8-bit text, a line that needs dot-stuffing, lines that look
/// like SMTP commands, trailing white space and a few KB of body.
fn message() -> Vec<u8> {
    let mut msg = String::from(
        "From: Bob <bob@example.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: xclient through bearergate\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\
         Message-ID: <xclient-e2e@example.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         X-Bearergate-Test: header kept\r\n\
         \r\n\
         Grüße aus Köln — ünïcödé, tabs\tand trailing spaces   \r\n\
         .a line that starts with a dot\r\n\
         ..two dots\r\n\
         QUIT\r\n\
         RSET\r\n\
         MAIL FROM:<mallory@example.test>\r\n",
    );
    for n in 0..60 {
        msg.push_str(&format!("line {n:04} {}\r\n", "0123456789abcdef".repeat(4)));
    }
    msg.push_str("last line\r\n");
    msg.into_bytes()
}

#[test]
fn xclient_login_reaches_postfix_as_the_user_and_client() {
    let env = XclientEnv::start("xclient", true);
    let sent = message();
    let session = env.submit("alice@example.test", &sent);

    // (1) the client logged in and the message was accepted
    let (auth, auth_text) = session.reply("AUTH");
    assert_eq!(*auth, 235, "AUTH: {auth_text}\n{}", session.transcript);
    for step in ["MAIL", "RCPT", "DATA"] {
        let (code, text) = session.reply(step);
        assert_eq!(*code, 250, "{step}: {text}\n{}", session.transcript);
    }
    let (_, data_text) = session.reply("DATA");
    let queue_id = data_text
        .strip_prefix("2.0.0 Ok: queued as ")
        .unwrap_or_else(|| panic!("Postfix's DATA reply passed through: {data_text:?}"))
        .trim()
        .to_owned();

    // (2) Postfix saw the XCLIENT'd identity: alice, at the client's own address and port
    // (not the proxy's connection), with the client's EHLO name
    let client = format!(
        "client=unknown[{}]:{}",
        session.local.ip(),
        session.local.port()
    );
    let line = env
        .postfix
        .wait_for_log_line(&[&format!("{queue_id}: client=")], WAIT)
        .unwrap_or_else(|| panic!("no client= line for {queue_id}\n{}", env.postfix.log()));
    assert!(
        line.ends_with(&format!(
            "{queue_id}: {client}, sasl_method=XCLIENT, sasl_username=alice"
        )),
        "Postfix's session line: {line}"
    );
    let disconnect = env
        .postfix
        .wait_for_log_line(&["disconnect from ", &client[7..]], WAIT)
        .unwrap_or_else(|| panic!("no disconnect line\n{}", env.postfix.log()));
    assert!(
        disconnect.contains("ehlo=2") && disconnect.contains("mail=1 rcpt=1 data=1"),
        "Postfix's disconnect line: {disconnect}"
    );

    // (3) delivered with the original headers and body intact, after Postfix's own headers
    let delivered = env.postfix.wait_for_delivery("alice", WAIT);
    let delivered = String::from_utf8(delivered).expect("delivered message is UTF-8");
    // maildir files have LF line ends
    let expected = String::from_utf8(sent)
        .expect("sent message is UTF-8")
        .replace("\r\n", "\n");
    let prefix = delivered.strip_suffix(&expected).unwrap_or_else(|| {
        panic!("delivered message does not end with the sent one:\n{delivered}")
    });
    assert!(
        prefix.starts_with(
            "Return-Path: <bob@example.test>\nX-Original-To: alice@example.test\n\
             Delivered-To: alice@example.test\n"
        ),
        "Postfix's added headers: {prefix}"
    );
    let received = format!(
        "Received: from {CLIENT_EHLO} (unknown [{}])\n\tby {HOSTNAME} (Postfix) with ESMTPA id {queue_id}\n",
        session.local.ip()
    );
    assert!(
        prefix.contains(&received),
        "want {received:?} in Postfix's added headers:\n{prefix}"
    );
    assert!(
        prefix
            .lines()
            .all(|l| l.starts_with('\t') || l.contains(": ")),
        "only header lines before the sent message:\n{prefix}"
    );
    assert_eq!(env.idp.requests(), 1, "one introspection");
}

#[test]
fn postfix_not_trusting_the_proxy_for_xclient_means_try_again_later() {
    let env = XclientEnv::start("xclient-refused", false);
    let session = env.submit("alice@example.test", &message());
    let (code, text) = session.reply("AUTH");
    assert_eq!(*code, 454, "AUTH: {text}\n{}", session.transcript);
    assert!(text.starts_with("4.7.0 "), "AUTH: {text}");
    assert!(
        !session.replies.contains_key("MAIL"),
        "{}",
        session.transcript
    );
    // the proxy's session (the readiness probe's has no EHLO) never got as far as XCLIENT:
    // Postfix did not offer it
    let line = env
        .postfix
        .wait_for_log_line(&["disconnect from localhost[127.0.0.1]", " ehlo=1 "], WAIT)
        .unwrap_or_else(|| panic!("no disconnect line\n{}", env.postfix.log()));
    assert!(
        !line.contains("xclient") && !line.contains("mail="),
        "Postfix's disconnect line: {line}"
    );
    assert!(env.postfix.delivered("alice").is_empty());
    assert!(
        env.proxy.log().contains("does not offer XCLIENT"),
        "the proxy logs why:\n{}",
        env.proxy.log()
    );
}

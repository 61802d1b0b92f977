//! The four protocols as the hostile-input table sees them: a proxy with a plaintext (with
//! `allow_plaintext_auth`), a STARTTLS and an implicit-TLS listener in front of a private
//! Dovecot, how each protocol greets and is probed, and the well-behaved session that runs
//! beside every row: it logs in with a valid token and fetches (IMAP, POP3), gets a script
//! (ManageSieve) or submits a message (SMTP), and every byte must be the one stored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::support::imap_client::{last_status, literal_size};
use crate::support::{
    oauthbearer_b64, test_message, xoauth2_b64, ImapClient, Proxy, ProxyConfig, SmtpSink, TestEnv,
    TlsMode,
};

/// How long a submitted message may take to reach the sink through Dovecot.
const RELAY_DEADLINE: Duration = Duration::from_secs(20);
/// The script the ManageSieve session gets back, byte for byte.
const SCRIPT: &str = "require \"fileinto\";\r\nif header :contains \"subject\" \"x\" {\r\n  fileinto \"INBOX\";\r\n}\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Imap,
    Smtp,
    Sieve,
    Pop3,
}

/// Which of the protocol's listeners a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// No TLS, authentication allowed (`allow_plaintext_auth`).
    Plain,
    /// STARTTLS (POP3: STLS) offered; no authentication before it.
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

impl Port {
    fn mode(self) -> TlsMode {
        match self {
            Port::Plain => TlsMode::None,
            Port::StartTls => TlsMode::Starttls,
            Port::Implicit => TlsMode::Implicit,
        }
    }
}

impl Proto {
    pub(crate) const ALL: [Proto; 4] = [Proto::Imap, Proto::Smtp, Proto::Sieve, Proto::Pop3];

    /// One of four values, by protocol: IMAP, SMTP, ManageSieve, POP3.
    pub(crate) fn pick<T>(self, imap: T, smtp: T, sieve: T, pop3: T) -> T {
        match self {
            Proto::Imap => imap,
            Proto::Smtp => smtp,
            Proto::Sieve => sieve,
            Proto::Pop3 => pop3,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        self.pick("imap", "smtp", "sieve", "pop3")
    }

    /// Whether `line` ends the greeting (ManageSieve's capability block ends with `OK`).
    pub(crate) fn greeting_done(self, line: &str) -> bool {
        match self {
            Proto::Imap => line.starts_with("* OK "),
            Proto::Smtp => line.starts_with("220 "),
            Proto::Sieve => line.starts_with("OK "),
            Proto::Pop3 => line.starts_with("+OK "),
        }
    }

    /// A command that changes nothing, and the proxy's own answer to it: once a row is
    /// over, a connection that stayed open must still be the proxy's, before login.
    pub(crate) fn probe(self) -> (&'static str, &'static str) {
        self.pick(
            ("z NOOP\r\n", "z OK NOOP completed."),
            ("NOOP\r\n", "250 2.0.0 OK"),
            ("NOOP\r\n", "OK \"NOOP completed.\""),
            ("NOOP\r\n", "+OK"),
        )
    }
}

/// Connects to `port`; for implicit TLS the handshake is done (the greeting is not read).
pub(crate) async fn connect(stage: &Stage, port: Port) -> ImapClient {
    let addr = stage.proxy.addr(port.mode());
    let mut client = match port {
        Port::Implicit => ImapClient::connect_tls(addr, stage.env.certs.client_config()).await,
        Port::Plain | Port::StartTls => ImapClient::connect_plain(addr).await,
    };
    client.timeout = Duration::from_secs(5);
    client
}

/// Reads the greeting up to its last line.
pub(crate) async fn greeting(proto: Proto, client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        let done = proto.greeting_done(&line);
        lines.push(line);
        if done {
            return lines;
        }
    }
}

/// One protocol's proxy, the Dovecot behind it and what the good session must read back.
/// Field order is drop order: the proxy, then Dovecot, then the sink Dovecot relays to.
#[derive(Debug)]
pub(crate) struct Stage {
    pub proto: Proto,
    pub proxy: Proxy,
    pub env: TestEnv,
    pub sink: Option<SmtpSink>,
    /// A valid token for alice, cached by the proxy after the first login.
    pub token: String,
    /// A valid token for bob.
    pub bob_token: String,
    /// Message 1 of alice's INBOX (IMAP, POP3) as stored.
    stored: Vec<u8>,
    /// Messages submitted by good sessions, in order (SMTP).
    submitted: Mutex<Vec<Vec<u8>>>,
    good_sessions: AtomicUsize,
}

impl Stage {
    /// Dovecot with the protocol's service, the proxy with three listeners, and the data the
    /// good session reads back.
    pub(crate) async fn start(
        proto: Proto,
        label: &str,
        tweak: impl FnOnce(&mut ProxyConfig),
    ) -> Self {
        let sink = (proto == Proto::Smtp).then(SmtpSink::start);
        let env = TestEnv::with_dovecot(label, |b| match &sink {
            Some(sink) => b.submission(sink.port()),
            None if proto == Proto::Sieve => b.sieve(),
            None if proto == Proto::Pop3 => b.pop3(),
            None => b,
        });
        let mut config = match proto {
            Proto::Imap => ProxyConfig::standard(&env),
            Proto::Smtp => ProxyConfig::submission(&env),
            Proto::Sieve => ProxyConfig::managesieve(&env),
            Proto::Pop3 => ProxyConfig::pop3(&env),
        };
        // The table is about replies, not budgets (tests/e2e/auth_limits.rs is): the many
        // refused tokens claiming alice must not spend her failure budget.
        config.auth_limits.extend([
            "user_failures = 100000".to_owned(),
            "address_idp_requests = 100000".to_owned(),
        ]);
        tweak(&mut config);
        let proxy = env.start_proxy_with(&config);
        let mut message = test_message("hostile inputs", 8 * 1_024);
        message.extend_from_slice(b".leading dot\r\n.\r\n..two dots\r\nraw 8-bit \x80\xfe\xff\r\n");
        let stored = match proto {
            Proto::Imap | Proto::Pop3 => env.dovecot.deliver("alice", &message),
            Proto::Smtp | Proto::Sieve => Vec::new(),
        };
        let token = env.idp.issue("alice");
        let bob_token = env.idp.issue("bob");
        let stage = Self {
            proto,
            proxy,
            env,
            sink,
            token,
            bob_token,
            stored,
            submitted: Mutex::new(Vec::new()),
            good_sessions: AtomicUsize::new(0),
        };
        if proto == Proto::Sieve {
            stage.put_script().await;
        }
        stage
    }

    /// Puts the script the good ManageSieve sessions get back.
    async fn put_script(&self) {
        let mut client = connect(self, Port::Plain).await;
        greeting(Proto::Sieve, &mut client).await;
        sieve_login(&mut client, &self.token).await;
        let put = format!(
            "PUTSCRIPT \"hostile\" {{{}+}}\r\n{SCRIPT}\r\n",
            SCRIPT.len()
        );
        client.send(put.as_bytes()).await;
        let reply = client.read_line().await;
        assert!(reply.starts_with("OK"), "PUTSCRIPT: {reply}");
    }

    /// The well-behaved session: on `port`, log in with alice's valid token and fetch,
    /// get or submit; panics when anything differs.
    pub(crate) async fn good_session(&self, port: Port) {
        let n = self.good_sessions.fetch_add(1, Ordering::SeqCst);
        let mut client = connect(self, port).await;
        greeting(self.proto, &mut client).await;
        if port == Port::StartTls {
            self.starttls(&mut client).await;
        }
        match self.proto {
            Proto::Imap => self.imap(&mut client).await,
            Proto::Smtp => self.smtp(&mut client, n).await,
            Proto::Sieve => {
                sieve_login(&mut client, &self.token).await;
                let script = sieve_getscript(&mut client).await;
                assert_eq!(script, SCRIPT.as_bytes(), "GETSCRIPT through the proxy");
            }
            Proto::Pop3 => self.pop3(&mut client).await,
        }
    }

    /// The good session's STARTTLS (STLS) and handshake, with what the protocol needs
    /// around it.
    async fn starttls(&self, client: &mut ImapClient) {
        let config = self.env.certs.client_config();
        match self.proto {
            Proto::Imap => {
                client.starttls("g0", config).await;
            }
            Proto::Smtp => {
                smtp_command(client, "EHLO good.test").await;
                let reply = smtp_command(client, "STARTTLS").await;
                assert_eq!(reply, ["220 2.0.0 Ready to start TLS"]);
                client.upgrade_tls(config).await;
            }
            Proto::Sieve => {
                client.send(b"STARTTLS\r\n").await;
                assert_eq!(
                    client.read_line().await,
                    "OK \"Begin TLS negotiation now.\""
                );
                client.upgrade_tls(config).await;
                greeting(Proto::Sieve, client).await;
            }
            Proto::Pop3 => {
                client.send(b"STLS\r\n").await;
                assert_eq!(client.read_line().await, "+OK Begin TLS negotiation");
                client.upgrade_tls(config).await;
            }
        }
    }

    async fn imap(&self, client: &mut ImapClient) {
        let outcome = client
            .authenticate(
                "g1",
                "OAUTHBEARER",
                &oauthbearer_b64("alice", &self.token),
                true,
            )
            .await;
        assert_eq!(outcome.tagged.kind, "OK", "good login: {outcome:?}");
        let lines = client.command("g2", "SELECT INBOX").await;
        assert_eq!(last_status(&lines).kind, "OK", "{lines:?}");
        let body = client.fetch_body("g3", 1).await;
        assert!(
            body == self.stored,
            "FETCH through the proxy returned other bytes"
        );
        let lines = client.command("g4", "LOGOUT").await;
        assert_eq!(last_status(&lines).kind, "OK", "{lines:?}");
    }

    async fn smtp(&self, client: &mut ImapClient, n: usize) {
        let reply = smtp_command(client, "EHLO good.test").await;
        assert!(reply.iter().any(|l| l.contains("AUTH ")), "{reply:?}");
        let auth = format!("AUTH XOAUTH2 {}", xoauth2_b64("alice", &self.token));
        let reply = smtp_command(client, &auth).await;
        assert_eq!(reply, ["235 2.7.0 Authentication successful"]);
        for (line, code) in [
            ("MAIL FROM:<alice@example.test>", "250 "),
            ("RCPT TO:<bob@example.test>", "250 "),
            ("DATA", "354 "),
        ] {
            let reply = smtp_command(client, line).await;
            assert!(
                reply.last().is_some_and(|l| l.starts_with(code)),
                "{line}: {reply:?}"
            );
        }
        let message = test_message(&format!("good session {n}"), 2 * 1_024);
        let mut data = Vec::with_capacity(message.len() + 8);
        for line in message.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                data.push(b'.');
            }
            data.extend_from_slice(line);
        }
        data.extend_from_slice(b".\r\n");
        client.send(&data).await;
        let reply = smtp_reply(client).await;
        assert!(
            reply.last().is_some_and(|l| l.starts_with("250 ")),
            "{reply:?}"
        );
        let reply = smtp_command(client, "QUIT").await;
        assert!(
            reply.last().is_some_and(|l| l.starts_with("221 ")),
            "{reply:?}"
        );
        self.submitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(message);
    }

    async fn pop3(&self, client: &mut ImapClient) {
        let auth = format!("AUTH XOAUTH2 {}\r\n", xoauth2_b64("alice", &self.token));
        client.send(auth.as_bytes()).await;
        assert_eq!(client.read_line().await, "+OK Logged in.");
        client.send(b"RETR 1\r\n").await;
        let first = client.read_line().await;
        assert!(first.starts_with("+OK"), "RETR: {first}");
        // The exact octets on the wire: the stored message dot-stuffed, then `.` CRLF.
        let mut wire = Vec::with_capacity(self.stored.len() + 16);
        for line in self.stored.split_inclusive(|&b| b == b'\n') {
            if line.starts_with(b".") {
                wire.push(b'.');
            }
            wire.extend_from_slice(line);
        }
        wire.extend_from_slice(b".\r\n");
        let got = client.read_bytes(wire.len()).await;
        assert!(got == wire, "RETR through the proxy returned other bytes");
        client.send(b"QUIT\r\n").await;
        assert!(client.read_line().await.starts_with("+OK"));
    }

    /// Every message a good SMTP session submitted arrived at the sink, exactly once and
    /// byte for byte (after the `Received:` field Dovecot adds in front).
    pub(crate) fn check_submissions(&self) -> Result<usize, String> {
        let Some(sink) = &self.sink else {
            return Ok(0);
        };
        let submitted = self
            .submitted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let arrived = sink.wait_for(submitted.len(), RELAY_DEADLINE);
        for (n, message) in submitted.iter().enumerate() {
            let copies = arrived.iter().filter(|m| m.data.ends_with(message)).count();
            if copies != 1 {
                return Err(format!("good submission {n} arrived {copies} times"));
            }
        }
        if arrived.len() != submitted.len() {
            return Err(format!(
                "{} messages arrived for {} submitted",
                arrived.len(),
                submitted.len()
            ));
        }
        Ok(submitted.len())
    }
}

/// One SMTP reply's lines, up to the one without `-` after the code.
pub(crate) async fn smtp_reply(client: &mut ImapClient) -> Vec<String> {
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

async fn smtp_command(client: &mut ImapClient, line: &str) -> Vec<String> {
    client.send(format!("{line}\r\n").as_bytes()).await;
    smtp_reply(client).await
}

/// `AUTHENTICATE "OAUTHBEARER" "..."` for alice, which must succeed.
pub(crate) async fn sieve_login(client: &mut ImapClient, token: &str) {
    let command = format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer_b64("alice", token)
    );
    client.send(command.as_bytes()).await;
    assert_eq!(client.read_line().await, "OK \"Logged in.\"");
}

/// `GETSCRIPT "hostile"`: the literal's bytes.
async fn sieve_getscript(client: &mut ImapClient) -> Vec<u8> {
    client.send(b"GETSCRIPT \"hostile\"\r\n").await;
    let line = client.read_line().await;
    let n = literal_size(&line).unwrap_or_else(|| panic!("GETSCRIPT answered {line:?}"));
    let script = client.read_bytes(n).await;
    assert_eq!(client.read_line().await, "", "CRLF after the script");
    let done = client.read_line().await;
    assert!(done.starts_with("OK"), "GETSCRIPT: {done}");
    script
}

//! Connection limits before login, in every protocol: a full listener (`max_connections`)
//! and an address over `max_prelogin_per_address` get the protocol's "try again later"
//! instead of silence, while other addresses are still served; and at the end of SIGTERM's
//! `drain_timeout` clients not yet logged in get the protocol's goodbye, relaying sessions
//! are closed without a byte added, and each logs `outcome="drained"`.
//!
//! A second client address is 127.0.0.2: loopback accepts any 127/8 source, and a client
//! socket bound to it is, for the proxy, another address.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

use crate::support::imap_client::last_status;
use crate::support::ports::free_port;
use crate::support::proxy::ListenerConfig;
use crate::support::{
    http_get, login, metric_value, ImapClient, Proxy, ProxyConfig, SmtpSink, TestEnv, TlsMode,
};

/// How long a line or the end of a connection may take.
const WAIT: Duration = Duration::from_secs(10);
const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Imap,
    Smtp,
    Sieve,
    Pop3,
}

#[derive(Debug, Clone, Copy)]
enum Why {
    ListenerFull,
    AddressLimit,
}

impl Protocol {
    const ALL: [Protocol; 4] = [
        Protocol::Imap,
        Protocol::Smtp,
        Protocol::Sieve,
        Protocol::Pop3,
    ];

    fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Sieve => "sieve",
            Protocol::Pop3 => "pop3",
        }
    }

    /// A plaintext listener (STARTTLS listeners greet in plaintext too).
    fn listener(self) -> ListenerConfig {
        let tls = TlsMode::None;
        match self {
            Protocol::Imap => ListenerConfig::imap(tls),
            Protocol::Smtp => ListenerConfig::smtp(tls),
            Protocol::Sieve => ListenerConfig::sieve(tls),
            Protocol::Pop3 => ListenerConfig::pop3(tls),
        }
    }

    /// The first line of the protocol's greeting.
    fn is_greeting(self, line: &str) -> bool {
        match self {
            Protocol::Imap => line.starts_with("* OK "),
            Protocol::Smtp => line.starts_with("220 "),
            Protocol::Sieve => line == "\"IMPLEMENTATION\" \"bearergate\"",
            Protocol::Pop3 => line.starts_with("+OK "),
        }
    }

    /// The exact refusal (DESIGN.md's codes: UNAVAILABLE, 421 4.7.0, TRYLATER, SYS/TEMP).
    fn refusal(self, why: Why) -> String {
        let reason = match why {
            Why::ListenerFull => "Too many connections",
            Why::AddressLimit => "Too many connections from your address",
        };
        match self {
            Protocol::Imap => format!("* BYE [UNAVAILABLE] {reason}, try again later."),
            Protocol::Smtp => format!("421 4.7.0 localhost {reason}, try again later"),
            Protocol::Sieve => format!("BYE (TRYLATER) \"{reason}, try again later.\""),
            Protocol::Pop3 => format!("-ERR [SYS/TEMP] {reason}, try again later."),
        }
    }

    /// The exact goodbye when the drain is over.
    fn goodbye(self) -> &'static str {
        match self {
            Protocol::Imap => "* BYE [UNAVAILABLE] Server shutting down.",
            Protocol::Smtp => "421 4.3.2 localhost Service shutting down",
            Protocol::Sieve => "BYE (TRYLATER) \"Server shutting down.\"",
            Protocol::Pop3 => "-ERR [SYS/TEMP] Server shutting down.",
        }
    }
}

/// A client that reads lines, from a chosen source address.
#[derive(Debug)]
struct LineClient {
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl LineClient {
    async fn connect(to: SocketAddr, from: Ipv4Addr) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((from, 0)))
            .unwrap_or_else(|e| panic!("bind {from}: {e}"));
        let stream = socket
            .connect(to)
            .await
            .unwrap_or_else(|e| panic!("connect {to} from {from}: {e}"));
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local address")
    }

    /// The next line without CRLF, `None` at the end of the connection.
    async fn line(&mut self) -> Option<String> {
        let read = async {
            loop {
                if let Some(end) = self.buffer.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = self.buffer.drain(..end + 2).take(end).collect();
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
                let mut chunk = [0u8; 1_024];
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .unwrap_or_else(|_| panic!("no line within {WAIT:?}: {:?}", self.buffer))
    }

    /// Everything up to the end of the connection, which must come.
    async fn rest(&mut self) -> Vec<u8> {
        let mut rest = std::mem::take(&mut self.buffer);
        tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("connection still open after {WAIT:?}: {rest:?}"))
            .ok();
        rest
    }

    /// Connects and asserts that the first line is the protocol's greeting, then reads the
    /// rest of it (ManageSieve's capability block ends with `OK`).
    async fn greeted(protocol: Protocol, to: SocketAddr, from: Ipv4Addr) -> Self {
        let mut client = Self::connect(to, from).await;
        let first = client.line().await;
        assert!(
            first.as_deref().is_some_and(|l| protocol.is_greeting(l)),
            "{protocol:?} from {from}: want the greeting, got {first:?}"
        );
        if protocol == Protocol::Sieve {
            while let Some(line) = client.line().await {
                if line.starts_with("OK ") {
                    return client;
                }
            }
            panic!("the ManageSieve greeting has no OK");
        }
        client
    }

    /// Connects and asserts the refusal, then the end of the connection.
    async fn refused(protocol: Protocol, to: SocketAddr, from: Ipv4Addr, why: Why) {
        let mut client = Self::connect(to, from).await;
        let first = client.line().await;
        assert_eq!(
            first.as_deref(),
            Some(protocol.refusal(why).as_str()),
            "{protocol:?} from {from}"
        );
        assert_eq!(
            client.rest().await,
            b"",
            "{protocol:?}: bytes after the refusal"
        );
    }
}

/// A Dovecot with every protocol (submission relaying to `SmtpSink`); dropped Dovecot first.
fn environment(label: &str) -> (SmtpSink, TestEnv) {
    let sink = SmtpSink::start();
    let env = TestEnv::with_dovecot(label, |b| b.sieve().submission(sink.port()).pop3());
    (sink, env)
}

/// The standard configuration with `listeners` and a backend for each protocol.
fn config(env: &TestEnv, listeners: Vec<ListenerConfig>) -> ProxyConfig {
    let mut config = env.proxy_config();
    let imap = config.backend_mut("imap").clone();
    for (name, address) in [
        ("submission", env.dovecot.submission_addr()),
        ("sieve", env.dovecot.sieve_addr()),
        ("pop3", env.dovecot.pop3_addr()),
    ] {
        let mut backend = imap.clone();
        backend.name = name.into();
        backend.address = address.to_string();
        config.backends.push(backend);
    }
    config.listeners = listeners;
    config
}

/// One plaintext listener per protocol, each with these extra lines.
fn listeners(extra: &[String]) -> Vec<ListenerConfig> {
    Protocol::ALL
        .iter()
        .map(|protocol| {
            let mut listener = protocol.listener();
            listener.extra.extend_from_slice(extra);
            listener
        })
        .collect()
}

fn with_metrics(config: &mut ProxyConfig) -> SocketAddr {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    config
        .extra_toml
        .push_str(&format!("\n[metrics]\nlisten = \"{metrics}\"\n"));
    metrics
}

fn refused_count(metrics: SocketAddr, protocol: &str, reason: &str) -> f64 {
    let (status, body) = http_get(metrics, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "/metrics: {status}");
    metric_value(
        &body,
        "bearergate_connections_refused_total",
        &[("protocol", protocol), ("reason", reason)],
    )
    .unwrap_or_else(|| panic!("no refusal counter for {protocol} {reason}:\n{body}"))
}

/// Waits (bounded) until the log has a line with both `a` and `b`.
fn wait_for_line(proxy: &Proxy, a: &str, b: &str) {
    let found = proxy.wait_for_log_where(WAIT, |log| {
        log.lines().any(|l| l.contains(a) && l.contains(b))
    });
    assert!(found, "no log line with {a:?} and {b:?}:\n{}", proxy.log());
}

#[tokio::test]
async fn a_full_listener_tells_the_next_client_to_come_back_later() {
    const FULL: usize = 3;
    let (_sink, env) = environment("limits-full");
    let mut all = listeners(&[
        format!("max_connections = {FULL}"),
        "max_prelogin_per_address = 100".into(),
    ]);
    let mut implicit = ListenerConfig::imap(TlsMode::Implicit);
    implicit.extra.push("max_connections = 1".into());
    all.push(implicit.clone());
    let mut config = config(&env, all.clone());
    let metrics = with_metrics(&mut config);
    let proxy = env.start_proxy_with(&config);

    for (protocol, listener) in Protocol::ALL.into_iter().zip(&all) {
        let to = listener.listen;
        let mut held = Vec::new();
        for _ in 0..FULL {
            held.push(LineClient::greeted(protocol, to, FIRST).await);
        }
        LineClient::refused(protocol, to, FIRST, Why::ListenerFull).await;
        LineClient::refused(protocol, to, SECOND, Why::ListenerFull).await;
        assert_eq!(
            refused_count(metrics, protocol.name(), "max_connections"),
            2.0
        );
        assert_eq!(refused_count(metrics, protocol.name(), "per_address"), 0.0);
        // One leaves: its place is free again.
        let leaving = held.pop().expect("a held client");
        let peer = format!("peer={}", leaving.local_addr());
        drop(leaving);
        wait_for_line(&proxy, &peer, "outcome=\"client-closed\"");
        held.push(LineClient::greeted(protocol, to, SECOND).await);
        LineClient::refused(protocol, to, FIRST, Why::ListenerFull).await;
    }

    // Implicit TLS: the refusal comes inside TLS, after the handshake.
    let client_tls = env.certs.client_config();
    let mut held = ImapClient::connect_tls(implicit.listen, client_tls.clone()).await;
    assert!(held.read_line().await.starts_with("* OK "));
    let mut refused = ImapClient::connect_tls(implicit.listen, client_tls).await;
    assert_eq!(
        refused.read_line().await,
        Protocol::Imap.refusal(Why::ListenerFull)
    );
    assert!(refused.read_to_eof().await.is_empty());
    assert_eq!(refused_count(metrics, "imap", "max_connections"), 4.0);
    let log = proxy.log();
    assert!(
        log.contains("connections refused: the listener is at max_connections"),
        "{log}"
    );
}

#[tokio::test]
async fn one_address_over_its_cap_is_refused_while_others_are_greeted() {
    const CAP: usize = 3;
    const FLOOD: usize = 25;
    let (_sink, env) = environment("limits-address");
    // Without the per-address cap the flood would fill max_connections.
    let mut all = listeners(&[
        format!("max_prelogin_per_address = {CAP}"),
        "max_connections = 10".into(),
    ]);
    let mut one_each = ListenerConfig::imap(TlsMode::None);
    one_each.extra.push("max_prelogin_per_address = 1".into());
    all.push(one_each.clone());
    let mut config = config(&env, all.clone());
    let metrics = with_metrics(&mut config);
    let proxy = env.start_proxy_with(&config);

    for (protocol, listener) in Protocol::ALL.into_iter().zip(&all) {
        let to = listener.listen;
        // Slow-loris clients from one address: a few are greeted and then hold their
        // connections idle; the rest are turned away.
        let mut flood = Vec::new();
        for _ in 0..CAP {
            flood.push(LineClient::greeted(protocol, to, FIRST).await);
        }
        for _ in CAP..FLOOD {
            LineClient::refused(protocol, to, FIRST, Why::AddressLimit).await;
        }
        // Another address is served.
        let _other = LineClient::greeted(protocol, to, SECOND).await;
        let refused = (FLOOD - CAP) as f64;
        assert_eq!(
            refused_count(metrics, protocol.name(), "per_address"),
            refused
        );
        assert_eq!(
            refused_count(metrics, protocol.name(), "max_connections"),
            0.0
        );
    }

    // A logged-in session is a user's, no longer a connection before login: its address
    // may open another.
    let imap = one_each.listen;
    let mut first = ImapClient::connect_plain(imap).await;
    assert!(first.read_line().await.starts_with("* OK "));
    LineClient::refused(Protocol::Imap, imap, FIRST, Why::AddressLimit).await;
    let token = env.idp.issue("alice");
    login(&mut first, "a", "alice", &token).await;
    // A reply through the relay: the login has been handed over.
    let noop = first.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");
    LineClient::greeted(Protocol::Imap, imap, FIRST).await;
    assert!(
        proxy
            .log()
            .contains("connections refused: an address is at max_prelogin_per_address"),
        "{}",
        proxy.log()
    );
}

/// Python's clients show the refusal's text to their user instead of hanging or reporting
/// a bare network error.
#[tokio::test]
async fn python_clients_report_the_refusal() {
    let (_sink, env) = environment("limits-python");
    let all = listeners(&["max_connections = 1".into()]);
    let proxy = env.start_proxy_with(&config(&env, all.clone()));
    let script = "import imaplib, poplib, smtplib, sys\n\
                  kind, port = sys.argv[1], int(sys.argv[2])\n\
                  open_it = {'imap': imaplib.IMAP4, 'smtp': smtplib.SMTP, 'pop3': poplib.POP3}[kind]\n\
                  try:\n    open_it('127.0.0.1', port, timeout=10)\n\
                  except Exception as e:\n    print(type(e).__name__, e)\n    sys.exit(0)\n\
                  print('connected')\n\
                  sys.exit(1)\n";
    for (protocol, listener) in Protocol::ALL.into_iter().zip(&all) {
        if protocol == Protocol::Sieve {
            continue; // no Python ManageSieve client reports a greeting; the raw tests cover it
        }
        let _held = LineClient::greeted(protocol, listener.listen, FIRST).await;
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                protocol.name(),
                &listener.listen.port().to_string(),
            ])
            .output()
            .expect("run python3");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{protocol:?}: {said} {out:?}");
        let expected = match protocol {
            Protocol::Imap => "error b'* BYE [UNAVAILABLE] Too many connections",
            Protocol::Smtp => "SMTPConnectError (421, b'4.7.0 localhost Too many connections",
            Protocol::Pop3 => "error_proto b'-ERR [SYS/TEMP] Too many connections",
            Protocol::Sieve => unreachable!(),
        };
        assert!(said.starts_with(expected), "{protocol:?}: {said}");
    }
    drop(proxy);
}

#[tokio::test]
async fn the_drain_ends_with_each_protocols_goodbye_and_a_log_line() {
    let (_sink, env) = environment("limits-drain");
    let mut all = listeners(&[]);
    let implicit = ListenerConfig::imap(TlsMode::Implicit);
    all.push(implicit.clone());
    let mut config = config(&env, all.clone());
    config.top_level.push("drain_timeout = \"1s\"".into());
    let mut proxy = env.start_proxy_with(&config);

    let mut waiting = Vec::new();
    for (protocol, listener) in Protocol::ALL.into_iter().zip(&all) {
        waiting.push((
            protocol,
            LineClient::greeted(protocol, listener.listen, FIRST).await,
        ));
    }
    let mut tls = ImapClient::connect_tls(implicit.listen, env.certs.client_config()).await;
    assert!(tls.read_line().await.starts_with("* OK "));
    // A relaying session: it must not get a byte the backend did not send.
    let mut relaying = ImapClient::connect_plain(all[0].listen).await;
    assert!(relaying.read_line().await.starts_with("* OK "));
    login(&mut relaying, "a", "alice", &env.idp.issue("alice")).await;
    let noop = relaying.command("b", "NOOP").await;
    assert_eq!(last_status(&noop).kind, "OK", "{noop:?}");

    let status = Command::new("kill")
        .args(["-TERM", &proxy.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    for (protocol, client) in &mut waiting {
        assert_eq!(
            client.line().await.as_deref(),
            Some(protocol.goodbye()),
            "{protocol:?}"
        );
        assert_eq!(client.rest().await, b"", "{protocol:?}: after the goodbye");
    }
    assert_eq!(tls.read_line().await, Protocol::Imap.goodbye());
    assert!(tls.read_to_eof().await.is_empty());
    let after = relaying.read_to_eof().await;
    assert!(after.is_empty(), "bytes injected into the relay: {after:?}");

    let exited = proxy
        .wait_exit(WAIT)
        .expect("the proxy exits after the drain");
    assert!(exited.success(), "{exited}");
    let log = proxy.log();
    let drained: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("closed") && l.contains("outcome=\"drained\""))
        .collect();
    // Four plaintext listeners, the implicit-TLS one, and the relay (with its byte counts).
    assert_eq!(drained.len(), 6, "{log}");
    assert!(
        drained.iter().any(|l| l.contains("client_bytes=")),
        "the relay's line: {drained:?}"
    );
}

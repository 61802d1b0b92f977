//! PROXY protocol in and out: a listener with `proxy_protocol = true` takes the client's
//! address from the header a trusted load balancer sends (v1 and v2, before TLS), uses it in
//! its log and its per-address limits, and a backend with `send_proxy_protocol = true` (a
//! real Dovecot with `haproxy = yes`) sees it too; untrusted peers and bad headers are closed
//! without a byte; and a real HAProxy with `send-proxy-v2` in front works end to end.
//!
//! Every client here connects from loopback: a header's address is what tells the proxy who
//! the client is, and a client socket bound to 127.0.0.2 is another address for HAProxy.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::imap_backend::wait_for_dovecot_log;
use crate::support::haproxy::{Haproxy, SendProxy};
use crate::support::imap_client::last_status;
use crate::support::proxy::ListenerConfig;
use crate::support::{
    login, test_message, Dovecot, Idp, ImapClient, Proxy, ProxyConfig, TestCerts, TestDir, TestEnv,
    TlsMode,
};

/// How long a line, a close or a log line may take.
const WAIT: Duration = Duration::from_secs(10);

/// `PROXY TCP4 192.0.2.7 203.0.113.1 40001 993`: the text header.
const V1_HEADER: &[u8] = b"PROXY TCP4 192.0.2.7 203.0.113.1 40001 993\r\n";

/// The binary header for TCP over IPv6, 2001:db8::7 port 40002 to 2001:db8::1 port 993,
/// with an ALPN TLV the proxy skips.
fn v2_header() -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x2b".to_vec();
    header.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
    ]);
    header.extend_from_slice(&[
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    ]);
    header.extend_from_slice(&[0x9c, 0x42, 0x03, 0xe1]);
    header.extend_from_slice(b"\x01\x00\x04imap");
    assert_eq!(header.len(), 16 + 0x2b);
    header
}

/// A v1 header naming `client` (to 127.0.0.1:143).
fn v1_from(client: Ipv4Addr, port: u16) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 {port} 143\r\n").into_bytes()
}

/// The environment with a Dovecot that also has a PROXY-protocol IMAP listener.
fn env_with_haproxy_dovecot(label: &str) -> TestEnv {
    let dir = TestDir::new(label);
    let certs = TestCerts::generate(dir.path());
    let dovecot = Dovecot::builder(dir.path()).haproxy().start();
    TestEnv {
        dovecot,
        idp: Idp::start(),
        certs,
        dir,
    }
}

/// One IMAP listener behind balancers at `trusted`, plus `extra` lines.
fn proxied_listener(tls: TlsMode, trusted: &str, extra: &[&str]) -> ListenerConfig {
    let mut listener = ListenerConfig::imap(tls);
    listener.extra.push("proxy_protocol = true".into());
    listener
        .extra
        .push(format!("proxy_trusted_networks = [\"{trusted}\"]"));
    listener
        .extra
        .extend(extra.iter().map(|line| line.to_string()));
    listener
}

/// The configuration for the Dovecot PROXY listener: the address reaches Dovecot only
/// through the header (no IMAP ID), so its log proves the header carried it.
fn config_sending_proxy_protocol(env: &TestEnv, listener: ListenerConfig) -> ProxyConfig {
    let mut config = env.proxy_config();
    config.listeners = vec![listener];
    let backend = config.backend_mut("imap");
    backend.address = env.dovecot.imap_haproxy_addr().to_string();
    backend.extra.push("send_proxy_protocol = true".into());
    backend.extra.push("forward_client_address = false".into());
    config
}

/// Everything the peer sends until it closes (a reset counts as a close), which must come
/// within [`WAIT`].
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut heard = Vec::new();
    let read = async {
        let mut chunk = [0u8; 512];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => heard.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .unwrap_or_else(|_| panic!("connection still open after {WAIT:?}"));
    heard
}

/// The proxy's `logged in` line for a session whose client is `peer`.
fn wait_for_login_of(proxy: &Proxy, peer: &str) -> String {
    let found = |log: &str| {
        log.lines()
            .find(|l| l.contains("logged in") && l.contains(&format!("peer={peer} ")))
            .map(str::to_owned)
    };
    assert!(
        proxy.wait_for_log_where(WAIT, |log| found(log).is_some()),
        "no `logged in` line for peer={peer}:\n{}",
        proxy.log()
    );
    found(&proxy.log()).expect("found above")
}

/// Dovecot's `Login:` line for alice with `rip=ip`.
fn dovecot_login_from(dovecot: &Dovecot, ip: &str) -> String {
    let needle = format!("rip={ip},");
    let log = wait_for_dovecot_log(dovecot, &needle);
    log.lines()
        .find(|l| l.contains("Login: user=<alice>") && l.contains(&needle))
        .unwrap_or_else(|| panic!("no alice login from {ip}:\n{log}"))
        .to_owned()
}

#[tokio::test]
async fn v1_and_v2_headers_name_the_client_to_the_log_and_to_dovecot() {
    let env = env_with_haproxy_dovecot("pp-in-out");
    let message = env
        .dovecot
        .deliver("alice", &test_message("proxied", 3_000));
    let listener = proxied_listener(TlsMode::Implicit, "127.0.0.0/8", &[]);
    let proxy = env.start_proxy_with(&config_sending_proxy_protocol(&env, listener));
    let token = env.idp.issue("alice");
    let cases = [
        (
            V1_HEADER.to_vec(),
            "192.0.2.7:40001",
            "192.0.2.7",
            "203.0.113.1",
        ),
        (
            v2_header(),
            "[2001:db8::7]:40002",
            "2001:db8::7",
            "2001:db8::1",
        ),
    ];
    for (header, peer, ip, destination) in cases {
        // The header first, then TLS: the proxy must leave the ClientHello in the socket.
        let mut client = ImapClient::connect_plain(proxy.addr(TlsMode::Implicit)).await;
        client.send(&header).await;
        client.upgrade_tls(env.certs.client_config()).await;
        let greeting = client.read_line().await;
        assert!(greeting.starts_with("* OK "), "{peer}: {greeting:?}");
        login(&mut client, "a", "alice", &token).await;
        let select = client.command("b", "SELECT INBOX").await;
        assert_eq!(last_status(&select).kind, "OK", "{select:?}");
        assert!(
            client.fetch_body("c", 1).await == message,
            "{peer}: FETCH through the proxy is not byte-identical"
        );

        let line = wait_for_login_of(&proxy, peer);
        assert!(line.contains("via=127.0.0.1:"), "{line}");
        // Dovecot got the client's address, and the address it connected to, from the
        // proxy's own PROXY header.
        let login = dovecot_login_from(&env.dovecot, ip);
        assert!(login.contains(&format!("lip={destination},")), "{login}");
    }
}

#[tokio::test]
async fn peers_outside_the_trusted_networks_are_closed_without_a_byte() {
    let env = TestEnv::new("pp-untrusted");
    let mut config = env.proxy_config();
    config.listeners = vec![
        proxied_listener(TlsMode::None, "10.0.0.0/8", &[]),
        proxied_listener(TlsMode::Implicit, "10.0.0.0/8", &[]),
    ];
    let proxy = env.start_proxy_with(&config);
    for tls in [TlsMode::None, TlsMode::Implicit] {
        let mut stream = TcpStream::connect(proxy.addr(tls)).await.expect("connect");
        // A header, as a balancer would send it: from the wrong address, it counts for nothing.
        stream.write_all(V1_HEADER).await.expect("write the header");
        assert_eq!(until_closed(&mut stream).await, b"", "{tls:?}");
    }
    assert!(
        proxy.wait_for_log("untrusted_proxy", WAIT),
        "{}",
        proxy.log()
    );
    assert!(
        !proxy.log().contains("peer=192.0.2.7"),
        "an untrusted header was used:\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn bad_and_unfinished_headers_are_closed_without_a_word() {
    let env = TestEnv::new("pp-malformed");
    let mut config = env.proxy_config();
    config.listeners = vec![proxied_listener(TlsMode::None, "127.0.0.0/8", &[])];
    let proxy = env.start_proxy_with(&config);
    let address = proxy.addr(TlsMode::None);
    let refused: [&[u8]; 3] = [
        // A client talking directly.
        b"a CAPABILITY\r\nb LOGOUT\r\n",
        // Port out of range.
        b"PROXY TCP4 192.0.2.7 127.0.0.1 99999 143\r\n",
        // A v2 header of version 1.
        b"\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c\xc0\x00\x02\x07\x7f\x00\x00\x01\x9c\x41\x00\x8f",
    ];
    for input in refused {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(input).await.expect("write");
        assert_eq!(until_closed(&mut stream).await, b"", "{input:?}");
    }
    let refusals = |log: &str| log.matches("PROXY header refused").count();
    assert!(
        proxy.wait_for_log_where(WAIT, |log| refusals(log) == 3),
        "{}",
        proxy.log()
    );

    // Half a header, then nothing: closed when the header's time is up, in silence.
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(&v2_header()[..20]).await.expect("write");
    assert_eq!(until_closed(&mut stream).await, b"");
    assert!(
        proxy.wait_for_log("no whole PROXY header within 3s", WAIT),
        "{}",
        proxy.log()
    );
    assert!(!proxy.log().contains("logged in"));
}

#[tokio::test]
async fn per_address_limits_count_the_address_in_the_header() {
    let env = TestEnv::new("pp-limits");
    let mut config = env.proxy_config();
    config.listeners = vec![proxied_listener(
        TlsMode::None,
        "127.0.0.0/8",
        &["max_prelogin_per_address = 2"],
    )];
    let proxy = env.start_proxy_with(&config);
    let address = proxy.addr(TlsMode::None);
    let first = Ipv4Addr::new(192, 0, 2, 7);
    let second = Ipv4Addr::new(192, 0, 2, 8);
    // Every connection comes from 127.0.0.1; the header says who the client is.
    let connect = |client: Ipv4Addr, port: u16| async move {
        let mut imap = ImapClient::connect_plain(address).await;
        imap.send(&v1_from(client, port)).await;
        let line = imap.read_line().await;
        (imap, line)
    };
    let (_a, greeting) = connect(first, 40001).await;
    assert!(greeting.starts_with("* OK "), "{greeting:?}");
    let (_b, greeting) = connect(first, 40002).await;
    assert!(greeting.starts_with("* OK "), "{greeting:?}");
    let (mut third, refusal) = connect(first, 40003).await;
    assert_eq!(
        refusal,
        "* BYE [UNAVAILABLE] Too many connections from your address, try again later."
    );
    assert!(third.read_to_eof().await.is_empty());
    let (_other, greeting) = connect(second, 40004).await;
    assert!(
        greeting.starts_with("* OK "),
        "another header address is its own: {greeting:?}"
    );
    assert!(
        proxy.wait_for_log("peer=192.0.2.7:40003", WAIT),
        "the refusal names the header's address:\n{}",
        proxy.log()
    );
}

#[tokio::test]
async fn a_full_listener_refuses_after_the_header_and_the_handshake() {
    let env = TestEnv::new("pp-full");
    let mut config = env.proxy_config();
    config.listeners = vec![proxied_listener(
        TlsMode::Implicit,
        "127.0.0.0/8",
        &["max_connections = 1"],
    )];
    let proxy = env.start_proxy_with(&config);
    let connect = || async {
        let mut client = ImapClient::connect_plain(proxy.addr(TlsMode::Implicit)).await;
        client.send(V1_HEADER).await;
        client.upgrade_tls(env.certs.client_config()).await;
        client
    };
    let mut first = connect().await;
    let greeting = first.read_line().await;
    assert!(greeting.starts_with("* OK "), "{greeting:?}");
    // The refusal reads the balancer's header before its TLS handshake, so the client
    // behind it is told, in TLS, why.
    let mut second = connect().await;
    assert_eq!(
        second.read_line().await,
        "* BYE [UNAVAILABLE] Too many connections, try again later."
    );
    assert!(second.read_to_eof().await.is_empty());
}

#[tokio::test]
async fn haproxy_in_front_relays_the_client_and_its_address() {
    let env = env_with_haproxy_dovecot("pp-haproxy");
    let message = env
        .dovecot
        .deliver("alice", &test_message("through haproxy", 20_000));
    // Only HAProxy's own address may send headers.
    let listener = proxied_listener(TlsMode::Implicit, "127.0.0.1/32", &[]);
    let listen = listener.listen;
    let proxy = env.start_proxy_with(&config_sending_proxy_protocol(&env, listener));
    let haproxy = Haproxy::start(env.dir.path(), &[listen], SendProxy::V2);
    let token = env.idp.issue("alice");

    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut client = ImapClient::connect_plain_from(source, haproxy.frontend).await;
    let client_port = client.local_addr().port();
    client.upgrade_tls(env.certs.client_config()).await;
    let greeting = client.read_line().await;
    assert!(greeting.starts_with("* OK "), "{greeting:?}");
    login(&mut client, "a", "alice", &token).await;
    let select = client.command("b", "SELECT INBOX").await;
    assert_eq!(last_status(&select).kind, "OK", "{select:?}");
    assert!(
        client.fetch_body("c", 1).await == message,
        "FETCH through HAProxy and the proxy is not byte-identical"
    );
    let logout = client.command("d", "LOGOUT").await;
    assert_eq!(last_status(&logout).kind, "OK", "{logout:?}");

    let line = wait_for_login_of(&proxy, &format!("127.0.0.2:{client_port}"));
    assert!(line.contains("via=127.0.0.1:"), "{line}");
    dovecot_login_from(&env.dovecot, "127.0.0.2");
    // A client connecting to the listener directly is not HAProxy: 127.0.0.2 is untrusted.
    let mut direct = ImapClient::connect_plain_from(source, listen).await;
    direct.send(V1_HEADER).await;
    assert!(direct.read_to_eof().await.is_empty());
}

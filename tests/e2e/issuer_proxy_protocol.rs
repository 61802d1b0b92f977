//! The built-in issuer behind a load balancer: with `[issuer] proxy_protocol`, the address a
//! PROXY header names is the one its per-address limits count by (here: anonymous
//! registration, 10 per address), and connections from outside `proxy_trusted_networks` or
//! without a header are closed unanswered.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::issuer::{IssuerEnv, IssuerOptions};

const WAIT: Duration = Duration::from_secs(10);
/// Anonymous registrations one address may make in a burst.
const REGISTRATION_BURST: usize = 10;

fn issuer_env(label: &str, trusted: &str) -> IssuerEnv {
    IssuerEnv::new(
        label,
        IssuerOptions {
            plaintext: true,
            anonymous_registration: true,
            extra: vec![
                "proxy_protocol = true".into(),
                format!("proxy_trusted_networks = [\"{trusted}\"]"),
            ],
            ..IssuerOptions::default()
        },
    )
}

/// The issuer's `host:port`, from its plain-HTTP URL.
fn issuer_address(env: &IssuerEnv) -> SocketAddr {
    env.url
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("issuer address in {}: {e}", env.url))
}

/// Everything the server sends on a connection that starts with `header` and then asks for
/// an anonymous registration, until it closes.
fn register_after(issuer: SocketAddr, header: &[u8]) -> Vec<u8> {
    let body = r#"{"redirect_uris":["https://app.example/cb"],"client_name":"Behind a balancer"}"#;
    let request = format!(
        "POST /auth/register HTTP/1.1\r\nHost: {issuer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(issuer).expect("connect to the issuer");
    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    stream.write_all(header).expect("write the PROXY header");
    // The server may close before reading the request (no header, untrusted peer).
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// The status code of an HTTP answer.
fn status(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"))
}

fn v1_header(client: Ipv4Addr, issuer: SocketAddr) -> Vec<u8> {
    format!(
        "PROXY TCP4 {client} {} 40000 {}\r\n",
        issuer.ip(),
        issuer.port()
    )
    .into_bytes()
}

#[test]
fn the_issuer_counts_the_address_in_the_proxy_header() {
    let env = issuer_env("issuer-pp", "127.0.0.0/8");
    let proxy = env.start();
    let issuer = issuer_address(&env);
    let first = Ipv4Addr::new(192, 0, 2, 1);
    for attempt in 1..=REGISTRATION_BURST {
        let answer = register_after(issuer, &v1_header(first, issuer));
        assert_eq!(status(&answer), 201, "registration {attempt} from {first}");
    }
    let answer = register_after(issuer, &v1_header(first, issuer));
    assert_eq!(status(&answer), 429, "{first} spent its registrations");
    // Another client behind the same balancer has its own.
    let second = Ipv4Addr::new(192, 0, 2, 2);
    let answer = register_after(issuer, &v1_header(second, issuer));
    assert_eq!(status(&answer), 201, "registration from {second}");
    // LOCAL (a balancer's own health check) stands for the balancer itself.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    assert_eq!(status(&register_after(issuer, local)), 201);
    // A client without a header gets nothing: it could be anyone.
    assert_eq!(
        register_after(issuer, b""),
        b"",
        "an answer without a PROXY header"
    );
    drop(proxy);
}

#[test]
fn the_issuer_closes_peers_outside_the_trusted_networks_without_a_byte() {
    let env = issuer_env("issuer-pp-untrusted", "10.0.0.0/8");
    let proxy = env.start();
    let issuer = issuer_address(&env);
    let answer = register_after(issuer, &v1_header(Ipv4Addr::new(192, 0, 2, 1), issuer));
    assert_eq!(answer, b"", "an untrusted balancer was answered");
    assert!(
        proxy.wait_for_log("outside proxy_trusted_networks", WAIT),
        "{}",
        proxy.log()
    );
}

//! SMTP before login: the proxy's EHLO reply offers the service extensions the backend has
//! (learned from the backend's EHLO at a login), so a client that plans with it can use
//! them after AUTH, when it talks to the backend. Against a real Dovecot submission, which
//! offers CHUNKING (RFC 3030) itself: a `BDAT` submission through the proxy arrives at the
//! sink byte for byte. Nothing privileged that Dovecot offers the proxy (`XCLIENT`, to its
//! `login_trusted_networks`) reaches a client.

use std::time::Duration;

use crate::support::imap_client::ImapClient;
use crate::support::{
    b64, oauthbearer_raw, Proxy, ProxyConfig, SinkMessage, SmtpSink, TestEnv, TlsMode,
};

/// How long a submitted message may take to reach the sink through Dovecot.
const RELAY_DEADLINE: Duration = Duration::from_secs(20);

/// The message is 8-bit (and stays so: Dovecot relays it to the sink with DATA).
const MAIL_FROM: &str = "MAIL FROM:<alice@example.test> BODY=8BITMIME";

/// The proxy's EHLO keywords that are its own, whatever the backend has.
const PROXYS_OWN: [&str; 2] = ["AUTH", "STARTTLS"];

/// One reply's lines, up to the one with a space after the code.
async fn read_reply(client: &mut ImapClient) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = client.read_line().await;
        assert!(
            line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
            "not an SMTP reply line: {line:?} (after {lines:?})"
        );
        let last = line.len() == 3 || line.as_bytes().get(3) == Some(&b' ');
        lines.push(line);
        if last {
            return lines;
        }
    }
}

/// Sends `line` (CRLF added) and reads the reply, which must start with `code`.
async fn command(client: &mut ImapClient, line: &str, code: &str) -> Vec<String> {
    client.send(format!("{line}\r\n").as_bytes()).await;
    let reply = read_reply(client).await;
    let done = reply.last().map(String::as_str).unwrap_or("");
    assert!(done.starts_with(code), "{line}: want {code}, got {reply:?}");
    reply
}

/// The EHLO keywords of a reply, upper-cased, with their params.
fn keywords(reply: &[String]) -> Vec<(String, String)> {
    reply
        .iter()
        .skip(1)
        .map(|line| {
            let text = line.get(4..).unwrap_or("");
            let (keyword, params) = text.split_once(' ').unwrap_or((text, ""));
            (keyword.to_ascii_uppercase(), params.to_string())
        })
        .collect()
}

fn has(keywords: &[(String, String)], keyword: &str) -> bool {
    keywords.iter().any(|(k, _)| k == keyword)
}

async fn ehlo(client: &mut ImapClient) -> Vec<(String, String)> {
    keywords(&command(client, "EHLO client.test", "250 ").await)
}

/// Dovecot submission's own EHLO keywords before login, as the proxy sees them.
async fn dovecot_keywords(env: &TestEnv) -> Vec<(String, String)> {
    let mut client = ImapClient::connect_plain(env.dovecot.submission_addr()).await;
    read_reply(&mut client).await;
    let keywords = ehlo(&mut client).await;
    command(&mut client, "QUIT", "221").await;
    keywords
}

async fn connect(env: &TestEnv, proxy: &Proxy, tls: TlsMode) -> ImapClient {
    let addr = proxy.addr(tls);
    let mut client = match tls {
        TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
        TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
    };
    let greeting = read_reply(&mut client).await;
    assert!(greeting[0].starts_with("220 "), "greeting {greeting:?}");
    client
}

async fn auth(client: &mut ImapClient, token: &str) {
    let response = b64(oauthbearer_raw("alice", token));
    command(client, &format!("AUTH OAUTHBEARER {response}"), "235 ").await;
}

/// The proxy's EHLO after TLS must offer what Dovecot offers, less what the proxy says
/// itself and what a client must never see; CHUNKING among them.
fn assert_backends_extensions(proxy: &[(String, String)], dovecot: &[(String, String)]) {
    for (keyword, params) in proxy {
        if PROXYS_OWN.contains(&keyword.as_str()) {
            continue;
        }
        assert!(
            dovecot.iter().any(|(k, p)| k == keyword && p == params),
            "the proxy offers {keyword} {params}, which Dovecot does not ({dovecot:?})"
        );
    }
    for keyword in ["CHUNKING", "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"] {
        assert!(has(proxy, keyword), "no {keyword} in {proxy:?}");
    }
    for keyword in ["XCLIENT", "STARTTLS"] {
        assert!(!has(proxy, keyword), "{keyword} in {proxy:?}");
    }
    let auth = proxy.iter().find(|(k, _)| k == "AUTH");
    assert_eq!(
        auth.map(|(_, p)| p.as_str()),
        Some("OAUTHBEARER XOAUTH2"),
        "{proxy:?}"
    );
}

/// A message no line-based hop may touch: 8-bit octets that are not UTF-8, lines that
/// would end DATA or look like commands if a hop forgot to dot-stuff, a CRLF.CRLF in the
/// middle, trailing white space and a 998-octet line.
fn binary_safe_message(subject: &str) -> Vec<u8> {
    let mut message = format!(
        "From: Alice <alice@example.test>\r\n\
         To: Bob <bob@example.test>\r\n\
         Subject: {subject}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße über bearergate, tabs\tand trailing spaces   \r\n\
         .\r\n\
         ..two dots\r\n\
         .leading dot\r\n\
         BDAT 10 LAST\r\n\
         QUIT\r\n\
         \r\n.\r\n\r\n"
    )
    .into_bytes();
    message.extend(0x80..=0xff_u8);
    message.extend_from_slice(b"\r\n");
    message.extend_from_slice(&[b'x'; 998]);
    message.extend_from_slice(b"\r\nlast line\r\n");
    message
}

/// What arrived must be one `Received:` header field Dovecot prepended (folded, each
/// continuation line starting with a TAB), then exactly the bytes submitted.
fn assert_arrived_intact(sent: &[u8], got: &SinkMessage) {
    assert!(
        got.data.len() > sent.len() && got.data.ends_with(sent),
        "the relayed message ({} bytes) does not end with the {} bytes submitted:\n{}",
        got.data.len(),
        sent.len(),
        String::from_utf8_lossy(&got.data)
    );
    let added = String::from_utf8_lossy(&got.data[..got.data.len() - sent.len()]).into_owned();
    let lines: Vec<&str> = added.trim_end_matches("\r\n").split("\r\n").collect();
    assert!(
        added.ends_with("\r\n")
            && lines[0].starts_with("Received: from ")
            && lines[1..].iter().all(|l| l.starts_with('\t')),
        "Dovecot added something besides its Received: {added:?}"
    );
    assert!(
        got.mail_from.starts_with("<alice@example.test>"),
        "envelope sender {:?}",
        got.mail_from
    );
    assert_eq!(got.rcpt_to.len(), 1, "recipients {:?}", got.rcpt_to);
}

#[tokio::test]
async fn ehlo_offers_the_backends_chunking_and_bdat_arrives_byte_for_byte() {
    let sink = SmtpSink::start();
    let env = TestEnv::with_dovecot("smtp-fidelity", |b| b.submission(sink.port()));
    let dovecot = dovecot_keywords(&env).await;
    assert!(
        has(&dovecot, "CHUNKING") && has(&dovecot, "XCLIENT"),
        "the test needs a backend that offers CHUNKING and, to the proxy, XCLIENT: {dovecot:?}"
    );
    let token = env.idp.issue("alice");
    let proxy = env.start_proxy_with(&ProxyConfig::submission(&env));

    // A first login makes the proxy read Dovecot's EHLO; its 235 is the observable point
    // after which new connections are offered what the backend has.
    let mut client = connect(&env, &proxy, TlsMode::Implicit).await;
    ehlo(&mut client).await;
    auth(&mut client, &token).await;
    command(&mut client, "QUIT", "221 ").await;

    // STARTTLS: the backend's extensions before TLS already (with STARTTLS, without AUTH),
    // and after the handshake with AUTH; then one BDAT LAST with the whole message.
    let mut client = connect(&env, &proxy, TlsMode::Starttls).await;
    let before = ehlo(&mut client).await;
    assert!(
        has(&before, "CHUNKING") && has(&before, "STARTTLS"),
        "{before:?}"
    );
    assert!(
        !has(&before, "AUTH") && !has(&before, "XCLIENT"),
        "{before:?}"
    );
    command(&mut client, "STARTTLS", "220 ").await;
    client.upgrade_tls(env.certs.client_config()).await;
    assert_backends_extensions(&ehlo(&mut client).await, &dovecot);
    auth(&mut client, &token).await;
    let whole = binary_safe_message("one BDAT LAST");
    command(&mut client, MAIL_FROM, "250 ").await;
    command(&mut client, "RCPT TO:<bob@example.test>", "250 ").await;
    let mut bdat = format!("BDAT {} LAST\r\n", whole.len()).into_bytes();
    bdat.extend_from_slice(&whole);
    client.send(&bdat).await;
    let reply = read_reply(&mut client).await;
    assert!(reply[0].starts_with("250 "), "BDAT LAST: {reply:?}");
    command(&mut client, "QUIT", "221 ").await;

    // Implicit TLS: the message in two chunks, cut inside a CRLF and before a lone `.`.
    let mut client = connect(&env, &proxy, TlsMode::Implicit).await;
    assert_backends_extensions(&ehlo(&mut client).await, &dovecot);
    auth(&mut client, &token).await;
    let chunked = binary_safe_message("two BDAT chunks");
    let cut = chunked
        .windows(5)
        .position(|w| w == b"\r\n.\r\n")
        .map(|at| at + 1)
        .expect("the message has a lone dot line");
    command(&mut client, MAIL_FROM, "250 ").await;
    command(&mut client, "RCPT TO:<bob@example.test>", "250 ").await;
    let mut first = format!("BDAT {}\r\n", cut).into_bytes();
    first.extend_from_slice(&chunked[..cut]);
    client.send(&first).await;
    let reply = read_reply(&mut client).await;
    assert!(reply[0].starts_with("250 "), "first BDAT: {reply:?}");
    let mut last = format!("BDAT {} LAST\r\n", chunked.len() - cut).into_bytes();
    last.extend_from_slice(&chunked[cut..]);
    client.send(&last).await;
    let reply = read_reply(&mut client).await;
    assert!(reply[0].starts_with("250 "), "BDAT LAST: {reply:?}");
    command(&mut client, "QUIT", "221 ").await;

    let messages = sink.wait_for(2, RELAY_DEADLINE);
    assert_eq!(messages.len(), 2, "{messages:?}");
    for (subject, sent) in [("one BDAT LAST", &whole), ("two BDAT chunks", &chunked)] {
        let needle = format!("\r\nSubject: {subject}\r\n").into_bytes();
        let got = messages
            .iter()
            .find(|m| m.data.windows(needle.len()).any(|w| w == needle.as_slice()))
            .unwrap_or_else(|| panic!("no message with the subject {subject:?} arrived"));
        assert_arrived_intact(sent, got);
    }
}

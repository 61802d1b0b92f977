//! A raw IMAP client for tests: exact bytes out, lines and literals in, every read bounded by
//! a deadline, optional TLS (implicit or STARTTLS) trusting the test CA.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::b64_decode;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Gone,
}

/// A status response: `tag OK [CODE args] text`, or untagged with tag `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub tag: String,
    /// `OK`, `NO`, `BAD`, `BYE` or `PREAUTH`, upper-cased.
    pub kind: String,
    /// The response code's atom, upper-cased (`AUTHENTICATIONFAILED`, `CAPABILITY`, …).
    pub code: Option<String>,
    /// What follows the code atom inside the brackets.
    pub code_args: String,
    pub line: String,
}

impl Status {
    /// Parse a status line; `None` for anything else (data responses, continuations).
    pub fn parse(line: &str) -> Option<Self> {
        let (tag, rest) = line.split_once(' ')?;
        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let kind = kind.to_ascii_uppercase();
        if !["OK", "NO", "BAD", "BYE", "PREAUTH"].contains(&kind.as_str()) {
            return None;
        }
        let (code, code_args) = match rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((inner, _)) => {
                let (atom, args) = inner.split_once(' ').unwrap_or((inner, ""));
                (Some(atom.to_ascii_uppercase()), args.to_string())
            }
            None => (None, String::new()),
        };
        Some(Self {
            tag: tag.to_string(),
            kind,
            code,
            code_args,
            line: line.to_string(),
        })
    }

    /// Capabilities from a `[CAPABILITY …]` code, upper-cased; empty without one.
    pub fn capabilities(&self) -> Vec<String> {
        if self.code.as_deref() != Some("CAPABILITY") {
            return Vec::new();
        }
        self.code_args
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect()
    }

    pub fn is(&self, kind: &str, code: Option<&str>) -> bool {
        self.kind == kind && self.code.as_deref() == code
    }
}

/// Capabilities from a `* CAPABILITY …` data line, upper-cased.
pub fn capability_line(line: &str) -> Option<Vec<String>> {
    let rest = line.strip_prefix("* CAPABILITY ")?;
    Some(
        rest.split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect(),
    )
}

/// The result of an AUTHENTICATE exchange.
#[derive(Debug)]
pub struct AuthOutcome {
    /// The error challenge the server sent (base64-decoded JSON), if any.
    pub challenge: Option<Value>,
    /// Untagged lines seen during the exchange.
    pub untagged: Vec<String>,
    pub tagged: Status,
}

#[derive(Debug)]
pub struct ImapClient {
    stream: Stream,
    buf: Vec<u8>,
    pub timeout: Duration,
}

impl ImapClient {
    pub async fn connect_plain(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        Self {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub async fn connect_tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> Self {
        let mut client = Self::connect_plain(addr).await;
        client.upgrade_tls(config).await;
        client
    }

    /// Start TLS on the connection now. Bytes already buffered from the plaintext phase would
    /// be a server bug (it answered something after `OK Begin TLS`), so they fail the test.
    pub async fn upgrade_tls(&mut self, config: Arc<rustls::ClientConfig>) {
        assert!(
            self.buf.is_empty(),
            "server sent bytes after the STARTTLS reply, before TLS: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Gone) else {
            panic!("upgrade_tls on a connection that is not plaintext");
        };
        let name = ServerName::try_from("localhost").expect("server name");
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let tls = tokio::time::timeout(self.timeout, handshake)
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake");
        self.stream = Stream::Tls(Box::new(tls));
    }

    /// Send `tag STARTTLS`, expect `tag OK`, and upgrade. Returns the lines read.
    pub async fn starttls(&mut self, tag: &str, config: Arc<rustls::ClientConfig>) -> Vec<String> {
        self.send(format!("{tag} STARTTLS\r\n").as_bytes()).await;
        let lines = self.read_until_tagged(tag).await;
        let status = last_status(&lines);
        assert_eq!(status.kind, "OK", "STARTTLS refused: {lines:?}");
        self.upgrade_tls(config).await;
        lines
    }

    /// The client's own address on this connection (what the server sees as its peer).
    pub fn local_addr(&self) -> SocketAddr {
        let addr = match &self.stream {
            Stream::Plain(s) => s.local_addr(),
            Stream::Tls(s) => s.get_ref().0.local_addr(),
            Stream::Gone => panic!("local_addr on a closed client"),
        };
        addr.expect("local address of a connected socket")
    }

    /// Write exactly these bytes, in one write call.
    pub async fn send(&mut self, bytes: &[u8]) {
        let result = match &mut self.stream {
            Stream::Plain(s) => write_flush(s, bytes).await,
            Stream::Tls(s) => write_flush(s.as_mut(), bytes).await,
            Stream::Gone => panic!("send on a closed client"),
        };
        result.unwrap_or_else(|e| panic!("write to server: {e}"));
    }

    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = match &mut self.stream {
            Stream::Plain(s) => s.read(&mut chunk).await?,
            Stream::Tls(s) => s.read(&mut chunk).await?,
            Stream::Gone => 0,
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next line without CRLF, or `None` at EOF (a reset counts as EOF). Panics when no
    /// whole line arrives within the timeout.
    pub async fn try_read_line(&mut self) -> Option<String> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            loop {
                if let Some(pos) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    let line: Vec<u8> = self.buf.drain(..pos + 2).take(pos).collect();
                    return Some(String::from_utf8_lossy(&line).into_owned());
                }
                match self.fill().await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no line from the server within {timeout:?}; buffered {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    pub async fn read_line(&mut self) -> String {
        self.try_read_line()
            .await
            .expect("server closed the connection, a line was expected")
    }

    /// Exactly `n` bytes (a literal's contents).
    pub async fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, async {
            while self.buf.len() < n {
                match self.fill().await {
                    Ok(0) | Err(_) => panic!("EOF inside a {n}-byte literal"),
                    Ok(_) => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("literal of {n} bytes not complete within {timeout:?}"));
        self.buf.drain(..n).collect()
    }

    /// Lines up to and including the one tagged `tag` (no literals expected).
    pub async fn read_until_tagged(&mut self, tag: &str) -> Vec<String> {
        let prefix = format!("{tag} ");
        let mut lines = Vec::new();
        loop {
            let Some(line) = self.try_read_line().await else {
                panic!("EOF before the {tag:?} reply; got {lines:?}");
            };
            let done = line.starts_with(&prefix);
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Send `tag command` and read up to the tagged reply.
    pub async fn command(&mut self, tag: &str, command: &str) -> Vec<String> {
        self.send(format!("{tag} {command}\r\n").as_bytes()).await;
        self.read_until_tagged(tag).await
    }

    /// Read what is left until EOF; panics if the server keeps the connection open.
    pub async fn read_to_eof(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.try_read_line().await {
            lines.push(line);
        }
        lines
    }

    /// `AUTHENTICATE mech`, with `response` (base64) as initial response when `sasl_ir`, or
    /// after the server's first empty `+`. An error challenge is decoded and answered with
    /// the mechanism's dummy (`AQ==` for OAUTHBEARER, an empty line for XOAUTH2).
    pub async fn authenticate(
        &mut self,
        tag: &str,
        mech: &str,
        response: &str,
        sasl_ir: bool,
    ) -> AuthOutcome {
        let mut pending = if sasl_ir {
            self.send(format!("{tag} AUTHENTICATE {mech} {response}\r\n").as_bytes())
                .await;
            None
        } else {
            self.send(format!("{tag} AUTHENTICATE {mech}\r\n").as_bytes())
                .await;
            Some(response.to_string())
        };
        let dummy = if mech.eq_ignore_ascii_case("OAUTHBEARER") {
            "AQ=="
        } else {
            ""
        };
        let prefix = format!("{tag} ");
        let mut challenge = None;
        let mut untagged = Vec::new();
        loop {
            let Some(line) = self.try_read_line().await else {
                panic!("EOF during AUTHENTICATE; got {untagged:?}");
            };
            if line.starts_with(&prefix) {
                let tagged = Status::parse(&line)
                    .unwrap_or_else(|| panic!("malformed tagged reply {line:?}"));
                return AuthOutcome {
                    challenge,
                    untagged,
                    tagged,
                };
            }
            let Some(data) = line.strip_prefix('+') else {
                untagged.push(line);
                continue;
            };
            if let Some(response) = pending.take() {
                self.send(format!("{response}\r\n").as_bytes()).await;
                continue;
            }
            assert!(challenge.is_none(), "a second error challenge: {line:?}");
            let json = b64_decode(data);
            challenge = Some(serde_json::from_slice(&json).unwrap_or_else(|e| {
                panic!(
                    "error challenge is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(&json)
                )
            }));
            self.send(format!("{dummy}\r\n").as_bytes()).await;
        }
    }

    /// `FETCH seq (BODY.PEEK[])` and the literal's exact bytes.
    pub async fn fetch_body(&mut self, tag: &str, seq: u32) -> Vec<u8> {
        self.send(format!("{tag} FETCH {seq} (BODY.PEEK[])\r\n").as_bytes())
            .await;
        let mut body = None;
        loop {
            let line = self.read_line().await;
            if line.starts_with(&format!("{tag} ")) {
                let status = Status::parse(&line).expect("tagged FETCH reply");
                assert_eq!(status.kind, "OK", "FETCH failed: {line}");
                return body.unwrap_or_else(|| panic!("FETCH {seq} returned no BODY[]"));
            }
            if let Some(size) = literal_size(&line) {
                if line.contains("BODY[]") {
                    body = Some(self.read_bytes(size).await);
                } else {
                    self.read_bytes(size).await;
                }
            }
        }
    }

    /// `APPEND mailbox {n}` with a synchronising literal; returns the tagged reply's lines.
    pub async fn append(&mut self, tag: &str, mailbox: &str, message: &[u8]) -> Vec<String> {
        self.send(format!("{tag} APPEND {mailbox} {{{}}}\r\n", message.len()).as_bytes())
            .await;
        let go = self.read_line().await;
        assert!(go.starts_with('+'), "APPEND literal not accepted: {go}");
        let mut data = message.to_vec();
        data.extend_from_slice(b"\r\n");
        self.send(&data).await;
        self.read_until_tagged(tag).await
    }
}

async fn write_flush<S: AsyncWriteExt + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// `n` when the line ends with a literal announcement `{n}` (or `{n+}`).
pub fn literal_size(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

/// The status parsed from the last line (the tagged reply of `read_until_tagged`).
pub fn last_status(lines: &[String]) -> Status {
    let line = lines.last().expect("at least the tagged line");
    Status::parse(line).unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

impl ImapClient {
    /// Write these bytes if the connection still takes them: a write error (the server
    /// closed or reset the connection) is returned, not a panic.
    pub async fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => write_flush(s, bytes).await,
            Stream::Tls(s) => write_flush(s.as_mut(), bytes).await,
            Stream::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
}

impl ImapClient {
    /// Like [`ImapClient::connect_plain`], from this local address (any of `127.0.0.0/8` on
    /// Linux), so the server sees a client address other than `127.0.0.1`.
    pub async fn connect_plain_from(local: std::net::IpAddr, addr: SocketAddr) -> Self {
        let socket = match local {
            std::net::IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("create a TCP socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .unwrap_or_else(|e| panic!("bind {local}: {e}"));
        let tcp = socket
            .connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect {addr} from {local}: {e}"));
        Self {
            stream: Stream::Plain(tcp),
            buf: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

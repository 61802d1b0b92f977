//! The soak's clients (async, many at once): a submitter logs in over SMTP with XOAUTH2 and
//! sends a few messages per session; a fetcher logs in over IMAP and fetches messages whose
//! bytes it knows. Each keeps going until the soak's end, pausing after "try again later",
//! and counts what happened. Every reply the proxy may give while the identity provider
//! flaps is expected; anything else is an error, kept for the report.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

/// No step may take this long: a hang becomes an error.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages per SMTP session, fetches per IMAP session.
const PER_SESSION: usize = 3;
/// Errors kept word for word per client.
const KEPT_ERRORS: usize = 3;

/// Where a client's token comes from.
#[derive(Debug, Clone)]
pub enum TokenKind {
    /// A token nobody has seen, for every login: the proxy must ask the provider.
    Fresh,
    /// The same token for every login, which the provider confirmed before the flapping.
    Confirmed(String),
}

/// One client's part in the soak.
#[derive(Debug, Clone)]
pub struct Role {
    /// Unique in the run: names tokens and messages.
    pub id: usize,
    /// The user it logs in as (the provider says so for its tokens, see [`token`]).
    pub user: String,
    /// The loopback address it connects from.
    pub source: IpAddr,
    pub addr: SocketAddr,
    pub token: TokenKind,
    /// Pause between sessions, and after "try again later".
    pub pause: Duration,
    pub end: Instant,
}

/// What one client did.
#[derive(Debug, Default)]
pub struct Tally {
    pub logins: usize,
    pub logged_in: usize,
    /// Logins refused with "try again later" (454 4.7.0, NO [UNAVAILABLE]).
    pub try_later: usize,
    /// Messages whose DATA was sent, and those the proxy's 250 acknowledged (their bytes).
    pub submitted: usize,
    pub acknowledged: Vec<Vec<u8>>,
    pub fetched: usize,
    /// Fetched bodies that differ from the stored message.
    pub corrupted: usize,
    pub errors: usize,
    pub first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < KEPT_ERRORS {
            self.first_errors.push(what);
        }
    }
}

/// A line client: exact bytes out, CRLF lines and literals in, every read bounded.
struct Conn {
    reader: BufReader<TcpStream>,
}

type Io<T> = Result<T, String>;

impl Conn {
    /// Connects to `addr` from `source` (any port).
    async fn open(source: IpAddr, addr: SocketAddr) -> Io<Self> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4(),
            IpAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(|e| format!("socket: {e}"))?;
        socket
            .bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
        let stream = socket
            .connect(addr)
            .await
            .map_err(|e| format!("connect {addr} from {source}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1_024, stream),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> Io<()> {
        let write = self.reader.get_mut().write_all(bytes);
        match tokio::time::timeout(IO_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err("write timed out".into()),
        }
    }

    /// The next line without CRLF.
    async fn line(&mut self) -> Io<String> {
        let mut line = Vec::new();
        let read = self.reader.read_until(b'\n', &mut line);
        match tokio::time::timeout(IO_TIMEOUT, read).await {
            Ok(Ok(0)) => Err("connection closed".into()),
            Ok(Ok(_)) => Ok(String::from_utf8_lossy(line.trim_ascii_end()).into_owned()),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Err(_) => Err("no reply within the timeout".into()),
        }
    }

    async fn bytes(&mut self, n: usize) -> Io<Vec<u8>> {
        let mut data = vec![0; n];
        let read = self.reader.read_exact(&mut data);
        match tokio::time::timeout(IO_TIMEOUT, read).await {
            Ok(Ok(_)) => Ok(data),
            Ok(Err(e)) => Err(format!("read literal: {e}")),
            Err(_) => Err("literal not complete within the timeout".into()),
        }
    }

    /// An SMTP reply: its lines up to the one without `-` after the code; returns the last.
    async fn smtp_reply(&mut self) -> Io<String> {
        loop {
            let line = self.line().await?;
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line);
            }
        }
    }

    /// IMAP lines up to the one tagged `tag`; returns it.
    async fn tagged(&mut self, tag: &str) -> Io<String> {
        let prefix = format!("{tag} ");
        loop {
            let line = self.line().await?;
            if line.starts_with(&prefix) {
                return Ok(line);
            }
        }
    }
}

/// The XOAUTH2 initial response for `user` with `token`.
fn xoauth2(user: &str, token: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// A token as a provider would issue one to `user`: long, unique per client and login;
/// the fake provider reads the user from it (`soak.USER.…`).
pub fn token(user: &str, client: usize, login: usize) -> String {
    format!(
        "soak.{user}.{client}x{login}.{}",
        super::realistic_token(600).replace(['+', '/', '.'], "-")
    )
}

/// Runs a submitter until `role.end`.
pub async fn submitter(role: Role) -> Tally {
    let mut tally = Tally::default();
    let mut session = 0usize;
    while Instant::now() < role.end {
        session += 1;
        let pause = match submit_session(&role, session, &mut tally).await {
            Ok(true) => role.pause,
            Ok(false) => role.pause.max(Duration::from_millis(100)),
            Err(e) => {
                tally.error(format!("submitter {}: {e}", role.id));
                role.pause.max(Duration::from_millis(100))
            }
        };
        tokio::time::sleep(pause).await;
    }
    tally
}

/// One SMTP session; `Ok(false)` when the login was refused with "try again later".
async fn submit_session(role: &Role, session: usize, tally: &mut Tally) -> Io<bool> {
    let mut conn = Conn::open(role.source, role.addr).await?;
    expect(&conn.smtp_reply().await?, "220 ", "greeting")?;
    conn.send(format!("EHLO soak-{}.test\r\n", role.id).as_bytes())
        .await?;
    expect(&conn.smtp_reply().await?, "250 ", "EHLO")?;
    let token = match &role.token {
        TokenKind::Fresh => token(&role.user, role.id, session),
        TokenKind::Confirmed(token) => token.clone(),
    };
    conn.send(format!("AUTH XOAUTH2 {}\r\n", xoauth2(&role.user, &token)).as_bytes())
        .await?;
    tally.logins += 1;
    let reply = conn.smtp_reply().await?;
    if reply.starts_with("454 4.7.0") {
        tally.try_later += 1;
        conn.send(b"QUIT\r\n").await?;
        return Ok(false);
    }
    expect(&reply, "235 ", "AUTH (a good token)")?;
    tally.logged_in += 1;
    for n in 0..PER_SESSION {
        let message = message(role.id, session * PER_SESSION + n);
        for (command, code) in [
            ("MAIL FROM:<alice@example.test>\r\n", "250 "),
            ("RCPT TO:<bob@example.test>\r\n", "250 "),
            ("DATA\r\n", "354 "),
        ] {
            conn.send(command.as_bytes()).await?;
            expect(&conn.smtp_reply().await?, code, command.trim_end())?;
        }
        conn.send(&dot_stuffed(&message)).await?;
        tally.submitted += 1;
        expect(&conn.smtp_reply().await?, "250 ", "end of DATA")?;
        tally.acknowledged.push(message);
    }
    conn.send(b"QUIT\r\n").await?;
    expect(&conn.smtp_reply().await?, "221 ", "QUIT")?;
    Ok(true)
}

/// Runs a fetcher until `role.end`, fetching from `mailbox` (message 1 first).
pub async fn fetcher(role: Role, mailbox: Arc<Vec<Vec<u8>>>) -> Tally {
    let mut tally = Tally::default();
    let mut session = 0usize;
    let mut random = Xorshift::new(role.id as u64);
    while Instant::now() < role.end {
        session += 1;
        let pause = match fetch_session(&role, session, &mailbox, &mut random, &mut tally).await {
            Ok(true) => role.pause,
            Ok(false) => role.pause.max(Duration::from_millis(100)),
            Err(e) => {
                tally.error(format!("fetcher {}: {e}", role.id));
                role.pause.max(Duration::from_millis(100))
            }
        };
        tokio::time::sleep(pause).await;
    }
    tally
}

/// One IMAP session; `Ok(false)` when the login was refused with "try again later".
async fn fetch_session(
    role: &Role,
    session: usize,
    mailbox: &[Vec<u8>],
    random: &mut Xorshift,
    tally: &mut Tally,
) -> Io<bool> {
    let mut conn = Conn::open(role.source, role.addr).await?;
    expect(&conn.line().await?, "* OK", "greeting")?;
    let token = match &role.token {
        TokenKind::Fresh => token(&role.user, role.id, session),
        TokenKind::Confirmed(token) => token.clone(),
    };
    conn.send(format!("a AUTHENTICATE XOAUTH2 {}\r\n", xoauth2(&role.user, &token)).as_bytes())
        .await?;
    tally.logins += 1;
    let reply = conn.tagged("a").await?;
    if reply.starts_with("a NO [UNAVAILABLE]") {
        tally.try_later += 1;
        return Ok(false);
    }
    expect(&reply, "a OK", "AUTHENTICATE (a good token)")?;
    tally.logged_in += 1;
    conn.send(b"b SELECT INBOX\r\n").await?;
    expect(&conn.tagged("b").await?, "b OK", "SELECT")?;
    for _ in 0..PER_SESSION {
        let seq = 1 + (random.next() as usize) % mailbox.len().max(1);
        conn.send(format!("c FETCH {seq} (BODY.PEEK[])\r\n").as_bytes())
            .await?;
        let head = conn.line().await?;
        let size = literal_size(&head).ok_or_else(|| format!("FETCH answered {head:?}"))?;
        let body = conn.bytes(size).await?;
        expect(&conn.line().await?, ")", "end of FETCH")?;
        expect(&conn.tagged("c").await?, "c OK", "FETCH")?;
        if mailbox.get(seq - 1).is_some_and(|want| *want == body) {
            tally.fetched += 1;
        } else {
            tally.corrupted += 1;
        }
    }
    conn.send(b"d LOGOUT\r\n").await?;
    expect(&conn.tagged("d").await?, "d OK", "LOGOUT")?;
    Ok(true)
}

/// The IMAP login a confirmed token makes once while the provider is up.
pub async fn confirm(role: &Role, imap: SocketAddr, token: &str) -> Io<()> {
    let mut conn = Conn::open(role.source, imap).await?;
    expect(&conn.line().await?, "* OK", "greeting")?;
    conn.send(format!("a AUTHENTICATE XOAUTH2 {}\r\n", xoauth2(&role.user, token)).as_bytes())
        .await?;
    expect(&conn.tagged("a").await?, "a OK", "the confirming login")?;
    conn.send(b"b LOGOUT\r\n").await?;
    expect(&conn.tagged("b").await?, "b OK", "LOGOUT")
}

fn expect(line: &str, prefix: &str, what: &str) -> Io<()> {
    if line.starts_with(prefix) {
        return Ok(());
    }
    Err(format!("{what}: {line:?}"))
}

fn literal_size(line: &str) -> Option<usize> {
    let inner = line.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].parse().ok()
}

/// A message of 1 to 64 KiB with what a mail path may get wrong: lines that need
/// dot-stuffing (a lone `.` among them), 8-bit octets that are not UTF-8, a 998-octet line,
/// IMAP- and SMTP-looking lines; unique by its Message-ID.
pub fn message(client: usize, n: usize) -> Vec<u8> {
    let mut random = Xorshift::new(((client as u64) << 32) ^ n as u64);
    let size = 1_024 + (random.next() as usize) % (63 * 1_024);
    let mut message = format!(
        "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\n\
         Subject: soak {client}/{n}\r\nMessage-ID: <{}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        message_id(client, n)
    )
    .into_bytes();
    message.extend_from_slice(b".\r\n..\r\n.leading dot\r\nQUIT\r\n250 OK\r\na LOGOUT\r\n");
    message.extend_from_slice(b"8-bit: \xe9t\xe9 \xfc\xff\x80 \xc3\x28\r\n");
    message.extend_from_slice(&[b'w'; 998]);
    message.extend_from_slice(b"\r\n");
    while message.len() < size {
        let line = format!("{client:04} {n:06} {:016x} .text\r\n", random.next());
        message.extend_from_slice(line.as_bytes());
    }
    message
}

/// The Message-ID of [`message`]`(client, n)`.
pub fn message_id(client: usize, n: usize) -> String {
    format!("soak-{client}-{n}@bench.test")
}

fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(message.len() + 64);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b".") {
            data.push(b'.');
        }
        data.extend_from_slice(line);
    }
    data.extend_from_slice(b".\r\n");
    data
}

/// xorshift64: repeatable message contents and fetch choices.
pub struct Xorshift(u64);

impl Xorshift {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

//! A fake mail store behind the proxy for the soak: an SMTP submission server that keeps
//! every message it accepts, dot-unstuffed (the bytes the client meant), and an IMAP server
//! with one mailbox of fixed messages for FETCH. Just enough of RFC 5321/4954 and RFC 3501
//! for the proxy's backend logins (EHLO and AUTH PLAIN as the master user; ID and LOGIN)
//! and the clients' traffic after them; nothing checks passwords.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use super::backend::read_command;
use super::BenchResult;

const IMAP_GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] soak store ready\r\n";
const SMTP_GREETING: &[u8] = b"220 store.test ESMTP soak store\r\n";
const EHLO_REPLY: &[u8] = b"250-store.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n\
    250-ENHANCEDSTATUSCODES\r\n250-SIZE 104857600\r\n250 AUTH PLAIN\r\n";
/// Longest SMTP line accepted (RFC 5321's 1,000 with room for a token-free AUTH PLAIN).
const MAX_SMTP_LINE: usize = 16 * 1_024;
/// Largest message accepted.
const MAX_MESSAGE: usize = 32 << 20;

#[derive(Debug)]
struct Shared {
    mailbox: Arc<Vec<Vec<u8>>>,
    delivered: Mutex<Vec<Vec<u8>>>,
    imap_logins: AtomicUsize,
    smtp_logins: AtomicUsize,
}

/// The running store.
#[derive(Debug)]
pub struct MailStore {
    imap: SocketAddr,
    smtp: SocketAddr,
    shared: Arc<Shared>,
}

impl MailStore {
    /// Starts both servers; IMAP serves `mailbox` as INBOX, message 1 first.
    pub fn start(runtime: &Handle, mailbox: Vec<Vec<u8>>) -> BenchResult<Self> {
        let shared = Arc::new(Shared {
            mailbox: Arc::new(mailbox),
            delivered: Mutex::new(Vec::new()),
            imap_logins: AtomicUsize::new(0),
            smtp_logins: AtomicUsize::new(0),
        });
        let imap = listen(runtime, Arc::clone(&shared), |stream, shared| async move {
            serve_imap(stream, &shared).await
        })?;
        let smtp = listen(runtime, Arc::clone(&shared), |stream, shared| async move {
            serve_smtp(stream, &shared).await
        })?;
        Ok(Self { imap, smtp, shared })
    }

    pub fn imap_addr(&self) -> SocketAddr {
        self.imap
    }

    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp
    }

    /// The messages of INBOX, as served.
    pub fn mailbox(&self) -> Arc<Vec<Vec<u8>>> {
        Arc::clone(&self.shared.mailbox)
    }

    /// Every message accepted over SMTP so far, in order, dot-unstuffed.
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        self.shared
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logins the proxy made: (IMAP LOGIN, SMTP AUTH).
    pub fn logins(&self) -> (usize, usize) {
        (
            self.shared.imap_logins.load(Ordering::SeqCst),
            self.shared.smtp_logins.load(Ordering::SeqCst),
        )
    }
}

/// Binds a loopback port and serves every connection with `serve` on `runtime`.
fn listen<F, Fut>(runtime: &Handle, shared: Arc<Shared>, serve: F) -> BenchResult<SocketAddr>
where
    F: Fn(TcpStream, Arc<Shared>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    runtime.spawn(async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            return;
        };
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // EMFILE: wait for a slot rather than spin
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            // a reset is how the proxy's sessions often end here
            let task = serve(stream, Arc::clone(&shared));
            tokio::spawn(async move {
                let _ = task.await;
            });
        }
    });
    Ok(addr)
}

async fn serve_imap(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1_024, read);
    write.write_all(IMAP_GREETING).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if !read_command(&mut reader, &mut write, &mut line).await? {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("*").to_owned();
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        let mut reply = Vec::new();
        match command.as_str() {
            "CAPABILITY" => reply.extend_from_slice(b"* CAPABILITY IMAP4rev1 LITERAL+ ID\r\n"),
            "ID" => reply.extend_from_slice(b"* ID NIL\r\n"),
            "LOGIN" => {
                shared.imap_logins.fetch_add(1, Ordering::SeqCst);
                let ok = format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n");
                write.write_all(ok.as_bytes()).await?;
                continue;
            }
            "SELECT" | "EXAMINE" => {
                let n = shared.mailbox.len();
                reply.extend_from_slice(format!("* {n} EXISTS\r\n* 0 RECENT\r\n").as_bytes());
                reply.extend_from_slice(b"* OK [UIDVALIDITY 1] UIDs valid\r\n");
            }
            "FETCH" => {
                let message = words
                    .next()
                    .and_then(|seq| seq.parse::<usize>().ok())
                    .and_then(|seq| Some((seq, shared.mailbox.get(seq.checked_sub(1)?)?)));
                let Some((seq, message)) = message else {
                    let bad = format!("{tag} BAD No such message\r\n");
                    write.write_all(bad.as_bytes()).await?;
                    continue;
                };
                reply.extend_from_slice(
                    format!("* {seq} FETCH (BODY[] {{{}}}\r\n", message.len()).as_bytes(),
                );
                reply.extend_from_slice(message);
                reply.extend_from_slice(b")\r\n");
            }
            "NOOP" => {}
            "LOGOUT" => {
                let bye = format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n");
                write.write_all(bye.as_bytes()).await?;
                write.shutdown().await?;
                return Ok(());
            }
            _ => {
                let bad = format!("{tag} BAD unknown command\r\n");
                write.write_all(bad.as_bytes()).await?;
                continue;
            }
        }
        reply.extend_from_slice(format!("{tag} OK {command} completed\r\n").as_bytes());
        write.write_all(&reply).await?;
    }
}

async fn serve_smtp(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1_024, read);
    write.write_all(SMTP_GREETING).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        if !read_smtp_line(&mut reader, &mut line).await? {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let verb = text
            .split_ascii_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => EHLO_REPLY,
            "HELO" => b"250 store.test\r\n",
            "AUTH" => {
                if text.split_ascii_whitespace().nth(2).is_none() {
                    // AUTH PLAIN without an initial response: take the next line.
                    write.write_all(b"334 \r\n").await?;
                    if !read_smtp_line(&mut reader, &mut line).await? {
                        return Ok(());
                    }
                }
                shared.smtp_logins.fetch_add(1, Ordering::SeqCst);
                b"235 2.7.0 Authentication successful\r\n"
            }
            "MAIL" => b"250 2.1.0 Ok\r\n",
            "RCPT" => b"250 2.1.5 Ok\r\n",
            "DATA" => {
                write
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let Some(message) = read_data(&mut reader, &mut line).await? else {
                    return Ok(());
                };
                shared
                    .delivered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(message);
                b"250 2.0.0 Ok: queued\r\n"
            }
            "RSET" | "NOOP" => b"250 2.0.0 Ok\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                write.shutdown().await?;
                return Ok(());
            }
            _ => b"502 5.5.2 Error: command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// One line, CRLF included, into `line`; false when the peer closed.
async fn read_smtp_line(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    line.clear();
    let n = (&mut *reader)
        .take(MAX_SMTP_LINE as u64)
        .read_until(b'\n', line)
        .await?;
    if n == MAX_SMTP_LINE && !line.ends_with(b"\n") {
        return Err(std::io::Error::other("SMTP line too long"));
    }
    Ok(n > 0)
}

/// The message after DATA up to the lone `.`, dot-unstuffed; `None` when the peer closed.
async fn read_data(
    reader: &mut BufReader<OwnedReadHalf>,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    loop {
        if !read_smtp_line(reader, line).await? {
            return Ok(None);
        }
        if line.as_slice() == b".\r\n" {
            return Ok(Some(message));
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(line);
        message.extend_from_slice(unstuffed);
        if message.len() > MAX_MESSAGE {
            return Err(std::io::Error::other("message too large"));
        }
    }
}

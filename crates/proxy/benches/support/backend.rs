//! A fake IMAP backend: just enough of RFC 3501 for the proxy's login (greeting with
//! capabilities, `ID`, `LOGIN`) and for the bench's traffic after it (`NOOP`, `LOGOUT`), plus
//! two bench-only commands that switch the connection to raw bytes:
//!
//! * `tag SINK n`: the next `n` bytes are read and discarded, then `tag OK`;
//! * `tag SOURCE n`: `n` bytes are written, then `tag OK`.
//!
//! The direct baseline talks to the same backend, so both paths pay the same server cost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use super::BenchResult;

const GREETING: &[u8] = b"* OK [CAPABILITY IMAP4rev1 LITERAL+ ID] ready\r\n";
/// Read buffer per connection; large so SINK drains the socket in few system calls.
const READ_BUFFER: usize = 64 * 1_024;
/// What SOURCE writes per call.
const SOURCE_CHUNK: usize = 256 * 1_024;
/// Longest command line accepted (a bench peer never comes close).
const MAX_LINE: usize = 64 * 1_024;

/// The running backend.
#[derive(Debug)]
pub struct FakeBackend {
    addr: SocketAddr,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// Connections that completed LOGIN and have not closed yet.
    logged_in: AtomicUsize,
}

impl FakeBackend {
    pub fn start(runtime: &Handle) -> BenchResult<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let shared = Arc::clone(&counters);
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
                let counters = Arc::clone(&shared);
                tokio::spawn(async move {
                    let mut logged_in = false;
                    // a reset is how clients of this bench often leave
                    let _ = serve(stream, &counters, &mut logged_in).await;
                    if logged_in {
                        counters.logged_in.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        Ok(Self { addr, counters })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections logged in and still open.
    pub fn logged_in(&self) -> usize {
        self.counters.logged_in.load(Ordering::SeqCst)
    }

    /// Waits until exactly `want` connections are logged in and open.
    pub fn wait_for_logged_in(&self, want: usize, deadline: Duration) -> BenchResult<()> {
        let end = Instant::now() + deadline;
        while self.logged_in() != want {
            if Instant::now() > end {
                return Err(format!(
                    "backend has {} logged-in connections after {deadline:?}, want {want}",
                    self.logged_in()
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

async fn serve(
    stream: TcpStream,
    counters: &Counters,
    logged_in: &mut bool,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::with_capacity(READ_BUFFER, read);
    write.write_all(GREETING).await?;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if !read_command(&mut reader, &mut write, &mut line).await? {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("*");
        let command = words.next().unwrap_or("").to_ascii_uppercase();
        let reply = match command.as_str() {
            "NOOP" => format!("{tag} OK NOOP completed\r\n"),
            "CAPABILITY" => {
                format!("* CAPABILITY IMAP4rev1 LITERAL+ ID\r\n{tag} OK CAPABILITY completed\r\n")
            }
            "ID" => format!("* ID NIL\r\n{tag} OK ID completed\r\n"),
            "LOGIN" if !*logged_in => {
                *logged_in = true;
                counters.logged_in.fetch_add(1, Ordering::SeqCst);
                format!("{tag} OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n")
            }
            "LOGOUT" => {
                let bye = format!("* BYE logging out\r\n{tag} OK LOGOUT completed\r\n");
                write.write_all(bye.as_bytes()).await?;
                write.shutdown().await?;
                return Ok(());
            }
            "SINK" => {
                let n = size(words.next())?;
                let copied =
                    tokio::io::copy_buf(&mut (&mut reader).take(n), &mut tokio::io::sink()).await?;
                if copied != n {
                    return Ok(());
                }
                format!("{tag} OK SINK completed\r\n")
            }
            "SOURCE" => {
                let n = size(words.next())?;
                source(&mut write, n).await?;
                format!("{tag} OK SOURCE completed\r\n")
            }
            _ => format!("{tag} BAD unknown command\r\n"),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

/// Reads one command line with its literals (`{n}` after a `+` continuation, `{n+}` without)
/// into `line`. False when the peer closed. (Also the soak's mail store's, `mailstore.rs`.)
pub(crate) async fn read_command(
    reader: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    line: &mut Vec<u8>,
) -> std::io::Result<bool> {
    loop {
        if reader.read_until(b'\n', line).await? == 0 {
            return Ok(false);
        }
        if line.len() > MAX_LINE {
            return Err(std::io::Error::other("command line too long"));
        }
        let Some((length, synchronizing)) = literal_announcement(line) else {
            return Ok(true);
        };
        if synchronizing {
            write.write_all(b"+ go ahead\r\n").await?;
        }
        let start = line.len();
        line.resize(start + length, 0);
        reader.read_exact(&mut line[start..]).await?;
    }
}

/// `{n}` or `{n+}` at the end of a line: the literal's length and whether it needs a `+`.
fn literal_announcement(line: &[u8]) -> Option<(usize, bool)> {
    let body = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let body = body.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let inner = &body[open + 1..];
    let (digits, synchronizing) = match inner.strip_suffix(b"+") {
        Some(digits) => (digits, false),
        None => (inner, true),
    };
    let length = std::str::from_utf8(digits).ok()?.parse().ok()?;
    (length <= MAX_LINE).then_some((length, synchronizing))
}

fn size(word: Option<&str>) -> std::io::Result<u64> {
    word.and_then(|w| w.parse().ok())
        .ok_or_else(|| std::io::Error::other("SINK/SOURCE needs a byte count"))
}

async fn source(write: &mut OwnedWriteHalf, mut remaining: u64) -> std::io::Result<()> {
    let chunk = vec![b'x'; SOURCE_CHUNK];
    while remaining > 0 {
        let n = remaining.min(SOURCE_CHUNK as u64) as usize;
        write.write_all(&chunk[..n]).await?;
        remaining -= n as u64;
    }
    Ok(())
}

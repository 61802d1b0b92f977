//! A flood of short-lived IMAP connections, as an attack run makes them: a wave of many at
//! once, each from one of many loopback source addresses (so the proxy's per-address
//! pre-login cap is not what stops them), reading the greeting and making one `AUTHENTICATE`
//! that succeeds or fails; every connection of the wave is held until the whole wave is in,
//! then all close together. Async (tokio) rather than the blocking client: thousands of
//! connections are open at once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::BenchResult;

/// Source addresses the flood comes from: 127.77.0.1 onwards (all of 127/8 is loopback).
/// A wave of 7,500 puts two connections on each, far under `max_prelogin_per_address`.
const SOURCE_ADDRESSES: usize = 4_096;
/// No connection of the flood should take this long to log in.
const LOGIN_DEADLINE: Duration = Duration::from_secs(30);
/// Longest line a flood connection reads (the proxy's are short).
const MAX_LINE: usize = 4_096;

/// What one wave should do.
#[derive(Debug, Clone)]
pub struct Wave {
    pub target: SocketAddr,
    /// Index of the wave's first connection in the whole flood: picks source addresses and
    /// the names the failing logins claim, so waves do not repeat each other.
    pub first: usize,
    pub connections: usize,
    /// Connections connecting or logging in at once; the rest of the wave waits its turn,
    /// so the listener's accept backlog never overflows into SYN retransmits.
    pub in_flight: usize,
    /// The XOAUTH2 initial response of the logins that succeed.
    pub good: Arc<str>,
    /// The token of that response: a failing login claims another user with it, which the
    /// proxy refuses from its cache without asking the identity provider.
    pub token: Arc<str>,
    /// One connection in this many fails its login (1: all fail).
    pub fail_every: usize,
}

/// A wave that is in: every connection has its answer and is still open.
#[derive(Debug)]
pub struct Held {
    /// The connections, open; dropping them closes them all.
    pub streams: Vec<TcpStream>,
    pub logged_in: usize,
    pub refused: usize,
    /// From the first connect to the last answer.
    pub elapsed: Duration,
}

impl Wave {
    /// Opens the wave's connections and logs each in (or fails it); returns them open.
    pub async fn run(&self) -> BenchResult<Held> {
        let started = Instant::now();
        let permits = Arc::new(Semaphore::new(self.in_flight.max(1)));
        let mut tasks = JoinSet::new();
        for index in self.first..self.first + self.connections {
            let permit = Arc::clone(&permits).acquire_owned().await?;
            let target = self.target;
            let response: Arc<str> = if index % self.fail_every.max(1) == 0 {
                Arc::from(failing_response(&self.token, index))
            } else {
                Arc::clone(&self.good)
            };
            tasks.spawn(async move {
                let outcome =
                    tokio::time::timeout(LOGIN_DEADLINE, login(target, index, &response)).await;
                drop(permit);
                match outcome {
                    Ok(Ok(done)) => Ok(done),
                    Ok(Err(e)) => Err(format!("flood connection {index}: {e}")),
                    Err(_) => Err(format!(
                        "flood connection {index}: no answer within {LOGIN_DEADLINE:?}"
                    )),
                }
            });
        }
        let mut held = Held {
            streams: Vec::with_capacity(self.connections),
            logged_in: 0,
            refused: 0,
            elapsed: Duration::ZERO,
        };
        while let Some(joined) = tasks.join_next().await {
            let (stream, accepted) = joined??;
            held.streams.push(stream);
            if accepted {
                held.logged_in += 1;
            } else {
                held.refused += 1;
            }
        }
        held.elapsed = started.elapsed();
        Ok(held)
    }
}

/// The source address of the flood's `index`-th connection.
fn source_address(index: usize) -> IpAddr {
    let n = (index % SOURCE_ADDRESSES + 1) as u32;
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 77, 0, 0)) + n))
}

/// An XOAUTH2 initial response that claims `guess<index>` with a token issued to `alice`:
/// refused, and a different name each time, as a password spray makes them.
fn failing_response(token: &str, index: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(format!("user=guess{index}\x01auth=Bearer {token}\x01\x01"))
}

/// Connects from the connection's source address, reads the greeting, authenticates;
/// answers the open stream and whether the login succeeded.
async fn login(
    target: SocketAddr,
    index: usize,
    initial_response: &str,
) -> BenchResult<(TcpStream, bool)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source_address(index), 0))?;
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    read_line(&mut reader, &mut line).await?;
    if !line.starts_with("* OK") {
        return Err(format!("greeting {:?}", line.trim_end()).into());
    }
    reader
        .get_mut()
        .write_all(format!("a AUTHENTICATE XOAUTH2 {initial_response}\r\n").as_bytes())
        .await?;
    loop {
        read_line(&mut reader, &mut line).await?;
        if line.starts_with("+ ") || line.trim_end() == "+" {
            // XOAUTH2 sends its error as a challenge; the empty answer ends the exchange.
            reader.get_mut().write_all(b"\r\n").await?;
        } else if let Some(status) = line.strip_prefix("a ") {
            let accepted = status.starts_with("OK");
            if !accepted && !status.starts_with("NO") {
                return Err(format!("login answered {:?}", line.trim_end()).into());
            }
            return Ok((reader.into_inner(), accepted));
        }
    }
}

async fn read_line(reader: &mut BufReader<TcpStream>, line: &mut String) -> BenchResult<()> {
    line.clear();
    if reader.read_line(line).await? == 0 {
        return Err("connection closed".into());
    }
    if line.len() > MAX_LINE {
        return Err("line too long".into());
    }
    Ok(())
}

/// Descriptors process `pid` has open (entries of `/proc/PID/fd`): the proxy's connections
/// are all closed when this is back where it was before the flood.
pub fn open_descriptors(pid: u32) -> BenchResult<usize> {
    Ok(std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("fd"))?.count())
}

//! A blocking IMAP client: one thread, plain `std` sockets, so the client adds as little as
//! possible to what is measured and the same code drives the proxy and the direct baseline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::BenchResult;

/// No step of the bench should take this long; a hang becomes an error instead.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes per read or write call in the throughput tests.
const BULK_CHUNK: usize = 256 * 1_024;

#[derive(Debug)]
pub struct Client {
    reader: BufReader<TcpStream>,
    line: String,
}

impl Client {
    /// Connects and reads the greeting.
    pub fn connect(addr: SocketAddr) -> BenchResult<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut client = Self {
            reader: BufReader::with_capacity(BULK_CHUNK, stream),
            line: String::with_capacity(256),
        };
        client.read_line()?;
        if !client.line.starts_with("* OK") {
            return Err(format!("greeting {:?}", client.line.trim_end()).into());
        }
        Ok(client)
    }

    /// `a AUTHENTICATE XOAUTH2 <initial response>` (SASL-IR), as through the proxy.
    pub fn authenticate(addr: SocketAddr, initial_response: &str) -> BenchResult<Self> {
        let mut client = Self::connect(addr)?;
        client.command("a", &format!("AUTHENTICATE XOAUTH2 {initial_response}"))?;
        Ok(client)
    }

    /// `a LOGIN user password`, as the direct baseline logs in.
    pub fn login(addr: SocketAddr) -> BenchResult<Self> {
        let mut client = Self::connect(addr)?;
        client.command("a", "LOGIN alice secret")?;
        Ok(client)
    }

    /// `tag NOOP` and its tagged OK: one round trip.
    pub fn noop(&mut self) -> BenchResult<()> {
        self.command("n", "NOOP")
    }

    /// `b LOGOUT`, then the untagged BYE and tagged OK.
    pub fn logout(mut self) -> BenchResult<()> {
        self.command("b", "LOGOUT")
    }

    /// Sends `bytes` raw bytes for the backend to discard; returns when it confirmed them all.
    pub fn upload(&mut self, bytes: u64) -> BenchResult<()> {
        self.send(&format!("u SINK {bytes}\r\n"))?;
        let chunk = vec![b'y'; BULK_CHUNK];
        let mut remaining = bytes;
        while remaining > 0 {
            let n = remaining.min(BULK_CHUNK as u64) as usize;
            self.reader.get_mut().write_all(&chunk[..n])?;
            remaining -= n as u64;
        }
        self.until_tagged("u")
    }

    /// Asks the backend for `bytes` raw bytes and reads them all, then the tagged OK.
    pub fn download(&mut self, bytes: u64) -> BenchResult<()> {
        self.send(&format!("d SOURCE {bytes}\r\n"))?;
        let mut chunk = vec![0; BULK_CHUNK];
        let mut remaining = bytes;
        while remaining > 0 {
            let want = remaining.min(BULK_CHUNK as u64) as usize;
            let n = self.reader.read(&mut chunk[..want])?;
            if n == 0 {
                return Err("connection closed during the download".into());
            }
            remaining -= n as u64;
        }
        self.until_tagged("d")
    }

    fn command(&mut self, tag: &str, command: &str) -> BenchResult<()> {
        self.send(&format!("{tag} {command}\r\n"))?;
        self.until_tagged(tag)
    }

    fn send(&mut self, text: &str) -> BenchResult<()> {
        self.reader.get_mut().write_all(text.as_bytes())?;
        Ok(())
    }

    /// Reads lines until the one tagged `tag`, which must be OK.
    fn until_tagged(&mut self, tag: &str) -> BenchResult<()> {
        loop {
            self.read_line()?;
            let Some(rest) = self
                .line
                .strip_prefix(tag)
                .and_then(|rest| rest.strip_prefix(' '))
            else {
                continue;
            };
            if rest.starts_with("OK") {
                return Ok(());
            }
            return Err(format!("{tag}: {}", self.line.trim_end()).into());
        }
    }

    fn read_line(&mut self) -> BenchResult<()> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err("connection closed".into());
        }
        Ok(())
    }
}

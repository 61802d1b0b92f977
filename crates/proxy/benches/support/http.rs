//! A blocking HTTP/1.1 keep-alive client over one `std` socket, and a driver that runs
//! several such clients (or any other steps) at once and times them.
//!
//! Raw HTTP/1.1 on purpose: a request is one `write`, a response is a status line, headers
//! and a `Content-Length` body, so the client spends next to nothing of the two CPUs the
//! server under test shares with it, and the same code drives every endpoint.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use super::BenchResult;

/// No request of the bench should take this long; a hang becomes an error instead.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted (metadata and token answers are 1–2 KiB).
const MAX_BODY: usize = 1 << 20;

/// One keep-alive connection.
#[derive(Debug)]
pub struct HttpClient {
    reader: BufReader<TcpStream>,
    host: String,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl HttpClient {
    pub fn connect(addr: SocketAddr) -> BenchResult<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Self {
            reader: BufReader::with_capacity(16 * 1_024, stream),
            host: addr.to_string(),
            request: Vec::with_capacity(1_024),
            line: String::with_capacity(256),
            body: Vec::with_capacity(4_096),
        })
    }

    /// `GET path`: the status and the body.
    pub fn get(&mut self, path: &str) -> BenchResult<(u16, &[u8])> {
        self.request.clear();
        write!(
            self.request,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\r\n",
            self.host
        )?;
        self.exchange()
    }

    /// `POST path` with an `application/x-www-form-urlencoded` body.
    pub fn post_form(&mut self, path: &str, form: &str) -> BenchResult<(u16, &[u8])> {
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            self.host,
            form.len()
        )?;
        self.exchange()
    }

    /// Sends the request in one write and reads the whole response.
    fn exchange(&mut self) -> BenchResult<(u16, &[u8])> {
        self.reader.get_mut().write_all(&self.request)?;
        self.read_line()?;
        let status = self
            .line
            .split_ascii_whitespace()
            .nth(1)
            .and_then(|code| code.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {:?}", self.line.trim_end()))?;
        let mut length = None;
        loop {
            self.read_line()?;
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse::<usize>()?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!("unexpected Transfer-Encoding: {}", value.trim()).into());
            }
        }
        let length = length.ok_or("response without Content-Length")?;
        if length > MAX_BODY {
            return Err(format!("response body of {length} bytes").into());
        }
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body)?;
        Ok((status, &self.body))
    }

    fn read_line(&mut self) -> BenchResult<()> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }
}

/// `application/x-www-form-urlencoded` of `pairs` (RFC 3986 unreserved characters kept).
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(256);
    for (index, (name, value)) in pairs.iter().enumerate() {
        if index > 0 {
            out.push('&');
        }
        percent_encode(name, &mut out);
        out.push('=');
        percent_encode(value, &mut out);
    }
    out
}

fn percent_encode(text: &str, out: &mut String) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

/// Runs every worker on its own thread, `steps` calls each, all starting together; the wall
/// time from the start until the last finished. Stops at the first error. Workers are
/// borrowed, so a warm-up and the measured run can share them.
pub fn drive<W>(workers: &mut [W], steps: usize) -> BenchResult<Duration>
where
    W: FnMut() -> BenchResult<()> + Send,
{
    let start = Barrier::new(workers.len() + 1);
    thread::scope(|scope| {
        let running: Vec<_> = workers
            .iter_mut()
            .map(|worker| {
                let start = &start;
                scope.spawn(move || -> BenchResult<()> {
                    start.wait();
                    for _ in 0..steps {
                        worker()?;
                    }
                    Ok(())
                })
            })
            .collect();
        start.wait();
        let started = Instant::now();
        for handle in running {
            handle.join().map_err(|_| "a load thread panicked")??;
        }
        Ok(started.elapsed())
    })
}

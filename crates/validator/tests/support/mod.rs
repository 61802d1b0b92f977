//! A small in-process HTTP/1.1 introspection endpoint: parses requests just enough to read
//! the headers and body, counts them, and answers what the test tells it to.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// One request as the endpoint saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `token` form parameter, percent-decoded.
    pub fn token(&self) -> String {
        let raw = self
            .body
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .unwrap_or_default();
        form_decode(raw)
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status and a body sent as `application/json` (whether or not it is JSON).
    Json(u16, String),
    /// A 200 JSON body with this `Cache-Control` header.
    Cached(String, String),
    /// A redirect to `location`.
    Redirect(String),
    /// Never answer.
    Hang,
}

impl Reply {
    pub fn ok(json: serde_json::Value) -> Self {
        Self::Json(200, json.to_string())
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    count: AtomicUsize,
    log: Mutex<Vec<Request>>,
    arrived: Notify,
    /// When set, each answer waits for one permit.
    gate: Option<Semaphore>,
}

/// The fake endpoint. Dropping it stops the server and its connections.
pub struct FakeIdp {
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeIdp {
    pub async fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(handler, false).await
    }

    /// Like [`FakeIdp::start`], but every answer is held until [`FakeIdp::release`].
    pub async fn start_held(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(handler, true).await
    }

    async fn start_with(
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
        held: bool,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            count: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            gate: held.then(|| Semaphore::new(0)),
        });
        let task = tokio::spawn(serve(listener, Arc::clone(&shared)));
        Self { url, shared, task }
    }

    /// Requests fully received so far.
    pub fn count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Resolves once a request has arrived (immediately if one arrived since the last call).
    pub async fn arrived(&self) {
        self.shared.arrived.notified().await;
    }

    /// Lets `n` held answers go.
    pub fn release(&self, n: usize) {
        if let Some(gate) = &self.shared.gate {
            gate.add_permits(n);
        }
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    // Owned here so that aborting the server also aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        connections.spawn(connection(stream, Arc::clone(&shared)));
    }
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        shared.count.fetch_add(1, Ordering::SeqCst);
        shared.log.lock().unwrap().push(request.clone());
        shared.arrived.notify_one();
        if let Some(gate) = &shared.gate {
            gate.acquire().await.unwrap().forget();
        }
        let response = match (shared.handler)(&request) {
            Reply::Json(status, body) => format!(
                "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            Reply::Cached(body, cache_control) => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Cache-Control: {cache_control}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            Reply::Redirect(location) => format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            ),
            Reply::Hang => std::future::pending().await,
        };
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        read_more(stream, buf).await?;
    };
    let head = String::from_utf8(buf[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buf.len() < body_start + length {
        read_more(stream, buf).await?;
    }
    let body = String::from_utf8(buf[body_start..body_start + length].to_vec()).ok()?;
    buf.drain(..body_start + length);
    Some(Request {
        method,
        path,
        headers,
        body,
    })
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buf.extend_from_slice(&chunk[..n]);
    Some(())
}

fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// Seconds since the epoch, for `exp`/`nbf`.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A loopback URL nothing listens on: connections are refused.
pub async fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/introspect")
}

pub const SHORT: Duration = Duration::from_millis(200);

//! A fake identity provider: an RFC 7662 token introspection endpoint on a loopback port, run
//! on its own thread and runtime so tests may block freely (curl, Python) while it answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::{b64, random_token, unix_now};

pub const CLIENT_ID: &str = "bearergate";
pub const CLIENT_SECRET: &str = "introsecret";
pub const PATH: &str = "/introspect";
const MAX_REQUEST: usize = 64 * 1024;

/// How the endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdpMode {
    /// Answer from the token table.
    Normal,
    /// `503 Service Unavailable` to every request.
    Unavailable,
    /// Accept and read the request, never answer (for the proxy's timeout).
    Stall,
    /// From `since`, [`IdpMode::Normal`] for `up`, then `500 Internal Server Error` for
    /// `down`, over and over: a flapping provider on a schedule the IdP keeps itself.
    Flapping {
        up: Duration,
        down: Duration,
        since: Instant,
    },
    /// `200 OK` with JSON that is not an RFC 7662 answer (`{"active": "yes"}`).
    Malformed,
}

impl IdpMode {
    /// Flapping from now on; see [`IdpMode::Flapping`].
    pub fn flapping(up: Duration, down: Duration) -> Self {
        Self::Flapping {
            up,
            down,
            since: Instant::now(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    tokens: HashMap<String, Value>,
    mode: Option<IdpMode>,
    /// Requests that broke the introspection contract (no Basic auth, no token, …).
    errors: Vec<String>,
}

/// The running endpoint; [`Idp::shutdown`] (or drop) closes the port so connections are refused.
#[derive(Debug)]
pub struct Idp {
    port: u16,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Idp {
    pub fn start() -> Self {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake IdP listener");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking IdP listener");
        let port = std_listener.local_addr().expect("IdP address").port();
        let state = Arc::new(Mutex::new(State {
            mode: Some(IdpMode::Normal),
            ..State::default()
        }));
        let requests = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = oneshot::channel();
        let thread = {
            let state = Arc::clone(&state);
            let requests = Arc::clone(&requests);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("IdP runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("tokio IdP listener");
                    serve(listener, state, requests, stopped).await;
                });
                // dropping the runtime drops the listener and every open connection
            })
        };
        Self {
            port,
            state,
            requests,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The introspection URL for the proxy's `[validator] introspection_url`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{PATH}", self.port)
    }

    /// Number of HTTP requests received so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests that did not follow RFC 7662 as the proxy must (empty when all is well).
    pub fn protocol_errors(&self) -> Vec<String> {
        self.lock().errors.clone()
    }

    pub fn set_mode(&self, mode: IdpMode) {
        self.lock().mode = Some(mode);
    }

    /// A new active token for `user` with the usual claims, scope `mail openid`, one hour left.
    pub fn issue(&self, user: &str) -> String {
        self.issue_with(user, |_| {})
    }

    /// A new token for `user` whose introspection answer `edit` may change (e.g. set
    /// `active` false, `exp` in the past, another `scope`).
    pub fn issue_with(&self, user: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let token = random_token();
        let now = unix_now();
        let mut claims = json!({
            "active": true,
            "username": user,
            "sub": format!("sub-{user}"),
            "scope": "mail openid",
            "client_id": "thunderbird",
            "token_type": "Bearer",
            "iat": now - 60,
            "exp": now + 3600,
        });
        if let Value::Object(map) = &mut claims {
            edit(map);
        }
        self.lock().tokens.insert(token.clone(), claims);
        token
    }

    /// Like [`Idp::issue`], but the token is exactly `len` characters of the b64token
    /// alphabet, as from providers whose access tokens are large signed JWTs.
    pub fn issue_sized(&self, user: &str, len: usize) -> String {
        let short = self.issue(user);
        let mut state = self.lock();
        let claims = state.tokens.remove(&short).expect("token just issued");
        let mut token = short;
        while token.len() < len {
            token.push_str(&random_token()[41..]);
        }
        token.truncate(len);
        state.tokens.insert(token.clone(), claims);
        token
    }

    /// Stop listening: later connections to the port are refused.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("IdP thread panicked");
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("IdP state lock poisoned")
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicUsize>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                let requests = Arc::clone(&requests);
                tokio::spawn(async move {
                    // a broken connection is the client's business; the test sees its effect
                    let _ = handle(stream, state, requests).await;
                });
            }
        }
    }
}

/// One request per connection, answered with `Connection: close`.
async fn handle(
    mut stream: TcpStream,
    state: Arc<Mutex<State>>,
    requests: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let Some((head, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    requests.fetch_add(1, Ordering::SeqCst);
    let mode = state
        .lock()
        .expect("IdP state lock poisoned")
        .mode
        .unwrap_or(IdpMode::Normal);
    let (status, answer) = match mode {
        IdpMode::Stall => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return Ok(());
        }
        IdpMode::Unavailable => (
            "503 Service Unavailable",
            json!({"error": "temporarily_unavailable"}),
        ),
        IdpMode::Flapping { up, down, since }
            if since.elapsed().as_nanos() % (up + down).as_nanos() >= up.as_nanos() =>
        {
            (
                "500 Internal Server Error",
                json!({"error": "server_error"}),
            )
        }
        IdpMode::Malformed => ("200 OK", json!({"active": "yes"})),
        IdpMode::Normal | IdpMode::Flapping { .. } => {
            let mut state = state.lock().expect("IdP state lock poisoned");
            match check_request(&head, &body) {
                Err(problem) => {
                    state.errors.push(problem);
                    ("401 Unauthorized", json!({"error": "invalid_client"}))
                }
                Ok(token) => (
                    "200 OK",
                    state
                        .tokens
                        .get(&token)
                        .cloned()
                        .unwrap_or_else(|| json!({"active": false})),
                ),
            }
        }
    };
    let body = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Headers (as text) and body, or `None` if the peer closed before a whole request.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_REQUEST {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length && body.len() <= MAX_REQUEST {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}

/// The token of a well-formed introspection request, or what is wrong with it.
fn check_request(head: &str, body: &[u8]) -> Result<String, String> {
    let request_line = head.lines().next().unwrap_or_default();
    if !request_line.starts_with(&format!("POST {PATH} ")) {
        return Err(format!("request line {request_line:?}, want POST {PATH}"));
    }
    let want_auth = format!("Basic {}", b64(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    match header(head, "authorization") {
        Some(auth) if auth == want_auth => {}
        other => return Err(format!("Authorization {other:?}, want {want_auth:?}")),
    }
    let content_type = header(head, "content-type").unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err(format!("Content-Type {content_type:?}"));
    }
    let form = String::from_utf8_lossy(body);
    form.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "token")
        .map(|(_, value)| form_decode(value))
        .ok_or_else(|| format!("no token field in body {form:?}"))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space, `%XX` a byte).
fn form_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

//! A fake RFC 7662 introspection endpoint that flaps: every token is active (with an `exp`
//! an hour ahead, so `keep_confirmed_tokens` may keep it) while the endpoint is up, and
//! every request gets HTTP 500 while it is down. A token `soak.USER.…` belongs to `USER`,
//! any other to `alice`. It starts up; once
//! [`FlappingIdp::start_flapping`] is called it keeps its own schedule, up for `up`, then
//! down for `down`, over and over, and counts the requests of each half.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use super::idp::read_request;
use super::{unix_now, BenchResult};

#[derive(Debug, Default)]
struct Shared {
    /// When flapping started, and its half-periods; `None`: always up.
    schedule: Mutex<Option<(Instant, Duration, Duration)>>,
    answered_up: AtomicUsize,
    answered_down: AtomicUsize,
}

impl Shared {
    fn is_up(&self, now: Instant) -> bool {
        let schedule = *self.schedule.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((since, up, down)) = schedule else {
            return true;
        };
        let period = (up + down).as_nanos().max(1);
        now.saturating_duration_since(since).as_nanos() % period < up.as_nanos()
    }
}

/// The running endpoint.
#[derive(Debug)]
pub struct FlappingIdp {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FlappingIdp {
    pub fn start(runtime: &Handle) -> BenchResult<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let state = Arc::clone(&shared);
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    // a broken connection shows up as an unavailable provider in the bench
                    let _ = serve(stream, &state).await;
                });
            }
        });
        Ok(Self { addr, shared })
    }

    pub fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// From now on: up for `up`, then HTTP 500 for `down`, and again.
    pub fn start_flapping(&self, up: Duration, down: Duration) {
        *self
            .shared
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), up, down));
    }

    /// Back to always up.
    pub fn stop_flapping(&self) {
        *self
            .shared
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Requests answered while up (200) and while down (500).
    pub fn requests(&self) -> (usize, usize) {
        (
            self.shared.answered_up.load(Ordering::SeqCst),
            self.shared.answered_down.load(Ordering::SeqCst),
        )
    }
}

/// Answers requests on one keep-alive connection until the client closes it.
async fn serve(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(4_096);
    loop {
        let Some(consumed) = read_request(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        let user = user_of(&buffer[..consumed]);
        buffer.drain(..consumed);
        let response = if shared.is_up(Instant::now()) {
            shared.answered_up.fetch_add(1, Ordering::SeqCst);
            let body = format!(
                r#"{{"active":true,"username":"{user}","scope":"mail","token_type":"Bearer","client_id":"soak","exp":{}}}"#,
                unix_now() + 3_600
            );
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\n\r\n{body}",
                body.len()
            )
        } else {
            shared.answered_down.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"error":"temporarily_unavailable"}"#;
            format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        stream.write_all(response.as_bytes()).await?;
    }
}

/// The user a token in the request's form body belongs to: `token=soak.USER.…` names it
/// (letters and digits only), anything else is alice's.
fn user_of(request: &[u8]) -> String {
    let text = String::from_utf8_lossy(request);
    let user = text
        .split(['&', '\n'])
        .find_map(|pair| pair.trim().strip_prefix("token=soak."))
        .and_then(|rest| rest.split('.').next())
        .filter(|user| !user.is_empty() && user.bytes().all(|b| b.is_ascii_alphanumeric()));
    user.unwrap_or("alice").to_owned()
}

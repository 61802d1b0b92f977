//! A fake RFC 7662 introspection endpoint: every token is active for `alice`. It counts
//! requests so the bench can show that logins after the first were answered from the cache.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;

use super::{unix_now, BenchResult};

/// Largest request accepted; the proxy's are well under 2 KiB.
const MAX_REQUEST: usize = 64 * 1_024;

/// The running endpoint.
#[derive(Debug)]
pub struct FakeIdp {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
}

impl FakeIdp {
    pub fn start(runtime: &Handle) -> BenchResult<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        runtime.spawn(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // a broken connection shows up as a failed login in the bench
                    let _ = serve(stream, counter).await;
                });
            }
        });
        Ok(Self { addr, requests })
    }

    pub fn url(&self) -> String {
        format!("http://{}/introspect", self.addr)
    }

    /// Introspection requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Answers requests on one keep-alive connection until the client closes it.
async fn serve(mut stream: TcpStream, requests: Arc<AtomicUsize>) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(4_096);
    loop {
        let Some(consumed) = read_request(&mut stream, &mut buffer).await? else {
            return Ok(());
        };
        buffer.drain(..consumed);
        requests.fetch_add(1, Ordering::SeqCst);
        let body = format!(
            r#"{{"active":true,"username":"alice","scope":"mail","token_type":"Bearer","exp":{}}}"#,
            unix_now() + 3_600
        );
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
}

/// Reads one whole request into `buffer`; returns its length, or `None` when the peer closed.
/// (Also the flapping endpoint's, `flapping_idp.rs`.)
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    let mut chunk = [0u8; 4_096];
    loop {
        if let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..head_end]);
            let length = content_length(&head);
            let total = head_end + 4 + length;
            if buffer.len() >= total {
                return Ok(Some(total));
            }
        }
        if buffer.len() > MAX_REQUEST {
            return Err(std::io::Error::other("request too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .skip(1)
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

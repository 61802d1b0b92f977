//! A small OpenID userinfo endpoint (GET with `Authorization: Bearer`) and a Google-style
//! tokeninfo endpoint (POST form `access_token=`, string-valued `exp`), answering for the
//! tokens the test registers and 401 / 400 for any other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Registered tokens by endpoint path (`/userinfo`, `/tokeninfo`).
type Tokens = Arc<Mutex<HashMap<(&'static str, String), Value>>>;

/// The running endpoint; stops when dropped.
pub struct UserinfoServer {
    pub base: String,
    tokens: Tokens,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl UserinfoServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind userinfo");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let tokens: Tokens = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (Arc::clone(&tokens), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (served, counted) = (Arc::clone(&served), Arc::clone(&counted));
                tokio::spawn(async move {
                    let Some((head, body)) = read_request(&mut stream).await else {
                        return;
                    };
                    counted.fetch_add(1, Ordering::SeqCst);
                    let (status, reply) = answer(&head, &body, &served);
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self {
            base,
            tokens,
            requests,
            task,
        }
    }

    /// `/userinfo` answers `token` with these claims.
    pub fn register_userinfo(&self, token: &str, claims: Value) {
        self.register("/userinfo", token, claims);
    }

    /// `/tokeninfo` answers `token` with these claims.
    pub fn register_tokeninfo(&self, token: &str, claims: Value) {
        self.register("/tokeninfo", token, claims);
    }

    fn register(&self, path: &'static str, token: &str, claims: Value) {
        self.tokens
            .lock()
            .expect("tokens lock")
            .insert((path, token.to_owned()), claims);
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for UserinfoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn answer(head: &str, body: &str, tokens: &Tokens) -> (&'static str, String) {
    let tokens = tokens.lock().expect("tokens lock");
    if head.starts_with("GET /userinfo ") {
        let bearer = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization: Bearer "))
            .or_else(|| {
                head.lines()
                    .find_map(|l| l.strip_prefix("Authorization: Bearer "))
            });
        return match bearer.and_then(|t| tokens.get(&("/userinfo", t.trim().to_owned()))) {
            Some(claims) => ("200 OK", claims.to_string()),
            None => ("401 Unauthorized", "{}".to_owned()),
        };
    }
    if head.starts_with("POST /tokeninfo ") {
        let token = body.strip_prefix("access_token=").unwrap_or_default();
        return match tokens.get(&("/tokeninfo", token.to_owned())) {
            Some(claims) => ("200 OK", claims.to_string()),
            None => ("400 Bad Request", r#"{"error":"invalid_token"}"#.to_owned()),
        };
    }
    ("404 Not Found", "{}".to_owned())
}

/// Head and body of one HTTP/1.1 request (`Content-Length` bodies only).
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((head, body))
}

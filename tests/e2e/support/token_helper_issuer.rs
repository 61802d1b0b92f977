//! A small OAuth issuer on a loopback port (plain HTTP, which the token helper allows only on
//! loopback) whose access tokens are tokens the harness's introspection IdP vouches for:
//! short ones, for mail programs that cap the token length (Debian 12's neomutt takes at most
//! 510 bytes from its token command; the built-in issuer's ES256 JWTs are longer).
//!
//! It serves RFC 8414 metadata, RFC 8628 device authorization (every code approved at the
//! first poll) and the token endpoint's device-code and refresh grants, handing out the
//! access tokens it was given, in order, with rotating refresh tokens.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use serde_json::{json, Value};

/// The running issuer; its thread ends with the test process.
#[derive(Debug)]
pub struct LoopbackIssuer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    access_tokens: VecDeque<String>,
    /// The refresh token that is valid now (rotated at each use).
    refresh: Option<String>,
    issued: usize,
    /// Token endpoint requests by grant type, in order.
    grants: Vec<String>,
}

impl LoopbackIssuer {
    /// Starts serving; `access_tokens` are handed out one per token response.
    pub fn start(access_tokens: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the loopback issuer");
        let addr = listener.local_addr().expect("loopback issuer address");
        let state = Arc::new(Mutex::new(State {
            access_tokens: access_tokens.into(),
            ..State::default()
        }));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    let _ = serve(stream, addr, &shared);
                });
            }
        });
        Self { addr, state }
    }

    /// The issuer identifier.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The grant types of the token requests so far.
    pub fn grants(&self) -> Vec<String> {
        self.state.lock().expect("issuer state").grants.clone()
    }
}

fn serve(stream: TcpStream, addr: SocketAddr, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(64 * 1024)];
    reader.read_exact(&mut body)?;
    let form = parse_form(&String::from_utf8_lossy(&body));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let base = format!("http://{addr}");
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (status, answer) = match path {
        "/.well-known/oauth-authorization-server" => (
            200,
            json!({
                "issuer": base,
                "token_endpoint": format!("{base}/token"),
                "device_authorization_endpoint": format!("{base}/device"),
                "grant_types_supported": ["urn:ietf:params:oauth:grant-type:device_code", "refresh_token"],
            }),
        ),
        "/device" => (
            200,
            json!({
                "device_code": "loopback-device-code",
                "user_code": "BCDF-GHJK",
                "verification_uri": format!("{base}/verify"),
                "expires_in": 600,
                "interval": 1,
            }),
        ),
        "/token" => token(
            state,
            field("grant_type"),
            field("device_code"),
            field("refresh_token"),
        ),
        _ => (404, json!({"error": "not_found"})),
    };
    let body = answer.to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn token(
    state: &Mutex<State>,
    grant: Option<&str>,
    device_code: Option<&str>,
    refresh: Option<&str>,
) -> (u16, Value) {
    let mut state = state.lock().expect("issuer state");
    state.grants.push(grant.unwrap_or("").to_owned());
    let granted = match grant {
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            device_code == Some("loopback-device-code")
        }
        Some("refresh_token") => refresh.is_some() && refresh == state.refresh.as_deref(),
        _ => false,
    };
    if !granted {
        return (400, json!({"error": "invalid_grant"}));
    }
    let Some(access) = state.access_tokens.pop_front() else {
        return (503, json!({"error": "temporarily_unavailable"}));
    };
    state.issued += 1;
    let next = format!("loopback-refresh-{}", state.issued);
    state.refresh = Some(next.clone());
    (
        200,
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": next,
        }),
    )
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space, `%XX` a byte).
fn parse_form(body: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 2;
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

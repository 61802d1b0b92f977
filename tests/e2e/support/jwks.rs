//! A tiny OpenID issuer for `kind = "jwt"`: serves discovery and a JWKS that the test can
//! replace (key rotation), counts JWKS requests, and signs tokens with rcgen-made keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An ES256 signing key with its `kid`.
pub struct TestKey {
    pub kid: String,
    pair: KeyPair,
}

impl TestKey {
    pub fn es256(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            pair: KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("generate P-256 key"),
        }
    }

    pub fn jwk(&self) -> Value {
        let raw = self.pair.public_key_raw();
        json!({
            "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
            "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&raw[33..65]),
        })
    }

    /// Sign `claims`, naming `kid` in the header (not necessarily this key's own).
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        header.typ = Some("at+jwt".to_owned());
        let key = EncodingKey::from_ec_der(&self.pair.serialize_der());
        jsonwebtoken::encode(&header, claims, &key).expect("sign JWT")
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }
}

/// The running issuer; stops when dropped.
pub struct JwksServer {
    pub issuer: String,
    keys: Arc<Mutex<Value>>,
    jwks_hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let issuer = format!("http://{}", listener.local_addr().expect("local addr"));
        let keys = Arc::new(Mutex::new(jwks(keys)));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (served, hits, base) = (Arc::clone(&keys), Arc::clone(&jwks_hits), issuer.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (served, hits, base) = (Arc::clone(&served), Arc::clone(&hits), base.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let (status, body) = match path.as_str() {
                        "/.well-known/openid-configuration" => (
                            "200 OK",
                            json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}),
                        ),
                        "/jwks" => {
                            hits.fetch_add(1, Ordering::SeqCst);
                            ("200 OK", served.lock().expect("JWKS lock").clone())
                        }
                        _ => ("404 Not Found", json!({})),
                    };
                    let body = body.to_string();
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(reply.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self {
            issuer,
            keys,
            jwks_hits,
            task,
        }
    }

    /// Serve exactly these keys from now on.
    pub fn replace_keys(&self, keys: &[&TestKey]) {
        *self.keys.lock().expect("JWKS lock") = jwks(keys);
    }

    /// How many times `/jwks` was requested.
    pub fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

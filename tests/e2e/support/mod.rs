//! Test support: private Dovecot, fake identity provider, certificates, the proxy process and a
//! raw IMAP client. Each test builds its own [`TestEnv`]; nextest runs every test in its own
//! process, so nothing is shared between tests.

pub mod certs;
pub mod dovecot;
pub mod haproxy;
pub mod idp;
pub mod imap_client;
pub mod issuer;
pub mod jwks;
pub mod load;
pub mod oidc_provider;
pub mod ports;
pub mod postfix;
pub mod postgres;
pub mod proxy;
pub mod smtp_sink;
pub mod token_helper;
pub mod userinfo;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

pub use certs::TestCerts;
pub use dovecot::{Dovecot, DovecotBuilder};
pub use idp::{Idp, IdpMode};
pub use imap_client::{ImapClient, Status};
pub use proxy::{Proxy, ProxyConfig, TlsMode};
pub use smtp_sink::{SinkMessage, SmtpSink};

/// A fresh directory under the system temp dir, open to Dovecot's unprivileged processes.
/// Removed on drop, except when the test is failing (the path is printed so logs can be read).
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let name = format!(
            "bearergate-e2e-{label}-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        fs::create_dir_all(&path).expect("create test directory");
        // Dovecot's login and mail processes run as dovenull / the mail user.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .expect("open test directory to 0755");
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed; files kept in {}", self.path.display());
            return;
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Everything a proxy test needs except the proxy itself, which each test configures.
/// Field order is drop order: Dovecot and the IdP stop before the directory goes.
#[derive(Debug)]
pub struct TestEnv {
    pub dovecot: Dovecot,
    pub idp: Idp,
    pub certs: TestCerts,
    pub dir: TestDir,
}

impl TestEnv {
    pub fn new(label: &str) -> Self {
        let dir = TestDir::new(label);
        let certs = TestCerts::generate(dir.path());
        let dovecot = Dovecot::builder(dir.path()).start();
        let idp = Idp::start();
        Self {
            dovecot,
            idp,
            certs,
            dir,
        }
    }

    /// Like [`TestEnv::new`], with Dovecot's optional services set by `configure` (e.g.
    /// `|b| b.sieve()` or `|b| b.submission(sink.port())`).
    pub fn with_dovecot(
        label: &str,
        configure: impl FnOnce(DovecotBuilder) -> DovecotBuilder,
    ) -> Self {
        let dir = TestDir::new(label);
        let certs = TestCerts::generate(dir.path());
        let dovecot = configure(Dovecot::builder(dir.path())).start();
        let idp = Idp::start();
        Self {
            dovecot,
            idp,
            certs,
            dir,
        }
    }

    /// Start the proxy with exactly this configuration.
    pub fn start_proxy_with(&self, config: &ProxyConfig) -> Proxy {
        Proxy::start(self.dir.path(), config)
    }

    /// The standard proxy configuration for this environment (see [`ProxyConfig::standard`]).
    pub fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig::standard(self)
    }

    /// Start the proxy with the standard configuration, changed by `tweak`.
    pub fn start_proxy(&self, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
        let mut config = self.proxy_config();
        tweak(&mut config);
        Proxy::start(self.dir.path(), &config)
    }
}

/// Sends `signal` (`"-TERM"`, `"-HUP"`, …) to process `pid` with kill(1).
pub fn signal(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}: {status}");
}

/// `n` random bytes from the kernel.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

/// A bearer token shaped like a real access token: a JWT-like header, then 640 random
/// characters drawn from the whole RFC 6750 b64token alphabet (including `-._~+/`).
pub fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/";
    let tail: String = random_bytes(640)
        .into_iter()
        .map(|b| ALPHABET[usize::from(b) % ALPHABET.len()] as char)
        .collect();
    format!("eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{tail}")
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

/// The OAUTHBEARER (RFC 7628) client response, raw.
pub fn oauthbearer_raw(user: &str, token: &str) -> String {
    format!("n,a={user},\x01host=localhost\x01port=993\x01auth=Bearer {token}\x01\x01")
}

/// The OAUTHBEARER client response, base64 as sent on the wire.
pub fn oauthbearer_b64(user: &str, token: &str) -> String {
    B64.encode(oauthbearer_raw(user, token))
}

/// The XOAUTH2 client response, raw.
pub fn xoauth2_raw(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// The XOAUTH2 client response, base64 as sent on the wire.
pub fn xoauth2_b64(user: &str, token: &str) -> String {
    B64.encode(xoauth2_raw(user, token))
}

pub fn b64(data: impl AsRef<[u8]>) -> String {
    B64.encode(data)
}

pub fn b64_decode(text: &str) -> Vec<u8> {
    B64.decode(text.trim())
        .unwrap_or_else(|e| panic!("not base64 ({e}): {text:?}"))
}

/// A test message with CRLF line ends, 8-bit text and IMAP-looking lines in the body, padded
/// with body lines to about `size` bytes.
pub fn test_message(subject: &str, size: usize) -> Vec<u8> {
    let mut msg = format!(
        "Return-Path: <bob@example.test>\r\n\
         From: Bob <bob@example.test>\r\n\
         To: Alice <alice@example.test>\r\n\
         Subject: {subject}\r\n\
         Date: Mon, 24 Nov 2025 10:00:00 +0000\r\n\
         Message-ID: <{}@example.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Grüße aus Köln — ünïcödé, tabs\tand trailing spaces   \r\n\
         a LOGOUT\r\n\
         * BYE not really\r\n\
         {{5}}\r\n\
         + literal-looking line\r\n",
        b64(random_bytes(12)).replace(['+', '/', '='], "x")
    )
    .into_bytes();
    let mut n = 0usize;
    while msg.len() < size {
        let line = format!("line {n:07} {}\r\n", "0123456789abcdef".repeat(4));
        msg.extend_from_slice(line.as_bytes());
        n += 1;
    }
    msg
}

/// Run an external client to completion; the caller inspects status and output.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// Panic with the command's stderr unless it succeeded.
pub fn expect_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Path of a Python client script under `tests/e2e/clients`.
pub fn client_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/e2e/clients")
        .join(name)
}

/// Connect to the proxy's listener of this TLS mode (a STARTTLS listener stays plaintext) and
/// read the greeting, which must be an untagged `OK`.
pub async fn connect(env: &TestEnv, proxy: &Proxy, tls: TlsMode) -> (ImapClient, Status) {
    let addr = proxy.addr(tls);
    let mut client = match tls {
        TlsMode::Implicit => ImapClient::connect_tls(addr, env.certs.client_config()).await,
        TlsMode::Starttls | TlsMode::None => ImapClient::connect_plain(addr).await,
    };
    let line = client.read_line().await;
    let greeting = Status::parse(&line).unwrap_or_else(|| panic!("greeting {line:?}"));
    assert!(
        greeting.tag == "*" && greeting.kind == "OK",
        "greeting {line:?}"
    );
    (client, greeting)
}

/// Log in with OAUTHBEARER (SASL-IR) and return the tagged `OK`, asserting success.
pub async fn login(client: &mut ImapClient, tag: &str, user: &str, token: &str) -> Status {
    let outcome = client
        .authenticate(tag, "OAUTHBEARER", &oauthbearer_b64(user, token), true)
        .await;
    assert!(
        outcome.challenge.is_none() && outcome.tagged.kind == "OK",
        "login failed: {outcome:?}"
    );
    outcome.tagged
}

/// OAUTHBEARER with an initial response on the implicit-TLS listener, claiming `claimed`: the
/// whole outcome, for tests that expect a refusal or compare several tokens.
pub async fn try_oauthbearer(
    env: &TestEnv,
    proxy: &Proxy,
    claimed: &str,
    token: &str,
) -> imap_client::AuthOutcome {
    let (mut client, _) = connect(env, proxy, TlsMode::Implicit).await;
    client
        .authenticate("a", "OAUTHBEARER", &oauthbearer_b64(claimed, token), true)
        .await
}

/// A refused token: the mechanism's error challenge, then `NO [AUTHENTICATIONFAILED]`.
pub fn assert_refused(outcome: &imap_client::AuthOutcome, what: &str) {
    assert!(
        outcome.challenge.is_some(),
        "{what}: want an error challenge: {outcome:?}"
    );
    assert!(
        outcome.tagged.is("NO", Some("AUTHENTICATIONFAILED")),
        "{what}: want NO [AUTHENTICATIONFAILED]: {outcome:?}"
    );
}

/// Logs in with OAUTHBEARER claiming `claimed`, selects INBOX and returns message 1's bytes.
pub async fn fetch_first(env: &TestEnv, proxy: &Proxy, claimed: &str, token: &str) -> Vec<u8> {
    let (mut client, _) = connect(env, proxy, TlsMode::Implicit).await;
    login(&mut client, "a", claimed, token).await;
    let lines = client.command("b", "SELECT INBOX").await;
    assert_eq!(imap_client::last_status(&lines).kind, "OK", "{lines:?}");
    client.fetch_body("c", 1).await
}

/// One HTTP/1.1 GET over a raw socket (the metrics endpoint); returns (status line, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .unwrap_or_else(|e| panic!("read {path} response: {e}"));
    let response = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The sum of the Prometheus samples of metric `name` whose labels include every one of
/// `labels`, in any order (`None` when no sample matches). Label values must not contain
/// `,` or escaped quotes, which ours never do.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.strip_suffix('}').unwrap_or(rest)),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        let present: Vec<(&str, &str)> = label_text
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim().trim_matches('"')))
            .collect();
        if labels.iter().all(|wanted| present.contains(wanted)) {
            let value: f64 = value
                .parse()
                .unwrap_or_else(|e| panic!("sample value in {line:?}: {e}"));
            sum = Some(sum.unwrap_or(0.0) + value);
        }
    }
    sum
}

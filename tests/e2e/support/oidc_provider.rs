//! A real third-party OpenID provider: npm's `oidc-provider` (pinned in `tests/oidc`, installed
//! by `scripts/test`), run as `node tests/oidc/provider.mjs` on a free loopback port and killed
//! on drop. The test talks to its token endpoint with curl, the way a mail client's helper
//! would; the proxy finds everything else (JWKS, introspection) by discovery or configuration.
//!
//! What the provider offers (see `provider.mjs`): client credentials for [`MAIL_CLIENT_ID`],
//! whose tokens carry `username` = [`MAIL_USER`]; with `resource=`[`RESOURCE`] an ES256 JWT
//! access token (RFC 9068, `typ: at+jwt`, `aud` = the resource, scope `mail`), with
//! [`OTHER_RESOURCE`] the same for another audience, and without a resource an opaque token
//! that RFC 7662 introspection by [`INTROSPECTION_CLIENT_ID`] answers. Its signing key can be
//! rotated while it runs, keeping issuer and port.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// The resource indicator (RFC 8707) whose tokens are JWTs for the proxy: also their `aud`.
pub const RESOURCE: &str = "urn:bearergate:mail";
/// A second resource the provider knows: JWTs for another audience.
pub const OTHER_RESOURCE: &str = "urn:bearergate:other";
/// The confidential client the proxy introspects with (client_secret_basic).
pub const INTROSPECTION_CLIENT_ID: &str = "bearergate";
/// Its secret holds characters RFC 6749 §2.3.1 makes the client form-urlencode before Basic.
pub const INTROSPECTION_CLIENT_SECRET: &str = "intro secret+/:%&=~";
/// The client that gets tokens with the client_credentials grant.
pub const MAIL_CLIENT_ID: &str = "mail-alice";
const MAIL_CLIENT_SECRET: &str = "alice-client-secret";
/// The `username` claim the provider puts in [`MAIL_CLIENT_ID`]'s tokens.
pub const MAIL_USER: &str = "alice";

/// Start-up includes loading oidc-provider, well under a second on the development machine.
const READY_DEADLINE: Duration = Duration::from_secs(30);
const HTTP_TIMEOUT_SECS: &str = "10";

/// The running provider.
#[derive(Debug)]
pub struct OidcProvider {
    child: Child,
    /// Held open: the script exits when its standard input closes (e.g. the test was killed).
    _stdin: Option<ChildStdin>,
    issuer: String,
    log: Arc<(Mutex<String>, Condvar)>,
}

impl OidcProvider {
    /// Start `tests/oidc/provider.mjs` and wait for the JSON line naming its issuer.
    pub fn start() -> Self {
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "npm's oidc-provider is not installed in {}: run scripts/test, or \
             `npm ci --prefix tests/oidc`",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg("0")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node (is Node.js installed?): {e}"));
        let stdin = child.stdin.take();
        let log = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let (ready, ready_line) = mpsc::channel();
        spawn_stdout_reader(child.stdout.take().expect("piped stdout"), ready);
        let collector =
            spawn_collector(child.stderr.take().expect("piped stderr"), Arc::clone(&log));
        let mut provider = Self {
            child,
            _stdin: stdin,
            issuer: String::new(),
            log,
        };
        let line = match ready_line.recv_timeout(READY_DEADLINE) {
            Ok(line) => line,
            Err(e) => {
                // Stop it and read its last words before reporting.
                let _ = provider.child.kill();
                let status = provider.child.wait().ok();
                let _ = collector.join();
                panic!(
                    "oidc-provider not ready within {READY_DEADLINE:?} ({e}; exit status \
                     {status:?}); its log:\n{}",
                    provider.log()
                );
            }
        };
        let ready: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("ready line is not JSON ({e}): {line:?}"));
        provider.issuer = ready["issuer"]
            .as_str()
            .unwrap_or_else(|| panic!("ready line without issuer: {line:?}"))
            .to_owned();
        provider
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's OpenID discovery document.
    pub fn discovery(&self) -> Value {
        self.get_json(&format!("{}/.well-known/openid-configuration", self.issuer))
    }

    /// A URL the discovery document names (`token_endpoint`, `jwks_uri`, ...).
    pub fn endpoint(&self, name: &str) -> String {
        let discovery = self.discovery();
        discovery[name]
            .as_str()
            .unwrap_or_else(|| panic!("discovery document has no {name}: {discovery}"))
            .to_owned()
    }

    /// `introspection_endpoint` from discovery, for `[validator] introspection_url`.
    pub fn introspection_url(&self) -> String {
        self.endpoint("introspection_endpoint")
    }

    /// A fresh access token from the client_credentials grant with scope `mail`: a JWT when
    /// `resource` names one of the provider's resource servers, opaque without one.
    pub fn client_credentials_token(&self, resource: Option<&str>) -> String {
        let mut form = vec![("grant_type", "client_credentials"), ("scope", "mail")];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        let answer = self.token_request(&form);
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("token response without access_token: {answer}"))
            .to_owned()
    }

    /// POST `form` to the token endpoint as [`MAIL_CLIENT_ID`] (HTTP Basic) and return the
    /// JSON answer, which must be a success.
    pub fn token_request(&self, form: &[(&str, &str)]) -> Value {
        let url = self.endpoint("token_endpoint");
        let mut cmd = curl();
        // Both halves are plain alphanumerics, so form-urlencoding them changes nothing.
        cmd.arg("-u")
            .arg(format!("{MAIL_CLIENT_ID}:{MAIL_CLIENT_SECRET}"));
        for (name, value) in form {
            cmd.arg("--data-urlencode").arg(format!("{name}={value}"));
        }
        cmd.arg(url);
        self.run_json(&mut cmd)
    }

    /// Replace the signing key with a freshly generated one (new `kid`); only the new key is
    /// published afterwards. Returns the new `kid`.
    pub fn rotate_keys(&self) -> String {
        self.rotate(false)
    }

    /// Like [`OidcProvider::rotate_keys`], but the previous keys stay published after the new
    /// one, as during a graceful rotation.
    pub fn rotate_keys_keeping_old(&self) -> String {
        self.rotate(true)
    }

    fn rotate(&self, keep: bool) -> String {
        let query = if keep { "?keep=1" } else { "" };
        let mut cmd = curl();
        cmd.args(["-X", "POST"])
            .arg(format!("{}/__rotate{query}", self.issuer));
        let answer = self.run_json(&mut cmd);
        answer["kid"]
            .as_str()
            .unwrap_or_else(|| panic!("rotation answer without kid: {answer}"))
            .to_owned()
    }

    /// The `kid`s the provider's JWKS (found by discovery) publishes now.
    pub fn jwks_kids(&self) -> Vec<String> {
        let jwks = self.get_json(&self.endpoint("jwks_uri"));
        jwks["keys"]
            .as_array()
            .unwrap_or_else(|| panic!("JWKS without keys: {jwks}"))
            .iter()
            .map(|key| {
                key["kid"]
                    .as_str()
                    .unwrap_or_else(|| panic!("JWK without kid: {key}"))
                    .to_owned()
            })
            .collect()
    }

    /// Everything the provider wrote to stderr so far (one line per request, warnings).
    pub fn log(&self) -> String {
        self.log.0.lock().expect("log lock poisoned").clone()
    }

    /// Wait until the log contains `needle` (the provider logs each request as it arrives);
    /// false on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.log;
        let mut text = lock.lock().expect("log lock poisoned");
        loop {
            if text.contains(needle) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            text = changed
                .wait_timeout(text, deadline - now)
                .expect("log lock poisoned")
                .0;
        }
    }

    fn get_json(&self, url: &str) -> Value {
        let mut cmd = curl();
        cmd.arg(url);
        self.run_json(&mut cmd)
    }

    /// Run curl and parse its output, panicking with the provider's log on any failure.
    fn run_json(&self, cmd: &mut Command) -> Value {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run curl (is it installed?): {e}"));
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cmd:?} failed ({}): {body}\n{}\nprovider log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- oidc-provider output ---\n{}", self.log());
        }
    }
}

/// The JOSE header and the claims of a compact JWS, decoded but not verified.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token:?}");
    let decode = |part: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .unwrap_or_else(|e| panic!("JWT part is not base64url ({e}): {part:?}"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("JWT part is not JSON ({e}): {part:?}"))
    };
    (decode(parts[0]), decode(parts[1]))
}

/// `tests/oidc` in the source tree.
fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc")
}

/// curl, quiet but for errors, with the answer body kept on HTTP errors.
fn curl() -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--max-time", HTTP_TIMEOUT_SECS]);
    cmd
}

/// Forward the first stdout line that looks like the ready JSON; drain the rest.
fn spawn_stdout_reader(pipe: impl Read + Send + 'static, ready: mpsc::Sender<String>) {
    thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { return };
            if !sent && line.trim_start().starts_with('{') {
                sent = ready.send(line).is_ok();
            }
        }
    });
}

fn spawn_collector(
    mut pipe: impl Read + Send + 'static,
    log: Arc<(Mutex<String>, Condvar)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            let n = pipe.read(&mut chunk).unwrap_or(0);
            if n == 0 {
                return;
            }
            let (lock, changed) = &*log;
            lock.lock()
                .expect("log lock poisoned")
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
            changed.notify_all();
        }
    })
}

//! The `bearergate` binary under test: a `proxy.toml` written per DESIGN.md, the process, and
//! its log output captured for assertions.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::dovecot::{MASTER_PASSWORD, MASTER_USER};
use super::idp::{CLIENT_ID, CLIENT_SECRET};
use super::ports::free_port;
use super::TestEnv;

/// The log line the proxy writes once every listener is bound.
pub const READY_MARKER: &str = "bearergate ready";
const READY_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Implicit,
    Starttls,
    None,
}

impl TlsMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Implicit => "implicit",
            Self::Starttls => "starttls",
            Self::None => "none",
        }
    }
}

/// One `[[listeners]]` entry.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub protocol: String,
    pub listen: SocketAddr,
    pub tls: TlsMode,
    pub allow_plaintext_auth: bool,
    pub backend: String,
    pub preauth_idle_timeout: Option<String>,
    pub max_auth_failures: Option<u32>,
    /// Raw `key = value` lines appended to the table.
    pub extra: Vec<String>,
}

impl ListenerConfig {
    pub fn imap(tls: TlsMode) -> Self {
        Self {
            protocol: "imap".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
            tls,
            allow_plaintext_auth: tls == TlsMode::None,
            backend: "imap".into(),
            preauth_idle_timeout: None,
            max_auth_failures: None,
            extra: Vec::new(),
        }
    }
}

impl ListenerConfig {
    /// An SMTP submission listener forwarding to backend `submission`.
    pub fn smtp(tls: TlsMode) -> Self {
        Self {
            protocol: "smtp".into(),
            backend: "submission".into(),
            ..Self::imap(tls)
        }
    }

    /// A ManageSieve listener forwarding to backend `sieve`.
    pub fn sieve(tls: TlsMode) -> Self {
        Self {
            protocol: "sieve".into(),
            backend: "sieve".into(),
            ..Self::imap(tls)
        }
    }

    /// A POP3 listener forwarding to backend `pop3`.
    pub fn pop3(tls: TlsMode) -> Self {
        Self {
            protocol: "pop3".into(),
            backend: "pop3".into(),
            ..Self::imap(tls)
        }
    }
}

/// One `[backends.NAME]` table.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub name: String,
    pub address: String,
    pub tls: String,
    pub login: String,
    pub master_user: String,
    pub master_password: String,
    pub master_user_format: String,
    pub extra: Vec<String>,
}

/// The `[validator]` table.
#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    pub kind: String,
    pub introspection_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub username_claim: String,
    pub required_scope: String,
    pub cache_max_ttl: String,
    pub negative_cache_ttl: String,
    pub timeout: String,
    pub extra: Vec<String>,
    /// When set, the whole `[validator]` table (with any `[[validator.issuers]]`) instead
    /// of the fields above.
    pub raw: Option<String>,
}

/// A whole `proxy.toml`; tests change fields, then [`Proxy::start`] renders it.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub log_format: String,
    pub log_level: String,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub listeners: Vec<ListenerConfig>,
    pub backends: Vec<BackendConfig>,
    pub validator: ValidatorConfig,
    /// Raw TOML appended at the end (whole tables).
    pub extra_toml: String,
    /// Top-level keys written before any table (e.g. `drain_timeout = "1s"`).
    pub top_level: Vec<String>,
    /// `key = value` lines of `[auth_limits]`. By default no failure delay and a budget no
    /// test reaches by accident, so that tests of other things stay fast and independent;
    /// the tests of the limits set their own.
    pub auth_limits: Vec<String>,
}

impl ProxyConfig {
    /// Three IMAP listeners (implicit TLS, STARTTLS, and plaintext with
    /// `allow_plaintext_auth`), the environment's Dovecot as master-user backend, and
    /// introspection against its fake IdP requiring scope `mail`.
    pub fn standard(env: &TestEnv) -> Self {
        Self {
            log_format: "text".into(),
            log_level: "debug".into(),
            tls_cert: env.certs.cert_pem.clone(),
            tls_key: env.certs.key_pem.clone(),
            listeners: vec![
                ListenerConfig::imap(TlsMode::Implicit),
                ListenerConfig::imap(TlsMode::Starttls),
                ListenerConfig::imap(TlsMode::None),
            ],
            backends: vec![BackendConfig {
                name: "imap".into(),
                address: env.dovecot.imap_addr().to_string(),
                tls: "none".into(),
                login: "master".into(),
                master_user: MASTER_USER.into(),
                master_password: MASTER_PASSWORD.into(),
                master_user_format: "{user}*{master}".into(),
                extra: Vec::new(),
            }],
            validator: ValidatorConfig {
                kind: "introspection".into(),
                introspection_url: env.idp.url(),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                username_claim: "username".into(),
                required_scope: "mail".into(),
                cache_max_ttl: "5m".into(),
                negative_cache_ttl: "10s".into(),
                timeout: "2s".into(),
                extra: Vec::new(),
                raw: None,
            },
            extra_toml: String::new(),
            top_level: Vec::new(),
            auth_limits: vec![
                "failure_delay = \"0s\"".into(),
                "address_failures = 1000".into(),
            ],
        }
    }

    /// Like [`ProxyConfig::standard`], but three SMTP submission listeners (implicit TLS,
    /// STARTTLS, plaintext with `allow_plaintext_auth`) and one master-user backend,
    /// `submission`, at Dovecot's submission port.
    pub fn submission(env: &TestEnv) -> Self {
        Self::with_protocol(
            env,
            ListenerConfig::smtp,
            "submission",
            env.dovecot.submission_addr(),
        )
    }

    /// Like [`ProxyConfig::standard`], but three ManageSieve listeners (implicit TLS,
    /// STARTTLS, plaintext with `allow_plaintext_auth`) and one master-user backend, `sieve`,
    /// at Dovecot's ManageSieve port.
    pub fn managesieve(env: &TestEnv) -> Self {
        Self::with_protocol(
            env,
            ListenerConfig::sieve,
            "sieve",
            env.dovecot.sieve_addr(),
        )
    }

    /// Like [`ProxyConfig::standard`], but three POP3 listeners (implicit TLS, STLS,
    /// plaintext with `allow_plaintext_auth`) and one master-user backend, `pop3`, at
    /// Dovecot's POP3 port.
    pub fn pop3(env: &TestEnv) -> Self {
        Self::with_protocol(env, ListenerConfig::pop3, "pop3", env.dovecot.pop3_addr())
    }

    fn with_protocol(
        env: &TestEnv,
        listener: fn(TlsMode) -> ListenerConfig,
        backend: &str,
        address: SocketAddr,
    ) -> Self {
        let mut config = Self::standard(env);
        config.listeners = [TlsMode::Implicit, TlsMode::Starttls, TlsMode::None]
            .into_iter()
            .map(listener)
            .collect();
        let mut only = config.backend_mut("imap").clone();
        only.name = backend.into();
        only.address = address.to_string();
        config.backends = vec![only];
        config
    }

    /// Apply `edit` to every listener (e.g. a short `preauth_idle_timeout`).
    pub fn each_listener(&mut self, edit: impl Fn(&mut ListenerConfig)) {
        self.listeners.iter_mut().for_each(edit);
    }

    pub fn backend_mut(&mut self, name: &str) -> &mut BackendConfig {
        self.backends
            .iter_mut()
            .find(|b| b.name == name)
            .unwrap_or_else(|| panic!("no backend {name:?} in the test config"))
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# written by tests/e2e/support/proxy.rs\n");
        let mut w = |line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        self.top_level.iter().for_each(|line| w(line.clone()));
        w("[log]".into());
        w(format!("format = {}", q(&self.log_format)));
        w(format!("level = {}", q(&self.log_level)));
        w(String::new());
        w("[tls]".into());
        w(format!(
            "cert = {}",
            q(&self.tls_cert.display().to_string())
        ));
        w(format!("key = {}", q(&self.tls_key.display().to_string())));
        w(String::new());
        w("[auth_limits]".into());
        self.auth_limits.iter().for_each(|line| w(line.clone()));
        for l in &self.listeners {
            w(String::new());
            w("[[listeners]]".into());
            w(format!("protocol = {}", q(&l.protocol)));
            w(format!("listen = {}", q(&l.listen.to_string())));
            w(format!("tls = {}", q(l.tls.as_str())));
            w(format!("allow_plaintext_auth = {}", l.allow_plaintext_auth));
            w(format!("backend = {}", q(&l.backend)));
            if let Some(timeout) = &l.preauth_idle_timeout {
                w(format!("preauth_idle_timeout = {}", q(timeout)));
            }
            if let Some(max) = l.max_auth_failures {
                w(format!("max_auth_failures = {max}"));
            }
            l.extra.iter().for_each(|line| w(line.clone()));
        }
        for b in &self.backends {
            w(String::new());
            w(format!("[backends.{}]", b.name));
            w(format!("address = {}", q(&b.address)));
            w(format!("tls = {}", q(&b.tls)));
            w(format!("login = {}", q(&b.login)));
            w(format!("master_user = {}", q(&b.master_user)));
            w(format!("master_password = {}", q(&b.master_password)));
            w(format!("master_user_format = {}", q(&b.master_user_format)));
            b.extra.iter().for_each(|line| w(line.clone()));
        }
        let v = &self.validator;
        w(String::new());
        if let Some(raw) = &v.raw {
            w(raw.clone());
            let _ = write!(out, "{}", self.extra_toml);
            return out;
        }
        w("[validator]".into());
        w(format!("kind = {}", q(&v.kind)));
        if v.kind == "introspection" {
            w(format!("introspection_url = {}", q(&v.introspection_url)));
            w(format!("client_id = {}", q(&v.client_id)));
            w(format!("client_secret = {}", q(&v.client_secret)));
        }
        w(format!("username_claim = {}", q(&v.username_claim)));
        w(format!("required_scope = {}", q(&v.required_scope)));
        w(format!("cache_max_ttl = {}", q(&v.cache_max_ttl)));
        w(format!("negative_cache_ttl = {}", q(&v.negative_cache_ttl)));
        w(format!("timeout = {}", q(&v.timeout)));
        v.extra.iter().for_each(|line| w(line.clone()));
        let _ = write!(out, "{}", self.extra_toml);
        out
    }
}

/// A TOML basic string.
fn q(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('"');
    for c in value.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{:04X}", u32::from(c));
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Captured stdout + stderr of the proxy, and whether both pipes have closed.
#[derive(Debug, Default)]
struct Captured {
    text: String,
    open_pipes: usize,
}

#[derive(Debug)]
pub struct Proxy {
    child: Child,
    output: Arc<(Mutex<Captured>, Condvar)>,
    listeners: Vec<ListenerConfig>,
    pub config_path: PathBuf,
}

impl Proxy {
    /// Write the config into `dir`, start the binary, and wait for its ready line.
    pub fn start(dir: &Path, config: &ProxyConfig) -> Self {
        Self::start_with_open_files(dir, config, None)
    }

    /// Like [`Proxy::start`], with the process's open-files limit (soft and hard) set to
    /// `open_files` by util-linux's `prlimit`, which then execs the proxy.
    pub fn start_with_open_files(
        dir: &Path,
        config: &ProxyConfig,
        open_files: Option<u64>,
    ) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let config_path = dir.join(format!(
            "proxy-{}.toml",
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&config_path, config.render()).expect("write proxy.toml");
        let mut command = match open_files {
            Some(limit) => {
                let mut command = Command::new("prlimit");
                command
                    .arg(format!("--nofile={limit}:{limit}"))
                    .arg(env!("CARGO_BIN_EXE_bearergate"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_bearergate")),
        };
        let mut child = command
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the bearergate binary");
        let output = Arc::new((
            Mutex::new(Captured {
                text: String::new(),
                open_pipes: 2,
            }),
            Condvar::new(),
        ));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        spawn_collector(stdout, Arc::clone(&output));
        spawn_collector(stderr, Arc::clone(&output));
        let mut proxy = Self {
            child,
            output,
            listeners: config.listeners.clone(),
            config_path,
        };
        if !proxy.wait_for_log(READY_MARKER, READY_DEADLINE) {
            let status = proxy.child.try_wait().ok().flatten();
            panic!(
                "proxy not ready within {READY_DEADLINE:?} (exit status {status:?}); config:\n{}\nlog:\n{}",
                config.render(),
                proxy.log()
            );
        }
        proxy
    }

    /// The proxy's process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`. The event
    /// waited for is both output pipes closing, which happens when the process ends.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        {
            let (lock, changed) = &*self.output;
            let mut captured = lock.lock().expect("log lock poisoned");
            while captured.open_pipes > 0 {
                let now = Instant::now();
                if now >= deadline {
                    return None;
                }
                captured = changed
                    .wait_timeout(captured, deadline - now)
                    .expect("log lock poisoned")
                    .0;
            }
        }
        Some(self.child.wait().expect("wait for the proxy"))
    }

    /// Address of the first listener with this TLS mode.
    pub fn addr(&self, tls: TlsMode) -> SocketAddr {
        self.listeners
            .iter()
            .find(|l| l.tls == tls)
            .map(|l| l.listen)
            .unwrap_or_else(|| panic!("no {tls:?} listener in the test config"))
    }

    /// Everything the proxy wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        self.output
            .0
            .lock()
            .expect("log lock poisoned")
            .text
            .clone()
    }

    /// Wait until the log contains `needle`; false on timeout or when the process closed its
    /// output without writing it.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_where(timeout, |log| log.contains(needle))
    }

    /// Wait until `found` holds for the whole log so far, woken by each new output; false on
    /// timeout or when the process closed its output first.
    pub fn wait_for_log_where(&self, timeout: Duration, found: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.output;
        let mut captured = lock.lock().expect("log lock poisoned");
        loop {
            if found(&captured.text) {
                return true;
            }
            let now = Instant::now();
            if captured.open_pipes == 0 || now >= deadline {
                return false;
            }
            captured = changed
                .wait_timeout(captured, deadline - now)
                .expect("log lock poisoned")
                .0;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- bearergate output ---\n{}", self.log());
        }
    }
}

fn spawn_collector(mut pipe: impl Read + Send + 'static, output: Arc<(Mutex<Captured>, Condvar)>) {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            let n = pipe.read(&mut chunk).unwrap_or(0);
            let (lock, changed) = &*output;
            let mut captured = lock.lock().expect("log lock poisoned");
            if n == 0 {
                captured.open_pipes -= 1;
                changed.notify_all();
                return;
            }
            captured
                .text
                .push_str(&String::from_utf8_lossy(&chunk[..n]));
            changed.notify_all();
        }
    });
}

//! The proxy under test as a child process: its configuration, start-up, and what `/proc`
//! says about its memory and CPU time.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::BenchResult;

/// What the proxy logs once every listener is bound.
const READY_MARKER: &str = "bearergate ready";
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// Where the proxy listens and what it talks to.
#[derive(Debug)]
pub struct ProxySetup {
    pub backend: SocketAddr,
    pub introspection_url: String,
    /// Concurrent connections the listener must accept.
    pub max_connections: usize,
}

/// The running proxy; killed on drop.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    listen: SocketAddr,
    dir: PathBuf,
}

impl ProxyProcess {
    pub fn start(setup: &ProxySetup) -> BenchResult<Self> {
        Self::start_with(setup, "proxy", "")
    }

    /// Like [`ProxyProcess::start`], with `extra` appended to the configuration (an
    /// `[issuer]` table, say). `name` keeps the configuration directories of proxies that
    /// run side by side or one after another apart.
    pub fn start_with(setup: &ProxySetup, name: &str, extra: &str) -> BenchResult<Self> {
        let listen = free_local_addr()?;
        Self::start_config(name, listen, &(render_config(setup, listen) + extra))
    }

    /// Starts the proxy with this whole configuration; `listen` is the address
    /// [`ProxyProcess::listen`] reports (one of the configuration's listeners).
    pub fn start_config(name: &str, listen: SocketAddr, config_text: &str) -> BenchResult<Self> {
        let dir =
            std::env::temp_dir().join(format!("bearergate-bench-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let config = dir.join("proxy.toml");
        fs::write(&config, config_text)?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_bearergate"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let Some(stderr) = child.stderr.take() else {
            return Err("no stderr pipe".into());
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        // Drains stderr for the whole run so the proxy never blocks on a full pipe; anything
        // besides start-up lines is a warning or error worth seeing next to the figures.
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if line.contains(READY_MARKER) {
                    let _ = ready_tx.send(());
                } else if !line.contains("listening") {
                    eprintln!("proxy: {line}");
                }
            }
        });
        let mut proxy = Self { child, listen, dir };
        if ready_rx.recv_timeout(READY_DEADLINE).is_err() {
            let status = proxy.child.try_wait()?;
            return Err(format!(
                "the proxy did not log {READY_MARKER:?} within {READY_DEADLINE:?} (exit: {status:?})"
            )
            .into());
        }
        Ok(proxy)
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB (`VmRSS` in `/proc/PID/status`).
    pub fn rss_kib(&self) -> BenchResult<u64> {
        self.status_kib("VmRSS")
    }

    /// A `kB` line of `/proc/PID/status` (`VmRSS`, `RssAnon`, `RssFile` …), in KiB.
    pub fn status_kib(&self, field: &str) -> BenchResult<u64> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {field} in /proc/PID/status").into())
    }

    /// User plus system CPU time of all the proxy's threads so far.
    pub fn cpu_time(&self, ticks_per_second: u64) -> BenchResult<Duration> {
        cpu_time(&self.pid().to_string(), ticks_per_second)
    }
}

/// User plus system CPU time of all this process's threads so far: the client and the fake
/// peers, for the cost of the direct path.
pub fn own_cpu_time(ticks_per_second: u64) -> BenchResult<Duration> {
    cpu_time("self", ticks_per_second)
}

/// `utime + stime` from `/proc/PID/stat`, which counts every thread of the process.
fn cpu_time(pid: &str, ticks_per_second: u64) -> BenchResult<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces; the fields after it do not. After ")" comes
    // field 3 (state), so utime (field 14) and stime (field 15) are the 12th and 13th.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_ascii_whitespace().collect();
    let ticks = |index: usize| -> BenchResult<u64> {
        Ok(fields
            .get(index)
            .ok_or("short /proc/PID/stat")?
            .parse::<u64>()?)
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(
        total.saturating_mul(1_000_000_000) / ticks_per_second.max(1),
    ))
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`): `getconf CLK_TCK`, else Linux's 100.
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

/// The soft limit on open files of this process (`/proc/self/limits`); the proxy inherits it.
pub fn open_files_limit() -> Option<u64> {
    let limits = fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A loopback address with a port nobody listens on.
pub fn free_local_addr() -> BenchResult<SocketAddr> {
    // Bound and released at once; nothing else on a bench machine races for the port.
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A plaintext listener, a master-user backend and introspection against the fake IdP.
/// Logging keeps only the start-up line at info: per-session lines would be measured too.
fn render_config(setup: &ProxySetup, listen: SocketAddr) -> String {
    format!(
        r#"drain_timeout = "1s"

[log]
format = "text"
level = "warn,bearergate::server=info"

[[listeners]]
protocol = "imap"
listen = "{listen}"
tls = "none"
allow_plaintext_auth = true
backend = "imap"
preauth_idle_timeout = "60s"
max_connections = {max_connections}

[backends.imap]
address = "{backend}"
tls = "none"
login = "master"
master_user = "proxymaster"
master_password = "masterpass"
master_user_format = "{{user}}*{{master}}"
forward_client_address = true

[validator]
kind = "introspection"
introspection_url = "{url}"
client_id = "bearergate"
client_secret = "bench-secret"
username_claim = "username"
required_scope = ""
cache_max_ttl = "10m"
timeout = "5s"
"#,
        max_connections = setup.max_connections,
        backend = setup.backend,
        url = setup.introspection_url,
    )
}

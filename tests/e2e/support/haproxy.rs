//! A private HAProxy (Debian's `haproxy`, 2.6) per test: its own configuration file in the
//! test directory, run in the foreground (`-db`) as a child process, a TCP frontend on a
//! free loopback port balancing over the servers it is given, each sent a PROXY protocol
//! header. Several servers make it the load balancer in front of several proxy instances;
//! several [`Pool`]s give it one frontend each (IMAP, SMTP, …), with health checks that
//! notice a dead server quickly and connection retries that go to another server.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::ports::free_port;

const READY_DEADLINE: Duration = Duration::from_secs(10);

/// Which PROXY header HAProxy sends its servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendProxy {
    /// `send-proxy`: the v1 text header.
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

/// One frontend on a free loopback port and the servers behind it, round-robin.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Names the frontend and its backend in `haproxy.cfg` and in HAProxy's messages
    /// (`Server NAME/s1 is DOWN`).
    pub name: String,
    pub servers: Vec<SocketAddr>,
    pub header: SendProxy,
    /// Health checks this often (a TCP connect with the PROXY header, which HAProxy sends
    /// as LOCAL): a server is down after two failed checks, up again after one good one.
    /// With them, a connection the server refuses is retried (`retries 3`) on another
    /// server (`option redispatch 1`), so a client never meets a dead server.
    pub health_checks: Option<Duration>,
}

impl Pool {
    /// Round-robin over `servers`, no health checks.
    pub fn new(name: &str, servers: &[SocketAddr], header: SendProxy) -> Self {
        Self {
            name: name.to_owned(),
            servers: servers.to_vec(),
            header,
            health_checks: None,
        }
    }

    /// With health checks every `interval`, and retries on another server.
    pub fn checked(mut self, interval: Duration) -> Self {
        self.health_checks = Some(interval);
        self
    }
}

/// A running HAProxy; killed on drop.
#[derive(Debug)]
pub struct Haproxy {
    child: Child,
    dir: PathBuf,
    /// Where clients connect (the first pool's frontend).
    pub frontend: SocketAddr,
    /// Each pool's frontend, in the order the pools were given.
    pub frontends: Vec<SocketAddr>,
}

impl Haproxy {
    /// Writes `dir/haproxy/haproxy.cfg` — mode tcp, a frontend on a free loopback port,
    /// round-robin over `servers` (`s0`, `s1`, …), each sent `header` — starts HAProxy with
    /// it and waits until the frontend listens.
    pub fn start(dir: &Path, servers: &[SocketAddr], header: SendProxy) -> Self {
        Self::start_pools(dir, &[Pool::new("mail", servers, header)])
    }

    /// Like [`Haproxy::start`], with one frontend per pool (each on its own free loopback
    /// port, [`Haproxy::frontends`]); waits until every frontend listens.
    pub fn start_pools(dir: &Path, pools: &[Pool]) -> Self {
        let dir = dir.join("haproxy");
        fs::create_dir_all(&dir).expect("create the haproxy directory");
        let frontends: Vec<SocketAddr> = pools
            .iter()
            .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
            .collect();
        let config = dir.join("haproxy.cfg");
        fs::write(&config, render(&frontends, pools)).expect("write haproxy.cfg");
        let stderr = fs::File::create(dir.join("stderr.log")).expect("create the haproxy log");
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn haproxy (is the haproxy package installed?)");
        let mut haproxy = Self {
            child,
            dir,
            frontend: frontends[0],
            frontends,
        };
        haproxy.wait_listening();
        haproxy
    }

    /// Waits until HAProxy's stderr (where it reports a server going down or up) holds
    /// `needle`; false after `timeout`. A bounded poll of the file: the external daemon's
    /// messages offer no other event.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let stderr = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
            if stderr.contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// What HAProxy wrote to stderr, with its configuration (for failure messages).
    pub fn log(&self) -> String {
        let config = fs::read_to_string(self.dir.join("haproxy.cfg")).unwrap_or_default();
        let stderr = fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        format!("--- haproxy.cfg ---\n{config}--- haproxy stderr ---\n{stderr}")
    }

    /// Waits until the frontend's socket is in the kernel's table of listening sockets: a
    /// connection to find out would itself be relayed to a server. A bounded poll is the
    /// only event an external daemon's socket offers.
    fn wait_listening(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("haproxy exited early ({status})\n{}", self.log());
            }
            if self
                .frontends
                .iter()
                .all(|&frontend| is_listening(frontend))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "haproxy not listening on {:?} after {READY_DEADLINE:?}\n{}",
                self.frontends,
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

fn render(frontends: &[SocketAddr], pools: &[Pool]) -> String {
    let mut config = String::from(
        "# written by tests/e2e/support/haproxy.rs\n\
         global\n    maxconn 2000\n\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 2m\n    \
         timeout server 2m\n",
    );
    for (pool, frontend) in pools.iter().zip(frontends) {
        let name = &pool.name;
        write!(
            config,
            "\nfrontend {name}\n    bind {frontend}\n    default_backend {name}_servers\n\n\
             backend {name}_servers\n    balance roundrobin\n"
        )
        .expect("format a pool");
        let send = match pool.header {
            SendProxy::V1 => "send-proxy",
            SendProxy::V2 => "send-proxy-v2",
        };
        let check = match pool.health_checks {
            Some(interval) => {
                // A refused connection is retried at once on another server; the checks
                // take a dead one out of the rotation soon after.
                config.push_str("    option redispatch 1\n    retries 3\n");
                format!(" check inter {}ms fall 2 rise 1", interval.as_millis())
            }
            None => String::new(),
        };
        for (index, server) in pool.servers.iter().enumerate() {
            writeln!(config, "    server s{index} {server} {send}{check}")
                .expect("format a server");
        }
    }
    config
}

/// Whether an IPv4 socket listens on `address`, by `/proc/net/tcp` (state `0A`).
fn is_listening(address: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = address else {
        panic!("IPv4 frontends only: {address}");
    };
    // The kernel writes the address as the hex of its in-memory (little-endian) u32.
    let local = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
    })
}

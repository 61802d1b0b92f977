//! A private Dovecot 2.3 backend per test: its own config, sockets, logs and maildirs in the
//! test directory, loopback listeners on free ports, a master user for the proxy.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::ports::free_port;

/// System user that owns the maildirs (Dovecot refuses uid 0 for mail).
pub const MAIL_USER: &str = "bgmail";
pub const MASTER_USER: &str = "proxymaster";
pub const MASTER_PASSWORD: &str = "masterpass";
/// Normal users and their passwords (only needed for direct logins; the proxy uses the master).
pub const USERS: &[(&str, &str)] = &[("alice", "alicepass"), ("bob", "bobpass")];

const READY_DEADLINE: Duration = Duration::from_secs(10);

/// Which optional listeners to add beside IMAP.
#[derive(Debug)]
pub struct DovecotBuilder {
    dir: PathBuf,
    sieve: bool,
    submission_relay_port: Option<u16>,
    tls: Option<(PathBuf, PathBuf)>,
    oauth2: Option<String>,
    extra_config: String,
    pop3: bool,
    haproxy: bool,
}

impl DovecotBuilder {
    /// Append raw settings to `dovecot.conf` (later settings win), e.g. a
    /// `login_log_format_elements` that shows the forwarded client port.
    pub fn config(mut self, settings: &str) -> Self {
        self.extra_config.push_str(settings);
        self.extra_config.push('\n');
        self
    }

    /// Also accept XOAUTH2 and OAUTHBEARER itself (`passdb oauth2`), validating tokens by
    /// introspection at `introspection_url` (credentials in its userinfo) and accepting only
    /// tokens with the `dovecot` scope: a backend for `login = "passthrough"`.
    pub fn oauth2(mut self, introspection_url: &str) -> Self {
        self.oauth2 = Some(introspection_url.to_owned());
        self
    }

    /// Offer TLS with this PEM certificate chain and key: STARTTLS on the plaintext ports and
    /// an implicit-TLS IMAP listener ([`Dovecot::imaps_port`]), for backend `tls` modes.
    pub fn tls(mut self, cert: &Path, key: &Path) -> Self {
        self.tls = Some((cert.to_path_buf(), key.to_path_buf()));
        self
    }

    /// Also run ManageSieve.
    pub fn sieve(mut self) -> Self {
        self.sieve = true;
        self
    }

    /// Also run submission, relaying to an SMTP sink on `relay_port` (loopback).
    pub fn submission(mut self, relay_port: u16) -> Self {
        self.submission_relay_port = Some(relay_port);
        self
    }

    /// Also run POP3 (`dovecot-pop3d`) on a loopback port ([`Dovecot::pop3_addr`]); with
    /// [`DovecotBuilder::tls`], STLS there and an implicit-TLS POP3 listener too
    /// ([`Dovecot::pop3s_addr`]).
    pub fn pop3(mut self) -> Self {
        self.pop3 = true;
        self
    }

    /// Also an IMAP listener that takes only connections opening with a PROXY protocol
    /// header (`haproxy = yes`, [`Dovecot::imap_haproxy_addr`]), from 127.0.0.0/8
    /// (`haproxy_trusted_networks`): a backend for `send_proxy_protocol = true`.
    pub fn haproxy(mut self) -> Self {
        self.haproxy = true;
        self
    }

    pub fn start(self) -> Dovecot {
        Dovecot::start(self)
    }
}

/// A running Dovecot; stopped (with its whole process group) on drop.
#[derive(Debug)]
pub struct Dovecot {
    child: Child,
    root: PathBuf,
    mail_dir: PathBuf,
    uid: u32,
    gid: u32,
    pub imap_port: u16,
    /// Implicit-TLS IMAP, when built with [`DovecotBuilder::tls`].
    pub imaps_port: Option<u16>,
    pub sieve_port: Option<u16>,
    pub submission_port: Option<u16>,
    /// POP3, when built with [`DovecotBuilder::pop3`].
    pub pop3_port: Option<u16>,
    /// Implicit-TLS POP3, when built with [`DovecotBuilder::pop3`] and [`DovecotBuilder::tls`].
    pub pop3s_port: Option<u16>,
    /// IMAP behind a PROXY protocol header, when built with [`DovecotBuilder::haproxy`].
    pub imap_haproxy_port: Option<u16>,
}

impl Dovecot {
    /// Configure a Dovecot whose files live under `dir/dovecot` and `dir/mail`.
    pub fn builder(dir: &Path) -> DovecotBuilder {
        DovecotBuilder {
            dir: dir.to_path_buf(),
            sieve: false,
            submission_relay_port: None,
            tls: None,
            oauth2: None,
            extra_config: String::new(),
            pop3: false,
            haproxy: false,
        }
    }

    fn start(builder: DovecotBuilder) -> Self {
        let (uid, gid) = ensure_mail_user();
        let root = builder.dir.join("dovecot");
        let mail_dir = builder.dir.join("mail");
        for sub in ["run", "state", "log"] {
            fs::create_dir_all(root.join(sub)).expect("create dovecot directories");
        }
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod dovecot dir");
        fs::create_dir_all(&mail_dir).expect("create mail dir");
        chown(&mail_dir, Some(uid), Some(gid)).expect("chown mail dir to the mail user");

        let mut users = String::new();
        for (name, pass) in USERS {
            let home = mail_dir.join(name);
            writeln!(
                users,
                "{name}:{{PLAIN}}{pass}:{uid}:{gid}::{}",
                home.display()
            )
            .expect("format users");
        }
        fs::write(root.join("users"), users).expect("write users");
        fs::write(
            root.join("master-users"),
            format!("{MASTER_USER}:{{PLAIN}}{MASTER_PASSWORD}\n"),
        )
        .expect("write master-users");

        let imap_port = free_port();
        let imaps_port = builder.tls.as_ref().map(|_| free_port());
        let sieve_port = builder.sieve.then(free_port);
        let submission_port = builder.submission_relay_port.map(|_| free_port());
        let mut conf = render_config(
            &root,
            &mail_dir,
            uid,
            imap_port,
            sieve_port,
            submission_port.zip(builder.submission_relay_port),
        );
        if let (Some((cert, key)), Some(port)) = (&builder.tls, imaps_port) {
            // later settings win: turn TLS on and give imaps a port
            write!(
                conf,
                "\nssl = yes\nssl_cert = <{}\nssl_key = <{}\n\
                 service imap-login {{\n  inet_listener imaps {{\n    address = 127.0.0.1\n    \
                 port = {port}\n    ssl = yes\n  }}\n}}\n",
                cert.display(),
                key.display()
            )
            .expect("format TLS config");
        }
        if let Some(url) = &builder.oauth2 {
            let ext = root.join("oauth2.conf.ext");
            fs::write(
                &ext,
                format!(
                    "introspection_url = {url}\nintrospection_mode = post\n\
                     username_attribute = username\nscope = dovecot\nactive_attribute = active\nactive_value = true\n"
                ),
            )
            .expect("write oauth2.conf.ext");
            write!(
                conf,
                "\nauth_mechanisms = plain login xoauth2 oauthbearer\n\
                 passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
                ext.display()
            )
            .expect("format oauth2 config");
        }
        let pop3_port = builder.pop3.then(free_port);
        let pop3s_port = builder.tls.as_ref().and(pop3_port).map(|_| free_port());
        if let Some(port) = pop3_port {
            // Later settings win; `$protocols` is the list so far. A hundred POP3 sessions
            // at once keep the auth service's client_limit above what Dovecot counts.
            let pop3s = match pop3s_port {
                Some(port) => format!("address = 127.0.0.1\n    port = {port}\n    ssl = yes"),
                None => "port = 0".to_owned(),
            };
            write!(
                conf,
                "\nprotocols = $protocols pop3\n\
                 service pop3-login {{\n  inet_listener pop3 {{\n    address = 127.0.0.1\n    \
                 port = {port}\n  }}\n  inet_listener pop3s {{\n    {pop3s}\n  }}\n}}\n\
                 service pop3 {{\n  service_count = 1000\n  process_limit = 100\n}}\n"
            )
            .expect("format POP3 config");
        }
        let imap_haproxy_port = builder.haproxy.then(free_port);
        if let Some(port) = imap_haproxy_port {
            // Later settings win; a second listener of the same service.
            write!(
                conf,
                "\nhaproxy_trusted_networks = 127.0.0.0/8\n\
                 service imap-login {{\n  inet_listener imap_haproxy {{\n    \
                 address = 127.0.0.1\n    port = {port}\n    haproxy = yes\n  }}\n}}\n"
            )
            .expect("format haproxy listener config");
        }
        conf.push('\n');
        conf.push_str(&builder.extra_config);
        let conf_path = root.join("dovecot.conf");
        fs::write(&conf_path, conf).expect("write dovecot.conf");

        let stderr = fs::File::create(root.join("log/stderr.log")).expect("create stderr log");
        let child = Command::new("dovecot")
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // own process group, so drop can take down every child it forked
            .process_group(0)
            .spawn()
            .expect("spawn dovecot (is dovecot-imapd installed? scripts/test installs it)");

        let mut dovecot = Self {
            child,
            root,
            mail_dir,
            uid,
            gid,
            imap_port,
            imaps_port,
            sieve_port,
            submission_port,
            pop3_port,
            pop3s_port,
            imap_haproxy_port,
        };
        dovecot.wait_ready(imap_port, "* OK");
        if let Some(port) = imap_haproxy_port {
            dovecot.wait_ready_after(port, LOCAL_V2_HEADER, "* OK");
        }
        if let Some(port) = sieve_port {
            dovecot.wait_ready(port, "\"IMPLEMENTATION\"");
        }
        if let Some(port) = submission_port {
            dovecot.wait_ready(port, "220 ");
        }
        if let Some(port) = pop3_port {
            dovecot.wait_ready(port, "+OK");
        }
        dovecot
    }

    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.imap_port))
    }

    pub fn imaps_addr(&self) -> Option<SocketAddr> {
        self.imaps_port
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// ManageSieve, when built with [`DovecotBuilder::sieve`].
    pub fn sieve_addr(&self) -> SocketAddr {
        let port = self.sieve_port.expect("Dovecot built without .sieve()");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Submission, when built with [`DovecotBuilder::submission`].
    pub fn submission_addr(&self) -> SocketAddr {
        let port = self
            .submission_port
            .expect("Dovecot built without .submission(relay_port)");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// POP3, when built with [`DovecotBuilder::pop3`].
    pub fn pop3_addr(&self) -> SocketAddr {
        let port = self.pop3_port.expect("Dovecot built without .pop3()");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Implicit-TLS POP3, when built with [`DovecotBuilder::pop3`] and
    /// [`DovecotBuilder::tls`].
    pub fn pop3s_addr(&self) -> Option<SocketAddr> {
        self.pop3s_port
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// IMAP behind a PROXY protocol header, when built with [`DovecotBuilder::haproxy`].
    pub fn imap_haproxy_addr(&self) -> SocketAddr {
        let port = self
            .imap_haproxy_port
            .expect("Dovecot built without .haproxy()");
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// `user`'s home directory (Sieve scripts live in `sieve/` there, the active one is
    /// linked from `.dovecot.sieve`).
    pub fn home(&self, user: &str) -> PathBuf {
        self.mail_dir.join(user)
    }

    /// Everything Dovecot logged so far (for failure messages).
    pub fn log(&self) -> String {
        let main = fs::read_to_string(self.root.join("log/dovecot.log")).unwrap_or_default();
        let stderr = fs::read_to_string(self.root.join("log/stderr.log")).unwrap_or_default();
        format!("--- dovecot.log ---\n{main}--- dovecot stderr ---\n{stderr}")
    }

    /// Put `message` into `user`'s INBOX as a new maildir file owned by the mail user and
    /// return the exact bytes, for byte-for-byte comparison with what a client fetches.
    pub fn deliver(&self, user: &str, message: &[u8]) -> Vec<u8> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let home = self.mail_dir.join(user);
        let maildir = home.join("Maildir");
        for dir in [home.clone(), maildir.clone()] {
            fs::create_dir_all(&dir).expect("create maildir");
            chown(&dir, Some(self.uid), Some(self.gid)).expect("chown maildir");
        }
        for sub in ["new", "cur", "tmp"] {
            let dir = maildir.join(sub);
            fs::create_dir_all(&dir).expect("create maildir subdirectory");
            chown(&dir, Some(self.uid), Some(self.gid)).expect("chown maildir subdirectory");
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        let name = format!(
            "{}.M{}P{}Q{}.bgtest",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = maildir.join("tmp").join(&name);
        fs::write(&tmp, message).expect("write message");
        chown(&tmp, Some(self.uid), Some(self.gid)).expect("chown message");
        fs::rename(&tmp, maildir.join("new").join(&name)).expect("move message to new/");
        message.to_vec()
    }

    /// Wait until `port` accepts and its greeting starts with `prefix`: Dovecot binds its
    /// listeners from the master and greets from login processes, so this is the real signal.
    /// A bounded poll is the only event an external daemon's port offers.
    fn wait_ready(&mut self, port: u16, prefix: &str) {
        self.wait_ready_after(port, b"", prefix);
    }

    /// Like [`Dovecot::wait_ready`], sending `preamble` (a PROXY header) after connecting.
    fn wait_ready_after(&mut self, port: u16, preamble: &[u8], prefix: &str) {
        let deadline = Instant::now() + READY_DEADLINE;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dovecot exited early ({status})\n{}", self.log());
            }
            if let Some(line) = first_line_after(addr, preamble) {
                if line.starts_with(prefix) {
                    return;
                }
                panic!(
                    "dovecot on port {port} greeted {line:?}, want {prefix:?}\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "dovecot not ready on port {port} after {READY_DEADLINE:?}\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGKILL to the whole group (master, auth, login and mail processes): a graceful
        // SIGTERM costs a second per test and the directory is thrown away anyway.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A PROXY protocol v2 header with the LOCAL command (a balancer's own connection, as its
/// health checks are): Dovecot then uses the connection's own addresses.
const LOCAL_V2_HEADER: &[u8] = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";

fn first_line_after(addr: SocketAddr, preamble: &[u8]) -> Option<String> {
    use std::io::Write as _;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(preamble).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    (!line.is_empty()).then_some(line)
}

/// The mail user's uid and gid, creating the user on first use (the tests run as root).
fn ensure_mail_user() -> (u32, u32) {
    if let Some(ids) = lookup_ids(MAIL_USER) {
        return ids;
    }
    // Parallel test processes may race here; the loser's "already exists" is fine.
    let _ = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            MAIL_USER,
        ])
        .status();
    lookup_ids(MAIL_USER).unwrap_or_else(|| {
        panic!("mail user {MAIL_USER} missing and `useradd` failed (run the tests as root)")
    })
}

fn lookup_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn render_config(
    root: &Path,
    mail_dir: &Path,
    uid: u32,
    imap_port: u16,
    sieve_port: Option<u16>,
    submission: Option<(u16, u16)>,
) -> String {
    let root = root.display();
    let mail = mail_dir.display();
    let mut protocols = String::from("imap");
    if sieve_port.is_some() {
        protocols.push_str(" sieve");
    }
    if submission.is_some() {
        protocols.push_str(" submission");
    }
    let mut conf = format!(
        r#"# written by tests/e2e/support/dovecot.rs
instance_name = bg-e2e-{imap_port}
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/log/dovecot.log
info_log_path = {root}/log/dovecot.log
debug_log_path = {root}/log/dovecot.log
hostname = backend.test
protocols = {protocols}
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:{mail}/%u/Maildir
first_valid_uid = {uid}
mail_max_userip_connections = 1000

auth_master_user_separator = *
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/master-users
  master = yes
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
}}

namespace inbox {{
  inbox = yes
  separator = /
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service imap {{
  service_count = 1000
}}
service auth {{
  client_limit = 2000
}}
"#
    );
    if let Some(port) = sieve_port {
        write!(
            conf,
            r#"
service managesieve-login {{
  inet_listener sieve {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service managesieve {{
  service_count = 1000
}}
protocol sieve {{
  managesieve_max_line_length = 65536
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"#
        )
        .expect("format sieve config");
    }
    if let Some((port, relay_port)) = submission {
        write!(
            conf,
            r#"
service submission-login {{
  inet_listener submission {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service submission {{
  service_count = 1000
}}
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
submission_relay_trusted = yes
submission_relay_ssl = no
"#
        )
        .expect("format submission config");
    }
    conf
}

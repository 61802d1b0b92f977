//! A private Postfix (Debian 12: 3.7) per test, for `login = "xclient"`: its own
//! `config_directory`, queue, data directory, log file and maildirs under the test directory,
//! one smtpd on a free loopback port, run with `postfix start-fg` and killed on drop.
//!
//! Mail for `@example.test` is delivered by the `virtual` agent into maildirs
//! (`DIR/postfix/mail/USER/`), owned by `nobody`. Relaying is allowed only to SASL-authenticated
//! sessions (`permit_sasl_authenticated, reject`), so a delivered message proves that Postfix
//! took the XCLIENT `LOGIN=` as the session's identity. Postfix honours `LOGIN=` only with
//! `smtpd_sasl_auth_enable = yes`, which (Cyrus SASL) needs at least one mechanism plugin
//! installed (`libsasl2-modules`) or smtpd dies with "no SASL authentication mechanisms".
//!
//! Facts the tests rely on, seen in the log (`maillog_file`, written by `postlogd`):
//! - an XCLIENT'd session's message line reads
//!   `QUEUEID: client=unknown[ADDR]:PORT, sasl_method=XCLIENT, sasl_username=USER`
//!   (`unknown` because XCLIENT sent `NAME=[UNAVAILABLE]`; the `:PORT` because of
//!   `smtpd_client_port_logging = yes`);
//! - without `smtpd_authorized_xclient_hosts` the EHLO reply has no `XCLIENT` line.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::ports::free_port;

/// The domain whose mail this Postfix delivers locally.
pub const DOMAIN: &str = "example.test";
/// Mailboxes under [`DOMAIN`] (each a maildir).
pub const MAILBOXES: &[&str] = &["alice", "bob"];
/// What Postfix calls itself (`myhostname`).
pub const HOSTNAME: &str = "postfix.test";

const READY_DEADLINE: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(25);

#[derive(Debug)]
pub struct PostfixBuilder {
    dir: PathBuf,
    authorize_xclient: bool,
    extra_main_cf: String,
}

impl PostfixBuilder {
    /// Whether the proxy may use XCLIENT (`smtpd_authorized_xclient_hosts = 127.0.0.1`, the
    /// proxy's address; test clients that log in through it come from other loopback
    /// addresses, as they would from other hosts); on by default.
    pub fn authorize_xclient(mut self, yes: bool) -> Self {
        self.authorize_xclient = yes;
        self
    }

    /// Append raw `main.cf` lines (later settings win).
    pub fn main_cf(mut self, lines: &str) -> Self {
        self.extra_main_cf.push_str(lines);
        self.extra_main_cf.push('\n');
        self
    }

    pub fn start(self) -> Postfix {
        Postfix::start(self)
    }
}

/// A running Postfix; its master and every daemon are killed on drop.
#[derive(Debug)]
pub struct Postfix {
    /// `postfix start-fg` (the postfix-script shell, parent of `master -s`).
    child: Child,
    root: PathBuf,
    pub port: u16,
}

impl Postfix {
    /// Configure a Postfix whose files live under `dir/postfix`.
    pub fn builder(dir: &Path) -> PostfixBuilder {
        PostfixBuilder {
            dir: dir.to_path_buf(),
            authorize_xclient: true,
            extra_main_cf: String::new(),
        }
    }

    fn start(builder: PostfixBuilder) -> Self {
        let root = builder.dir.join("postfix");
        let (etc, queue, data, mail) = (
            root.join("etc"),
            root.join("queue"),
            root.join("data"),
            root.join("mail"),
        );
        for dir in [&etc, &queue, &data, &mail] {
            fs::create_dir_all(dir).expect("create postfix directories");
        }
        // master's lock file and the daemons' caches live in the data directory
        let (postfix_uid, postfix_gid) = ids("postfix");
        chown(&data, Some(postfix_uid), Some(postfix_gid)).expect("chown postfix data dir");
        // the virtual delivery agent writes the maildirs as nobody
        let (mail_uid, mail_gid) = ids("nobody");
        chown(&mail, Some(mail_uid), Some(mail_gid)).expect("chown postfix mail dir");

        let port = free_port();
        let maillog = root.join("maillog");
        let mut main_cf = format!(
            "# written by tests/e2e/support/postfix.rs\n\
             compatibility_level = 3.6\n\
             queue_directory = {queue}\n\
             data_directory = {data}\n\
             mail_owner = postfix\n\
             setgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\n\
             myhostname = {HOSTNAME}\n\
             mydomain = {DOMAIN}\n\
             myorigin = {DOMAIN}\n\
             mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             alias_maps =\n\
             alias_database =\n\
             biff = no\n\
             maillog_file = {maillog}\n\
             maillog_file_prefixes = {root}\n\
             smtpd_client_port_logging = yes\n\
             smtpd_sasl_auth_enable = yes\n\
             smtpd_relay_restrictions = permit_sasl_authenticated, reject\n\
             smtpd_recipient_restrictions = permit_sasl_authenticated, reject\n\
             virtual_mailbox_domains = {DOMAIN}\n\
             virtual_mailbox_base = {mail}\n\
             virtual_mailbox_maps = inline:{{ {boxes} }}\n\
             virtual_uid_maps = static:{mail_uid}\n\
             virtual_gid_maps = static:{mail_gid}\n",
            queue = queue.display(),
            data = data.display(),
            maillog = maillog.display(),
            root = root.display(),
            mail = mail.display(),
            boxes = MAILBOXES
                .iter()
                .map(|user| format!("{user}@{DOMAIN}={user}/"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        if builder.authorize_xclient {
            main_cf.push_str("smtpd_authorized_xclient_hosts = 127.0.0.1\n");
        }
        main_cf.push_str(&builder.extra_main_cf);
        fs::write(etc.join("main.cf"), main_cf).expect("write main.cf");
        fs::write(etc.join("master.cf"), master_cf(port)).expect("write master.cf");

        let stderr = fs::File::create(root.join("start-fg.log")).expect("create start-fg log");
        let child = Command::new("postfix")
            .arg("-c")
            .arg(&etc)
            .arg("start-fg")
            .stdin(Stdio::null())
            .stdout(stderr.try_clone().expect("clone log handle"))
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .expect("spawn postfix (is postfix installed? scripts/test installs it)");
        let mut postfix = Self { child, root, port };
        postfix.wait_ready();
        postfix
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Everything Postfix logged so far, and the output of `postfix start-fg`.
    pub fn log(&self) -> String {
        let maillog = fs::read_to_string(self.root.join("maillog")).unwrap_or_default();
        let start = fs::read_to_string(self.root.join("start-fg.log")).unwrap_or_default();
        format!("--- postfix maillog ---\n{maillog}--- postfix start-fg ---\n{start}")
    }

    /// Wait until the log has a line containing every one of `needles`; that line, or `None`
    /// after `timeout`. (`postlogd` writes the file asynchronously.)
    pub fn wait_for_log_line(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let maillog = fs::read_to_string(self.root.join("maillog")).unwrap_or_default();
            if let Some(line) = maillog
                .lines()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
            {
                return Some(line.to_owned());
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(POLL);
        }
    }

    /// The maildir files delivered to `user@example.test` so far (`new/`), oldest name first.
    pub fn delivered(&self, user: &str) -> Vec<Vec<u8>> {
        let new = self.root.join("mail").join(user).join("new");
        let mut names: Vec<PathBuf> = fs::read_dir(&new)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .map(|path| fs::read(path).expect("read a delivered message"))
            .collect()
    }

    /// Wait until `user` has exactly one delivered message and return its bytes (as stored:
    /// Postfix's headers first, LF line ends).
    pub fn wait_for_delivery(&self, user: &str, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut messages = self.delivered(user);
            match messages.len() {
                0 if Instant::now() < deadline => thread::sleep(POLL),
                0 => panic!(
                    "nothing delivered to {user}@{DOMAIN} within {timeout:?}\n{}",
                    self.log()
                ),
                1 => return messages.remove(0),
                n => panic!("{n} messages delivered to {user}@{DOMAIN}, want 1"),
            }
        }
    }

    /// Wait for smtpd's `220` greeting on the port (the master binds the port before it
    /// starts smtpd, so a connection alone is not enough).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("postfix start-fg exited early ({status})\n{}", self.log());
            }
            if let Some(line) = first_line(self.addr()) {
                assert!(
                    line.starts_with("220 "),
                    "postfix greeted {line:?}\n{}",
                    self.log()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postfix not ready on port {} after {READY_DEADLINE:?}\n{}",
                self.port,
                self.log()
            );
            thread::sleep(POLL);
        }
    }

    /// The master's pid, from its pid file.
    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.root.join("queue/pid/master.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // The master makes itself a session (and process group) leader, and every daemon it
        // forks stays in that group: SIGKILL the group. Graceful shutdown is not needed; the
        // directory is thrown away.
        if let Some(master) = self.master_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{master}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// `master.cf`: one smtpd on loopback `port`, the services delivery needs, and `postlog` for
/// `maillog_file`. Nothing chrooted.
fn master_cf(port: u16) -> String {
    let mut out = String::from("# written by tests/e2e/support/postfix.rs\n");
    let services: &[(&str, &str, &str, &str, &str, &str, &str)] = &[
        // service, type, private, unpriv, chroot, wakeup, maxproc (command follows)
        ("pickup", "unix", "n", "-", "n", "60", "1"),
        ("cleanup", "unix", "n", "-", "n", "-", "0"),
        ("qmgr", "unix", "n", "-", "n", "300", "1"),
        ("rewrite", "unix", "-", "-", "n", "-", "-"),
        ("bounce", "unix", "-", "-", "n", "-", "0"),
        ("defer", "unix", "-", "-", "n", "-", "0"),
        ("trace", "unix", "-", "-", "n", "-", "0"),
        ("verify", "unix", "-", "-", "n", "-", "1"),
        ("flush", "unix", "n", "-", "n", "1000", "0"),
        ("proxymap", "unix", "-", "-", "n", "-", "-"),
        ("smtp", "unix", "-", "-", "n", "-", "-"),
        ("relay", "unix", "-", "-", "n", "-", "-"),
        ("showq", "unix", "n", "-", "n", "-", "-"),
        ("error", "unix", "-", "-", "n", "-", "-"),
        ("retry", "unix", "-", "-", "n", "-", "-"),
        ("discard", "unix", "-", "-", "n", "-", "-"),
        ("local", "unix", "-", "n", "n", "-", "-"),
        ("virtual", "unix", "-", "n", "n", "-", "-"),
        ("anvil", "unix", "-", "-", "n", "-", "1"),
        ("scache", "unix", "-", "-", "n", "-", "1"),
        ("postlog", "unix-dgram", "n", "-", "n", "-", "1"),
    ];
    writeln!(out, "127.0.0.1:{port} inet n - n - - smtpd").expect("format master.cf");
    for (service, kind, private, unpriv, chroot, wakeup, maxproc) in services {
        let command = match *service {
            "rewrite" => "trivial-rewrite",
            "defer" | "trace" => "bounce",
            "relay" => "smtp",
            "retry" => "error",
            "postlog" => "postlogd",
            other => other,
        };
        writeln!(
            out,
            "{service} {kind} {private} {unpriv} {chroot} {wakeup} {maxproc} {command}"
        )
        .expect("format master.cf");
    }
    out
}

/// A system user's uid and gid (`postfix`, `nobody`).
fn ids(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("run id {flag} {user}: {e}"));
        assert!(out.status.success(), "no system user {user:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"))
    };
    (id("-u"), id("-g"))
}

fn first_line(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    (!line.is_empty()).then_some(line)
}

//! A private PostgreSQL server for tests: the Debian package's binaries
//! (`/usr/lib/postgresql/VERSION/bin`), a fresh cluster in a temporary directory, listening
//! on 127.0.0.1 at a free port (and a Unix socket in that directory), password (SCRAM)
//! authentication over TCP. Stopped (`pg_ctl stop -m immediate`) and removed on drop.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the server runs as the
//! `postgres` system user, which owns the directory. Standard library only: this file is
//! shared by the authorization server's tests and the end-to-end tests (`#[path]`).

#![allow(dead_code)] // each includer uses a different part

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The superuser the tests connect as.
pub const USER: &str = "bearergate";
/// How long `pg_ctl` waits for the server to accept connections.
const START_SECONDS: &str = "60";

/// A running server.
#[derive(Debug)]
pub struct TestPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
}

/// What the server's TLS needs: its certificate chain and key (PEM).
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
    /// Refuse connections without TLS (`hostssl` only in `pg_hba.conf`).
    pub required: bool,
}

impl TestPostgres {
    /// A server with a fresh cluster; panics (with the server's log) when it does not start.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Like [`TestPostgres::start`], serving TLS with `tls`.
    pub fn start_with(tls: Option<&ServerTls>) -> Self {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "bearergate-pg-{}-{}-{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).expect("create the PostgreSQL test directory");
        let as_postgres = is_root();
        let server = Self {
            bin: bin_dir(),
            port: free_port(),
            password: random_hex(16),
            dir,
            as_postgres,
        };
        server.init(tls);
        server
    }

    fn init(&self, tls: Option<&ServerTls>) {
        let pwfile = self.dir.join("pwfile");
        fs::write(&pwfile, format!("{}\n", self.password)).expect("write the password file");
        self.give_to_postgres(&self.dir);
        let data = self.data();
        let out = self.as_server(Command::new(self.bin.join("initdb")).args([
            "--pgdata",
            &data.display().to_string(),
            "--username",
            USER,
            "--pwfile",
            &pwfile.display().to_string(),
            "--auth-host=scram-sha-256",
            "--auth-local=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]));
        check("initdb", &out, "");
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n",
            self.port,
            self.dir.display()
        );
        if let Some(tls) = tls {
            fs::write(data.join("server.crt"), &tls.cert_pem).expect("write server.crt");
            fs::write(data.join("server.key"), &tls.key_pem).expect("write server.key");
            self.give_to_postgres(&data.join("server.crt"));
            self.give_to_postgres(&data.join("server.key"));
            set_mode(&data.join("server.key"), 0o600);
            settings
                .push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            if tls.required {
                let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
                fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
            }
        }
        let conf = data.join("postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str(&settings);
        fs::write(&conf, text).expect("write postgresql.conf");
        let out = self.as_server(Command::new(self.bin.join("pg_ctl")).args([
            "--pgdata",
            &data.display().to_string(),
            "--log",
            &self.log_path().display().to_string(),
            "--wait",
            "--timeout",
            START_SECONDS,
            "start",
        ]));
        check("pg_ctl start", &out, &self.log());
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// A URL for database `db` (plaintext: `sslmode=disable`).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}?sslmode=disable",
            self.password, self.port
        )
    }

    /// A URL for database `db` without `sslmode` (the caller adds its own parameters).
    pub fn url_without_sslmode(&self, host: &str, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@{host}:{}/{db}",
            self.password, self.port
        )
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
    }

    /// Runs `sql` in database `db` with psql over the Unix socket; its output, unaligned
    /// and without headers.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = run(Command::new(self.bin.join("psql"))
            .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align"])
            .args(["--set", "ON_ERROR_STOP=1"])
            .arg("--host")
            .arg(&self.dir)
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--username", USER, "--dbname", db, "--command", sql]));
        check(&format!("psql {sql:?}"), &out, "");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Restarts the server (fast shutdown: every client connection is closed), waiting until
    /// it accepts connections again.
    pub fn restart(&self) {
        let out = self.as_server(Command::new(self.bin.join("pg_ctl")).args([
            "--pgdata",
            &self.data().display().to_string(),
            "--log",
            &self.log_path().display().to_string(),
            "--mode",
            "fast",
            "--wait",
            "--timeout",
            START_SECONDS,
            "restart",
        ]));
        check("pg_ctl restart", &out, &self.log());
    }

    /// Stops the server (fast shutdown: every connection is closed; the data is kept, which
    /// an immediate stop would not promise with this test cluster's `fsync = off`);
    /// [`TestPostgres::start_again`] brings it back on the same port.
    pub fn stop(&self) {
        let out = self.as_server(Command::new(self.bin.join("pg_ctl")).args([
            "--pgdata",
            &self.data().display().to_string(),
            "--mode",
            "fast",
            "--wait",
            "stop",
        ]));
        check("pg_ctl stop", &out, &self.log());
    }

    /// Starts a stopped server again, waiting until it accepts connections.
    pub fn start_again(&self) {
        let out = self.as_server(Command::new(self.bin.join("pg_ctl")).args([
            "--pgdata",
            &self.data().display().to_string(),
            "--log",
            &self.log_path().display().to_string(),
            "--wait",
            "--timeout",
            START_SECONDS,
            "start",
        ]));
        check("pg_ctl start", &out, &self.log());
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `command` as the `postgres` user when we are root, else as ourselves.
    fn as_server(&self, command: &mut Command) -> Output {
        if !self.as_postgres {
            return run(command);
        }
        let mut wrapped = Command::new("runuser");
        wrapped
            .args(["-u", "postgres", "--"])
            .arg(command.get_program())
            .args(command.get_args());
        run(&mut wrapped)
    }

    fn give_to_postgres(&self, path: &Path) {
        if self.as_postgres {
            let out = run(Command::new("chown").arg("postgres:postgres").arg(path));
            check("chown", &out, "");
        }
        set_mode(path, if path.is_dir() { 0o700 } else { 0o600 });
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.as_server(Command::new(self.bin.join("pg_ctl")).args([
            "--pgdata",
            &self.data().display().to_string(),
            "--mode",
            "immediate",
            "stop",
        ]));
        if std::thread::panicking() {
            eprintln!(
                "--- PostgreSQL log ({}) ---\n{}",
                self.dir.display(),
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's binaries.
fn bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = fs::read_dir(root)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .max();
    newest
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| panic!("no PostgreSQL under {} (run scripts/test)", root.display()))
}

fn is_root() -> bool {
    let out = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0_u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

fn check(what: &str, out: &Output, log: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}\nlog: {log}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! `bearergate token` run as a mail program runs it: a child process with its own token
//! file, against the built-in issuer of an [`IssuerEnv`]. The person's side of a sign-in
//! (typing the device code, or going through the browser pages) is `tests/issuer/approve.mjs`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::dovecot::USERS;
use super::issuer::{issuer_scripts_dir, IssuerEnv, USER};
use super::run;

/// Long enough for a device flow (the issuer's 5 s interval, a poll or two) and a sign-in.
const LOGIN_DEADLINE: Duration = Duration::from_secs(90);
/// How long the progress line may take to appear: discovery and one request.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(30);

/// The exit statuses `bearergate token` documents.
pub const EXIT_TRY_LATER: i32 = 75;
pub const EXIT_SIGN_IN: i32 = 77;

/// One token file and the commands that use it.
#[derive(Debug)]
pub struct TokenHelper {
    pub file: PathBuf,
    issuer: String,
    ca: PathBuf,
    dir: PathBuf,
}

/// How a `login` ended: its status and everything it wrote on standard error.
#[derive(Debug)]
pub struct LoginRun {
    pub status: ExitStatus,
    pub stderr: String,
    /// The progress line it printed.
    pub progress: String,
}

impl TokenHelper {
    /// A helper whose token file is `tokens/NAME.json` under the test directory (the
    /// `tokens` directory does not exist yet: `login` makes it).
    pub fn new(env: &IssuerEnv, name: &str) -> Self {
        Self::with_issuer(env, name, &env.url)
    }

    /// Like [`TokenHelper::new`], for another issuer than the built-in one.
    pub fn with_issuer(env: &IssuerEnv, name: &str, issuer: &str) -> Self {
        let dir = env.env.dir.path().to_owned();
        Self {
            file: dir.join("tokens").join(format!("{name}.json")),
            issuer: issuer.to_owned(),
            ca: env.env.certs.ca_pem.clone(),
            dir,
        }
    }

    /// `bearergate token ARGS`, with no graphical session (so no browser is started) and
    /// HOME in the test directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bearergate"));
        cmd.arg("token")
            .args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.dir)
            .env_remove("XDG_STATE_HOME")
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::null());
        cmd
    }

    /// The command line a mail program is given: `bearergate token print --token-file F`.
    pub fn print_command(&self) -> String {
        format!(
            "{} token print --token-file {}",
            env!("CARGO_BIN_EXE_bearergate"),
            self.file.display()
        )
    }

    /// `token print --token-file F EXTRA…`, run to completion.
    pub fn print(&self, extra: &[&str]) -> Output {
        let file = self.file.to_string_lossy().into_owned();
        let mut args = vec!["print", "--token-file", &file];
        args.extend_from_slice(extra);
        run(&mut self.command(&args))
    }

    /// `token print`, which must succeed: the token it printed (its only line).
    pub fn token(&self, extra: &[&str]) -> String {
        let out = self.print(extra);
        super::expect_success("bearergate token print", &out);
        let stdout = String::from_utf8(out.stdout).expect("token is UTF-8");
        let token = stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("print's output does not end with a newline"));
        assert!(
            !token.is_empty() && !token.contains(['\n', '\r', ' ']),
            "print must write exactly one token line"
        );
        token.to_owned()
    }

    /// Signs in with the device flow: runs `login`, waits for its progress line, approves
    /// the code as the harness's user, and waits for `login` to end.
    pub fn login_device(&self) -> LoginRun {
        self.login(&[], |progress| {
            let (uri, code) = parse_device_line(progress);
            approve(&self.issuer, &self.ca, &["device", &uri, &code]);
        })
    }

    /// Signs in with `--browser`: the address `login` prints goes through the issuer's
    /// pages, and the redirect comes back to `login`'s loopback port.
    pub fn login_browser(&self) -> LoginRun {
        self.login(&["--browser"], |progress| {
            let url = progress
                .rsplit_once(": ")
                .map(|(_, url)| url.trim().to_owned())
                .unwrap_or_else(|| panic!("no address in {progress:?}"));
            approve(&self.issuer, &self.ca, &["browser", &url]);
        })
    }

    /// Runs `login` with `extra` arguments; `person` is called with its progress line and
    /// does what the person would (nothing, for an issuer that approves by itself).
    pub fn login(&self, extra: &[&str], person: impl FnOnce(&str)) -> LoginRun {
        let file = self.file.to_string_lossy().into_owned();
        let ca = self.ca.to_string_lossy().into_owned();
        let mut args = vec![
            "login",
            "--issuer",
            &self.issuer,
            "--ca-file",
            &ca,
            "--token-file",
            &file,
        ];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bearergate token login");
        let stderr = child.stderr.take().expect("piped stderr");
        let (lines, received) = mpsc::channel::<String>();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let mut seen = Vec::new();
        let progress = loop {
            match received.recv_timeout(PROGRESS_DEADLINE) {
                Ok(line) if line.starts_with("To sign in, open ") => break line,
                Ok(line) => seen.push(line),
                Err(e) => {
                    let _ = child.kill();
                    panic!("no progress line from login ({e}); it said: {seen:?}");
                }
            }
        };
        person(&progress);
        let (done, exited) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = done.send(());
            status
        });
        if exited.recv_timeout(LOGIN_DEADLINE).is_err() {
            panic!("login still running {LOGIN_DEADLINE:?} after the approval");
        }
        let status = waiter.join().expect("waiter").expect("wait for login");
        reader.join().expect("stderr reader");
        seen.extend(received.try_iter());
        LoginRun {
            status,
            stderr: seen.join("\n"),
            progress,
        }
    }

    /// The token file's JSON.
    pub fn stored(&self) -> Value {
        let text = fs::read_to_string(&self.file).expect("read the token file");
        serde_json::from_str(&text).expect("token file is JSON")
    }

    /// A string member of the token file.
    pub fn stored_str(&self, name: &str) -> String {
        self.stored()[name]
            .as_str()
            .unwrap_or_else(|| panic!("token file has no {name}"))
            .to_owned()
    }

    /// Permission bits of the token file and of its directory.
    pub fn modes(&self) -> (u32, u32) {
        let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        (mode(&self.file), mode(self.file.parent().expect("parent")))
    }
}

/// `https://…/verify` and `ABCD-EFGH` from "To sign in, open URI and enter CODE (…)".
pub fn parse_device_line(line: &str) -> (String, String) {
    let rest = line
        .strip_prefix("To sign in, open ")
        .unwrap_or_else(|| panic!("not a progress line: {line:?}"));
    let (uri, rest) = rest
        .split_once(" and enter ")
        .unwrap_or_else(|| panic!("no code in {line:?}"));
    let (code, _) = rest
        .split_once(" (expires in ")
        .unwrap_or_else(|| panic!("no expiry in {line:?}"));
    (uri.to_owned(), code.to_owned())
}

/// `node approve.mjs ISSUER ARGS…` as the harness's user; panics unless every step passed.
fn approve(issuer: &str, ca: &Path, args: &[&str]) {
    let dir = issuer_scripts_dir();
    assert!(
        dir.join("node_modules/openid-client/package.json")
            .is_file(),
        "the Node packages of {} are not installed: run scripts/test",
        dir.display()
    );
    let password = USERS
        .iter()
        .find(|(name, _)| *name == USER)
        .map(|(_, password)| *password)
        .expect("the harness's Dovecot has alice");
    let out = run(Command::new("timeout")
        .args(["--kill-after=10", "60", "node"])
        .arg(dir.join("approve.mjs"))
        .arg(issuer)
        .args(args)
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", ca)
        .env("USERNAME", USER)
        .env("PASSWORD", password));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all_passed = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .all(|l| l.contains("\"ok\":true"));
    assert!(
        out.status.success() && all_passed && !stdout.is_empty(),
        "approve.mjs {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

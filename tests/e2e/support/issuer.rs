//! The built-in authorization server (`[issuer]`) under test, and the third-party software
//! that proves it: the Node scripts of `tests/issuer` (openid-client v6 for every OAuth call,
//! Playwright driving the system's Chromium for the pages), installed by `scripts/test`.
//!
//! [`IssuerEnv`] is a [`TestEnv`] (Dovecot with IMAP, submission into an [`SmtpSink`] and
//! ManageSieve) plus a `proxy.toml` whose `[issuer]` serves HTTPS on a loopback port with the
//! test certificate, beside IMAP, SMTP and ManageSieve listeners and no `[validator]`: the
//! issuer's own tokens are the only ones accepted, as for a user who runs it alone. The Node
//! scripts print one JSON object per line (`{"step", "ok", "detail", ...}`), read back here
//! as a [`Report`].

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use super::dovecot::USERS;
use super::ports::free_port;
use super::proxy::{BackendConfig, ListenerConfig, Proxy, ProxyConfig, TlsMode};
use super::{expect_success, run, SmtpSink, TestEnv};

/// The mail scope the issuer grants by default and the proxy requires.
pub const MAIL_SCOPE: &str = "urn:ietf:params:oauth:scope:mail";
/// The account the scripts sign in as (a Dovecot user of the harness).
pub const USER: &str = "alice";
/// How long one Node script may run before `timeout` kills it: a device flow polls every 5 s,
/// and the slowest scenario group needs well under a minute.
const SCRIPT_TIMEOUT_SECS: &str = "150";

/// How the issuer checks passwords at sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Users {
    /// `users = "backend"`: an IMAP login to the harness's Dovecot.
    Backend,
    /// `users = "passwd-file"`: Dovecot's own passwd-file (`{PLAIN}` passwords).
    PasswdFile,
}

/// What a test changes in `[issuer]`.
#[derive(Debug, Clone)]
pub struct IssuerOptions {
    /// Plain HTTP on loopback instead of HTTPS.
    pub plaintext: bool,
    pub users: Users,
    /// `max_attempts` (the scripts are told it as `MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// `user_code_lifetime`, when not the default.
    pub user_code_lifetime: Option<String>,
    /// `[issuer.client_registration] anonymous`.
    pub anonymous_registration: bool,
    /// Raw `key = value` lines added to `[issuer]`.
    pub extra: Vec<String>,
    /// Keep the harness's `[validator]` (introspection at its fake identity provider)
    /// beside the built-in issuer.
    pub external_validator: bool,
    /// `[issuer] store`: a PostgreSQL URL, for several instances sharing one database
    /// ([`IssuerEnv::another_instance`]).
    pub store: Option<String>,
    /// Also Dovecot's POP3, behind an implicit-TLS POP3 listener ([`IssuerEnv::pop3`]).
    pub pop3: bool,
    /// Also Dovecot's IMAP listener that takes a PROXY protocol header
    /// ([`DovecotBuilder::haproxy`](super::DovecotBuilder::haproxy)), for a backend with
    /// `send_proxy_protocol = true`.
    pub haproxy_dovecot: bool,
    /// More `[[listeners]]`, after the standard ones (their backends must exist: `imap`,
    /// `submission`, `sieve`, and `pop3` with [`IssuerOptions::pop3`]).
    pub extra_listeners: Vec<ListenerConfig>,
}

impl Default for IssuerOptions {
    fn default() -> Self {
        Self {
            plaintext: false,
            users: Users::Backend,
            max_attempts: 3,
            user_code_lifetime: None,
            anonymous_registration: false,
            extra: Vec::new(),
            external_validator: false,
            store: None,
            pop3: false,
            haproxy_dovecot: false,
            extra_listeners: Vec::new(),
        }
    }
}

/// Dovecot, the sink its submission relays to, and the proxy configuration with `[issuer]`.
/// Field order is drop order: the sink outlives nothing that needs it.
#[derive(Debug)]
pub struct IssuerEnv {
    pub env: TestEnv,
    pub sink: SmtpSink,
    pub options: IssuerOptions,
    /// The issuer identifier (`public_url`), e.g. `https://127.0.0.1:PORT`.
    pub url: String,
    /// Its `state_dir` (absolute), kept across restarts.
    pub state_dir: PathBuf,
    pub imap: SocketAddr,
    pub smtp: SocketAddr,
    pub sieve: SocketAddr,
    /// The POP3 listener (implicit TLS), with [`IssuerOptions::pop3`].
    pub pop3: Option<SocketAddr>,
    config: ProxyConfig,
}

impl IssuerEnv {
    pub fn new(label: &str, options: IssuerOptions) -> Self {
        let sink = SmtpSink::start();
        let env = TestEnv::with_dovecot(label, |b| {
            let mut b = b.sieve().submission(sink.port());
            if options.haproxy_dovecot {
                b = b.haproxy();
            }
            if options.pop3 {
                b.pop3()
            } else {
                b
            }
        });
        let port = free_port();
        let scheme = if options.plaintext { "http" } else { "https" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let state_dir = env.dir.path().join("issuer-state");

        let mut config = ProxyConfig::standard(&env);
        let imap = ListenerConfig::imap(TlsMode::Implicit);
        let smtp = ListenerConfig::smtp(TlsMode::Implicit);
        let sieve = ListenerConfig::sieve(TlsMode::Starttls);
        let (imap_addr, smtp_addr, sieve_addr) = (imap.listen, smtp.listen, sieve.listen);
        config.listeners = vec![imap, smtp, sieve];
        let imap_backend = config.backend_mut("imap").clone();
        config.backends = vec![
            imap_backend.clone(),
            BackendConfig {
                name: "submission".into(),
                address: env.dovecot.submission_addr().to_string(),
                ..imap_backend.clone()
            },
            BackendConfig {
                name: "sieve".into(),
                address: env.dovecot.sieve_addr().to_string(),
                ..imap_backend.clone()
            },
        ];
        let mut pop3_addr = None;
        if options.pop3 {
            let pop3 = ListenerConfig::pop3(TlsMode::Implicit);
            pop3_addr = Some(pop3.listen);
            config.listeners.push(pop3);
            config.backends.push(BackendConfig {
                name: "pop3".into(),
                address: env.dovecot.pop3_addr().to_string(),
                ..imap_backend
            });
        }
        config
            .listeners
            .extend(options.extra_listeners.iter().cloned());
        // No [validator]: the built-in issuer alone vouches for tokens (unless asked).
        if !options.external_validator {
            config.validator.raw = Some(String::new());
        }
        config.extra_toml = issuer_table(&env, port, &url, &state_dir, &options);
        Self {
            env,
            sink,
            options,
            url,
            state_dir,
            imap: imap_addr,
            smtp: smtp_addr,
            sieve: sieve_addr,
            pop3: pop3_addr,
            config,
        }
    }

    /// The whole `proxy.toml` this environment runs with.
    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// Start bearergate (a fresh process on the same `state_dir` each time).
    pub fn start(&self) -> Proxy {
        self.env.start_proxy_with(&self.config)
    }

    /// Another instance of the same service: the same `[issuer]` (`public_url`, `store`)
    /// and backends, its own listener ports and issuer `listen`, as behind a load balancer.
    /// Start it with `env.env.start_proxy_with(&instance.config)`.
    pub fn another_instance(&self) -> IssuerInstance {
        let mut config = self.config.clone();
        for listener in &mut config.listeners {
            listener.listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
        }
        let port = free_port();
        config.extra_toml =
            issuer_table(&self.env, port, &self.url, &self.state_dir, &self.options);
        let scheme = if self.options.plaintext {
            "http"
        } else {
            "https"
        };
        IssuerInstance {
            config,
            base_url: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// [`IssuerEnv::post_form`] to the endpoints of the instance at `base_url`.
    pub fn post_form_at(
        &self,
        base_url: &str,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<&str>,
    ) -> (u16, String) {
        let mut cmd = self.curl();
        if let Some(credentials) = basic {
            cmd.arg("--user").arg(credentials);
        }
        for (name, value) in form {
            cmd.arg("--data-urlencode").arg(format!("{name}={value}"));
        }
        self.curl_status(cmd.arg(format!("{base_url}{path}")))
    }

    /// Write the configuration without starting anything, for the admin commands.
    pub fn write_config(&self) -> PathBuf {
        let path = self.env.dir.path().join("issuer-cli.toml");
        fs::write(&path, self.config.render()).expect("write the CLI's proxy.toml");
        path
    }

    /// `bearergate ARGS --config CONFIG`, run to completion.
    pub fn cli(&self, config: &Path, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_bearergate"))
            .args(args)
            .arg("--config")
            .arg(config)
            .current_dir(self.env.dir.path()))
    }

    /// A fresh API key with the `oauth-client-registration` permission: the first line of
    /// `bearergate api-keys create`'s output.
    pub fn api_key(&self, config: &Path) -> String {
        let out = self.cli(
            config,
            &[
                "api-keys",
                "create",
                "--permission",
                "oauth-client-registration",
            ],
        );
        expect_success("bearergate api-keys create", &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let key = stdout.lines().next().unwrap_or_default().trim().to_owned();
        assert!(
            key.starts_with("bgk_") && key.len() > "bgk_".len() + 20,
            "api-keys create printed no bgk_ key first: {stdout:?}"
        );
        key
    }

    /// Run `tests/issuer/flows.mjs` with these scenarios as the harness's user.
    pub fn flows(&self, api_key: &str, scenarios: &[&str], vars: &[(&str, &str)]) -> Report {
        let mut cmd = self.node("flows.mjs");
        cmd.arg(&self.url).args(scenarios).env("API_KEY", api_key);
        cmd.envs(vars.iter().copied());
        Report::run(&format!("flows.mjs {}", scenarios.join(" ")), &mut cmd)
    }

    /// Run `tests/issuer/browser.mjs`, saving screenshots in `screenshots`.
    pub fn browser(&self, api_key: &str, screenshots: &Path) -> Report {
        let mut cmd = self.node("browser.mjs");
        cmd.arg(&self.url)
            .arg(screenshots)
            .env("API_KEY", api_key)
            .env("ISSUER_CERT", &self.env.certs.cert_pem);
        Report::run("browser.mjs", &mut cmd)
    }

    /// Run another script of `tests/issuer` with `args` (after the script's path) and
    /// environment `vars`, as [`IssuerEnv::flows`] runs flows.mjs.
    pub fn script(&self, script: &str, args: &[&str], vars: &[(&str, &str)]) -> Report {
        let mut cmd = self.node(script);
        cmd.args(args).envs(vars.iter().copied());
        Report::run(script, &mut cmd)
    }

    /// `node SCRIPT` under `timeout`, with the test CA, the user's credentials and the
    /// issuer's max_attempts in its environment.
    fn node(&self, script: &str) -> Command {
        let dir = issuer_scripts_dir();
        assert!(
            dir.join("node_modules/openid-client/package.json")
                .is_file()
                && dir
                    .join("node_modules/playwright-core/package.json")
                    .is_file(),
            "the Node packages of {} are not installed: run scripts/test, or `npm ci --prefix \
             tests/issuer`",
            dir.display()
        );
        let password = USERS
            .iter()
            .find(|(name, _)| *name == USER)
            .map(|(_, password)| *password)
            .expect("the harness's Dovecot has alice");
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=10", SCRIPT_TIMEOUT_SECS, "node"])
            .arg(dir.join(script))
            .current_dir(&dir)
            .env("NODE_EXTRA_CA_CERTS", &self.env.certs.ca_pem)
            .env("USERNAME", USER)
            .env("PASSWORD", password)
            .env("MAX_ATTEMPTS", self.options.max_attempts.to_string());
        cmd
    }

    /// POST a form to an endpoint under the issuer with curl (trusting the test CA); returns
    /// (HTTP status, body). `basic` is `user:password` for HTTP Basic.
    pub fn post_form(
        &self,
        path: &str,
        form: &[(&str, &str)],
        basic: Option<&str>,
    ) -> (u16, String) {
        let mut cmd = self.curl();
        if let Some(credentials) = basic {
            cmd.arg("--user").arg(credentials);
        }
        for (name, value) in form {
            cmd.arg("--data-urlencode").arg(format!("{name}={value}"));
        }
        self.curl_status(cmd.arg(format!("{}{path}", self.url)))
    }

    /// POST a JSON document (RFC 7591 registration) with an optional bearer key.
    pub fn post_json(&self, path: &str, json: &Value, bearer: Option<&str>) -> (u16, String) {
        let mut cmd = self.curl();
        cmd.args(["--header", "Content-Type: application/json"])
            .arg("--data-binary")
            .arg(json.to_string());
        if let Some(key) = bearer {
            cmd.arg("--header")
                .arg(format!("Authorization: Bearer {key}"));
        }
        self.curl_status(cmd.arg(format!("{}{path}", self.url)))
    }

    fn curl(&self) -> Command {
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--show-error", "--max-time", "20"])
            .arg("--cacert")
            .arg(&self.env.certs.ca_pem)
            .args(["--write-out", "\n%{http_code}"]);
        cmd
    }

    fn curl_status(&self, cmd: &mut Command) -> (u16, String) {
        let out = run(cmd);
        expect_success("curl to the issuer", &out);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text
            .rsplit_once('\n')
            .unwrap_or_else(|| panic!("curl printed no status: {text:?}"));
        let status = status
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("curl status {status:?}: {e}"));
        (status, body.to_owned())
    }
}

/// A second instance of an [`IssuerEnv`] ([`IssuerEnv::another_instance`]).
#[derive(Debug, Clone)]
pub struct IssuerInstance {
    /// Its whole `proxy.toml`.
    pub config: ProxyConfig,
    /// Where its issuer endpoints answer (its `public_url` is the first instance's).
    pub base_url: String,
}

/// The `[issuer]` table (and its `client_registration`) for this environment.
fn issuer_table(
    env: &TestEnv,
    port: u16,
    url: &str,
    state_dir: &Path,
    options: &IssuerOptions,
) -> String {
    let mut table = format!(
        "\n[issuer]\npublic_url = \"{url}\"\nlisten = \"127.0.0.1:{port}\"\n\
         state_dir = \"{}\"\nplaintext = {}\nmax_attempts = {}\n",
        state_dir.display(),
        options.plaintext,
        options.max_attempts
    );
    match options.users {
        Users::Backend => table.push_str("users = \"backend\"\nusers_backend = \"imap\"\n"),
        Users::PasswdFile => table.push_str(&format!(
            "users = \"passwd-file\"\npasswd_file = \"{}\"\n",
            env.dir.path().join("dovecot/users").display()
        )),
    }
    if let Some(lifetime) = &options.user_code_lifetime {
        table.push_str(&format!("user_code_lifetime = \"{lifetime}\"\n"));
    }
    if let Some(store) = &options.store {
        table.push_str(&format!("store = \"{store}\"\n"));
    }
    for line in &options.extra {
        table.push_str(line);
        table.push('\n');
    }
    table.push_str(&format!(
        "\n[issuer.client_registration]\nrequire = false\nanonymous = {}\n",
        options.anonymous_registration
    ));
    table
}

/// `tests/issuer` in the source tree.
pub fn issuer_scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/issuer")
}

/// Where browser.mjs saves its screenshots: `target/issuer-screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/issuer-screenshots")
}

/// What a Node script printed: its JSON lines, exit status and stderr.
#[derive(Debug)]
pub struct Report {
    pub what: String,
    pub lines: Vec<Value>,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Report {
    fn run(what: &str, cmd: &mut Command) -> Self {
        let out = run(cmd);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines = stdout
            .lines()
            .filter(|line| line.trim_start().starts_with('{'))
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{what}: not a JSON line ({e}): {line:?}"))
            })
            .collect();
        // Shown by the test runner on failure or with --no-capture; tokens left out.
        for line in &lines {
            let line: &Value = line;
            eprintln!(
                "{what}: {} {} {}",
                if line["ok"] == true { "ok  " } else { "FAIL" },
                line["step"].as_str().unwrap_or("?"),
                line["detail"].as_str().unwrap_or("")
            );
        }
        Self {
            what: what.to_owned(),
            lines,
            success: out.status.success(),
            stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics, showing everything the script said, unless it exited 0 and no line failed.
    pub fn assert_success(&self) -> &Self {
        let failed: Vec<&Value> = self.lines.iter().filter(|l| l["ok"] != true).collect();
        assert!(
            self.success && failed.is_empty() && !self.lines.is_empty(),
            "{} failed; failing steps: {failed:#?}\n{}",
            self.what,
            self.transcript()
        );
        self
    }

    /// The line of `step`, which must have passed.
    pub fn step(&self, step: &str) -> &Value {
        let line = self
            .lines
            .iter()
            .rev()
            .find(|l| l["step"] == step)
            .unwrap_or_else(|| panic!("{}: no step {step:?}\n{}", self.what, self.transcript()));
        assert!(
            line["ok"] == true,
            "{}: step {step} failed: {line}\n{}",
            self.what,
            self.transcript()
        );
        line
    }

    /// A string field of a passed step (`access_token`, `refresh_token`, `client_id`).
    pub fn field(&self, step: &str, name: &str) -> String {
        self.step(step)[name]
            .as_str()
            .unwrap_or_else(|| panic!("{}: step {step} has no {name}", self.what))
            .to_owned()
    }

    /// Every step that passed, in order (for asserting a scenario ran to its end).
    pub fn passed_steps(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l["ok"] == true)
            .filter_map(|l| l["step"].as_str())
            .collect()
    }

    fn transcript(&self) -> String {
        format!(
            "--- {} stdout ---\n{}--- stderr ---\n{}",
            self.what, self.stdout, self.stderr
        )
    }
}

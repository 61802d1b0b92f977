//! The typed configuration (`proxy.toml`): parsed with unknown keys refused, then checked
//! for the rules that span several fields. Every error names the key it is about, because
//! "invalid config" without a key path is the most expensive message an admin can get.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use validator::{ScopeKey, ValidatorConfig};

/// One problem found in a configuration file, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `listeners[0].tls`; empty when the file itself is the problem.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl ConfigError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How long open sessions may run on after SIGTERM before the process exits anyway.
    #[serde(default = "defaults::drain_timeout", deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// Bind every listening socket with `SO_REUSEPORT`, so that a new instance can start on
    /// the same addresses before the old one drains (a rolling restart).
    #[serde(default = "defaults::reuse_port")]
    pub reuse_port: bool,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Prometheus metrics and health endpoint.
    pub metrics: Option<MetricsConfig>,
    /// Certificate for implicit-TLS and STARTTLS listeners.
    pub tls: Option<TlsConfig>,
    /// What failed logins cost the client: delays, and budgets per address and per claimed
    /// user.
    #[serde(default)]
    pub auth_limits: AuthLimitsConfig,
    /// Where clients connect.
    pub listeners: Vec<ListenerConfig>,
    /// Mail servers behind the proxy, by name.
    pub backends: BTreeMap<String, BackendConfig>,
    /// How bearer tokens of external issuers are checked: `[validator]`, read straight into
    /// the validator's own configuration (one issuer written there, or
    /// `[[validator.issuers]]`). Optional beside `[issuer]`: no issuer then.
    #[serde(default = "defaults::validator")]
    pub validator: ValidatorConfig,
    /// The built-in authorization server: its tokens are checked in process, beside any
    /// external issuers.
    pub issuer: Option<authz::Settings>,
}

/// `[log]`.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` for people, `json` for log shippers.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter: `info`, `debug`, or directives such as `info,bearergate=debug`.
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: defaults::log_level(),
        }
    }
}

/// Log line format.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the HTTP endpoint serving `/metrics` and `/healthz`.
    pub listen: SocketAddr,
}

/// `[tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[auth_limits]`: shared by every listener, for token and password logins alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthLimitsConfig {
    /// Delay before the reply to a failed login; doubles with each further failure on the
    /// connection or from the address, up to `max_failure_delay`. `"0s"` turns delays off.
    #[serde(default = "defaults::failure_delay", deserialize_with = "duration")]
    pub failure_delay: Duration,
    /// The longest delay.
    #[serde(default = "defaults::max_failure_delay", deserialize_with = "duration")]
    pub max_failure_delay: Duration,
    /// Failed logins one client address (IPv6: one /56) may have in a burst; then its
    /// logins are refused with "try again later" before anyone is asked, except with a
    /// token already known to be valid or the built-in issuer's.
    #[serde(default = "defaults::address_failures")]
    pub address_failures: u32,
    /// One more failed login allowed per this long.
    #[serde(
        default = "defaults::address_failure_refill",
        deserialize_with = "duration"
    )]
    pub address_failure_refill: Duration,
    /// Failed logins naming one user (`user=`, `a=`, the password login's name; trimmed,
    /// ASCII case ignored), from all addresses together, in a burst; then logins naming
    /// that user are refused with "try again later" before anyone is asked, with the same
    /// exceptions.
    #[serde(default = "defaults::user_failures")]
    pub user_failures: u32,
    /// One more failed login for the user allowed per this long.
    #[serde(
        default = "defaults::user_failure_refill",
        deserialize_with = "duration"
    )]
    pub user_failure_refill: Duration,
    /// Identity-provider requests for tokens the cache does not know that one client
    /// address may cause in a burst; a token the provider accepts gives its request back.
    /// Then that address's unknown tokens get "try again later" without a request.
    #[serde(default = "defaults::address_idp_requests")]
    pub address_idp_requests: u32,
    /// One more request allowed per this long.
    #[serde(
        default = "defaults::address_idp_request_refill",
        deserialize_with = "duration"
    )]
    pub address_idp_request_refill: Duration,
}

impl Default for AuthLimitsConfig {
    fn default() -> Self {
        Self {
            failure_delay: defaults::failure_delay(),
            max_failure_delay: defaults::max_failure_delay(),
            address_failures: defaults::address_failures(),
            address_failure_refill: defaults::address_failure_refill(),
            user_failures: defaults::user_failures(),
            user_failure_refill: defaults::user_failure_refill(),
            address_idp_requests: defaults::address_idp_requests(),
            address_idp_request_refill: defaults::address_idp_request_refill(),
        }
    }
}

impl AuthLimitsConfig {
    /// The runtime form.
    pub fn limits(&self) -> crate::throttle::AuthLimits {
        crate::throttle::AuthLimits {
            failure_delay: self.failure_delay,
            max_failure_delay: self.max_failure_delay,
            address_failures: self.address_failures,
            address_failure_refill: self.address_failure_refill,
            user_failures: self.user_failures,
            user_failure_refill: self.user_failure_refill,
            address_idp_requests: self.address_idp_requests,
            address_idp_request_refill: self.address_idp_request_refill,
        }
    }
}

/// Protocols a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// IMAP4rev1.
    Imap,
    /// SMTP submission.
    Smtp,
    /// ManageSieve.
    Sieve,
    /// POP3 (RFC 1939), with STLS and SASL AUTH.
    Pop3,
}

impl Protocol {
    /// Lower-case name, as in the configuration and in logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "imap",
            Protocol::Smtp => "smtp",
            Protocol::Sieve => "sieve",
            Protocol::Pop3 => "pop3",
        }
    }

    /// The key of this protocol's further scopes in `protocol_scopes`.
    pub fn scope_key(self) -> ScopeKey {
        ScopeKey::new(self.name())
    }
}

/// Client-side TLS of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// TLS from the first byte (993, 465).
    Implicit,
    /// Plaintext greeting, upgraded by the STARTTLS command.
    Starttls,
    /// No TLS at all (loopback, or behind a TLS terminator).
    None,
}

/// `[[listeners]]`. Compared by a reload, to tell a changed listener from a kept one.
#[derive(Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Protocol spoken on this port.
    pub protocol: Protocol,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Client-side TLS.
    pub tls: ListenerTls,
    /// Allow authentication before TLS. Tokens then cross the network in clear text.
    #[serde(default)]
    pub allow_plaintext_auth: bool,
    /// Accept password logins (IMAP LOGIN and AUTHENTICATE PLAIN/LOGIN, SMTP AUTH
    /// PLAIN/LOGIN) and have the backend check the password by logging in with it, so
    /// app-password users and OAuth users share one port. Only where authentication is
    /// allowed at all (TLS, or `allow_plaintext_auth`).
    #[serde(default)]
    pub password_fallback: bool,
    /// Send the SASL error challenge before failing a refused token (RFC 7628, Google's
    /// XOAUTH2). `false` fails at once, for clients that never answer the challenge
    /// (mbsync waits for a timeout; JavaMail and neomutt show the base64 to the user).
    #[serde(default = "defaults::yes")]
    pub error_challenge: bool,
    /// Name of a `[backends.NAME]` table.
    pub backend: String,
    /// The proxy's name in SMTP greetings and EHLO replies.
    #[serde(default = "defaults::hostname")]
    pub hostname: String,
    /// A client that sends nothing for this long before logging in is disconnected.
    #[serde(
        default = "defaults::preauth_idle_timeout",
        deserialize_with = "duration"
    )]
    pub preauth_idle_timeout: Duration,
    /// A client that has not logged in this long after connecting is disconnected, however
    /// busy it keeps the connection: bytes trickled in to reset the idle timer (slow-loris)
    /// buy nothing past this.
    #[serde(default = "defaults::preauth_deadline", deserialize_with = "duration")]
    pub preauth_deadline: Duration,
    /// Failed authentications allowed on one connection before it is closed.
    #[serde(default = "defaults::max_auth_failures")]
    pub max_auth_failures: u32,
    /// Concurrent connections on this listener; further ones are accepted, told to try
    /// again later (the protocol's refusal, e.g. `* BYE [UNAVAILABLE]`) and closed.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections one client address (IPv6: one /56) may hold on this listener before
    /// they log in; further ones get the protocol's refusal and are closed. A connection
    /// no longer counts once logged in.
    #[serde(default = "defaults::max_prelogin_per_address")]
    pub max_prelogin_per_address: u32,
    /// Every connection starts with a PROXY protocol header (HAProxy's v1 text or v2
    /// binary, detected per connection), sent by a TCP load balancer in front of the proxy
    /// (HAProxy `send-proxy-v2`, nginx `proxy_protocol on`, cloud load balancers), and the
    /// client address is the one it names: in logs, metrics, `max_prelogin_per_address`,
    /// `[auth_limits]` and what is forwarded to the backend. The header is read before TLS
    /// and before the greeting. Connections from outside `proxy_trusted_networks` are
    /// closed before a byte is sent; one without a valid header within 3 s is closed
    /// without a word. Direct clients cannot use such a listener.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The load balancers that may connect when `proxy_protocol = true`: networks
    /// (`"10.0.0.0/8"`, `"2001:db8::/48"`) or single addresses. Required then; anyone who
    /// may send the header chooses the client address every limit counts by.
    #[serde(default, deserialize_with = "networks")]
    pub proxy_trusted_networks: Vec<ipnet::IpNet>,
}

/// TLS towards a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendTls {
    /// Plain TCP (loopback or a trusted network).
    None,
    /// Plaintext greeting, then STARTTLS before login.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// How the proxy logs in to a backend on the user's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginStrategy {
    /// LOGIN as `master_user_format` (Dovecot master users: `alice*proxymaster`).
    Master,
    /// SASL PLAIN with authzid = user, authcid = master user.
    PlainAuthzid,
    /// Forward the client's own mechanism and token.
    Passthrough,
    /// Postfix XCLIENT (SMTP only).
    Xclient,
}

/// `[backends.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// `host:port` of the mail server.
    pub address: String,
    /// TLS towards the backend.
    #[serde(default = "defaults::backend_tls")]
    pub tls: BackendTls,
    /// Verify the backend's certificate (when `tls` is not `none`).
    #[serde(default = "defaults::yes")]
    pub tls_verify: bool,
    /// Name checked against the backend certificate and sent as SNI; default: the host of
    /// `address`.
    pub server_name: Option<String>,
    /// PEM file of CA certificates to trust for the backend instead of the public roots.
    pub ca_file: Option<PathBuf>,
    /// Login strategy.
    pub login: LoginStrategy,
    /// Master user for `master` and `plain-authzid`.
    pub master_user: Option<String>,
    /// Master password (or `master_password_file`).
    #[serde(default, deserialize_with = "secret_opt")]
    pub master_password: Option<SecretString>,
    /// File whose first line is the master password.
    pub master_password_file: Option<PathBuf>,
    /// LOGIN user sent for `master`: `{user}` and `{master}` are replaced.
    #[serde(default = "defaults::master_user_format")]
    pub master_user_format: String,
    /// Time allowed to connect to the backend.
    #[serde(default = "defaults::connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for greeting, TLS and login together.
    #[serde(default = "defaults::login_timeout", deserialize_with = "duration")]
    pub login_timeout: Duration,
    /// Send the client's address to the backend before login (IMAP `ID` with
    /// `x-originating-ip`; Dovecot honours it from `login_trusted_networks`).
    #[serde(default = "defaults::yes")]
    pub forward_client_address: bool,
    /// Start every connection to the backend with a PROXY protocol v2 header naming the
    /// client's address and the address it connected to (for Dovecot: `haproxy = yes` on
    /// the inet_listener and the proxy in `haproxy_trusted_networks`; Postfix:
    /// `smtpd_upstream_proxy_protocol = haproxy`). Written right after the TCP connect,
    /// before TLS; the proxy's own connections (start-up probes, the built-in issuer's
    /// password checks) send LOCAL. The backend then refuses connections without it.
    #[serde(default)]
    pub send_proxy_protocol: bool,
}

/// Defaults, each with the reason for its number.
mod defaults {
    use std::time::Duration;

    /// Long enough for a client to finish a mailbox sync; short enough for a deploy.
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(30)
    }
    /// On: a restart that starts the new instance first must be able to bind.
    pub fn reuse_port() -> bool {
        true
    }
    pub fn log_level() -> String {
        "info".to_owned()
    }
    /// Dovecot's login processes allow about a minute before authentication.
    pub fn preauth_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    /// Two minutes: a person typing a password into a slow client, not a trickle attack
    /// (Dovecot drops such clients at three).
    pub fn preauth_deadline() -> Duration {
        Duration::from_secs(120)
    }
    /// As Dovecot: three failed logins per connection.
    pub fn max_auth_failures() -> u32 {
        3
    }
    pub fn hostname() -> String {
        "localhost".to_owned()
    }
    pub fn max_connections() -> usize {
        10_000
    }
    /// Twenty: a mail client opens a handful of connections at once (Thunderbird up to
    /// five per account), a few of them behind one NAT address still fit, and one source
    /// cannot hold more than a sliver of `max_connections` with logins it never finishes.
    pub fn max_prelogin_per_address() -> u32 {
        20
    }
    /// Dovecot's `auth_failure_delay`.
    pub fn failure_delay() -> Duration {
        Duration::from_secs(2)
    }
    pub fn max_failure_delay() -> Duration {
        Duration::from_secs(16)
    }
    /// Ten failures in a burst: more than a user mistyping, far fewer than a guesser needs.
    pub fn address_failures() -> u32 {
        10
    }
    pub fn address_failure_refill() -> Duration {
        Duration::from_secs(60)
    }
    /// Ten as well: a user whose devices still try an old password stays under it, while
    /// a botnet guessing one account gets ten tries and then one a minute (1,440 a day),
    /// however many addresses it has.
    pub fn user_failures() -> u32 {
        10
    }
    pub fn user_failure_refill() -> Duration {
        Duration::from_secs(60)
    }
    /// Thirty requests that bring no valid token, then one every two seconds (1,800 an
    /// hour): more than a NAT's worth of expired tokens, while one source can cost a
    /// provider at most half a request a second, outages included (which the failure
    /// budget does not count).
    pub fn address_idp_requests() -> u32 {
        30
    }
    pub fn address_idp_request_refill() -> Duration {
        Duration::from_secs(2)
    }
    pub fn backend_tls() -> super::BackendTls {
        super::BackendTls::None
    }
    pub fn yes() -> bool {
        true
    }
    pub fn master_user_format() -> String {
        "{user}*{master}".to_owned()
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn login_timeout() -> Duration {
        Duration::from_secs(15)
    }
    /// No external issuer: only valid beside `[issuer]` (checks say so otherwise).
    pub fn validator() -> validator::ValidatorConfig {
        validator::ValidatorConfig::several(Vec::new())
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{text}` is not a duration like \"5s\" or \"10m\" ({e})"
        ))
    })
}

/// `proxy_trusted_networks`: CIDR networks, or single addresses (a /32 or /128).
fn networks<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let texts = Vec::<String>::deserialize(deserializer)?;
    texts
        .iter()
        .map(|text| network(text).map_err(serde::de::Error::custom))
        .collect()
}

/// A `proxy_trusted_networks` entry: a network (`"10.0.0.0/8"`) or a single address.
pub fn network(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{text}` is not a network like \"10.0.0.0/8\" or an address"))
}

fn secret_opt<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(Some(SecretString::from(String::deserialize(deserializer)?)))
}

impl Config {
    /// Reads, parses and validates a file. All problems found are returned, each with its key.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError::new(
                "",
                format!("cannot read {}: {e}", path.display()),
            )]
        })?;
        let mut config = Self::parse(&text).map_err(|e| vec![e])?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut errors = Vec::new();
        if let Err(unread) = config.validator.read_secret_files(base) {
            errors.extend(unread.into_iter().map(ConfigError::from));
        }
        // A secret file that cannot be read is named once, not again as "not read".
        let unread: Vec<String> = errors.iter().map(|e| e.key.clone()).collect();
        let rules = config.validate(base).into_iter();
        errors.extend(rules.filter(|e| !unread.contains(&e.key)));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    /// Parses TOML text; the error names the key path where serde stopped. Secret files
    /// are not read yet ([`Config::load`] reads them).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let deserializer = toml::Deserializer::new(text);
        let mut config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().message().to_owned();
            ConfigError::new(if key == "." { String::new() } else { key }, message)
        })?;
        // The issuer's RFC 8707 resources are the listeners, never a list of their own.
        if let Some(issuer) = &mut config.issuer {
            issuer.mail_resources = crate::issuer::mail_resources(&config.listeners);
        }
        Ok(config)
    }
}

impl From<validator::KeyError> for ConfigError {
    fn from(error: validator::KeyError) -> Self {
        ConfigError::new(format!("validator.{}", error.key), error.problem)
    }
}

impl BackendConfig {
    /// Host part of `address` (without IPv6 brackets).
    pub fn host(&self) -> &str {
        split_host_port(&self.address).map_or("", |(host, _)| host)
    }
}

/// Relative paths in the config are relative to the config file's directory.
pub fn resolve(base: &Path, file: &Path) -> PathBuf {
    if file.is_absolute() {
        file.to_path_buf()
    } else {
        base.join(file)
    }
}

/// Reads a secret from the first line of a file.
pub fn read_secret_file(path: &Path) -> std::io::Result<SecretString> {
    let text = std::fs::read_to_string(path)?;
    let first = text.lines().next().unwrap_or("").to_owned();
    Ok(SecretString::from(first))
}

/// Splits `host:port` and `[v6]:port`.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

mod checks;
#[cfg(test)]
mod tests;

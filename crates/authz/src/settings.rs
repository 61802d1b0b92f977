//! `[issuer]`: the authorization server's settings, read straight from `proxy.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// `[issuer]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The issuer identifier, exactly as in metadata and in every token's `iss`: an `https`
    /// URL (or `http` on loopback, for tests) without query, fragment or trailing slash.
    pub public_url: String,
    /// Where the HTTPS endpoints listen.
    pub listen: SocketAddr,
    /// Its own certificate; `[tls]` when absent.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its own private key, with `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Plain HTTP instead of HTTPS: only for a loopback `listen` behind a TLS terminator, or
    /// tests. Default `false`.
    #[serde(default)]
    pub plaintext: bool,
    /// Every connection starts with a PROXY protocol header (v1 or v2) from a load balancer
    /// in `proxy_trusted_networks`, naming the browser or client: its address is the one the
    /// sign-in, device and registration limits count by and the logs show. Read before TLS.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The load balancers that may connect when `proxy_protocol = true`: networks
    /// (`"10.0.0.0/8"`) or single addresses, as for a mail listener. Checked by the proxy,
    /// which owns the sockets.
    #[serde(default)]
    pub proxy_trusted_networks: Vec<String>,
    /// Directory of the embedded store (`issuer.sqlite3`, WAL) and signing keys; relative to
    /// the configuration file.
    pub state_dir: PathBuf,
    /// The store shared by several instances: a PostgreSQL URL in libpq's syntax
    /// (`postgres://user:password@host/db?sslmode=verify-full`). Absent: the embedded SQLite
    /// store in `state_dir`. Its password is redacted wherever settings are shown.
    #[serde(default)]
    pub store: Option<crate::store::StoreUrl>,
    /// How passwords are checked at sign-in.
    #[serde(default)]
    pub users: UserSource,
    /// Dovecot passwd-file, for `users = "passwd-file"`.
    #[serde(default)]
    pub passwd_file: Option<PathBuf>,
    /// The backend whose IMAP login checks passwords, for `users = "backend"`; the first IMAP
    /// listener's backend when absent.
    #[serde(default)]
    pub users_backend: Option<String>,
    /// Appended as `@domain` to a user name typed without one, when the mail server logs in
    /// by address.
    #[serde(default)]
    pub username_domain: Option<String>,
    /// The mail domains whose addresses the autoconfiguration documents answer for
    /// (Thunderbird's `config-v1.1.xml`); empty: `username_domain` when set, else whatever
    /// domain a client asks about.
    #[serde(default)]
    pub mail_domains: Vec<String>,
    /// Lower-case the ASCII letters of the user name typed at sign-in (the token's `sub`
    /// and the login at the backend). Default `true`, as Dovecot's `%Lu`.
    #[serde(default = "defaults::lowercase_username")]
    pub lowercase_username: bool,
    /// Access tokens (JWT) live this long.
    #[serde(
        default = "defaults::access_token_lifetime",
        deserialize_with = "duration"
    )]
    pub access_token_lifetime: Duration,
    /// A refresh token lives this long after it was issued (each rotation issues a new one).
    #[serde(
        default = "defaults::refresh_token_lifetime",
        deserialize_with = "duration"
    )]
    pub refresh_token_lifetime: Duration,
    /// Authorization codes live this long.
    #[serde(
        default = "defaults::auth_code_lifetime",
        deserialize_with = "duration"
    )]
    pub auth_code_lifetime: Duration,
    /// Device and user codes live this long.
    #[serde(
        default = "defaults::user_code_lifetime",
        deserialize_with = "duration"
    )]
    pub user_code_lifetime: Duration,
    /// Wrong guesses that kill an authorization code (wrong PKCE verifier, client or
    /// redirect) or lock user-code entry for a sign-in; also failed passwords per account
    /// before the growing delay applies.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// A new signing key takes over after this long; the old one stays published until the
    /// tokens it signed have expired.
    #[serde(
        default = "defaults::signing_key_lifetime",
        deserialize_with = "duration"
    )]
    pub signing_key_lifetime: Duration,
    /// Users who may sign in to any client id when `client_registration.require = true`
    /// (the `oauth-client-override` permission).
    #[serde(default)]
    pub client_override_users: Vec<String>,
    /// A directory whose `*.html` files replace the built-in page templates of the same name.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// Client registration rules.
    #[serde(default)]
    pub client_registration: ClientRegistration,
    /// The mail services served, which RFC 8707 `resource` parameters may name: one per
    /// listener (`imap://hostname`, …). Not a key of the file: the proxy fills it from its
    /// listeners, so the list can never disagree with what is served.
    #[serde(skip)]
    pub mail_resources: Vec<crate::resource::MailResource>,
}

/// `[issuer.client_registration]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistration {
    /// `true`: only registered clients. `false`: an unregistered client id may get tokens,
    /// but only through the device flow, or the code flow with PKCE S256 and a loopback or
    /// private-use-scheme redirect.
    #[serde(default)]
    pub require: bool,
    /// `true`: RFC 7591 registration is open (rate-limited per address). `false`: it needs an
    /// API key with the `oauth-client-registration` permission (but see `open_native`).
    #[serde(default)]
    pub anonymous: bool,
    /// `true`: a public native client may register without an API key, as the mail-client
    /// OAuth profile (draft-ietf-mailmaint-oauth-public) has every mail app do: no secret
    /// (`token_endpoint_auth_method = "none"`), only loopback or private-use-scheme
    /// redirects (or none, for the device flow), rate-limited per address. Its client id is
    /// self-contained and signed by the server: nothing is written to the store.
    ///
    /// Safe: such a client gets no more than an unregistered client id already gets (PKCE
    /// S256, native redirects, its name shown as unverified, consent asked every time); the
    /// registration only lets it show its name. Default: on unless `require = true`, whose
    /// promise (only the admin's clients) it would otherwise break; set it explicitly to
    /// open native registration beside `require`.
    #[serde(default)]
    pub open_native: Option<bool>,
}

impl ClientRegistration {
    /// Whether public native clients may register without an API key (`open_native`, by
    /// default `!require`).
    pub fn open_native(&self) -> bool {
        self.open_native.unwrap_or(!self.require)
    }
}

/// `users`: where passwords are checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserSource {
    /// Log in to the IMAP backend as the user: works with any mail server.
    #[default]
    Backend,
    /// A Dovecot passwd-file (`passwd_file`).
    PasswdFile,
}

/// Where the defaults come from: the seeds' settings (Stalwart's `oauth.expiry.*`).
pub mod defaults {
    use std::time::Duration;

    /// 1 h.
    pub fn access_token_lifetime() -> Duration {
        Duration::from_secs(3_600)
    }
    /// 30 days.
    pub fn refresh_token_lifetime() -> Duration {
        Duration::from_secs(30 * 86_400)
    }
    /// 10 minutes.
    pub fn auth_code_lifetime() -> Duration {
        Duration::from_secs(600)
    }
    /// 30 minutes.
    pub fn user_code_lifetime() -> Duration {
        Duration::from_secs(1_800)
    }
    /// 3.
    pub fn max_attempts() -> u32 {
        3
    }
    /// `true`.
    pub fn lowercase_username() -> bool {
        true
    }
    /// 30 days.
    pub fn signing_key_lifetime() -> Duration {
        Duration::from_secs(30 * 86_400)
    }
}

fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

impl Settings {
    /// Rules that span keys or need more than a type; each problem with its key (relative to
    /// `issuer`).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        match url::Url::parse(&self.public_url) {
            Err(e) => problems.push(("public_url", format!("not a URL: {e}"))),
            Ok(url) => {
                let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
                if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                    problems.push(("public_url", "must be an https URL".to_owned()));
                }
                if url.path() != "/" {
                    problems.push((
                        "public_url",
                        "must have no path: the endpoints live at /auth/… and /.well-known/…"
                            .to_owned(),
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    problems.push(("public_url", "must have no query or fragment".to_owned()));
                }
                if self.public_url.ends_with('/') {
                    problems.push((
                        "public_url",
                        "must not end with '/': it is compared exactly".to_owned(),
                    ));
                }
            }
        }
        if self.cert.is_some() != self.key.is_some() {
            problems.push(("cert", "cert and key go together".to_owned()));
        }
        if self.users == UserSource::PasswdFile && self.passwd_file.is_none() {
            problems.push((
                "passwd_file",
                "required with users = \"passwd-file\"".to_owned(),
            ));
        }
        for (key, value) in [
            ("access_token_lifetime", self.access_token_lifetime),
            ("refresh_token_lifetime", self.refresh_token_lifetime),
            ("auth_code_lifetime", self.auth_code_lifetime),
            ("user_code_lifetime", self.user_code_lifetime),
            ("signing_key_lifetime", self.signing_key_lifetime),
        ] {
            if value.is_zero() {
                problems.push((key, "must be longer than 0s".to_owned()));
            }
        }
        // The store sweeps a grant a day after its last refresh token is gone: an access
        // token must not outlive that, or its revocation check would find nothing.
        if self.access_token_lifetime > Duration::from_secs(86_400) {
            problems.push(("access_token_lifetime", "must be at most 1 day".to_owned()));
        }
        if self.max_attempts == 0 {
            problems.push(("max_attempts", "must be at least 1".to_owned()));
        }
        if let Some(problem) = self.store.as_ref().and_then(|store| store.problem()) {
            problems.push(("store", problem));
        }
        for domain in &self.mail_domains {
            if !is_domain_name(domain) || domain.bytes().any(|b| b.is_ascii_uppercase()) {
                problems.push((
                    "mail_domains",
                    format!("{domain:?} is not a lower-case domain name (IDNs as xn--…)"),
                ));
            }
        }
        problems
    }
}

/// Whether `name` is a DNS host name as mail addresses use it (RFC 1123 §2.1, RFC 5321
/// §4.1.2): dot-separated labels of ASCII letters, digits and inner hyphens, each 1–63
/// octets, 253 in all, no trailing dot. Internationalised names pass in their A-label form.
pub fn is_domain_name(name: &str) -> bool {
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

#[cfg(test)]
mod mail_domain_tests {
    use super::is_domain_name;

    #[test]
    fn domain_names_are_ldh_labels() {
        for good in [
            "example.test",
            "mail.example.com",
            "xn--bcher-kva.example",
            "a-b.c1",
        ] {
            assert!(is_domain_name(good), "{good}");
        }
        let long_label = format!("{}.test", "a".repeat(64));
        let long_name = ["abcdefghi"; 26].join(".");
        for bad in [
            "",
            "example.test.",
            ".example",
            "exa mple.test",
            "-example.test",
            "example-.test",
            "ex_ample.test",
            "bücher.example",
            "example.test<x>",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_domain_name(bad), "{bad:?}");
        }
    }
}

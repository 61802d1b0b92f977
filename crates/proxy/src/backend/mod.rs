//! The backend side: where the mail server is, how to reach it (TCP, TLS) and how to log in
//! on the user's behalf. Protocol-specific login lives in submodules.

pub mod imap;
pub mod sieve;
pub mod smtp;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use sasl::BearerCredentials;
use secrecy::SecretString;
use tokio::net::TcpStream;

use crate::config::{self, BackendConfig, BackendTls, LoginStrategy, Protocol};
use crate::server::StartError;
use crate::stream::BackendStream;
use crate::tls::{self, BackendTlsClient};

/// Who to log in, and what the proxy knows about the client.
#[derive(Debug, Clone, Copy)]
pub struct LoginRequest<'a> {
    /// The mail user (the token's, never merely the claimed one).
    pub user: &'a str,
    /// What the client presented, for strategies that forward it.
    pub credentials: &'a BearerCredentials,
    /// The client's address, forwarded where the backend accepts it.
    pub client: SocketAddr,
    /// The client's name for itself (SMTP EHLO), replayed to the backend.
    pub client_name: Option<&'a str>,
    /// The proxy's session id, forwarded for log correlation.
    pub session_id: &'a str,
}

/// A logged-in backend connection.
#[derive(Debug)]
pub struct LoggedIn {
    /// The connection, ready for relaying.
    pub stream: BackendStream,
    /// Post-login capabilities, filtered for the client (IMAP).
    pub capabilities: Vec<String>,
    /// Bytes the backend sent after the login's reply: they belong to the client.
    pub leftover: BytesMut,
}

/// Logs in with the protocol's own conversation.
pub async fn login(
    protocol: Protocol,
    backend: &Backend,
    request: LoginRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    match protocol {
        Protocol::Imap => imap::login(backend, request).await,
        Protocol::Smtp => smtp::login(backend, request).await,
        Protocol::Sieve => sieve::login(backend, request).await,
    }
}

/// The client's SASL response rebuilt for a backend that validates the token itself: the
/// same mechanism and token; the user is the token's.
pub fn client_response(request: LoginRequest<'_>) -> Result<Vec<u8>, BackendError> {
    let credentials = request.credentials;
    let token = secrecy::ExposeSecret::expose_secret(&credentials.token);
    let built = match credentials.mechanism {
        sasl::Mechanism::OAuthBearer => sasl::oauthbearer_client_response(
            credentials.authzid.as_deref(),
            token,
            credentials.host.as_deref(),
            credentials.port,
        ),
        sasl::Mechanism::XOAuth2 => sasl::xoauth2_client_response(request.user, token),
    };
    built.map_err(|e| BackendError::Protocol(format!("cannot rebuild the client's response: {e}")))
}

/// A passthrough backend said no: with a challenge, or a plain failure, it is the token's
/// fault; a reply that says the backend is unavailable is not.
pub fn passthrough_refusal(
    challenge: Option<Vec<u8>>,
    unavailable: bool,
    text: String,
) -> BackendError {
    if challenge.is_some() || !unavailable {
        BackendError::TokenRefused { challenge }
    } else {
        BackendError::Refused(text)
    }
}

/// A password login for the backend to check (password fallback).
#[derive(Debug, Clone, Copy)]
pub struct PasswordRequest<'a> {
    /// What the client presented; the backend login uses exactly these.
    pub credentials: &'a sasl::PasswordCredentials,
    /// The client's address, forwarded where the backend accepts it.
    pub client: SocketAddr,
    /// The client's name for itself (SMTP EHLO), replayed to the backend.
    pub client_name: Option<&'a str>,
    /// The proxy's session id, forwarded for log correlation.
    pub session_id: &'a str,
}

/// Logs in with the client's own password, which the backend checks. Returns
/// [`BackendError::PasswordRefused`] when the backend said no to the password; the client's
/// connection stays with the proxy either way until this returns a login.
pub async fn password_login(
    protocol: Protocol,
    backend: &Backend,
    request: PasswordRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    match protocol {
        Protocol::Imap => imap::password_login(backend, request).await,
        Protocol::Smtp => smtp::password_login(backend, request).await,
        Protocol::Sieve => Err(BackendError::Protocol(
            "ManageSieve has no password fallback".into(),
        )),
    }
}

/// What the proxy learned about a backend from talking to it, to advertise before login.
/// `None` until the backend was reached. The lists are shared (`Arc`): every new session's
/// configuration holds them, and none needs a copy of its own.
#[derive(Debug, Default, Clone)]
pub struct Learned {
    /// The keywords of the backend's SMTP EHLO reply, as [`codec::smtp::ehlo_keywords`]
    /// gives them; the session picks the ones it may offer itself.
    pub smtp_extensions: Option<Arc<[(String, String)]>>,
    /// The backend's ManageSieve capability block (before login), every line of it; the
    /// session leaves out what the proxy says itself.
    pub sieve_capabilities: Option<Arc<[codec::sieve::Capability]>>,
}

/// A configured backend.
#[derive(Debug)]
pub struct Backend {
    /// Name of its `[backends.NAME]` table, for logs.
    pub name: String,
    /// `host:port`.
    pub address: String,
    /// TLS mode.
    pub tls_mode: BackendTls,
    /// TLS client set-up, present unless `tls_mode` is none.
    pub tls: Option<BackendTlsClient>,
    /// Login strategy.
    pub login: LoginStrategy,
    /// Master user.
    pub master_user: String,
    /// Master password.
    pub master_password: SecretString,
    /// LOGIN user template for `master`.
    pub master_user_format: String,
    /// TCP connect time limit.
    pub connect_timeout: Duration,
    /// Greeting + TLS + login time limit.
    pub login_timeout: Duration,
    /// Send the client's address before login.
    pub forward_client_address: bool,
    /// Capabilities seen at the last login, advertised to the next clients.
    pub learned: std::sync::Mutex<Learned>,
}

/// Why a backend login did not happen. All of these are the backend's (or the network's)
/// fault, so the client is told to try again later, never that its token is wrong.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// TCP connect failed.
    #[error("connect to {address} failed: {source}")]
    Connect {
        /// Backend address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connect, greeting, TLS or login took too long.
    #[error("backend did not answer in time")]
    Timeout,
    /// I/O error after connecting.
    #[error("backend I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS handshake with the backend failed.
    #[error("backend TLS: {0}")]
    Tls(std::io::Error),
    /// The backend said something the proxy did not expect.
    #[error("unexpected backend reply: {0}")]
    Protocol(String),
    /// The backend refused the login (wrong master password, unknown user, ...).
    #[error("backend refused the login: {0}")]
    Refused(String),
    /// The backend validates tokens itself (`passthrough`) and refused this one; its
    /// challenge, if it sent one, is relayed to the client as it came.
    #[error("backend refused the token")]
    TokenRefused {
        /// The backend's decoded error challenge.
        challenge: Option<Vec<u8>>,
    },
    /// The backend closed the connection.
    #[error("backend closed the connection")]
    Closed,
    /// The backend refused the client's own password (password fallback): the client's
    /// fault, answered like a refused token.
    #[error("backend refused the password")]
    PasswordRefused,
    /// The backend would grant the client something only the proxy may have (SMTP XCLIENT
    /// after login): a configuration error, so the login is refused, never handed over.
    #[error("refusing to hand over the connection: {0}")]
    Unsafe(String),
}

impl Backend {
    /// Builds the runtime form of a `[backends.NAME]` table.
    pub fn from_config(
        name: &str,
        config: &BackendConfig,
        master_password: SecretString,
        base: &Path,
    ) -> Result<Self, StartError> {
        let tls = match config.tls {
            BackendTls::None => None,
            BackendTls::Starttls | BackendTls::Implicit => {
                let server_name = config
                    .server_name
                    .clone()
                    .unwrap_or_else(|| config.host().to_owned());
                let ca_file = config.ca_file.as_ref().map(|f| config::resolve(base, f));
                Some(tls::backend_client(
                    &server_name,
                    config.tls_verify,
                    ca_file.as_deref(),
                )?)
            }
        };
        Ok(Self {
            name: name.to_owned(),
            address: config.address.clone(),
            tls_mode: config.tls,
            tls,
            login: config.login,
            master_user: config.master_user.clone().unwrap_or_default(),
            master_password,
            master_user_format: config.master_user_format.clone(),
            connect_timeout: config.connect_timeout,
            login_timeout: config.login_timeout,
            forward_client_address: config.forward_client_address,
            learned: std::sync::Mutex::new(Learned::default()),
        })
    }

    /// Opens TCP (and TLS for `implicit`).
    pub async fn connect(&self) -> Result<BackendStream, BackendError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(|source| BackendError::Connect {
                address: self.address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        match (self.tls_mode, &self.tls) {
            (BackendTls::Implicit, Some(tls)) => self.start_tls(tcp, tls).await,
            _ => Ok(BackendStream::Plain(tcp)),
        }
    }

    /// Runs the TLS handshake over an established TCP connection.
    pub async fn start_tls(
        &self,
        tcp: TcpStream,
        tls: &BackendTlsClient,
    ) -> Result<BackendStream, BackendError> {
        let stream = tls
            .connector
            .connect(tls.server_name.clone(), tcp)
            .await
            .map_err(BackendError::Tls)?;
        Ok(BackendStream::Tls(Box::new(stream)))
    }

    /// What was learned so far.
    pub fn learned(&self) -> Learned {
        self.learned.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Remembers the keywords of an EHLO reply (the last one before login), so that the
    /// next clients are offered the extensions the backend has (CHUNKING, SMTPUTF8, ...).
    pub fn learn_smtp_extensions(&self, keywords: &[(String, String)]) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.smtp_extensions = Some(keywords.into());
        }
    }

    /// Remembers the ManageSieve capability block (the last one before login).
    pub fn learn_sieve_capabilities(&self, capabilities: Vec<codec::sieve::Capability>) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.sieve_capabilities = Some(capabilities.into());
        }
    }

    /// Whether a name a client gives for a password login could reach the proxy's own
    /// master identity on the backend: the master user's name appears in it as a word of its
    /// own (`proxymaster`, `alice*proxymaster`, ` ProxyMaster@example.com`, `proxymaster/bob`).
    /// Such logins are refused before the backend is asked, so the backend's trust in the
    /// proxy never serves a client and the master password cannot be guessed through the
    /// proxy. A word, not the `master_user_format` pattern: backends rewrite names before
    /// they look for the separator (Dovecot's `auth_username_format = %Ln` strips a domain,
    /// so `alice*proxymaster@example.com` would log in as alice).
    pub fn is_master_identity(&self, name: &str) -> bool {
        let master = self.master_user.trim().to_lowercase();
        if master.is_empty() {
            return false;
        }
        let name = name.to_lowercase();
        // A name character joins words; anything else (`*`, `@`, `/`, `%`, space, ...) may be
        // a backend's separator.
        let joins = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-' | '.');
        name.match_indices(&master).any(|(at, found)| {
            let before = name[..at].chars().next_back();
            let after = name[at + found.len()..].chars().next();
            !before.is_some_and(joins) && !after.is_some_and(joins)
        })
    }

    /// The LOGIN user name for the `master` strategy.
    pub fn master_login_name(&self, user: &str) -> String {
        self.master_user_format
            .replace("{master}", &self.master_user)
            .replace("{user}", user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(format: &str) -> Backend {
        Backend {
            name: "imap".into(),
            address: "127.0.0.1:143".into(),
            tls_mode: BackendTls::None,
            tls: None,
            login: LoginStrategy::Master,
            master_user: "proxymaster".into(),
            master_password: SecretString::from("secret"),
            master_user_format: format.into(),
            connect_timeout: Duration::from_secs(1),
            login_timeout: Duration::from_secs(1),
            forward_client_address: true,
            learned: std::sync::Mutex::new(Learned::default()),
        }
    }

    #[test]
    fn master_identities_are_recognised_in_any_form() {
        let dovecot = backend("{user}*{master}");
        for name in [
            "proxymaster",
            "ProxyMaster",
            " proxymaster ",
            "alice*proxymaster",
            "bob*PROXYMASTER",
            "alice*proxymaster@example.com",
            "proxymaster@example.com",
            "proxymaster/alice",
            "alice%proxymaster",
        ] {
            assert!(dovecot.is_master_identity(name), "{name}");
        }
        for name in [
            "alice",
            "proxymaster2",
            "xproxymaster",
            "proxymaster.bob",
            "alice*proxy",
            "alice@example.com",
        ] {
            assert!(!dovecot.is_master_identity(name), "{name}");
        }
    }
}

//! The backend side: where the mail server is, how to reach it (TCP, TLS) and how to log in
//! on the user's behalf. Protocol-specific login lives in submodules.

pub mod imap;
pub mod sieve;
pub mod smtp;

use std::net::SocketAddr;
use std::path::Path;
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

/// Opens a backend connection up to the point where the client's own password login can be
/// sent (password fallback).
pub async fn open_for_password(
    protocol: Protocol,
    backend: &Backend,
    client: SocketAddr,
    client_name: Option<&str>,
    session_id: &str,
) -> Result<LoggedIn, BackendError> {
    match protocol {
        Protocol::Imap => imap::open_for_password(backend, client, session_id).await,
        Protocol::Smtp => smtp::open_for_password(backend, client_name).await,
        Protocol::Sieve => Err(BackendError::Protocol(
            "ManageSieve has no password fallback".into(),
        )),
    }
}

/// What the proxy learned about a backend from talking to it, to advertise before login.
#[derive(Debug, Default, Clone)]
pub struct Learned {
    /// The backend's SMTP `SIZE` limit.
    pub smtp_size: Option<u64>,
    /// The backend's ManageSieve `SIEVE` extensions.
    pub sieve_extensions: Option<String>,
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

    /// Remembers the SMTP `SIZE` from an EHLO reply.
    pub fn learn_smtp_size(&self, keywords: &[(String, String)]) {
        let size = keywords
            .iter()
            .find(|(k, _)| k == "SIZE")
            .and_then(|(_, v)| v.trim().parse().ok());
        if let Ok(mut learned) = self.learned.lock() {
            learned.smtp_size = size;
        }
    }

    /// Remembers the ManageSieve `SIEVE` capability.
    pub fn learn_sieve_extensions(&self, extensions: Option<String>) {
        if let Ok(mut learned) = self.learned.lock() {
            learned.sieve_extensions = extensions;
        }
    }

    /// The LOGIN user name for the `master` strategy.
    pub fn master_login_name(&self, user: &str) -> String {
        self.master_user_format
            .replace("{master}", &self.master_user)
            .replace("{user}", user)
    }
}

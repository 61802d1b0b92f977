//! The backend side: where the mail server is, how to reach it (TCP, TLS), and the one
//! async loop that drives every protocol's backend-login machine
//! ([`session::backend`]): connect, write the machine's output, read into its buffer, run
//! the TLS handshake when it asks, until it reports a login or a failure. The
//! conversations themselves (greeting, STARTTLS, capabilities, ID / XCLIENT, LOGIN /
//! AUTHENTICATE / AUTH, the error challenge) are the machines'; time limits are the
//! caller's (`login_timeout`) and [`Backend::connect`]'s.

pub mod sieve;
pub mod smtp;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use codec::proxy_protocol;
use sasl::BearerCredentials;
use secrecy::SecretString;
use session::backend::{
    self as machine, BackendLogin, Event, Fault, LoginError, MasterUser, Strategy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{self, BackendConfig, BackendTls, LoginStrategy, Protocol};
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
    /// The address the client connected to, the destination of the PROXY header
    /// (`send_proxy_protocol`).
    pub destination: SocketAddr,
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

/// Logs in with the protocol's own conversation, as the backend's `login` strategy says.
pub async fn login(
    protocol: Protocol,
    backend: &Backend,
    request: LoginRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    let user = request.user.to_owned();
    let strategy = match backend.login {
        LoginStrategy::Master => Strategy::Master {
            user,
            master: backend.master(),
        },
        LoginStrategy::PlainAuthzid => Strategy::PlainAuthzid {
            user,
            master: backend.master(),
        },
        LoginStrategy::Passthrough => Strategy::Passthrough {
            user,
            credentials: request.credentials.clone(),
        },
        LoginStrategy::Xclient => Strategy::Xclient { user },
    };
    let header = backend.proxy_header(Some((request.client, request.destination)));
    let request = backend.request(
        strategy,
        request.client,
        request.client_name,
        request.session_id,
    );
    run(protocol, backend, request, header.as_deref()).await
}

/// A password login for the backend to check (password fallback).
#[derive(Debug, Clone, Copy)]
pub struct PasswordRequest<'a> {
    /// What the client presented; the backend login uses exactly these.
    pub credentials: &'a sasl::PasswordCredentials,
    /// The client's address, forwarded where the backend accepts it.
    pub client: SocketAddr,
    /// The address the client connected to, the destination of the PROXY header
    /// (`send_proxy_protocol`); `None` when the login is the proxy's own (the built-in
    /// issuer checking a password), which the header then says (LOCAL).
    pub destination: Option<SocketAddr>,
    /// The client's name for itself (SMTP EHLO), replayed to the backend.
    pub client_name: Option<&'a str>,
    /// The proxy's session id, forwarded for log correlation.
    pub session_id: &'a str,
}

/// Logs in with the client's own password, which the backend checks. Returns
/// [`BackendError::PasswordRefused`] when the backend said no to the password; the client's
/// connection stays with the proxy either way until this returns a login. ManageSieve has
/// no password fallback: refused before connecting.
pub async fn password_login(
    protocol: Protocol,
    backend: &Backend,
    request: PasswordRequest<'_>,
) -> Result<LoggedIn, BackendError> {
    let strategy = Strategy::Password(request.credentials.clone());
    let header = backend.proxy_header(request.destination.map(|to| (request.client, to)));
    let request = backend.request(
        strategy,
        request.client,
        request.client_name,
        request.session_id,
    );
    run(protocol, backend, request, header.as_deref()).await
}

/// Builds the protocol's machine (refusing a strategy it does not have before connecting)
/// and drives it to a login, the connection starting with `header` (PROXY protocol) when
/// there is one.
async fn run(
    protocol: Protocol,
    backend: &Backend,
    request: machine::LoginRequest,
    header: Option<&[u8]>,
) -> Result<LoggedIn, BackendError> {
    use machine::{imap::ImapLogin, pop3::Pop3Login, sieve::SieveLogin, smtp::SmtpLogin};
    let driven = match protocol {
        Protocol::Imap => drive(backend, ImapLogin::new(request)?, header).await?,
        Protocol::Smtp => drive(backend, SmtpLogin::new(request)?, header).await?,
        Protocol::Sieve => drive(backend, SieveLogin::new(request)?, header).await?,
        Protocol::Pop3 => drive(backend, Pop3Login::new(request)?, header).await?,
    };
    match driven {
        Driven::LoggedIn(logged_in) => Ok(logged_in),
        Driven::Probed => Err(LoginError::Finished.into()),
    }
}

/// How a machine's conversation ended well.
#[derive(Debug)]
enum Driven {
    LoggedIn(LoggedIn),
    Probed,
}

/// The one loop for every backend conversation: connect (TCP, the PROXY `header` when there
/// is one, and TLS for `implicit`), then write what the machine says, read what it needs,
/// run the STARTTLS handshake when it asks — discarding every byte read before it — and
/// remember what it learned, until it is done.
async fn drive<M: BackendLogin>(
    backend: &Backend,
    mut machine: M,
    header: Option<&[u8]>,
) -> Result<Driven, BackendError> {
    let mut stream = backend.connect(header).await?;
    let mut input = BytesMut::with_capacity(1_024);
    loop {
        let event = machine.advance(&mut input);
        if !machine.output().is_empty() {
            stream.write_all(machine.output()).await?;
            stream.flush().await?;
            machine.output_written();
        }
        match event {
            Event::NeedInput => {
                if stream.read_buf(&mut input).await? == 0 {
                    return Err(machine.closed().into());
                }
            }
            Event::StartTls => {
                // Whatever followed the STARTTLS reply in clear text is not trusted.
                input.clear();
                stream = backend.upgrade(stream).await?;
                machine
                    .tls_started()
                    .map_err(|_| BackendError::from(LoginError::Finished))?;
            }
            Event::Learned(learned) => backend.learn(learned),
            Event::LoggedIn(machine::LoggedIn {
                capabilities,
                leftover,
            }) => {
                return Ok(Driven::LoggedIn(LoggedIn {
                    stream,
                    capabilities,
                    leftover,
                }))
            }
            Event::Probed => return Ok(Driven::Probed),
            Event::Failed(error) => return Err(error.into()),
        }
    }
}

/// Runs a start-up probe (see [`smtp::probe`], [`sieve::probe`]) within `login_timeout`. It
/// is the proxy's own connection: its PROXY header, if any, says LOCAL.
async fn probe<M: BackendLogin>(backend: &Backend, machine: M) -> Result<(), BackendError> {
    let header = backend.proxy_header(None);
    let driven = drive(backend, machine, header.as_deref());
    tokio::time::timeout(backend.login_timeout, driven)
        .await
        .map_err(|_| BackendError::Timeout)?
        .map(drop)
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
    /// Start each connection with a PROXY protocol v2 header.
    pub send_proxy_protocol: bool,
    /// Capabilities seen at the last login, advertised to the next clients.
    pub learned: std::sync::Mutex<Learned>,
}

/// Why a backend login did not happen. Only [`BackendError::TokenRefused`] and
/// [`BackendError::PasswordRefused`] are the client's fault; everything else tells the
/// client to try again later.
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
    /// The login asked for STARTTLS where the proxy cannot start TLS.
    #[error("STARTTLS {0}")]
    NoStartTls(&'static str),
    /// The backend validates tokens itself (`passthrough`) and refused this one; its
    /// challenge, if it sent one, is relayed to the client as it came.
    #[error("backend refused the token")]
    TokenRefused {
        /// The backend's decoded error challenge.
        challenge: Option<Vec<u8>>,
    },
    /// The backend refused the client's own password (password fallback): the client's
    /// fault, answered like a refused token.
    #[error("backend refused the password")]
    PasswordRefused,
    /// The login conversation failed for a reason that is not the client's: the backend is
    /// unavailable, refused the proxy, misbehaved, or would grant the client too much.
    #[error(transparent)]
    Login(LoginError),
}

impl From<LoginError> for BackendError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::TokenRefused { challenge } => Self::TokenRefused { challenge },
            LoginError::PasswordRefused => Self::PasswordRefused,
            other => Self::Login(other),
        }
    }
}

impl BackendError {
    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        match self {
            Self::TokenRefused { .. } | Self::PasswordRefused => Fault::Client,
            Self::Connect { .. } | Self::Timeout | Self::Io(_) | Self::Tls(_) => Fault::Backend,
            Self::NoStartTls(_) => Fault::Configuration,
            Self::Login(error) => error.fault(),
        }
    }
}

impl Backend {
    /// Builds the runtime form of a `[backends.NAME]` table.
    pub fn from_config(
        name: &str,
        config: &BackendConfig,
        master_password: SecretString,
        base: &Path,
    ) -> Result<Self, tls::TlsSetupError> {
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
            send_proxy_protocol: config.send_proxy_protocol,
            learned: std::sync::Mutex::new(Learned::default()),
        })
    }

    /// Opens TCP, writes the PROXY protocol `header` when there is one (before anything
    /// else, TLS included: the backend reads it off the socket), and starts TLS for
    /// `implicit`.
    pub async fn connect(&self, header: Option<&[u8]>) -> Result<BackendStream, BackendError> {
        let mut tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| BackendError::Timeout)?
            .map_err(|source| BackendError::Connect {
                address: self.address.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        if let Some(header) = header {
            // One write into a new socket's empty send buffer: it goes at once.
            tcp.write_all(header).await?;
        }
        match (self.tls_mode, &self.tls) {
            (BackendTls::Implicit, Some(tls)) => self.start_tls(tcp, tls).await,
            _ => Ok(BackendStream::Plain(tcp)),
        }
    }

    /// The PROXY protocol v2 header a connection to this backend starts with, when it has
    /// `send_proxy_protocol`: the client and the address it connected to (`relayed`), or
    /// LOCAL for a connection that is the proxy's own (`None`).
    pub fn proxy_header(&self, relayed: Option<(SocketAddr, SocketAddr)>) -> Option<Vec<u8>> {
        if !self.send_proxy_protocol {
            return None;
        }
        let addresses = match relayed {
            Some((source, destination)) => proxy_protocol::Addresses::Tcp {
                source,
                destination,
            },
            None => proxy_protocol::Addresses::Local,
        };
        let mut header = Vec::with_capacity(proxy_protocol::V2_FIXED_LEN + 36);
        proxy_protocol::write_v2(&addresses, &mut header);
        Some(header)
    }

    /// Upgrades a plaintext connection after STARTTLS.
    async fn upgrade(&self, stream: BackendStream) -> Result<BackendStream, BackendError> {
        let Some(tls) = &self.tls else {
            return Err(BackendError::NoStartTls("without TLS settings"));
        };
        let BackendStream::Plain(tcp) = stream else {
            return Err(BackendError::NoStartTls("on a TLS connection"));
        };
        self.start_tls(tcp, tls).await
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

    /// Remembers what a login machine learned.
    fn learn(&self, learned: machine::Learned) {
        match learned {
            machine::Learned::SmtpExtensions(keywords) => self.learn_smtp_extensions(&keywords),
            machine::Learned::SieveCapabilities(block) => self.learn_sieve_capabilities(block),
        }
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
        self.master().login_name(user)
    }

    /// The proxy's own identity on this backend, for the login machines.
    fn master(&self) -> MasterUser {
        MasterUser {
            name: self.master_user.clone(),
            password: self.master_password.clone(),
            login_format: self.master_user_format.clone(),
        }
    }

    /// A login machine's request: the strategy, the client, and this backend's settings.
    fn request(
        &self,
        strategy: Strategy,
        client: SocketAddr,
        client_name: Option<&str>,
        session_id: &str,
    ) -> machine::LoginRequest {
        machine::LoginRequest {
            strategy,
            client,
            client_name: client_name.map(str::to_owned),
            session_id: session_id.to_owned(),
            starttls: self.tls_mode == BackendTls::Starttls,
            forward_client_address: self.forward_client_address,
        }
    }
}

#[cfg(test)]
mod tests;

//! Backend-login machines: the proxy in the client role, logging in to the mail server for a
//! user whose token (or password) it accepted. Sans-I/O, like the sessions beside them.
//!
//! Each protocol has one machine ([`imap::ImapLogin`], [`smtp::SmtpLogin`],
//! [`sieve::SieveLogin`], [`pop3::Pop3Login`]) built from a plain [`LoginRequest`]: no
//! configuration types, no sockets. The driver runs every machine with the same loop (the
//! [`BackendLogin`] trait):
//!
//! 1. connect (TCP, and TLS for an implicit-TLS backend);
//! 2. call [`BackendLogin::advance`] with its buffer of the backend's bytes;
//! 3. write [`BackendLogin::output`] whatever the event, then call
//!    [`BackendLogin::output_written`];
//! 4. act on the [`Event`]: read more ([`Event::NeedInput`]; at end of input report
//!    [`BackendLogin::closed`]), run the TLS handshake ([`Event::StartTls`]: **discard every
//!    buffered byte first**, then [`BackendLogin::tls_started`]), remember what the backend
//!    offers ([`Event::Learned`]), or stop ([`Event::LoggedIn`], [`Event::Probed`],
//!    [`Event::Failed`]).
//!
//! Time limits are the driver's. Every buffer is bounded by the codec framer the machine
//! reads with; a reply over its limit fails the login ([`ProtocolError::TooLong`]).
//!
//! Failures say whose fault they were ([`LoginError::fault`]): a refused token or password
//! is the client's; "try again later" and misbehaviour are the backend's; a backend that
//! refuses the proxy itself (wrong master password, STARTTLS refused, XCLIENT not granted)
//! is a configuration error.
//!
//! Secrets (the master password, the client's token or password, the SASL responses built
//! from them, the commands that carry them) never show in `Debug` output: requests hold them
//! in [`SecretString`], machines keep pending responses in [`SecretSlice`] and their output
//! in a buffer that prints only its length and is zeroed once written.

mod error;
pub mod imap;
pub mod pop3;
pub mod sieve;
pub mod smtp;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::SocketAddr;

use bytes::BytesMut;
use sasl::{BearerCredentials, PasswordCredentials};
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretSlice, SecretString};

pub use self::error::{Fault, LoginError, Privilege, ProtocolError, Stage};
pub use crate::WrongState;

/// What the driver must do next. Pending output is always written first.
#[derive(Debug)]
#[must_use = "the driver must act on what the machine asks for"]
pub enum Event {
    /// Read more backend bytes into the buffer and call `advance` again.
    NeedInput,
    /// Discard every buffered byte (nothing read before the handshake is trusted), run the
    /// TLS handshake, then call [`BackendLogin::tls_started`].
    StartTls,
    /// The backend said what it offers before login: the driver may remember it for the
    /// next clients, then calls `advance` again.
    Learned(Learned),
    /// The backend accepted the login: the connection is the client's now.
    LoggedIn(LoggedIn),
    /// A probe ([`smtp::SmtpLogin::probe`], [`sieve::SieveLogin::probe`]) is done: write
    /// the output (its goodbye) and close.
    Probed,
    /// The login failed; write the output (if any) and close.
    Failed(LoginError),
}

/// What a backend offers before login, as the proxy advertises it to its own clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learned {
    /// The keywords of the backend's last EHLO reply before login, as
    /// [`codec::smtp::ehlo_keywords`] gives them.
    SmtpExtensions(Vec<(String, String)>),
    /// The backend's ManageSieve capability block (the one after STARTTLS, if any).
    SieveCapabilities(Vec<codec::sieve::Capability>),
}

/// A successful login.
#[derive(Debug)]
pub struct LoggedIn {
    /// The backend's post-login capabilities, filtered for the client (IMAP; empty for the
    /// other protocols).
    pub capabilities: Vec<String>,
    /// Bytes the backend sent after the login's last reply: they belong to the client.
    pub leftover: BytesMut,
}

/// One backend login, whatever the protocol: what the driver sees.
pub trait BackendLogin {
    /// Bytes to send to the backend, before anything else happens.
    fn output(&self) -> &[u8];
    /// All of [`BackendLogin::output`] was written.
    fn output_written(&mut self);
    /// Processes buffered backend bytes until the machine needs the driver. After
    /// [`Event::LoggedIn`] the bytes left belong to the client (and are in the event).
    fn advance(&mut self, input: &mut BytesMut) -> Event;
    /// The TLS handshake the machine asked for ([`Event::StartTls`]) completed.
    fn tls_started(&mut self) -> Result<(), WrongState<()>>;
    /// The backend closed the connection (or the read failed) before the end: the failure
    /// to report. The machine is finished.
    fn closed(&mut self) -> LoginError;
}

/// Who to log in, how, and what the proxy knows about the client.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// How to log in.
    pub strategy: Strategy,
    /// The client's address, forwarded where the backend accepts it (IMAP `ID`, SMTP
    /// `XCLIENT`).
    pub client: SocketAddr,
    /// The client's name for itself (SMTP EHLO), replayed to the backend; `None`: the
    /// proxy's own name, [`DEFAULT_CLIENT_NAME`].
    pub client_name: Option<String>,
    /// The proxy's session id, forwarded for log correlation (IMAP `ID`).
    pub session_id: String,
    /// Upgrade the connection with STARTTLS before anything else.
    pub starttls: bool,
    /// Tell the backend the client's address before login, where it offers a way.
    pub forward_client_address: bool,
}

/// The EHLO name the proxy gives when the client gave none (password fallback before
/// EHLO, start-up probes).
pub const DEFAULT_CLIENT_NAME: &str = "bearergate";

/// How the proxy logs in to the backend.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// A master user logs in for the user: IMAP `LOGIN`, POP3 `USER`/`PASS`, SASL PLAIN
    /// elsewhere, with the name [`MasterUser::login_name`] makes (Dovecot:
    /// `alice*proxymaster`).
    Master {
        /// The mail user (the token's).
        user: String,
        /// The proxy's own credentials.
        master: MasterUser,
    },
    /// SASL PLAIN with authorization id = user, authentication id = the master user.
    PlainAuthzid {
        /// The mail user (the token's).
        user: String,
        /// The proxy's own credentials.
        master: MasterUser,
    },
    /// The client's own mechanism and token, for a backend that validates tokens itself;
    /// its error challenge is kept for the client.
    Passthrough {
        /// The mail user (the token's): XOAUTH2's `user=`.
        user: String,
        /// What the client presented.
        credentials: BearerCredentials,
    },
    /// Postfix XCLIENT (SMTP only): the proxy vouches for the user.
    Xclient {
        /// The mail user (the token's).
        user: String,
    },
    /// The password fallback: the client's own user name and password, checked by the
    /// backend (IMAP, SMTP, POP3).
    Password(PasswordCredentials),
}

impl Strategy {
    /// The strategy's name, as in the configuration.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Master { .. } => "master",
            Self::PlainAuthzid { .. } => "plain-authzid",
            Self::Passthrough { .. } => "passthrough",
            Self::Xclient { .. } => "xclient",
            Self::Password(_) => "password",
        }
    }
}

/// The proxy's own identity on the backend.
#[derive(Debug, Clone)]
pub struct MasterUser {
    /// The master user's name.
    pub name: String,
    /// Its password.
    pub password: SecretString,
    /// The login name for [`Strategy::Master`]: `{user}` and `{master}` are replaced
    /// (Dovecot: `{user}*{master}`).
    pub login_format: String,
}

impl MasterUser {
    /// The login name for `user`. `{master}` is replaced first, so a user name cannot
    /// smuggle a `{master}` of its own in.
    pub fn login_name(&self, user: &str) -> String {
        self.login_format
            .replace("{master}", &self.name)
            .replace("{user}", user)
    }
}

/// The client's SASL response rebuilt for a backend that validates the token itself: the
/// same mechanism and token; the user is the token's.
fn client_response(user: &str, credentials: &BearerCredentials) -> Result<Secret, sasl::SaslError> {
    let token = credentials.token.expose_secret();
    let built = match credentials.mechanism {
        sasl::Mechanism::OAuthBearer => sasl::oauthbearer_client_response(
            credentials.authzid.as_deref(),
            token,
            credentials.host.as_deref(),
            credentials.port,
        ),
        sasl::Mechanism::XOAuth2 => sasl::xoauth2_client_response(user, token),
    };
    built.map(Secret::from)
}

/// SASL PLAIN's response, kept secret.
fn plain_response(
    authzid: &str,
    authcid: &str,
    password: &SecretString,
) -> Result<Secret, sasl::SaslError> {
    sasl::plain_client_response(authzid, authcid, password.expose_secret()).map(Secret::from)
}

/// The mechanism's answer to an error challenge, base64: RFC 7628 §3.2.3's `%x01` for
/// OAUTHBEARER, an empty response otherwise (XOAUTH2, and PLAIN, which has no challenge).
fn dummy_response(mechanism: &str) -> &'static [u8] {
    if mechanism.eq_ignore_ascii_case("OAUTHBEARER") {
        b"AQ=="
    } else {
        b""
    }
}

/// A backend's error challenge, decoded; what is not base64 is kept as nothing.
fn decode_challenge(data: &[u8]) -> Vec<u8> {
    sasl::decode_base64(data).unwrap_or_default()
}

/// A passthrough backend said no: with a challenge, or a plain failure, it is the token's
/// fault; a reply that says the backend is unavailable is not.
fn passthrough_refusal(
    challenge: Option<Vec<u8>>,
    unavailable: bool,
    stage: Stage,
    reply: String,
) -> LoginError {
    if challenge.is_some() || !unavailable {
        LoginError::TokenRefused { challenge }
    } else {
        LoginError::Unavailable { stage, reply }
    }
}

/// A SASL response or whole command holding one: zeroed when dropped, redacted in `Debug`.
type Secret = SecretSlice<u8>;

/// The machine's output: commands, some of which carry secrets. `Debug` shows only its
/// length; what was written is zeroed.
#[derive(Default)]
struct Outgoing(Vec<u8>);

impl Outgoing {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    fn written(&mut self) {
        self.0.zeroize();
    }

    /// Appends a secret's bytes (a base64 response line).
    fn extend_secret(&mut self, secret: &Secret) {
        self.0.extend_from_slice(secret.expose_secret());
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Outgoing({} octets)", self.0.len())
    }
}

/// base64 of a secret, itself secret.
fn encode_secret(secret: &Secret) -> Secret {
    Secret::from(sasl::encode_base64(secret.expose_secret()).into_bytes())
}

/// Text from a backend, made fit for a log line: lossy UTF-8, control characters replaced,
/// at most [`MAX_LOGGED_REPLY`] characters.
fn loggable(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut out: String = text
        .chars()
        .take(MAX_LOGGED_REPLY)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(MAX_LOGGED_REPLY).is_some() {
        out.push('…');
    }
    out
}

/// Most characters of a backend reply kept in a [`LoginError`] for the log.
const MAX_LOGGED_REPLY: usize = 200;

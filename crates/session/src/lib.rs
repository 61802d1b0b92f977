//! Per-protocol pre-authentication state machines: bytes in, replies and requests out.
//!
//! A session never touches a socket. Its driver feeds it the client's bytes and writes out
//! what it produces; when the session needs something only the driver can do — a TLS
//! handshake, a token check, a backend login — it says so with an [`Action`], and the driver
//! reports the outcome through a method that checks the state. Every protocol implements the
//! one [`Session`] trait, so one driver serves them all; the SASL exchange and what each
//! [`Verdict`] means for it are written once, in the AUTH sub-machine (`auth.rs`), and each
//! protocol supplies only its reply shapes.
//!
//! Adding a protocol: a folder here with its session type implementing [`Session`], its
//! codec in the `codec` crate, and its backend-login machine.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

mod auth;
#[cfg(test)]
mod auth_sizes;
pub mod backend;
#[cfg(test)]
mod farewell_tests;
pub mod imap;
pub mod pop3;
pub mod sieve;
pub mod smtp;
#[cfg(test)]
mod testing;

use std::fmt;

use bytes::BytesMut;
use sasl::BearerCredentials;
pub use sasl::Discovery;

/// What the driver must do next. Pending output is always written first.
#[derive(Debug)]
#[must_use = "the driver must act on what the session asks for"]
pub enum Action {
    /// Read more client bytes into the buffer and call `advance` again.
    NeedInput,
    /// Discard every buffered input byte, run the TLS handshake, then call
    /// [`Session::tls_started`].
    StartTls,
    /// Validate these credentials and log in to the backend, then report the [`Verdict`].
    Authenticate(BearerCredentials),
    /// Password fallback: have the backend check this user's password by logging in with
    /// it, then report the [`Verdict`] (`LoggedIn`, `PasswordRefused` or `Unavailable`).
    /// Until the backend has said yes the client stays with the session.
    PasswordLogin(sasl::PasswordCredentials),
    /// Close the connection.
    Close,
}

/// What became of credentials the session handed to the driver.
#[derive(Debug)]
pub enum Verdict {
    /// The token was refused: the error challenge tells the client `discovery` (the
    /// refusing issuer's), then the command fails.
    TokenRefused {
        /// Why, as the challenge's `status` says it.
        refusal: Refusal,
        /// Where the client gets a better token.
        discovery: Discovery,
    },
    /// A backend that validates tokens itself refused this one; its own challenge, if it
    /// sent one, reaches the client unchanged.
    BackendRefused {
        /// The backend's decoded error challenge.
        challenge: Option<Vec<u8>>,
    },
    /// The backend refused the client's password.
    PasswordRefused,
    /// The identity provider or the backend is unavailable, or the client's address has
    /// used up its failed logins: "try again later".
    Unavailable,
    /// The backend accepted the login; the session writes the success reply and is done.
    LoggedIn {
        /// The backend's post-login capabilities, filtered for the client (IMAP shows them
        /// in the tagged OK; other protocols ignore them).
        capabilities: Vec<String>,
    },
}

/// Why a token was refused, as told to the client in the error challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Invalid, expired, inactive, or for another user.
    InvalidToken,
    /// Valid but without a required scope.
    InsufficientScope,
}

/// Why a connection is turned away before a session starts for it. Each protocol writes
/// its polite "try again later" for it (`imap::refusal`, `smtp::refusal`, ...), so that a
/// client at a full listener hears a reason instead of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// The listener has as many connections as it may have.
    ListenerFull,
    /// The client's address has as many connections waiting to log in as it may have.
    AddressLimit,
}

/// A call that does not fit the session's state: nothing happened, and the value comes
/// back so the caller loses nothing.
#[derive(thiserror::Error)]
#[error("`{method}` called while the session was {state}")]
pub struct WrongState<T> {
    /// The method that was called.
    pub method: &'static str,
    /// What the session was doing.
    pub state: &'static str,
    /// The argument, handed back untouched.
    pub value: T,
}

impl<T> WrongState<T> {
    pub(crate) fn new(method: &'static str, state: &'static str, value: T) -> Self {
        Self {
            method,
            state,
            value,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for WrongState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrongState")
            .field("method", &self.method)
            .field("state", &self.state)
            .field("value", &self.value)
            .finish()
    }
}

/// One client connection before login, whatever the protocol: what the driver sees.
pub trait Session {
    /// Bytes to send to the client, before anything else happens.
    fn output(&self) -> &[u8];
    /// All of [`Session::output`] was written.
    fn output_written(&mut self);
    /// Processes buffered input until the session needs the driver. Input the session does
    /// not consume stays in `input`: after a login it belongs to the backend.
    fn advance(&mut self, input: &mut BytesMut) -> Action;
    /// The TLS handshake the session asked for ([`Action::StartTls`]) completed.
    fn tls_started(&mut self) -> Result<(), WrongState<()>>;
    /// The outcome of an [`Action::Authenticate`] or [`Action::PasswordLogin`].
    fn verdict(&mut self, verdict: Verdict) -> Result<(), WrongState<Verdict>>;
    /// The client sent nothing for too long: the protocol's goodbye, then close.
    fn idle_timeout(&mut self);
    /// The proxy is shutting down and the session's time is up: the protocol's goodbye
    /// ("try again later" where it has one), then close with reason `drained`.
    fn shutting_down(&mut self);
    /// The listener's `preauth_deadline` passed before a login: the protocol's own goodbye
    /// (not the idle one, since the client may have been busy all along; POP3 too, as it
    /// may be in the middle of a command), then close with reason `prelogin-deadline`.
    /// Nothing once logged in or closed.
    fn deadline_passed(&mut self);
    /// Why the session closed, for the log.
    fn close_reason(&self) -> &'static str;
    /// The client's own name for itself (SMTP EHLO), replayed to the backend.
    fn client_name(&self) -> Option<&str> {
        None
    }
}

/// The client's initial response (SASL-IR, RFC 4959 / RFC 4954) as one SASL message:
/// `Ok(None)` when the command had none, an error when it is not base64.
pub(crate) fn initial_message(
    initial: Option<codec::imap::InitialResponse>,
) -> Result<Option<sasl::ClientMessage>, sasl::SaslError> {
    match initial {
        None => Ok(None),
        Some(codec::imap::InitialResponse::Empty) => Ok(Some(sasl::ClientMessage::Empty)),
        Some(codec::imap::InitialResponse::Base64(text)) => {
            sasl::decode_base64(&text).map(|decoded| Some(sasl::ClientMessage::Response(decoded)))
        }
    }
}

/// Shrinks an output buffer that a large reply grew, so an idle session holds little.
pub(crate) fn reset_output(output: &mut Vec<u8>) {
    output.clear();
    if output.capacity() > 4 * 1_024 {
        *output = Vec::new();
    }
}

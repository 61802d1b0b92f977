//! Per-protocol pre-authentication state machines: bytes in, replies and requests out.
//!
//! A session never touches a socket. Its driver feeds it the client's bytes and writes out
//! what it produces; when the session needs something only the driver can do — a TLS
//! handshake, a token check, a backend login — it says so with an `Action`, and the driver
//! reports the outcome through a method that checks the state.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod imap;
pub mod sieve;
pub mod smtp;

use sasl::BearerCredentials;

/// What the driver must do next. Pending output is always written first.
#[derive(Debug)]
pub enum Action {
    /// Read more client bytes into the buffer and call `advance` again.
    NeedInput,
    /// Discard every buffered input byte, run the TLS handshake, then call `tls_started`.
    StartTls,
    /// Validate these credentials, then call `token_refused`, `unavailable` or `logged_in`.
    Authenticate(BearerCredentials),
    /// Password fallback: have the backend check this user's password by logging in with
    /// it, then call `logged_in`, `password_refused` or `unavailable`. Until the backend has
    /// said yes the client stays with the session.
    PasswordLogin(sasl::PasswordCredentials),
    /// Close the connection.
    Close,
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

/// Why a token was refused, as told to the client in the error challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Invalid, expired, inactive, or for another user.
    InvalidToken,
    /// Valid but without a required scope.
    InsufficientScope,
}

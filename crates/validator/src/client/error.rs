//! What can go wrong when bearergate is the OAuth *client*, and whose fault it was.
//!
//! A token helper must tell a passing outage from a dead grant: deleting or abandoning a
//! refresh token because the network dropped for a minute is what makes people sign in again
//! and again (email-oauth2-proxy's most reported pain). So every failure carries a [`Fault`],
//! and only the issuer's explicit verdict on the grant (`invalid_grant`, `access_denied`,
//! `expired_token`) is [`Fault::Grant`].

use std::fmt;

/// Longest error description kept from an issuer's answer: enough for any real message,
/// short enough for one terminal line.
pub const MAX_DESCRIPTION_LEN: usize = 300;

/// Why an OAuth request gave no usable answer. The text never contains a token, a code or a
/// client secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Our own setup is wrong before anything was sent: an unreadable CA file, an endpoint
    /// that is not an `https` URL, a client id that does not fit a form.
    #[error("{0}")]
    Setup(String),
    /// The issuer could not be reached: DNS, connection refused, TLS handshake, timeout.
    #[error("{0}")]
    Network(String),
    /// The issuer answered, but not usefully: a 5xx, a 429, a redirect, a body that is not
    /// the JSON the specification asks for, or one too large to read.
    #[error("{detail}")]
    Server {
        /// The HTTP status, when there was one.
        status: Option<u16>,
        /// What was wrong, in a few words.
        detail: String,
    },
    /// The issuer refused with an RFC 6749 §5.2 (or RFC 8628 §3.5) error answer.
    #[error("{0}")]
    Refused(Refusal),
}

/// An RFC 6749 §5.2 error answer: `{"error": …, "error_description": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status it came with.
    pub status: u16,
    /// The `error` member.
    pub code: ErrorCode,
    /// The `error_description` member, with control characters removed and cut to
    /// [`MAX_DESCRIPTION_LEN`] characters: it is shown on a terminal.
    pub description: Option<String>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the issuer answered {}", self.code)?;
        match &self.description {
            Some(description) => write!(f, " ({description})"),
            None => Ok(()),
        }
    }
}

/// The `error` codes bearergate acts on; anything else is kept as [`ErrorCode::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// RFC 6749 §5.2: a malformed request (ours).
    InvalidRequest,
    /// RFC 6749 §5.2: the client id or secret was not accepted.
    InvalidClient,
    /// RFC 6749 §5.2: the code, device code or refresh token is unknown, expired or revoked.
    InvalidGrant,
    /// RFC 6749 §5.2: this client may not use this grant.
    UnauthorizedClient,
    /// RFC 6749 §5.2: the grant type is not implemented.
    UnsupportedGrantType,
    /// RFC 6749 §5.2: a scope is unknown or too wide.
    InvalidScope,
    /// RFC 6749 §4.1.2.1: the issuer failed.
    ServerError,
    /// RFC 6749 §4.1.2.1: the issuer is overloaded or down for maintenance.
    TemporarilyUnavailable,
    /// RFC 8628 §3.5: the person has not decided yet; poll again.
    AuthorizationPending,
    /// RFC 8628 §3.5: poll again, 5 seconds slower.
    SlowDown,
    /// RFC 8628 §3.5 and RFC 6749 §4.1.2.1: the person said no.
    AccessDenied,
    /// RFC 8628 §3.5: the device code expired; start again.
    ExpiredToken,
    /// RFC 8707 §2: a resource indicator is not accepted.
    InvalidTarget,
    /// Any other code, as sent (cut to 64 characters, controls removed).
    Other(String),
}

impl ErrorCode {
    /// The code for an `error` member.
    pub fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "server_error" => Self::ServerError,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            "authorization_pending" => Self::AuthorizationPending,
            "slow_down" => Self::SlowDown,
            "access_denied" => Self::AccessDenied,
            "expired_token" => Self::ExpiredToken,
            "invalid_target" => Self::InvalidTarget,
            other => Self::Other(printable(other, 64)),
        }
    }

    /// The code as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::AuthorizationPending => "authorization_pending",
            Self::SlowDown => "slow_down",
            Self::AccessDenied => "access_denied",
            Self::ExpiredToken => "expired_token",
            Self::InvalidTarget => "invalid_target",
            Self::Other(code) => code,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whose fault a failed request was, which decides what a token helper does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Our request or registration: wrong client id or secret, a scope or grant the issuer
    /// does not allow, a bad URL or CA file. Trying again will not help; signing in again
    /// may not either: the configuration must change.
    Ours,
    /// The network between us and the issuer: try again later; the grant is intact.
    Network,
    /// The issuer is failing (5xx, overloaded, malformed answers): try again later; the
    /// grant is intact.
    Server,
    /// The issuer's verdict on the grant itself: the refresh token, code or device code is
    /// unknown, expired, revoked or was refused by the person. Only a new sign-in helps.
    Grant,
    /// The device flow is still waiting for the person (`authorization_pending`,
    /// `slow_down`): poll again.
    Pending,
}

impl Fault {
    /// Whether waiting and trying again may succeed with the same grant.
    pub fn is_temporary(self) -> bool {
        matches!(self, Fault::Network | Fault::Server | Fault::Pending)
    }
}

impl RequestError {
    /// Whose fault this failure was.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Setup(_) => Fault::Ours,
            Self::Network(_) => Fault::Network,
            Self::Server { .. } => Fault::Server,
            Self::Refused(refusal) => refusal.fault(),
        }
    }

    /// The OAuth error code, when the issuer refused with one.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            Self::Refused(refusal) => Some(&refusal.code),
            _ => None,
        }
    }

    pub(crate) fn server(status: Option<u16>, detail: impl Into<String>) -> Self {
        Self::Server {
            status,
            detail: detail.into(),
        }
    }
}

impl Refusal {
    /// Whose fault the refusal says it was.
    pub fn fault(&self) -> Fault {
        match &self.code {
            ErrorCode::InvalidGrant | ErrorCode::AccessDenied | ErrorCode::ExpiredToken => {
                Fault::Grant
            }
            ErrorCode::AuthorizationPending | ErrorCode::SlowDown => Fault::Pending,
            ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable => Fault::Server,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidClient
            | ErrorCode::UnauthorizedClient
            | ErrorCode::UnsupportedGrantType
            | ErrorCode::InvalidScope
            | ErrorCode::InvalidTarget => Fault::Ours,
            // An unknown code with a 5xx is the server failing; with a 4xx it is about our
            // request, which repeating will not change.
            ErrorCode::Other(_) if self.status >= 500 => Fault::Server,
            ErrorCode::Other(_) => Fault::Ours,
        }
    }
}

/// `text` without control or format characters, cut to `max` characters: what an issuer
/// sends is shown on a terminal, where escape sequences must not pass.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() && !is_invisible(*c))
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Bidirectional overrides and zero-width characters, which make text read otherwise than
/// it is.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: &str) -> RequestError {
        RequestError::Refused(Refusal {
            status,
            code: ErrorCode::parse(code),
            description: None,
        })
    }

    #[test]
    fn faults_of_each_answer() {
        let table = [
            (refusal(400, "invalid_grant"), Fault::Grant),
            (refusal(400, "access_denied"), Fault::Grant),
            (refusal(400, "expired_token"), Fault::Grant),
            (refusal(400, "authorization_pending"), Fault::Pending),
            (refusal(400, "slow_down"), Fault::Pending),
            (refusal(503, "temporarily_unavailable"), Fault::Server),
            (refusal(400, "temporarily_unavailable"), Fault::Server),
            (refusal(500, "server_error"), Fault::Server),
            (refusal(401, "invalid_client"), Fault::Ours),
            (refusal(400, "invalid_scope"), Fault::Ours),
            (refusal(400, "unauthorized_client"), Fault::Ours),
            (refusal(400, "something_new"), Fault::Ours),
            (refusal(502, "something_new"), Fault::Server),
            (RequestError::Network("refused".into()), Fault::Network),
            (RequestError::server(Some(503), "x"), Fault::Server),
            (RequestError::Setup("bad CA".into()), Fault::Ours),
        ];
        for (error, fault) in table {
            assert_eq!(error.fault(), fault, "{error:?}");
        }
        assert!(Fault::Network.is_temporary() && Fault::Server.is_temporary());
        assert!(Fault::Pending.is_temporary());
        assert!(!Fault::Grant.is_temporary() && !Fault::Ours.is_temporary());
    }

    #[test]
    fn codes_round_trip() {
        for code in [
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unauthorized_client",
            "unsupported_grant_type",
            "invalid_scope",
            "server_error",
            "temporarily_unavailable",
            "authorization_pending",
            "slow_down",
            "access_denied",
            "expired_token",
            "invalid_target",
            "vendor_specific",
        ] {
            assert_eq!(ErrorCode::parse(code).as_str(), code);
        }
    }

    #[test]
    fn descriptions_lose_escapes_and_length() {
        assert_eq!(printable("a\x1b[31mred\x07\u{202E}x", 100), "a[31mredx");
        let long = "é".repeat(400);
        let cut = printable(&long, MAX_DESCRIPTION_LEN);
        assert_eq!(cut.chars().count(), MAX_DESCRIPTION_LEN + 1);
        assert!(cut.ends_with('…'));
    }
}

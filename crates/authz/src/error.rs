//! Errors of the authorization server, each with the RFC 6749 §5.2 (or RFC 7591 / 8628 /
//! 6750) code a client sees and the HTTP status it goes with. The HTTP layer turns them into
//! JSON bodies in one place; the logic never builds a response itself.

use crate::store::StoreError;

/// The `error` codes clients understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// RFC 6749: malformed or missing parameter.
    InvalidRequest,
    /// RFC 6749: client authentication failed (HTTP 401).
    InvalidClient,
    /// RFC 6749: code, refresh token or device code invalid, expired, spent or not this
    /// client's.
    InvalidGrant,
    /// RFC 6749: this client may not use this grant type.
    UnauthorizedClient,
    /// RFC 6749: a grant type the server does not implement.
    UnsupportedGrantType,
    /// RFC 6749: a scope the server does not know or the grant does not cover.
    InvalidScope,
    /// RFC 6749 §4.1.2.1: the user said no.
    AccessDenied,
    /// RFC 6749 §4.1.2.1: `response_type` other than `code`.
    UnsupportedResponseType,
    /// RFC 8628: the user has not decided yet.
    AuthorizationPending,
    /// RFC 8628: polling too fast; wait 5 s longer.
    SlowDown,
    /// RFC 8628: the device code expired.
    ExpiredToken,
    /// RFC 7009: a `token_type_hint` the server cannot revoke.
    UnsupportedTokenType,
    /// RFC 7591: bad client metadata.
    InvalidClientMetadata,
    /// RFC 7591: a redirect URI the rules refuse.
    InvalidRedirectUri,
    /// RFC 6750: the bearer token is bad (userinfo; HTTP 401).
    InvalidToken,
    /// RFC 8707: a `resource` that is malformed, unknown, or wider than what was granted.
    InvalidTarget,
    /// Our fault (HTTP 500).
    ServerError,
    /// Too many requests from this address for now (HTTP 429).
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status of a response carrying this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => 401,
            ErrorCode::ServerError => 500,
            ErrorCode::TemporarilyUnavailable => 429,
            _ => 400,
        }
    }
}

/// An error a client is told about: code and a human-readable `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {description}", code.name())]
pub struct OAuthError {
    /// `error`.
    pub code: ErrorCode,
    /// `error_description`: says what was wrong without echoing secrets.
    pub description: String,
}

impl OAuthError {
    /// An error with its description.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        tracing::error!(%error, "authorization server store failed");
        OAuthError::new(
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }
}

/// Why an authorization request cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    /// The client or redirect URI cannot be trusted: show this on an error page and never
    /// redirect (RFC 6749 §4.1.2.1; redirecting is how codes get stolen).
    Page(OAuthError),
    /// Anything else: send the browser back to the client with the error (`error`,
    /// `error_description`, `state`, `iss` already in this URL).
    Redirect(String),
}

impl From<StoreError> for AuthorizeError {
    fn from(error: StoreError) -> Self {
        AuthorizeError::Page(error.into())
    }
}

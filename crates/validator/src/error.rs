//! Errors, each recording whose fault it was.
//!
//! [`ValidationError::Invalid`] is the client's fault (a bad token) and
//! [`ValidationError::Unavailable`] the identity provider's (or our credentials towards it):
//! the protocol reply, the metric label and the log level all follow from the variant.
//! No variant ever carries the token or the client secret.

use std::fmt;

/// Why a token was not accepted. The `Display` text is meant for the log; it never contains
/// the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The identity provider said `active` is `false`. (An answer without a boolean
    /// `active` is no verdict at all: [`UnavailableKind::BadAnswer`].)
    Inactive,
    /// The token's `exp` is in the past (also checked again when a cached answer is read).
    Expired,
    /// The token's `nbf` is in the future.
    NotYetValid,
    /// A scope from `required_scope` is not among the token's scopes.
    MissingScope {
        /// The first required scope that was missing.
        scope: String,
    },
    /// The claim configured as `username_claim` is absent or `null`.
    NoUserClaim {
        /// The configured claim name.
        claim: String,
    },
    /// A claim of an active token has the wrong value for the policy (e.g. the user claim
    /// is empty or holds a line break). Members whose type the specification fixes (`exp`
    /// a string, `scope` an array) make a malformed answer instead:
    /// [`UnavailableKind::BadAnswer`].
    Malformed {
        /// The claim's name.
        claim: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The client sent an empty token; nothing was asked of the identity provider.
    EmptyToken,
    /// The token is longer than [`crate::MAX_TOKEN_LEN`]; nothing was asked of the
    /// identity provider.
    TokenTooLong,
    /// A JWT's signature does not verify with the key its `kid` names.
    BadSignature,
    /// A JWT's `iss` is not the configured issuer.
    WrongIssuer,
    /// A JWT's `aud` names none of the configured audiences.
    WrongAudience,
    /// A JWT's `kid` is not in the issuer's JWKS (even after a refetch), or it has no `kid`.
    UnknownKey,
    /// A JWT's `alg` is not allowed (`none`, `HS*`, or not configured), or does not fit
    /// the key its `kid` names.
    AlgorithmNotAllowed {
        /// The header's `alg`.
        alg: String,
    },
    /// A JWT's header `typ` is not the required one (e.g. RFC 9068 `at+jwt`).
    WrongType,
    /// The token is not a well-formed JWT (JWS compact serialisation).
    MalformedJwt,
    /// The token was issued to an OAuth client not in `allowed_client_ids` (its `client_id`,
    /// else `azp`; empty when it names none).
    ClientNotAllowed {
        /// The client the token names.
        client_id: String,
    },
    /// The user comes from `email`, and the token says the address is not verified.
    EmailNotVerified,
    /// A userinfo or tokeninfo endpoint refused the token with this HTTP status (400, 401
    /// or 403).
    RejectedByProvider {
        /// The HTTP status.
        status: u16,
    },
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inactive => f.write_str("token is not active"),
            Self::Expired => f.write_str("token has expired"),
            Self::NotYetValid => f.write_str("token is not valid yet (nbf in the future)"),
            Self::MissingScope { scope } => write!(f, "token lacks required scope {scope:?}"),
            Self::NoUserClaim { claim } => write!(f, "token has no user claim {claim:?}"),
            Self::Malformed { claim, problem } => write!(f, "claim {claim:?} {problem}"),
            Self::EmptyToken => f.write_str("token is empty"),
            Self::TokenTooLong => f.write_str("token is too long"),
            Self::BadSignature => f.write_str("token signature does not verify"),
            Self::WrongIssuer => f.write_str("token has the wrong issuer"),
            Self::WrongAudience => f.write_str("token is not meant for this audience"),
            Self::UnknownKey => f.write_str("token is signed with an unknown key"),
            Self::AlgorithmNotAllowed { alg } => {
                write!(f, "token algorithm {alg:?} is not allowed")
            }
            Self::WrongType => f.write_str("token has the wrong typ"),
            Self::MalformedJwt => f.write_str("token is not a well-formed JWT"),
            Self::ClientNotAllowed { client_id } if client_id.is_empty() => {
                f.write_str("token names no client, and allowed_client_ids is set")
            }
            Self::ClientNotAllowed { client_id } => {
                write!(
                    f,
                    "token was issued to client {client_id:?}, not an allowed one"
                )
            }
            Self::EmailNotVerified => {
                f.write_str("token's email address is not verified (email_verified is not true)")
            }
            Self::RejectedByProvider { status } => {
                write!(f, "identity provider refused the token (HTTP {status})")
            }
        }
    }
}

/// The outcome of a failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The token is not acceptable (the client's fault): IMAP `NO [AUTHENTICATIONFAILED]`,
    /// SMTP `535 5.7.8`, ManageSieve `NO`.
    #[error("invalid token: {0}")]
    Invalid(InvalidReason),
    /// The identity provider could not answer (timeout, connection refused, 5xx, a body that
    /// is not a well-formed answer, or it refused our own client credentials): IMAP
    /// `NO [UNAVAILABLE]`, SMTP `454 4.7.0`, ManageSieve `NO (TRYLATER)`. Never cached,
    /// never reported as [`ValidationError::Invalid`].
    #[error("identity provider unavailable: {0}")]
    Unavailable(Unavailable),
}

/// Why the identity provider could not say whether a token is good. The kind says whose
/// fault that is: the provider's (down, slow, overloaded, broken answers), or the proxy's
/// own configuration (the provider refused our credentials or our request).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Unavailable {
    /// What went wrong, as a kind.
    pub kind: UnavailableKind,
    /// The details for the log; never contains the token.
    pub detail: String,
}

/// The kinds of [`Unavailable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnavailableKind {
    /// No answer within the configured `timeout`.
    Timeout,
    /// Connecting or talking to it failed (refused, reset, TLS, DNS).
    Unreachable,
    /// Its circuit breaker is open after repeated failures: nothing was asked.
    CircuitOpen,
    /// Too many requests were already in flight to it: nothing was asked.
    Overloaded,
    /// It answered an HTTP status that says nothing about the token (5xx, 429).
    HttpStatus(u16),
    /// It refused the proxy's own credentials or request (401, 403, other 4xx, 3xx): a
    /// configuration error that turns every user away until an operator acts.
    Refused(u16),
    /// Its answer broke the protocol: not JSON, too large, or of the wrong shape (no
    /// boolean `active`, members of the wrong type, a JWK set without a usable key).
    BadAnswer,
}

impl Unavailable {
    /// An outage of this kind.
    pub fn new(kind: UnavailableKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }

    /// True when the proxy's configuration is at fault, not the provider.
    pub fn is_configuration(&self) -> bool {
        matches!(self.kind, UnavailableKind::Refused(_))
    }
}

impl ValidationError {
    /// True for [`ValidationError::Invalid`] (the client's fault).
    pub fn is_invalid(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }

    /// True for [`ValidationError::Unavailable`] (a temporary failure; the client may retry).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl From<InvalidReason> for ValidationError {
    fn from(reason: InvalidReason) -> Self {
        Self::Invalid(reason)
    }
}

/// A configuration the validator cannot run with. Names the `[validator]` key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("validator.{key}: {problem}")]
    Invalid {
        /// The key, as written in the issuer's table.
        key: &'static str,
        /// What is wrong with its value (never the value of a secret).
        problem: String,
    },
    /// [`crate::ValidatorConfig::validate`] found these problems.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Keys(Vec<KeyError>),
    /// The HTTP client could not be built (e.g. the TLS backend failed to initialise).
    #[error("validator: cannot build the HTTP client: {0}")]
    HttpClient(String),
}

/// One problem of a whole `[validator]` configuration, with the path of its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("validator.{key}: {problem}")]
pub struct KeyError {
    /// The key's path below `[validator]`: `cache_capacity`; `client_id` for the one issuer
    /// written in `[validator]` itself; `issuers[1].client_id` in `[[validator.issuers]]`.
    pub key: String,
    /// What is wrong (never the value of a secret).
    pub problem: String,
}

/// A [`ConfigError::Invalid`] for `key`.
pub(crate) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

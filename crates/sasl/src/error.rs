//! The one error type of this crate, and the wrong-state error of the exchange.
//!
//! No variant carries bytes from the client: a token (or part of one) must never reach a
//! log line through an error message, so errors name the field and the rule instead.

use std::fmt;

use crate::challenge::ChallengeStatus;

/// Whose fault an error is, so the session can pick reply, metric label and log level from
/// the type alone (STYLE.md habit 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The client sent something malformed or unusable.
    Client,
    /// Our own side handed a builder a value that cannot be encoded (e.g. a user name with
    /// a NUL from a token claim); a bug or bad data upstream, never the client's doing.
    Ours,
}

/// Why a SASL message could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The (decoded) response is longer than [`crate::MAX_RESPONSE_LEN`], its base64 longer
    /// than [`crate::MAX_ENCODED_RESPONSE_LEN`], or the bearer token in it longer than
    /// [`crate::MAX_TOKEN_LEN`]. Sessions answer it with their protocol's "too long" reply,
    /// never with "invalid base64".
    #[error("SASL response or token of {len} octets exceeds the limit of {max}")]
    TooLong {
        /// Length seen (decoded, or encoded when rejected before decoding).
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// The line is not valid standard-alphabet base64.
    #[error("SASL response is not valid base64")]
    InvalidBase64,
    /// The response was empty where the mechanism needs content.
    #[error("empty SASL response")]
    EmptyResponse,
    /// OAUTHBEARER response consisting of a lone `^A`, which is only valid as the dummy
    /// answer to an error challenge (RFC 7628 §3.1).
    #[error("lone %x01 where an initial response was expected")]
    LoneKvsep,
    /// The RFC 5801 GS2 header is malformed.
    #[error("malformed GS2 header")]
    MalformedGs2Header,
    /// The client asked for channel binding (`p=`), which OAUTHBEARER does not define.
    #[error("channel binding requested but not supported by this mechanism")]
    ChannelBindingUnsupported,
    /// The GS2 header used `user=` instead of `a=` (the RFC 7628 §4.4 erratum); refused, see
    /// [`crate::parse_oauthbearer`].
    #[error("GS2 header uses non-standard `user=` instead of `a=`")]
    NonStandardAuthzid,
    /// The authzid is empty, has an `=` escape other than `=2C`/`=3D`, contains NUL or is
    /// not UTF-8.
    #[error("invalid authorization identity")]
    InvalidAuthzid,
    /// A key/value pair does not follow `key=value` with `key = 1*ALPHA`, or a value has a
    /// character outside its grammar.
    #[error("malformed key/value pair")]
    MalformedKvPair,
    /// The message does not end with the terminating separator, or has bytes after it.
    #[error("missing or misplaced final %x01 separator")]
    MissingTerminator,
    /// A key that must appear at most once appeared twice; which one wins would be a guess.
    #[error("duplicate `{key}` key")]
    DuplicateKey {
        /// The repeated key.
        key: &'static str,
    },
    /// The required `auth` key is absent.
    #[error("missing `auth` key")]
    MissingAuth,
    /// The `auth` value is empty (RFC 7628 §4.3: a client probing for discovery data).
    #[error("empty `auth` value")]
    EmptyAuth,
    /// The `auth` value uses a scheme other than `Bearer`.
    #[error("unsupported authorization scheme (only Bearer)")]
    UnsupportedScheme,
    /// The token is empty or not an RFC 6750 `b64token`.
    #[error("bearer token is empty or not an RFC 6750 b64token")]
    InvalidToken,
    /// OAUTHBEARER `host` value unusable.
    #[error("invalid `host` value")]
    InvalidHost,
    /// OAUTHBEARER `port` value is not a decimal port without leading zeros.
    #[error("invalid `port` value")]
    InvalidPort,
    /// XOAUTH2 without a `user` key, or with an empty one.
    #[error("missing `user` key")]
    MissingUser,
    /// XOAUTH2 `user` value not UTF-8 or containing control characters.
    #[error("invalid `user` value")]
    InvalidUser,
    /// PLAIN message without exactly two NUL separators.
    #[error("malformed PLAIN message")]
    MalformedPlain,
    /// PLAIN authcid or password empty, or a field not UTF-8.
    #[error("invalid PLAIN `{field}`")]
    InvalidPlainField {
        /// `authzid`, `authcid` or `passwd`.
        field: &'static str,
    },
    /// A builder was given a value it cannot encode without changing its meaning.
    #[error("cannot encode `{field}`: forbidden character or empty")]
    Unencodable {
        /// Which builder argument.
        field: &'static str,
    },
}

impl SaslError {
    /// Whose fault this is.
    pub fn fault(&self) -> Fault {
        match self {
            SaslError::Unencodable { .. } => Fault::Ours,
            _ => Fault::Client,
        }
    }

    /// Whether the client gets an error challenge before the final failure, and with which
    /// status.
    ///
    /// `Some` for problems with the credential itself (empty or missing `auth`, a non-Bearer
    /// scheme, a token with a bad character set): the response was a well-formed
    /// authentication attempt, RFC 7628 §4.3 shows a server answering one with discovery
    /// information, and clients react to the challenge by fetching a fresh token.
    /// `None` for structural garbage, where RFC 7628 §3.1 lets the server "simply fail".
    pub fn challenge_status(&self) -> Option<ChallengeStatus> {
        match self {
            SaslError::EmptyAuth
            | SaslError::MissingAuth
            | SaslError::UnsupportedScheme
            | SaslError::InvalidToken => Some(ChallengeStatus::InvalidToken),
            _ => None,
        }
    }
}

/// A decision method of [`crate::ServerExchange`] was called in a state where it means
/// nothing. The argument is handed back so the caller loses nothing (STYLE.md habit 6).
#[derive(thiserror::Error)]
#[error("`{method}` called while the SASL exchange was {state}")]
pub struct WrongState<T> {
    /// The method that was called.
    pub method: &'static str,
    /// The state the exchange was in.
    pub state: &'static str,
    /// The argument, returned untouched.
    pub value: T,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_builder_errors_are_ours() {
        assert_eq!(SaslError::InvalidToken.fault(), Fault::Client);
        assert_eq!(
            SaslError::Unencodable { field: "user" }.fault(),
            Fault::Ours
        );
    }

    #[test]
    fn token_problems_get_a_challenge_structure_problems_do_not() {
        assert_eq!(
            SaslError::EmptyAuth.challenge_status(),
            Some(ChallengeStatus::InvalidToken)
        );
        assert_eq!(SaslError::MalformedGs2Header.challenge_status(), None);
        assert_eq!(SaslError::LoneKvsep.challenge_status(), None);
        assert_eq!(
            SaslError::ChannelBindingUnsupported.challenge_status(),
            None
        );
    }
}

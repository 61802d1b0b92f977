//! IMAP4rev1/rev2 (RFC 3501, RFC 9051) as far as a pre-authentication front needs it.
//!
//! - [`framing`]: [`CommandFramer`] splits client input into whole commands, literal-aware;
//!   [`ResponseFramer`] splits a backend's output into bounded lines.
//! - [`command`]: [`parse_command`] turns one framed command into a [`Command`].
//! - [`response`]: [`Reply`] writes the server's replies; [`parse_response`] reads a
//!   backend's responses.
//! - [`client`]: writers of the commands the proxy sends a backend to log in.
//!
//! The two directions share the lexical rules (tag, atom, astring, quoted, literal).

pub mod client;
pub mod command;
mod core;
pub mod framing;
pub mod response;

pub use self::command::{parse_command, Command, CommandBody, InitialResponse};
pub use self::core::{is_valid_atom, is_valid_tag, write_astring, write_string, WriteError};
pub use self::framing::{CommandFramer, FramedCommand, FramingError, ResponseFramer};
pub use self::response::{parse_response, Code, Continuation, Reply, Response, Status};
pub use crate::limits::Limits;

/// A command or response that does not follow the grammar.
///
/// Carries the tag when it could be read, for the `tag BAD` reply (without one the reply
/// is `* BAD`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input does not start with a tag (or, for a response, `*`, `+` or a tag).
    #[error("missing or invalid tag")]
    Tag,
    /// The input breaks the named ABNF rule.
    #[error("syntax error in {rule}")]
    Syntax {
        /// The tag, when it could be read.
        tag: Option<String>,
        /// The ABNF rule that failed, e.g. `"login"`.
        rule: &'static str,
    },
    /// A value is over a protocol limit (e.g. RFC 2971's ID limits).
    #[error("{what} over its limit")]
    LimitExceeded {
        /// The tag, when it could be read.
        tag: Option<String>,
        /// What was too large, e.g. `"ID value"`.
        what: &'static str,
    },
    /// A backend response announced a literal, which no pre-login response the proxy
    /// reads should carry.
    #[error("unexpected literal in response")]
    UnexpectedLiteral {
        /// The response's tag, if it was tagged.
        tag: Option<String>,
    },
}

impl ParseError {
    /// The tag of the offending command or response, when it could be read.
    pub fn tag(&self) -> Option<&str> {
        match self {
            Self::Tag => None,
            Self::Syntax { tag, .. }
            | Self::LimitExceeded { tag, .. }
            | Self::UnexpectedLiteral { tag } => tag.as_deref(),
        }
    }
}

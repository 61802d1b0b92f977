//! ManageSieve (RFC 5804) as far as a pre-authentication front needs it.
//!
//! - [`framing`]: [`Framer`] splits input into whole commands or responses, literal-aware
//!   (`{n+}` and `{n}` alike: ManageSieve has no continuation request for literals).
//! - [`command`]: [`parse_command`] turns one framed command into a [`Command`];
//!   [`parse_sasl_response`] reads a client's AUTHENTICATE continuation.
//! - [`response`]: [`Response`] writes the server's capability lines, challenges and
//!   `OK`/`NO`/`BYE`; [`parse_response`] and [`parse_auth_response`] read a backend's.
//! - [`client`]: writers of the commands the proxy sends a backend.
//! - [`fuzzing`]: entry points for cargo-fuzz targets and the module's proptests.
//!
//! Both directions share the lexical rules (atom, quoted string, literal) and one framer.

pub mod client;
pub mod command;
mod core;
pub mod framing;
pub mod fuzzing;
pub mod response;

pub use self::command::{
    parse_command, parse_sasl_response, Command, InitialResponse, SaslResponse,
};
pub use self::core::{is_quotable, is_valid_atom, write_string, Direction, MAX_QUOTED_LEN};
pub use self::framing::{Framer, FramingError};
pub use self::response::{
    parse_auth_response, parse_response, Capability, Code, Completion, Response, Status,
};
pub use crate::limits::Limits;

/// A command or response that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input breaks the named ABNF rule.
    #[error("syntax error in {rule}")]
    Syntax {
        /// The ABNF rule that failed, e.g. `"authenticate"`.
        rule: &'static str,
    },
}

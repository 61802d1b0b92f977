//! POP3 (RFC 1939) as far as a pre-authentication front needs it, with CAPA and response
//! codes (RFC 2449, RFC 3206), STLS (RFC 2595) and AUTH (RFC 5034), in both roles.
//!
//! - [`framing`]: [`LineFramer`] splits client input into bounded lines: commands and the
//!   AUTH exchange's continuation lines alike.
//! - [`command`]: [`parse_command`] turns one line into a [`Command`].
//! - [`reply`]: [`Reply`] writes the server's replies (`+OK`, `-ERR [CODE]`, `+ base64`,
//!   multi-line with dot-stuffing).
//! - [`response`]: [`ResponseFramer`] reads a backend's replies, single- or multi-line, as
//!   [`Response`]s; [`parse_reply_line`] reads one line; [`capa_keywords`] lists a CAPA
//!   reply's capabilities.
//! - [`client`]: writers of the commands the proxy sends a backend (USER, PASS, AUTH, STLS,
//!   CAPA, QUIT).
//! - [`fuzzing`]: entry points for cargo-fuzz targets and the module's proptests.
//!
//! Like SMTP, a POP3 command is exactly one line: no literals, no tags. Unlike SMTP, a
//! reply does not say whether more lines follow: only the command it answers does (RFC
//! 1939 §3: CAPA's `+OK` is followed by lines up to a lone `.`, an `-ERR` never is), so the
//! reader is told what to expect.

pub mod client;
pub mod command;
pub mod framing;
pub mod fuzzing;
pub mod reply;
pub mod response;

pub use self::client::WriteError;
pub use self::command::{parse_command, Command, ParseError};
pub use self::framing::{FramingError, LineFramer};
pub use self::reply::{Code, Reply, Status, StatusLine};
pub use self::response::{
    capa_keywords, parse_reply_line, parse_status_line, Expect, ReplyLine, Response, ResponseError,
    ResponseFramer, ResponseLimits,
};
/// An AUTH initial response (RFC 5034 §4): `=` or base64 text. The same shape as IMAP's
/// SASL-IR (RFC 4959), hence the same type; its `Debug` redacts the text.
pub use crate::imap::InitialResponse;

/// Default longest client line, in octets, not counting its CRLF: 24,236
/// ([`MAX_AUTH_LINE`](crate::limits::MAX_AUTH_LINE)).
///
/// RFC 2449 §4 limits POP3 command lines to 255 octets, and RFC 5034 §4 keeps the AUTH
/// command to that, but a bearer token does not fit: a 16 KiB token (`sasl::MAX_TOKEN_LEN`)
/// in a client response is up to 23,212 octets of base64 (`sasl::MAX_ENCODED_RESPONSE_LEN`),
/// which an AUTH continuation line must carry, and clients send it as an initial response
/// too. So every line may be that long plus 1,024 octets for the command around it, the
/// bound of every protocol's AUTH lines (the session crate checks the sum). Every other
/// command fits in far less, and one limit for all lines keeps the framer simple. A
/// longer line is refused whole (`-ERR`), never truncated: a truncated token fails in
/// baffling ways.
pub const DEFAULT_MAX_LINE: usize = crate::limits::MAX_AUTH_LINE;

/// RFC 2449 §4 raises the longest command line to 255 octets, CRLF included (RFC 1939's
/// keyword and 40-octet argument were less). The limit the proxy keeps to for the commands
/// it writes to a backend; RFC 5034 §4 holds AUTH to it, so a longer initial response goes
/// on a continuation line instead.
pub const MAX_COMMAND_LINE: usize = 255;

/// RFC 2449 §4 keeps the first line of a response (the greeting included) to 512 octets,
/// CRLF included; so are capability lines (RFC 2449 §9). The proxy's own status lines stay
/// within it.
pub const MAX_RESPONSE_LINE: usize = 512;

//! SMTP submission (RFC 5321, RFC 6409) as far as a pre-authentication front needs it, with
//! AUTH (RFC 4954), STARTTLS (RFC 3207) and, towards the backend, Postfix XCLIENT.
//!
//! - [`framing`]: [`LineFramer`] splits client input into bounded command lines (AUTH
//!   continuation lines included).
//! - [`command`]: [`parse_command`] turns one line into a [`Command`].
//! - [`reply`]: [`Reply`] writes the server's replies; [`ReplyFramer`] reads a backend's
//!   (multi-line) replies as [`Response`]s; [`ehlo_keywords`] lists an EHLO reply's
//!   extensions.
//! - [`client`]: writers of the commands the proxy sends a backend (EHLO, STARTTLS, AUTH,
//!   XCLIENT, QUIT) and the xtext encoding XCLIENT values need.
//! - [`fuzzing`]: entry points for cargo-fuzz targets and the proptests.
//!
//! Unlike IMAP, an SMTP command is exactly one line: no literals, no tags. The AUTH
//! exchange's continuation lines are framed the same way and are not commands.

pub mod client;
pub mod command;
pub mod framing;
pub mod fuzzing;
pub mod reply;

pub use self::client::{xtext_decode, xtext_encode, WriteError};
pub use self::command::{parse_command, Command, ParseError};
pub use self::framing::{FramingError, LineFramer, LineLimits};
pub use self::reply::{
    ehlo_keywords, is_reply_code, parse_reply_line, EnhancedCode, Reply, ReplyError, ReplyFramer,
    ReplyLimits, ReplyLine, Response,
};
/// An AUTH initial response (RFC 4954 §4): `=` or base64 text. The same shape as IMAP's
/// SASL-IR (RFC 4959), hence the same type; its `Debug` redacts the text.
pub use crate::imap::InitialResponse;

/// Default longest client command line other than AUTH, in octets, not counting its CRLF:
/// 12,288 ([`LineLimits::max_line`]).
///
/// RFC 4954 §4 (AUTH) lifts RFC 5321's 512-octet command line limit for the AUTH exchange:
/// a server must accept AUTH command lines and client response lines of *at least* 12,288
/// octets (Postfix's `smtpd_sasl_response_limit` has the same default). That minimum is
/// this bound for every other command, which fits in far less; AUTH lines get
/// [`LineLimits::max_auth_line`] (24,236, a 16 KiB token base64-encoded), since 12,288
/// octets of base64 carry a token of only about 9 KiB. A longer line is refused whole
/// (`500 5.5.2`, `500 5.5.6` in the AUTH exchange), never truncated: a truncated token
/// fails in baffling ways.
pub const DEFAULT_MAX_LINE: usize = 12_288;

/// RFC 5321 §4.5.3.1.4: "The maximum total length of a command line including the command
/// word and the `<CRLF>` is 512 octets." The limit the proxy keeps to for the commands it
/// writes to a backend (XCLIENT in particular; Postfix XCLIENT_README repeats it).
pub const MAX_COMMAND_LINE: usize = 512;

//! Size limits, set once when a decoder is built (STYLE.md habit 2).
//!
//! Every limit here is a hard bound: input over it is reported once and discarded, never
//! truncated.

/// Longest line that carries a bearer token, in octets, not counting its CRLF: 24,236.
///
/// A 16 KiB token (`sasl::MAX_TOKEN_LEN`; an Entra ID token with its groups is about
/// 12 KiB) in a client response with up to 1 KiB of everything else is at most 17,408
/// octets (`sasl::MAX_RESPONSE_LEN`), 23,212 in base64 (`sasl::MAX_ENCODED_RESPONSE_LEN`);
/// 1 KiB more leaves room for the command around it when it is an initial response (tag,
/// `AUTHENTICATE`, the mechanism, quotes). Every protocol accepts AUTH lines this long,
/// initial responses and continuation lines alike; a longer one gets the protocol's "too
/// long" reply. The SASL layer's bound is the one that decides for the base64 itself, with
/// the same reply; the session crate checks that the two crates agree.
pub const MAX_AUTH_LINE: usize = 23_212 + 1_024;

/// Size limits for a command framer (IMAP and ManageSieve).
///
/// All three are always enforced; there is no "unlimited" setting because a proxy that
/// faces the internet before authentication has no use for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in octets, not counting its CRLF (or LF).
    ///
    /// Default 24,236 ([`MAX_AUTH_LINE`]): a 16 KiB token, base64-encoded, in an
    /// `AUTHENTICATE` line (SASL-IR, or a ManageSieve quoted string: sievelib sends it so
    /// whatever its length) or on a continuation line. Every line before login gets this
    /// bound; no other command comes near it.
    pub max_line: usize,
    /// Largest literal (`{n}`, `{n+}`, `~{n}`, `~{n+}`), in octets.
    ///
    /// Default 64 KiB, as Dovecot's pre-login limit (protocol brief §3.4); a ManageSieve
    /// initial response sent as a literal (a 16 KiB token is 23,212 octets of base64)
    /// fits.
    pub max_literal: usize,
    /// Largest whole command: all its lines, CRLFs and literal octets.
    ///
    /// Default 128 KiB: two maximal literals (LOGIN user + password) and their lines.
    /// Also the most the framers skip of a literal they refuse, to stay in step with a
    /// client that sends its octets anyway: a larger one is no mistake of a mail client,
    /// and skipping up to 4 GiB would leave the session deaf, so the framer reports it as
    /// one it will not skip and the session closes the connection.
    pub max_command: usize,
}

impl Limits {
    /// Default [`Limits::max_line`]: 24,236 ([`MAX_AUTH_LINE`]).
    pub const DEFAULT_MAX_LINE: usize = MAX_AUTH_LINE;
    /// Default [`Limits::max_literal`]: 64 KiB.
    pub const DEFAULT_MAX_LITERAL: usize = 64 * 1_024;
    /// Default [`Limits::max_command`]: 128 KiB.
    pub const DEFAULT_MAX_COMMAND: usize = 128 * 1_024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: Self::DEFAULT_MAX_LINE,
            max_literal: Self::DEFAULT_MAX_LITERAL,
            max_command: Self::DEFAULT_MAX_COMMAND,
        }
    }
}

/// RFC 2971 §3.3: "Field strings MUST NOT be longer than 30 octets."
pub const ID_MAX_FIELD_LEN: usize = 30;
/// RFC 2971 §3.3: "Value strings MUST NOT be longer than 1024 octets." Dovecot enforces it
/// with `BYE Input buffer full` (protocol brief §3.5).
pub const ID_MAX_VALUE_LEN: usize = 1_024;
/// RFC 2971 §3.3: "Implementations MUST NOT send more than 30 field-value pairs."
pub const ID_MAX_PAIRS: usize = 30;

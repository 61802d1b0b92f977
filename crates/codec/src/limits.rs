//! Size limits, set once when a decoder is built (STYLE.md habit 2).
//!
//! Every limit here is a hard bound: input over it is reported once and discarded, never
//! truncated.

/// Size limits for a command framer.
///
/// All three are always enforced; there is no "unlimited" setting because a proxy that
/// faces the internet before authentication has no use for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, in octets, not counting its CRLF (or LF).
    ///
    /// Default 16 KiB: a 4 KiB JWT inside an OAUTHBEARER/XOAUTH2 client response, base64'd
    /// (×4/3) in an `AUTHENTICATE` line, fits with room to spare. Protocol brief §0.6 asks
    /// for at least 8–16 KB.
    pub max_line: usize,
    /// Largest literal (`{n}`, `{n+}`, `~{n}`, `~{n+}`), in octets.
    ///
    /// Default 64 KiB, as Dovecot's pre-login limit (protocol brief §3.4).
    pub max_literal: usize,
    /// Largest whole command: all its lines, CRLFs and literal octets.
    ///
    /// Default 128 KiB: two maximal literals (LOGIN user + password) and their lines.
    pub max_command: usize,
}

impl Limits {
    /// Default [`Limits::max_line`]: 16 KiB.
    pub const DEFAULT_MAX_LINE: usize = 16 * 1_024;
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

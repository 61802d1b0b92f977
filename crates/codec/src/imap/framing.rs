//! Splitting client input into whole IMAP commands, literal by literal.
//!
//! A command is one or more lines: every line but the last ends with a literal announcement
//! `{n}`, `{n+}`, `~{n}` or `~{n+}` (RFC 3501 §4.3, RFC 7888, RFC 3516), followed by exactly
//! `n` octets that may contain anything, CRLF included. A line reader that ignores this lets
//! a client smuggle a command inside a literal and deadlocks on `{n}`, whose octets only
//! come after the server's `+` (protocol brief §3.4).
//!
//! Decisions:
//! - **Bare LF ends a line** as CRLF does, like Dovecot. Rejecting it would break sloppy
//!   clients and buy nothing: the framer never merges or splits lines differently either way.
//! - **A literal is announced only at the very end of a line.** A `{` anywhere else (in a
//!   quoted string, say) is ordinary data, and no grammar rule lets a line end in `{n}`
//!   except a literal, so looking at the line's end alone is exact.
//! - **Too large is reported once, then discarded** up to the end of the offending command
//!   (STYLE.md habit 3, tokio-util `LinesCodec::is_discarding`): for a non-synchronizing
//!   literal that is its octets and the rest of the command. For a synchronizing literal the
//!   client sends nothing more once it sees `BAD` instead of `+`, so nothing is skipped.
//!   Nothing is ever truncated.
//! - **A literal too large to skip ends the stream.** A non-synchronizing literal larger
//!   than [`Limits::max_command`] (`{4294967296+}`) would take the framer that many octets
//!   to get back in step, and reading them as commands instead would run the client's data
//!   as commands; so it is reported as [`FramingError::LiteralTooLargeToSkip`], after which
//!   the framer drops everything and the session closes the connection.
//! - **No buffer of its own**: the caller's [`BytesMut`] holds the partial command; the
//!   framer remembers offsets into it, so an idle framer is a few words.

use bytes::{Buf, Bytes, BytesMut};

use super::core::is_tag_char;
use crate::limits::Limits;

/// How much of the end of a line being discarded is searched for a literal announcement.
/// `{4294967295+}` is 13 octets; a longer one (leading zeros) is not seen, and the command is
/// taken to end with that line. A fixed window keeps the result the same however the input
/// was split into reads.
const DISCARD_WINDOW: usize = 30;

/// How much of a line being discarded is kept while its end is awaited: the window plus a CR.
const DISCARD_TAIL: usize = DISCARD_WINDOW + 2;

/// How far into a command the best-effort tag is looked for.
const MAX_TAG_SCAN: usize = 256;

/// One decoded unit of client input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramedCommand {
    /// A whole command: all its lines and literal octets exactly as sent, ending in CRLF
    /// (or a bare LF).
    Complete(Bytes),
    /// The command so far ends in a synchronizing literal announcement `{n}`: the server
    /// must send `+ ...` before the client sends the octets. Call `decode` again after
    /// sending it. (A literal over the limits yields [`FramingError::LiteralTooLarge`] or
    /// [`FramingError::CommandTooLong`] instead, and the server answers `BAD` without `+`.)
    LiteralContinuationNeeded {
        /// Best-effort tag of the command, for a `BAD` if the server refuses after all.
        tag: Option<Bytes>,
    },
}

/// Client input over a limit. Reported once per offending command; the framer then discards
/// up to the command's end by itself and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A line is longer than [`Limits::max_line`].
    #[error("line too long")]
    LineTooLong {
        /// Best-effort tag of the command, for the `BAD` reply.
        tag: Option<Bytes>,
    },
    /// A literal is larger than [`Limits::max_literal`] (or than 2^32 - 1, RFC 3501's
    /// `number`). `len` saturates at `u64::MAX`.
    #[error("literal of {len} octets too large")]
    LiteralTooLarge {
        /// Best-effort tag of the command, for the `BAD` reply.
        tag: Option<Bytes>,
        /// The announced length.
        len: u64,
    },
    /// The whole command, literals included, is longer than [`Limits::max_command`].
    #[error("command too long")]
    CommandTooLong {
        /// Best-effort tag of the command, for the `BAD` reply.
        tag: Option<Bytes>,
    },
    /// A non-synchronizing literal larger than [`Limits::max_command`]: too large to skip,
    /// so the framer cannot find the next command. It drops all input from here on; the
    /// session closes the connection. Reported on its own, or after the error of a command
    /// already being discarded whose last line announces it (then without a tag).
    #[error("literal of {len} octets too large to skip")]
    LiteralTooLargeToSkip {
        /// Best-effort tag of the command, for the `BAD` reply.
        tag: Option<Bytes>,
        /// The announced length, saturating at `u64::MAX`.
        len: u64,
    },
}

impl FramingError {
    /// The best-effort tag of the offending command.
    pub fn tag(&self) -> Option<&Bytes> {
        match self {
            Self::LineTooLong { tag }
            | Self::LiteralTooLarge { tag, .. }
            | Self::CommandTooLong { tag }
            | Self::LiteralTooLargeToSkip { tag, .. } => tag.as_ref(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line of the current command (or the first line of the next one).
    Line,
    /// Reading a literal's octets.
    Literal { remaining: u64 },
    /// Dropping the rest of a line of a command already reported. `raw`: an AUTHENTICATE
    /// continuation line, whose end is not checked for a literal announcement.
    DiscardLine { raw: bool },
    /// Dropping the octets of a non-synchronizing literal of a command already reported.
    DiscardLiteral { remaining: u64 },
    /// A line being discarded announced a literal too large to skip: to be reported.
    SkipRefused { len: u64 },
    /// After a literal too large to skip: all input is dropped.
    Abandoned,
}

/// Splits client input into whole commands. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct CommandFramer {
    limits: Limits,
    /// Octets at the front of the caller's buffer that belong to the current command and
    /// are framed already: complete lines and literal octets. Zero while discarding.
    framed: usize,
    /// Offset up to which the current line has been searched for LF, so that a line
    /// arriving in many small reads is scanned once.
    scanned: usize,
    state: State,
}

/// Which limit a line broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Violation {
    Line,
    Command,
}

/// A literal announcement found at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announcement {
    /// Announced length, saturating at `u64::MAX`.
    len: u64,
    /// `{n}` (true) or `{n+}` (false).
    sync: bool,
}

/// The line without its LF or CRLF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The literal announcement ending `line` (given without its line ending), if any:
/// `["~"] "{" 1*DIGIT ["+"] "}"` at its very end.
fn announcement(line: &[u8]) -> Option<Announcement> {
    let inner = line.strip_suffix(b"}")?;
    let (inner, sync) = match inner.strip_suffix(b"+") {
        Some(inner) => (inner, false),
        None => (inner, true),
    };
    let digits_at = inner
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    let (head, digits) = inner.split_at(digits_at);
    if digits.is_empty() || !head.ends_with(b"{") {
        return None;
    }
    let len = digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Announcement { len, sync })
}

impl CommandFramer {
    /// A framer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            framed: 0,
            scanned: 0,
            state: State::Line,
        }
    }

    /// The limits this framer enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the framer is between commands: no partial command, nothing being discarded.
    pub fn is_idle(&self) -> bool {
        self.state == State::Line && self.framed == 0
    }

    /// Decode the next command from the caller's buffer, consuming what it returns or
    /// discards. `Ok(None)`: more bytes are needed (whatever is buffered stays there).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<FramedCommand>, FramingError> {
        self.resync(buf);
        loop {
            match self.state {
                State::DiscardLine { .. } | State::DiscardLiteral { .. } => {
                    if !self.discard(buf) {
                        return Ok(None);
                    }
                }
                State::SkipRefused { .. } | State::Abandoned => return self.abandoned(buf),
                State::Literal { remaining } => {
                    let available = (buf.len() - self.framed) as u64;
                    if available < remaining {
                        self.framed = buf.len();
                        self.scanned = buf.len();
                        self.state = State::Literal {
                            remaining: remaining - available,
                        };
                        return Ok(None);
                    }
                    // remaining <= max_literal, which is a usize.
                    self.framed += remaining as usize;
                    self.scanned = self.framed;
                    self.state = State::Line;
                }
                State::Line => {
                    let Some(lf) = memchr(&buf[self.scanned..]) else {
                        self.scanned = buf.len();
                        return self.check_partial_line(buf, false).map(|()| None);
                    };
                    let end = self.scanned + lf + 1;
                    if let Some(violation) = self.violation_at_line_end(buf, end, false) {
                        return Err(self.report(buf, violation, false));
                    }
                    let line = strip_eol(&buf[self.framed..end]);
                    let Some(literal) = announcement(line) else {
                        let command = buf.split_to(end).freeze();
                        self.reset();
                        return Ok(Some(FramedCommand::Complete(command)));
                    };
                    let too_large = literal.len > self.limits.max_literal as u64
                        || literal.len > u64::from(u32::MAX);
                    let too_long =
                        (end as u64).saturating_add(literal.len) > self.limits.max_command as u64;
                    if too_large || too_long {
                        let tag = self.best_effort_tag(buf);
                        buf.advance(end);
                        self.reset();
                        if !literal.sync && literal.len > self.limits.max_command as u64 {
                            self.state = State::Abandoned;
                            buf.clear();
                            return Err(FramingError::LiteralTooLargeToSkip {
                                tag,
                                len: literal.len,
                            });
                        }
                        if !literal.sync {
                            self.state = State::DiscardLiteral {
                                remaining: literal.len,
                            };
                        }
                        return Err(if too_large {
                            FramingError::LiteralTooLarge {
                                tag,
                                len: literal.len,
                            }
                        } else {
                            FramingError::CommandTooLong { tag }
                        });
                    }
                    self.framed = end;
                    self.scanned = end;
                    self.state = State::Literal {
                        remaining: literal.len,
                    };
                    if literal.sync {
                        let tag = self.best_effort_tag(buf);
                        return Ok(Some(FramedCommand::LiteralContinuationNeeded { tag }));
                    }
                }
            }
        }
    }

    /// Decode one raw line: an AUTHENTICATE continuation response (base64, `*` or empty),
    /// which is not an IMAP string, so no literal parsing. Returns the line without its
    /// CRLF (or LF), bounded by [`Limits::max_line`]; a longer line is reported once as
    /// [`FramingError::LineTooLong`] (with no tag: the caller knows it) and discarded.
    ///
    /// Call it only between commands, after [`decode`](Self::decode) returned `Complete`;
    /// a partially framed command is abandoned (its bytes stay in the buffer and are read
    /// as the start of the line). Discarding left over from an earlier error finishes first.
    pub fn decode_line(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        self.resync(buf);
        loop {
            match self.state {
                State::DiscardLine { .. } | State::DiscardLiteral { .. } => {
                    if !self.discard(buf) {
                        return Ok(None);
                    }
                }
                State::SkipRefused { .. } | State::Abandoned => {
                    return self.abandoned(buf).map(|_| None)
                }
                State::Literal { .. } => self.reset(),
                State::Line => {
                    if self.framed != 0 {
                        self.reset();
                    }
                    let Some(lf) = memchr(&buf[self.scanned..]) else {
                        self.scanned = buf.len();
                        return self.check_partial_line(buf, true).map(|()| None);
                    };
                    let end = self.scanned + lf + 1;
                    if let Some(violation) = self.violation_at_line_end(buf, end, true) {
                        return Err(self.report(buf, violation, true));
                    }
                    let line = buf.split_to(end).freeze();
                    self.reset();
                    let content = strip_eol(&line).len();
                    return Ok(Some(line.slice(..content)));
                }
            }
        }
    }

    /// After a literal too large to skip: report it if that is still to be done, and drop
    /// whatever arrived.
    fn abandoned(&mut self, buf: &mut BytesMut) -> Result<Option<FramedCommand>, FramingError> {
        buf.clear();
        self.framed = 0;
        self.scanned = 0;
        match std::mem::replace(&mut self.state, State::Abandoned) {
            State::SkipRefused { len } => {
                Err(FramingError::LiteralTooLargeToSkip { tag: None, len })
            }
            _ => Ok(None),
        }
    }

    /// Forget the current command's progress.
    fn reset(&mut self) {
        self.framed = 0;
        self.scanned = 0;
        self.state = State::Line;
    }

    /// Guard against a caller that shrank the buffer behind the framer's back: never index
    /// past its end.
    fn resync(&mut self, buf: &BytesMut) {
        if self.framed > buf.len() || self.scanned > buf.len() {
            self.framed = 0;
            self.scanned = 0;
        }
    }

    /// With no LF in sight yet, check that the line and the command are not already over
    /// their limits.
    fn check_partial_line(&mut self, buf: &mut BytesMut, raw: bool) -> Result<(), FramingError> {
        match self.first_violation(buf, buf.len(), raw) {
            Some(violation) => Err(self.report(buf, violation, raw)),
            None => Ok(()),
        }
    }

    /// Which limit the current line breaks first, looking only at `buf[..upto]` (which has
    /// no LF past `framed`) as if it were all that had arrived. "First" is in stream order,
    /// and the line limit wins a tie, so the answer does not depend on how the input was
    /// split into reads.
    fn first_violation(&self, buf: &[u8], upto: usize, raw: bool) -> Option<Violation> {
        // Prefix length at which the line's content first exceeds max_line. A trailing CR
        // is not counted (it may start the CRLF), so if the octet that would cross is a
        // CR, the crossing happens one octet later, whatever that octet is.
        let crossing = self
            .framed
            .saturating_add(self.limits.max_line)
            .saturating_add(1);
        let line_at = match buf.get(crossing - 1) {
            Some(b'\r') => crossing + 1,
            Some(_) => crossing,
            None => usize::MAX,
        };
        let line_at = Some(line_at).filter(|&at| at <= upto);
        let command_at =
            Some(self.limits.max_command.saturating_add(1)).filter(|&at| !raw && at <= upto);
        match (line_at, command_at) {
            (Some(line), Some(command)) if command < line => Some(Violation::Command),
            (Some(_), _) => Some(Violation::Line),
            (None, Some(_)) => Some(Violation::Command),
            (None, None) => None,
        }
    }

    /// Which limit the current line, complete up to `end` (its LF included), breaks first:
    /// one already broken before its line ending arrived, else one it breaks as a whole.
    fn violation_at_line_end(&self, buf: &[u8], end: usize, raw: bool) -> Option<Violation> {
        self.first_violation(buf, end - 1, raw).or_else(|| {
            if strip_eol(&buf[self.framed..end]).len() > self.limits.max_line {
                Some(Violation::Line)
            } else if !raw && end > self.limits.max_command {
                Some(Violation::Command)
            } else {
                None
            }
        })
    }

    /// Start discarding the current line and build the error to report, once.
    fn report(&mut self, buf: &mut BytesMut, violation: Violation, raw: bool) -> FramingError {
        let tag = if raw { None } else { self.best_effort_tag(buf) };
        self.start_discarding_line(buf, raw);
        match violation {
            Violation::Line => FramingError::LineTooLong { tag },
            Violation::Command => FramingError::CommandTooLong { tag },
        }
    }

    /// The tag at the start of a command, if it reads as one (ends at a SP, valid
    /// characters). Only the first octets are looked at, no more than are certain to have
    /// arrived when any error is reported, so the answer does not depend on read sizes.
    fn best_effort_tag(&self, command: &[u8]) -> Option<Bytes> {
        let window = MAX_TAG_SCAN
            .min(self.limits.max_line.saturating_add(1))
            .min(self.limits.max_command.saturating_add(1));
        let scan = &command[..command.len().min(window)];
        let end = scan.iter().position(|&b| b == b' ')?;
        let tag = &scan[..end];
        (!tag.is_empty() && tag.iter().all(|&b| is_tag_char(b)))
            .then(|| Bytes::copy_from_slice(tag))
    }

    /// Drop the current command's framed part and switch to discarding its current line.
    fn start_discarding_line(&mut self, buf: &mut BytesMut, raw: bool) {
        buf.advance(self.framed);
        self.reset();
        self.state = State::DiscardLine { raw };
        self.discard(buf);
    }

    /// One discarding step; true when the offending command has been dropped entirely.
    fn discard(&mut self, buf: &mut BytesMut) -> bool {
        loop {
            match self.state {
                State::DiscardLiteral { remaining } => {
                    let n = remaining.min(buf.len() as u64);
                    // n <= buf.len(), a usize.
                    buf.advance(n as usize);
                    if n < remaining {
                        self.state = State::DiscardLiteral {
                            remaining: remaining - n,
                        };
                        return false;
                    }
                    self.scanned = 0;
                    self.state = State::DiscardLine { raw: false };
                }
                State::DiscardLine { raw } => {
                    let Some(lf) = memchr(&buf[self.scanned..]) else {
                        let drop = buf.len().saturating_sub(DISCARD_TAIL);
                        buf.advance(drop);
                        self.scanned = buf.len();
                        return false;
                    };
                    let end = self.scanned + lf + 1;
                    let literal = if raw {
                        None
                    } else {
                        let line = strip_eol(&buf[..end]);
                        announcement(&line[line.len().saturating_sub(DISCARD_WINDOW)..])
                    };
                    buf.advance(end);
                    self.reset();
                    match literal {
                        // The client waits for a `+` that will not come: the command ends.
                        Some(Announcement { sync: true, .. }) | None => return true,
                        Some(Announcement { len, sync: false })
                            if len > self.limits.max_command as u64 =>
                        {
                            self.state = State::SkipRefused { len };
                            return true;
                        }
                        Some(Announcement { len, sync: false }) => {
                            self.state = State::DiscardLiteral { remaining: len };
                        }
                    }
                }
                State::Line
                | State::Literal { .. }
                | State::SkipRefused { .. }
                | State::Abandoned => return true,
            }
        }
    }
}

/// Splits a backend's output into response lines, each bounded by `max_line`.
///
/// Pre-login backend responses carry no literals, so this is a plain line reader; a line
/// ending in a literal announcement is refused by [`parse_response`](super::parse_response). An over-long line is
/// reported once ([`FramingError::LineTooLong`]) and discarded up to its LF; a proxy will
/// usually drop the backend connection instead.
#[derive(Debug, Clone)]
pub struct ResponseFramer {
    max_line: usize,
    scanned: usize,
    discarding: bool,
}

impl ResponseFramer {
    /// A framer for lines of at most `max_line` octets, not counting the CRLF.
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            scanned: 0,
            discarding: false,
        }
    }

    /// The next line, without its CRLF (or LF), consumed from `buf`; `Ok(None)`: more
    /// bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        self.scanned = self.scanned.min(buf.len());
        loop {
            let Some(lf) = buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                if self.discarding {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                self.scanned = buf.len();
                let content = buf.len() - usize::from(buf.ends_with(b"\r"));
                if content > self.max_line {
                    self.discarding = true;
                    buf.clear();
                    self.scanned = 0;
                    return Err(FramingError::LineTooLong { tag: None });
                }
                return Ok(None);
            };
            let end = self.scanned + lf + 1;
            self.scanned = 0;
            if self.discarding {
                self.discarding = false;
                buf.advance(end);
                continue;
            }
            let line = buf.split_to(end).freeze();
            let content = strip_eol(&line).len();
            if content > self.max_line {
                return Err(FramingError::LineTooLong { tag: None });
            }
            return Ok(Some(line.slice(..content)));
        }
    }
}

/// Position of the first LF.
fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;

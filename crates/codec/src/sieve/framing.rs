//! Splitting ManageSieve input into whole commands (or responses), literal by literal.
//!
//! A command is one or more lines: every line but the last ends with a literal
//! announcement `{n+}` or `{n}` (RFC 5804 §4), followed by exactly `n` octets that may
//! contain anything, CRLF included. The same [`Framer`] reads a backend's responses, whose
//! strings may be `{n}` literals too.
//!
//! Decisions:
//! - **`{n}` from a client is read at once, like `{n+}`.** RFC 5804's grammar gives
//!   clients only `literal-c2s = "{" number "+}"`, and ManageSieve has no continuation
//!   request, so a client that sends `{n}` cannot be waiting for one: Pigeonhole reads both
//!   forms alike (`managesieve-parser.c`), and so does this framer. It never asks the
//!   caller to send anything.
//! - **Bare LF ends a line** as CRLF does, like Pigeonhole.
//! - **A literal is announced only at the very end of a line.** A `{` anywhere else (in a
//!   quoted string, say) is ordinary data.
//! - **Too large is reported once, then discarded** up to the end of the offending command
//!   (STYLE.md habit 3): the rest of the line, the octets of any literal it announces
//!   (whatever its form: the client sends them without waiting), and the lines after.
//!   Nothing is ever truncated.
//! - **A literal too large to skip ends the stream.** One larger than
//!   [`Limits::max_command`] (`{4294967296}`, `{4294967296+}`) would take the framer that
//!   many octets to get back in step, leaving the session deaf meanwhile, and reading them
//!   as commands instead would run the client's data as commands; so it is reported as
//!   [`FramingError::LiteralTooLargeToSkip`], after which the framer drops everything and
//!   the session closes the connection.
//! - **No buffer of its own**: the caller's [`BytesMut`] holds the partial command; the
//!   framer remembers offsets into it, so an idle framer is a few words.
//! - **The result does not depend on how the input was split into reads**: a limit is
//!   judged at the octet that crosses it, whatever arrived after.

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::Limits;

/// How much of the end of a line being discarded is searched for a literal announcement.
/// `{4294967295+}` is 13 octets; a longer one (leading zeros) is not seen, and the command
/// is taken to end with that line. A fixed window keeps the result the same however the
/// input was split into reads.
const DISCARD_WINDOW: usize = 30;

/// How much of a line being discarded is kept while its end is awaited: the window plus a
/// CR.
const DISCARD_TAIL: usize = DISCARD_WINDOW + 2;

/// Input over a limit. Reported once per offending command; the framer then discards up to
/// the command's end by itself and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A line is longer than [`Limits::max_line`].
    #[error("line too long")]
    LineTooLong,
    /// A literal is larger than [`Limits::max_literal`] (or than 2^32 - 1, RFC 5804's
    /// `number`). `len` saturates at `u64::MAX`.
    #[error("literal of {len} octets too large")]
    LiteralTooLarge {
        /// The announced length.
        len: u64,
    },
    /// The whole command, literals included, is longer than [`Limits::max_command`].
    #[error("command too long")]
    CommandTooLong,
    /// A literal larger than [`Limits::max_command`]: too large to skip, so the framer
    /// cannot find the next command. It drops all input from here on; the session closes
    /// the connection. Reported on its own, or after the error of a command already being
    /// discarded whose last line announces it.
    #[error("literal of {len} octets too large to skip")]
    LiteralTooLargeToSkip {
        /// The announced length, saturating at `u64::MAX`.
        len: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a line of the current command (or the first line of the next one).
    Line,
    /// Reading a literal's octets.
    Literal { remaining: u64 },
    /// Dropping the rest of a line of a command already reported.
    DiscardLine,
    /// Dropping the octets of a literal of a command already reported.
    DiscardLiteral { remaining: u64 },
    /// A line being discarded announced a literal too large to skip: to be reported.
    SkipRefused { len: u64 },
    /// After a literal too large to skip: all input is dropped.
    Abandoned,
}

/// Which limit a line broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Violation {
    Line,
    Command,
}

/// Splits input into whole commands or responses. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Framer {
    limits: Limits,
    /// Octets at the front of the caller's buffer that belong to the current command and
    /// are framed already: complete lines and literal octets. Zero while discarding.
    framed: usize,
    /// Offset up to which the current line has been searched for LF, so that a line
    /// arriving in many small reads is scanned once.
    scanned: usize,
    state: State,
}

/// The line without its LF or CRLF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The length announced by a literal ending `line` (given without its line ending), if any:
/// `"{" 1*DIGIT ["+"] "}"` at its very end. Saturates at `u64::MAX`.
pub(crate) fn announcement(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let digits_at = inner
        .iter()
        .rposition(|b| !b.is_ascii_digit())
        .map_or(0, |p| p + 1);
    let (head, digits) = inner.split_at(digits_at);
    if digits.is_empty() || !head.ends_with(b"{") {
        return None;
    }
    Some(digits.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

impl Framer {
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
    /// discards: all its lines and literal octets exactly as sent, ending in CRLF (or a
    /// bare LF). `Ok(None)`: more bytes are needed (whatever is buffered stays there).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        if self.framed > buf.len() || self.scanned > buf.len() {
            // The caller shrank the buffer behind the framer's back: start over.
            self.reset();
        }
        loop {
            match self.state {
                State::DiscardLine | State::DiscardLiteral { .. } => {
                    if !self.discard(buf) {
                        return Ok(None);
                    }
                }
                State::SkipRefused { .. } | State::Abandoned => {
                    buf.clear();
                    self.framed = 0;
                    self.scanned = 0;
                    return match std::mem::replace(&mut self.state, State::Abandoned) {
                        State::SkipRefused { len } => {
                            Err(FramingError::LiteralTooLargeToSkip { len })
                        }
                        _ => Ok(None),
                    };
                }
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
                        return match self.first_violation(buf, buf.len()) {
                            Some(violation) => Err(self.report(buf, violation)),
                            None => Ok(None),
                        };
                    };
                    let end = self.scanned + lf + 1;
                    if let Some(violation) = self.violation_at_line_end(buf, end) {
                        return Err(self.report(buf, violation));
                    }
                    let Some(len) = announcement(strip_eol(&buf[self.framed..end])) else {
                        let command = buf.split_to(end).freeze();
                        self.reset();
                        return Ok(Some(command));
                    };
                    let too_large =
                        len > self.limits.max_literal as u64 || len > u64::from(u32::MAX);
                    let too_long =
                        (end as u64).saturating_add(len) > self.limits.max_command as u64;
                    if too_large || too_long {
                        buf.advance(end);
                        self.reset();
                        if len > self.limits.max_command as u64 {
                            self.state = State::Abandoned;
                            buf.clear();
                            return Err(FramingError::LiteralTooLargeToSkip { len });
                        }
                        self.state = State::DiscardLiteral { remaining: len };
                        return Err(if too_large {
                            FramingError::LiteralTooLarge { len }
                        } else {
                            FramingError::CommandTooLong
                        });
                    }
                    self.framed = end;
                    self.scanned = end;
                    self.state = State::Literal { remaining: len };
                }
            }
        }
    }

    /// Forget the current command's progress.
    fn reset(&mut self) {
        self.framed = 0;
        self.scanned = 0;
        self.state = State::Line;
    }

    /// Which limit the current line breaks first, looking only at `buf[..upto]` (which has
    /// no LF past `framed`) as if it were all that had arrived. "First" is in stream order,
    /// and the line limit wins a tie, so the answer does not depend on read sizes.
    fn first_violation(&self, buf: &[u8], upto: usize) -> Option<Violation> {
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
        let command_at = Some(self.limits.max_command.saturating_add(1)).filter(|&at| at <= upto);
        match (line_at, command_at) {
            (Some(line), Some(command)) if command < line => Some(Violation::Command),
            (Some(_), _) => Some(Violation::Line),
            (None, Some(_)) => Some(Violation::Command),
            (None, None) => None,
        }
    }

    /// Which limit the current line, complete up to `end` (its LF included), breaks first:
    /// one already broken before its line ending arrived, else one it breaks as a whole.
    fn violation_at_line_end(&self, buf: &[u8], end: usize) -> Option<Violation> {
        self.first_violation(buf, end - 1).or_else(|| {
            if strip_eol(&buf[self.framed..end]).len() > self.limits.max_line {
                Some(Violation::Line)
            } else if end > self.limits.max_command {
                Some(Violation::Command)
            } else {
                None
            }
        })
    }

    /// Start discarding the current line and build the error to report, once.
    fn report(&mut self, buf: &mut BytesMut, violation: Violation) -> FramingError {
        buf.advance(self.framed);
        self.reset();
        self.state = State::DiscardLine;
        self.discard(buf);
        match violation {
            Violation::Line => FramingError::LineTooLong,
            Violation::Command => FramingError::CommandTooLong,
        }
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
                    self.state = State::DiscardLine;
                }
                State::DiscardLine => {
                    let Some(lf) = memchr(&buf[self.scanned..]) else {
                        let drop = buf.len().saturating_sub(DISCARD_TAIL);
                        buf.advance(drop);
                        self.scanned = buf.len();
                        return false;
                    };
                    let end = self.scanned + lf + 1;
                    let line = strip_eol(&buf[..end]);
                    let literal = announcement(&line[line.len().saturating_sub(DISCARD_WINDOW)..]);
                    buf.advance(end);
                    self.reset();
                    match literal {
                        None => return true,
                        Some(len) if len > self.limits.max_command as u64 => {
                            self.state = State::SkipRefused { len };
                            return true;
                        }
                        Some(len) => self.state = State::DiscardLiteral { remaining: len },
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

/// Position of the first LF.
fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;

//! Splitting client input into SMTP command lines.
//!
//! Every SMTP command is one line (RFC 5321 §2.3.8), and so is every client response of
//! the AUTH exchange (RFC 4954 §4), so one bounded line reader serves both.
//!
//! Two bounds ([`LineLimits`]): an AUTH command line and an AUTH response line may carry a
//! bearer token and get [`LineLimits::max_auth_line`]; every other command keeps
//! [`LineLimits::max_line`]. Whether a line is an AUTH command is told by its first five
//! octets (`AUTH` and a space, any case), which arrive long before either bound is
//! reached, so the answer does not depend on read sizes.
//!
//! Decisions:
//! - **Bare LF ends a line** as CRLF does, like the IMAP framer and like Postfix. Rejecting
//!   it would break sloppy clients and buy nothing before authentication: no message data
//!   is read here, so the "bare LF smuggling" problem of DATA does not arise. A CR just
//!   before the LF is stripped; a CR anywhere else is an ordinary octet.
//! - **Too long is reported once, then discarded** up to the line's end (STYLE.md habit 3,
//!   tokio-util `LinesCodec::is_discarding`); framing then carries on with the next line.
//!   Nothing is ever truncated.
//! - **No buffer of its own**: the caller's [`BytesMut`] holds the partial line; the framer
//!   remembers how far it searched, so an idle framer is three words.
//! - The result does not depend on how the input was split into reads: an over-long line is
//!   reported as soon as it is certain to be over the limit, and exactly once.

use bytes::{Buf, Bytes, BytesMut};

use crate::limits::MAX_AUTH_LINE;

/// Size limits for SMTP client lines, not counting the CRLF (or LF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineLimits {
    /// Longest command line other than AUTH. Default 12,288
    /// ([`DEFAULT_MAX_LINE`](super::DEFAULT_MAX_LINE)): RFC 4954 §4's minimum for AUTH lines,
    /// far more than any other command needs (RFC 5321 §4.5.3.1.4 says 512).
    pub max_line: usize,
    /// Longest AUTH command line (with its initial response) and AUTH response line.
    /// Default 24,236 ([`MAX_AUTH_LINE`]): a 16 KiB token, base64-encoded, with the command
    /// around it. RFC 4954 §4's 12,288 octets is a minimum: a server "MUST" accept that
    /// much, and a token over 9 KiB (an Entra ID token with its groups is about 12 KiB) does
    /// not fit in it.
    pub max_auth_line: usize,
}

impl LineLimits {
    /// Default [`LineLimits::max_line`]: 12,288.
    pub const DEFAULT_MAX_LINE: usize = super::DEFAULT_MAX_LINE;
    /// Default [`LineLimits::max_auth_line`]: 24,236.
    pub const DEFAULT_MAX_AUTH_LINE: usize = MAX_AUTH_LINE;

    /// One bound for every line (POP3, and a backend's replies).
    pub fn uniform(max_line: usize) -> Self {
        Self {
            max_line,
            max_auth_line: max_line,
        }
    }
}

impl Default for LineLimits {
    fn default() -> Self {
        Self {
            max_line: Self::DEFAULT_MAX_LINE,
            max_auth_line: Self::DEFAULT_MAX_AUTH_LINE,
        }
    }
}

/// Client input over the line limit. Reported once per offending line; the framer then
/// discards up to the line's end by itself and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A line is longer than its limit (its CRLF not counted).
    #[error("line longer than {max} octets")]
    LineTooLong {
        /// The limit that was broken: [`LineLimits::max_auth_line`] for an AUTH line or
        /// response, else [`LineLimits::max_line`].
        max: usize,
    },
}

/// What the next line is, which decides its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A command: AUTH gets the AUTH bound, anything else the command bound.
    Command,
    /// A client response of the AUTH exchange.
    AuthResponse,
}

/// Splits client input into lines within [`LineLimits`]. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LineFramer {
    limits: LineLimits,
    /// Offset up to which the buffer has been searched for LF, so that a line arriving in
    /// many small reads is scanned once.
    scanned: usize,
    /// Dropping the rest of a line already reported as too long.
    discarding: bool,
}

/// The line without its LF or CRLF.
pub(crate) fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl LineFramer {
    /// A framer for lines of at most `max_line` octets each, AUTH lines included, not
    /// counting the CRLF (or LF): for POP3 and a backend's replies. For SMTP client input
    /// use [`LineFramer::with_limits`] and [`LineLimits::default`].
    pub fn new(max_line: usize) -> Self {
        Self::with_limits(LineLimits::uniform(max_line))
    }

    /// A framer for SMTP client input, AUTH lines with their own bound.
    pub fn with_limits(limits: LineLimits) -> Self {
        Self {
            limits,
            scanned: 0,
            discarding: false,
        }
    }

    /// The bound of lines other than AUTH.
    pub fn max_line(&self) -> usize {
        self.limits.max_line
    }

    /// The limits this framer enforces.
    pub fn limits(&self) -> LineLimits {
        self.limits
    }

    /// Whether the framer is dropping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// The next command line, without its CRLF (or LF), consumed from `buf`: an AUTH command
    /// may be [`LineLimits::max_auth_line`] long, any other [`LineLimits::max_line`].
    /// `Ok(None)`: more bytes are needed (a partial line stays in `buf`, which then holds at
    /// most its bound + 1 octets of it plus whatever the last read added).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        self.decode_kind(buf, Kind::Command)
    }

    /// The next client response line of the AUTH exchange (after `334 `), bounded by
    /// [`LineLimits::max_auth_line`]; otherwise as [`decode`](Self::decode).
    pub fn decode_auth_response(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Bytes>, FramingError> {
        self.decode_kind(buf, Kind::AuthResponse)
    }

    /// The bound of a line that starts with `start` (all of it, or what has arrived).
    fn bound(&self, kind: Kind, start: &[u8]) -> usize {
        let auth = self.limits.max_auth_line.max(self.limits.max_line);
        match kind {
            Kind::AuthResponse => self.limits.max_auth_line,
            Kind::Command if may_be_auth(start) => auth,
            Kind::Command => self.limits.max_line,
        }
    }

    fn decode_kind(
        &mut self,
        buf: &mut BytesMut,
        kind: Kind,
    ) -> Result<Option<Bytes>, FramingError> {
        // A caller that shrank the buffer behind our back must not make us index past it.
        if self.scanned > buf.len() {
            self.scanned = 0;
        }
        loop {
            let Some(lf) = buf[self.scanned..].iter().position(|&b| b == b'\n') else {
                if self.discarding {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                self.scanned = buf.len();
                // A trailing CR may be the start of the CRLF: not counted yet.
                let content = buf.len() - usize::from(buf.ends_with(b"\r"));
                let max = self.bound(kind, buf);
                if content > max {
                    self.discarding = true;
                    buf.clear();
                    self.scanned = 0;
                    return Err(FramingError::LineTooLong { max });
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
            let max = self.bound(kind, &line);
            if content > max {
                return Err(FramingError::LineTooLong { max });
            }
            return Ok(Some(line.slice(..content)));
        }
    }

    /// Finish dropping an over-long line reported earlier, without reading the next line.
    /// True when nothing is being discarded any more: the buffer then starts at a line's
    /// beginning.
    pub(crate) fn finish_discard(&mut self, buf: &mut BytesMut) -> bool {
        if !self.discarding {
            return true;
        }
        if self.scanned > buf.len() {
            self.scanned = 0;
        }
        match buf[self.scanned..].iter().position(|&b| b == b'\n') {
            Some(lf) => {
                buf.advance(self.scanned + lf + 1);
                self.scanned = 0;
                self.discarding = false;
                true
            }
            None => {
                buf.clear();
                self.scanned = 0;
                false
            }
        }
    }
}

/// Whether a line starting with `start` is, or may still turn out to be, an AUTH command:
/// `AUTH` and a space, in any case.
pub(crate) fn may_be_auth(start: &[u8]) -> bool {
    const AUTH: &[u8] = b"AUTH ";
    let n = start.len().min(AUTH.len());
    start[..n].eq_ignore_ascii_case(&AUTH[..n])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(max: usize, chunks: &[&[u8]]) -> Vec<Result<Bytes, FramingError>> {
        let mut framer = LineFramer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match framer.decode(&mut buf) {
                    Ok(None) => break,
                    Ok(Some(line)) => out.push(Ok(line)),
                    Err(e) => out.push(Err(e)),
                }
            }
        }
        out
    }

    #[test]
    fn lines_end_in_crlf_or_bare_lf() {
        let out = frame_all(16, &[b"EHLO a\r\nNOOP\nQUIT\r", b"\n\r\n"]);
        let want: Vec<Result<Bytes, FramingError>> = vec![
            Ok("EHLO a".into()),
            Ok("NOOP".into()),
            Ok("QUIT".into()),
            Ok("".into()),
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn partial_line_waits() {
        let mut framer = LineFramer::new(16);
        let mut buf = BytesMut::from(&b"NO"[..]);
        assert_eq!(framer.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"OP\r");
        assert_eq!(framer.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\nRS");
        assert_eq!(framer.decode(&mut buf), Ok(Some("NOOP".into())));
        assert_eq!(&buf[..], b"RS");
    }

    #[test]
    fn exactly_max_is_accepted_one_more_is_refused_once() {
        let max = 8;
        let ok = [b'a'; 8];
        let long = [b'b'; 9];
        for chunks in [
            vec![&ok[..], b"\r\n", &long[..], b"\r\n", b"NOOP\r\n"],
            vec![
                &ok[..],
                b"\r\n",
                &long[..5],
                &long[5..],
                b"\r",
                b"\nNOOP\r\n",
            ],
        ] {
            let out = frame_all(max, &chunks);
            let want: Vec<Result<Bytes, FramingError>> = vec![
                Ok(Bytes::copy_from_slice(&ok)),
                Err(FramingError::LineTooLong { max }),
                Ok("NOOP".into()),
            ];
            assert_eq!(out, want, "{chunks:?}");
        }
    }

    #[test]
    fn over_long_line_is_discarded_without_holding_it() {
        let mut framer = LineFramer::new(4);
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        assert_eq!(
            framer.decode(&mut buf),
            Err(FramingError::LineTooLong { max: 4 })
        );
        assert!(buf.is_empty() && framer.is_discarding());
        buf.extend_from_slice(b"ijkl");
        assert_eq!(framer.decode(&mut buf), Ok(None));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"m\r\nQUIT\r\n");
        assert_eq!(framer.decode(&mut buf), Ok(Some("QUIT".into())));
        assert!(!framer.is_discarding());
    }

    #[test]
    fn trailing_cr_counts_only_when_not_followed_by_lf() {
        // Four octets and a CR: could still be a four-octet line.
        let out = frame_all(4, &[b"abcd\r", b"\n"]);
        assert_eq!(out, vec![Ok(Bytes::from("abcd"))]);
        // A CR inside the line is content.
        let out = frame_all(4, &[b"abcd\r", b"x\n", b"ok\n"]);
        assert_eq!(
            out,
            vec![Err(FramingError::LineTooLong { max: 4 }), Ok("ok".into())]
        );
    }

    #[test]
    fn caller_shrinking_the_buffer_is_survived() {
        let mut framer = LineFramer::new(16);
        let mut buf = BytesMut::from(&b"STARTTLS\r\nEHLO x"[..]);
        assert_eq!(framer.decode(&mut buf), Ok(Some("STARTTLS".into())));
        assert_eq!(framer.decode(&mut buf), Ok(None));
        buf.clear();
        buf.extend_from_slice(b"Q\n");
        assert_eq!(framer.decode(&mut buf), Ok(Some("Q".into())));
    }

    /// Lines of exactly `len` octets: `start` padded with `x`.
    fn line_of(start: &str, len: usize) -> Vec<u8> {
        let mut line = start.as_bytes().to_vec();
        line.resize(len, b'x');
        line
    }

    #[test]
    fn default_limits_at_and_just_over_each_bound() {
        let limits = LineLimits::default();
        assert_eq!((limits.max_line, limits.max_auth_line), (12_288, 24_236));
        let max = limits.max_line;
        let auth = limits.max_auth_line;
        // An AUTH command (any case) with its initial response may be the AUTH bound long;
        // any other command only the command bound.
        for (start, bound) in [
            ("AUTH XOAUTH2 ", auth),
            ("auth oauthbearer ", auth),
            ("NOOP ", max),
            ("AUTHX ", max),
        ] {
            for (len, ok) in [(bound, true), (bound + 1, false)] {
                let line = line_of(start, len);
                for chunk in [len + 2, 1_000, 7] {
                    let mut framer = LineFramer::with_limits(limits);
                    let mut buf = BytesMut::new();
                    let mut out = Vec::new();
                    let input = [&line[..], b"\r\nQUIT\r\n"].concat();
                    for piece in input.chunks(chunk) {
                        buf.extend_from_slice(piece);
                        while let Some(got) = framer.decode(&mut buf).transpose() {
                            out.push(got);
                        }
                    }
                    let first = if ok {
                        Ok(Bytes::from(line.clone()))
                    } else {
                        Err(FramingError::LineTooLong { max: bound })
                    };
                    assert_eq!(out, vec![first, Ok("QUIT".into())], "{start} {len}/{chunk}");
                }
            }
        }
        // A response line of the AUTH exchange gets the AUTH bound, whatever it starts with.
        for (len, ok) in [(auth, true), (auth + 1, false)] {
            let mut framer = LineFramer::with_limits(limits);
            let line = line_of("", len);
            let mut buf = BytesMut::from(&[&line[..], b"\r\n"].concat()[..]);
            let want = if ok {
                Ok(Some(Bytes::from(line)))
            } else {
                Err(FramingError::LineTooLong { max: auth })
            };
            assert_eq!(framer.decode_auth_response(&mut buf), want, "{len}");
        }
    }

    #[test]
    fn an_over_long_line_other_than_auth_is_told_before_its_end() {
        let limits = LineLimits::default();
        let mut framer = LineFramer::with_limits(limits);
        let mut buf = BytesMut::from(&line_of("NOOP ", limits.max_line + 1)[..]);
        assert_eq!(
            framer.decode(&mut buf),
            Err(FramingError::LineTooLong {
                max: limits.max_line
            })
        );
        // An AUTH line of that length is still being read.
        let mut framer = LineFramer::with_limits(limits);
        let mut buf = BytesMut::from(&line_of("AUTH XOAUTH2 ", limits.max_line + 1)[..]);
        assert_eq!(framer.decode(&mut buf), Ok(None));
    }
}

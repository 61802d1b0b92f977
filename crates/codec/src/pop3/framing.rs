//! Splitting input into POP3 lines.
//!
//! Every POP3 command is one line (RFC 1939 §3), and so is every client response of the
//! AUTH exchange (RFC 5034 §4), so one bounded line reader serves both; the backend's
//! replies are read line by line with it too ([`ResponseFramer`](super::ResponseFramer)).
//!
//! Decisions:
//! - **Bare LF ends a line** as CRLF does, like Dovecot and the proxy's SMTP framer. No
//!   message data is read before login, so nothing is gained by refusing it. A CR just
//!   before the LF is stripped; a CR anywhere else is an ordinary octet.
//! - **Too long is reported once, then discarded** up to the line's end (STYLE.md habit 3,
//!   tokio-util `LinesCodec::is_discarding`); framing then carries on with the next line.
//!   Nothing is ever truncated.
//! - **No buffer of its own**: the caller's [`BytesMut`] holds the partial line; the framer
//!   remembers how far it searched, so an idle framer is three words.
//! - The result does not depend on how the input was split into reads: an over-long line is
//!   reported as soon as it is certain to be over the limit, and exactly once.

use bytes::{Buf, Bytes, BytesMut};

/// Input over the line limit. Reported once per offending line; the framer then discards
/// up to the line's end by itself and carries on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A line is longer than the framer's `max_line` (its CRLF not counted).
    #[error("line longer than {max} octets")]
    LineTooLong {
        /// The limit that was broken.
        max: usize,
    },
}

/// Splits input into lines of at most `max_line` octets. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line: usize,
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
    /// A framer for lines of at most `max_line` octets, not counting the CRLF (or LF). For
    /// client input use [`DEFAULT_MAX_LINE`](super::DEFAULT_MAX_LINE).
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            scanned: 0,
            discarding: false,
        }
    }

    /// The limit this framer enforces.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Whether the framer is dropping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// The next line, without its CRLF (or LF), consumed from `buf`. `Ok(None)`: more bytes
    /// are needed (a partial line stays in `buf`, which then holds at most `max_line + 1`
    /// octets of it plus whatever the last read added).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
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
                if content > self.max_line {
                    self.discarding = true;
                    buf.clear();
                    self.scanned = 0;
                    return Err(self.too_long());
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
                return Err(self.too_long());
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

    fn too_long(&self) -> FramingError {
        FramingError::LineTooLong { max: self.max_line }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pop3::fuzzing::frame_lines;
    use crate::pop3::DEFAULT_MAX_LINE;

    type Framed = Vec<Result<Bytes, FramingError>>;

    #[test]
    fn lines_end_in_crlf_or_bare_lf() {
        let out = frame_lines(16, [&b"CAPA\r\nSTLS\nQUIT\r"[..], b"\n\r\n"]);
        let want: Framed = vec![
            Ok("CAPA".into()),
            Ok("STLS".into()),
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
        buf.extend_from_slice(b"\nUS");
        assert_eq!(framer.decode(&mut buf), Ok(Some("NOOP".into())));
        assert_eq!(&buf[..], b"US");
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
            let want: Framed = vec![
                Ok(Bytes::copy_from_slice(&ok)),
                Err(FramingError::LineTooLong { max }),
                Ok("NOOP".into()),
            ];
            assert_eq!(frame_lines(max, chunks.iter().copied()), want);
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
        let out = frame_lines(4, [&b"abcd\r"[..], b"\n"]);
        assert_eq!(out, vec![Ok(Bytes::from("abcd"))]);
        let out = frame_lines(4, [&b"abcd\r"[..], b"x\n", b"ok\n"]);
        assert_eq!(
            out,
            vec![Err(FramingError::LineTooLong { max: 4 }), Ok("ok".into())]
        );
    }

    #[test]
    fn a_16_kib_token_line_fits_the_default_limit() {
        // `AUTH XOAUTH2 ` and 21,848 octets of base64: the longest initial response.
        let line = format!("AUTH XOAUTH2 {}\r\n", "A".repeat(21_848));
        let out = frame_lines(DEFAULT_MAX_LINE, [line.as_bytes()]);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_ok());
        let long = format!("{}\r\nQUIT\r\n", "A".repeat(DEFAULT_MAX_LINE + 1));
        let out = frame_lines(DEFAULT_MAX_LINE, long.as_bytes().chunks(1_000));
        assert_eq!(
            out,
            vec![
                Err(FramingError::LineTooLong {
                    max: DEFAULT_MAX_LINE
                }),
                Ok("QUIT".into())
            ]
        );
    }

    #[test]
    fn caller_shrinking_the_buffer_is_survived() {
        let mut framer = LineFramer::new(16);
        let mut buf = BytesMut::from(&b"STLS\r\nCAPA"[..]);
        assert_eq!(framer.decode(&mut buf), Ok(Some("STLS".into())));
        assert_eq!(framer.decode(&mut buf), Ok(None));
        buf.clear();
        buf.extend_from_slice(b"Q\n");
        assert_eq!(framer.decode(&mut buf), Ok(Some("Q".into())));
    }

    #[test]
    fn finish_discard_stops_at_the_line_end() {
        let mut framer = LineFramer::new(2);
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert!(framer.decode(&mut buf).is_err());
        buf.extend_from_slice(b"def");
        assert!(!framer.finish_discard(&mut buf));
        assert!(buf.is_empty());
        buf.extend_from_slice(b"g\r\n+OK\r\n");
        assert!(framer.finish_discard(&mut buf));
        assert_eq!(&buf[..], b"+OK\r\n");
        assert!(framer.finish_discard(&mut buf));
    }
}

//! Splitting input into POP3 lines. Every POP3 command is one line (RFC 1939 §3), and so is
//! every client response of the AUTH exchange (RFC 5034 §4) and every line of the backend's
//! replies, so POP3 uses the SMTP crate module's bounded line framer as it is: CRLF or bare
//! LF ends a line, an over-long line is reported once and discarded to its end, never
//! truncated (see [`crate::smtp::framing`]).

pub(crate) use crate::smtp::framing::strip_eol;
pub use crate::smtp::framing::{FramingError, LineFramer};

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};

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
        // `AUTH XOAUTH2 ` and 23,212 octets of base64: the longest initial response.
        let line = format!("AUTH XOAUTH2 {}\r\n", "A".repeat(23_212));
        let out = frame_lines(DEFAULT_MAX_LINE, [line.as_bytes()]);
        assert_eq!(out.len(), 1);
        assert!(out[0].is_ok());
        // Exactly the limit: one line.
        let line = format!("{}\r\n", "A".repeat(DEFAULT_MAX_LINE));
        let out = frame_lines(DEFAULT_MAX_LINE, line.as_bytes().chunks(1_000));
        assert_eq!(out, vec![Ok(line.trim_end().to_owned().into())]);
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

//! Lexical rules of RFC 5804 §4 shared by commands and responses, and their writers.
//!
//! Parsers work on a whole framed command or response already in memory
//! (`nom::*::complete`), so "not enough input" is a syntax error here, never `Incomplete`.
//!
//! Decisions:
//! - **Quoted strings are not capped at 1024 octets.** RFC 5804 says `*1024QUOTED-CHAR`,
//!   but sievelib sends an OAUTHBEARER token of any length as a quoted string (DESIGN.md),
//!   and Pigeonhole only bounds quoted strings by its line limit; so do we (the framer's
//!   [`Limits::max_line`](crate::Limits::max_line)). Writers still never send a quoted
//!   string over 1024 octets.
//! - **Both literal forms are read in both directions**: `{n+}` (`literal-c2s`) and `{n}`
//!   (`literal-s2c`). ManageSieve has no continuation for literals, so a client's `{n}` is
//!   read at once, as Pigeonhole does.
//! - Octets are not checked for UTF-8 here; where a `String` is needed the caller decides.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{tag, take, take_while1};
use nom::character::complete::char;
use nom::combinator::opt;
use nom::error::{Error, ErrorKind};
use nom::sequence::tuple;
use nom::IResult;

/// Longest quoted string a writer sends (RFC 5804 §4, `*1024QUOTED-CHAR`).
pub const MAX_QUOTED_LEN: usize = 1_024;

/// ```abnf
/// ATOM-CHAR = "!" / %x23-27 / %x2A-5B / %x5D-7A / %x7C-7E
///           ; any CHAR except atom-specials: "(" / ")" / "{" / SP / CTL / DQUOTE / "\"
/// ```
pub(crate) fn is_atom_char(b: u8) -> bool {
    matches!(b, b'!' | 0x23..=0x27 | 0x2a..=0x5b | 0x5d..=0x7a | 0x7c..=0x7e)
}

/// Whether `s` is a valid atom.
pub fn is_valid_atom(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_atom_char(b))
}

fn fail<T>(i: &[u8], kind: ErrorKind) -> IResult<&[u8], T> {
    Err(nom::Err::Error(Error::new(i, kind)))
}

/// ```abnf
/// atom = 1*1024ATOM-CHAR   ; the length is bounded by the line limit instead
/// ```
pub(crate) fn atom(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(is_atom_char)(i)
}

/// ```abnf
/// SP = %x20
/// ```
pub(crate) fn sp(i: &[u8]) -> IResult<&[u8], char> {
    char(' ')(i)
}

/// ```abnf
/// CRLF = CR LF   ; a bare LF is accepted too, as by the framer (and Pigeonhole)
/// ```
pub(crate) fn crlf(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((tag("\r\n"), tag("\n")))(i)
}

/// ```abnf
/// number = 1*DIGIT   ; 0 <= number < 4,294,967,296
/// ```
pub(crate) fn number(i: &[u8]) -> IResult<&[u8], u32> {
    let (rest, digits) = take_while1(|b: u8| b.is_ascii_digit())(i)?;
    let mut n: u32 = 0;
    for &d in digits {
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(d - b'0')))
        {
            Some(n) => n,
            None => return fail(i, ErrorKind::TooLarge),
        };
    }
    Ok((rest, n))
}

/// ```abnf
/// quoted          = DQUOTE *QUOTED-CHAR DQUOTE   ; RFC 5804 caps it at 1024; see module docs
/// QUOTED-CHAR     = SAFE-UTF8-CHAR / "\" QUOTED-SPECIALS
/// QUOTED-SPECIALS = DQUOTE / "\"
/// SAFE-CHAR       = %x01-09 / %x0B-0C / %x0E-21 / %x23-5B / %x5D-7F
/// ```
/// Returns the unescaped content.
pub(crate) fn quoted(i: &[u8]) -> IResult<&[u8], Cow<'_, [u8]>> {
    let (body, _) = char('"')(i)?;
    let mut owned: Option<Vec<u8>> = None;
    let mut pos = 0;
    while let Some(&b) = body.get(pos) {
        match b {
            b'"' => {
                let value = match owned {
                    Some(v) => Cow::Owned(v),
                    None => Cow::Borrowed(&body[..pos]),
                };
                return Ok((&body[pos + 1..], value));
            }
            b'\\' => {
                let escaped = match body.get(pos + 1) {
                    Some(&e @ (b'"' | b'\\')) => e,
                    _ => return fail(&body[pos..], ErrorKind::Escaped),
                };
                owned
                    .get_or_insert_with(|| body[..pos].to_vec())
                    .push(escaped);
                pos += 2;
            }
            0 | b'\r' | b'\n' => return fail(&body[pos..], ErrorKind::Char),
            b => {
                if let Some(v) = owned.as_mut() {
                    v.push(b);
                }
                pos += 1;
            }
        }
    }
    fail(i, ErrorKind::Eof)
}

/// ```abnf
/// literal-c2s = "{" number "+}" CRLF *OCTET
/// literal-s2c = "{" number "}" CRLF *OCTET
/// ```
pub(crate) fn literal(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, (_, len, _, _, _)) = tuple((tag("{"), number, opt(tag("+")), tag("}"), crlf))(i)?;
    let Ok(len) = usize::try_from(len) else {
        return fail(i, ErrorKind::TooLarge);
    };
    take(len)(rest)
}

/// ```abnf
/// string = quoted / literal-c2s / literal-s2c
/// ```
pub(crate) fn string(i: &[u8]) -> IResult<&[u8], Cow<'_, [u8]>> {
    alt((quoted, nom::combinator::map(literal, Cow::Borrowed)))(i)
}

/// Which way a string travels: it decides the literal form a writer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server: literals are `{n+}` (`literal-c2s`).
    ToServer,
    /// Server to client: literals are `{n}` (`literal-s2c`).
    ToClient,
}

/// Whether `s` can go as a quoted string: at most 1024 octets of UTF-8 without NUL, CR or
/// LF (`SAFE-UTF8-CHAR`).
pub fn is_quotable(s: &[u8]) -> bool {
    s.len() <= MAX_QUOTED_LEN
        && !s.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && std::str::from_utf8(s).is_ok()
}

/// Write `s` as a quoted string, escaping `"` and `\`. The caller checks [`is_quotable`].
fn write_quoted(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        if matches!(b, b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Write `s` as a ManageSieve `string`: quoted when [`is_quotable`], else a literal of the
/// form `direction` calls for. Any octets can be written; nothing is ever truncated.
pub fn write_string(out: &mut Vec<u8>, s: &[u8], direction: Direction) {
    if is_quotable(s) {
        write_quoted(out, s);
        return;
    }
    out.push(b'{');
    out.extend_from_slice(s.len().to_string().as_bytes());
    if direction == Direction::ToServer {
        out.push(b'+');
    }
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(s);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_known_answers() {
        type Case<'a> = (&'a [u8], Option<(&'a [u8], &'a [u8])>);
        let cases: &[Case<'_>] = &[
            (b"\"\" ", Some((b"", b" "))),
            (b"\"OAUTHBEARER\"\r\n", Some((b"OAUTHBEARER", b"\r\n"))),
            (b"\"a\\\"b\\\\c\"x", Some((b"a\"b\\c", b"x"))),
            (b"\"caf\xc3\xa9\"", Some((b"caf\xc3\xa9", b""))),
            (b"{3+}\r\nabcd", Some((b"abc", b"d"))),
            (b"{3}\r\nabcd", Some((b"abc", b"d"))),
            (b"{4+}\r\na\r\n\0", Some((b"a\r\n\0", b""))),
            (b"{0+}\r\n", Some((b"", b""))),
            (b"{3+}\nabc", Some((b"abc", b""))),
            (b"\"a\\b\"", None),
            (b"\"a\rb\"", None),
            (b"\"a\0b\"", None),
            (b"\"open", None),
            (b"{4+}\r\nabc", None),
            (b"{4294967296+}\r\n", None),
            (b"{3+}abc", None),
            (b"{+}\r\n", None),
            (b"atom", None),
            (b"", None),
        ];
        for (input, want) in cases {
            let got = string(input)
                .ok()
                .map(|(rest, v)| (v.into_owned(), rest.to_vec()));
            let want = want.map(|(v, rest)| (v.to_vec(), rest.to_vec()));
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn long_quoted_strings_are_read() {
        let mut input = b"\"".to_vec();
        input.extend(std::iter::repeat_n(b'A', 3_000));
        input.push(b'"');
        let (rest, value) = string(&input).expect("parses");
        assert!(rest.is_empty());
        assert_eq!(value.len(), 3_000);
    }

    #[test]
    fn write_string_known_answers() {
        type Case<'a> = (&'a [u8], Direction, &'a [u8]);
        let cases: &[Case<'_>] = &[
            (b"", Direction::ToClient, b"\"\""),
            (b"PLAIN", Direction::ToServer, b"\"PLAIN\""),
            (b"a\"b\\", Direction::ToClient, b"\"a\\\"b\\\\\""),
            (b"caf\xc3\xa9", Direction::ToClient, b"\"caf\xc3\xa9\""),
            (b"p\r\nss", Direction::ToServer, b"{5+}\r\np\r\nss"),
            (b"p\r\nss", Direction::ToClient, b"{5}\r\np\r\nss"),
            (b"\xff", Direction::ToClient, b"{1}\r\n\xff"),
            (b"a\0", Direction::ToServer, b"{2+}\r\na\0"),
        ];
        for (input, direction, want) in cases {
            let mut out = Vec::new();
            write_string(&mut out, input, *direction);
            assert_eq!(out, *want, "input {input:?}");
        }
    }

    #[test]
    fn strings_over_1024_octets_are_written_as_literals() {
        let s = vec![b'A'; MAX_QUOTED_LEN];
        let mut out = Vec::new();
        write_string(&mut out, &s, Direction::ToClient);
        assert_eq!(out.first(), Some(&b'"'));
        let s = vec![b'A'; MAX_QUOTED_LEN + 1];
        let mut out = Vec::new();
        write_string(&mut out, &s, Direction::ToServer);
        assert!(out.starts_with(b"{1025+}\r\nAAA"));
    }

    #[test]
    fn atom_chars() {
        assert!(is_valid_atom(b"AUTHENTICATE"));
        assert!(is_valid_atom(b"QUOTA/MAXSIZE"));
        for bad in [
            &b""[..],
            b"a b",
            b"a(",
            b"a)",
            b"a{",
            b"a\"",
            b"a\\",
            b"a\x7f",
        ] {
            assert!(!is_valid_atom(bad), "{bad:?}");
        }
    }
}

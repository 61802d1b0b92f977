//! Lexical rules shared by commands and responses (RFC 3501 §9, RFC 9051 §9), and the
//! writers that produce them.
//!
//! Parsers work on a whole command or line that is already in memory (`nom::*::complete`),
//! so "not enough input" is a syntax error here, never `Incomplete`.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take, take_while1};
use nom::character::complete::char;
use nom::combinator::{map, opt, value};
use nom::error::{Error, ErrorKind};
use nom::sequence::tuple;
use nom::IResult;

/// `CHAR = %x01-7F`, minus `CTL = %x00-1F / %x7F`.
fn is_visible_char(b: u8) -> bool {
    (0x21..0x7f).contains(&b)
}

/// `ATOM-CHAR = <any CHAR except atom-specials>`
///
/// `atom-specials = "(" / ")" / "{" / SP / CTL / list-wildcards / quoted-specials /
/// resp-specials`, `list-wildcards = "%" / "*"`, `quoted-specials = DQUOTE / "\"`,
/// `resp-specials = "]"`.
pub(crate) fn is_atom_char(b: u8) -> bool {
    is_visible_char(b) && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
}

/// `ASTRING-CHAR = ATOM-CHAR / resp-specials`
pub(crate) fn is_astring_char(b: u8) -> bool {
    is_atom_char(b) || b == b']'
}

/// `tag = 1*<any ASTRING-CHAR except "+">`
pub(crate) fn is_tag_char(b: u8) -> bool {
    is_astring_char(b) && b != b'+'
}

/// `TEXT-CHAR = <any CHAR except CR and LF>`, widened to UTF-8 octets as RFC 9051 allows.
pub(crate) fn is_text_char(b: u8) -> bool {
    !matches!(b, 0 | b'\r' | b'\n')
}

/// Whether `s` is a valid tag.
pub fn is_valid_tag(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tag_char(b))
}

/// Whether `s` is a valid atom.
pub fn is_valid_atom(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_atom_char(b))
}

fn fail<T>(i: &[u8], kind: ErrorKind) -> IResult<&[u8], T> {
    Err(nom::Err::Error(Error::new(i, kind)))
}

/// ```abnf
/// tag = 1*<any ASTRING-CHAR except "+">
/// ```
pub(crate) fn tag_rule(i: &[u8]) -> IResult<&[u8], &[u8]> {
    take_while1(is_tag_char)(i)
}

/// ```abnf
/// atom = 1*ATOM-CHAR
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
/// CRLF = CR LF   ; a bare LF is accepted too, as by the framer (and Dovecot)
/// ```
pub(crate) fn crlf(i: &[u8]) -> IResult<&[u8], &[u8]> {
    alt((tag("\r\n"), tag("\n")))(i)
}

/// ```abnf
/// number = 1*DIGIT   ; RFC 9051 number64 for literal lengths: fits in 63 bits
/// ```
pub(crate) fn number(i: &[u8]) -> IResult<&[u8], u64> {
    let (rest, digits) = take_while1(|b: u8| b.is_ascii_digit())(i)?;
    let mut n: u64 = 0;
    for &d in digits {
        n = match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
        {
            Some(n) => n,
            None => return fail(i, ErrorKind::TooLarge),
        };
    }
    Ok((rest, n))
}

/// ```abnf
/// quoted         = DQUOTE *QUOTED-CHAR DQUOTE
/// QUOTED-CHAR    = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials / utf8-2/3/4
/// quoted-specials = DQUOTE / "\"
/// ```
/// Returns the unescaped content. UTF-8 validity is checked where a `String` is needed.
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
            b if is_text_char(b) => {
                if let Some(v) = owned.as_mut() {
                    v.push(b);
                }
                pos += 1;
            }
            _ => return fail(&body[pos..], ErrorKind::Char),
        }
    }
    fail(i, ErrorKind::Eof)
}

/// ```abnf
/// literal = "{" number64 ["+"] "}" CRLF *CHAR8   ; RFC 9051, "+" from RFC 7888
/// CHAR8   = %x01-ff
/// ```
pub(crate) fn literal(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let (rest, (_, len, _, _, _)) = tuple((tag("{"), number, opt(tag("+")), tag("}"), crlf))(i)?;
    let Ok(len) = usize::try_from(len) else {
        return fail(i, ErrorKind::TooLarge);
    };
    let (rest, octets) = take(len)(rest)?;
    if octets.contains(&0) {
        return fail(i, ErrorKind::Char);
    }
    Ok((rest, octets))
}

/// ```abnf
/// string = quoted / literal
/// ```
pub(crate) fn string(i: &[u8]) -> IResult<&[u8], Cow<'_, [u8]>> {
    alt((quoted, map(literal, Cow::Borrowed)))(i)
}

/// ```abnf
/// astring = 1*ASTRING-CHAR / string
/// ```
pub(crate) fn astring(i: &[u8]) -> IResult<&[u8], Cow<'_, [u8]>> {
    alt((map(take_while1(is_astring_char), Cow::Borrowed), string))(i)
}

/// ```abnf
/// nil = "NIL"
/// ```
pub(crate) fn nil(i: &[u8]) -> IResult<&[u8], ()> {
    value((), tag_no_case("NIL"))(i)
}

/// ```abnf
/// nstring = string / nil
/// ```
pub(crate) fn nstring(i: &[u8]) -> IResult<&[u8], Option<Cow<'_, [u8]>>> {
    alt((map(nil, |()| None), map(string, Some)))(i)
}

/// Why a value could not be written in the requested form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// The value needs a literal (it has CR, LF or 8-bit octets) but the peer lacks
    /// LITERAL+, and a synchronizing literal needs a round trip this writer cannot make.
    #[error("value needs a literal but the peer does not support LITERAL+")]
    NeedsLiteral,
    /// The value contains NUL, which no IMAP string can carry.
    #[error("value contains NUL")]
    Nul,
    /// The tag is not `1*<ASTRING-CHAR except "+">`.
    #[error("invalid tag")]
    InvalidTag,
    /// A mechanism or command name is not an atom.
    #[error("invalid atom")]
    InvalidAtom,
    /// An initial response is not base64 text.
    #[error("initial response is not base64")]
    InvalidBase64,
}

/// Whether `s` can be sent as a quoted string: 7-bit `TEXT-CHAR`s only (RFC 3501; 8-bit
/// quoted strings need UTF8=ACCEPT, which a backend is not assumed to have enabled).
fn is_quotable(s: &[u8]) -> bool {
    s.iter().all(|&b| is_text_char(b) && b.is_ascii())
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

/// Write `s` as a literal: `{n+}` CRLF octets (non-synchronizing) if `literal_plus`, else
/// `{n}` CRLF octets — the latter only where no continuation is needed (server responses).
fn write_literal(out: &mut Vec<u8>, s: &[u8], non_sync: bool) {
    out.push(b'{');
    out.extend_from_slice(s.len().to_string().as_bytes());
    if non_sync {
        out.push(b'+');
    }
    out.extend_from_slice(b"}\r\n");
    out.extend_from_slice(s);
}

/// Write `s` as an IMAP `string` in a client command: quoted when possible, else a
/// non-synchronizing literal when the peer has LITERAL+ (`literal_plus`), else an error.
pub fn write_string(out: &mut Vec<u8>, s: &[u8], literal_plus: bool) -> Result<(), WriteError> {
    if s.contains(&0) {
        return Err(WriteError::Nul);
    }
    if is_quotable(s) {
        write_quoted(out, s);
        return Ok(());
    }
    if !literal_plus {
        return Err(WriteError::NeedsLiteral);
    }
    write_literal(out, s, true);
    Ok(())
}

/// Write `s` as an IMAP `astring` in a client command: an atom when every octet is an
/// ASTRING-CHAR, otherwise as [`write_string`].
pub fn write_astring(out: &mut Vec<u8>, s: &[u8], literal_plus: bool) -> Result<(), WriteError> {
    if !s.is_empty() && s.iter().all(|&b| is_astring_char(b)) {
        out.extend_from_slice(s);
        return Ok(());
    }
    write_string(out, s, literal_plus)
}

/// Write `s` as a `string` in a server response: quoted when possible, else a literal
/// (servers never wait for a continuation). NUL octets are dropped: they cannot be sent.
pub(crate) fn write_response_string(out: &mut Vec<u8>, s: &[u8]) {
    let s: Cow<'_, [u8]> = if s.contains(&0) {
        Cow::Owned(s.iter().copied().filter(|&b| b != 0).collect())
    } else {
        Cow::Borrowed(s)
    };
    if is_quotable(&s) {
        write_quoted(out, &s);
    } else {
        write_literal(out, &s, false);
    }
}

/// Append human-readable `text` (resp-text), replacing CR, LF and NUL by spaces so the text
/// can never end the line early and smuggle a response.
pub(crate) fn write_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().map(|b| if is_text_char(b) { b } else { b' ' }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn astring_known_answers() {
        type Case<'a> = (&'a [u8], Option<(&'a [u8], &'a [u8])>);
        let cases: &[Case<'_>] = &[
            (b"user ", Some((b"user", b" "))),
            (b"a]b ", Some((b"a]b", b" "))),
            (b"\"\" ", Some((b"", b" "))),
            (b"\"a\\\"b\\\\c\"x", Some((b"a\"b\\c", b"x"))),
            (b"\"caf\xc3\xa9\"", Some((b"caf\xc3\xa9", b""))),
            (b"{3}\r\nabcd", Some((b"abc", b"d"))),
            (b"{3+}\r\na\r\n", Some((b"a\r\n", b""))),
            (b"{0}\r\n", Some((b"", b""))),
            (b"{3}\nabc", Some((b"abc", b""))),
            (b"\"a\\b\"", None),
            (b"\"a\rb\"", None),
            (b"\"open", None),
            (b"{4}\r\nabc", None),
            (b"{2}\r\na\0", None),
            (b"{99999999999999999999}\r\n", None),
            (b"~{1}\r\na", Some((b"~", b"{1}\r\na"))),
            (b"(", None),
            (b"", None),
        ];
        for (input, want) in cases {
            let got = astring(input)
                .ok()
                .map(|(rest, v)| (v.into_owned(), rest.to_vec()));
            let want = want.map(|(v, rest)| (v.to_vec(), rest.to_vec()));
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn write_astring_known_answers() {
        type Case<'a> = (&'a [u8], bool, Result<&'a [u8], WriteError>);
        let cases: &[Case<'_>] = &[
            (b"user", false, Ok(b"user")),
            (b"user@example.com", false, Ok(b"user@example.com")),
            (b"", false, Ok(b"\"\"")),
            (b"a b", false, Ok(b"\"a b\"")),
            (b"a\"b\\", false, Ok(b"\"a\\\"b\\\\\"")),
            (b"NIL", false, Ok(b"NIL")),
            (b"{5}", false, Ok(b"\"{5}\"")),
            (b"p\r\nss", true, Ok(b"{5+}\r\np\r\nss")),
            (b"p\r\nss", false, Err(WriteError::NeedsLiteral)),
            (b"caf\xc3\xa9", true, Ok(b"{5+}\r\ncaf\xc3\xa9")),
            (b"a\0b", true, Err(WriteError::Nul)),
        ];
        for (input, lp, want) in cases {
            let mut out = Vec::new();
            let got = write_astring(&mut out, input, *lp).map(|()| out);
            assert_eq!(got, want.map(<[u8]>::to_vec), "input {input:?}");
        }
    }

    #[test]
    fn number_does_not_overflow() {
        assert_eq!(number(b"18446744073709551615}").map(|r| r.1), Ok(u64::MAX));
        assert!(number(b"18446744073709551616}").is_err());
    }

    #[test]
    fn text_cannot_break_the_line() {
        let mut out = Vec::new();
        write_text(&mut out, "a\r\n* OK injected\0");
        assert_eq!(out, b"a  * OK injected ");
    }
}

//! The POP3 commands of the AUTHORIZATION state (RFC 1939 §4, §7; RFC 2449 CAPA; RFC 2595
//! STLS; RFC 5034 AUTH), parsed from one line as framed by [`LineFramer`](super::LineFramer).
//!
//! Keywords are case-insensitive (RFC 1939 §3). Only what the front answers itself is
//! parsed in full; any other keyword (STAT, RETR, APOP, ...) is [`Command::Other`], refused
//! before authentication whatever its arguments say.
//!
//! Leniency, each because real clients need it and it costs nothing:
//! - trailing spaces and tabs are ignored, and several spaces may separate the arguments
//!   (except in PASS, whose argument is the rest of the line exactly as sent);
//! - USER takes the rest of the line as the name, as Dovecot does, spaces included;
//! - keywords of any length are read (RFC 2449 §9 says 3 or 4 characters).

use bytes::Bytes;
use nom::bytes::complete::{take_while, take_while1};
use nom::combinator::recognize;
use nom::sequence::pair;
use nom::IResult;
use secrecy::{ExposeSecret, SecretString};

use super::framing::strip_eol;
use super::InitialResponse;

/// Longest keyword kept in [`Command::Other`]; the rest is cut. It is only for the log,
/// and a short cut keeps a password typed in place of a keyword out of it.
const MAX_OTHER_KEYWORD: usize = 16;

/// Longest SASL mechanism name (RFC 4422 §3.1: `sasl-mech = 1*20mech-char`).
const MAX_MECHANISM: usize = 20;

/// One client command.
///
/// `Debug` never shows a password or an initial response (STYLE.md habit 8).
#[derive(Debug, Clone)]
pub enum Command {
    /// `CAPA` (RFC 2449 §5).
    Capa,
    /// `STLS` (RFC 2595 §4).
    Stls,
    /// `AUTH mechanism [initial-response]` (RFC 5034 §4).
    Auth {
        /// The SASL mechanism name, upper-cased.
        mechanism: String,
        /// The initial response, if any: base64 text or `=` for an empty one.
        initial_response: Option<InitialResponse>,
    },
    /// `AUTH` without a mechanism: "which mechanisms are there?". Not in RFC 5034 (whose
    /// AUTH needs a mechanism); it comes from draft-myers-sasl-pop3 and Outlook still
    /// sends it. Cyrus and Dovecot answer with a multi-line list.
    ListMechanisms,
    /// `USER name` (RFC 1939 §7): the rest of the line.
    User(String),
    /// `PASS string` (RFC 1939 §7): the rest of the line after one space, as sent, spaces
    /// included. Redacted in `Debug`.
    Pass(SecretString),
    /// `QUIT`.
    Quit,
    /// `NOOP`.
    Noop,
    /// Any other keyword, upper-cased (at most 16 octets of it, lossily decoded).
    Other(String),
}

/// Compares passwords too, for tests and the round-trip checks; nothing decides on it.
impl PartialEq for Command {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Command::Pass(a), Command::Pass(b)) => a.expose_secret() == b.expose_secret(),
            (
                Command::Auth {
                    mechanism: m1,
                    initial_response: i1,
                },
                Command::Auth {
                    mechanism: m2,
                    initial_response: i2,
                },
            ) => m1 == m2 && i1 == i2,
            (Command::User(a), Command::User(b)) | (Command::Other(a), Command::Other(b)) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl Eq for Command {}

/// A command line that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An empty line (or one of spaces only).
    #[error("empty command line")]
    Empty,
    /// The line breaks the named ABNF rule: `"command"` (no keyword), `"capa"`, `"stls"`,
    /// `"auth"`, `"initial-response"` (not base64 nor `=`), `"user"`, `"pass"`, `"quit"`
    /// or `"noop"`.
    #[error("syntax error in {rule}")]
    Syntax {
        /// The ABNF rule that failed.
        rule: &'static str,
    },
}

fn syntax(rule: &'static str) -> ParseError {
    ParseError::Syntax { rule }
}

/// Parse one command line, with or without its CRLF.
///
/// ```abnf
/// command = keyword *(SP param) CRLF          ; RFC 2449 §9
/// keyword = 3*4VCHAR                          ; read as 1*(any octet but SP, HTAB)
/// capa    = "CAPA" CRLF                       ; RFC 2449 §5
/// stls    = "STLS" CRLF                       ; RFC 2595 §4
/// auth    = "AUTH" [SP sasl-mech [SP initial-response]] CRLF   ; RFC 5034 §4
/// user    = "USER" SP name CRLF               ; RFC 1939 §7
/// pass    = "PASS" SP string CRLF             ; RFC 1939 §7
/// quit    = "QUIT" CRLF
/// noop    = "NOOP" CRLF
/// ```
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = strip_eol(line);
    if trim_end(line).is_empty() {
        return Err(ParseError::Empty);
    }
    let keyword_len = line
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t'))
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(keyword_len);
    if keyword.is_empty() {
        return Err(syntax("command"));
    }
    let is = |name: &str| keyword.eq_ignore_ascii_case(name.as_bytes());
    // PASS keeps its argument exactly; everything else ignores surrounding blanks.
    if is("PASS") {
        return pass(rest);
    }
    let args = trim_start(trim_end(rest));
    let no_args = |command: Command, rule| {
        if args.is_empty() {
            Ok(command)
        } else {
            Err(syntax(rule))
        }
    };
    if is("CAPA") {
        no_args(Command::Capa, "capa")
    } else if is("STLS") {
        no_args(Command::Stls, "stls")
    } else if is("QUIT") {
        no_args(Command::Quit, "quit")
    } else if is("NOOP") {
        no_args(Command::Noop, "noop")
    } else if is("AUTH") {
        auth(args)
    } else if is("USER") {
        user(args)
    } else {
        let kept = &keyword[..keyword.len().min(MAX_OTHER_KEYWORD)];
        Ok(Command::Other(
            String::from_utf8_lossy(kept).to_ascii_uppercase(),
        ))
    }
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// Whether `b` may stand in a USER name or PASS string: anything but the controls that
/// would break a line or a SASL PLAIN message (NUL, CR, LF) and the other C0 controls
/// and DEL. HTAB is allowed: passwords may hold one.
pub(crate) fn is_text_octet(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

/// ```abnf
/// auth             = "AUTH" [SP sasl-mech [SP initial-response]]
/// sasl-mech        = 1*20mech-char          ; RFC 4422 §3.1, case-insensitive here
/// mech-char        = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
/// initial-response = base64 / "="           ; "=": a zero-length response (RFC 5034 §4)
/// ```
fn auth(args: &[u8]) -> Result<Command, ParseError> {
    if args.is_empty() {
        return Ok(Command::ListMechanisms);
    }
    let mech_len = args
        .iter()
        .position(|&b| matches!(b, b' ' | b'\t'))
        .unwrap_or(args.len());
    let (mechanism, rest) = args.split_at(mech_len);
    let mech_ok = (1..=MAX_MECHANISM).contains(&mechanism.len())
        && mechanism
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    if !mech_ok {
        return Err(syntax("auth"));
    }
    let mechanism = String::from_utf8_lossy(mechanism).to_ascii_uppercase();
    let rest = trim_start(rest);
    let initial_response = match rest {
        b"" => None,
        b"=" => Some(InitialResponse::Empty),
        _ if rest.iter().any(|&b| matches!(b, b' ' | b'\t')) => return Err(syntax("auth")),
        _ => match base64(rest) {
            Ok((b"", text)) => Some(InitialResponse::Base64(Bytes::copy_from_slice(text))),
            _ => return Err(syntax("initial-response")),
        },
    };
    Ok(Command::Auth {
        mechanism,
        initial_response,
    })
}

/// ```abnf
/// base64          = *(4base64-char) [base64-terminal]
/// base64-char     = ALPHA / DIGIT / "+" / "/"
/// base64-terminal = (2base64-char "==") / (3base64-char "=")
/// ```
/// Lenient on length (a missing `=` pad is left for the SASL decoder to judge) but strict
/// on the alphabet; at least one base64 character and at most two `=`.
fn base64(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let (rest, text) = recognize(pair(take_while1(is_b64), take_while(|b| b == b'=')))(i)?;
    let pad = text.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Verify,
        )));
    }
    Ok((rest, text))
}

/// ```abnf
/// user = "USER" SP name
/// name = 1*(HTAB / %x20-7E / %x80-FF)       ; UTF-8 (RFC 6856); the rest of the line
/// ```
fn user(args: &[u8]) -> Result<Command, ParseError> {
    if args.is_empty() || !args.iter().all(|&b| is_text_octet(b)) {
        return Err(syntax("user"));
    }
    let name = std::str::from_utf8(args).map_err(|_| syntax("user"))?;
    Ok(Command::User(name.to_owned()))
}

/// ```abnf
/// pass   = "PASS" SP string
/// string = 1*(HTAB / %x20-7E / %x80-FF)     ; UTF-8; the rest of the line after one SP
/// ```
/// RFC 1939 §7: "Since the PASS command has exactly one argument, a POP3 server may treat
/// spaces in the argument as part of the password".
fn pass(rest: &[u8]) -> Result<Command, ParseError> {
    let Some(password) = rest.strip_prefix(b" ") else {
        return Err(syntax("pass"));
    };
    if password.is_empty() || !password.iter().all(|&b| is_text_octet(b)) {
        return Err(syntax("pass"));
    }
    let password = std::str::from_utf8(password).map_err(|_| syntax("pass"))?;
    Ok(Command::Pass(SecretString::from(password.to_owned())))
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

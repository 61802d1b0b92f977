//! The SMTP commands a pre-authentication submission front sees (RFC 5321 §4.1.1,
//! RFC 3207 STARTTLS, RFC 4954 AUTH), parsed from one line as framed by
//! [`LineFramer`](super::LineFramer).
//!
//! Verbs are case-insensitive (RFC 5321 §2.4). Only what the front answers itself is
//! parsed in full: EHLO/HELO, STARTTLS and AUTH. The arguments of MAIL, RCPT, DATA, BDAT,
//! NOOP, RSET, QUIT, HELP, VRFY and EXPN are not looked at: before authentication they are
//! refused or answered the same way whatever they say.
//!
//! Leniency, each because real clients need it and it costs nothing:
//! - trailing spaces and tabs are ignored, and several spaces may separate the arguments;
//! - EHLO/HELO accept `_` in names (Windows host names) and any leading character
//!   RFC 5321's `Domain` forbids, as long as it is a letter, digit, `-`, `.` or `_`.

use nom::bytes::complete::{take_while, take_while1};
use nom::combinator::recognize;
use nom::sequence::pair;
use nom::IResult;

use super::InitialResponse;

/// Longest verb kept in [`Command::Other`]; the rest is cut (it is only for the log).
const MAX_OTHER_VERB: usize = 32;

/// Longest EHLO/HELO argument accepted: RFC 5321 §4.5.3.1.2, 255 octets for a domain.
const MAX_DOMAIN: usize = 255;

/// Longest SASL mechanism name (RFC 4422 §3.1: `sasl-mech = 1*20mech-char`).
const MAX_MECHANISM: usize = 20;

/// One client command.
///
/// `Debug` never shows an initial response (STYLE.md habit 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-address-literal`: the argument as sent.
    Ehlo(String),
    /// `HELO domain-or-address-literal`: the argument as sent.
    Helo(String),
    /// `STARTTLS`, without parameters (RFC 3207 §4).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4).
    Auth {
        /// The SASL mechanism name, upper-cased.
        mechanism: String,
        /// The initial response, if any: base64 text or `=` for an empty one.
        initial_response: Option<InitialResponse>,
    },
    /// `MAIL FROM:...` (arguments not parsed).
    Mail,
    /// `RCPT TO:...` (arguments not parsed).
    Rcpt,
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030; arguments not parsed).
    Bdat,
    /// `RSET`.
    Rset,
    /// `NOOP [string]`.
    Noop,
    /// `QUIT`.
    Quit,
    /// `HELP [string]`.
    Help,
    /// `VRFY string`.
    Vrfy,
    /// `EXPN string`.
    Expn,
    /// Any other verb, upper-cased (at most 32 octets of it, lossily decoded), for a `500`.
    Other(String),
}

/// A command line that does not follow the grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An empty line (or one of spaces only).
    #[error("empty command line")]
    Empty,
    /// The line breaks the named ABNF rule: `"command"` (no verb), `"ehlo"`, `"helo"`,
    /// `"starttls"`, `"auth"` or `"initial-response"` (not base64 nor `=`).
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
/// command  = verb [SP arguments] CRLF               ; RFC 5321 §4.1.1
/// ehlo     = "EHLO" SP ( Domain / address-literal ) CRLF
/// helo     = "HELO" SP Domain CRLF
/// starttls = "STARTTLS" CRLF                          ; RFC 3207 §4
/// auth     = "AUTH" SP sasl-mech [SP initial-response] CRLF   ; RFC 4954 §4
/// ```
pub fn parse_command(line: &[u8]) -> Result<Command, ParseError> {
    let line = super::framing::strip_eol(line);
    let line = trim_end(line);
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    let verb_len = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let (verb, rest) = line.split_at(verb_len);
    if verb.is_empty() {
        return Err(syntax("command"));
    }
    let args = trim_start(rest);
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    let command = if is("EHLO") {
        Command::Ehlo(helo_argument(args).ok_or(syntax("ehlo"))?)
    } else if is("HELO") {
        Command::Helo(helo_argument(args).ok_or(syntax("helo"))?)
    } else if is("STARTTLS") {
        if !args.is_empty() {
            return Err(syntax("starttls"));
        }
        Command::StartTls
    } else if is("AUTH") {
        auth(args)?
    } else if is("MAIL") {
        Command::Mail
    } else if is("RCPT") {
        Command::Rcpt
    } else if is("DATA") {
        Command::Data
    } else if is("BDAT") {
        Command::Bdat
    } else if is("RSET") {
        Command::Rset
    } else if is("NOOP") {
        Command::Noop
    } else if is("QUIT") {
        Command::Quit
    } else if is("HELP") {
        Command::Help
    } else if is("VRFY") {
        Command::Vrfy
    } else if is("EXPN") {
        Command::Expn
    } else {
        let kept = &verb[..verb.len().min(MAX_OTHER_VERB)];
        Command::Other(String::from_utf8_lossy(kept).to_ascii_uppercase())
    };
    Ok(command)
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = s {
        s = rest;
    }
    s
}

/// The EHLO/HELO argument: exactly one `Domain` or `address-literal`, leniently.
///
/// ```abnf
/// Domain          = sub-domain *("." sub-domain)      ; read as 1*(ALPHA / DIGIT / "-" / "." / "_")
/// address-literal = "[" 1*dcontent "]"                ; IPv4, "IPv6:..." or General
/// dcontent        = %d33-90 / %d94-126                ; printable US-ASCII except "[", "\", "]"
/// ```
fn helo_argument(args: &[u8]) -> Option<String> {
    if args.is_empty() || args.len() > MAX_DOMAIN {
        return None;
    }
    let valid = match args {
        [b'[', inner @ .., b']'] => {
            !inner.is_empty() && inner.iter().all(|&b| matches!(b, 33..=90 | 94..=126))
        }
        _ => args
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
    };
    // Only ASCII passed the checks above.
    valid.then(|| String::from_utf8_lossy(args).into_owned())
}

/// ```abnf
/// auth             = "AUTH" SP sasl-mech [SP initial-response]
/// sasl-mech        = 1*20mech-char                  ; RFC 4422 §3.1, case-insensitive here
/// mech-char        = UPPER-ALPHA / DIGIT / HYPHEN / UNDERSCORE
/// initial-response = base64 / "="
/// ```
fn auth(args: &[u8]) -> Result<Command, ParseError> {
    let mech_len = args.iter().position(|&b| b == b' ').unwrap_or(args.len());
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
        _ if rest.contains(&b' ') => return Err(syntax("auth")),
        _ => match base64(rest) {
            Ok((b"", text)) => Some(InitialResponse::Base64(bytes::Bytes::copy_from_slice(text))),
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

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

//! The ManageSieve commands a pre-authentication front handles (RFC 5804 §2), parsed from
//! one command as framed by [`Framer`](super::Framer), and the client's AUTHENTICATE
//! continuation responses.
//!
//! Anything else is [`Command::Other`]: the session refuses it before authentication, so
//! its arguments are not parsed.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use nom::bytes::complete::tag_no_case;
use nom::combinator::{eof, opt};
use nom::sequence::{pair, preceded, terminated, tuple};
use nom::IResult;

use super::core::{atom, crlf, sp, string};
use super::ParseError;

/// One client command.
///
/// `Debug` never shows an initial response (STYLE.md habit 8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `AUTHENTICATE mechanism [initial-response]` (RFC 5804 §2.1).
    Authenticate {
        /// The SASL mechanism name, upper-cased (`OAUTHBEARER`, `XOAUTH2`, `PLAIN`).
        mechanism: String,
        /// The initial response, if any.
        initial_response: Option<InitialResponse>,
    },
    /// `STARTTLS` (§2.2).
    StartTls,
    /// `CAPABILITY` (§2.4).
    Capability,
    /// `LOGOUT` (§2.3).
    Logout,
    /// `NOOP [tag]` (§2.13): the tag is echoed in an `OK (TAG ...)`.
    Noop {
        /// The optional tag string.
        tag: Option<String>,
    },
    /// `UNAUTHENTICATE` (§2.14.1).
    Unauthenticate,
    /// Any other command (`PUTSCRIPT`, `LISTSCRIPTS`, ...): not allowed before login; its
    /// arguments are not parsed.
    Other {
        /// The command name, upper-cased.
        name: String,
    },
}

/// The initial response of an AUTHENTICATE (the string after the mechanism).
#[derive(Clone, PartialEq, Eq)]
pub enum InitialResponse {
    /// `""` or `{0+}`: a zero-length initial response, which differs from none at all.
    Empty,
    /// The string's content as sent: base64 text, not decoded or checked here (that is the
    /// SASL layer's job).
    Base64(Bytes),
}

impl fmt::Debug for InitialResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Base64(b) => write!(f, "Base64([REDACTED {} octets])", b.len()),
        }
    }
}

/// A client's answer to an AUTHENTICATE challenge: a line holding one string.
#[derive(Clone, PartialEq, Eq)]
pub enum SaslResponse {
    /// `""`: an empty response.
    Empty,
    /// `"*"`: the client cancels the exchange (RFC 5804 §2.1); the server answers `NO`.
    Cancel,
    /// The string's content as sent: base64 text, not decoded or checked here (after an
    /// error challenge any answer ends the exchange, even one that is not base64).
    Base64(Bytes),
}

impl fmt::Debug for SaslResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Cancel => f.write_str("Cancel"),
            Self::Base64(b) => write!(f, "Base64([REDACTED {} octets])", b.len()),
        }
    }
}

/// Parse one whole command, as returned by [`Framer::decode`](super::Framer::decode).
///
/// ```abnf
/// command      = command-name *(SP argument) CRLF   ; names are case-insensitive
/// command-name = atom
/// ```
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let syntax = |rule| ParseError::Syntax { rule };
    let (_, name) = atom(input).map_err(|_| syntax("command"))?;
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let simple = |keyword: &'static str, rule, command| {
        complete(tag_no_case(keyword))(input)
            .map(|_| command)
            .map_err(|_| syntax(rule))
    };
    match name.as_str() {
        "AUTHENTICATE" => complete(authenticate)(input).map_err(|_| syntax("authenticate")),
        "STARTTLS" => simple("STARTTLS", "starttls", Command::StartTls),
        "CAPABILITY" => simple("CAPABILITY", "capability", Command::Capability),
        "LOGOUT" => simple("LOGOUT", "logout", Command::Logout),
        "UNAUTHENTICATE" => simple("UNAUTHENTICATE", "unauthenticate", Command::Unauthenticate),
        "NOOP" => complete(noop)(input)
            .ok()
            .and_then(|tag| {
                tag.map(|t| String::from_utf8(t.into_owned()))
                    .transpose()
                    .ok()
            })
            .map(|tag| Command::Noop { tag })
            .ok_or_else(|| syntax("noop")),
        _ => Ok(Command::Other { name }),
    }
}

/// Parse one AUTHENTICATE continuation response, as returned by
/// [`Framer::decode`](super::Framer::decode).
///
/// ```abnf
/// sasl-response = string CRLF   ; "*" cancels
/// ```
pub fn parse_sasl_response(input: &[u8]) -> Result<SaslResponse, ParseError> {
    let value = complete(string)(input).map_err(|_| ParseError::Syntax {
        rule: "sasl-response",
    })?;
    Ok(match &value[..] {
        b"" => SaslResponse::Empty,
        b"*" => SaslResponse::Cancel,
        content => SaslResponse::Base64(Bytes::copy_from_slice(content)),
    })
}

/// The rule followed by CRLF and the end of the input.
pub(crate) fn complete<'a, O>(
    rule: impl FnMut(&'a [u8]) -> IResult<&'a [u8], O>,
) -> impl FnMut(&'a [u8]) -> Result<O, nom::Err<nom::error::Error<&'a [u8]>>> {
    let mut parser = terminated(rule, pair(crlf, eof));
    move |i| parser(i).map(|(_, o)| o)
}

/// ```abnf
/// authenticate = "AUTHENTICATE" SP auth-type [SP string]
/// auth-type    = string
/// ```
fn authenticate(i: &[u8]) -> IResult<&[u8], Command> {
    let (rest, (_, mechanism, initial_response)) = tuple((
        pair(tag_no_case("AUTHENTICATE"), sp),
        string,
        opt(preceded(sp, string)),
    ))(i)?;
    let mechanism = String::from_utf8_lossy(&mechanism).to_ascii_uppercase();
    let initial_response = initial_response.map(|ir| {
        if ir.is_empty() {
            InitialResponse::Empty
        } else {
            InitialResponse::Base64(Bytes::copy_from_slice(&ir))
        }
    });
    Ok((
        rest,
        Command::Authenticate {
            mechanism,
            initial_response,
        },
    ))
}

/// ```abnf
/// noop = "NOOP" [SP string]
/// ```
fn noop(i: &[u8]) -> IResult<&[u8], Option<Cow<'_, [u8]>>> {
    preceded(tag_no_case("NOOP"), opt(preceded(sp, string)))(i)
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

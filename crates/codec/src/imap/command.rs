//! The pre-authentication IMAP commands (RFC 3501 §6.1–6.2, RFC 9051, RFC 4959 SASL-IR,
//! RFC 2971 ID), parsed from one command as framed by
//! [`CommandFramer`](super::CommandFramer).
//!
//! Anything else is [`CommandBody::Other`]: the session refuses it before authentication,
//! so its arguments are not parsed.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::combinator::{eof, map, opt, recognize, value};
use nom::multi::separated_list0;
use nom::sequence::{delimited, pair, preceded, separated_pair, terminated, tuple};
use nom::IResult;
use secrecy::SecretString;

use super::core::{astring, atom, crlf, nil, nstring, sp, string, tag_rule};
use super::ParseError;
use crate::limits::{ID_MAX_FIELD_LEN, ID_MAX_PAIRS, ID_MAX_VALUE_LEN};

/// One client command.
///
/// `Debug` never shows a password or an initial response (STYLE.md habit 8).
#[derive(Debug, Clone)]
pub struct Command {
    /// The command's tag, for the tagged reply.
    pub tag: String,
    /// What the command asks for.
    pub body: CommandBody,
}

/// ID parameters: `None` for `ID NIL`, else field/value pairs in the order sent (values
/// `None` for `NIL`).
pub type IdParams = Option<Vec<(String, Option<String>)>>;

/// The commands a pre-authentication front handles.
#[derive(Debug, Clone)]
pub enum CommandBody {
    /// `CAPABILITY`
    Capability,
    /// `NOOP`
    Noop,
    /// `LOGOUT`
    Logout,
    /// `STARTTLS`
    StartTls,
    /// `ID NIL` or `ID ("name" "value" ...)`, within RFC 2971's limits.
    Id(IdParams),
    /// `AUTHENTICATE mechanism [initial-response]`.
    Authenticate {
        /// The SASL mechanism name, upper-cased (`OAUTHBEARER`, `XOAUTH2`, `PLAIN`).
        mechanism: String,
        /// The SASL-IR initial response, if any.
        initial_response: Option<InitialResponse>,
    },
    /// `LOGIN username password`.
    Login {
        /// The user name, as sent.
        username: String,
        /// The password; redacted in `Debug`.
        password: SecretString,
    },
    /// Any other command, for a `BAD` reply; its arguments are not parsed.
    Other {
        /// The command name, upper-cased.
        name: String,
    },
}

/// A SASL-IR initial response (RFC 4959).
#[derive(Clone, PartialEq, Eq)]
pub enum InitialResponse {
    /// `=`: a zero-length initial response, which differs from no initial response.
    Empty,
    /// The base64 text as sent, not decoded (decoding is the SASL layer's job).
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

/// Parse one whole command, as returned in [`FramedCommand::Complete`](super::FramedCommand).
///
/// ```abnf
/// command         = tag SP (command-any / command-nonauth / x-command) CRLF
/// command-any     = "CAPABILITY" / "LOGOUT" / "NOOP" / id
/// command-nonauth = login / authenticate / "STARTTLS"
/// ```
pub fn parse_command(input: &[u8]) -> Result<Command, ParseError> {
    let (rest, tag) = tag_rule(input).map_err(|_| ParseError::Tag)?;
    // A tag ends at SP, or at the line's end when the command name is missing; anything
    // else means the tag itself is malformed (`a+1`), and the reply is `* BAD`.
    if !matches!(rest.first(), None | Some(b' ' | b'\r' | b'\n')) {
        return Err(ParseError::Tag);
    }
    // Tag characters are ASCII.
    let tag = String::from_utf8_lossy(tag).into_owned();
    let syntax = |rule| ParseError::Syntax {
        tag: Some(tag.clone()),
        rule,
    };
    let (rest, _) = sp(rest).map_err(|_| syntax("command"))?;
    let (_, name) = atom(rest).map_err(|_| syntax("command"))?;
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();

    let simple = |keyword: &'static str, rule, body| {
        complete(tag_no_case(keyword))(rest)
            .map(|_| body)
            .map_err(|_| syntax(rule))
    };
    let body = match name.as_str() {
        "CAPABILITY" => simple("CAPABILITY", "capability", CommandBody::Capability),
        "NOOP" => simple("NOOP", "noop", CommandBody::Noop),
        "LOGOUT" => simple("LOGOUT", "logout", CommandBody::Logout),
        "STARTTLS" => simple("STARTTLS", "starttls", CommandBody::StartTls),
        "ID" => complete(id)(rest)
            .map_err(|_| syntax("id"))
            .and_then(|raw| id_body(&tag, raw)),
        "AUTHENTICATE" => complete(authenticate)(rest).map_err(|_| syntax("authenticate")),
        "LOGIN" => complete(login)(rest)
            .ok()
            .and_then(|(user, pass)| login_body(user, pass))
            .ok_or_else(|| syntax("login")),
        _ => Ok(CommandBody::Other { name }),
    }?;
    Ok(Command { tag, body })
}

/// The rule followed by CRLF and the end of the input.
fn complete<'a, O>(
    rule: impl FnMut(&'a [u8]) -> IResult<&'a [u8], O>,
) -> impl FnMut(&'a [u8]) -> Result<O, nom::Err<nom::error::Error<&'a [u8]>>> {
    let mut parser = terminated(rule, pair(crlf, eof));
    move |i| parser(i).map(|(_, o)| o)
}

/// LOGIN's user name and password, as parsed.
type Credentials<'a> = (Cow<'a, [u8]>, Cow<'a, [u8]>);

/// ```abnf
/// login    = "LOGIN" SP userid SP password
/// userid   = astring
/// password = astring
/// ```
fn login(i: &[u8]) -> IResult<&[u8], Credentials<'_>> {
    preceded(
        pair(tag_no_case("LOGIN"), sp),
        separated_pair(astring, sp, astring),
    )(i)
}

fn login_body(username: Cow<'_, [u8]>, password: Cow<'_, [u8]>) -> Option<CommandBody> {
    let username = String::from_utf8(username.into_owned()).ok()?;
    let password = String::from_utf8(password.into_owned()).ok()?;
    Some(CommandBody::Login {
        username,
        password: SecretString::from(password),
    })
}

/// ```abnf
/// authenticate = "AUTHENTICATE" SP auth-type [SP initial-resp]   ; RFC 4959, RFC 9051
/// auth-type    = atom
/// initial-resp = base64 / "="
/// ```
fn authenticate(i: &[u8]) -> IResult<&[u8], CommandBody> {
    let (rest, (_, mechanism, initial_response)) = tuple((
        pair(tag_no_case("AUTHENTICATE"), sp),
        atom,
        opt(preceded(sp, initial_resp)),
    ))(i)?;
    let mechanism = String::from_utf8_lossy(mechanism).to_ascii_uppercase();
    Ok((
        rest,
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        },
    ))
}

/// ```abnf
/// initial-resp = base64 / "="
/// ```
fn initial_resp(i: &[u8]) -> IResult<&[u8], InitialResponse> {
    alt((
        map(base64, |b| {
            InitialResponse::Base64(Bytes::copy_from_slice(b))
        }),
        value(InitialResponse::Empty, tag("=")),
    ))(i)
}

/// ```abnf
/// base64          = *(4base64-char) [base64-terminal]
/// base64-char     = ALPHA / DIGIT / "+" / "/"
/// base64-terminal = (2base64-char "==") / (3base64-char "=")
/// ```
/// Lenient on length (a missing `=` pad is left for the SASL decoder to judge) but strict
/// on the alphabet; at least one base64 character.
fn base64(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    recognize(pair(take_while1(is_b64), take_while(|b| b == b'=')))(i).and_then(|(rest, b)| {
        let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 {
            return Err(nom::Err::Error(nom::error::Error::new(
                i,
                nom::error::ErrorKind::Verify,
            )));
        }
        Ok((rest, b))
    })
}

/// The raw ID parameter pairs, before RFC 2971's limits are checked.
type RawIdParams<'a> = Option<Vec<(Cow<'a, [u8]>, Option<Cow<'a, [u8]>>)>>;

/// ```abnf
/// id = "ID" SP id-params-list
/// ```
fn id(i: &[u8]) -> IResult<&[u8], RawIdParams<'_>> {
    preceded(pair(tag_no_case("ID"), sp), id_params_list)(i)
}

/// ```abnf
/// id-params-list = "(" [string SP nstring *(SP string SP nstring)] ")" / nil   ; RFC 2971
/// ```
pub(crate) fn id_params_list(i: &[u8]) -> IResult<&[u8], RawIdParams<'_>> {
    alt((
        map(nil, |()| None),
        map(
            delimited(
                tag("("),
                separated_list0(sp, separated_pair(string, sp, nstring)),
                tag(")"),
            ),
            Some,
        ),
    ))(i)
}

/// Check RFC 2971's limits and convert to strings.
fn id_body(tag: &str, raw: RawIdParams<'_>) -> Result<CommandBody, ParseError> {
    let Some(raw) = raw else {
        return Ok(CommandBody::Id(None));
    };
    let limit = |what| ParseError::LimitExceeded {
        tag: Some(tag.to_owned()),
        what,
    };
    let syntax = || ParseError::Syntax {
        tag: Some(tag.to_owned()),
        rule: "id",
    };
    if raw.len() > ID_MAX_PAIRS {
        return Err(limit("ID pair count"));
    }
    let mut params = Vec::with_capacity(raw.len());
    for (field, val) in raw {
        if field.len() > ID_MAX_FIELD_LEN {
            return Err(limit("ID field"));
        }
        if val.as_ref().is_some_and(|v| v.len() > ID_MAX_VALUE_LEN) {
            return Err(limit("ID value"));
        }
        let field = String::from_utf8(field.into_owned()).map_err(|_| syntax())?;
        let val = val
            .map(|v| String::from_utf8(v.into_owned()))
            .transpose()
            .map_err(|_| syntax())?;
        params.push((field, val));
    }
    Ok(CommandBody::Id(Some(params)))
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

//! Server responses, both ways: [`Response::write_to`] writes what the proxy tells its
//! client, [`parse_response`] and [`parse_auth_response`] read what a backend tells the
//! proxy before login (framed by [`Framer`](super::Framer), literals included).
//!
//! ManageSieve responses are of three kinds (RFC 5804 §1.2, §1.7, §2.1): a capability line
//! `"NAME" ["value"]`, an AUTHENTICATE challenge (a line holding one string), and the
//! completion `OK` / `NO` / `BYE` with an optional `(code)` and an optional string. A lone
//! string is a capability without a value in a capability block and a challenge during
//! AUTHENTICATE, so the caller says which it expects by picking the parser.

use bytes::Bytes;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case};
use nom::combinator::{eof, map, opt};
use nom::sequence::{delimited, pair, preceded, terminated, tuple};
use nom::IResult;

use super::core::{atom, crlf, is_atom_char, is_valid_atom, sp, string, write_string, Direction};
use super::ParseError;

/// How deep parentheses may nest in the data of an unknown response code.
const MAX_CODE_DEPTH: usize = 8;

/// The outcome keyword of a completion response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`: the command succeeded.
    Ok,
    /// `NO`: the command failed.
    No,
    /// `BYE`: the server is closing the connection.
    Bye,
}

impl Status {
    /// The keyword as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::No => "NO",
            Self::Bye => "BYE",
        }
    }
}

/// A response code, the parenthesized `(...)` after the status (RFC 5804 §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `AUTH-TOO-WEAK`
    AuthTooWeak,
    /// `ENCRYPT-NEEDED`: e.g. AUTHENTICATE before TLS.
    EncryptNeeded,
    /// `QUOTA`
    Quota,
    /// `QUOTA/MAXSCRIPTS`
    QuotaMaxScripts,
    /// `QUOTA/MAXSIZE`
    QuotaMaxSize,
    /// `REFERRAL sieveurl`
    Referral(String),
    /// `SASL string`: the final SASL data of a successful AUTHENTICATE (base64).
    Sasl(String),
    /// `TRANSITION-NEEDED`
    TransitionNeeded,
    /// `TRYLATER`: a temporary failure, e.g. the identity provider is down.
    TryLater,
    /// `ACTIVE`
    Active,
    /// `NONEXISTENT`
    Nonexistent,
    /// `ALREADYEXISTS`
    AlreadyExists,
    /// `WARNINGS`
    Warnings,
    /// `TAG string`: the tag of a NOOP, echoed (§2.13).
    Tag(String),
    /// Any other code (`resp-code-ext`): its name, upper-cased when parsed, and its data as
    /// sent. Data with literals is not written back (it could not be, lossily decoded).
    Other {
        /// The code's name (an atom).
        name: String,
        /// Its `extension-data`, as sent.
        data: Option<String>,
    },
}

impl Code {
    const SIMPLE: [(&'static str, Code); 11] = [
        ("AUTH-TOO-WEAK", Code::AuthTooWeak),
        ("ENCRYPT-NEEDED", Code::EncryptNeeded),
        ("QUOTA", Code::Quota),
        ("QUOTA/MAXSCRIPTS", Code::QuotaMaxScripts),
        ("QUOTA/MAXSIZE", Code::QuotaMaxSize),
        ("TRANSITION-NEEDED", Code::TransitionNeeded),
        ("TRYLATER", Code::TryLater),
        ("ACTIVE", Code::Active),
        ("NONEXISTENT", Code::Nonexistent),
        ("ALREADYEXISTS", Code::AlreadyExists),
        ("WARNINGS", Code::Warnings),
    ];

    /// Write `(CODE ...)`. An invalid name is written as `X-INVALID`; data that would not
    /// read back the same is left out.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'(');
        match self {
            Self::Referral(url) => {
                out.extend_from_slice(b"REFERRAL ");
                if is_valid_atom(url.as_bytes()) {
                    out.extend_from_slice(url.as_bytes());
                } else {
                    write_string(out, url.as_bytes(), Direction::ToClient);
                }
            }
            Self::Sasl(data) => {
                out.extend_from_slice(b"SASL ");
                write_string(out, data.as_bytes(), Direction::ToClient);
            }
            Self::Tag(tag) => {
                out.extend_from_slice(b"TAG ");
                write_string(out, tag.as_bytes(), Direction::ToClient);
            }
            Self::Other { name, data } => {
                let name = if is_valid_atom(name.as_bytes()) {
                    name.as_str()
                } else {
                    "X-INVALID"
                };
                out.extend_from_slice(name.as_bytes());
                if let Some(data) = data.as_deref().filter(|d| is_writable_data(d.as_bytes())) {
                    out.push(b' ');
                    out.extend_from_slice(data.as_bytes());
                }
            }
            simple => {
                let name = Self::SIMPLE
                    .iter()
                    .find(|(_, c)| c == simple)
                    .map_or("X-INVALID", |(n, _)| *n);
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.push(b')');
    }
}

/// Whether unknown code data can be written as is: one line, and read back whole.
pub(crate) fn is_writable_data(data: &[u8]) -> bool {
    !data.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && extension_data(data).is_ok_and(|(rest, _)| rest.is_empty())
}

/// One capability line: `"NAME" ["value"]` (RFC 5804 §1.7). Compare names
/// case-insensitively ([`Capability::is`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// The capability's name, as sent, e.g. `SASL`.
    pub name: String,
    /// Its value, e.g. `PLAIN OAUTHBEARER`; `None` for a bare name such as `STARTTLS`.
    pub value: Option<String>,
}

impl Capability {
    /// A capability line.
    pub fn new(name: impl Into<String>, value: Option<&str>) -> Self {
        Self {
            name: name.into(),
            value: value.map(str::to_owned),
        }
    }

    /// Whether this is the capability `name`, compared case-insensitively.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

/// The final response to a command: `OK` / `NO` / `BYE` `[(code)]` `["text"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The outcome.
    pub status: Status,
    /// An optional response code.
    pub code: Option<Code>,
    /// Optional human-readable text (any string; written quoted or as a literal).
    pub text: Option<String>,
}

impl Completion {
    /// `status [(code)] "text"`.
    pub fn new(status: Status, code: Option<Code>, text: impl Into<String>) -> Self {
        Self {
            status,
            code,
            text: Some(text.into()),
        }
    }
}

/// A ManageSieve server response line (with any literals it carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// One line of a capability block.
    Capability(Capability),
    /// A SASL challenge during AUTHENTICATE: the string's content, base64 text.
    Challenge(Bytes),
    /// `OK` / `NO` / `BYE`.
    Completion(Completion),
}

impl Response {
    /// Append the response, CRLF included, to `out`. Strings are quoted when they can be,
    /// else `{n}` literals (RFC 5804: quoted strings hold at most 1024 octets).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Capability(Capability { name, value }) => {
                write_string(out, name.as_bytes(), Direction::ToClient);
                if let Some(value) = value {
                    out.push(b' ');
                    write_string(out, value.as_bytes(), Direction::ToClient);
                }
            }
            Self::Challenge(data) => write_string(out, data, Direction::ToClient),
            Self::Completion(Completion { status, code, text }) => {
                out.extend_from_slice(status.as_str().as_bytes());
                if let Some(code) = code {
                    out.push(b' ');
                    code.write_to(out);
                }
                if let Some(text) = text {
                    out.push(b' ');
                    write_string(out, text.as_bytes(), Direction::ToClient);
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The response as bytes, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// Parse one line of a capability block or its completion, e.g. from a backend's greeting
/// or its answer to `CAPABILITY` or `STARTTLS`. The final line ending is optional.
///
/// ```abnf
/// response-capability = *(single-capability) response-oknobye
/// single-capability   = capability-name [SP string] CRLF
/// capability-name     = string
/// ```
pub fn parse_response(input: &[u8]) -> Result<Response, ParseError> {
    let capability = map(pair(string, opt(preceded(sp, string))), |(name, value)| {
        Response::Capability(Capability {
            name: lossy(&name),
            value: value.map(|v| lossy(&v)),
        })
    });
    line(alt((
        capability,
        map(response_oknobye, Response::Completion),
    )))(input)
    .map_err(|_| ParseError::Syntax { rule: "response" })
}

/// Parse one line of a response to AUTHENTICATE: a challenge or the completion. The final
/// line ending is optional.
///
/// ```abnf
/// response-authenticate = *(string CRLF) response-oknobye
/// ```
pub fn parse_auth_response(input: &[u8]) -> Result<Response, ParseError> {
    let challenge = map(string, |c| Response::Challenge(Bytes::copy_from_slice(&c)));
    line(alt((
        challenge,
        map(response_oknobye, Response::Completion),
    )))(input)
    .map_err(|_| ParseError::Syntax {
        rule: "response-authenticate",
    })
}

fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// The rule, an optional line ending, and the end of the input.
fn line<'a, O>(
    rule: impl FnMut(&'a [u8]) -> IResult<&'a [u8], O>,
) -> impl FnMut(&'a [u8]) -> Result<O, nom::Err<nom::error::Error<&'a [u8]>>> {
    let mut parser = terminated(rule, pair(opt(crlf), eof));
    move |i| parser(i).map(|(_, o)| o)
}

/// ```abnf
/// response-oknobye = ("OK" / "NO" / "BYE") [SP "(" resp-code ")"] [SP string]
/// ```
fn response_oknobye(i: &[u8]) -> IResult<&[u8], Completion> {
    let (rest, (status, code, text)) = tuple((
        alt((
            map(tag_no_case("OK"), |_| Status::Ok),
            map(tag_no_case("NO"), |_| Status::No),
            map(tag_no_case("BYE"), |_| Status::Bye),
        )),
        opt(preceded(sp, delimited(tag("("), resp_code, tag(")")))),
        opt(preceded(sp, string)),
    ))(i)?;
    let text = text.map(|t| lossy(&t));
    Ok((rest, Completion { status, code, text }))
}

/// ```abnf
/// resp-code = "AUTH-TOO-WEAK" / "ENCRYPT-NEEDED" / "QUOTA" ["/" ("MAXSCRIPTS" / "MAXSIZE")] /
///             "SASL" SP string / "REFERRAL" SP sieveurl / "TRANSITION-NEEDED" /
///             "TRYLATER" / "ACTIVE" / "NONEXISTENT" / "ALREADYEXISTS" / "WARNINGS" /
///             "TAG" SP string / resp-code-ext
/// resp-code-ext = iana-token [SP extension-data]
/// ```
fn resp_code(i: &[u8]) -> IResult<&[u8], Code> {
    let (rest, name) = atom(i)?;
    let name = lossy(name).to_ascii_uppercase();
    match name.as_str() {
        "SASL" => map(preceded(sp, string), |s| Code::Sasl(lossy(&s)))(rest),
        "TAG" => map(preceded(sp, string), |s| Code::Tag(lossy(&s)))(rest),
        "REFERRAL" => map(
            preceded(sp, alt((map(atom, std::borrow::Cow::Borrowed), string))),
            |s| Code::Referral(lossy(&s)),
        )(rest),
        _ => {
            let (rest, data) = opt(preceded(sp, extension_data))(rest)?;
            let data = data.map(lossy);
            let simple = Code::SIMPLE.iter().find(|(n, _)| *n == name);
            let code = match (simple, data) {
                (Some((_, code)), None) => code.clone(),
                (_, data) => Code::Other { name, data },
            };
            Ok((rest, code))
        }
    }
}

/// ```abnf
/// extension-data = extension-item *(SP extension-item)
/// extension-item = extension-atom / extension-string / "(" [extension-data] ")"
/// ```
/// Returns the data as sent, up to the `)` that closes the response code. Nesting is
/// bounded, so hostile input cannot exhaust the stack or loop.
fn extension_data(i: &[u8]) -> IResult<&[u8], &[u8]> {
    let error = |at| nom::Err::Error(nom::error::Error::new(at, nom::error::ErrorKind::Verify));
    let mut depth = 0usize;
    let mut pos = 0;
    loop {
        let rest = &i[pos..];
        match rest.first() {
            Some(b'(') if depth < MAX_CODE_DEPTH => {
                depth += 1;
                pos += 1;
            }
            Some(b')') if depth > 0 => {
                depth -= 1;
                pos += 1;
            }
            Some(b' ') if pos > 0 => pos += 1,
            Some(b'"' | b'{') => {
                let (after, _) = string(rest)?;
                pos = i.len() - after.len();
            }
            Some(&b) if is_atom_char(b) => {
                let (after, _) = atom(rest)?;
                pos = i.len() - after.len();
            }
            _ if depth == 0 && pos > 0 && !i[..pos].ends_with(b" ") => {
                return Ok((rest, &i[..pos]));
            }
            _ => return Err(error(rest)),
        }
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;

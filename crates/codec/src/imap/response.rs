//! Server responses, both ways: [`Reply`] writes what the proxy tells its client, and
//! [`ResponseFramer`](super::ResponseFramer) + [`parse_response`] read what a backend tells
//! the proxy before login.

use bytes::Bytes;
use nom::branch::alt;
use nom::bytes::complete::{tag, tag_no_case, take_while, take_while1};
use nom::combinator::{eof, map, opt, rest};
use nom::multi::many0;
use nom::sequence::{delimited, preceded, terminated, tuple};
use nom::IResult;

pub use super::framing::ResponseFramer;

use super::command::IdParams;
use super::core::{
    atom, is_atom_char, is_text_char, is_valid_atom, is_valid_tag, sp, tag_rule,
    write_response_string, write_text,
};
use super::ParseError;

/// The status of a tagged or untagged condition response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `OK`
    Ok,
    /// `NO`: the command failed.
    No,
    /// `BAD`: the command was malformed or not allowed.
    Bad,
}

impl Status {
    /// The keyword as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::No => "NO",
            Self::Bad => "BAD",
        }
    }
}

/// A response code, the bracketed `[...]` after the status (RFC 3501 §7.1, RFC 5530).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `ALERT`: the text must be shown to the user.
    Alert,
    /// `AUTHENTICATIONFAILED` (RFC 5530).
    AuthenticationFailed,
    /// `AUTHORIZATIONFAILED` (RFC 5530).
    AuthorizationFailed,
    /// `EXPIRED` (RFC 5530).
    Expired,
    /// `PRIVACYREQUIRED` (RFC 5530): e.g. LOGIN before TLS.
    PrivacyRequired,
    /// `UNAVAILABLE` (RFC 5530): a temporary failure, e.g. the identity provider is down.
    Unavailable,
    /// `CONTACTADMIN` (RFC 5530).
    ContactAdmin,
    /// `CLIENTBUG` (RFC 5530).
    ClientBug,
    /// `SERVERBUG` (RFC 5530).
    ServerBug,
    /// `LIMIT` (RFC 5530).
    Limit,
    /// `TOOBIG` (RFC 4469, RFC 7888).
    TooBig,
    /// `CAPABILITY cap...`: capability names as sent (compare them case-insensitively).
    Capability(Vec<String>),
    /// Any other code: its name (an atom, upper-cased when parsed) and optional argument.
    Other {
        /// The code's name.
        name: String,
        /// Its argument: `1*<any TEXT-CHAR except "]">`.
        arg: Option<String>,
    },
}

impl Code {
    const SIMPLE: [(&'static str, Code); 11] = [
        ("ALERT", Code::Alert),
        ("AUTHENTICATIONFAILED", Code::AuthenticationFailed),
        ("AUTHORIZATIONFAILED", Code::AuthorizationFailed),
        ("EXPIRED", Code::Expired),
        ("PRIVACYREQUIRED", Code::PrivacyRequired),
        ("UNAVAILABLE", Code::Unavailable),
        ("CONTACTADMIN", Code::ContactAdmin),
        ("CLIENTBUG", Code::ClientBug),
        ("SERVERBUG", Code::ServerBug),
        ("LIMIT", Code::Limit),
        ("TOOBIG", Code::TooBig),
    ];

    /// Write `[CODE ...]` (no surrounding spaces). Invalid atoms are left out: a capability
    /// or code name with a space or a `]` would break the line's grammar.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        match self {
            Self::Capability(caps) => {
                out.extend_from_slice(b"CAPABILITY");
                write_atoms(out, caps);
            }
            Self::Other { name, arg } => {
                write_atom_or(out, name, "X-INVALID");
                if let Some(arg) = arg {
                    out.push(b' ');
                    out.extend(arg.bytes().map(|b| {
                        if is_text_char(b) && b != b']' {
                            b
                        } else {
                            b' '
                        }
                    }));
                }
            }
            simple => {
                let name = Self::SIMPLE
                    .iter()
                    .find(|(_, c)| c == simple)
                    .map_or("", |(n, _)| *n);
                out.extend_from_slice(name.as_bytes());
            }
        }
        out.push(b']');
    }
}

/// Write ` atom` for each valid atom.
fn write_atoms(out: &mut Vec<u8>, atoms: &[String]) {
    for a in atoms.iter().filter(|a| is_valid_atom(a.as_bytes())) {
        out.push(b' ');
        out.extend_from_slice(a.as_bytes());
    }
}

fn write_atom_or(out: &mut Vec<u8>, atom: &str, fallback: &str) {
    let atom = if is_valid_atom(atom.as_bytes()) {
        atom
    } else {
        fallback
    };
    out.extend_from_slice(atom.as_bytes());
}

/// The payload of a continuation request `+ ...` (RFC 3501 §7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Continuation {
    /// `+ ` and nothing more: an empty SASL challenge. The space is always sent, for old
    /// clients (protocol brief §3.1).
    Empty,
    /// Human-readable text, e.g. `Ready for literal data`.
    Text(String),
    /// A base64-encoded SASL challenge, as text.
    Base64(Bytes),
}

/// A reply from the proxy to its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `tag OK|NO|BAD [code] text`. An invalid tag is written as `*` (RFC 3501 §7.1: an
    /// unreadable tag gets an untagged `BAD`).
    Tagged {
        /// The command's tag.
        tag: String,
        /// The outcome.
        status: Status,
        /// An optional response code.
        code: Option<Code>,
        /// Human-readable text; CR, LF and NUL are replaced by spaces.
        text: String,
    },
    /// `* OK|NO|BAD [code] text`, e.g. the greeting `* OK [CAPABILITY ...] ready`.
    Untagged {
        /// The condition.
        status: Status,
        /// An optional response code.
        code: Option<Code>,
        /// Human-readable text; CR, LF and NUL are replaced by spaces.
        text: String,
    },
    /// `* BYE [code] text`: the server is closing the connection.
    Bye {
        /// An optional response code.
        code: Option<Code>,
        /// Human-readable text; CR, LF and NUL are replaced by spaces.
        text: String,
    },
    /// `* CAPABILITY cap...`; invalid atoms are left out.
    Capability(Vec<String>),
    /// `* ID (...)` or `* ID NIL` (RFC 2971); an empty list is written as `NIL`.
    Id(IdParams),
    /// `+ ...`: a continuation request.
    Continue(Continuation),
}

impl Reply {
    /// The greeting: `* OK [CAPABILITY caps...] text`.
    pub fn greeting(capabilities: Vec<String>, text: impl Into<String>) -> Self {
        Self::Untagged {
            status: Status::Ok,
            code: Some(Code::Capability(capabilities)),
            text: text.into(),
        }
    }

    /// `tag status [code] text`.
    pub fn tagged(
        tag: impl Into<String>,
        status: Status,
        code: Option<Code>,
        text: impl Into<String>,
    ) -> Self {
        Self::Tagged {
            tag: tag.into(),
            status,
            code,
            text: text.into(),
        }
    }

    /// Append the reply, CRLF included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                let tag = if is_valid_tag(tag.as_bytes()) {
                    tag.as_str()
                } else {
                    "*"
                };
                out.extend_from_slice(tag.as_bytes());
                write_cond(out, status.as_str(), code.as_ref(), text);
            }
            Self::Untagged { status, code, text } => {
                out.push(b'*');
                write_cond(out, status.as_str(), code.as_ref(), text);
            }
            Self::Bye { code, text } => {
                out.push(b'*');
                write_cond(out, "BYE", code.as_ref(), text);
            }
            Self::Capability(caps) => {
                out.extend_from_slice(b"* CAPABILITY");
                write_atoms(out, caps);
            }
            Self::Id(params) => {
                out.extend_from_slice(b"* ID ");
                match params.as_deref() {
                    None | Some([]) => out.extend_from_slice(b"NIL"),
                    Some(params) => write_id_params(out, params),
                }
            }
            Self::Continue(cont) => {
                out.extend_from_slice(b"+ ");
                match cont {
                    Continuation::Empty => {}
                    Continuation::Text(text) => write_text(out, text),
                    Continuation::Base64(b64) => write_text(out, &String::from_utf8_lossy(b64)),
                }
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The reply as bytes, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// ` KEYWORD [code] text`
fn write_cond(out: &mut Vec<u8>, keyword: &str, code: Option<&Code>, text: &str) {
    out.push(b' ');
    out.extend_from_slice(keyword.as_bytes());
    if let Some(code) = code {
        out.push(b' ');
        code.write_to(out);
    }
    // RFC 9051 makes the text optional; RFC 3501 clients all cope with a missing one.
    if !text.is_empty() {
        out.push(b' ');
        write_text(out, text);
    }
}

/// `(field value ...)` as in a server response (strings quoted, else literals).
fn write_id_params(out: &mut Vec<u8>, params: &[(String, Option<String>)]) {
    out.push(b'(');
    for (i, (field, val)) in params.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        write_response_string(out, field.as_bytes());
        out.push(b' ');
        match val {
            Some(val) => write_response_string(out, val.as_bytes()),
            None => out.extend_from_slice(b"NIL"),
        }
    }
    out.push(b')');
}

/// A backend's response line, parsed (pre-login responses only: no literals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `tag OK|NO|BAD [code] text`
    Tagged {
        /// The tag of the command this completes.
        tag: String,
        /// The outcome.
        status: Status,
        /// The response code, if any.
        code: Option<Code>,
        /// The text, lossily decoded as UTF-8.
        text: String,
    },
    /// `* OK|NO|BAD [code] text`, including the usual greeting.
    Untagged {
        /// The condition.
        status: Status,
        /// The response code, if any.
        code: Option<Code>,
        /// The text.
        text: String,
    },
    /// `* PREAUTH [code] text`: a greeting that skips authentication.
    PreAuth {
        /// The response code, if any.
        code: Option<Code>,
        /// The text.
        text: String,
    },
    /// `* BYE [code] text`
    Bye {
        /// The response code, if any.
        code: Option<Code>,
        /// The text.
        text: String,
    },
    /// `* CAPABILITY cap...`
    Capability(Vec<String>),
    /// `+ ...`: the text after `+ ` (a base64 challenge or human-readable text).
    Continue(Bytes),
    /// Any other untagged response (`* ID ...`, `* ENABLED`, ...): the text after `* `.
    Data(String),
}

impl Response {
    /// The capabilities this response carries, from `* CAPABILITY` or a `[CAPABILITY]`
    /// code.
    pub fn capabilities(&self) -> Option<&[String]> {
        match self {
            Self::Capability(caps) => Some(caps),
            Self::Tagged {
                code: Some(Code::Capability(caps)),
                ..
            }
            | Self::Untagged {
                code: Some(Code::Capability(caps)),
                ..
            }
            | Self::PreAuth {
                code: Some(Code::Capability(caps)),
                ..
            }
            | Self::Bye {
                code: Some(Code::Capability(caps)),
                ..
            } => Some(caps),
            _ => None,
        }
    }
}

/// Parse one backend response line, with or without its CRLF.
///
/// ```abnf
/// response-line = continue-req / response-data / response-tagged
/// continue-req  = "+" [SP (resp-text / base64)]   ; the SP and text optional, leniently
/// response-data = "*" SP (resp-cond-state / resp-cond-bye / resp-cond-auth /
///                 capability-data / <anything else>)
/// response-tagged = tag SP resp-cond-state
/// ```
pub fn parse_response(line: &[u8]) -> Result<Response, ParseError> {
    let line = strip_crlf(line);
    if let Some(cont) = line.strip_prefix(b"+") {
        let cont = cont.strip_prefix(b" ").unwrap_or(cont);
        return Ok(Response::Continue(Bytes::copy_from_slice(cont)));
    }
    let (rest, tag) =
        terminated(alt((tag("*"), tag_rule)), sp)(line).map_err(|_| ParseError::Tag)?;
    let tag = (tag != b"*").then(|| String::from_utf8_lossy(tag).into_owned());
    if ends_in_literal(rest) {
        return Err(ParseError::UnexpectedLiteral { tag });
    }
    let syntax = |rule| ParseError::Syntax {
        tag: tag.clone(),
        rule,
    };
    let Some(tag) = tag.clone() else {
        return untagged(rest)
            .map(|(_, r)| r)
            .map_err(|_| syntax("response-data"));
    };
    let (_, (status, (code, text))) =
        terminated(resp_cond_state, eof)(rest).map_err(|_| syntax("response-tagged"))?;
    Ok(Response::Tagged {
        tag,
        status,
        code,
        text,
    })
}

/// Whether a line ends in a literal announcement `{n}` / `{n+}`.
fn ends_in_literal(line: &[u8]) -> bool {
    let Some(inner) = line.strip_suffix(b"}") else {
        return false;
    };
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let digits = inner
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    digits > 0 && inner[..inner.len() - digits].ends_with(b"{")
}

/// The untagged responses a backend sends before login.
fn untagged(i: &[u8]) -> IResult<&[u8], Response> {
    alt((
        map(
            terminated(resp_cond_state, eof),
            |(status, (code, text))| Response::Untagged { status, code, text },
        ),
        map(
            delimited(tag_no_case("BYE"), resp_text_after, eof),
            |(code, text)| Response::Bye { code, text },
        ),
        map(
            delimited(tag_no_case("PREAUTH"), resp_text_after, eof),
            |(code, text)| Response::PreAuth { code, text },
        ),
        map(terminated(capability_data, eof), Response::Capability),
        map(rest, |r: &[u8]| {
            Response::Data(String::from_utf8_lossy(r).into_owned())
        }),
    ))(i)
}

/// A response code and text, as parsed.
type RespText = (Option<Code>, String);

/// ```abnf
/// resp-cond-state = ("OK" / "NO" / "BAD") SP resp-text
/// ```
fn resp_cond_state(i: &[u8]) -> IResult<&[u8], (Status, RespText)> {
    tuple((
        alt((
            map(tag_no_case("OK"), |_| Status::Ok),
            map(tag_no_case("NO"), |_| Status::No),
            map(tag_no_case("BAD"), |_| Status::Bad),
        )),
        resp_text_after,
    ))(i)
}

/// `SP resp-text` after a keyword; leniently, a bare keyword has empty text.
fn resp_text_after(i: &[u8]) -> IResult<&[u8], RespText> {
    if i.is_empty() {
        return Ok((i, (None, String::new())));
    }
    preceded(sp, resp_text)(i)
}

/// ```abnf
/// resp-text = ["[" resp-text-code "]" SP] [text]   ; RFC 9051: text optional
/// text      = 1*TEXT-CHAR
/// ```
/// A `[` that does not open a well-formed code is read as text.
fn resp_text(i: &[u8]) -> IResult<&[u8], RespText> {
    let (i, code) = opt(terminated(
        delimited(tag("["), resp_text_code, tag("]")),
        opt(sp),
    ))(i)?;
    let (i, text) = take_while(is_text_char)(i)?;
    Ok((i, (code, String::from_utf8_lossy(text).into_owned())))
}

/// ```abnf
/// resp-text-code = "ALERT" / ... / capability-data /
///                  atom [SP 1*<any TEXT-CHAR except "]">]
/// ```
fn resp_text_code(i: &[u8]) -> IResult<&[u8], Code> {
    alt((
        map(capability_data, Code::Capability),
        map(
            tuple((
                atom,
                opt(preceded(sp, take_while1(|b| is_text_char(b) && b != b']'))),
            )),
            |(name, arg): (&[u8], Option<&[u8]>)| {
                let name = String::from_utf8_lossy(name).to_ascii_uppercase();
                let simple = Code::SIMPLE.iter().find(|(n, _)| *n == name);
                match (simple, arg) {
                    (Some((_, code)), None) => code.clone(),
                    _ => Code::Other {
                        name,
                        arg: arg.map(|a| String::from_utf8_lossy(a).into_owned()),
                    },
                }
            },
        ),
    ))(i)
}

/// ```abnf
/// capability-data = "CAPABILITY" *(SP capability)   ; IMAP4rev1/rev2 presence not checked
/// capability      = ("AUTH=" auth-type) / atom
/// ```
fn capability_data(i: &[u8]) -> IResult<&[u8], Vec<String>> {
    let (i, _) = tag_no_case("CAPABILITY")(i)?;
    // Not followed by more atom characters: `CAPABILITYX` is another code.
    if i.first().is_some_and(|&b| is_atom_char(b)) {
        return Err(nom::Err::Error(nom::error::Error::new(
            i,
            nom::error::ErrorKind::Tag,
        )));
    }
    many0(map(preceded(sp, atom), |a: &[u8]| {
        String::from_utf8_lossy(a).into_owned()
    }))(i)
}

fn strip_crlf(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;

//! What a POP3 server says: [`Reply`] writes the proxy's replies to its client; the types
//! here ([`Status`], [`Code`], [`StatusLine`]) are also what the backend's replies are read
//! as ([`ResponseFramer`](super::ResponseFramer)).
//!
//! ```abnf
//! single-line  = status [SP text] CRLF                 ; RFC 2449 §9, 512 octets at most
//! status       = "+OK" / "-ERR"
//! text         = *schar / resp-code *CHAR
//! schar        = %x21-5A / %x5C-7F                    ; printable ASCII but "["
//! resp-code    = "[" resp-level *("/" resp-level) "]"
//! resp-level   = 1*rchar
//! rchar        = %x21-2E / %x30-5C / %x5E-7F          ; printable ASCII but "/" and "]"
//! multi-line   = single-line *dot-stuffed "." CRLF    ; RFC 1939 §3
//! continue-req = "+" SP [base64] CRLF                 ; RFC 5034 §4 (AUTH)
//! ```
//!
//! `schar` is read as any octet but CR and LF: servers put spaces and UTF-8 in their text.

/// The status indicator that starts every reply but an AUTH continuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `+OK`
    Ok,
    /// `-ERR`
    Err,
}

impl Status {
    /// `+OK` or `-ERR`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "+OK",
            Status::Err => "-ERR",
        }
    }
}

/// An extended response code (RFC 2449 §8) in brackets after the status, e.g. `[AUTH]`.
///
/// The proxy's own replies use [`Code::Auth`] and [`Code::SysTemp`] (DESIGN.md's reply
/// table); the others are there to read a backend's refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// `[AUTH]` (RFC 3206): the failure is the credentials' fault; a client may ask the
    /// user for new ones.
    Auth,
    /// `[SYS/TEMP]` (RFC 3206): a temporary problem on the server's side, not the user's;
    /// try again later.
    SysTemp,
    /// `[SYS/PERM]` (RFC 3206): a permanent problem on the server's side; retrying will not
    /// help.
    SysPerm,
    /// `[IN-USE]` (RFC 2449 §8.1): the maildrop is locked by another session.
    InUse,
    /// `[LOGIN-DELAY]` (RFC 2449 §8.1): the user logged in too recently.
    LoginDelay,
    /// Any other code, as sent (without its brackets): `resp-level *("/" resp-level)`.
    Other(String),
}

impl Code {
    /// The code as written between the brackets.
    pub fn name(&self) -> &str {
        match self {
            Code::Auth => "AUTH",
            Code::SysTemp => "SYS/TEMP",
            Code::SysPerm => "SYS/PERM",
            Code::InUse => "IN-USE",
            Code::LoginDelay => "LOGIN-DELAY",
            Code::Other(name) => name,
        }
    }

    /// The code for `name` (the text between the brackets): one of the known codes,
    /// matched ignoring ASCII case, or [`Code::Other`]; `None` if `name` is not
    /// `resp-level *("/" resp-level)`.
    pub fn from_name(name: &str) -> Option<Code> {
        if !is_resp_code_text(name.as_bytes()) {
            return None;
        }
        let known = [
            Code::Auth,
            Code::SysTemp,
            Code::SysPerm,
            Code::InUse,
            Code::LoginDelay,
        ];
        let code = known
            .into_iter()
            .find(|code| code.name().eq_ignore_ascii_case(name))
            .unwrap_or_else(|| Code::Other(name.to_owned()));
        Some(code)
    }
}

/// `resp-level *("/" resp-level)`, `resp-level = 1*rchar`.
pub(crate) fn is_resp_code_text(text: &[u8]) -> bool {
    let is_rchar = |b: &u8| matches!(b, 0x21..=0x2e | 0x30..=0x5c | 0x5e..=0x7f);
    !text.is_empty()
        && text
            .split(|&b| b == b'/')
            .all(|level| !level.is_empty() && level.iter().all(is_rchar))
}

/// One status line: `+OK` or `-ERR`, an optional response code, and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    /// `+OK` or `-ERR`.
    pub status: Status,
    /// The response code in brackets, if any.
    pub code: Option<Code>,
    /// The human-readable text (after the code and its space, if any).
    pub text: String,
}

impl StatusLine {
    /// Whether the status is `+OK`.
    pub fn is_ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// A reply from the proxy to its client.
///
/// The writer never lets a value break the line structure: CR, LF and NUL in any text are
/// written as spaces, a [`Code::Other`] that is not `resp-code` text is left out, and a
/// text that would be read as a response code (one starting with `[` where no code
/// stands) has that `[` written as a space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK text` or `-ERR [CODE] text`: one line.
    Status(StatusLine),
    /// `+ base64`: an AUTH continuation (RFC 5034 §4); `+ ` when empty.
    Continuation(String),
    /// `+OK text`, then each line, dot-stuffed, then `.` alone (RFC 1939 §3): CAPA's reply
    /// and the bare AUTH's.
    MultiLine {
        /// The text of the `+OK` line.
        text: String,
        /// The lines after it, as they are meant (the writer stuffs the dots).
        lines: Vec<String>,
    },
}

impl Reply {
    /// `+OK text`.
    pub fn ok(text: impl Into<String>) -> Self {
        Reply::Status(StatusLine {
            status: Status::Ok,
            code: None,
            text: text.into(),
        })
    }

    /// `-ERR [code] text`.
    pub fn err(code: Option<Code>, text: impl Into<String>) -> Self {
        Reply::Status(StatusLine {
            status: Status::Err,
            code,
            text: text.into(),
        })
    }

    /// `+ base64`.
    pub fn continuation(base64: impl Into<String>) -> Self {
        Reply::Continuation(base64.into())
    }

    /// `+OK text`, the lines, `.`.
    pub fn multi_line(text: impl Into<String>, lines: Vec<String>) -> Self {
        Reply::MultiLine {
            text: text.into(),
            lines,
        }
    }

    /// Append the reply, CRLF included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Status(line) => {
                write_status_line(out, line.status, line.code.as_ref(), &line.text)
            }
            Reply::Continuation(base64) => {
                out.extend_from_slice(b"+ ");
                write_text(out, base64);
                out.extend_from_slice(b"\r\n");
            }
            Reply::MultiLine { text, lines } => {
                write_status_line(out, Status::Ok, None, text);
                for line in lines {
                    if line.starts_with('.') {
                        out.push(b'.');
                    }
                    write_text(out, line);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b".\r\n");
            }
        }
    }

    /// The reply as bytes, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

fn write_status_line(out: &mut Vec<u8>, status: Status, code: Option<&Code>, text: &str) {
    out.extend_from_slice(status.as_str().as_bytes());
    let code = code.filter(|code| is_resp_code_text(code.name().as_bytes()));
    if let Some(code) = code {
        out.extend_from_slice(b" [");
        out.extend_from_slice(code.name().as_bytes());
        out.push(b']');
    }
    if text.is_empty() {
        out.extend_from_slice(b"\r\n");
        return;
    }
    out.push(b' ');
    match text.strip_prefix('[') {
        Some(rest) if code.is_none() => {
            out.push(b' ');
            write_text(out, rest);
        }
        _ => write_text(out, text),
    }
    out.extend_from_slice(b"\r\n");
}

/// `text` with CR, LF and NUL as spaces.
fn write_text(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().map(|b| {
        if matches!(b, b'\r' | b'\n' | 0) {
            b' '
        } else {
            b
        }
    }));
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;

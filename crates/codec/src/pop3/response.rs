//! Reading a POP3 backend's replies: [`parse_status_line`] for one line, and
//! [`ResponseFramer`] for whole replies, single- or multi-line, within [`ResponseLimits`].
//!
//! Whether a `+OK` starts a multi-line reply depends on the command it answers (RFC 1939
//! §3), so the caller says what it expects ([`Expect`]); an `-ERR` and an AUTH
//! continuation (`+ ...`) are always one line.

use bytes::BytesMut;

use super::framing::{strip_eol, FramingError, LineFramer};
use super::reply::{is_resp_code_text, Code, Status, StatusLine};

/// A backend reply line that is malformed or over a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// A line is longer than [`ResponseLimits::max_line`].
    #[error("reply line too long")]
    LineTooLong,
    /// A multi-line reply has more than [`ResponseLimits::max_lines`] lines.
    #[error("reply has too many lines")]
    TooManyLines,
    /// A multi-line reply's lines add up to more than [`ResponseLimits::max_reply`] octets.
    #[error("reply too long")]
    TooLong,
    /// A line that should start a reply is neither `+OK`, `-ERR` nor `+ `.
    #[error("malformed reply line")]
    Syntax,
}

/// One line that starts a reply: a status line or an AUTH continuation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyLine {
    /// `+OK ...` or `-ERR ...`.
    Status(StatusLine),
    /// `+ base64` (or a bare `+`): the text after `+ `, possibly empty.
    Continuation(String),
}

/// Parse the first line of a reply, with or without its CRLF.
///
/// ```abnf
/// reply-line   = single-line / continue-req
/// single-line  = status [SP text]             ; see the reply module
/// continue-req = "+" [SP [base64]]            ; a bare "+" too, as some servers send it
/// ```
///
/// The status is matched ignoring ASCII case. Text is decoded as UTF-8, lossily.
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine, ResponseError> {
    let line = strip_eol(line);
    match line {
        [b'+'] => return Ok(ReplyLine::Continuation(String::new())),
        [b'+', b' ', rest @ ..] => {
            return Ok(ReplyLine::Continuation(
                String::from_utf8_lossy(rest).into_owned(),
            ))
        }
        _ => {}
    }
    parse_status_line(line).map(ReplyLine::Status)
}

/// Parse one status line, with or without its CRLF.
///
/// ```abnf
/// single-line = status [SP text]
/// status      = "+OK" / "-ERR"
/// text        = *schar / resp-code *CHAR
/// ```
///
/// A `[` that does not open a well-formed `resp-code` is taken as text.
pub fn parse_status_line(line: &[u8]) -> Result<StatusLine, ResponseError> {
    let line = strip_eol(line);
    let (status, rest) = if line.len() >= 3 && line[..3].eq_ignore_ascii_case(b"+OK") {
        (Status::Ok, &line[3..])
    } else if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"-ERR") {
        (Status::Err, &line[4..])
    } else {
        return Err(ResponseError::Syntax);
    };
    let text = match rest {
        [] => &[][..],
        [b' ', text @ ..] => text,
        _ => return Err(ResponseError::Syntax),
    };
    let (code, text) = match resp_code(text) {
        Some((code, rest)) => (Some(code), rest.strip_prefix(b" ").unwrap_or(rest)),
        None => (None, text),
    };
    Ok(StatusLine {
        status,
        code,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// ```abnf
/// resp-code = "[" resp-level *("/" resp-level) "]"
/// ```
/// The code and what follows it, if `text` starts with one.
fn resp_code(text: &[u8]) -> Option<(Code, &[u8])> {
    let inner = text.strip_prefix(b"[")?;
    let end = inner.iter().position(|&b| b == b']')?;
    let name = &inner[..end];
    if !is_resp_code_text(name) {
        return None;
    }
    // resp-code text is ASCII.
    let code = Code::from_name(&String::from_utf8_lossy(name))?;
    Some((code, &inner[end + 1..]))
}

/// What reply the command just sent gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// One line: USER, PASS, AUTH (and its continuations), STLS, QUIT.
    SingleLine,
    /// A `+OK` opens a multi-line reply (CAPA, a bare AUTH); an `-ERR` is one line.
    MultiLine,
}

/// A whole reply from a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A one-line `+OK` or `-ERR`.
    Status(StatusLine),
    /// `+ base64`: the text after `+ `, possibly empty.
    Continuation(String),
    /// A `+OK` line and the lines after it, dot-unstuffed, without the final `.`.
    MultiLine {
        /// The `+OK` line.
        status: StatusLine,
        /// The lines in between, as meant (a leading `..` read as `.`).
        lines: Vec<String>,
    },
}

/// Limits for reading a backend's replies. A backend is trusted more than a client, but a
/// broken or hostile one must still not make the proxy hold unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseLimits {
    /// Longest line, in octets, not counting its CRLF. Default 4 KiB: eight times RFC
    /// 2449 §4's 512-octet response line, room for a long SASL challenge.
    pub max_line: usize,
    /// Most lines in one multi-line reply, the final `.` not counted. Default 100: a CAPA
    /// reply has a dozen.
    pub max_lines: usize,
    /// Most octets in one multi-line reply, all its lines' text together. Default 64 KiB.
    pub max_reply: usize,
}

impl ResponseLimits {
    /// Default [`ResponseLimits::max_line`]: 4 KiB.
    pub const DEFAULT_MAX_LINE: usize = 4 * 1_024;
    /// Default [`ResponseLimits::max_lines`]: 100.
    pub const DEFAULT_MAX_LINES: usize = 100;
    /// Default [`ResponseLimits::max_reply`]: 64 KiB.
    pub const DEFAULT_MAX_REPLY: usize = 64 * 1_024;
}

impl Default for ResponseLimits {
    fn default() -> Self {
        Self {
            max_line: Self::DEFAULT_MAX_LINE,
            max_lines: Self::DEFAULT_MAX_LINES,
            max_reply: Self::DEFAULT_MAX_REPLY,
        }
    }
}

/// Reads a backend's output as whole replies, within [`ResponseLimits`].
///
/// An error is reported once; the rest of a broken multi-line reply (its lines up to the
/// `.`) is then skipped, and reading carries on with the reply after it. A proxy will
/// usually drop the backend connection on any error instead.
#[derive(Debug, Clone)]
pub struct ResponseFramer {
    limits: ResponseLimits,
    lines: LineFramer,
    /// The `+OK` line of the multi-line reply being read.
    opened: Option<StatusLine>,
    pending: Vec<String>,
    size: usize,
    /// Skipping the lines of a multi-line reply already reported as broken.
    skipping: bool,
}

impl ResponseFramer {
    /// A framer enforcing `limits`.
    pub fn new(limits: ResponseLimits) -> Self {
        Self {
            limits,
            lines: LineFramer::new(limits.max_line),
            opened: None,
            pending: Vec::new(),
            size: 0,
            skipping: false,
        }
    }

    /// The next whole reply, consumed from `buf`; `Ok(None)`: more bytes are needed (the
    /// lines read so far are kept by the framer, a partial line stays in `buf`).
    ///
    /// `expect` is looked at only when a reply starts: a multi-line reply under way is
    /// read to its end whatever a later call says.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        expect: Expect,
    ) -> Result<Option<Response>, ResponseError> {
        loop {
            if !self.lines.finish_discard(buf) {
                return Ok(None);
            }
            let in_block = self.opened.is_some() || self.skipping;
            // Whether an unreadable first line would have opened a multi-line reply,
            // whose lines must then be skipped.
            let opens_block = !in_block
                && expect == Expect::MultiLine
                && buf.len() >= 3
                && buf[..3].eq_ignore_ascii_case(b"+OK");
            let raw = match self.lines.decode(buf) {
                Ok(None) => return Ok(None),
                Ok(Some(raw)) => raw,
                Err(FramingError::LineTooLong { .. }) => {
                    return Err(self.fail(ResponseError::LineTooLong, in_block || opens_block));
                }
            };
            if in_block {
                if &raw[..] == b"." {
                    let skipped = self.skipping;
                    let status = self.opened.take();
                    let lines = std::mem::take(&mut self.pending);
                    self.reset();
                    match status {
                        Some(status) if !skipped => {
                            return Ok(Some(Response::MultiLine { status, lines }))
                        }
                        _ => continue,
                    }
                }
                if self.skipping {
                    continue;
                }
                let line = raw.strip_prefix(b".").unwrap_or(&raw);
                if self.pending.len() >= self.limits.max_lines {
                    return Err(self.fail(ResponseError::TooManyLines, true));
                }
                self.size += line.len();
                if self.size > self.limits.max_reply {
                    return Err(self.fail(ResponseError::TooLong, true));
                }
                self.pending
                    .push(String::from_utf8_lossy(line).into_owned());
                continue;
            }
            match parse_reply_line(&raw)? {
                ReplyLine::Continuation(text) => return Ok(Some(Response::Continuation(text))),
                ReplyLine::Status(status) if status.is_ok() && expect == Expect::MultiLine => {
                    self.opened = Some(status);
                }
                ReplyLine::Status(status) => return Ok(Some(Response::Status(status))),
            }
        }
    }

    /// Drop the reply in progress; skip the rest of it when more lines are coming.
    fn fail(&mut self, error: ResponseError, more_coming: bool) -> ResponseError {
        self.reset();
        self.skipping = more_coming;
        error
    }

    fn reset(&mut self) {
        self.opened = None;
        self.pending.clear();
        self.size = 0;
        self.skipping = false;
    }
}

/// The capabilities of a CAPA reply's lines (RFC 2449 §5), as `(tag upper-cased, params)`.
///
/// ```abnf
/// capability = capa-tag *(SP param)
/// capa-tag   = 1*cchar
/// cchar      = %x21-2D / %x2F-7F                 ; printable ASCII but "."
/// param      = 1*pchar
/// pchar      = %x21-7F
/// ```
///
/// Params are split at runs of spaces (`SASL PLAIN  LOGIN` gives two). Lines whose tag is
/// malformed are left out.
pub fn capa_keywords(lines: &[String]) -> Vec<(String, Vec<String>)> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split(' ').filter(|w| !w.is_empty());
            let tag = words.next()?;
            let valid = tag.bytes().all(|b| matches!(b, 0x21..=0x2d | 0x2f..=0x7f));
            if !valid {
                return None;
            }
            let params = words.map(str::to_owned).collect();
            Some((tag.to_ascii_uppercase(), params))
        })
        .collect()
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;

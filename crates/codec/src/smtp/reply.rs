//! SMTP replies, both ways: [`Reply`] writes what the proxy tells its client, and
//! [`ReplyFramer`] (with [`parse_reply_line`]) reads what a backend tells the proxy.
//!
//! ```abnf
//! Reply-line = *( Reply-code "-" [ textstring ] CRLF )
//!              Reply-code [ SP textstring ] CRLF                  ; RFC 5321 §4.2
//! Reply-code = %x32-35 %x30-35 %x30-39
//! textstring = 1*(%d09 / %d32-126)                               ; widened to any octet but CR, LF
//! ```
//!
//! With ENHANCEDSTATUSCODES (RFC 2034) the text of every line starts with
//! `class "." subject "." detail SP` (RFC 3463), e.g. `250 2.0.0 OK`.

use bytes::BytesMut;

use super::framing::{FramingError, LineFramer};

/// An RFC 3463 enhanced status code `class.subject.detail`, e.g. `(5, 7, 8)` for `5.7.8`.
pub type EnhancedCode = (u8, u16, u16);

/// A reply from the proxy to its client: one or more lines with the same code.
///
/// Written as `250-first` ... `250 last`; with an enhanced code, every line carries it
/// (`250-2.0.0 first` ... `250 2.0.0 last`), as RFC 2034 §4 asks. An EHLO reply has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code, `Reply-code = %x32-35 %x30-35 %x30-39`. Anything else is
    /// written as `451` (local error) so that the line stays grammatical.
    pub code: u16,
    /// The enhanced status code, written on every line. One whose class is not 2, 4 or 5,
    /// or whose subject or detail is over 999, is left out.
    pub enhanced: Option<EnhancedCode>,
    /// The text of each line; CR, LF and NUL are written as spaces. No lines at all is
    /// written as one empty line (`334 `, the empty SASL challenge).
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            lines: vec![text.into()],
        }
    }

    /// A reply of several lines, e.g. EHLO's.
    pub fn multiline(code: u16, enhanced: Option<EnhancedCode>, lines: Vec<String>) -> Self {
        Self {
            code,
            enhanced,
            lines,
        }
    }

    /// Append the reply, CRLF included, to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let code = if is_reply_code(self.code) {
            self.code
        } else {
            451
        };
        let enhanced = self
            .enhanced
            .filter(|&(class, subject, detail)| {
                matches!(class, 2 | 4 | 5) && subject <= 999 && detail <= 999
            })
            .map(|(class, subject, detail)| format!("{class}.{subject}.{detail} "));
        let empty = [String::new()];
        let lines = if self.lines.is_empty() {
            &empty[..]
        } else {
            &self.lines[..]
        };
        for (i, text) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            out.extend_from_slice(format!("{code:03}").as_bytes());
            out.push(if last { b' ' } else { b'-' });
            if let Some(enhanced) = &enhanced {
                out.extend_from_slice(enhanced.as_bytes());
            }
            out.extend(text.bytes().map(|b| {
                if matches!(b, b'\r' | b'\n' | 0) {
                    b' '
                } else {
                    b
                }
            }));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The reply as bytes, CRLF included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// `Reply-code = %x32-35 %x30-35 %x30-39` (RFC 5321 §4.2).
pub fn is_reply_code(code: u16) -> bool {
    (200..=599).contains(&code) && (code / 10) % 10 <= 5
}

/// One line of a backend's reply, as parsed by [`parse_reply_line`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The reply code.
    pub code: u16,
    /// `code SP text` or a bare `code`: the reply's last line. `code-text`: more follow.
    pub last: bool,
    /// The text after `code-` or `code SP` (lossily decoded UTF-8), enhanced code included.
    pub text: String,
}

/// A whole reply from a backend: its code and the text of each line, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The reply code, the same on every line.
    pub code: u16,
    /// The text of each line (after `250-` / `250 `), at least one.
    pub lines: Vec<String>,
}

impl Response {
    /// The code's first digit: 2 success, 3 intermediate (`334`, `354`), 4 transient
    /// failure, 5 permanent failure.
    pub fn class(&self) -> u8 {
        // code is 200..=599.
        (self.code / 100) as u8
    }

    /// Whether the code is 2xx.
    pub fn is_positive(&self) -> bool {
        self.class() == 2
    }

    /// The enhanced status code at the start of the first line, if there is one whose class
    /// matches the reply code's (RFC 3463 §2, RFC 2034 §4).
    pub fn enhanced(&self) -> Option<EnhancedCode> {
        let first = self.lines.first()?;
        let word = first.split(' ').next()?;
        let mut parts = word.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let number = |s: &str, max_len: usize| {
            (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u16>().ok())
                .flatten()
        };
        let class = u8::try_from(number(class, 1)?).ok()?;
        if class != self.class() {
            return None;
        }
        Some((class, number(subject, 3)?, number(detail, 3)?))
    }
}

/// A backend reply line that is malformed or over a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line is longer than [`ReplyLimits::max_line`].
    #[error("reply line too long")]
    LineTooLong,
    /// A reply has more than [`ReplyLimits::max_lines`] lines.
    #[error("reply has too many lines")]
    TooManyLines,
    /// A reply's lines add up to more than [`ReplyLimits::max_reply`] octets.
    #[error("reply too long")]
    TooLong,
    /// A line does not start with a reply code followed by `-`, SP or its end.
    #[error("malformed reply line")]
    Syntax,
    /// A continuation line's code differs from the first line's (RFC 5321 §4.2.1: all
    /// lines of a reply carry the same code).
    #[error("reply code {then} after {first} in one reply")]
    CodeMismatch {
        /// The reply's first code.
        first: u16,
        /// The code of the line that broke it.
        then: u16,
    },
}

/// Parse one reply line, with or without its CRLF.
///
/// ```abnf
/// reply-line = Reply-code ( "-" / SP / <end> ) [ textstring ]
/// ```
pub fn parse_reply_line(line: &[u8]) -> Result<ReplyLine, ReplyError> {
    let line = super::framing::strip_eol(line);
    let (digits, rest) = line.split_at(line.len().min(3));
    let code_ok = matches!(digits, [b'2'..=b'5', b'0'..=b'5', b'0'..=b'9']);
    if !code_ok {
        return Err(ReplyError::Syntax);
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    let (last, text) = match rest {
        [] => (true, &[][..]),
        [b' ', text @ ..] => (true, text),
        [b'-', text @ ..] => (false, text),
        _ => return Err(ReplyError::Syntax),
    };
    Ok(ReplyLine {
        code,
        last,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

/// Limits for reading a backend's replies. A backend is trusted more than a client, but a
/// broken or hostile one must still not make the proxy hold unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Longest line, in octets, not counting its CRLF. Default 4 KiB: eight times RFC 5321
    /// §4.5.3.1.5's 512-octet reply line, room for long SASL challenges.
    pub max_line: usize,
    /// Most lines in one reply. Default 100: an EHLO reply has a dozen or two.
    pub max_lines: usize,
    /// Most octets in one reply, all lines' text together. Default 64 KiB.
    pub max_reply: usize,
}

impl ReplyLimits {
    /// Default [`ReplyLimits::max_line`]: 4 KiB.
    pub const DEFAULT_MAX_LINE: usize = 4 * 1_024;
    /// Default [`ReplyLimits::max_lines`]: 100.
    pub const DEFAULT_MAX_LINES: usize = 100;
    /// Default [`ReplyLimits::max_reply`]: 64 KiB.
    pub const DEFAULT_MAX_REPLY: usize = 64 * 1_024;
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_line: Self::DEFAULT_MAX_LINE,
            max_lines: Self::DEFAULT_MAX_LINES,
            max_reply: Self::DEFAULT_MAX_REPLY,
        }
    }
}

/// Reads a backend's output as whole (multi-line) replies, within [`ReplyLimits`].
///
/// An error is reported once; the rest of the broken reply (its lines up to the next last
/// line) is then skipped, and reading carries on with the reply after it. A proxy will
/// usually drop the backend connection on any error instead.
#[derive(Debug, Clone)]
pub struct ReplyFramer {
    limits: ReplyLimits,
    lines: LineFramer,
    code: u16,
    pending: Vec<String>,
    size: usize,
    /// Skipping the lines of a reply already reported as broken.
    skipping: bool,
}

impl ReplyFramer {
    /// A framer enforcing `limits`.
    pub fn new(limits: ReplyLimits) -> Self {
        Self {
            limits,
            lines: LineFramer::new(limits.max_line),
            code: 0,
            pending: Vec::new(),
            size: 0,
            skipping: false,
        }
    }

    /// The next whole reply, consumed from `buf`; `Ok(None)`: more bytes are needed (the
    /// lines read so far are kept by the framer, a partial line stays in `buf`).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Response>, ReplyError> {
        loop {
            if !self.lines.finish_discard(buf) {
                return Ok(None);
            }
            // Whether the line about to be read says more lines follow: decides, when the
            // line is too long to be read, whether the rest of its reply must be skipped.
            let continued = buf.get(3) == Some(&b'-');
            let raw = match self.lines.decode(buf) {
                Ok(None) => return Ok(None),
                Ok(Some(raw)) => raw,
                Err(FramingError::LineTooLong { .. }) => {
                    return Err(self.fail(ReplyError::LineTooLong, continued));
                }
            };
            let line = match parse_reply_line(&raw) {
                Ok(line) => line,
                Err(error) => {
                    // Unreadable: taken as the broken reply's end.
                    let skipping = self.skipping;
                    self.reset();
                    if skipping {
                        continue;
                    }
                    return Err(error);
                }
            };
            if self.skipping {
                if line.last {
                    self.reset();
                }
                continue;
            }
            if self.pending.is_empty() {
                self.code = line.code;
            } else if line.code != self.code {
                let first = self.code;
                return Err(self.fail(
                    ReplyError::CodeMismatch {
                        first,
                        then: line.code,
                    },
                    !line.last,
                ));
            }
            if self.pending.len() >= self.limits.max_lines {
                return Err(self.fail(ReplyError::TooManyLines, !line.last));
            }
            self.size += line.text.len();
            if self.size > self.limits.max_reply {
                return Err(self.fail(ReplyError::TooLong, !line.last));
            }
            self.pending.push(line.text);
            if line.last {
                let response = Response {
                    code: self.code,
                    lines: std::mem::take(&mut self.pending),
                };
                self.reset();
                return Ok(Some(response));
            }
        }
    }

    /// Drop the reply in progress; skip the rest of it when more lines are coming.
    fn fail(&mut self, error: ReplyError, more_coming: bool) -> ReplyError {
        self.reset();
        self.skipping = more_coming;
        error
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.code = 0;
        self.size = 0;
        self.skipping = false;
    }
}

/// The service extensions of an EHLO reply's lines (RFC 5321 §4.1.1.1): the first line is
/// the server's name and greeting, each following line is `keyword [SP params]`.
///
/// ```abnf
/// ehlo-line    = ehlo-keyword *( SP ehlo-param )
/// ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
/// ```
///
/// Gives `(keyword upper-cased, params)` with the params as sent (without the separator).
/// The old `AUTH=PLAIN LOGIN` form (a `=` instead of the SP) is read too, as `AUTH` with
/// params `PLAIN LOGIN`. Lines whose keyword is malformed are left out.
pub fn ehlo_keywords(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .skip(1)
        .filter_map(|line| {
            let end = line.find([' ', '=']).unwrap_or(line.len());
            let (keyword, params) = line.split_at(end);
            let valid = keyword
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
                && keyword
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !valid {
                return None;
            }
            let params = params.get(1..).unwrap_or("").trim();
            Some((keyword.to_ascii_uppercase(), params.to_owned()))
        })
        .collect()
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;

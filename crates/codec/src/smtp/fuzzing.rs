//! Entry points for cargo-fuzz targets of the SMTP codec (a `fuzz/fuzz_targets/*.rs` file
//! calls them with the fuzzer's bytes). Each one must never panic on its own; the
//! `assert!`s inside check the codec's invariants, so a panic is a bug found.
//!
//! The same functions back the module's proptests.

use bytes::{Bytes, BytesMut};

use super::client::{write_auth, write_ehlo};
use super::framing::may_be_auth;
use super::{
    parse_command, Command, FramingError, InitialResponse, LineFramer, LineLimits, Reply,
    ReplyError, ReplyFramer, ReplyLimits, Response,
};

/// A small line limit, so that random input hits it often.
pub const FUZZ_MAX_LINE: usize = 64;

/// Small client line limits, AUTH lines with a larger one as by default, so that random
/// input hits both often.
pub const FUZZ_LIMITS: LineLimits = LineLimits {
    max_line: FUZZ_MAX_LINE,
    max_auth_line: 96,
};

/// Small reply limits, so that random input hits them often.
pub const FUZZ_REPLY_LIMITS: ReplyLimits = ReplyLimits {
    max_line: 64,
    max_lines: 4,
    max_reply: 160,
};

/// Feed `chunks` to a fresh [`LineFramer`] with one bound for every line, decoding after
/// each until it needs more bytes, and collect what it produced. Asserts that what it
/// leaves buffered stays bounded.
pub fn frame_lines<'a>(
    max_line: usize,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Bytes, FramingError>> {
    frame_smtp_lines(LineLimits::uniform(max_line), chunks)
}

/// Like [`frame_lines`] with SMTP's two bounds: the line after an AUTH command is read as
/// the AUTH exchange's response, as a session would. Every line must be within its own
/// bound.
pub fn frame_smtp_lines<'a>(
    limits: LineLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Bytes, FramingError>> {
    let mut framer = LineFramer::with_limits(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let auth_bound = limits.max_line.max(limits.max_auth_line);
    let mut response_next = false;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let decoded = if response_next {
                framer.decode_auth_response(&mut buf)
            } else {
                framer.decode(&mut buf)
            };
            match decoded {
                Ok(None) => break,
                Ok(Some(line)) => {
                    let bound = if response_next {
                        limits.max_auth_line
                    } else if may_be_auth(&line) {
                        auth_bound
                    } else {
                        limits.max_line
                    };
                    assert!(line.len() <= bound, "line over the limit");
                    assert!(!line.contains(&b'\n'), "LF inside a line");
                    response_next =
                        !response_next && matches!(parse_command(&line), Ok(Command::Auth { .. }));
                    events.push(Ok(line));
                }
                Err(e) => {
                    response_next = false;
                    events.push(Err(e));
                }
            }
        }
        assert!(
            buf.len() <= auth_bound.saturating_add(1),
            "framer holds {} octets",
            buf.len()
        );
    }
    events
}

/// Frame `data` whole, one octet at a time, and in chunks sized by the data's first octet:
/// the results must be identical, and every line must go through the parser unharmed.
pub fn smtp_framer(data: &[u8]) {
    let whole = frame_smtp_lines(FUZZ_LIMITS, [data]);
    assert_eq!(
        whole,
        frame_smtp_lines(FUZZ_LIMITS, data.chunks(1)),
        "byte-at-a-time framing differs"
    );
    let size = usize::from(data.first().copied().unwrap_or(7) % 16) + 2;
    assert_eq!(
        whole,
        frame_smtp_lines(FUZZ_LIMITS, data.chunks(size)),
        "chunked framing differs"
    );
    for line in whole.iter().flatten() {
        smtp_command(line);
    }
}

/// Parse `data` as a command line. An initial response must be redacted in `Debug`; an
/// EHLO or AUTH that parses must survive write → parse unchanged.
pub fn smtp_command(data: &[u8]) {
    let Ok(command) = parse_command(data) else {
        return;
    };
    let debug = format!("{command:?}");
    match &command {
        Command::Ehlo(name) => {
            let mut out = Vec::new();
            write_ehlo(&mut out, name).expect("a parsed EHLO name is writable");
            assert_eq!(parse_command(&out).as_ref(), Ok(&command));
        }
        Command::Auth {
            mechanism,
            initial_response,
        } => {
            if let Some(InitialResponse::Base64(b64)) = initial_response {
                let want = format!("Base64([REDACTED {} octets])", b64.len());
                assert!(debug.contains(&want), "initial response not redacted");
                if b64.len() >= 4 {
                    let text = String::from_utf8_lossy(b64);
                    assert!(!debug.contains(&*text), "initial response in Debug");
                }
            }
            let mut out = Vec::new();
            write_auth(&mut out, mechanism, initial_response.as_ref())
                .expect("a parsed AUTH is writable");
            assert_eq!(parse_command(&out).as_ref(), Ok(&command));
        }
        _ => {}
    }
}

/// Read `data` as backend replies with [`FUZZ_REPLY_LIMITS`], whole and one octet at a
/// time: the results must be identical. Every reply read is written back as a [`Reply`]
/// and must read the same (its text with CR and NUL as spaces, as the writer sends them).
pub fn smtp_reply(data: &[u8]) {
    let whole = read_replies(FUZZ_REPLY_LIMITS, [data]);
    assert_eq!(
        whole,
        read_replies(FUZZ_REPLY_LIMITS, data.chunks(1)),
        "byte-at-a-time reading differs"
    );
    for response in whole.iter().flatten() {
        assert!(!response.lines.is_empty());
        assert!(response.lines.len() <= FUZZ_REPLY_LIMITS.max_lines);
        assert!((200..=599).contains(&response.code));
        let _ = response.enhanced();
        let reply = Reply::multiline(response.code, None, response.lines.clone());
        let written = reply.to_bytes();
        let again = read_replies(ReplyLimits::default(), [&written[..]]);
        let sanitized = Response {
            code: response.code,
            lines: response
                .lines
                .iter()
                .map(|l| l.replace(['\r', '\0'], " "))
                .collect(),
        };
        assert_eq!(again, vec![Ok(sanitized)], "{written:?}");
    }
}

/// Feed `chunks` to a fresh [`ReplyFramer`] and collect what it produced.
pub fn read_replies<'a>(
    limits: ReplyLimits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Response, ReplyError>> {
    let mut framer = ReplyFramer::new(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(response)) => events.push(Ok(response)),
                Err(e) => events.push(Err(e)),
            }
        }
    }
    events
}

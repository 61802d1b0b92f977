//! Entry points for cargo-fuzz targets of the POP3 codec (a `fuzz/fuzz_targets/*.rs` file
//! calls them with the fuzzer's bytes). Each one must never panic on its own; the
//! `assert!`s inside check the codec's invariants, so a panic is a bug found.
//!
//! The same functions back the module's proptests.

use bytes::BytesMut;
use secrecy::ExposeSecret;

use super::client::{write_auth, write_pass, write_user, WriteError};
use super::{
    parse_command, Command, Expect, InitialResponse, Reply, Response, ResponseError,
    ResponseFramer, ResponseLimits, StatusLine,
};

/// A small line limit, so that random input hits it often.
pub const FUZZ_MAX_LINE: usize = 64;

/// Small response limits, so that random input hits them often.
pub const FUZZ_RESPONSE_LIMITS: ResponseLimits = ResponseLimits {
    max_line: 64,
    max_lines: 4,
    max_reply: 160,
};

/// POP3 lines are framed by the SMTP module's line framer, so its framing check serves
/// both.
pub use crate::smtp::fuzzing::frame_lines;

/// Frame `data` whole, one octet at a time, and in chunks sized by the data's first octet:
/// the results must be identical, and every line must go through the parser unharmed.
pub fn pop3_framer(data: &[u8]) {
    let whole = frame_lines(FUZZ_MAX_LINE, [data]);
    assert_eq!(
        whole,
        frame_lines(FUZZ_MAX_LINE, data.chunks(1)),
        "byte-at-a-time framing differs"
    );
    let size = usize::from(data.first().copied().unwrap_or(7) % 16) + 2;
    assert_eq!(
        whole,
        frame_lines(FUZZ_MAX_LINE, data.chunks(size)),
        "chunked framing differs"
    );
    for line in whole.iter().flatten() {
        pop3_command(line);
    }
}

/// Parse `data` as a command line. Passwords and initial responses must be redacted in
/// `Debug`; a USER, PASS or AUTH that parses must survive write → parse unchanged (or be
/// refused by the writer only for RFC 2449's 255-octet command line).
pub fn pop3_command(data: &[u8]) {
    let Ok(command) = parse_command(data) else {
        return;
    };
    let debug = format!("{command:?}");
    let mut out = Vec::new();
    let written = match &command {
        Command::User(name) => write_user(&mut out, name),
        Command::Pass(password) => {
            let secret = password.expose_secret();
            let redacted = format!("Pass({:?})", secrecy::SecretString::from("x"));
            assert_eq!(debug, redacted, "password not redacted");
            write_pass(&mut out, secret)
        }
        Command::Auth {
            mechanism,
            initial_response,
        } => {
            if let Some(InitialResponse::Base64(b64)) = initial_response {
                let want = format!("Base64([REDACTED {} octets])", b64.len());
                assert!(debug.contains(&want), "initial response not redacted");
            }
            write_auth(&mut out, mechanism, initial_response.as_ref())
        }
        _ => return,
    };
    match written {
        Ok(()) => assert_eq!(parse_command(&out).as_ref(), Ok(&command), "{out:?}"),
        Err(WriteError::LineTooLong) => assert!(data.len() + 2 > super::MAX_COMMAND_LINE),
        Err(error) => panic!("a parsed command is not writable: {error}"),
    }
}

/// Read `data` as backend replies with [`FUZZ_RESPONSE_LIMITS`], expecting single- and
/// multi-line replies, whole and one octet at a time: the results must be identical. Every
/// reply read is written back as a [`Reply`] and must read the same (its text with CR and
/// NUL as spaces, as the writer sends them).
pub fn pop3_reply(data: &[u8]) {
    for expect in [Expect::SingleLine, Expect::MultiLine] {
        let whole = read_responses(FUZZ_RESPONSE_LIMITS, expect, [data]);
        assert_eq!(
            whole,
            read_responses(FUZZ_RESPONSE_LIMITS, expect, data.chunks(1)),
            "byte-at-a-time reading differs"
        );
        for response in whole.iter().flatten() {
            check_rewrite(response, expect);
        }
    }
}

fn check_rewrite(response: &Response, expect: Expect) {
    let clean = |s: &str| s.replace(['\r', '\0'], " ");
    // A text that would read as a code is written with a space for its `[`.
    let clean_status = |line: &StatusLine| {
        let text = clean(&line.text);
        let text = match text.strip_prefix('[') {
            Some(rest) if line.code.is_none() => format!(" {rest}"),
            _ => text,
        };
        StatusLine {
            text,
            ..line.clone()
        }
    };
    let (reply, want) = match response {
        Response::Status(line) => (
            Reply::Status(line.clone()),
            Response::Status(clean_status(line)),
        ),
        Response::Continuation(text) => (
            Reply::Continuation(text.clone()),
            Response::Continuation(clean(text)),
        ),
        // The writer's multi-line `+OK` carries no code: the proxy never sends one.
        Response::MultiLine { status, .. } if status.code.is_some() => return,
        Response::MultiLine { status, lines } => {
            assert!(lines.len() <= FUZZ_RESPONSE_LIMITS.max_lines);
            (
                Reply::multi_line(status.text.clone(), lines.clone()),
                Response::MultiLine {
                    status: clean_status(status),
                    lines: lines.iter().map(|l| clean(l)).collect(),
                },
            )
        }
    };
    let written = reply.to_bytes();
    let again = read_responses(ResponseLimits::default(), expect, [&written[..]]);
    assert_eq!(again, vec![Ok(want)], "{written:?}");
}

/// Feed `chunks` to a fresh [`ResponseFramer`] expecting `expect` and collect what it
/// produced.
pub fn read_responses<'a>(
    limits: ResponseLimits,
    expect: Expect,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Response, ResponseError>> {
    let mut framer = ResponseFramer::new(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.decode(&mut buf, expect) {
                Ok(None) => break,
                Ok(Some(response)) => events.push(Ok(response)),
                Err(e) => events.push(Err(e)),
            }
        }
        assert!(buf.len() <= limits.max_line.saturating_add(1));
    }
    events
}

//! Entry points for cargo-fuzz targets (`fuzz/fuzz_targets/*.rs` calls them with the fuzzer's
//! bytes). Each one must never panic on its own; the `assert!`s inside check the codec's
//! invariants, so a panic is a bug found.
//!
//! The same functions back the crate's proptests.

use bytes::{Bytes, BytesMut};

use crate::imap::{
    client, parse_command, parse_response, CommandBody, CommandFramer, FramedCommand, FramingError,
    InitialResponse, Reply, Response, ResponseFramer,
};
use crate::limits::Limits;

/// Small limits, so that random input hits them often.
pub const FUZZ_LIMITS: Limits = Limits {
    max_line: 64,
    max_literal: 32,
    max_command: 160,
};

/// What a [`CommandFramer`] produced, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramerEvent {
    /// `decode` returned a whole command.
    Command(Bytes),
    /// `decode` asked for a `+` continuation.
    ContinuationNeeded(Option<Bytes>),
    /// `decode_line` returned an AUTHENTICATE response line.
    Line(Bytes),
    /// A limit was hit.
    Error(FramingError),
}

/// Feed `chunks` to a fresh framer, decoding after each until it needs more bytes, and
/// collect what it produced. After a command that parses as `AUTHENTICATE`, the next line is
/// read with `decode_line`, as a session would. Asserts that the buffer left behind whenever
/// the framer needs more bytes stays within the limits.
pub fn frame_chunks<'a>(
    limits: Limits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<FramerEvent> {
    let mut framer = CommandFramer::new(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut raw_line_next = false;
    let bound = limits.max_command.max(limits.max_line.saturating_add(1));
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let event = if raw_line_next {
                match framer.decode_line(&mut buf) {
                    Ok(Some(line)) => Some(FramerEvent::Line(line)),
                    Ok(None) => None,
                    Err(e) => Some(FramerEvent::Error(e)),
                }
            } else {
                match framer.decode(&mut buf) {
                    Ok(Some(FramedCommand::Complete(cmd))) => Some(FramerEvent::Command(cmd)),
                    Ok(Some(FramedCommand::LiteralContinuationNeeded { tag })) => {
                        Some(FramerEvent::ContinuationNeeded(tag))
                    }
                    Ok(None) => None,
                    Err(e) => Some(FramerEvent::Error(e)),
                }
            };
            let Some(event) = event else {
                assert!(
                    buf.len() <= bound,
                    "framer holds {} octets, over {bound}",
                    buf.len()
                );
                break;
            };
            raw_line_next = match &event {
                FramerEvent::Command(cmd) => matches!(
                    parse_command(cmd).map(|c| c.body),
                    Ok(CommandBody::Authenticate { .. })
                ),
                FramerEvent::Error(_) => raw_line_next,
                _ => false,
            };
            events.push(event);
        }
    }
    events
}

/// Frame `data` whole, one octet at a time, and in chunks sized by the data's first octet:
/// the results must be identical, and every command must go through the parser unharmed.
pub fn imap_framer(data: &[u8]) {
    let whole = frame_chunks(FUZZ_LIMITS, [data]);
    let bytewise = frame_chunks(FUZZ_LIMITS, data.chunks(1));
    assert_eq!(whole, bytewise, "byte-at-a-time framing differs");
    let size = usize::from(data.first().copied().unwrap_or(7) % 16) + 2;
    assert_eq!(
        whole,
        frame_chunks(FUZZ_LIMITS, data.chunks(size)),
        "chunked framing differs"
    );
    for event in &whole {
        if let FramerEvent::Command(cmd) = event {
            imap_command(cmd);
        }
    }
}

/// Parse `data` as a command. A LOGIN that parses must survive write → parse unchanged,
/// and secrets must format the same whatever their content (i.e. redacted).
pub fn imap_command(data: &[u8]) {
    let Ok(cmd) = parse_command(data) else { return };
    let _ = format!("{cmd:?}");
    match &cmd.body {
        CommandBody::Login { username, password } => {
            use secrecy::ExposeSecret;
            let redacted = format!("{:?}", secrecy::SecretString::from("x"));
            assert_eq!(format!("{password:?}"), redacted, "password not redacted");
            let password = password.expose_secret();
            let mut out = Vec::new();
            let written = client::write_login(
                &mut out,
                &cmd.tag,
                username.as_bytes(),
                password.as_bytes(),
                true,
            );
            if written.is_ok() {
                let again = parse_command(&out).map(|c| c.body);
                let Ok(CommandBody::Login {
                    username: u2,
                    password: p2,
                }) = again
                else {
                    panic!("LOGIN did not round-trip: {out:?}");
                };
                assert_eq!((&u2, p2.expose_secret()), (username, password));
            }
        }
        CommandBody::Authenticate {
            initial_response: Some(ir),
            ..
        } => {
            if let InitialResponse::Base64(b64) = ir {
                let want = format!("Base64([REDACTED {} octets])", b64.len());
                assert_eq!(format!("{ir:?}"), want, "initial response not redacted");
            }
        }
        _ => {}
    }
}

/// Split `data` into backend response lines and parse each. A status, BYE or CAPABILITY
/// response that parses is written back as a [`Reply`] and must parse to the same response.
pub fn imap_response(data: &[u8]) {
    let mut framer = ResponseFramer::new(FUZZ_LIMITS.max_line);
    let mut buf = BytesMut::from(data);
    loop {
        let line = match framer.decode(&mut buf) {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(_) => continue,
        };
        assert!(line.len() <= FUZZ_LIMITS.max_line);
        let Ok(response) = parse_response(&line) else {
            continue;
        };
        let reply = match response.clone() {
            Response::Capability(caps) => Reply::Capability(caps),
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => Reply::Tagged {
                tag,
                status,
                code,
                text,
            },
            Response::Untagged { status, code, text } => Reply::Untagged { status, code, text },
            Response::Bye { code, text } => Reply::Bye { code, text },
            _ => continue,
        };
        let written = reply.to_bytes();
        assert_eq!(
            parse_response(&written),
            Ok(response),
            "{:?}",
            String::from_utf8_lossy(&written)
        );
    }
}

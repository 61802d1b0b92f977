//! Entry points for cargo-fuzz targets of the ManageSieve codec (a `fuzz/fuzz_targets/*.rs`
//! file calls them with the fuzzer's bytes). Each one must never panic on its own; the
//! `assert!`s inside check the codec's invariants, so a panic is a bug found.
//!
//! The same functions back the module's proptests.

use bytes::{Bytes, BytesMut};

use super::response::is_writable_data;
use super::{
    client, parse_auth_response, parse_command, parse_response, parse_sasl_response, Code, Command,
    Completion, Framer, FramingError, InitialResponse, Response,
};
use crate::limits::Limits;

/// Small limits, so that random input hits them often.
pub const FUZZ_LIMITS: Limits = Limits {
    max_line: 64,
    max_literal: 32,
    max_command: 160,
};

/// Feed `chunks` to a fresh [`Framer`], decoding after each until it needs more bytes, and
/// collect what it produced. Asserts that whatever it leaves buffered stays within the
/// limits, and that every command is within them.
pub fn frame_chunks<'a>(
    limits: Limits,
    chunks: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<Result<Bytes, FramingError>> {
    let mut framer = Framer::new(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let bound = limits.max_command.max(limits.max_line.saturating_add(1));
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match framer.decode(&mut buf) {
                Ok(None) => {
                    assert!(
                        buf.len() <= bound,
                        "framer holds {} octets, over {bound}",
                        buf.len()
                    );
                    break;
                }
                Ok(Some(command)) => {
                    assert!(
                        command.len() <= limits.max_command,
                        "command over the limit"
                    );
                    assert!(command.ends_with(b"\n"), "command without its line end");
                    events.push(Ok(command));
                }
                Err(e) => events.push(Err(e)),
            }
        }
    }
    events
}

/// Frame `data` whole, one octet at a time, and in chunks sized by the data's first octet:
/// the results must be identical, and every command must go through the parsers unharmed.
pub fn sieve_framer(data: &[u8]) {
    let whole = frame_chunks(FUZZ_LIMITS, [data]);
    assert_eq!(
        whole,
        frame_chunks(FUZZ_LIMITS, data.chunks(1)),
        "bytewise framing differs"
    );
    let size = usize::from(data.first().copied().unwrap_or(1)).max(1);
    assert_eq!(
        whole,
        frame_chunks(FUZZ_LIMITS, data.chunks(size)),
        "chunked framing differs"
    );
    for command in whole.iter().flatten() {
        sieve_command(command);
    }
}

/// Parse `data` as a command and as a SASL response; check what parses.
pub fn sieve_command(data: &[u8]) {
    if let Ok(command) = parse_command(data) {
        // Debug must never show an initial response.
        let _ = format!("{command:?}");
        if let Command::Authenticate {
            mechanism,
            initial_response: Some(InitialResponse::Base64(ir)),
        } = &command
        {
            let mut out = Vec::new();
            if client::write_authenticate(&mut out, mechanism, Some(ir)).is_ok() {
                let again = parse_command(&out).expect("written AUTHENTICATE parses");
                assert_eq!(again, command, "AUTHENTICATE round trip");
            }
        }
    }
    if let Ok(response) = parse_sasl_response(data) {
        let _ = format!("{response:?}");
    }
}

/// Parse `data` as a backend response in both contexts; what parses must survive a
/// write → parse round trip.
pub fn sieve_response(data: &[u8]) {
    for parse in [parse_response, parse_auth_response] {
        let Ok(response) = parse(data) else {
            continue;
        };
        let response = writable(response);
        let written = response.to_bytes();
        let again = parse(&written).expect("a written response parses");
        assert_eq!(again, response, "response round trip");
    }
}

/// `response` as it reads back once written: unknown code data that cannot be written as
/// is (it held a literal) is left out.
pub fn writable(response: Response) -> Response {
    let Response::Completion(Completion {
        status,
        code: Some(Code::Other { name, data }),
        text,
    }) = response
    else {
        return response;
    };
    let data = data.filter(|d| is_writable_data(d.as_bytes()));
    Response::Completion(Completion {
        status,
        code: Some(Code::Other { name, data }),
        text,
    })
}

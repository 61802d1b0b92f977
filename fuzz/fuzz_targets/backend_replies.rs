//! Hostile backend replies through the client side of each codec, as the proxy reads them
//! while logging in (`crates/proxy/src/backend/`): the IMAP response framer and parser, the
//! SMTP reply framer and EHLO keyword reader, the ManageSieve framer and response parsers.
//!
//! Checks: no panic; the result does not depend on how the bytes arrived (whole, octet by
//! octet, or in the input's own reads); what a framer leaves buffered stays within its
//! limits; and what the proxy passes on from a backend to its clients — IMAP post-login
//! capabilities, SMTP service extensions, the ManageSieve capability block — reaches the
//! client's wire well-formed, without anything the proxy must never relay.
//!
//! Input: see `bearergate_fuzz::script` (the backend's bytes instead of a client's;
//! decisions unused). Flags: bits 0–1 the protocol (IMAP, SMTP, ManageSieve, all three),
//! bit 2 small limits.
#![no_main]

use std::sync::Arc;

use bearergate_fuzz::script::Script;
use bearergate_fuzz::wire::{Kind, Wire};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use session::{Action, Session, Verdict};

fuzz_target!(|data: &[u8]| {
    let script = Script::parse(data);
    let small = script.flag(2);
    let reads: Vec<&[u8]> = script.reads.iter().map(|r| &r.bytes[..]).collect();
    let whole: Vec<u8> = reads.concat();
    let protocol = script.flags & 3;
    if protocol == 0 || protocol == 3 {
        imap(small, &whole, &reads);
    }
    if protocol == 1 || protocol == 3 {
        smtp(small, &whole, &reads);
    }
    if protocol == 2 || protocol == 3 {
        sieve(small, &whole, &reads);
    }
});

/// Feeds `reads` to `decode` as a proxy reads a socket, collecting what it returns and
/// checking the buffer after each `Ok(None)`.
fn frame<T, E>(
    reads: &[&[u8]],
    bound: usize,
    mut decode: impl FnMut(&mut BytesMut) -> Result<Option<T>, E>,
) -> Vec<Result<T, E>> {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match decode(&mut buf) {
                Ok(Some(item)) => events.push(Ok(item)),
                Ok(None) => break,
                Err(e) => events.push(Err(e)),
            }
        }
        assert!(
            buf.len() <= bound,
            "{} octets held, over {bound}",
            buf.len()
        );
    }
    events
}

/// The same events however the bytes arrived.
fn split_three_ways<T: PartialEq + std::fmt::Debug, E: PartialEq + std::fmt::Debug>(
    whole: &[u8],
    reads: &[&[u8]],
    bound: usize,
    decode: impl Fn() -> Box<dyn FnMut(&mut BytesMut) -> Result<Option<T>, E>>,
) -> Vec<Result<T, E>> {
    let at_once = frame(&[whole], bound, decode());
    let bytewise: Vec<&[u8]> = whole.chunks(1).collect();
    assert_eq!(at_once, frame(&bytewise, bound, decode()), "octet by octet");
    assert_eq!(
        at_once,
        frame(reads, bound, decode()),
        "in the input's reads"
    );
    at_once
}

fn imap(small: bool, whole: &[u8], reads: &[&[u8]]) {
    use codec::imap::{parse_response, ResponseFramer};
    let max_line = if small { 64 } else { 64 * 1_024 };
    let lines = split_three_ways(whole, reads, max_line + 1, || {
        let mut framer = ResponseFramer::new(max_line);
        Box::new(move |buf| framer.decode(buf))
    });
    for line in lines.into_iter().flatten() {
        assert!(line.len() <= max_line);
        let Ok(response) = parse_response(&line) else {
            continue;
        };
        let Some(capabilities) = response.capabilities() else {
            continue;
        };
        let relayed = session::imap::filter_backend_capabilities(capabilities);
        for capability in &relayed {
            let upper = capability.to_ascii_uppercase();
            assert!(
                !(upper.starts_with("AUTH=")
                    || ["SASL-IR", "LOGINDISABLED", "STARTTLS", "UNAUTHENTICATE"]
                        .contains(&upper.as_str())),
                "{capability} relayed"
            );
        }
        imap_login(relayed);
    }
}

/// The tagged OK of a login carries the backend's capabilities to the client unchanged.
fn imap_login(capabilities: Vec<String>) {
    use codec::imap::{parse_response, Code, Response, Status};
    use session::imap::{ImapSession, ImapSessionConfig};
    let mut session = ImapSession::new(ImapSessionConfig {
        allow_plaintext_auth: true,
        ..ImapSessionConfig::default()
    });
    session.output_written();
    let login = format!(
        "a1 AUTHENTICATE XOAUTH2 {}\r\n",
        sasl::encode_base64(b"user=alice\x01auth=Bearer t0ken\x01\x01")
    );
    let mut input = BytesMut::from(login.as_bytes());
    assert!(matches!(
        session.advance(&mut input),
        Action::Authenticate(_)
    ));
    let verdict = Verdict::LoggedIn {
        capabilities: capabilities.clone(),
    };
    let Ok(()) = session.verdict(verdict) else {
        panic!("login verdict refused");
    };
    let out = session.output().to_vec();
    assert_eq!(Wire::Imap.replies(&out), [Kind::Ok]);
    let Ok(Response::Tagged {
        tag,
        status: Status::Ok,
        code: Some(Code::Capability(shown)),
        ..
    }) = parse_response(&out)
    else {
        panic!("login reply: {:?}", String::from_utf8_lossy(&out));
    };
    assert_eq!(tag, "a1");
    assert_eq!(shown, capabilities, "capabilities changed on the way");
}

fn smtp(small: bool, whole: &[u8], reads: &[&[u8]]) {
    use codec::smtp::fuzzing::FUZZ_REPLY_LIMITS;
    use codec::smtp::{ehlo_keywords, ReplyFramer, ReplyLimits};
    let limits = if small {
        FUZZ_REPLY_LIMITS
    } else {
        ReplyLimits::default()
    };
    let replies = split_three_ways(whole, reads, limits.max_line + 1, || {
        let mut framer = ReplyFramer::new(limits);
        Box::new(move |buf| framer.decode(buf))
    });
    for reply in replies.into_iter().flatten() {
        assert!(!reply.lines.is_empty() && reply.lines.len() <= limits.max_lines);
        assert!(codec::smtp::is_reply_code(reply.code));
        let keywords = ehlo_keywords(&reply.lines);
        for (keyword, params) in &keywords {
            assert!(
                !keyword.is_empty()
                    && keyword
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-'),
                "keyword {keyword:?}"
            );
            assert_eq!(params.trim(), params, "params not trimmed");
        }
        smtp_ehlo(keywords);
    }
}

/// Offered to a client only from the allow-list, and never what is about authentication,
/// TLS or trusted peers: the proxy's own `AUTH` line is the only one.
fn smtp_ehlo(keywords: Vec<(String, String)>) {
    use codec::smtp::{ReplyFramer, ReplyLimits};
    use session::smtp::{SmtpSession, SmtpSessionConfig};
    const NEVER: [&str; 6] = [
        "XCLIENT",
        "XFORWARD",
        "ETRN",
        "ATRN",
        "REQUIRETLS",
        "STARTTLS",
    ];
    let mut session = SmtpSession::new(SmtpSessionConfig {
        allow_plaintext_auth: true,
        backend_extensions: Some(Arc::from(keywords)),
        ..SmtpSessionConfig::default()
    });
    session.output_written();
    let mut input = BytesMut::from(&b"EHLO client.example\r\n"[..]);
    assert!(matches!(session.advance(&mut input), Action::NeedInput));
    let out = session.output().to_vec();
    assert_eq!(Wire::Smtp.replies(&out), [Kind::Ok]);
    let mut buf = BytesMut::from(&out[..]);
    let Ok(Some(reply)) = ReplyFramer::new(ReplyLimits::default()).decode(&mut buf) else {
        panic!("EHLO reply: {:?}", String::from_utf8_lossy(&out));
    };
    let mut seen = Vec::new();
    for line in &reply.lines[1..] {
        assert!(
            line.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "EHLO line {line:?}"
        );
        let keyword = line.split(' ').next().unwrap_or_default().to_owned();
        assert!(!NEVER.contains(&keyword.as_str()), "{keyword} offered");
        if keyword == "AUTH" {
            assert_eq!(
                line, "AUTH OAUTHBEARER XOAUTH2",
                "the backend's AUTH offered"
            );
        }
        assert!(!seen.contains(&keyword), "{keyword} offered twice");
        seen.push(keyword);
    }
}

fn sieve(small: bool, whole: &[u8], reads: &[&[u8]]) {
    use codec::sieve::fuzzing::FUZZ_LIMITS;
    use codec::sieve::{parse_auth_response, parse_response, Framer, Limits, Response};
    // As `crates/proxy/src/backend/sieve.rs` reads a backend.
    let limits = if small {
        FUZZ_LIMITS
    } else {
        Limits {
            max_line: 64 * 1_024,
            max_literal: 64 * 1_024,
            max_command: 128 * 1_024,
        }
    };
    let bound = limits.max_command.max(limits.max_line + 1);
    let replies: Vec<Bytes> = split_three_ways(whole, reads, bound, || {
        let mut framer = Framer::new(limits);
        Box::new(move |buf| framer.decode(buf))
    })
    .into_iter()
    .flatten()
    .collect();
    let mut block = Vec::new();
    for reply in &replies {
        assert!(reply.len() <= limits.max_command);
        if let Ok(Response::Capability(capability)) = parse_response(reply) {
            // The proxy keeps at most 64 lines of a block.
            if block.len() < 64 {
                block.push(capability);
            }
        }
        let _ = parse_auth_response(reply);
    }
    sieve_greeting(block);
}

/// The greeting relays the backend's block as it came, minus what only the proxy may say
/// (and the block must reach the client's wire well-formed, literals and all).
fn sieve_greeting(block: Vec<codec::sieve::Capability>) {
    use codec::sieve::{parse_response, Capability, Framer, Limits, Response};
    use session::sieve::{SieveSession, SieveSessionConfig};
    const NOT_RELAYED: [&str; 8] = [
        "IMPLEMENTATION",
        "SASL",
        "STARTTLS",
        "UNAUTHENTICATE",
        "OWNER",
        "LANGUAGE",
        "XCLIENT",
        "SIEVE",
    ];
    let session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        backend_capabilities: Some(Arc::from(block.clone())),
        ..SieveSessionConfig::default()
    });
    let out = session.output().to_vec();
    let kinds = Wire::Sieve.replies(&out);
    assert_eq!(kinds.last(), Some(&Kind::Ok));
    let mut framer = Framer::new(Limits {
        max_line: 1 << 20,
        max_literal: 1 << 20,
        max_command: 1 << 22,
    });
    let mut buf = BytesMut::from(&out[..]);
    let mut shown: Vec<Capability> = Vec::new();
    while let Ok(Some(line)) = framer.decode(&mut buf) {
        if let Ok(Response::Capability(capability)) = parse_response(&line) {
            shown.push(capability);
        }
    }
    let count = |name: &str| shown.iter().filter(|c| c.is(name)).count();
    for name in ["IMPLEMENTATION", "SASL", "SIEVE"] {
        assert_eq!(count(name), 1, "{name} not exactly once");
    }
    let sieve_value = |list: &[Capability]| {
        list.iter()
            .find(|c| c.is("SIEVE"))
            .and_then(|c| c.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(sieve_value(&shown), sieve_value(&block), "SIEVE changed");
    for name in ["STARTTLS", "UNAUTHENTICATE", "OWNER", "LANGUAGE", "XCLIENT"] {
        assert_eq!(count(name), 0, "{name} relayed");
    }
    let relayed: Vec<&Capability> = block
        .iter()
        .filter(|c| !NOT_RELAYED.iter().any(|name| c.is(name)))
        .collect();
    let others: Vec<&Capability> = shown
        .iter()
        .filter(|c| !NOT_RELAYED.iter().any(|name| c.is(name)))
        .collect();
    assert_eq!(
        others, relayed,
        "the backend's capabilities changed on the way"
    );
}

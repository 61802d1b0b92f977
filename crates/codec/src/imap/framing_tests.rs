use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::fuzzing::{frame_chunks, imap_framer, FramerEvent};

const LIMITS: Limits = Limits {
    max_line: 32,
    max_literal: 16,
    max_command: 64,
};

fn cmd(s: &[u8]) -> FramerEvent {
    FramerEvent::Command(Bytes::copy_from_slice(s))
}
fn cont(tag: &str) -> FramerEvent {
    FramerEvent::ContinuationNeeded(Some(Bytes::copy_from_slice(tag.as_bytes())))
}
fn tag(t: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(t.as_bytes()))
}
fn err(e: FramingError) -> FramerEvent {
    FramerEvent::Error(e)
}

/// Framing `input` whole, one octet at a time, and split in two at every boundary all give
/// `want`.
fn check(input: &[u8], want: &[FramerEvent]) {
    let name = String::from_utf8_lossy(input);
    assert_eq!(frame_chunks(LIMITS, [input]), want, "whole: {name:?}");
    assert_eq!(
        frame_chunks(LIMITS, input.chunks(1)),
        want,
        "bytewise: {name:?}"
    );
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(
            frame_chunks(LIMITS, [a, b]),
            want,
            "split at {at}: {name:?}"
        );
    }
}

#[test]
fn complete_commands() {
    check(b"a1 NOOP\r\n", &[cmd(b"a1 NOOP\r\n")]);
    check(b"a1 NOOP\n", &[cmd(b"a1 NOOP\n")]);
    check(b"\r\n", &[cmd(b"\r\n")]);
    check(
        b"a1 NOOP\r\na2 CAPABILITY\r\n",
        &[cmd(b"a1 NOOP\r\n"), cmd(b"a2 CAPABILITY\r\n")],
    );
    check(b"a1 NOOP", &[]);
    check(b"a1 NOOP\r", &[]);
}

#[test]
fn braces_that_are_not_literals() {
    check(b"a1 LOGIN \"{5}\" x\r\n", &[cmd(b"a1 LOGIN \"{5}\" x\r\n")]);
    check(b"a1 X {3}x\r\n", &[cmd(b"a1 X {3}x\r\n")]);
    check(b"a1 X {}\r\n", &[cmd(b"a1 X {}\r\n")]);
    check(b"a1 X {+}\r\n", &[cmd(b"a1 X {+}\r\n")]);
    check(b"a1 X {1a}\r\n", &[cmd(b"a1 X {1a}\r\n")]);
}

#[test]
fn literal_plus_cannot_smuggle_a_command() {
    let input = b"a1 LOGIN {11+}\r\nuser@ex.com {5+}\r\np\r\nss\r\na2 NOOP\r\n";
    check(
        input,
        &[cmd(&input[..input.len() - 9]), cmd(b"a2 NOOP\r\n")],
    );
}

#[test]
fn synchronizing_literals_ask_for_continuations() {
    let input = b"a1 LOGIN {11}\r\nuser@ex.com {5}\r\np\r\nss\r\n";
    check(input, &[cont("a1"), cont("a1"), cmd(input)]);
    check(b"a1 LOGIN {11}\r\n", &[cont("a1")]);
    check(b"a1 X {0}\r\n\r\n", &[cont("a1"), cmd(b"a1 X {0}\r\n\r\n")]);
}

#[test]
fn literal8_is_framed_like_a_literal() {
    check(b"a1 X ~{3+}\r\na\nb\r\n", &[cmd(b"a1 X ~{3+}\r\na\nb\r\n")]);
    check(
        b"a1 X ~{3}\r\na\nb\r\n",
        &[cont("a1"), cmd(b"a1 X ~{3}\r\na\nb\r\n")],
    );
}

#[test]
fn long_line_is_reported_once_then_framing_resumes() {
    let mut input = b"a1 AUTHENTICATE XOAUTH2 ".to_vec();
    input.extend_from_slice(&[b'x'; 100]);
    input.extend_from_slice(b"\r\na2 NOOP\r\n");
    check(
        &input,
        &[
            err(FramingError::LineTooLong { tag: tag("a1") }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
    // A line of exactly max_line octets is fine; one more is not.
    let exact = [b"a1 ".as_slice(), &[b'x'; 29], b"\r\n"].concat();
    check(&exact, &[cmd(&exact)]);
    let over = [b"a1 ".as_slice(), &[b'x'; 30], b"\r\n"].concat();
    check(&over, &[err(FramingError::LineTooLong { tag: tag("a1") })]);
    // A lone CR inside the line counts.
    let cr = [b"a1 ".as_slice(), &[b'x'; 28], b"\r\r\n"].concat();
    check(&cr, &[cmd(&cr)]);
    let cr = [b"a1 ".as_slice(), &[b'x'; 29], b"\r\r\n"].concat();
    check(&cr, &[err(FramingError::LineTooLong { tag: tag("a1") })]);
}

#[test]
fn long_line_ending_in_a_literal_discards_the_literal_too() {
    let input = [
        b"a1 X ".as_slice(),
        &[b'x'; 40],
        b" {3+}\r\na\r\n\r\na2 NOOP\r\n",
    ]
    .concat();
    check(
        &input,
        &[
            err(FramingError::LineTooLong { tag: tag("a1") }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
}

#[test]
fn oversized_sync_literal_gets_no_continuation() {
    check(
        b"a1 LOGIN {17}\r\na2 NOOP\r\n",
        &[
            err(FramingError::LiteralTooLarge {
                tag: tag("a1"),
                len: 17,
            }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
    check(
        b"a1 X {4294967296}\r\n",
        &[err(FramingError::LiteralTooLarge {
            tag: tag("a1"),
            len: 4_294_967_296,
        })],
    );
    check(
        b"a1 X {99999999999999999999999}\r\na2 NOOP\r\n",
        &[
            err(FramingError::LiteralTooLarge {
                tag: tag("a1"),
                len: u64::MAX,
            }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
}

#[test]
fn oversized_non_sync_literal_is_discarded_with_the_rest_of_its_command() {
    // The 17 literal octets hold what looks like a command; it must not run.
    let input = b"a1 LOGIN {17+}\r\n\r\na9 LOGOUT\r\nxxxx {3+}\r\nabc\r\na2 NOOP\r\n";
    check(
        input,
        &[
            err(FramingError::LiteralTooLarge {
                tag: tag("a1"),
                len: 17,
            }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
    // The rest of the command ends with a sync literal: the client waits for a `+` that will
    // not come, so the command ends there.
    let input = b"a1 X {17+}\r\n12345678901234567 {3}\r\na2 NOOP\r\n";
    check(
        input,
        &[
            err(FramingError::LiteralTooLarge {
                tag: tag("a1"),
                len: 17,
            }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
}

#[test]
fn non_sync_literal_up_to_the_command_limit_is_skipped_a_larger_one_ends_the_stream() {
    // 64 octets (max_command): skipped, and the session stays in step.
    let input = format!("a1 X {{64+}}\r\n{}\r\na2 NOOP\r\n", "y".repeat(64));
    check(
        input.as_bytes(),
        &[
            err(FramingError::LiteralTooLarge {
                tag: tag("a1"),
                len: 64,
            }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
    // One more is not skipped: everything after it is dropped, however it arrives.
    for len in ["65", "4294967296", "99999999999999999999999"] {
        let input = format!("a1 X {{{len}+}}\r\na2 NOOP\r\na3 NOOP\r\n");
        let len = len.parse().unwrap_or(u64::MAX);
        check(
            input.as_bytes(),
            &[err(FramingError::LiteralTooLargeToSkip {
                tag: tag("a1"),
                len,
            })],
        );
    }
    // Behind a line being discarded: both are told, in order.
    let input = [
        b"a1 X ".as_slice(),
        &[b'x'; 40],
        b" {4294967296+}\r\na2 NOOP\r\n",
    ]
    .concat();
    check(
        &input,
        &[
            err(FramingError::LineTooLong { tag: tag("a1") }),
            err(FramingError::LiteralTooLargeToSkip {
                tag: None,
                len: 4_294_967_296,
            }),
        ],
    );
    // decode_line after it reads nothing either.
    let mut framer = CommandFramer::new(LIMITS);
    let mut buf = BytesMut::from(&b"a1 X {4294967296+}\r\nAQ==\r\n"[..]);
    assert!(matches!(
        framer.decode(&mut buf),
        Err(FramingError::LiteralTooLargeToSkip { .. })
    ));
    buf.extend_from_slice(b"AQ==\r\n");
    assert_eq!(framer.decode_line(&mut buf), Ok(None));
    assert!(buf.is_empty() && !framer.is_idle());
}

#[test]
fn command_too_long_across_literals() {
    let lit = [b'z'; 16];
    let input = [
        b"a1 X {16+}\r\n".as_slice(),
        &lit,
        b"{16+}\r\n",
        &lit,
        b"{16+}\r\n",
        &lit,
        b"\r\na2 NOOP\r\n",
    ]
    .concat();
    check(
        &input,
        &[
            err(FramingError::CommandTooLong { tag: tag("a1") }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
    // Sync literal that would overflow the command: no continuation, BAD.
    let input = [
        b"a1 X {16+}\r\n".as_slice(),
        &lit,
        b"{16+}\r\n",
        &lit,
        b"{16}\r\na2 NOOP\r\n",
    ]
    .concat();
    check(
        &input,
        &[
            err(FramingError::CommandTooLong { tag: tag("a1") }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
    // Many short lines, no long one.
    let input = [
        b"a1 X {1+}\r\n".as_slice(),
        &b"z {1+}\r\n".repeat(12),
        b"z\r\na2 NOOP\r\n",
    ]
    .concat();
    check(
        &input,
        &[
            err(FramingError::CommandTooLong { tag: tag("a1") }),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
}

#[test]
fn default_limits_fit_a_16_kib_token_in_an_authenticate_line() {
    use crate::limits::MAX_AUTH_LINE;
    // A 16 KiB token in an OAUTHBEARER response, base64'd, is at most 23,212 octets; the
    // line may be 24,236 with the command around it, exactly.
    let command = b"a1 AUTHENTICATE OAUTHBEARER ".as_slice();
    let at_limit = [command, &vec![b'Q'; MAX_AUTH_LINE - command.len()], b"\r\n"].concat();
    let events = frame_chunks(Limits::default(), at_limit.chunks(1_500));
    assert_eq!(events, vec![cmd(&at_limit)]);
    // One octet more is refused, once, and the next command is read.
    let over = [
        command,
        &vec![b'Q'; MAX_AUTH_LINE + 1 - command.len()],
        b"\r\na2 NOOP\r\n",
    ]
    .concat();
    let events = frame_chunks(Limits::default(), over.chunks(1_500));
    assert_eq!(
        events,
        vec![
            err(FramingError::LineTooLong { tag: tag("a1") }),
            cmd(b"a2 NOOP\r\n")
        ]
    );
    // A continuation line (after `+ `) has the same bound.
    let line = vec![b'Q'; MAX_AUTH_LINE];
    let input = [&line[..], b"\r\n"].concat();
    assert_eq!(
        lines(Limits::default(), &input),
        vec![Ok(Bytes::from(line))]
    );
    let input = [&vec![b'Q'; MAX_AUTH_LINE + 1][..], b"\r\n"].concat();
    assert_eq!(
        lines(Limits::default(), &input),
        vec![Err(FramingError::LineTooLong { tag: None })]
    );
}

#[test]
fn tag_is_best_effort() {
    check(&[b'x'; 40], &[err(FramingError::LineTooLong { tag: None })]);
    check(
        b"a+b X {99}\r\n",
        &[err(FramingError::LiteralTooLarge { tag: None, len: 99 })],
    );
    check(b"{5}\r\n", &[FramerEvent::ContinuationNeeded(None)]);
}

fn lines(limits: Limits, input: &[u8]) -> Vec<Result<Bytes, FramingError>> {
    let mut framer = CommandFramer::new(limits);
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        match framer.decode_line(&mut buf) {
            Ok(Some(line)) => out.push(Ok(line)),
            Ok(None) => return out,
            Err(e) => out.push(Err(e)),
        }
    }
}

#[test]
fn raw_lines_are_not_imap_strings() {
    let got = lines(LIMITS, b"AQ==\r\n\r\n*\n{5}\r\nabc\r\n");
    let want: Vec<Result<Bytes, FramingError>> = ["AQ==", "", "*", "{5}", "abc"]
        .iter()
        .map(|s| Ok(Bytes::from(*s)))
        .collect();
    assert_eq!(got, want);

    let long = [[b'A'; 40].as_slice(), b"\r\nAQ==\r\n"].concat();
    assert_eq!(
        lines(LIMITS, &long),
        vec![
            Err(FramingError::LineTooLong { tag: None }),
            Ok(Bytes::from("AQ=="))
        ]
    );
    // A raw line's end is never read as a literal announcement, even while discarding.
    let long = [[b'A'; 40].as_slice(), b"{3+}\r\nAQ==\r\n"].concat();
    assert_eq!(
        lines(LIMITS, &long),
        vec![
            Err(FramingError::LineTooLong { tag: None }),
            Ok(Bytes::from("AQ=="))
        ]
    );
}

#[test]
fn authenticate_then_raw_line_then_commands() {
    let input = b"a1 AUTHENTICATE PLAIN\r\nAGEAYg==\r\na2 NOOP\r\n";
    check(
        input,
        &[
            cmd(b"a1 AUTHENTICATE PLAIN\r\n"),
            FramerEvent::Line("AGEAYg==".into()),
            cmd(b"a2 NOOP\r\n"),
        ],
    );
}

#[test]
fn idle_framer_holds_nothing() {
    let mut framer = CommandFramer::new(Limits::default());
    assert!(framer.is_idle());
    let mut buf = BytesMut::from(&b"a1 LOGIN {3}\r\n"[..]);
    assert!(matches!(
        framer.decode(&mut buf),
        Ok(Some(FramedCommand::LiteralContinuationNeeded { .. }))
    ));
    assert!(!framer.is_idle());
    buf.extend_from_slice(b"abc x\r\n");
    assert!(matches!(
        framer.decode(&mut buf),
        Ok(Some(FramedCommand::Complete(_)))
    ));
    assert!(framer.is_idle() && buf.is_empty());
    assert!(std::mem::size_of::<CommandFramer>() <= 64);
}

#[test]
fn caller_shrinking_the_buffer_does_not_panic() {
    let mut framer = CommandFramer::new(LIMITS);
    let mut buf = BytesMut::from(&b"a1 NOOP"[..]);
    assert_eq!(framer.decode(&mut buf), Ok(None));
    buf.clear();
    buf.extend_from_slice(b"a2\r\n");
    assert_eq!(
        framer.decode(&mut buf),
        Ok(Some(FramedCommand::Complete("a2\r\n".into())))
    );
}

/// Random input biased towards the tokens that matter.
fn imap_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"+}".to_vec()),
        Just(b"~{".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b" ".to_vec()),
        Just(b"a1 ".to_vec()),
        Just(b"AUTHENTICATE PLAIN".to_vec()),
        Just(b"\"".to_vec()),
        (0u32..40).prop_map(|n| n.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(b'x'..=b'z', 0..70),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn framing_is_independent_of_read_sizes(input in imap_ish()) {
        imap_framer(&input);
    }

    #[test]
    fn random_bytes_do_not_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        imap_framer(&input);
    }

    #[test]
    fn split_anywhere_gives_the_same_events(input in imap_ish(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in cuts {
            chunks.push(&input[last..c]);
            last = c;
        }
        chunks.push(&input[last..]);
        prop_assert_eq!(frame_chunks(LIMITS, chunks), frame_chunks(LIMITS, [input.as_slice()]));
    }
}

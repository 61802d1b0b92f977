use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::sieve::fuzzing::{frame_chunks, sieve_framer};

const LIMITS: Limits = Limits {
    max_line: 32,
    max_literal: 16,
    max_command: 64,
};

type Event = Result<Bytes, FramingError>;

fn cmd(s: &[u8]) -> Event {
    Ok(Bytes::copy_from_slice(s))
}

/// Framing `input` whole, one octet at a time, and split in two at every boundary all give
/// `want`.
fn check(input: &[u8], want: &[Event]) {
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
    check(b"NOOP\r\n", &[cmd(b"NOOP\r\n")]);
    check(b"NOOP\n", &[cmd(b"NOOP\n")]);
    check(b"\r\n", &[cmd(b"\r\n")]);
    check(
        b"NOOP\r\nCAPABILITY\r\n",
        &[cmd(b"NOOP\r\n"), cmd(b"CAPABILITY\r\n")],
    );
    check(b"NOOP", &[]);
    check(b"NOOP\r", &[]);
}

#[test]
fn braces_that_are_not_literals() {
    check(b"NOOP \"{5+}\" x\r\n", &[cmd(b"NOOP \"{5+}\" x\r\n")]);
    check(b"X {3}x\r\n", &[cmd(b"X {3}x\r\n")]);
    check(b"X {}\r\n", &[cmd(b"X {}\r\n")]);
    check(b"X {+}\r\n", &[cmd(b"X {+}\r\n")]);
}

#[test]
fn literals_cannot_smuggle_a_command() {
    let input = b"AUTHENTICATE \"PLAIN\" {9+}\r\nx\r\nLOGOUT\r\nNOOP\r\n";
    check(input, &[cmd(&input[..input.len() - 6]), cmd(b"NOOP\r\n")]);
}

#[test]
fn synchronizing_literals_are_read_without_continuation() {
    let input = b"AUTHENTICATE {5}\r\nPLAIN {4}\r\nAQ==\r\nNOOP\r\n";
    check(input, &[cmd(&input[..input.len() - 6]), cmd(b"NOOP\r\n")]);
}

#[test]
fn literal_followed_by_more_lines() {
    let input = b"PUTSCRIPT {3+}\r\nfoo {4+}\r\nkeep\r\n";
    check(input, &[cmd(input)]);
    check(b"X {0+}\r\n\r\n", &[cmd(b"X {0+}\r\n\r\n")]);
}

#[test]
fn over_long_line_is_reported_once_and_skipped() {
    let mut input = b"NOOP \"".to_vec();
    input.extend([b'x'; 40]);
    input.extend_from_slice(b"\"\r\nNOOP\r\n");
    check(&input, &[Err(FramingError::LineTooLong), cmd(b"NOOP\r\n")]);
}

#[test]
fn line_limit_does_not_count_the_line_ending() {
    let mut line = vec![b'x'; 32];
    line.extend_from_slice(b"\r\n");
    check(&line, &[cmd(&line)]);
    let mut line = vec![b'x'; 33];
    line.extend_from_slice(b"\r\n");
    check(&line, &[Err(FramingError::LineTooLong)]);
    // A CR that is not followed by LF counts.
    let mut line = vec![b'x'; 32];
    line.extend_from_slice(b"\rx\r\nNOOP\r\n");
    check(&line, &[Err(FramingError::LineTooLong), cmd(b"NOOP\r\n")]);
}

#[test]
fn over_large_literal_is_skipped_whatever_its_form() {
    for announce in ["{17+}", "{17}"] {
        let input = format!("PUTSCRIPT {announce}\r\n{}\r\nNOOP\r\n", "y".repeat(17));
        check(
            input.as_bytes(),
            &[
                Err(FramingError::LiteralTooLarge { len: 17 }),
                cmd(b"NOOP\r\n"),
            ],
        );
    }
}

#[test]
fn literal_up_to_the_command_limit_is_skipped_a_larger_one_ends_the_stream() {
    for announce in ["+", ""] {
        // 64 octets (max_command): skipped, and the session stays in step.
        let input = format!(
            "PUTSCRIPT {{64{announce}}}\r\n{}\r\nNOOP\r\n",
            "y".repeat(64)
        );
        check(
            input.as_bytes(),
            &[
                Err(FramingError::LiteralTooLarge { len: 64 }),
                cmd(b"NOOP\r\n"),
            ],
        );
        // One more: not skipped; everything after it is dropped, however it arrives.
        for len in ["65", "4294967296", "99999999999999999999999"] {
            let input = format!("X {{{len}{announce}}}\r\nNOOP\r\nNOOP\r\n");
            let len = len.parse().unwrap_or(u64::MAX);
            check(
                input.as_bytes(),
                &[Err(FramingError::LiteralTooLargeToSkip { len })],
            );
        }
    }
}

#[test]
fn literal_too_large_to_skip_behind_a_discarded_line_is_reported_too() {
    // The line is over max_line and ends announcing 4 GiB: both are told, in order.
    let mut input = b"X ".to_vec();
    input.extend([b'x'; 40]);
    input.extend_from_slice(b" {4294967296+}\r\nNOOP\r\n");
    check(
        &input,
        &[
            Err(FramingError::LineTooLong),
            Err(FramingError::LiteralTooLargeToSkip { len: 4_294_967_296 }),
        ],
    );
}

#[test]
fn after_a_literal_too_large_to_skip_the_framer_holds_nothing() {
    let mut framer = Framer::new(LIMITS);
    let mut buf = bytes::BytesMut::from(&b"X {4294967296}\r\nNOOP\r\n"[..]);
    assert_eq!(
        framer.decode(&mut buf),
        Err(FramingError::LiteralTooLargeToSkip { len: 4_294_967_296 })
    );
    assert!(buf.is_empty() && !framer.is_idle());
    buf.extend_from_slice(b"NOOP\r\n");
    assert_eq!(framer.decode(&mut buf), Ok(None));
    assert!(buf.is_empty());
}

#[test]
fn whole_command_limit_counts_literals() {
    // Each literal fits, the command does not: 16 + 16 + 16 + 16 + the lines > 64.
    let mut input = Vec::new();
    for _ in 0..4 {
        input.extend_from_slice(b"{16+}\r\n");
        input.extend([b'z'; 16]);
    }
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let mut with_name = b"X ".to_vec();
    with_name.extend_from_slice(&input);
    check(
        &with_name,
        &[Err(FramingError::CommandTooLong), cmd(b"NOOP\r\n")],
    );
}

#[test]
fn discarding_follows_literals_of_the_rejected_command() {
    let mut input = b"X ".to_vec();
    input.extend([b'x'; 40]);
    input.extend_from_slice(b" {4+}\r\n\r\nAB\r\nNOOP\r\n");
    check(&input, &[Err(FramingError::LineTooLong), cmd(b"NOOP\r\n")]);
}

#[test]
fn idle_between_commands() {
    let mut framer = Framer::new(LIMITS);
    let mut buf = bytes::BytesMut::from(&b"X {3+}\r\na"[..]);
    assert_eq!(framer.decode(&mut buf), Ok(None));
    assert!(!framer.is_idle());
    buf.extend_from_slice(b"bc\r\n");
    assert!(framer.decode(&mut buf).is_ok_and(|c| c.is_some()));
    assert!(framer.is_idle());
    assert!(buf.is_empty());
}

#[test]
fn long_quoted_token_fits_default_limits() {
    // sievelib sends a 3 KB token as a quoted string.
    let mut input = b"AUTHENTICATE \"OAUTHBEARER\" \"".to_vec();
    input.extend(std::iter::repeat_n(b'A', 3_000));
    input.extend_from_slice(b"\"\r\n");
    let events = frame_chunks(Limits::default(), input.chunks(100));
    assert_eq!(events, vec![cmd(&input)]);
}

/// Inputs made of ManageSieve-like pieces, so that literals and limits are hit often.
fn sieve_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"NOOP\r\n".to_vec()),
        Just(b"AUTHENTICATE \"PLAIN\" ".to_vec()),
        Just(b"\"quoted\" ".to_vec()),
        Just(b"{3+}\r\n".to_vec()),
        Just(b"{3}\r\n".to_vec()),
        Just(b"{20+}\r\n".to_vec()),
        Just(b"{0}\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(b'x'..=b'z', 0..70),
    ];
    proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn framing_is_independent_of_read_sizes(input in sieve_ish()) {
        sieve_framer(&input);
    }

    #[test]
    fn random_bytes_do_not_panic(input in proptest::collection::vec(any::<u8>(), 0..600)) {
        sieve_framer(&input);
    }

    #[test]
    fn split_anywhere_gives_the_same_events(
        input in sieve_ish(),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
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

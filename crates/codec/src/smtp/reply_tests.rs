use proptest::prelude::*;

use super::*;
use crate::smtp::client::{xtext_decode, xtext_encode};
use crate::smtp::fuzzing::{self, read_replies};

fn lines(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn writer_known_answers() {
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::new(220, None, "mx.example.com ESMTP bearergate ready"),
            "220 mx.example.com ESMTP bearergate ready\r\n",
        ),
        (Reply::new(250, Some((2, 0, 0)), "OK"), "250 2.0.0 OK\r\n"),
        (Reply::new(334, None, ""), "334 \r\n"),
        (Reply::multiline(334, None, Vec::new()), "334 \r\n"),
        (
            Reply::multiline(
                250,
                None,
                lines(&["mx", "PIPELINING", "AUTH OAUTHBEARER XOAUTH2"]),
            ),
            "250-mx\r\n250-PIPELINING\r\n250 AUTH OAUTHBEARER XOAUTH2\r\n",
        ),
        (
            Reply::multiline(535, Some((5, 7, 8)), lines(&["Authentication", "failed"])),
            "535-5.7.8 Authentication\r\n535 5.7.8 failed\r\n",
        ),
        (
            Reply::new(500, Some((5, 5, 2)), "bad\r\n250 injected\0"),
            "500 5.5.2 bad  250 injected \r\n",
        ),
        (Reply::new(99, None, "x"), "451 x\r\n"),
        (Reply::new(250, Some((3, 0, 0)), "x"), "250 x\r\n"),
        (Reply::new(250, Some((2, 1_000, 0)), "x"), "250 x\r\n"),
    ];
    for (reply, want) in cases {
        assert_eq!(String::from_utf8(reply.to_bytes()).unwrap(), want);
    }
    for (code, valid) in [
        (200, true),
        (559, true),
        (260, false),
        (199, false),
        (600, false),
    ] {
        assert_eq!(is_reply_code(code), valid, "{code}");
    }
}

#[test]
fn reply_line_known_answers() {
    let line = |code, last, text: &str| {
        Ok(ReplyLine {
            code,
            last,
            text: text.to_owned(),
        })
    };
    assert_eq!(
        parse_reply_line(b"250-PIPELINING\r\n"),
        line(250, false, "PIPELINING")
    );
    assert_eq!(parse_reply_line(b"250 OK"), line(250, true, "OK"));
    assert_eq!(parse_reply_line(b"334"), line(334, true, ""));
    assert_eq!(parse_reply_line(b"334 "), line(334, true, ""));
    assert_eq!(parse_reply_line(b"250-"), line(250, false, ""));
    for bad in [
        &b""[..],
        b"25",
        b"2500 x",
        b"650 x",
        b"260 x",
        b"abc x",
        b"250x",
    ] {
        assert_eq!(parse_reply_line(bad), Err(ReplyError::Syntax), "{bad:?}");
    }
}

#[test]
fn multi_line_reply_and_ehlo_keywords() {
    let data = b"220 backend ESMTP\r\n250-backend.example\r\n250-PIPELINING\r\n\
        250-SIZE 52428800\r\n250-auth=PLAIN LOGIN\r\n250-AUTH PLAIN LOGIN\r\n\
        250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN\r\n250-8BITMIME\r\n250-bad_kw\r\n\
        250 SMTPUTF8\r\n";
    let out = read_replies(ReplyLimits::default(), [&data[..]]);
    assert_eq!(out.len(), 2);
    let ehlo = out[1].as_ref().unwrap();
    assert_eq!(ehlo.code, 250);
    assert_eq!(ehlo.lines.len(), 9);
    assert_eq!(
        ehlo_keywords(&ehlo.lines),
        vec![
            ("PIPELINING".to_owned(), String::new()),
            ("SIZE".to_owned(), "52428800".to_owned()),
            ("AUTH".to_owned(), "PLAIN LOGIN".to_owned()),
            ("AUTH".to_owned(), "PLAIN LOGIN".to_owned()),
            (
                "XCLIENT".to_owned(),
                "NAME ADDR PORT PROTO HELO LOGIN".to_owned()
            ),
            ("8BITMIME".to_owned(), String::new()),
            ("SMTPUTF8".to_owned(), String::new()),
        ]
    );
}

#[test]
fn enhanced_codes_are_read_from_the_first_line() {
    let response = |code, text: &str| Response {
        code,
        lines: vec![text.to_owned()],
    };
    assert_eq!(response(535, "5.7.8 Nope").enhanced(), Some((5, 7, 8)));
    assert_eq!(response(250, "2.1.10 x").enhanced(), Some((2, 1, 10)));
    assert_eq!(response(250, "5.7.8 x").enhanced(), None);
    assert_eq!(response(250, "2.0 x").enhanced(), None);
    assert_eq!(response(250, "2.0.0.0 x").enhanced(), None);
    assert_eq!(response(250, "2.1000.0 x").enhanced(), None);
    assert_eq!(response(250, "backend").enhanced(), None);
    assert!(response(235, "").is_positive());
    assert_eq!(response(454, "").class(), 4);
}

#[test]
fn code_mismatch_is_reported_and_the_rest_skipped() {
    let data = b"250-a\r\n251-b\r\n250 c\r\n221 bye\r\n";
    assert_eq!(
        read_replies(ReplyLimits::default(), [&data[..]]),
        vec![
            Err(ReplyError::CodeMismatch {
                first: 250,
                then: 251
            }),
            Ok(Response {
                code: 221,
                lines: lines(&["bye"])
            }),
        ]
    );
}

#[test]
fn limits_are_enforced() {
    let limits = ReplyLimits {
        max_line: 12,
        max_lines: 2,
        max_reply: 12,
    };
    let data = b"250-aaaaaaaaaaaaa\r\n250 b\r\n250-1\r\n250-2\r\n250-3\r\n250 4\r\n\
        250-abcdefg\r\n250 efghij\r\n250 ok\r\nnonsense\r\n220 x\r\n";
    assert_eq!(
        read_replies(limits, [&data[..]]),
        vec![
            Err(ReplyError::LineTooLong),
            Err(ReplyError::TooManyLines),
            Err(ReplyError::TooLong),
            Ok(Response {
                code: 250,
                lines: lines(&["ok"])
            }),
            Err(ReplyError::Syntax),
            Ok(Response {
                code: 220,
                lines: lines(&["x"])
            }),
        ]
    );
    // The same, one octet at a time.
    assert_eq!(
        read_replies(limits, data.chunks(1)),
        read_replies(limits, [&data[..]])
    );
}

fn text_line() -> impl Strategy<Value = String> {
    "[ -~\u{e9}\u{4e2d}\r\n\0]{0,60}"
}

proptest! {
    #[test]
    fn replies_round_trip(
        code in (200u16..=599).prop_filter("a reply code", |&c| is_reply_code(c)),
        enhanced in proptest::option::of((prop_oneof![Just(2u8), Just(4), Just(5)], 0u16..=999, 0u16..=999)),
        texts in proptest::collection::vec(text_line(), 1..8),
    ) {
        let reply = Reply::multiline(code, enhanced, texts.clone());
        let written = reply.to_bytes();
        let prefix = enhanced.map(|(c, s, d)| format!("{c}.{s}.{d} ")).unwrap_or_default();
        let want = Response {
            code,
            lines: texts.iter().map(|t| format!("{prefix}{}", t.replace(['\r', '\n', '\0'], " "))).collect(),
        };
        prop_assert_eq!(read_replies(ReplyLimits::default(), [&written[..]]), vec![Ok(want.clone())]);
        if let Some((c, s, d)) = enhanced {
            if c == (code / 100) as u8 {
                prop_assert_eq!(want.enhanced(), Some((c, s, d)));
            }
        }
    }

    #[test]
    fn xtext_round_trips(value in proptest::collection::vec(any::<u8>(), 0..100)) {
        let encoded = xtext_encode(&value);
        prop_assert!(encoded.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'='));
        prop_assert_eq!(xtext_decode(encoded.as_bytes()), Some(value));
    }

    #[test]
    fn random_replies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::smtp_reply(&data);
    }

    #[test]
    fn reply_like_input_never_panics(
        parts in proptest::collection::vec(("[2-5][0-5][0-9]", prop_oneof![Just("-"), Just(" "), Just("")], "[ -~]{0,70}"), 0..12),
    ) {
        let data: String = parts.iter().map(|(c, s, t)| format!("{c}{s}{t}\r\n")).collect();
        fuzzing::smtp_reply(data.as_bytes());
    }
}

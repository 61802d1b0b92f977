use proptest::prelude::*;

use super::*;
use crate::pop3::fuzzing::read_responses;
use crate::pop3::{Expect, Response, ResponseLimits, MAX_RESPONSE_LINE};

fn lines(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn writer_known_answers() {
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::ok("bearergate ready."), "+OK bearergate ready.\r\n"),
        (Reply::ok(""), "+OK\r\n"),
        (
            Reply::err(Some(Code::Auth), "Authentication failed."),
            "-ERR [AUTH] Authentication failed.\r\n",
        ),
        (
            Reply::err(Some(Code::SysTemp), "Try again later."),
            "-ERR [SYS/TEMP] Try again later.\r\n",
        ),
        (
            Reply::err(Some(Code::SysPerm), "Gone."),
            "-ERR [SYS/PERM] Gone.\r\n",
        ),
        (
            Reply::err(Some(Code::InUse), "Locked."),
            "-ERR [IN-USE] Locked.\r\n",
        ),
        (
            Reply::err(Some(Code::LoginDelay), "Wait."),
            "-ERR [LOGIN-DELAY] Wait.\r\n",
        ),
        (Reply::err(Some(Code::Auth), ""), "-ERR [AUTH]\r\n"),
        (
            Reply::err(None, "Authenticate first."),
            "-ERR Authenticate first.\r\n",
        ),
        (
            Reply::err(Some(Code::Other("X/Y".into())), "z"),
            "-ERR [X/Y] z\r\n",
        ),
        // Unwritable codes are left out; text that would read as a code loses its `[`.
        (
            Reply::err(Some(Code::Other("a]b".into())), "z"),
            "-ERR z\r\n",
        ),
        (
            Reply::err(Some(Code::Other("a//b".into())), "[AUTH] z"),
            "-ERR  AUTH] z\r\n",
        ),
        (
            Reply::err(Some(Code::Auth), "[x] y"),
            "-ERR [AUTH] [x] y\r\n",
        ),
        (
            Reply::ok("bad\r\n+OK injected\0"),
            "+OK bad  +OK injected \r\n",
        ),
        (Reply::continuation(""), "+ \r\n"),
        (
            Reply::continuation("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0="),
            "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0=\r\n",
        ),
        (
            Reply::multi_line(
                "Capability list follows",
                lines(&[
                    "STLS",
                    "SASL OAUTHBEARER XOAUTH2",
                    "IMPLEMENTATION bearergate",
                ]),
            ),
            "+OK Capability list follows\r\nSTLS\r\nSASL OAUTHBEARER XOAUTH2\r\n\
             IMPLEMENTATION bearergate\r\n.\r\n",
        ),
        (Reply::multi_line("", Vec::new()), "+OK\r\n.\r\n"),
        // Dot-stuffing (RFC 1939 §3): a line starting with "." gets another.
        (
            Reply::multi_line("x", lines(&[".", "..a", "b.", "\r\n."])),
            "+OK x\r\n..\r\n...a\r\nb.\r\n  .\r\n.\r\n",
        ),
    ];
    for (reply, want) in cases {
        assert_eq!(
            String::from_utf8(reply.to_bytes()).unwrap(),
            want,
            "{reply:?}"
        );
    }
}

#[test]
fn code_names() {
    for (name, code) in [
        ("AUTH", Code::Auth),
        ("auth", Code::Auth),
        ("SYS/TEMP", Code::SysTemp),
        ("Sys/Perm", Code::SysPerm),
        ("IN-USE", Code::InUse),
        ("LOGIN-DELAY", Code::LoginDelay),
        ("UTF8", Code::Other("UTF8".into())),
        ("SYS/TEMP/DISK", Code::Other("SYS/TEMP/DISK".into())),
    ] {
        assert_eq!(Code::from_name(name), Some(code), "{name}");
    }
    for bad in ["", "/", "A/", "/A", "A//B", "A]", "A B", "\u{e9}"] {
        assert_eq!(Code::from_name(bad), None, "{bad:?}");
    }
    assert_eq!(Code::SysTemp.name(), "SYS/TEMP");
}

#[test]
fn the_proxys_own_lines_stay_within_512_octets() {
    let reply = Reply::err(
        Some(Code::SysTemp),
        "Authentication service temporarily unavailable; try again later.",
    );
    assert!(reply.to_bytes().len() <= MAX_RESPONSE_LINE);
}

fn text() -> impl Strategy<Value = String> {
    "[ -~\u{e9}\u{4e2d}\r\n\0]{0,60}"
}

fn code() -> impl Strategy<Value = Code> {
    prop_oneof![
        Just(Code::Auth),
        Just(Code::SysTemp),
        Just(Code::SysPerm),
        Just(Code::InUse),
        Just(Code::LoginDelay),
        "[A-Z0-9-]{1,10}(/[A-Z0-9-]{1,10}){0,2}".prop_filter_map("a known code", |name| {
            Code::from_name(&name).filter(|c| matches!(c, Code::Other(_)))
        }),
    ]
}

/// What the writer makes of a text: CR, LF and NUL as spaces; with no code, a leading `[`
/// as a space.
fn sanitized(text: &str, has_code: bool) -> String {
    let text = text.replace(['\r', '\n', '\0'], " ");
    match text.strip_prefix('[') {
        Some(rest) if !has_code => format!(" {rest}"),
        _ => text,
    }
}

proptest! {
    #[test]
    fn status_lines_round_trip(ok in any::<bool>(), code in proptest::option::of(code()), text in text()) {
        let status = if ok { Status::Ok } else { Status::Err };
        let reply = Reply::Status(StatusLine { status, code: code.clone(), text: text.clone() });
        let written = reply.to_bytes();
        let want = StatusLine { status, text: sanitized(&text, code.is_some()), code };
        prop_assert_eq!(
            read_responses(ResponseLimits::default(), Expect::SingleLine, [&written[..]]),
            vec![Ok(Response::Status(want))]
        );
    }

    #[test]
    fn multi_line_replies_round_trip(text in text(), body in proptest::collection::vec(text(), 0..10)) {
        let written = Reply::multi_line(text.clone(), body.clone()).to_bytes();
        let want = Response::MultiLine {
            status: StatusLine { status: Status::Ok, code: None, text: sanitized(&text, false) },
            lines: body.iter().map(|l| l.replace(['\r', '\n', '\0'], " ")).collect(),
        };
        prop_assert_eq!(
            read_responses(ResponseLimits::default(), Expect::MultiLine, [&written[..]]),
            vec![Ok(want)]
        );
    }

    #[test]
    fn continuations_round_trip(base64 in "[A-Za-z0-9+/]{0,200}={0,2}") {
        let written = Reply::continuation(base64.clone()).to_bytes();
        for expect in [Expect::SingleLine, Expect::MultiLine] {
            prop_assert_eq!(
                read_responses(ResponseLimits::default(), expect, [&written[..]]),
                vec![Ok(Response::Continuation(base64.clone()))]
            );
        }
    }
}

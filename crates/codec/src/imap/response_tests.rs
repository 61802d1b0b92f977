use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::fuzzing::imap_response;
use crate::imap::{FramingError, ResponseFramer};

fn caps(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn reply_known_answers() {
    let pre_tls = caps(&[
        "IMAP4rev1",
        "SASL-IR",
        "ID",
        "LITERAL+",
        "STARTTLS",
        "LOGINDISABLED",
    ]);
    let cases: Vec<(Reply, &[u8])> = vec![
        (
            Reply::greeting(pre_tls.clone(), "Proxy ready."),
            b"* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ STARTTLS LOGINDISABLED] Proxy ready.\r\n",
        ),
        (
            Reply::Capability(caps(&["IMAP4rev1", "AUTH=OAUTHBEARER", "AUTH=XOAUTH2"])),
            b"* CAPABILITY IMAP4rev1 AUTH=OAUTHBEARER AUTH=XOAUTH2\r\n",
        ),
        (Reply::Capability(caps(&["IMAP4rev1", "BAD CAP", "", "X]"])), b"* CAPABILITY IMAP4rev1\r\n"),
        (
            Reply::tagged("a1", Status::No, Some(Code::AuthenticationFailed), "Authentication failed."),
            b"a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
        ),
        (
            Reply::tagged("a1", Status::Ok, Some(Code::Capability(caps(&["IMAP4rev1", "IDLE"]))), "Logged in"),
            b"a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
        ),
        (Reply::tagged("a1", Status::Ok, None, ""), b"a1 OK\r\n"),
        (Reply::tagged("a+1", Status::Bad, None, "Bad tag"), b"* BAD Bad tag\r\n"),
        (Reply::tagged("", Status::Bad, None, "x"), b"* BAD x\r\n"),
        (
            Reply::tagged("a1", Status::Bad, Some(Code::TooBig), "Literal\r\n* OK hi"),
            b"a1 BAD [TOOBIG] Literal  * OK hi\r\n",
        ),
        (
            Reply::Untagged { status: Status::Bad, code: Some(Code::Alert), text: "Plaintext".into() },
            b"* BAD [ALERT] Plaintext\r\n",
        ),
        (Reply::Bye { code: None, text: "Logging out".into() }, b"* BYE Logging out\r\n"),
        (
            Reply::Bye { code: Some(Code::Unavailable), text: "IdP down".into() },
            b"* BYE [UNAVAILABLE] IdP down\r\n",
        ),
        (Reply::Id(None), b"* ID NIL\r\n"),
        (Reply::Id(Some(vec![])), b"* ID NIL\r\n"),
        (
            Reply::Id(Some(vec![
                ("name".into(), Some("bearer\"gate\\".into())),
                ("version".into(), None),
                ("x".into(), Some("a\r\nb".into())),
            ])),
            b"* ID (\"name\" \"bearer\\\"gate\\\\\" \"version\" NIL \"x\" {4}\r\na\r\nb)\r\n",
        ),
        (Reply::Continue(Continuation::Empty), b"+ \r\n"),
        (Reply::Continue(Continuation::Text(String::new())), b"+ \r\n"),
        (Reply::Continue(Continuation::Text("Ready for literal data".into())), b"+ Ready for literal data\r\n"),
        (Reply::Continue(Continuation::Base64(Bytes::from("eyJzdGF0dXMiOiI0MDEifQ=="))), b"+ eyJzdGF0dXMiOiI0MDEifQ==\r\n"),
    ];
    for (reply, want) in cases {
        assert_eq!(reply.to_bytes(), want, "{reply:?}");
    }
}

#[test]
fn every_code_writes_and_parses_back() {
    let codes = [
        Code::Alert,
        Code::AuthenticationFailed,
        Code::AuthorizationFailed,
        Code::Expired,
        Code::PrivacyRequired,
        Code::Unavailable,
        Code::ContactAdmin,
        Code::ClientBug,
        Code::ServerBug,
        Code::Limit,
        Code::TooBig,
        Code::Capability(caps(&["IMAP4rev1"])),
        Code::Capability(vec![]),
        Code::Other {
            name: "REFERRAL".into(),
            arg: Some("imap://x/".into()),
        },
        Code::Other {
            name: "X-FOO".into(),
            arg: None,
        },
    ];
    for code in codes {
        let reply = Reply::tagged("t", Status::No, Some(code.clone()), "text");
        let parsed = parse_response(&reply.to_bytes());
        let want = Response::Tagged {
            tag: "t".into(),
            status: Status::No,
            code: Some(code),
            text: "text".into(),
        };
        assert_eq!(parsed, Ok(want));
    }
}

#[test]
fn response_known_answers() {
    let dovecot = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n";
    let cases: Vec<(&[u8], Result<Response, ParseError>)> = vec![
        (
            dovecot,
            Ok(Response::Untagged {
                status: Status::Ok,
                code: Some(Code::Capability(caps(&[
                    "IMAP4rev1",
                    "SASL-IR",
                    "LOGIN-REFERRALS",
                    "ID",
                    "ENABLE",
                    "IDLE",
                    "LITERAL+",
                    "AUTH=PLAIN",
                ]))),
                text: "Dovecot ready.".into(),
            }),
        ),
        (
            b"* PREAUTH ready",
            Ok(Response::PreAuth {
                code: None,
                text: "ready".into(),
            }),
        ),
        (
            b"* BYE [UNAVAILABLE] shutting down\r\n",
            Ok(Response::Bye {
                code: Some(Code::Unavailable),
                text: "shutting down".into(),
            }),
        ),
        (
            b"* BYE",
            Ok(Response::Bye {
                code: None,
                text: String::new(),
            }),
        ),
        (
            b"* capability IMAP4rev1 STARTTLS\r\n",
            Ok(Response::Capability(caps(&["IMAP4rev1", "STARTTLS"]))),
        ),
        (b"+ \r\n", Ok(Response::Continue(Bytes::new()))),
        (b"+\r\n", Ok(Response::Continue(Bytes::new()))),
        (
            b"+ eyJzIjoiNDAxIn0=",
            Ok(Response::Continue(Bytes::from("eyJzIjoiNDAxIn0="))),
        ),
        (
            b"b1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in\r\n",
            Ok(Response::Tagged {
                tag: "b1".into(),
                status: Status::Ok,
                code: Some(Code::Capability(caps(&["IMAP4rev1", "IDLE"]))),
                text: "Logged in".into(),
            }),
        ),
        (
            b"b1 no [authenticationfailed] Authentication failed.",
            Ok(Response::Tagged {
                tag: "b1".into(),
                status: Status::No,
                code: Some(Code::AuthenticationFailed),
                text: "Authentication failed.".into(),
            }),
        ),
        (
            b"b1 BAD [not a code",
            Ok(Response::Tagged {
                tag: "b1".into(),
                status: Status::Bad,
                code: None,
                text: "[not a code".into(),
            }),
        ),
        (
            b"* ID (\"name\" \"Dovecot\")",
            Ok(Response::Data("ID (\"name\" \"Dovecot\")".into())),
        ),
        (b"* OKAY", Ok(Response::Data("OKAY".into()))),
        (b"* CAPABILITYX", Ok(Response::Data("CAPABILITYX".into()))),
        (
            b"b1 OKAY",
            Err(ParseError::Syntax {
                tag: Some("b1".into()),
                rule: "response-tagged",
            }),
        ),
        (
            b"b1 OK a\0b",
            Err(ParseError::Syntax {
                tag: Some("b1".into()),
                rule: "response-tagged",
            }),
        ),
        (
            b"* ID {5}\r\n",
            Err(ParseError::UnexpectedLiteral { tag: None }),
        ),
        (
            b"b1 OK {5+}",
            Err(ParseError::UnexpectedLiteral {
                tag: Some("b1".into()),
            }),
        ),
        (b"", Err(ParseError::Tag)),
        (b"b+1 OK", Err(ParseError::Tag)),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_response(input),
            want,
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    let greeting = parse_response(dovecot).unwrap();
    assert_eq!(greeting.capabilities().map(<[String]>::len), Some(8));
    assert_eq!(parse_response(b"b1 OK done").unwrap().capabilities(), None);
}

#[test]
fn response_framer_bounds_lines() {
    let mut framer = ResponseFramer::new(10);
    let mut buf = BytesMut::from(&b"* OK hi\r\n* OK this is far too long\r\n+ \r\n* BYE"[..]);
    assert_eq!(framer.decode(&mut buf), Ok(Some(Bytes::from("* OK hi"))));
    assert_eq!(
        framer.decode(&mut buf),
        Err(FramingError::LineTooLong { tag: None })
    );
    assert_eq!(framer.decode(&mut buf), Ok(Some(Bytes::from("+ "))));
    assert_eq!(framer.decode(&mut buf), Ok(None));
    buf.extend_from_slice(b"\n");
    assert_eq!(framer.decode(&mut buf), Ok(Some(Bytes::from("* BYE"))));

    // Long line arriving in pieces: reported once, the rest discarded.
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in [&b"* OK 0123456789"[..], b"abcdef", b"ghi\r\n* OK x\r\n"] {
        buf.extend_from_slice(chunk);
        while let Some(e) = framer.decode(&mut buf).transpose() {
            events.push(e);
        }
    }
    assert_eq!(
        events,
        vec![
            Err(FramingError::LineTooLong { tag: None }),
            Ok(Bytes::from("* OK x"))
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn response_parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        imap_response(&input);
    }

    #[test]
    fn responseish_lines_round_trip(
        head in prop_oneof![Just("* "), Just("b1 "), Just("+ ")],
        words in proptest::collection::vec(prop_oneof![
            Just("OK".to_owned()), Just("NO".to_owned()), Just("BYE".to_owned()),
            Just("CAPABILITY".to_owned()), Just("[".to_owned()), Just("]".to_owned()),
            Just(" ".to_owned()), Just("ALERT".to_owned()), "[A-Za-z0-9=+.-]{0,8}",
        ], 0..10),
    ) {
        imap_response(format!("{head}{}\r\n", words.concat()).as_bytes());
    }
}

use proptest::prelude::*;

use super::*;
use crate::pop3::fuzzing::{self, read_responses};

fn status(status: Status, code: Option<Code>, text: &str) -> StatusLine {
    StatusLine {
        status,
        code,
        text: text.to_owned(),
    }
}

fn ok(text: &str) -> StatusLine {
    status(Status::Ok, None, text)
}

fn lines(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn reply_line_known_answers() {
    let table: Vec<(&[u8], Result<ReplyLine, ResponseError>)> = vec![
        (
            b"+OK Dovecot ready.\r\n",
            Ok(ReplyLine::Status(ok("Dovecot ready."))),
        ),
        (b"+OK", Ok(ReplyLine::Status(ok("")))),
        (b"+OK ", Ok(ReplyLine::Status(ok("")))),
        (b"+ok logged in", Ok(ReplyLine::Status(ok("logged in")))),
        (
            b"-ERR [AUTH] Authentication failed.\r\n",
            Ok(ReplyLine::Status(status(
                Status::Err,
                Some(Code::Auth),
                "Authentication failed.",
            ))),
        ),
        (
            b"-ERR [SYS/TEMP] Try later",
            Ok(ReplyLine::Status(status(
                Status::Err,
                Some(Code::SysTemp),
                "Try later",
            ))),
        ),
        (
            b"-ERR [IN-USE]",
            Ok(ReplyLine::Status(status(
                Status::Err,
                Some(Code::InUse),
                "",
            ))),
        ),
        (
            b"-ERR [LOGIN-DELAY]wait",
            Ok(ReplyLine::Status(status(
                Status::Err,
                Some(Code::LoginDelay),
                "wait",
            ))),
        ),
        (
            b"-ERR [not a code] x",
            Ok(ReplyLine::Status(status(
                Status::Err,
                None,
                "[not a code] x",
            ))),
        ),
        (
            b"-ERR [unclosed",
            Ok(ReplyLine::Status(status(Status::Err, None, "[unclosed"))),
        ),
        (
            b"-ERR [A//B] x",
            Ok(ReplyLine::Status(status(Status::Err, None, "[A//B] x"))),
        ),
        (
            b"-ERR",
            Ok(ReplyLine::Status(status(Status::Err, None, ""))),
        ),
        (b"+ ", Ok(ReplyLine::Continuation(String::new()))),
        (b"+", Ok(ReplyLine::Continuation(String::new()))),
        (
            b"+ VXNlcm5hbWU6\r\n",
            Ok(ReplyLine::Continuation("VXNlcm5hbWU6".into())),
        ),
        (b"", Err(ResponseError::Syntax)),
        (b"+OKAY", Err(ResponseError::Syntax)),
        (b"-ERROR x", Err(ResponseError::Syntax)),
        (b"+x", Err(ResponseError::Syntax)),
        (b"OK", Err(ResponseError::Syntax)),
        (b"* OK IMAP", Err(ResponseError::Syntax)),
    ];
    for (line, want) in table {
        assert_eq!(
            parse_reply_line(line),
            want,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
    // A status line alone: a continuation is not one.
    assert_eq!(parse_status_line(b"+ abc"), Err(ResponseError::Syntax));
}

/// Dovecot 2.3's pop3-login answer to CAPA before STLS.
const DOVECOT_CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\n\
    AUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n";

#[test]
fn capa_reply_and_its_keywords() {
    let out = read_responses(ResponseLimits::default(), Expect::MultiLine, [DOVECOT_CAPA]);
    let [Ok(Response::MultiLine {
        status,
        lines: capa,
    })] = &out[..]
    else {
        panic!("{out:?}");
    };
    assert_eq!(status, &ok(""));
    assert_eq!(
        capa_keywords(capa),
        vec![
            ("CAPA".to_owned(), vec![]),
            ("TOP".to_owned(), vec![]),
            ("UIDL".to_owned(), vec![]),
            ("RESP-CODES".to_owned(), vec![]),
            ("PIPELINING".to_owned(), vec![]),
            ("AUTH-RESP-CODE".to_owned(), vec![]),
            ("STLS".to_owned(), vec![]),
            ("USER".to_owned(), vec![]),
            (
                "SASL".to_owned(),
                vec!["PLAIN".to_owned(), "LOGIN".to_owned()]
            ),
        ]
    );
    // One octet at a time, the same.
    assert_eq!(
        read_responses(
            ResponseLimits::default(),
            Expect::MultiLine,
            DOVECOT_CAPA.chunks(1)
        ),
        out
    );
    let odd = lines(&[
        "",
        "x.y",
        "expire  NEVER  ",
        "\u{e9}t\u{e9}",
        "LOGIN-DELAY 900",
    ]);
    assert_eq!(
        capa_keywords(&odd),
        vec![
            ("EXPIRE".to_owned(), vec!["NEVER".to_owned()]),
            ("LOGIN-DELAY".to_owned(), vec!["900".to_owned()]),
        ]
    );
}

#[test]
fn multi_line_is_unstuffed_and_only_opened_by_ok() {
    let data = b"+OK list\r\n..hidden\r\n.\r\n-ERR [AUTH] nope\r\n+ \r\n";
    assert_eq!(
        read_responses(ResponseLimits::default(), Expect::MultiLine, [&data[..]]),
        vec![
            Ok(Response::MultiLine {
                status: ok("list"),
                lines: lines(&[".hidden"]),
            }),
            Ok(Response::Status(status(
                Status::Err,
                Some(Code::Auth),
                "nope"
            ))),
            Ok(Response::Continuation(String::new())),
        ]
    );
    // Expecting one line, the same bytes are five replies.
    let out = read_responses(ResponseLimits::default(), Expect::SingleLine, [&data[..]]);
    assert_eq!(out.len(), 5);
    assert_eq!(out[0], Ok(Response::Status(ok("list"))));
    assert_eq!(out[1], Err(ResponseError::Syntax));
}

#[test]
fn an_open_multi_line_reply_is_finished_whatever_is_expected_next() {
    let mut framer = ResponseFramer::new(ResponseLimits::default());
    let mut buf = BytesMut::from(&b"+OK\r\nTOP\r\n"[..]);
    assert_eq!(framer.decode(&mut buf, Expect::MultiLine), Ok(None));
    buf.extend_from_slice(b".\r\n+OK bye\r\n");
    assert_eq!(
        framer.decode(&mut buf, Expect::SingleLine),
        Ok(Some(Response::MultiLine {
            status: ok(""),
            lines: lines(&["TOP"]),
        }))
    );
    assert_eq!(
        framer.decode(&mut buf, Expect::SingleLine),
        Ok(Some(Response::Status(ok("bye"))))
    );
}

#[test]
fn limits_are_enforced_and_the_broken_reply_skipped() {
    let limits = ResponseLimits {
        max_line: 12,
        max_lines: 2,
        max_reply: 8,
    };
    let data = b"+OK aaaaaaaaaaaaa\r\nskipped\r\n.\r\n\
        +OK\r\n1\r\n2\r\n3\r\n.\r\n\
        +OK\r\nabcdef\r\nghij\r\n.\r\n\
        +OK\r\nx\r\nyyyyyyyyyyyyy\r\nz\r\n.\r\n\
        -ERR aaaaaaaaaaaaa\r\n+OK ok\r\n.\r\nnonsense\r\n+OK fine\r\n.\r\n";
    let want = vec![
        Err(ResponseError::LineTooLong),
        Err(ResponseError::TooManyLines),
        Err(ResponseError::TooLong),
        Err(ResponseError::LineTooLong),
        // An over-long -ERR opens nothing: the next reply is read as usual.
        Err(ResponseError::LineTooLong),
        Ok(Response::MultiLine {
            status: ok("ok"),
            lines: Vec::new(),
        }),
        Err(ResponseError::Syntax),
        Ok(Response::MultiLine {
            status: ok("fine"),
            lines: Vec::new(),
        }),
    ];
    assert_eq!(read_responses(limits, Expect::MultiLine, [&data[..]]), want);
    assert_eq!(
        read_responses(limits, Expect::MultiLine, data.chunks(1)),
        want
    );
    assert_eq!(
        read_responses(limits, Expect::MultiLine, data.chunks(5)),
        want
    );
}

proptest! {
    #[test]
    fn random_replies_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        fuzzing::pop3_reply(&data);
    }

    #[test]
    fn reply_like_input_never_panics(
        parts in proptest::collection::vec(
            (prop_oneof![Just("+OK"), Just("-ERR"), Just("+"), Just("."), Just("..x"), Just("")],
             prop_oneof![Just(" "), Just(""), Just(" [AUTH] "), Just(" [SYS/TEMP]")],
             "[ -~]{0,70}"),
            0..12),
    ) {
        let data: String = parts.iter().map(|(s, c, t)| format!("{s}{c}{t}\r\n")).collect();
        fuzzing::pop3_reply(data.as_bytes());
    }
}

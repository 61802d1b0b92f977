use proptest::prelude::*;

use super::*;
use crate::smtp::client::{write_auth, write_ehlo};
use crate::smtp::fuzzing;

/// RFC 7628 §4.1, the SMTP example's initial response (`port=587`).
const RFC7628_SMTP: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";

fn auth(mechanism: &str, ir: Option<InitialResponse>) -> Command {
    Command::Auth {
        mechanism: mechanism.to_owned(),
        initial_response: ir,
    }
}

#[test]
fn known_answers() {
    let b64 = |s: &'static str| Some(InitialResponse::Base64(s.into()));
    let table: Vec<(&[u8], Result<Command, ParseError>)> = vec![
        (
            b"EHLO client.example.org\r\n",
            Ok(Command::Ehlo("client.example.org".into())),
        ),
        (b"ehlo [192.0.2.1]", Ok(Command::Ehlo("[192.0.2.1]".into()))),
        (
            b"EHLO [IPv6:2001:db8::1]\n",
            Ok(Command::Ehlo("[IPv6:2001:db8::1]".into())),
        ),
        (b"EHLO my_pc \r\n", Ok(Command::Ehlo("my_pc".into()))),
        (b"Helo localhost\r\n", Ok(Command::Helo("localhost".into()))),
        (b"EHLO\r\n", Err(ParseError::Syntax { rule: "ehlo" })),
        (b"EHLO a b\r\n", Err(ParseError::Syntax { rule: "ehlo" })),
        (
            b"EHLO a\xc3\xa9\r\n",
            Err(ParseError::Syntax { rule: "ehlo" }),
        ),
        (b"EHLO [a[b]\r\n", Err(ParseError::Syntax { rule: "ehlo" })),
        (b"EHLO []\r\n", Err(ParseError::Syntax { rule: "ehlo" })),
        (b"HELO\r\n", Err(ParseError::Syntax { rule: "helo" })),
        (b"STARTTLS\r\n", Ok(Command::StartTls)),
        (b"starttls  \r\n", Ok(Command::StartTls)),
        (
            b"STARTTLS now\r\n",
            Err(ParseError::Syntax { rule: "starttls" }),
        ),
        (b"AUTH XOAUTH2\r\n", Ok(auth("XOAUTH2", None))),
        (
            b"auth xoauth2 =\r\n",
            Ok(auth("XOAUTH2", Some(InitialResponse::Empty))),
        ),
        (
            b"AUTH PLAIN AGEAYg==\r\n",
            Ok(auth("PLAIN", b64("AGEAYg=="))),
        ),
        (
            b"AUTH OAUTHBEARER AQ\r\n",
            Ok(auth("OAUTHBEARER", b64("AQ"))),
        ),
        (b"AUTH\r\n", Err(ParseError::Syntax { rule: "auth" })),
        (b"AUTH X.Y\r\n", Err(ParseError::Syntax { rule: "auth" })),
        (
            b"AUTH ABCDEFGHIJKLMNOPQRSTU\r\n",
            Err(ParseError::Syntax { rule: "auth" }),
        ),
        (
            b"AUTH PLAIN a b\r\n",
            Err(ParseError::Syntax { rule: "auth" }),
        ),
        (
            b"AUTH PLAIN a!b\r\n",
            Err(ParseError::Syntax {
                rule: "initial-response",
            }),
        ),
        (
            b"AUTH PLAIN a===\r\n",
            Err(ParseError::Syntax {
                rule: "initial-response",
            }),
        ),
        (
            b"AUTH PLAIN *\r\n",
            Err(ParseError::Syntax {
                rule: "initial-response",
            }),
        ),
        (b"MAIL FROM:<a@example.com>\r\n", Ok(Command::Mail)),
        (b"rcpt TO:<b@example.com>\r\n", Ok(Command::Rcpt)),
        (b"DATA\r\n", Ok(Command::Data)),
        (b"BDAT 100 LAST\r\n", Ok(Command::Bdat)),
        (b"RSET\r\n", Ok(Command::Rset)),
        (b"NOOP hello\r\n", Ok(Command::Noop)),
        (b"QUIT\r\n", Ok(Command::Quit)),
        (b"HELP\r\n", Ok(Command::Help)),
        (b"VRFY alice\r\n", Ok(Command::Vrfy)),
        (b"EXPN staff\r\n", Ok(Command::Expn)),
        (
            b"XCLIENT ADDR=1.2.3.4\r\n",
            Ok(Command::Other("XCLIENT".into())),
        ),
        (b"ehlox a\r\n", Ok(Command::Other("EHLOX".into()))),
        (b"GET / HTTP/1.1\r\n", Ok(Command::Other("GET".into()))),
        (b"\r\n", Err(ParseError::Empty)),
        (b"   \r\n", Err(ParseError::Empty)),
        (b" NOOP\r\n", Err(ParseError::Syntax { rule: "command" })),
    ];
    for (line, want) in table {
        assert_eq!(
            parse_command(line),
            want,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn rfc7628_smtp_initial_response_is_kept_as_sent() {
    let line = format!("AUTH OAUTHBEARER {RFC7628_SMTP}\r\n");
    assert_eq!(
        parse_command(line.as_bytes()),
        Ok(auth(
            "OAUTHBEARER",
            Some(InitialResponse::Base64(RFC7628_SMTP.into()))
        ))
    );
}

#[test]
fn other_verb_is_bounded() {
    let line = format!("{} x\r\n", "Z".repeat(1_000));
    assert_eq!(
        parse_command(line.as_bytes()),
        Ok(Command::Other("Z".repeat(32)))
    );
}

#[test]
fn debug_never_shows_the_initial_response() {
    let line = format!("AUTH OAUTHBEARER {RFC7628_SMTP}\r\n");
    let command = parse_command(line.as_bytes()).unwrap();
    let debug = format!("{command:?}");
    assert!(!debug.contains(RFC7628_SMTP), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_.-]{1,64}", "\\[[!-Z^-~]{1,40}\\]",]
}

proptest! {
    #[test]
    fn ehlo_round_trips(name in domain()) {
        let mut out = Vec::new();
        write_ehlo(&mut out, &name).unwrap();
        prop_assert_eq!(parse_command(&out), Ok(Command::Ehlo(name)));
    }

    #[test]
    fn auth_round_trips(
        mechanism in "[A-Z0-9_-]{1,20}",
        ir in proptest::option::of(prop_oneof![
            Just(InitialResponse::Empty),
            "[A-Za-z0-9+/]{1,200}={0,2}".prop_map(|s| InitialResponse::Base64(s.into())),
        ]),
    ) {
        let mut out = Vec::new();
        write_auth(&mut out, &mechanism, ir.as_ref()).unwrap();
        prop_assert_eq!(parse_command(&out), Ok(auth(&mechanism, ir)));
    }

    #[test]
    fn random_lines_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::smtp_command(&data);
        fuzzing::smtp_framer(&data);
    }

    #[test]
    fn command_like_lines_never_panic(
        verb in prop_oneof![Just("EHLO"), Just("AUTH"), Just("helo"), Just("STARTTLS"), Just("x")],
        rest in "[ -~]{0,80}",
    ) {
        let line = format!("{verb} {rest}\r\n");
        fuzzing::smtp_command(line.as_bytes());
        fuzzing::smtp_framer(line.repeat(3).as_bytes());
    }
}

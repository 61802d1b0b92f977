use proptest::prelude::*;

use super::*;
use crate::sieve::client;
use crate::sieve::fuzzing::sieve_command;

fn ir(s: &str) -> Option<InitialResponse> {
    Some(InitialResponse::Base64(Bytes::copy_from_slice(
        s.as_bytes(),
    )))
}

fn auth(mechanism: &str, initial_response: Option<InitialResponse>) -> Command {
    Command::Authenticate {
        mechanism: mechanism.to_owned(),
        initial_response,
    }
}

#[test]
fn known_answers() {
    let syntax = |rule| Err(ParseError::Syntax { rule });
    let cases: Vec<(&[u8], Result<Command, ParseError>)> = vec![
        (b"CAPABILITY\r\n", Ok(Command::Capability)),
        (b"capability\n", Ok(Command::Capability)),
        (b"StartTls\r\n", Ok(Command::StartTls)),
        (b"LOGOUT\r\n", Ok(Command::Logout)),
        (b"UNAUTHENTICATE\r\n", Ok(Command::Unauthenticate)),
        (b"NOOP\r\n", Ok(Command::Noop { tag: None })),
        (
            b"NOOP \"STARTTLS-SYNC-42\"\r\n",
            Ok(Command::Noop {
                tag: Some("STARTTLS-SYNC-42".to_owned()),
            }),
        ),
        (
            b"NOOP {3+}\r\na\"b\r\n",
            Ok(Command::Noop {
                tag: Some("a\"b".to_owned()),
            }),
        ),
        (
            b"AUTHENTICATE \"OAUTHBEARER\"\r\n",
            Ok(auth("OAUTHBEARER", None)),
        ),
        (
            b"authenticate \"xoauth2\" \"dXNlcj0=\"\r\n",
            Ok(auth("XOAUTH2", ir("dXNlcj0="))),
        ),
        (
            b"AUTHENTICATE \"OAUTHBEARER\" \"\"\r\n",
            Ok(auth("OAUTHBEARER", Some(InitialResponse::Empty))),
        ),
        (
            b"AUTHENTICATE \"PLAIN\" {0+}\r\n\r\n",
            Ok(auth("PLAIN", Some(InitialResponse::Empty))),
        ),
        (
            b"AUTHENTICATE {11+}\r\nOAUTHBEARER {8+}\r\nbiwsAQE=\r\n",
            Ok(auth("OAUTHBEARER", ir("biwsAQE="))),
        ),
        (
            b"AUTHENTICATE \"PLAIN\" {4}\r\nAQ==\r\n",
            Ok(auth("PLAIN", ir("AQ=="))),
        ),
        (
            b"PUTSCRIPT \"x\" {3+}\r\nfoo\r\n",
            Ok(Command::Other {
                name: "PUTSCRIPT".into(),
            }),
        ),
        (
            b"listscripts\r\n",
            Ok(Command::Other {
                name: "LISTSCRIPTS".into(),
            }),
        ),
        (b"\r\n", syntax("command")),
        (b" NOOP\r\n", syntax("command")),
        (b"\"NOOP\"\r\n", syntax("command")),
        (b"CAPABILITY now\r\n", syntax("capability")),
        (b"LOGOUT\r\nLOGOUT\r\n", syntax("logout")),
        (b"NOOP tag\r\n", syntax("noop")),
        (b"NOOP \"a\" \"b\"\r\n", syntax("noop")),
        (b"NOOP {1+}\r\n\xff\r\n", syntax("noop")),
        (b"AUTHENTICATE OAUTHBEARER\r\n", syntax("authenticate")),
        (b"AUTHENTICATE \"PLAIN\" AQ==\r\n", syntax("authenticate")),
        (
            b"AUTHENTICATE \"PLAIN\" \"a\" \"b\"\r\n",
            syntax("authenticate"),
        ),
        (
            b"AUTHENTICATE \"PLAIN\" {6+}\r\nAQ==\r\n",
            syntax("authenticate"),
        ),
        (b"AUTHENTICATE\r\n", syntax("authenticate")),
        (b"NOOP", syntax("noop")),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_command(input),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn long_quoted_initial_response_is_accepted() {
    // sievelib: the whole OAUTHBEARER response as one quoted string, over 1024 octets.
    let token = "A".repeat(2_000);
    let line = format!("AUTHENTICATE \"OAUTHBEARER\" \"{token}\"\r\n");
    assert_eq!(
        parse_command(line.as_bytes()),
        Ok(auth("OAUTHBEARER", ir(&token)))
    );
}

#[test]
fn sasl_response_known_answers() {
    let base64 = |s: &[u8]| Ok(SaslResponse::Base64(Bytes::copy_from_slice(s)));
    let syntax = Err(ParseError::Syntax {
        rule: "sasl-response",
    });
    let cases: Vec<(&[u8], Result<SaslResponse, ParseError>)> = vec![
        (b"\"AQ==\"\r\n", base64(b"AQ==")),
        (b"{4+}\r\nAQ==\r\n", base64(b"AQ==")),
        (b"{4}\r\nAQ==\n", base64(b"AQ==")),
        (b"\"\"\r\n", Ok(SaslResponse::Empty)),
        (b"{0+}\r\n\r\n", Ok(SaslResponse::Empty)),
        (b"\"*\"\r\n", Ok(SaslResponse::Cancel)),
        (b"\"not base64!\"\r\n", base64(b"not base64!")),
        (b"*\r\n", syntax.clone()),
        (b"AQ==\r\n", syntax.clone()),
        (b"\r\n", syntax.clone()),
        (b"\"AQ==\" \"x\"\r\n", syntax.clone()),
        (b"\"AQ==\"", syntax),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_sasl_response(input),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn debug_never_shows_the_initial_response() {
    let secret = "bixhPWFsaWNlLAFhdXRoPUJlYXJlciBTRUNSRVQBAQ==";
    let line = format!("AUTHENTICATE \"OAUTHBEARER\" \"{secret}\"\r\n");
    let command = parse_command(line.as_bytes()).expect("parses");
    let debug = format!("{command:?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
    let response = parse_sasl_response(format!("\"{secret}\"\r\n").as_bytes()).expect("parses");
    let debug = format!("{response:?}");
    assert!(!debug.contains(secret), "{debug}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn authenticate_round_trips(
        mechanism in "[A-Z0-9_-]{1,20}",
        initial_response in proptest::option::of("[A-Za-z0-9+/]{0,1500}={0,2}"),
    ) {
        let mut out = Vec::new();
        client::write_authenticate(&mut out, &mechanism, initial_response.as_deref().map(str::as_bytes))
            .expect("valid input");
        let want = auth(&mechanism, initial_response.map(|ir| {
            if ir.is_empty() { InitialResponse::Empty } else { InitialResponse::Base64(Bytes::from(ir)) }
        }));
        prop_assert_eq!(parse_command(&out), Ok(want));
    }

    #[test]
    fn sasl_response_round_trips(response in "[A-Za-z0-9+/]{0,1500}={0,2}") {
        let mut out = Vec::new();
        client::write_sasl_response(&mut out, response.as_bytes()).expect("valid input");
        let want = if response.is_empty() {
            SaslResponse::Empty
        } else {
            SaslResponse::Base64(Bytes::from(response))
        };
        prop_assert_eq!(parse_sasl_response(&out), Ok(want));
    }

    #[test]
    fn noop_tag_round_trips(tag in "\\PC{0,40}") {
        let mut out = Vec::new();
        client::write_noop(&mut out, Some(&tag));
        prop_assert_eq!(parse_command(&out), Ok(Command::Noop { tag: Some(tag) }));
    }

    #[test]
    fn random_commands_do_not_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        sieve_command(&input);
    }
}

use proptest::prelude::*;
use secrecy::ExposeSecret;

use super::*;
use crate::fuzzing::imap_command;
use crate::imap::core::{astring as astring_rule, write_astring};

/// The command with its secrets exposed, for comparison.
fn show(cmd: &Command) -> String {
    let body = match &cmd.body {
        CommandBody::Login { username, password } => {
            format!("Login({username:?}, {:?})", password.expose_secret())
        }
        CommandBody::Authenticate {
            mechanism,
            initial_response,
        } => {
            let ir = match initial_response {
                None => "none".to_owned(),
                Some(InitialResponse::Empty) => "=".to_owned(),
                Some(InitialResponse::Base64(b)) => String::from_utf8_lossy(b).into_owned(),
            };
            format!("Authenticate({mechanism}, {ir})")
        }
        other => format!("{other:?}"),
    };
    format!("{} {body}", cmd.tag)
}

fn syntax(tag: &str, rule: &'static str) -> ParseError {
    ParseError::Syntax {
        tag: Some(tag.to_owned()),
        rule,
    }
}

#[test]
fn known_answers() {
    let ok: &[(&[u8], &str)] = &[
        (b"a1 CAPABILITY\r\n", "a1 Capability"),
        (b"a1 capability\n", "a1 Capability"),
        (b"A.1] NOOP\r\n", "A.1] Noop"),
        (b"x LOGOUT\r\n", "x Logout"),
        (b"x StartTLS\r\n", "x StartTls"),
        (b"a1 LOGIN user pass\r\n", "a1 Login(\"user\", \"pass\")"),
        (
            b"a1 LOGIN \"us er\" \"p\\\"a\\\\ss\"\r\n",
            "a1 Login(\"us er\", \"p\\\"a\\\\ss\")",
        ),
        (
            b"a1 LOGIN {11}\r\nuser@ex.com {5}\r\np\r\nss\r\n",
            "a1 Login(\"user@ex.com\", \"p\\r\\nss\")",
        ),
        (b"a1 LOGIN {2+}\r\nab \"\"\r\n", "a1 Login(\"ab\", \"\")"),
        (
            b"a1 LOGIN NIL \"caf\xc3\xa9\"\r\n",
            "a1 Login(\"NIL\", \"caf\u{e9}\")",
        ),
        (
            b"a1 AUTHENTICATE oauthbearer\r\n",
            "a1 Authenticate(OAUTHBEARER, none)",
        ),
        (b"a1 AUTHENTICATE PLAIN =\r\n", "a1 Authenticate(PLAIN, =)"),
        (
            b"a1 AUTHENTICATE PLAIN AGEAYg==\r\n",
            "a1 Authenticate(PLAIN, AGEAYg==)",
        ),
        (
            b"a1 AUTHENTICATE XOAUTH2 dXNl+/9\r\n",
            "a1 Authenticate(XOAUTH2, dXNl+/9)",
        ),
        (b"a1 ID NIL\r\n", "a1 Id(None)"),
        (b"a1 id nil\r\n", "a1 Id(None)"),
        (b"a1 ID ()\r\n", "a1 Id(Some([]))"),
        (
            b"a1 ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n",
            "a1 Id(Some([(\"name\", Some(\"Thunderbird\")), (\"version\", None)]))",
        ),
        (
            b"a1 ID ({4}\r\nname {2}\r\nK9)\r\n",
            "a1 Id(Some([(\"name\", Some(\"K9\"))]))",
        ),
        (b"a1 SELECT INBOX\r\n", "a1 Other { name: \"SELECT\" }"),
        (
            b"a1 enable {3+}\r\nx\r\n\r\n",
            "a1 Other { name: \"ENABLE\" }",
        ),
        (b"a1 LOGINX\r\n", "a1 Other { name: \"LOGINX\" }"),
    ];
    for (input, want) in ok {
        let got = parse_command(input).map(|c| show(&c));
        assert_eq!(
            got.as_deref(),
            Ok(*want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    let bad: &[(&[u8], ParseError)] = &[
        (b"\r\n", ParseError::Tag),
        (b"a1\r\n", syntax("a1", "command")),
        (b"a1", syntax("a1", "command")),
        (b"a1 LOGIN NIL caf\xc3\xa9\r\n", syntax("a1", "login")),
        (b"a+1 NOOP\r\n", ParseError::Tag),
        (b" NOOP\r\n", ParseError::Tag),
        (b"a1 (\r\n", syntax("a1", "command")),
        (b"a1 NOOP extra\r\n", syntax("a1", "noop")),
        (b"a1 NOOP", syntax("a1", "noop")),
        (b"a1 NOOP\r\na2 NOOP\r\n", syntax("a1", "noop")),
        (b"a1 CAPABILITY \r\n", syntax("a1", "capability")),
        (b"a1 LOGIN user\r\n", syntax("a1", "login")),
        (b"a1 LOGIN user pass extra\r\n", syntax("a1", "login")),
        (b"a1 LOGIN  user pass\r\n", syntax("a1", "login")),
        (b"a1 LOGIN user \"pass\r\n", syntax("a1", "login")),
        (b"a1 LOGIN {5}\r\nuser pass\r\n", syntax("a1", "login")),
        (b"a1 LOGIN \xff pass\r\n", syntax("a1", "login")),
        (b"a1 LOGIN u \"\xff\"\r\n", syntax("a1", "login")),
        (b"a1 LOGIN u ~{1}\r\np\r\n", syntax("a1", "login")),
        (b"a1 AUTHENTICATE\r\n", syntax("a1", "authenticate")),
        (b"a1 AUTHENTICATE PLAIN \r\n", syntax("a1", "authenticate")),
        (
            b"a1 AUTHENTICATE PLAIN a=b\r\n",
            syntax("a1", "authenticate"),
        ),
        (
            b"a1 AUTHENTICATE PLAIN a===\r\n",
            syntax("a1", "authenticate"),
        ),
        (
            b"a1 AUTHENTICATE PLAIN ==\r\n",
            syntax("a1", "authenticate"),
        ),
        (b"a1 ID\r\n", syntax("a1", "id")),
        (b"a1 ID (\"name\")\r\n", syntax("a1", "id")),
        (b"a1 ID (name \"x\")\r\n", syntax("a1", "id")),
        (b"a1 ID (\"a\" \"b\"  \"c\" \"d\")\r\n", syntax("a1", "id")),
    ];
    for (input, want) in bad {
        let got = parse_command(input).map(|c| show(&c));
        assert_eq!(
            got,
            Err(want.clone()),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn id_limits_follow_rfc_2971() {
    let limit = |what| {
        Err(ParseError::LimitExceeded {
            tag: Some("a1".to_owned()),
            what,
        })
    };
    let field31 = format!("a1 ID (\"{}\" NIL)\r\n", "f".repeat(31));
    assert_eq!(
        parse_command(field31.as_bytes()).map(|c| show(&c)),
        limit("ID field")
    );
    let field30 = format!("a1 ID (\"{}\" NIL)\r\n", "f".repeat(30));
    assert!(parse_command(field30.as_bytes()).is_ok());

    let value1025 = format!("a1 ID (\"f\" {{1025}}\r\n{})\r\n", "v".repeat(1_025));
    assert_eq!(
        parse_command(value1025.as_bytes()).map(|c| show(&c)),
        limit("ID value")
    );
    let value1024 = format!("a1 ID (\"f\" {{1024}}\r\n{})\r\n", "v".repeat(1_024));
    assert!(parse_command(value1024.as_bytes()).is_ok());

    let pairs = |n| format!("a1 ID ({})\r\n", vec!["\"f\" \"v\""; n].join(" "));
    assert!(parse_command(pairs(30).as_bytes()).is_ok());
    assert_eq!(
        parse_command(pairs(31).as_bytes()).map(|c| show(&c)),
        limit("ID pair count")
    );
}

#[test]
fn debug_never_shows_secrets() {
    let token = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";
    let cmd = parse_command(format!("a1 AUTHENTICATE XOAUTH2 {token}\r\n").as_bytes()).unwrap();
    let debug = format!("{cmd:?} {cmd:#?}");
    assert!(
        !debug.contains(token) && !debug.contains(&token[..16]),
        "{debug}"
    );
    assert!(debug.contains("REDACTED"), "{debug}");

    let cmd = parse_command(b"a1 LOGIN alice {12+}\r\nhunter2-pass\r\n").unwrap();
    let debug = format!("{cmd:?} {cmd:#?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("alice"), "{debug}");
}

/// Astring values worth round-tripping: printable, quoted-specials, CR/LF, 8-bit, empty.
fn astring_value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => b'!'..=b'~',
            1 => Just(b' '),
            1 => Just(b'"'),
            1 => Just(b'\\'),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => 0x80u8..=0xff,
        ],
        0..40,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn astring_write_then_parse(value in astring_value(), literal_plus in any::<bool>()) {
        let mut out = Vec::new();
        match write_astring(&mut out, &value, literal_plus) {
            Ok(()) => {
                out.extend_from_slice(b" rest");
                let (rest, parsed) = astring_rule(&out).expect("written astring parses");
                prop_assert_eq!(parsed.as_ref(), value.as_slice());
                prop_assert_eq!(rest, b" rest");
            }
            Err(_) => prop_assert!(!literal_plus),
        }
    }

    #[test]
    fn astring_parse_then_write_then_parse(input in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Ok((_, parsed)) = astring_rule(&input) {
            let mut out = Vec::new();
            if write_astring(&mut out, &parsed, true).is_ok() {
                let (rest, again) = astring_rule(&out).expect("rewritten astring parses");
                prop_assert_eq!(again, parsed);
                prop_assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn login_round_trips(user in astring_value(), pass in astring_value()) {
        let (Ok(user), Ok(pass)) = (String::from_utf8(user), String::from_utf8(pass)) else {
            return Ok(());
        };
        let mut out = Vec::new();
        crate::imap::client::write_login(&mut out, "t1", user.as_bytes(), pass.as_bytes(), true).unwrap();
        imap_command(&out);
        let cmd = parse_command(&out).unwrap();
        prop_assert_eq!(show(&cmd), format!("t1 Login({user:?}, {pass:?})"));
    }

    #[test]
    fn parser_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        imap_command(&input);
    }

    #[test]
    fn parser_never_panics_on_commandish_input(
        name in prop_oneof![Just("LOGIN"), Just("ID"), Just("AUTHENTICATE"), Just("NOOP")],
        args in proptest::collection::vec(prop_oneof![
            Just("{3}\r\n".to_owned()), Just("{2+}\r\n".to_owned()), Just("\"".to_owned()),
            Just(" ".to_owned()), Just("NIL".to_owned()), Just("(".to_owned()), Just(")".to_owned()),
            Just("\\".to_owned()), Just("=".to_owned()), "[a-z0-9+/=]{0,6}",
        ], 0..12),
    ) {
        let input = format!("a1 {name} {}\r\n", args.concat());
        imap_command(input.as_bytes());
    }
}

use proptest::prelude::*;
use secrecy::SecretString;

use super::*;
use crate::pop3::client::{write_auth, write_pass, write_user};
use crate::pop3::fuzzing;

/// RFC 7628 §4.1's initial response (the SMTP example's; the GS2 header and `auth=` are
/// the same in every protocol).
const RFC7628_IR: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";

fn auth(mechanism: &str, ir: Option<InitialResponse>) -> Command {
    Command::Auth {
        mechanism: mechanism.to_owned(),
        initial_response: ir,
    }
}

fn pass(password: &str) -> Command {
    Command::Pass(SecretString::from(password))
}

fn syntax(rule: &'static str) -> Result<Command, ParseError> {
    Err(ParseError::Syntax { rule })
}

#[test]
fn known_answers() {
    let b64 = |s: &'static str| Some(InitialResponse::Base64(s.into()));
    let table: Vec<(&[u8], Result<Command, ParseError>)> = vec![
        (b"CAPA\r\n", Ok(Command::Capa)),
        (b"capa", Ok(Command::Capa)),
        (b"CAPA  \t\r\n", Ok(Command::Capa)),
        (b"CAPA now\r\n", syntax("capa")),
        (b"STLS\r\n", Ok(Command::Stls)),
        (b"stls\n", Ok(Command::Stls)),
        (b"STLS x\r\n", syntax("stls")),
        (b"QUIT\r\n", Ok(Command::Quit)),
        (b"QUIT please\r\n", syntax("quit")),
        (b"NOOP\r\n", Ok(Command::Noop)),
        (b"NOOP x\r\n", syntax("noop")),
        (b"AUTH\r\n", Ok(Command::ListMechanisms)),
        (b"auth \r\n", Ok(Command::ListMechanisms)),
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
            b"AUTH OAUTHBEARER  AQ \r\n",
            Ok(auth("OAUTHBEARER", b64("AQ"))),
        ),
        (b"AUTH X.Y\r\n", syntax("auth")),
        (b"AUTH ABCDEFGHIJKLMNOPQRSTU\r\n", syntax("auth")),
        (b"AUTH PLAIN a b\r\n", syntax("auth")),
        (b"AUTH PLAIN a!b\r\n", syntax("initial-response")),
        (b"AUTH PLAIN a===\r\n", syntax("initial-response")),
        (b"AUTH PLAIN *\r\n", syntax("initial-response")),
        (b"USER alice\r\n", Ok(Command::User("alice".into()))),
        (
            b"user  alice@example.com \r\n",
            Ok(Command::User("alice@example.com".into())),
        ),
        (
            b"USER Jean Dupont\r\n",
            Ok(Command::User("Jean Dupont".into())),
        ),
        (
            "USER j\u{fc}rgen\r\n".as_bytes(),
            Ok(Command::User("j\u{fc}rgen".into())),
        ),
        (b"USER\r\n", syntax("user")),
        (b"USER \r\n", syntax("user")),
        (b"USER a\0b\r\n", syntax("user")),
        (b"USER a\rb\r\n", syntax("user")),
        (b"USER \xff\r\n", syntax("user")),
        (b"PASS secret\r\n", Ok(pass("secret"))),
        (b"pass two words \r\n", Ok(pass("two words "))),
        (b"PASS  lead\r\n", Ok(pass(" lead"))),
        (b"PASS a\tb\r\n", Ok(pass("a\tb"))),
        (b"PASS\r\n", syntax("pass")),
        (b"PASS \r\n", syntax("pass")),
        (b"PASS\tsecret\r\n", syntax("pass")),
        (b"PASS a\0b\r\n", syntax("pass")),
        (b"STAT\r\n", Ok(Command::Other("STAT".into()))),
        (b"retr 1\r\n", Ok(Command::Other("RETR".into()))),
        (
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
            Ok(Command::Other("APOP".into())),
        ),
        (b"GET / HTTP/1.1\r\n", Ok(Command::Other("GET".into()))),
        (b"capax\r\n", Ok(Command::Other("CAPAX".into()))),
        (b"\r\n", Err(ParseError::Empty)),
        (b"  \t\r\n", Err(ParseError::Empty)),
        (b" CAPA\r\n", syntax("command")),
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
fn rfc7628_initial_response_is_kept_as_sent() {
    let line = format!("AUTH OAUTHBEARER {RFC7628_IR}\r\n");
    assert_eq!(
        parse_command(line.as_bytes()),
        Ok(auth(
            "OAUTHBEARER",
            Some(InitialResponse::Base64(RFC7628_IR.into()))
        ))
    );
}

#[test]
fn other_keyword_is_bounded() {
    let line = format!("{} x\r\n", "Z".repeat(1_000));
    assert_eq!(
        parse_command(line.as_bytes()),
        Ok(Command::Other("Z".repeat(16)))
    );
}

#[test]
fn debug_never_shows_a_password_or_an_initial_response() {
    let line = format!("AUTH OAUTHBEARER {RFC7628_IR}\r\n");
    let command = parse_command(line.as_bytes()).unwrap();
    let debug = format!("{command:?}");
    assert!(!debug.contains(RFC7628_IR), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
    let command = parse_command(b"PASS hunter2 and more\r\n").unwrap();
    let debug = format!("{command:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("REDACTED"), "{debug}");
}

#[test]
fn passwords_compare_by_content() {
    assert_eq!(pass("a"), pass("a"));
    assert_ne!(pass("a"), pass("b"));
    assert_ne!(pass("a"), Command::User("a".into()));
    assert_eq!(Command::Quit, Command::Quit);
    assert_ne!(Command::Quit, Command::Noop);
}

fn text() -> impl Strategy<Value = String> {
    "[!-~\u{e9}\u{4e2d}][ -~\t\u{e9}]{0,40}[!-~\u{e9}]"
}

proptest! {
    #[test]
    fn auth_round_trips(
        mechanism in "[A-Z0-9_-]{1,20}",
        ir in proptest::option::of(prop_oneof![
            Just(InitialResponse::Empty),
            "[A-Za-z0-9+/]{1,200}={0,2}".prop_map(|s| InitialResponse::Base64(s.into())),
        ]),
    ) {
        let mut out = Vec::new();
        match write_auth(&mut out, &mechanism, ir.as_ref()) {
            Ok(()) => prop_assert_eq!(parse_command(&out), Ok(auth(&mechanism, ir))),
            Err(e) => prop_assert_eq!(e, crate::pop3::WriteError::LineTooLong),
        }
    }

    #[test]
    fn user_and_pass_round_trip(name in text(), password in "[ -~\t\u{e9}]{1,60}") {
        let mut out = Vec::new();
        write_user(&mut out, &name).unwrap();
        prop_assert_eq!(parse_command(&out), Ok(Command::User(name)));
        let mut out = Vec::new();
        write_pass(&mut out, &password).unwrap();
        prop_assert_eq!(parse_command(&out), Ok(pass(&password)));
    }

    #[test]
    fn random_lines_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        fuzzing::pop3_command(&data);
        fuzzing::pop3_framer(&data);
    }

    #[test]
    fn command_like_lines_never_panic(
        keyword in prop_oneof![
            Just("AUTH"), Just("USER"), Just("PASS"), Just("capa"), Just("STLS"), Just("x")
        ],
        rest in "[ -~\t]{0,80}",
    ) {
        let line = format!("{keyword} {rest}\r\n");
        fuzzing::pop3_command(line.as_bytes());
        fuzzing::pop3_framer(line.repeat(3).as_bytes());
    }
}

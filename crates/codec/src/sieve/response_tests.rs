use proptest::prelude::*;

use super::*;
use crate::sieve::fuzzing::sieve_response;

fn cap(name: &str, value: Option<&str>) -> Response {
    Response::Capability(Capability::new(name, value))
}

fn done(status: Status, code: Option<Code>, text: Option<&str>) -> Response {
    Response::Completion(Completion {
        status,
        code,
        text: text.map(str::to_owned),
    })
}

#[test]
fn writer_known_answers() {
    let cases: Vec<(Response, &[u8])> = vec![
        (
            cap("IMPLEMENTATION", Some("bearergate")),
            b"\"IMPLEMENTATION\" \"bearergate\"\r\n",
        ),
        (cap("SASL", Some("")), b"\"SASL\" \"\"\r\n"),
        (cap("STARTTLS", None), b"\"STARTTLS\"\r\n"),
        (done(Status::Ok, None, None), b"OK\r\n"),
        (
            done(Status::Ok, None, Some("bearergate ready.")),
            b"OK \"bearergate ready.\"\r\n",
        ),
        (
            done(Status::No, Some(Code::TryLater), Some("Try later.")),
            b"NO (TRYLATER) \"Try later.\"\r\n",
        ),
        (
            done(
                Status::No,
                Some(Code::EncryptNeeded),
                Some("Use \"STARTTLS\"."),
            ),
            b"NO (ENCRYPT-NEEDED) \"Use \\\"STARTTLS\\\".\"\r\n",
        ),
        (
            done(Status::Ok, Some(Code::Sasl("AQ==".into())), None),
            b"OK (SASL \"AQ==\")\r\n",
        ),
        (
            done(Status::Ok, Some(Code::Tag("a\r\nb".into())), Some("Done")),
            b"OK (TAG {4}\r\na\r\nb) \"Done\"\r\n",
        ),
        (
            done(
                Status::Bye,
                Some(Code::Referral("sieve://b.example".into())),
                None,
            ),
            b"BYE (REFERRAL sieve://b.example)\r\n",
        ),
        (
            done(
                Status::No,
                Some(Code::QuotaMaxSize),
                Some("\r\nOK injected"),
            ),
            b"NO (QUOTA/MAXSIZE) {13}\r\n\r\nOK injected\r\n",
        ),
        (
            done(
                Status::No,
                Some(Code::Other {
                    name: "X-FOO".into(),
                    data: Some("1 (\"a\" b)".into()),
                }),
                None,
            ),
            b"NO (X-FOO 1 (\"a\" b))\r\n",
        ),
        (
            done(
                Status::No,
                Some(Code::Other {
                    name: "bad name".into(),
                    data: Some(") OK".into()),
                }),
                None,
            ),
            b"NO (X-INVALID)\r\n",
        ),
        (
            Response::Challenge(Bytes::from_static(b"eyJzdGF0dXMiOiI0MDEifQ==")),
            b"\"eyJzdGF0dXMiOiI0MDEifQ==\"\r\n",
        ),
        (Response::Challenge(Bytes::new()), b"\"\"\r\n"),
    ];
    for (response, want) in cases {
        assert_eq!(
            response.to_bytes(),
            want,
            "{response:?} gave {:?}",
            String::from_utf8_lossy(&response.to_bytes())
        );
    }
}

#[test]
fn long_challenge_is_a_literal() {
    let challenge = Bytes::from(vec![b'A'; 1_500]);
    let out = Response::Challenge(challenge.clone()).to_bytes();
    assert!(out.starts_with(b"{1500}\r\nAAA"), "{:?}", &out[..12]);
    assert_eq!(
        parse_auth_response(&out),
        Ok(Response::Challenge(challenge))
    );
}

#[test]
fn parser_known_answers() {
    let cases: Vec<(&[u8], Result<Response, ParseError>)> = vec![
        (
            b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n",
            Ok(cap("IMPLEMENTATION", Some("Dovecot Pigeonhole"))),
        ),
        (
            b"\"SIEVE\" {9}\r\nfileinto \r\n",
            Ok(cap("SIEVE", Some("fileinto "))),
        ),
        (b"\"STARTTLS\"\r\n", Ok(cap("STARTTLS", None))),
        (b"\"STARTTLS\"", Ok(cap("STARTTLS", None))),
        (b"OK\r\n", Ok(done(Status::Ok, None, None))),
        (
            b"ok \"Dovecot ready.\"\r\n",
            Ok(done(Status::Ok, None, Some("Dovecot ready."))),
        ),
        (
            b"NO (AUTH-TOO-WEAK) \"x\"\r\n",
            Ok(done(Status::No, Some(Code::AuthTooWeak), Some("x"))),
        ),
        (
            b"NO (trylater)\r\n",
            Ok(done(Status::No, Some(Code::TryLater), None)),
        ),
        (
            b"OK (SASL \"AQ==\") \"Logged in.\"\r\n",
            Ok(done(
                Status::Ok,
                Some(Code::Sasl("AQ==".into())),
                Some("Logged in."),
            )),
        ),
        (
            b"BYE (QUOTA/MAXSCRIPTS) {5}\r\nbye\r\n\r\n",
            Ok(done(
                Status::Bye,
                Some(Code::QuotaMaxScripts),
                Some("bye\r\n"),
            )),
        ),
        (
            b"NO (X-EXT (1 \"two\" (three))) \"t\"\r\n",
            Ok(done(
                Status::No,
                Some(Code::Other {
                    name: "X-EXT".into(),
                    data: Some("(1 \"two\" (three))".into()),
                }),
                Some("t"),
            )),
        ),
        (
            b"NO (X-EXT (1)\r\n",
            Err(ParseError::Syntax { rule: "response" }),
        ),
        (
            b"OK \"a\" \"b\"\r\n",
            Err(ParseError::Syntax { rule: "response" }),
        ),
        (b"MAYBE\r\n", Err(ParseError::Syntax { rule: "response" })),
        (b"\r\n", Err(ParseError::Syntax { rule: "response" })),
        (
            b"\"a\" \"b\" \"c\"\r\n",
            Err(ParseError::Syntax { rule: "response" }),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_response(input),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn auth_response_known_answers() {
    let syntax = Err(ParseError::Syntax {
        rule: "response-authenticate",
    });
    let cases: Vec<(&[u8], Result<Response, ParseError>)> = vec![
        (b"\"\"\r\n", Ok(Response::Challenge(Bytes::new()))),
        (
            b"{4}\r\nAQ==\r\n",
            Ok(Response::Challenge(Bytes::from_static(b"AQ=="))),
        ),
        (
            b"OK \"Logged in.\"\r\n",
            Ok(done(Status::Ok, None, Some("Logged in."))),
        ),
        (
            b"NO \"Authentication failed.\"\r\n",
            Ok(done(Status::No, None, Some("Authentication failed."))),
        ),
        (b"\"SASL\" \"PLAIN\"\r\n", syntax.clone()),
        (b"+ AQ==\r\n", syntax),
    ];
    for (input, want) in cases {
        assert_eq!(
            parse_auth_response(input),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let mut input = b"NO (X ".to_vec();
    input.extend(std::iter::repeat_n(b'(', 10_000));
    input.extend(std::iter::repeat_n(b')', 10_001));
    input.extend_from_slice(b"\r\n");
    assert!(parse_response(&input).is_err());
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,40}", "\\PC{0,20}", "[a-z\r\n\"\\\\]{0,1100}"]
}

fn code() -> impl Strategy<Value = Code> {
    let simple = proptest::sample::select(
        Code::SIMPLE
            .iter()
            .map(|(_, c)| c.clone())
            .collect::<Vec<_>>(),
    );
    prop_oneof![
        simple,
        text().prop_map(Code::Sasl),
        text().prop_map(Code::Tag),
        "[a-z:/.]{1,20}".prop_map(Code::Referral),
        (
            "X-[A-Z]{1,8}",
            proptest::option::of("[a-z0-9]{1,5}( \"[a-z ]{0,5}\"| \\([a-z]{1,3}\\))?")
        )
            .prop_map(|(name, data)| Code::Other { name, data }),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Ok), Just(Status::No), Just(Status::Bye)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn completion_round_trips(
        status in status(),
        code in proptest::option::of(code()),
        text in proptest::option::of(text()),
    ) {
        let response = Response::Completion(Completion { status, code, text });
        prop_assert_eq!(parse_response(&response.to_bytes()), Ok(response.clone()));
        prop_assert_eq!(parse_auth_response(&response.to_bytes()), Ok(response));
    }

    #[test]
    fn capability_round_trips(name in text(), value in proptest::option::of(text())) {
        let response = Response::Capability(Capability { name, value });
        prop_assert_eq!(parse_response(&response.to_bytes()), Ok(response));
    }

    #[test]
    fn challenge_round_trips(data in proptest::collection::vec(any::<u8>(), 0..1_100)) {
        let response = Response::Challenge(Bytes::from(data));
        prop_assert_eq!(parse_auth_response(&response.to_bytes()), Ok(response));
    }

    #[test]
    fn random_responses_do_not_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        sieve_response(&input);
    }

    #[test]
    fn response_like_input_round_trips(input in "(OK|NO|BYE|\"[a-z]{0,3}\")( \\((TAG|SASL|X-A|QUOTA)( \"[a-z]{0,3}\"| \\(a\\)| 1)?\\))?( \"[a-z ]{0,5}\"| \\{2\\}\r\nab)?\r\n") {
        sieve_response(input.as_bytes());
    }
}

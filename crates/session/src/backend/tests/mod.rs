//! Tests of the backend-login machines: the transcripts (`../transcripts/*.txt`, see
//! [`transcript`]), secrets in `Debug` output, whose fault each failure is, and calls in
//! the wrong state.

mod transcript;

use std::collections::BTreeSet;
use std::path::Path;

use bytes::BytesMut;
use sasl::{BearerCredentials, Mechanism, PasswordCredentials};

use super::imap::ImapLogin;
use super::pop3::Pop3Login;
use super::sieve::SieveLogin;
use super::smtp::SmtpLogin;
use super::*;

fn transcripts() -> Vec<(String, transcript::Transcript)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/backend/transcripts");
    transcript::load(&dir)
}

#[test]
fn transcripts_replay_whole_and_byte_by_byte() {
    let all = transcripts();
    assert!(all.len() >= 60, "only {} transcripts", all.len());
    let mut failures = Vec::new();
    for (file, transcript) in &all {
        for bytewise in [false, true] {
            if let Err(why) = transcript::run(transcript, bytewise) {
                let how = if bytewise { "byte by byte" } else { "whole" };
                failures.push(format!("{file}: {} ({how}):\n  {why}", transcript.title));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn transcripts_cover_every_strategy_of_every_protocol() {
    let mut seen = BTreeSet::new();
    for (file, transcript) in transcripts() {
        let protocol = file.split(['_', '.']).next().unwrap_or_default().to_owned();
        let strategy = transcript
            .request()
            .map_or("probe", |request| request.strategy.name());
        seen.insert((protocol, strategy));
    }
    let wanted = [
        ("imap", "master"),
        ("imap", "plain-authzid"),
        ("imap", "passthrough"),
        ("imap", "password"),
        ("smtp", "master"),
        ("smtp", "plain-authzid"),
        ("smtp", "passthrough"),
        ("smtp", "xclient"),
        ("smtp", "password"),
        ("smtp", "probe"),
        ("sieve", "master"),
        ("sieve", "plain-authzid"),
        ("sieve", "passthrough"),
        ("sieve", "probe"),
        ("pop3", "master"),
        ("pop3", "plain-authzid"),
        ("pop3", "passthrough"),
        ("pop3", "password"),
    ];
    for (protocol, strategy) in wanted {
        assert!(
            seen.contains(&(protocol.to_owned(), strategy)),
            "no {protocol} transcript for {strategy}"
        );
    }
}

const MASTER_SECRET: &str = "Mast3r-S3cret";
const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.c2ln";
const PASSWORD: &str = "Hunter2-pw";

fn request(strategy: Strategy) -> LoginRequest {
    LoginRequest {
        strategy,
        client: "192.0.2.7:51234".parse().expect("address"),
        client_name: Some("client.example".into()),
        session_id: "s1".into(),
        starttls: false,
        forward_client_address: true,
    }
}

fn master() -> MasterUser {
    MasterUser {
        name: "proxymaster".into(),
        password: MASTER_SECRET.into(),
        login_format: "{user}*{master}".into(),
    }
}

fn strategies() -> Vec<Strategy> {
    vec![
        Strategy::Master {
            user: "alice".into(),
            master: master(),
        },
        Strategy::PlainAuthzid {
            user: "alice".into(),
            master: master(),
        },
        Strategy::Passthrough {
            user: "alice".into(),
            credentials: BearerCredentials {
                mechanism: Mechanism::XOAuth2,
                authzid: None,
                token: TOKEN.into(),
                host: None,
                port: None,
            },
        },
        Strategy::Password(PasswordCredentials {
            authzid: None,
            user: "alice".into(),
            password: PASSWORD.into(),
        }),
    ]
}

/// Everything a secret could show as: itself, its base64 at each alignment, and the
/// base64 of each SASL response built from it.
fn forbidden() -> Vec<String> {
    let mut forbidden = Vec::new();
    for secret in [MASTER_SECRET, TOKEN, PASSWORD] {
        forbidden.push(secret.to_owned());
        for pad in ["", "a", "ab"] {
            let encoded = sasl::encode_base64(format!("{pad}{secret}").as_bytes());
            // The characters that depend on the secret alone.
            let skip = pad.len() * 4 / 3 + 2;
            forbidden.push(encoded[skip..encoded.len() - 4].to_owned());
        }
    }
    forbidden
}

fn assert_redacted(what: &str, debug: &str) {
    for secret in forbidden() {
        assert!(
            !debug.contains(&secret),
            "{what} shows `{secret}`:\n{debug}"
        );
    }
}

/// Feeds `lines` (output left unwritten) and formats the events.
fn events_after(machine: &mut dyn BackendLogin, lines: &[&str]) -> String {
    let mut input = BytesMut::new();
    let mut shown = String::new();
    for line in lines {
        input.extend_from_slice(line.as_bytes());
        let event = machine.advance(&mut input);
        shown.push_str(&format!("{event:?}\n"));
    }
    shown
}

#[test]
fn secrets_never_show_in_debug_output() {
    let imap_greeting = "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID AUTH=PLAIN] ready\r\n";
    let smtp = ["220 mx ESMTP\r\n", "250-mx\r\n250 AUTH PLAIN XOAUTH2\r\n"];
    let sieve = "\"SASL\" \"PLAIN XOAUTH2\"\r\nOK\r\n";
    // USER offered: the PASS command waits in the machine for USER's +OK.
    let pop3 = [
        "+OK [XCLIENT] ready\r\n",
        "+OK\r\nUSER\r\nSASL PLAIN XOAUTH2\r\n.\r\n",
        "+OK Updated\r\n",
        "+OK\r\n",
    ];
    for strategy in strategies() {
        let request = request(strategy);
        assert_redacted("the request", &format!("{request:?}"));

        // IMAP without SASL-IR: the response waits in the machine for the `+`.
        let mut imap = ImapLogin::new(request.clone()).expect("imap");
        let mut input = BytesMut::from(imap_greeting);
        let mut events = format!("{:?}", imap.advance(&mut input));
        // The command carrying the secret is pending output now.
        assert!(!imap.output().is_empty());
        events.push_str(&format!("{imap:?}"));
        input.extend_from_slice(b"bg2 OK\r\n");
        events.push_str(&format!("{:?}{imap:?}", imap.advance(&mut input)));
        imap.output_written();
        events.push_str(&format!("{imap:?}"));
        assert_redacted("the IMAP machine", &events);

        let mut smtp_login = SmtpLogin::new(request.clone()).expect("smtp");
        let shown = events_after(&mut smtp_login, &smtp);
        assert_redacted("the SMTP machine", &format!("{shown}{smtp_login:?}"));

        let mut pop3_login = Pop3Login::new(request.clone()).expect("pop3");
        let shown = events_after(&mut pop3_login, &pop3);
        assert_redacted("the POP3 machine", &format!("{shown}{pop3_login:?}"));

        if let Ok(mut sieve_login) = SieveLogin::new(request) {
            let shown = events_after(&mut sieve_login, &[sieve]);
            assert_redacted(
                "the ManageSieve machine",
                &format!("{shown}{sieve_login:?}"),
            );
        }
    }
}

#[test]
fn a_long_smtp_response_waits_for_334_redacted() {
    let long_token = format!("{TOKEN}{}", "A".repeat(600));
    let mut machine = SmtpLogin::new(request(Strategy::Passthrough {
        user: "alice".into(),
        credentials: BearerCredentials {
            mechanism: Mechanism::OAuthBearer,
            authzid: None,
            token: long_token.as_str().into(),
            host: None,
            port: None,
        },
    }))
    .expect("smtp");
    let mut input = BytesMut::from("220 mx\r\n");
    assert!(matches!(machine.advance(&mut input), Event::NeedInput));
    machine.output_written();
    input.extend_from_slice(b"250-mx\r\n250 AUTH OAUTHBEARER\r\n");
    assert!(matches!(machine.advance(&mut input), Event::Learned(_)));
    assert_eq!(machine.output(), b"AUTH OAUTHBEARER\r\n");
    assert_redacted("the waiting machine", &format!("{machine:?}"));
    assert!(!format!("{machine:?}").contains(&"A".repeat(100)));
}

#[test]
fn a_long_pop3_response_waits_for_the_continuation_redacted() {
    let long_token = format!("{TOKEN}{}", "A".repeat(600));
    let mut machine = Pop3Login::new(request(Strategy::Passthrough {
        user: "alice".into(),
        credentials: BearerCredentials {
            mechanism: Mechanism::OAuthBearer,
            authzid: None,
            token: long_token.as_str().into(),
            host: None,
            port: None,
        },
    }))
    .expect("pop3");
    let mut input = BytesMut::from("+OK ready\r\n");
    assert!(matches!(machine.advance(&mut input), Event::NeedInput));
    assert_eq!(machine.output(), b"CAPA\r\n");
    machine.output_written();
    input.extend_from_slice(b"+OK\r\nSASL OAUTHBEARER\r\n.\r\n");
    assert!(matches!(machine.advance(&mut input), Event::NeedInput));
    // RFC 5034 §4: the AUTH line stays within 255 octets; the response waits for `+ `.
    assert_eq!(machine.output(), b"AUTH OAUTHBEARER\r\n");
    assert_redacted("the waiting machine", &format!("{machine:?}"));
    assert!(!format!("{machine:?}").contains(&"A".repeat(100)));
}

#[test]
fn faults_follow_from_the_failure() {
    let stage = Stage::Login;
    let reply = || "NO".to_owned();
    let table = [
        (LoginError::TokenRefused { challenge: None }, Fault::Client),
        (LoginError::PasswordRefused, Fault::Client),
        (
            LoginError::Unavailable {
                stage,
                reply: reply(),
            },
            Fault::Backend,
        ),
        (
            LoginError::Protocol {
                stage,
                error: ProtocolError::Closed,
            },
            Fault::Backend,
        ),
        (
            LoginError::Refused {
                stage,
                reply: reply(),
            },
            Fault::Configuration,
        ),
        (
            LoginError::Unsafe {
                privilege: Privilege::Xclient,
            },
            Fault::Configuration,
        ),
        (
            LoginError::Unsupported {
                strategy: "xclient",
                protocol: "IMAP",
            },
            Fault::Configuration,
        ),
        (LoginError::Finished, Fault::Proxy),
    ];
    for (error, fault) in table {
        assert_eq!(error.fault(), fault, "{error:?}");
    }
}

#[test]
fn strategies_a_protocol_lacks_are_refused_before_connecting() {
    let xclient = || {
        request(Strategy::Xclient {
            user: "alice".into(),
        })
    };
    let password = || {
        request(Strategy::Password(PasswordCredentials {
            authzid: None,
            user: "alice".into(),
            password: PASSWORD.into(),
        }))
    };
    for result in [
        ImapLogin::new(xclient()).map(drop),
        SieveLogin::new(xclient()).map(drop),
        SieveLogin::new(password()).map(drop),
        Pop3Login::new(xclient()).map(drop),
    ] {
        assert!(
            matches!(result, Err(LoginError::Unsupported { .. })),
            "{result:?}"
        );
    }
    assert!(SmtpLogin::new(xclient()).is_ok());
    assert!(ImapLogin::new(password()).is_ok());
    assert!(Pop3Login::new(password()).is_ok());
}

#[test]
fn calls_in_the_wrong_state_change_nothing() {
    let mut machines: Vec<Box<dyn BackendLogin>> = vec![
        Box::new(ImapLogin::new(request(strategies().remove(0))).expect("imap")),
        Box::new(SmtpLogin::probe(false)),
        Box::new(SieveLogin::probe(false)),
        Box::new(Pop3Login::new(request(strategies().remove(0))).expect("pop3")),
    ];
    for machine in &mut machines {
        assert!(machine.tls_started().is_err());
        let mut input = BytesMut::new();
        assert!(matches!(machine.advance(&mut input), Event::NeedInput));
        let closed = machine.closed();
        assert!(
            matches!(
                closed,
                LoginError::Protocol {
                    error: ProtocolError::Closed,
                    ..
                }
            ),
            "{closed:?}"
        );
        // Finished: every further call says so.
        assert!(matches!(machine.closed(), LoginError::Finished));
        assert!(matches!(
            machine.advance(&mut input),
            Event::Failed(LoginError::Finished)
        ));
        assert!(machine.tls_started().is_err());
    }
}

#[test]
fn master_login_names_follow_the_format() {
    let mut master = master();
    assert_eq!(master.login_name("alice"), "alice*proxymaster");
    master.login_format = "{master}/{user}".into();
    assert_eq!(master.login_name("bob"), "proxymaster/bob");
    // A user cannot bring a `{master}` of its own.
    master.login_format = "{user}*{master}".into();
    assert_eq!(master.login_name("{master}"), "{master}*proxymaster");
}

#[test]
fn loggable_replies_are_short_and_single_line() {
    assert_eq!(loggable(b"NO \x1b[31mbad\r\n"), "NO ?[31mbad??");
    let long = loggable(&[b'x'; 1_000]);
    assert_eq!(long.chars().count(), MAX_LOGGED_REPLY + 1);
    assert!(long.ends_with('…'));
}

#[test]
fn the_runner_notices_every_kind_of_mismatch() {
    let good = "### good\nprotocol: imap\nS: * OK [CAPABILITY IMAP4rev1] ready\n\
                C: bg3 LOGIN \"alice*proxymaster\" secret\nS: bg3 OK Logged in\n\
                C: bg4 CAPABILITY\nS: bg4 OK [CAPABILITY IMAP4rev1] done\n\
                = logged-in IMAP4rev1\n";
    let parsed = transcript::parse(good);
    assert_eq!(parsed.len(), 1);
    for bytewise in [false, true] {
        assert_eq!(transcript::run(&parsed[0], bytewise), Ok(()));
    }
    let broken = [
        // different output
        good.replace("LOGIN \"alice", "LOGIN \"bob"),
        // output never checked
        good.replace("C: bg4 CAPABILITY\n", ""),
        // a different outcome
        good.replace("= logged-in IMAP4rev1", "= failed refused"),
        // different capabilities
        good.replace("= logged-in IMAP4rev1", "= logged-in IMAP4rev2"),
        // an event never checked
        good.replace("= logged-in IMAP4rev1\n", ""),
        // a STARTTLS that does not happen
        good.replace("S: bg3 OK", "-- starttls\nS: bg3 OK"),
        // the wrong failure text
        good.replace("S: bg3 OK Logged in", "S: bg3 NO nope")
            .replace(
                "C: bg4 CAPABILITY\nS: bg4 OK [CAPABILITY IMAP4rev1] done\n",
                "",
            )
            .replace("= logged-in IMAP4rev1", "= failed refused ~ yes"),
    ];
    for text in broken {
        let parsed = transcript::parse(&text);
        for bytewise in [false, true] {
            assert!(
                transcript::run(&parsed[0], bytewise).is_err(),
                "not noticed:\n{text}"
            );
        }
    }
}

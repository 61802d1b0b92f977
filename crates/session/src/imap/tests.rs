//! Transcript tests: client bytes in, exact server bytes out.

use super::*;
use crate::testing::{feed, refused, take, xoauth2};

const TOKEN: &str = "mF_9.B5f-4.1JqM";

fn tls_session() -> ImapSession {
    ImapSession::new(ImapSessionConfig {
        tls_active: true,
        ..ImapSessionConfig::default()
    })
}

fn starttls_session() -> ImapSession {
    ImapSession::new(ImapSessionConfig {
        starttls_available: true,
        ..ImapSessionConfig::default()
    })
}

#[test]
fn greeting_on_tls_offers_oauth_mechanisms() {
    let mut session = tls_session();
    assert_eq!(
        take(&mut session),
        "* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2] bearergate ready.\r\n"
    );
}

#[test]
fn greeting_before_starttls_disables_login() {
    let mut session = starttls_session();
    let text = take(&mut session);
    assert!(text.contains("STARTTLS LOGINDISABLED]"), "{text}");
    assert!(!text.contains("AUTH="), "{text}");
}

#[test]
fn capability_noop_id_logout() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (action, out) = feed(
        &mut session,
        &mut buffer,
        b"a CAPABILITY\r\nb NOOP\r\nc ID (\"name\" \"Thunderbird\")\r\nd LOGOUT\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        "* CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=OAUTHBEARER AUTH=XOAUTH2\r\n\
         a OK CAPABILITY completed.\r\n\
         b OK NOOP completed.\r\n\
         * ID (\"name\" \"bearergate\")\r\n\
         c OK ID completed.\r\n\
         * BYE Logging out.\r\n\
         d OK LOGOUT completed.\r\n"
    );
}

#[test]
fn authenticate_with_initial_response_asks_for_validation() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!(
        "a1 AUTHENTICATE XOAUTH2 {}\r\na2 SELECT INBOX\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    let Action::Authenticate(credentials) = action else {
        panic!("expected Authenticate, got {action:?}");
    };
    assert_eq!(out, "");
    assert_eq!(credentials.authzid.as_deref(), Some("alice"));
    assert_eq!(sasl::ExposeSecret::expose_secret(&credentials.token), TOKEN);
    // The pipelined command stays buffered for the backend.
    assert_eq!(&buffer[..], b"a2 SELECT INBOX\r\n");
    session
        .verdict(Verdict::LoggedIn {
            capabilities: vec!["IMAP4rev1".to_owned(), "IDLE".to_owned()],
        })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "a1 OK [CAPABILITY IMAP4rev1 IDLE] Logged in.\r\n"
    );
}

#[test]
fn authenticate_without_initial_response_sends_empty_continuation() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (action, out) = feed(
        &mut session,
        &mut buffer,
        b"a1 AUTHENTICATE OAUTHBEARER\r\n",
    );
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "+ \r\n");
    let response =
        sasl::encode_base64(format!("n,a=alice,\x01auth=Bearer {TOKEN}\x01\x01").as_bytes());
    let (action, _) = feed(
        &mut session,
        &mut buffer,
        format!("{response}\r\n").as_bytes(),
    );
    let Action::Authenticate(credentials) = action else {
        panic!("expected Authenticate");
    };
    assert_eq!(credentials.authzid.as_deref(), Some("alice"));
}

#[test]
fn refused_token_gets_challenge_then_no_after_dummy() {
    for (mechanism, response, dummy) in [
        ("XOAUTH2", xoauth2("alice", TOKEN), "\r\n"),
        (
            "OAUTHBEARER",
            sasl::encode_base64(format!("n,,\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()),
            "AQ==\r\n",
        ),
    ] {
        let mut session = tls_session();
        take(&mut session);
        let mut buffer = BytesMut::new();
        let line = format!("a1 AUTHENTICATE {mechanism} {response}\r\n");
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        assert!(matches!(action, Action::Authenticate(_)));
        session
            .verdict(refused(Refusal::InvalidToken))
            .expect("verdict");
        let challenge = take(&mut session);
        let encoded = challenge
            .strip_prefix("+ ")
            .and_then(|c| c.strip_suffix("\r\n"))
            .expect("a continuation");
        let json = String::from_utf8(sasl::decode_base64(encoded.as_bytes()).expect("base64"))
            .expect("utf8");
        if mechanism == "XOAUTH2" {
            assert!(json.contains("\"status\":\"401\""), "{json}");
        } else {
            assert!(json.contains("\"status\":\"invalid_token\""), "{json}");
        }
        let (action, out) = feed(&mut session, &mut buffer, dummy.as_bytes());
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(
            out,
            "a1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        );
    }
}

#[test]
fn three_failures_close_the_connection() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    for round in 1..=3 {
        let line = format!(
            "a{round} AUTHENTICATE XOAUTH2 {}\r\n",
            xoauth2("alice", TOKEN)
        );
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        assert!(matches!(action, Action::Authenticate(_)));
        session
            .verdict(refused(Refusal::InvalidToken))
            .expect("verdict");
        take(&mut session);
        let (action, out) = feed(&mut session, &mut buffer, b"\r\n");
        if round < 3 {
            assert!(matches!(action, Action::NeedInput));
        } else {
            assert!(matches!(action, Action::Close));
            assert!(
                out.ends_with("* BYE Too many failed authentications.\r\n"),
                "{out}"
            );
        }
    }
}

#[test]
fn unavailable_is_reported_without_challenge() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!("t AUTHENTICATE XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session.verdict(Verdict::Unavailable).expect("verdict");
    assert!(take(&mut session).starts_with("t NO [UNAVAILABLE] "));
    let (_, out) = feed(&mut session, &mut buffer, b"u NOOP\r\n");
    assert_eq!(out, "u OK NOOP completed.\r\n");
}

#[test]
fn cancel_gets_bad() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let _ = feed(&mut session, &mut buffer, b"a AUTHENTICATE XOAUTH2\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"*\r\n");
    assert_eq!(out, "a BAD Authentication cancelled.\r\n");
}

#[test]
fn plaintext_authentication_is_refused_before_tls() {
    let mut session = starttls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!(
        "a AUTHENTICATE XOAUTH2 {}\r\nb LOGIN alice secret\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    assert!(out.starts_with("a NO [PRIVACYREQUIRED] "), "{out}");
    assert!(out.contains("\r\nb NO [PRIVACYREQUIRED] "), "{out}");
}

#[test]
fn starttls_stops_reading_and_restarts_framing() {
    let mut session = starttls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (action, out) = feed(&mut session, &mut buffer, b"a STARTTLS\r\nb NOOP\r\n");
    assert!(matches!(action, Action::StartTls));
    assert_eq!(out, "a OK Begin TLS negotiation now.\r\n");
    // The driver discards what followed STARTTLS.
    buffer.clear();
    session.tls_started().expect("TLS was asked for");
    let (_, out) = feed(&mut session, &mut buffer, b"c CAPABILITY\r\n");
    assert!(out.contains("AUTH=XOAUTH2"), "{out}");
    assert!(!out.contains("STARTTLS"), "{out}");
    let (_, out) = feed(&mut session, &mut buffer, b"d STARTTLS\r\n");
    assert!(out.starts_with("d BAD "), "{out}");
}

#[test]
fn other_commands_are_refused_before_login() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"x SELECT INBOX\r\n");
    assert_eq!(out, "x BAD Command not allowed before authentication.\r\n");
}

#[test]
fn over_long_line_gets_bad_then_close_when_repeated() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let mut long = b"a NOOP ".to_vec();
    long.extend(std::iter::repeat_n(b'x', 40_000));
    long.extend_from_slice(b"\r\n");
    let (action, out) = feed(&mut session, &mut buffer, &long);
    assert!(
        out.starts_with("a BAD ") || out.starts_with("* BAD "),
        "{out}"
    );
    assert!(matches!(action, Action::NeedInput));
    let (_, out) = feed(&mut session, &mut buffer, b"b NOOP\r\n");
    assert_eq!(out, "b OK NOOP completed.\r\n");
    let (action, out) = feed(&mut session, &mut buffer, &long);
    assert!(matches!(action, Action::Close));
    assert!(
        out.ends_with("* BYE Too many invalid commands.\r\n"),
        "{out}"
    );
}

#[test]
fn synchronizing_literal_gets_continuation() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"a ID (\"name\" {3}\r\n");
    assert_eq!(out, "+ Ready for literal data.\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"abc)\r\n");
    assert!(out.ends_with("a OK ID completed.\r\n"), "{out}");
}

#[test]
fn debug_output_never_shows_the_token() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let encoded = xoauth2("alice", TOKEN);
    let line = format!("a1 AUTHENTICATE XOAUTH2 {encoded}\r\n");
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    let debug = format!("{action:?} {session:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains(&encoded), "{debug}");
}

#[test]
fn backend_capabilities_are_filtered() {
    let caps: Vec<String> = [
        "IMAP4rev1",
        "SASL-IR",
        "AUTH=PLAIN",
        "UNAUTHENTICATE",
        "IDLE",
        "STARTTLS",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(
        filter_backend_capabilities(&caps),
        vec!["IMAP4rev1", "IDLE"]
    );
}

#[test]
fn backend_challenge_is_relayed_unchanged() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!("a AUTHENTICATE XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    let backend = br#"{"status":"401","schemes":"bearer","scope":"mail"}"#.to_vec();
    session
        .verdict(Verdict::BackendRefused {
            challenge: Some(backend.clone()),
        })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        format!("+ {}\r\n", sasl::encode_base64(&backend))
    );
    let (_, out) = feed(&mut session, &mut buffer, b"\r\n");
    assert_eq!(
        out,
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
    let _ = feed(
        &mut session,
        &mut buffer,
        line.replace("a AUTH", "b AUTH").as_bytes(),
    );
    session
        .verdict(Verdict::BackendRefused { challenge: None })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "b NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
}

fn password_session() -> ImapSession {
    let mut session = ImapSession::new(ImapSessionConfig {
        tls_active: true,
        password_fallback: true,
        ..ImapSessionConfig::default()
    });
    assert!(take(&mut session).contains(" AUTH=PLAIN]"));
    session
}

fn password_of(action: Action) -> sasl::PasswordCredentials {
    match action {
        Action::PasswordLogin(credentials) => credentials,
        other => panic!("expected PasswordLogin, got {other:?}"),
    }
}

#[test]
fn password_login_is_collected_by_the_session_with_one_continuation() {
    let mut session = password_session();
    let mut buffer = BytesMut::new();
    // A synchronizing literal: exactly one continuation, the proxy's.
    let (action, out) = feed(&mut session, &mut buffer, b"a LOGIN alice {9}\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "+ Ready for literal data.\r\n");
    let (action, out) = feed(&mut session, &mut buffer, b"alicepass\r\nb NOOP\r\n");
    assert_eq!(out, "");
    let credentials = password_of(action);
    assert_eq!(credentials.user, "alice");
    assert_eq!(credentials.authzid, None);
    assert_eq!(
        sasl::ExposeSecret::expose_secret(&credentials.password),
        "alicepass"
    );
    // Nothing is read while the backend decides; what was pipelined stays buffered.
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    assert_eq!(&buffer[..], b"b NOOP\r\n");
    session
        .verdict(Verdict::LoggedIn {
            capabilities: vec!["IMAP4rev1".to_owned(), "IDLE".to_owned()],
        })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "a OK [CAPABILITY IMAP4rev1 IDLE] Logged in.\r\n"
    );
}

#[test]
fn a_refused_password_leaves_the_client_with_the_proxy() {
    let mut session = password_session();
    let mut buffer = BytesMut::new();
    for (tag, expect_bye) in [("a", false), ("b", false), ("c", true)] {
        let line = format!("{tag} LOGIN carol wrongpass\r\n");
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        password_of(action);
        session.verdict(Verdict::PasswordRefused).expect("verdict");
        let out = take(&mut session);
        assert!(
            out.starts_with(&format!("{tag} NO [AUTHENTICATIONFAILED] ")),
            "{out}"
        );
        assert_eq!(out.contains("* BYE"), expect_bye, "{out}");
        if !expect_bye {
            // OAuth and the proxy's own commands still work on this connection.
            let (_, out) = feed(&mut session, &mut buffer, b"x CAPABILITY\r\n");
            assert!(out.contains("AUTH=OAUTHBEARER"), "{out}");
        }
    }
    assert!(matches!(session.advance(&mut buffer), Action::Close));
    assert_eq!(session.close_reason(), "too-many-auth-failures");
}

#[test]
fn authenticate_plain_and_login_are_run_by_the_session() {
    // PLAIN after an empty continuation, with an authorization identity.
    let mut session = password_session();
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"a AUTHENTICATE plain\r\n");
    assert_eq!(out, "+ \r\n");
    let plain = sasl::encode_base64(b"bob\0alice\0alicepass");
    let (action, _) = feed(&mut session, &mut buffer, format!("{plain}\r\n").as_bytes());
    let credentials = password_of(action);
    assert_eq!(
        (credentials.authzid.as_deref(), credentials.user.as_str()),
        (Some("bob"), "alice")
    );
    session.verdict(Verdict::Unavailable).expect("verdict");
    assert!(take(&mut session).starts_with("a NO [UNAVAILABLE] "));

    // PLAIN with SASL-IR.
    let line = format!(
        "b AUTHENTICATE PLAIN {}\r\n",
        sasl::encode_base64(b"\0alice\0pw")
    );
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    assert_eq!(password_of(action).user, "alice");
    session.verdict(Verdict::PasswordRefused).expect("verdict");
    assert!(take(&mut session).starts_with("b NO [AUTHENTICATIONFAILED] "));

    // LOGIN: user and password prompts.
    let (_, out) = feed(&mut session, &mut buffer, b"c AUTHENTICATE LOGIN\r\n");
    assert_eq!(out, "+ VXNlcm5hbWU6\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"YWxpY2U=\r\n");
    assert_eq!(out, "+ UGFzc3dvcmQ6\r\n");
    let (action, _) = feed(&mut session, &mut buffer, b"YWxpY2VwYXNz\r\n");
    assert_eq!(password_of(action).user, "alice");
}

#[test]
fn without_the_error_challenge_a_refused_token_fails_at_once() {
    let mut session = ImapSession::new(ImapSessionConfig {
        tls_active: true,
        error_challenge: false,
        ..ImapSessionConfig::default()
    });
    take(&mut session);
    let line = format!("a AUTHENTICATE XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
    let (action, _) = feed(&mut session, &mut BytesMut::new(), line.as_bytes());
    assert!(matches!(action, Action::Authenticate(_)));
    session
        .verdict(refused(Refusal::InvalidToken))
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    );
}

#[test]
fn password_fallback_never_works_before_tls() {
    let mut session = ImapSession::new(ImapSessionConfig {
        starttls_available: true,
        password_fallback: true,
        ..ImapSessionConfig::default()
    });
    let text = take(&mut session);
    assert!(
        !text.contains("AUTH=PLAIN") && text.contains("LOGINDISABLED"),
        "{text}"
    );
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"a LOGIN alice pass\r\n",
    );
    assert!(matches!(action, Action::NeedInput));
    assert!(out.starts_with("a NO [PRIVACYREQUIRED] "), "{out}");
}

#[test]
fn a_password_verdict_for_a_token_is_handed_back() {
    let mut session = tls_session();
    take(&mut session);
    let line = format!("a AUTHENTICATE XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
    let (action, _) = feed(&mut session, &mut BytesMut::new(), line.as_bytes());
    assert!(matches!(action, Action::Authenticate(_)));
    let wrong = session
        .verdict(Verdict::PasswordRefused)
        .expect_err("a token is being checked, not a password");
    assert!(matches!(wrong.value, Verdict::PasswordRefused));
    assert_eq!(take(&mut session), "");
    // The right kind of verdict still lands.
    session
        .verdict(Verdict::Unavailable)
        .expect("the token verdict is pending");
    assert!(take(&mut session).starts_with("a NO [UNAVAILABLE] "));
}

#[test]
fn transcript_files() {
    let ran = crate::testing::replay_dir("imap", |setup| {
        ImapSession::new(ImapSessionConfig {
            tls_active: setup.tls,
            starttls_available: setup.starttls,
            allow_plaintext_auth: setup.plaintext_auth,
            password_fallback: setup.password_fallback,
            error_challenge: !setup.no_challenge,
            ..ImapSessionConfig::default()
        })
    });
    assert!(ran >= 7, "{ran} transcripts");
}

//! AUTH with tokens, the verdicts, and the password fallback.

use sasl::ExposeSecret;

use super::*;

const TOKEN: &str = "mF_9.B5f-4.1JqM";

/// RFC 7628 §4.3: an OAUTHBEARER response with an empty `auth=`, asking for discovery.
const RFC7628_EMPTY_AUTH: &str =
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE=";

/// An XOAUTH2 client response, base64-encoded.
fn xoauth2(user: &str, token: &str) -> String {
    sasl::encode_base64(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// An OAUTHBEARER client response naming `user`, base64-encoded.
fn oauthbearer(user: &str, token: &str) -> String {
    sasl::encode_base64(format!("n,a={user},\x01auth=Bearer {token}\x01\x01").as_bytes())
}

fn logged_in() -> Verdict {
    Verdict::LoggedIn {
        capabilities: Vec::new(),
    }
}

fn refused() -> Verdict {
    Verdict::TokenRefused {
        refusal: Refusal::InvalidToken,
        discovery: Discovery {
            scope: Some("mail".to_owned()),
            openid_configuration: Some(
                "https://auth.example.com/.well-known/openid-configuration".to_owned(),
            ),
        },
    }
}

fn expect_authenticate(action: Action) -> sasl::BearerCredentials {
    match action {
        Action::Authenticate(credentials) => credentials,
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

#[test]
fn both_mechanisms_with_and_without_initial_response() {
    let cases = [
        ("XOAUTH2", xoauth2("alice", TOKEN), Mechanism::XOAuth2),
        (
            "OAUTHBEARER",
            oauthbearer("alice", TOKEN),
            Mechanism::OAuthBearer,
        ),
    ];
    for (name, response, mechanism) in cases {
        for initial in [true, false] {
            let mut session = start(tls());
            let mut buffer = BytesMut::new();
            let action = if initial {
                let line = format!("AUTH {name} {response}\r\nSTAT\r\n");
                let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
                assert_eq!(out, "");
                action
            } else {
                let (action, out) = feed(
                    &mut session,
                    &mut buffer,
                    format!("auth {name}\r\n").as_bytes(),
                );
                assert!(matches!(action, Action::NeedInput));
                assert_eq!(out, "+ \r\n");
                let line = format!("{response}\r\nSTAT\r\n");
                let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
                assert_eq!(out, "");
                action
            };
            let credentials = expect_authenticate(action);
            assert_eq!(credentials.mechanism, mechanism);
            assert_eq!(credentials.authzid.as_deref(), Some("alice"));
            assert_eq!(credentials.token.expose_secret(), TOKEN);
            // The session stops reading: the pipelined command waits for the backend.
            assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
            assert_eq!(&buffer[..], b"STAT\r\n");
            session.verdict(logged_in()).expect("verdict");
            assert_eq!(take(&mut session), "+OK Logged in.\r\n");
            // After login nothing more is consumed.
            assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
            assert_eq!(&buffer[..], b"STAT\r\n");
            assert!(session.verdict(logged_in()).is_err());
        }
    }
}

#[test]
fn an_empty_initial_response_gets_the_empty_continuation() {
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    let (action, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2 =\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "+ \r\n");
    let line = format!("{}\r\n", xoauth2("alice", TOKEN));
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    expect_authenticate(action);
}

#[test]
fn refused_token_gets_the_challenge_then_auth_error_after_the_dummy() {
    let expected = [
        (
            "XOAUTH2",
            xoauth2("alice", TOKEN),
            // {"status":"401","schemes":"bearer","scope":"mail"}
            "+ eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n",
            "\r\n",
        ),
        (
            "OAUTHBEARER",
            oauthbearer("alice", TOKEN),
            // {"status":"invalid_token","scope":"mail","openid-configuration":"https://auth.example.com/.well-known/openid-configuration"}
            "+ eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vLndlbGwta25vd24vb3BlbmlkLWNvbmZpZ3VyYXRpb24ifQ==\r\n",
            "AQ==\r\n",
        ),
    ];
    for (mechanism, response, challenge, dummy) in expected {
        let mut session = start(tls());
        let mut buffer = BytesMut::new();
        let line = format!("AUTH {mechanism} {response}\r\n");
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        expect_authenticate(action);
        session.verdict(refused()).expect("verdict");
        assert_eq!(take(&mut session), challenge);
        let (action, out) = feed(&mut session, &mut buffer, dummy.as_bytes());
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(out, "-ERR [AUTH] Authentication failed.\r\n");
        // Back to commands.
        let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
        assert_eq!(out, "+OK\r\n");
    }
}

#[test]
fn without_error_challenge_the_refusal_is_immediate() {
    let mut session = start(Pop3SessionConfig {
        error_challenge: false,
        ..tls()
    });
    let mut buffer = BytesMut::new();
    let line = format!("AUTH XOAUTH2 {}\r\nNOOP\r\n", xoauth2("alice", TOKEN));
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    expect_authenticate(action);
    session.verdict(refused()).expect("verdict");
    assert_eq!(take(&mut session), "-ERR [AUTH] Authentication failed.\r\n");
    // The pipelined NOOP is a command again, not a dummy answer.
    let (_, out) = feed(&mut session, &mut buffer, b"");
    assert_eq!(out, "+OK\r\n");
    // An unusable response gets no challenge either.
    let line = format!("AUTH OAUTHBEARER {RFC7628_EMPTY_AUTH}\r\n");
    let (_, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert_eq!(out, "-ERR [AUTH] Authentication failed.\r\n");
}

#[test]
fn unusable_credentials_get_the_discovery_challenge() {
    let mut session = start(Pop3SessionConfig {
        discovery: Discovery {
            scope: Some("example_scope".to_owned()),
            openid_configuration: Some("https://example.com/.well-known/openid-config".to_owned()),
        },
        ..tls()
    });
    let action = replay(
        &mut session,
        &mut BytesMut::new(),
        &format!(
            "C: AUTH OAUTHBEARER {RFC7628_EMPTY_AUTH}
             S: + eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWcifQ==
             C: AQ==
             S: -ERR [AUTH] Authentication failed."
        ),
    );
    assert!(matches!(action, Action::NeedInput));
}

#[test]
fn unavailable_is_sys_temp_and_verdicts_out_of_turn_are_handed_back() {
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    // No verdict is pending before AUTH.
    let wrong = session
        .verdict(Verdict::Unavailable)
        .expect_err("nothing pending");
    assert_eq!(wrong.state, "reading commands");
    assert!(matches!(wrong.value, Verdict::Unavailable));
    // Nor while the session waits for the client's response.
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "+ \r\n");
    let wrong = session
        .verdict(logged_in())
        .expect_err("the client has not answered");
    assert!(matches!(wrong.value, Verdict::LoggedIn { .. }));
    let line = format!("{}\r\n", xoauth2("alice", TOKEN));
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    expect_authenticate(action);
    // A password verdict for a token is handed back, and the token verdict still counts.
    let wrong = session
        .verdict(Verdict::PasswordRefused)
        .expect_err("a token is being checked");
    assert!(matches!(wrong.value, Verdict::PasswordRefused));
    assert_eq!(take(&mut session), "");
    session.verdict(Verdict::Unavailable).expect("verdict");
    assert_eq!(
        take(&mut session),
        "-ERR [SYS/TEMP] Authentication service temporarily unavailable; try again later.\r\n"
    );
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "+OK\r\n");
    assert!(session.verdict(refused()).is_err());
}

#[test]
fn backend_challenge_is_relayed_unchanged() {
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    let line = format!("AUTH XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
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
    assert_eq!(out, "-ERR [AUTH] Authentication failed.\r\n");
}

#[test]
fn three_failures_close_the_connection() {
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    for round in 1..=3 {
        let line = format!("AUTH XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        expect_authenticate(action);
        session.verdict(refused()).expect("verdict");
        take(&mut session);
        let (action, out) = feed(&mut session, &mut buffer, b"\r\n");
        // One command, one reply: the last -ERR is the last line.
        assert_eq!(out, "-ERR [AUTH] Authentication failed.\r\n");
        if round < 3 {
            assert!(matches!(action, Action::NeedInput));
        } else {
            assert!(matches!(action, Action::Close));
            assert_eq!(session.close_reason(), "too-many-auth-failures");
        }
    }
}

#[test]
fn cancel_bad_base64_and_unknown_mechanisms() {
    let mut session = start(tls());
    let action = replay(
        &mut session,
        &mut BytesMut::new(),
        "C: AUTH XOAUTH2
         S: + 
         C: *
         S: -ERR Authentication cancelled.
         C: AUTH OAUTHBEARER
         S: + 
         C: !!!!
         S: -ERR Invalid base64 data.
         C: AUTH XOAUTH2 AQ=
         S: -ERR Invalid base64 data.
         C: AUTH PLAIN AGEAYg==
         S: -ERR Unsupported authentication mechanism.
         C: AUTH CRAM-MD5
         S: -ERR Unsupported authentication mechanism.
         C: NOOP
         S: +OK",
    );
    assert!(matches!(action, Action::NeedInput));
}

#[test]
fn a_16_kib_token_is_accepted_and_a_longer_line_refused_whole() {
    // The largest token the SASL layer takes: 16 KiB, in 21,880 octets of base64.
    let token = "t".repeat(sasl::MAX_TOKEN_LEN);
    let encoded = xoauth2("alice", &token);
    assert_eq!(encoded.len(), 21_880);

    // As an initial response.
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    let line = format!("AUTH XOAUTH2 {encoded}\r\n");
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    assert_eq!(expect_authenticate(action).token.expose_secret(), token);

    // As a continuation line, arriving in pieces.
    let mut session = start(tls());
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "+ \r\n");
    let line = format!("{encoded}\r\n");
    let (action, _) = feed(&mut session, &mut buffer, &line.as_bytes()[..10_000]);
    assert!(matches!(action, Action::NeedInput));
    let (action, _) = feed(&mut session, &mut buffer, &line.as_bytes()[10_000..]);
    assert_eq!(expect_authenticate(action).token.expose_secret(), token);

    // One octet more of token: too long, not invalid base64, on either path.
    let longer = xoauth2("alice", &"t".repeat(sasl::MAX_TOKEN_LEN + 1));
    let mut session = start(tls());
    let line = format!("AUTH XOAUTH2 {longer}\r\nAUTH XOAUTH2\r\n{longer}\r\n");
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        "-ERR Authentication line too long.\r\n+ \r\n-ERR Authentication line too long.\r\n"
    );

    // One octet over the line limit: refused whole, nothing of it read as commands.
    let max = Pop3SessionConfig::default().max_line;
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    let long = format!("AUTH XOAUTH2 {}\r\nNOOP\r\n", "A".repeat(max + 1 - 13));
    let (action, out) = feed(&mut session, &mut buffer, long.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "-ERR Line too long.\r\n+OK\r\n");
    // A continuation line over the limit ends the exchange.
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "+ \r\n");
    let long = format!("{}\r\nNOOP\r\n", "A".repeat(max + 1));
    let (action, out) = feed(&mut session, &mut buffer, long.as_bytes());
    assert!(matches!(action, Action::Close));
    assert_eq!(out, "-ERR Authentication line too long.\r\n");
    assert_eq!(session.close_reason(), "too-many-long-lines");
}

#[test]
fn debug_output_never_shows_the_token() {
    let encoded = xoauth2("alice", TOKEN);
    let line = format!("AUTH XOAUTH2 {encoded}\r\n");
    let command = codec::pop3::parse_command(line.as_bytes()).expect("parses");
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    let debug = format!("{command:?} {action:?} {session:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains(&encoded), "{debug}");
    // Mid-exchange too: the continuation line is never kept.
    let mut session = start(tls());
    let _ = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    let (action, _) = feed(
        &mut session,
        &mut buffer,
        format!("{encoded}\r\n").as_bytes(),
    );
    let debug = format!("{action:?} {session:?} {buffer:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains(&encoded), "{debug}");
}

#[test]
fn password_fallback_user_pass() {
    let mut session = start(Pop3SessionConfig {
        password_fallback: true,
        ..tls()
    });
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"PASS early\r\nUSER alice\r\n");
    assert_eq!(out, "-ERR No username given.\r\n+OK\r\n");
    let (action, out) = feed(&mut session, &mut buffer, b"PASS two words\r\nSTAT\r\n");
    assert_eq!(out, "");
    let Action::PasswordLogin(credentials) = action else {
        panic!("expected PasswordLogin, got {action:?}");
    };
    assert_eq!(credentials.user, "alice");
    assert_eq!(credentials.authzid, None);
    assert_eq!(credentials.password.expose_secret(), "two words");
    assert!(!format!("{credentials:?} {session:?}").contains("two words"));
    assert_eq!(&buffer[..], b"STAT\r\n");
    // A token verdict for a password is handed back.
    assert!(session.verdict(refused()).is_err());
    // Refused: the client stays with the proxy and must give USER again.
    session.verdict(Verdict::PasswordRefused).expect("verdict");
    assert_eq!(take(&mut session), "-ERR [AUTH] Authentication failed.\r\n");
    buffer.clear();
    let action = replay(
        &mut session,
        &mut buffer,
        "C: PASS again
         S: -ERR No username given.
         C: USER alice
         S: +OK
         C: CAPA
         S: +OK Capability list follows
         S: SASL OAUTHBEARER XOAUTH2 PLAIN LOGIN
         S: USER
         S: RESP-CODES
         S: AUTH-RESP-CODE
         S: IMPLEMENTATION bearergate
         S: .
         C: PASS secret
         S: -ERR No username given.
         C: USER alice
         S: +OK",
    );
    assert!(matches!(action, Action::NeedInput));
    let (action, _) = feed(&mut session, &mut buffer, b"PASS secret\r\n");
    assert!(matches!(action, Action::PasswordLogin(_)));
    session.verdict(logged_in()).expect("verdict");
    assert_eq!(take(&mut session), "+OK Logged in.\r\n");
}

#[test]
fn password_fallback_auth_plain_and_login() {
    let mut session = start(Pop3SessionConfig {
        password_fallback: true,
        ..tls()
    });
    let mut buffer = BytesMut::new();
    let (action, _) = feed(
        &mut session,
        &mut buffer,
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
    );
    let Action::PasswordLogin(credentials) = action else {
        panic!("expected PasswordLogin");
    };
    assert_eq!(credentials.user, "alice");
    session.verdict(Verdict::PasswordRefused).expect("verdict");
    assert_eq!(take(&mut session), "-ERR [AUTH] Authentication failed.\r\n");
    let action = replay(
        &mut session,
        &mut buffer,
        "C: AUTH LOGIN
         S: + VXNlcm5hbWU6
         C: YWxpY2U=
         S: + UGFzc3dvcmQ6",
    );
    assert!(matches!(action, Action::NeedInput));
    let (action, _) = feed(&mut session, &mut buffer, b"c2VjcmV0\r\n");
    let Action::PasswordLogin(credentials) = action else {
        panic!("expected PasswordLogin");
    };
    assert_eq!(credentials.password.expose_secret(), "secret");
    session.verdict(Verdict::Unavailable).expect("verdict");
    assert!(take(&mut session).starts_with("-ERR [SYS/TEMP] "));
}

#[test]
fn without_the_fallback_passwords_are_refused() {
    let mut session = start(tls());
    let action = replay(
        &mut session,
        &mut BytesMut::new(),
        "C: USER alice
         S: -ERR [AUTH] USER/PASS is not accepted: authenticate with AUTH XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.
         C: PASS secret
         S: -ERR [AUTH] USER/PASS is not accepted: authenticate with AUTH XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.
         C: PASS secret
         S: -ERR [AUTH] USER/PASS is not accepted: authenticate with AUTH XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.
         C: PASS secret
         S: -ERR [AUTH] USER/PASS is not accepted: authenticate with AUTH XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.",
    );
    // PASS carries credentials: each counts as a failed login, like IMAP's LOGIN.
    assert!(matches!(action, Action::Close));
    assert_eq!(session.close_reason(), "too-many-auth-failures");
}

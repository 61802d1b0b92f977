//! Transcript tests: client bytes in, exact server bytes out.

use sasl::ExposeSecret;

use super::*;
use crate::testing::{feed, refused, take, xoauth2};

const TOKEN: &str = "mF_9.B5f-4.1JqM";
const HOST: &str = "mx.example.com";

/// RFC 7628 §4.1, the SMTP example's initial response (`port=587`).
const RFC7628_SMTP: &str = "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";

/// RFC 7628 §4.3: an OAUTHBEARER response with an empty `auth=`, asking for discovery.
const RFC7628_EMPTY_AUTH: &str =
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE=";

const EHLO_TLS: &str = "250-mx.example.com\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
                        250-8BITMIME\r\n250-SIZE\r\n250 AUTH OAUTHBEARER XOAUTH2\r\n";

fn config() -> SmtpSessionConfig {
    SmtpSessionConfig {
        hostname: HOST.to_owned(),
        ..SmtpSessionConfig::default()
    }
}

/// Implicit TLS (465).
fn tls_session() -> SmtpSession {
    SmtpSession::new(SmtpSessionConfig {
        tls_active: true,
        ..config()
    })
}

/// STARTTLS listener (587), before the handshake.
fn starttls_session() -> SmtpSession {
    SmtpSession::new(SmtpSessionConfig {
        starttls_available: true,
        ..config()
    })
}

/// Implicit TLS, greeting read and EHLO done.
fn ready_session(buffer: &mut BytesMut) -> SmtpSession {
    let mut session = tls_session();
    take(&mut session);
    let (_, out) = feed(&mut session, buffer, b"EHLO client.example.org\r\n");
    assert_eq!(out, EHLO_TLS);
    session
}

#[test]
fn greeting_names_the_host() {
    let mut session = tls_session();
    assert_eq!(
        take(&mut session),
        "220 mx.example.com ESMTP bearergate ready\r\n"
    );
    assert_eq!(session.client_ehlo(), None);
}

#[test]
fn ehlo_on_implicit_tls_offers_auth_and_no_starttls() {
    let mut buffer = BytesMut::new();
    let session = ready_session(&mut buffer);
    assert_eq!(session.client_ehlo(), Some("client.example.org"));
}

#[test]
fn ehlo_before_starttls_offers_starttls_and_no_auth() {
    let mut session = starttls_session();
    take(&mut session);
    let (action, out) = feed(&mut session, &mut BytesMut::new(), b"ehlo [192.0.2.1]\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(
        out,
        "250-mx.example.com\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n\
         250-8BITMIME\r\n250-SIZE\r\n250 STARTTLS\r\n"
    );
    assert_eq!(session.client_ehlo(), Some("[192.0.2.1]"));
}

#[test]
fn plaintext_auth_when_allowed_and_the_backends_extensions() {
    // Postfix's EHLO to the proxy (keywords as the driver learns them).
    let backend = [
        ("PIPELINING", ""),
        ("SIZE", "52428800"),
        ("ETRN", ""),
        ("STARTTLS", ""),
        ("AUTH", "PLAIN LOGIN"),
        ("XCLIENT", "NAME ADDR PROTO HELO LOGIN"),
        ("ENHANCEDSTATUSCODES", ""),
        ("8BITMIME", ""),
        ("DSN", ""),
        ("SMTPUTF8", ""),
        ("CHUNKING", ""),
    ]
    .map(|(k, p)| (k.to_owned(), p.to_owned()));
    let mut session = SmtpSession::new(SmtpSessionConfig {
        allow_plaintext_auth: true,
        backend_extensions: Some(backend.into()),
        ..config()
    });
    take(&mut session);
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"EHLO c\r\n");
    assert_eq!(
        out,
        "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n\
         250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n\
         250-CHUNKING\r\n250 AUTH OAUTHBEARER XOAUTH2\r\n"
    );
}

#[test]
fn helo_gets_no_extensions_and_allows_auth() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"HELO old.example\r\n");
    assert_eq!(out, "250 mx.example.com\r\n");
    assert_eq!(session.client_ehlo(), Some("old.example"));
    let (action, _) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert!(matches!(action, Action::NeedInput));
}

#[test]
fn noop_rset_help_vrfy_expn_unknown_quit() {
    let mut session = tls_session();
    take(&mut session);
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"NOOP\r\nRSET\r\nHELP\r\nVRFY alice\r\nEXPN staff\r\nFOO bar\r\n\r\nQUIT\r\nNOOP\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        "250 2.0.0 OK\r\n\
         250 2.0.0 OK\r\n\
         214 2.0.0 Authenticate with AUTH OAUTHBEARER or XOAUTH2 and an OAuth 2.0 token\r\n\
         252 2.5.2 Cannot VRFY user\r\n\
         502 5.5.1 EXPN not available\r\n\
         500 5.5.2 Command unrecognized\r\n\
         500 5.5.2 Command unrecognized\r\n\
         221 2.0.0 Bye\r\n"
    );
    assert_eq!(session.close_reason(), "quit");
}

#[test]
fn mail_transaction_before_auth_is_refused() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let (_, out) = feed(
        &mut session,
        &mut buffer,
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nBDAT 10 LAST\r\n",
    );
    assert_eq!(out, "530 5.7.0 Authentication required\r\n".repeat(4));
}

#[test]
fn before_tls_only_the_rfc_3207_commands_go_ahead() {
    let mut session = starttls_session();
    take(&mut session);
    let line = format!(
        "EHLO c\r\nAUTH XOAUTH2 {}\r\nMAIL FROM:<a@example.com>\r\nHELP\r\nNOOP\r\nRSET\r\nHELO c\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, out) = feed(&mut session, &mut BytesMut::new(), line.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    let ehlo_end = out.find("250 STARTTLS\r\n").expect("EHLO reply") + 14;
    assert_eq!(
        &out[ehlo_end..],
        "530 5.7.0 Must issue a STARTTLS command first\r\n\
         530 5.7.0 Must issue a STARTTLS command first\r\n\
         530 5.7.0 Must issue a STARTTLS command first\r\n\
         250 2.0.0 OK\r\n\
         250 2.0.0 OK\r\n\
         250 mx.example.com\r\n"
    );
    // Also without EHLO: TLS is asked for first.
    let mut session = starttls_session();
    take(&mut session);
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "530 5.7.0 Must issue a STARTTLS command first\r\n");
}

#[test]
fn auth_before_ehlo_and_unknown_mechanism() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "503 5.5.1 EHLO first\r\n");
    let (_, out) = feed(
        &mut session,
        &mut buffer,
        b"EHLO c\r\nAUTH PLAIN AGEAYg==\r\n",
    );
    assert!(
        out.ends_with("504 5.5.4 Unrecognized authentication type\r\n"),
        "{out}"
    );
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH\r\nAUTH X Y Z\r\n");
    assert_eq!(
        out,
        "501 5.5.4 Syntax: AUTH mechanism [initial-response]\r\n".repeat(2)
    );
}

#[test]
fn auth_with_initial_response_asks_for_validation_and_keeps_pipelined_input() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let line = format!(
        "AUTH XOAUTH2 {}\r\nMAIL FROM:<alice@example.com>\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    let Action::Authenticate(credentials) = action else {
        panic!("expected Authenticate, got {action:?}");
    };
    assert_eq!(out, "");
    assert_eq!(credentials.authzid.as_deref(), Some("alice"));
    assert_eq!(sasl::ExposeSecret::expose_secret(&credentials.token), TOKEN);
    // The session stops reading: the pipelined command stays buffered for the backend.
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    assert_eq!(&buffer[..], b"MAIL FROM:<alice@example.com>\r\n");
    session
        .verdict(Verdict::LoggedIn {
            capabilities: Vec::new(),
        })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    assert_eq!(&buffer[..], b"MAIL FROM:<alice@example.com>\r\n");
    assert_eq!(session.client_ehlo(), Some("client.example.org"));
}

#[test]
fn rfc7628_smtp_example_initial_response() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let line = format!("AUTH OAUTHBEARER {RFC7628_SMTP}\r\n");
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert_eq!(out, "");
    let Action::Authenticate(credentials) = action else {
        panic!("expected Authenticate, got {action:?}");
    };
    assert_eq!(credentials.mechanism, Mechanism::OAuthBearer);
    assert_eq!(credentials.authzid.as_deref(), Some("user@example.com"));
    assert_eq!(credentials.host.as_deref(), Some("server.example.com"));
    assert_eq!(credentials.port, Some(587));
    assert_eq!(
        sasl::ExposeSecret::expose_secret(&credentials.token),
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
    );
    session
        .verdict(Verdict::LoggedIn {
            capabilities: Vec::new(),
        })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn auth_without_initial_response_sends_empty_334() {
    for command in ["AUTH OAUTHBEARER\r\n", "auth oauthbearer =\r\n"] {
        let mut buffer = BytesMut::new();
        let mut session = ready_session(&mut buffer);
        let (action, out) = feed(&mut session, &mut buffer, command.as_bytes());
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(out, "334 \r\n");
        let response =
            sasl::encode_base64(format!("n,a=alice,\x01auth=Bearer {TOKEN}\x01\x01").as_bytes());
        let (action, out) = feed(
            &mut session,
            &mut buffer,
            format!("{response}\r\n").as_bytes(),
        );
        assert_eq!(out, "");
        let Action::Authenticate(credentials) = action else {
            panic!("expected Authenticate");
        };
        assert_eq!(credentials.authzid.as_deref(), Some("alice"));
    }
}

#[test]
fn cancel_and_bad_base64() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n*\r\n");
    assert_eq!(out, "334 \r\n501 5.7.0 Authentication cancelled\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n!!!!\r\n");
    assert_eq!(
        out,
        "334 \r\n501 5.5.2 Cannot Base64-decode Client responses\r\n"
    );
    let (_, out) = feed(
        &mut session,
        &mut buffer,
        b"AUTH XOAUTH2 a!b\r\nAUTH XOAUTH2 AQ=\r\n",
    );
    assert_eq!(
        out,
        "501 5.5.2 Cannot Base64-decode Client responses\r\n".repeat(2)
    );
    // Back to commands after each.
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "250 2.0.0 OK\r\n");
}

#[test]
fn refused_token_gets_challenge_then_535_after_dummy() {
    let expected = [
        (
            "XOAUTH2",
            xoauth2("alice", TOKEN),
            // {"status":"401","schemes":"bearer","scope":"mail"}
            "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=\r\n",
            "\r\n",
        ),
        (
            "OAUTHBEARER",
            sasl::encode_base64(format!("n,,\x01auth=Bearer {TOKEN}\x01\x01").as_bytes()),
            // {"status":"invalid_token","scope":"mail","openid-configuration":"https://auth.example.com/.well-known/openid-configuration"}
            "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJtYWlsIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2F1dGguZXhhbXBsZS5jb20vLndlbGwta25vd24vb3BlbmlkLWNvbmZpZ3VyYXRpb24ifQ==\r\n",
            "AQ==\r\n",
        ),
    ];
    for (mechanism, response, challenge, dummy) in expected {
        let mut session = SmtpSession::new(SmtpSessionConfig {
            tls_active: true,
            ..config()
        });
        take(&mut session);
        let mut buffer = BytesMut::new();
        let line = format!("EHLO c\r\nAUTH {mechanism} {response}\r\n");
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        assert!(matches!(action, Action::Authenticate(_)));
        // The refusal carries the refusing issuer's hints.
        let discovery = Discovery {
            scope: Some("mail".to_owned()),
            openid_configuration: Some(
                "https://auth.example.com/.well-known/openid-configuration".to_owned(),
            ),
        };
        session
            .verdict(Verdict::TokenRefused {
                refusal: Refusal::InvalidToken,
                discovery,
            })
            .expect("verdict");
        assert_eq!(take(&mut session), challenge);
        let (action, out) = feed(&mut session, &mut buffer, dummy.as_bytes());
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(out, "535 5.7.8 Authentication credentials invalid\r\n");
    }
}

#[test]
fn insufficient_scope_is_named_in_the_challenge() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let line = format!(
        "AUTH OAUTHBEARER {}\r\n",
        sasl::encode_base64(format!("n,,\x01auth=Bearer {TOKEN}\x01\x01").as_bytes())
    );
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session
        .verdict(refused(Refusal::InsufficientScope))
        .expect("verdict");
    let challenge = take(&mut session);
    let encoded = challenge
        .strip_prefix("334 ")
        .and_then(|c| c.strip_suffix("\r\n"))
        .expect("a 334 challenge");
    let json = sasl::decode_base64(encoded.as_bytes()).expect("base64");
    assert_eq!(json, br#"{"status":"insufficient_scope"}"#);
}

#[test]
fn unusable_credentials_get_the_discovery_challenge() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        tls_active: true,
        discovery: Discovery {
            scope: Some("example_scope".to_owned()),
            openid_configuration: Some("https://example.com/.well-known/openid-config".to_owned()),
        },
        ..config()
    });
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!("EHLO c\r\nAUTH OAUTHBEARER {RFC7628_EMPTY_AUTH}\r\n");
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    // RFC 7628 §4.3's challenge, byte for byte.
    assert!(out.ends_with(
        "334 eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWcifQ==\r\n"
    ), "{out}");
    let (_, out) = feed(&mut session, &mut buffer, b"AQ==\r\n");
    assert_eq!(out, "535 5.7.8 Authentication credentials invalid\r\n");
}

#[test]
fn three_failures_close_the_connection() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    for round in 1..=3 {
        let line = format!("AUTH XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        assert!(matches!(action, Action::Authenticate(_)));
        session
            .verdict(refused(Refusal::InvalidToken))
            .expect("verdict");
        take(&mut session);
        let (action, out) = feed(&mut session, &mut buffer, b"\r\n");
        if round < 3 {
            assert!(matches!(action, Action::NeedInput));
            assert_eq!(out, "535 5.7.8 Authentication credentials invalid\r\n");
        } else {
            assert!(matches!(action, Action::Close));
            assert_eq!(
                out,
                "535 5.7.8 Authentication credentials invalid\r\n\
                 421 4.7.0 Too many failed authentications\r\n"
            );
            assert_eq!(session.close_reason(), "too-many-auth-failures");
        }
    }
}

#[test]
fn unavailable_is_454_and_the_session_goes_on() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let line = format!("AUTH XOAUTH2 {}\r\n", xoauth2("alice", TOKEN));
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session.verdict(Verdict::Unavailable).expect("verdict");
    assert_eq!(
        take(&mut session),
        "454 4.7.0 Temporary authentication failure, try again later\r\n"
    );
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "250 2.0.0 OK\r\n");
    // Verdicts out of turn are handed back and change nothing.
    let wrong = session
        .verdict(Verdict::LoggedIn {
            capabilities: Vec::new(),
        })
        .expect_err("no verdict is pending");
    assert!(matches!(wrong.value, Verdict::LoggedIn { .. }));
    assert!(session.verdict(refused(Refusal::InvalidToken)).is_err());
    assert!(session.verdict(Verdict::Unavailable).is_err());
    assert_eq!(take(&mut session), "");
}

#[test]
fn backend_challenge_is_relayed_unchanged() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
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
        format!("334 {}\r\n", sasl::encode_base64(&backend))
    );
    let (_, out) = feed(&mut session, &mut buffer, b"\r\n");
    assert_eq!(out, "535 5.7.8 Authentication credentials invalid\r\n");
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session
        .verdict(Verdict::BackendRefused { challenge: None })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
}

#[test]
fn starttls_stops_reading_and_forgets_ehlo() {
    let mut session = starttls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (action, out) = feed(
        &mut session,
        &mut buffer,
        b"EHLO c\r\nSTARTTLS\r\nAUTH XOAUTH2 injected\r\n",
    );
    assert!(matches!(action, Action::StartTls));
    assert!(
        out.ends_with("250 STARTTLS\r\n220 2.0.0 Ready to start TLS\r\n"),
        "{out}"
    );
    // Asked again before the handshake, the session still reads nothing.
    assert!(matches!(session.advance(&mut buffer), Action::StartTls));
    assert_eq!(&buffer[..], b"AUTH XOAUTH2 injected\r\n");
    // The driver discards what followed STARTTLS.
    buffer.clear();
    session.tls_started().expect("TLS was asked for");
    assert_eq!(session.client_ehlo(), None);
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "503 5.5.1 EHLO first\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"EHLO c2\r\n");
    assert_eq!(out, EHLO_TLS);
    assert_eq!(session.client_ehlo(), Some("c2"));
    let (action, out) = feed(&mut session, &mut buffer, b"STARTTLS\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "503 5.5.1 TLS already active\r\n");
}

#[test]
fn starttls_not_offered_or_with_parameters() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        allow_plaintext_auth: true,
        ..config()
    });
    take(&mut session);
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"STARTTLS\r\nSTARTTLS now\r\n",
    );
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(
        out,
        "454 4.7.0 TLS not available\r\n501 5.5.4 Syntax error (no parameters allowed)\r\n"
    );
}

#[test]
fn ehlo_syntax_errors() {
    let mut session = tls_session();
    take(&mut session);
    let (_, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"EHLO\r\nEHLO a b\r\nHELO\r\n",
    );
    assert_eq!(
        out,
        "501 5.5.4 Syntax: EHLO hostname\r\n501 5.5.4 Syntax: EHLO hostname\r\n\
         501 5.5.4 Syntax: HELO hostname\r\n"
    );
    assert_eq!(session.client_ehlo(), None);
}

#[test]
fn auth_line_carries_a_16_kib_token_other_commands_keep_12288() {
    assert_eq!(
        SmtpSessionConfig::default().limits,
        codec::smtp::LineLimits {
            max_line: 12_288,
            max_auth_line: 24_236
        }
    );
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    // One octet over the AUTH bound: refused by the framer.
    let long = format!("AUTH XOAUTH2 {}\r\n", "A".repeat(24_237 - 13));
    assert_eq!(long.len(), 24_237 + 2);
    let (action, out) = feed(&mut session, &mut buffer, long.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "500 5.5.2 Line too long\r\n");
    assert!(buffer.is_empty());

    // The largest token, as RFC 4954 §4's 12,288 octets could not carry it.
    let line = format!("AUTH XOAUTH2 {}\r\n", xoauth2("alice", &"t".repeat(16_384)));
    assert!(line.len() > 12_288 + 2);
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert_eq!(out, "");
    let Action::Authenticate(credentials) = action else {
        panic!("expected Authenticate, got {action:?}");
    };
    assert_eq!(credentials.authzid.as_deref(), Some("alice"));
    assert_eq!(credentials.token.expose_secret().len(), 16_384);
}

#[test]
fn auth_response_line_carries_a_16_kib_token_a_longer_line_is_refused() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "334 \r\n");
    // Arriving in pieces: refused as soon as it is certain to be too long.
    let long = "A".repeat(24_237);
    let (action, out) = feed(&mut session, &mut buffer, &long.as_bytes()[..12_000]);
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "");
    let (_, out) = feed(&mut session, &mut buffer, &long.as_bytes()[12_000..]);
    assert_eq!(
        out,
        "500 5.5.6 Authentication Exchange line is too long\r\n"
    );
    // The rest of the line is dropped, then commands are read again.
    let (_, out) = feed(&mut session, &mut buffer, b"AAAA\r\nNOOP\r\n");
    assert_eq!(out, "250 2.0.0 OK\r\n");

    let (_, out) = feed(&mut session, &mut buffer, b"AUTH XOAUTH2\r\n");
    assert_eq!(out, "334 \r\n");
    let response = xoauth2("alice", &"t".repeat(16_384));
    let (action, _) = feed(
        &mut session,
        &mut buffer,
        format!("{response}\r\n").as_bytes(),
    );
    assert!(matches!(action, Action::Authenticate(_)), "{action:?}");
}

#[test]
fn over_long_line_gets_500_then_close_when_repeated() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let long = format!("NOOP {}\r\n", "x".repeat(20_000));
    let (action, out) = feed(&mut session, &mut buffer, long.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "500 5.5.2 Line too long\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "250 2.0.0 OK\r\n");
    let (action, out) = feed(&mut session, &mut buffer, long.as_bytes());
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        "500 5.5.2 Line too long\r\n421 4.7.0 Too many long lines, closing connection\r\n"
    );
    assert_eq!(session.close_reason(), "too-many-long-lines");
}

#[test]
fn too_many_bad_commands_close_the_connection() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        tls_active: true,
        max_bad_commands: 3,
        ..config()
    });
    take(&mut session);
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: spam\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        "530 5.7.0 Authentication required\r\n530 5.7.0 Authentication required\r\n\
         530 5.7.0 Authentication required\r\n\
         421 4.7.0 Too many invalid commands, closing connection\r\n"
    );
    assert_eq!(session.close_reason(), "too-many-bad-commands");
}

#[test]
fn idle_timeout_closes_with_421() {
    let mut session = tls_session();
    take(&mut session);
    session.idle_timeout();
    assert_eq!(
        take(&mut session),
        "421 4.4.2 mx.example.com Idle timeout, closing\r\n"
    );
    assert!(matches!(
        session.advance(&mut BytesMut::from(&b"NOOP\r\n"[..])),
        Action::Close
    ));
    assert_eq!(session.close_reason(), "idle-timeout");
}

#[test]
fn debug_output_never_shows_the_token() {
    let mut buffer = BytesMut::new();
    let mut session = ready_session(&mut buffer);
    let encoded = xoauth2("alice", TOKEN);
    let line = format!("AUTH XOAUTH2 {encoded}\r\n");
    let command = codec::smtp::parse_command(line.as_bytes()).expect("parses");
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    let debug = format!("{command:?} {action:?} {session:?}");
    assert!(!debug.contains(TOKEN), "{debug}");
    assert!(!debug.contains(&encoded), "{debug}");
    // Mid-exchange too: the continuation line is never kept.
    let mut session = ready_session(&mut buffer);
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
fn replies_never_carry_injected_lines_from_config() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        hostname: "evil\r\n250 injected".to_owned(),
        ..config()
    });
    assert_eq!(
        take(&mut session),
        "220 evil  250 injected ESMTP bearergate ready\r\n"
    );
}

#[test]
fn password_fallback_runs_auth_plain_and_login_itself() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        tls_active: true,
        password_fallback: true,
        ..SmtpSessionConfig::default()
    });
    session.output_written();
    let mut buffer = BytesMut::new();
    buffer.extend_from_slice(b"EHLO client.example\r\n");
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    let ehlo = String::from_utf8_lossy(session.output()).into_owned();
    assert!(
        ehlo.contains("AUTH OAUTHBEARER XOAUTH2 PLAIN LOGIN\r\n"),
        "{ehlo}"
    );
    session.output_written();
    buffer.extend_from_slice(b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nMAIL FROM:<a@b>\r\n");
    let Action::PasswordLogin(credentials) = session.advance(&mut buffer) else {
        panic!("expected PasswordLogin");
    };
    assert_eq!(credentials.user, "alice");
    assert_eq!(&buffer[..], b"MAIL FROM:<a@b>\r\n");
    assert_eq!(session.client_ehlo(), Some("client.example"));

    // Refused: 535, and the client is still the proxy's (MAIL before AUTH gets 530).
    session.verdict(Verdict::PasswordRefused).expect("verdict");
    assert_eq!(
        String::from_utf8_lossy(session.output()),
        "535 5.7.8 Authentication credentials invalid\r\n"
    );
    session.output_written();
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    assert!(String::from_utf8_lossy(session.output()).starts_with("530 5.7.0 "));
    session.output_written();

    // LOGIN with the user as initial response, then the password prompt.
    buffer.extend_from_slice(b"AUTH LOGIN YWxpY2U=\r\n");
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    assert_eq!(
        String::from_utf8_lossy(session.output()),
        "334 UGFzc3dvcmQ6\r\n"
    );
    session.output_written();
    buffer.extend_from_slice(b"c2VjcmV0\r\n");
    let Action::PasswordLogin(credentials) = session.advance(&mut buffer) else {
        panic!("expected PasswordLogin");
    };
    assert_eq!(credentials.user, "alice");
    session
        .verdict(Verdict::LoggedIn {
            capabilities: Vec::new(),
        })
        .expect("verdict");
    assert_eq!(
        String::from_utf8_lossy(session.output()),
        "235 2.7.0 Authentication successful\r\n"
    );
}

#[test]
fn xclient_from_a_client_is_never_obeyed() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        tls_active: true,
        password_fallback: true,
        ..SmtpSessionConfig::default()
    });
    session.output_written();
    let mut buffer = BytesMut::new();
    buffer.extend_from_slice(b"EHLO c\r\nXCLIENT ADDR=203.0.113.9 LOGIN=alice\r\n");
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    let out = String::from_utf8_lossy(session.output()).into_owned();
    assert!(!out.contains("XCLIENT"), "{out}");
    assert!(
        out.ends_with("\r\n500 5.5.2 Command unrecognized\r\n"),
        "{out}"
    );
}

#[test]
fn transcript_files() {
    let ran = crate::testing::replay_dir("smtp", |setup| {
        SmtpSession::new(SmtpSessionConfig {
            tls_active: setup.tls,
            starttls_available: setup.starttls,
            allow_plaintext_auth: setup.plaintext_auth,
            password_fallback: setup.password_fallback,
            error_challenge: !setup.no_challenge,
            ..SmtpSessionConfig::default()
        })
    });
    assert!(ran >= 3, "{ran} transcripts");
}

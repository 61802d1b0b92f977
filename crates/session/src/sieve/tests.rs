//! Transcript tests: client bytes in, exact server bytes out.

use super::*;
use crate::testing::{feed, oauthbearer, refused, take, xoauth2};

const TOKEN: &str = "mF_9.B5f-4.1JqM";

const TLS_CAPABILITIES: &str = "\"IMPLEMENTATION\" \"bearergate\"\r\n\
    \"SASL\" \"OAUTHBEARER XOAUTH2\"\r\n\
    \"SIEVE\" \"fileinto vacation\"\r\n\
    \"VERSION\" \"1.0\"\r\n";

/// A backend capability block as the driver learned it.
fn backend(lines: &[(&str, Option<&str>)]) -> Option<Arc<[Capability]>> {
    Some(
        lines
            .iter()
            .map(|&(name, value)| Capability::new(name, value))
            .collect(),
    )
}

fn config() -> SieveSessionConfig {
    SieveSessionConfig {
        backend_capabilities: backend(&[
            ("SIEVE", Some("fileinto vacation")),
            ("VERSION", Some("1.0")),
        ]),
        ..SieveSessionConfig::default()
    }
}

fn tls_session() -> SieveSession {
    SieveSession::new(SieveSessionConfig {
        tls_active: true,
        ..config()
    })
}

fn starttls_session() -> SieveSession {
    SieveSession::new(SieveSessionConfig {
        starttls_available: true,
        ..config()
    })
}

fn expect_credentials(action: Action) -> sasl::BearerCredentials {
    match action {
        Action::Authenticate(credentials) => credentials,
        other => panic!("expected Authenticate, got {other:?}"),
    }
}

/// The base64 challenge line `"..."`, decoded.
fn challenge_json(line: &str) -> String {
    let encoded = line
        .strip_prefix('"')
        .and_then(|c| c.strip_suffix("\"\r\n"))
        .expect("a quoted challenge line");
    String::from_utf8(sasl::decode_base64(encoded.as_bytes()).expect("base64")).expect("utf8")
}

#[test]
fn greeting_on_tls_offers_oauth_mechanisms() {
    let mut session = tls_session();
    assert_eq!(
        take(&mut session),
        format!("{TLS_CAPABILITIES}OK \"bearergate ready.\"\r\n")
    );
}

#[test]
fn greeting_before_starttls_offers_no_mechanism() {
    let mut session = starttls_session();
    assert_eq!(
        take(&mut session),
        "\"IMPLEMENTATION\" \"bearergate\"\r\n\
         \"SASL\" \"\"\r\n\
         \"SIEVE\" \"fileinto vacation\"\r\n\
         \"STARTTLS\"\r\n\
         \"VERSION\" \"1.0\"\r\n\
         OK \"bearergate ready.\"\r\n"
    );
}

#[test]
fn plaintext_allowed_offers_both_mechanisms_and_starttls() {
    let mut session = SieveSession::new(SieveSessionConfig {
        starttls_available: true,
        allow_plaintext_auth: true,
        backend_capabilities: None,
        ..config()
    });
    let text = take(&mut session);
    assert!(
        text.contains("\"SASL\" \"OAUTHBEARER XOAUTH2\"\r\n"),
        "{text}"
    );
    assert!(text.contains("\"STARTTLS\"\r\n"), "{text}");
    assert!(text.contains("\"SIEVE\" \"\"\r\n"), "{text}");
    assert!(!text.contains("UNAUTHENTICATE"), "{text}");
}

/// Dovecot 2.3's greeting, as Pigeonhole sends it before login to a trusted network with
/// STARTTLS offered (and what other servers add: `MAXREDIRECTS`, `OWNER`, `LANGUAGE`,
/// `UNAUTHENTICATE`, extensions the proxy has never heard of).
const DOVECOT_LIKE: &[(&str, Option<&str>)] = &[
    ("IMPLEMENTATION", Some("Dovecot Pigeonhole")),
    ("SIEVE", Some("fileinto reject envelope enotify vacation")),
    ("NOTIFY", Some("mailto")),
    ("SASL", Some("PLAIN LOGIN")),
    ("STARTTLS", None),
    ("XCLIENT", None),
    ("MAXREDIRECTS", Some("4")),
    ("unauthenticate", None),
    ("OWNER", Some("alice")),
    ("LANGUAGE", Some("de")),
    ("X-EXPERIMENT", Some("a \"quoted\" value")),
    ("X-BARE", None),
    ("VERSION", Some("1.0")),
];

#[test]
fn backend_capabilities_are_relayed_except_auth_tls_and_identity() {
    let mut session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        backend_capabilities: backend(DOVECOT_LIKE),
        ..SieveSessionConfig::default()
    });
    let block = "\"IMPLEMENTATION\" \"bearergate\"\r\n\
                 \"SASL\" \"OAUTHBEARER XOAUTH2\"\r\n\
                 \"SIEVE\" \"fileinto reject envelope enotify vacation\"\r\n\
                 \"NOTIFY\" \"mailto\"\r\n\
                 \"MAXREDIRECTS\" \"4\"\r\n\
                 \"X-EXPERIMENT\" \"a \\\"quoted\\\" value\"\r\n\
                 \"X-BARE\"\r\n\
                 \"VERSION\" \"1.0\"\r\n";
    assert_eq!(
        take(&mut session),
        format!("{block}OK \"bearergate ready.\"\r\n")
    );
    // CAPABILITY gives the same block.
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"CAPABILITY\r\n");
    assert_eq!(out, format!("{block}OK \"Capability completed.\"\r\n"));
}

#[test]
fn backend_capabilities_before_and_after_starttls() {
    let mut session = SieveSession::new(SieveSessionConfig {
        starttls_available: true,
        backend_capabilities: backend(DOVECOT_LIKE),
        ..SieveSessionConfig::default()
    });
    let greeting = take(&mut session);
    assert!(
        greeting.starts_with(
            "\"IMPLEMENTATION\" \"bearergate\"\r\n\"SASL\" \"\"\r\n\
             \"SIEVE\" \"fileinto reject envelope enotify vacation\"\r\n\
             \"STARTTLS\"\r\n\"NOTIFY\" \"mailto\"\r\n"
        ),
        "{greeting}"
    );
    assert_eq!(greeting.matches("STARTTLS").count(), 1, "{greeting}");
    let mut buffer = BytesMut::new();
    let _ = feed(&mut session, &mut buffer, b"STARTTLS\r\n");
    session.tls_started().expect("TLS was asked for");
    let after = take(&mut session);
    assert!(!after.contains("STARTTLS"), "{after}");
    assert!(after.contains("\"NOTIFY\" \"mailto\"\r\n"), "{after}");
    assert!(after.contains("\"MAXREDIRECTS\" \"4\"\r\n"), "{after}");
    let upper = after.to_ascii_uppercase();
    for name in [
        "UNAUTHENTICATE",
        "OWNER",
        "LANGUAGE",
        "XCLIENT",
        "DOVECOT",
        "PLAIN",
    ] {
        assert!(!upper.contains(name), "{name}: {after}");
    }
}

#[test]
fn a_backend_without_sieve_or_version_gets_an_empty_sieve_and_no_version() {
    let mut session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        backend_capabilities: backend(&[("NOTIFY", Some("mailto"))]),
        ..SieveSessionConfig::default()
    });
    assert_eq!(
        take(&mut session),
        "\"IMPLEMENTATION\" \"bearergate\"\r\n\
         \"SASL\" \"OAUTHBEARER XOAUTH2\"\r\n\
         \"SIEVE\" \"\"\r\n\
         \"NOTIFY\" \"mailto\"\r\n\
         OK \"bearergate ready.\"\r\n"
    );
}

#[test]
fn an_unknown_backend_gets_the_proxys_own_block() {
    let mut session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        ..SieveSessionConfig::default()
    });
    assert_eq!(
        take(&mut session),
        "\"IMPLEMENTATION\" \"bearergate\"\r\n\
         \"SASL\" \"OAUTHBEARER XOAUTH2\"\r\n\
         \"SIEVE\" \"\"\r\n\
         \"VERSION\" \"1.0\"\r\n\
         OK \"bearergate ready.\"\r\n"
    );
}

#[test]
fn capability_noop_logout() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (action, out) = feed(
        &mut session,
        &mut buffer,
        b"CAPABILITY\r\nNOOP\r\nnoop \"STARTTLS-SYNC-42\"\r\nNOOP {3+}\r\na\"b\r\nLOGOUT\r\nNOOP\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        format!(
            "{TLS_CAPABILITIES}OK \"Capability completed.\"\r\n\
             OK \"NOOP completed.\"\r\n\
             OK (TAG \"STARTTLS-SYNC-42\") \"NOOP completed.\"\r\n\
             OK (TAG \"a\\\"b\") \"NOOP completed.\"\r\n\
             OK \"Logout completed.\"\r\n"
        )
    );
    assert_eq!(session.close_reason(), "logout");
}

#[test]
fn authenticate_with_quoted_initial_response_asks_for_validation() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\nLISTSCRIPTS\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    let credentials = expect_credentials(action);
    assert_eq!(out, "");
    assert_eq!(credentials.authzid.as_deref(), Some("alice"));
    assert_eq!(sasl::ExposeSecret::expose_secret(&credentials.token), TOKEN);
    // The pipelined command stays buffered for the backend.
    assert_eq!(&buffer[..], b"LISTSCRIPTS\r\n");
    assert!(matches!(session.advance(&mut buffer), Action::NeedInput));
    assert_eq!(&buffer[..], b"LISTSCRIPTS\r\n");
    session
        .verdict(Verdict::LoggedIn {
            capabilities: Vec::new(),
        })
        .expect("verdict");
    assert_eq!(take(&mut session), "OK \"Logged in.\"\r\n");
}

#[test]
fn long_quoted_token_is_accepted_as_sievelib_sends_it() {
    let mut session = tls_session();
    take(&mut session);
    let token = format!("eyJ{}", "x".repeat(1_500));
    let encoded = oauthbearer("alice", &token);
    assert!(encoded.len() > 1_024);
    let line = format!("AUTHENTICATE \"OAUTHBEARER\" \"{encoded}\"\r\n");
    let (action, out) = feed(&mut session, &mut BytesMut::new(), line.as_bytes());
    assert_eq!(out, "");
    let credentials = expect_credentials(action);
    assert_eq!(sasl::ExposeSecret::expose_secret(&credentials.token), token);
    assert_eq!(credentials.authzid.as_deref(), Some("alice"));
}

#[test]
fn literal_initial_response_is_accepted() {
    for plus in ["+", ""] {
        let mut session = tls_session();
        take(&mut session);
        let encoded = oauthbearer("alice", TOKEN);
        let line = format!(
            "AUTHENTICATE \"OAUTHBEARER\" {{{}{plus}}}\r\n{encoded}\r\n",
            encoded.len()
        );
        let mut buffer = BytesMut::new();
        // Split inside the literal: the session waits for the rest.
        let (action, out) = feed(&mut session, &mut buffer, &line.as_bytes()[..40]);
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(out, "");
        let (action, out) = feed(&mut session, &mut buffer, &line.as_bytes()[40..]);
        assert_eq!(out, "");
        let credentials = expect_credentials(action);
        assert_eq!(sasl::ExposeSecret::expose_secret(&credentials.token), TOKEN);
        assert!(buffer.is_empty());
    }
}

#[test]
fn without_initial_response_an_empty_challenge_is_sent() {
    for response in [
        format!("\"{}\"\r\n", oauthbearer("alice", TOKEN)),
        format!(
            "{{{}+}}\r\n{}\r\n",
            oauthbearer("alice", TOKEN).len(),
            oauthbearer("alice", TOKEN)
        ),
    ] {
        let mut session = tls_session();
        take(&mut session);
        let mut buffer = BytesMut::new();
        let (action, out) = feed(
            &mut session,
            &mut buffer,
            b"AUTHENTICATE \"OAUTHBEARER\"\r\n",
        );
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(out, "\"\"\r\n");
        let (action, out) = feed(&mut session, &mut buffer, response.as_bytes());
        assert_eq!(out, "");
        let credentials = expect_credentials(action);
        assert_eq!(credentials.authzid.as_deref(), Some("alice"));
    }
}

#[test]
fn empty_initial_response_gets_an_empty_challenge_once() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (_, out) = feed(
        &mut session,
        &mut buffer,
        b"AUTHENTICATE \"XOAUTH2\" \"\"\r\n",
    );
    assert_eq!(out, "\"\"\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"\"\"\r\n");
    assert_eq!(out, "NO \"Authentication failed.\"\r\n");
}

#[test]
fn refused_token_gets_challenge_then_no_after_dummy() {
    for (mechanism, response, dummy) in [
        ("XOAUTH2", xoauth2("alice", TOKEN), "\"\"\r\n"),
        ("OAUTHBEARER", oauthbearer("alice", TOKEN), "\"AQ==\"\r\n"),
        (
            "OAUTHBEARER",
            oauthbearer("alice", TOKEN),
            "{4+}\r\nAQ==\r\n",
        ),
    ] {
        let mut session = tls_session();
        take(&mut session);
        let mut buffer = BytesMut::new();
        let line = format!("AUTHENTICATE \"{mechanism}\" \"{response}\"\r\n");
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        expect_credentials(action);
        session
            .verdict(refused(Refusal::InvalidToken))
            .expect("verdict");
        let json = challenge_json(&take(&mut session));
        if mechanism == "XOAUTH2" {
            assert!(json.contains("\"status\":\"401\""), "{json}");
        } else {
            assert!(json.contains("\"status\":\"invalid_token\""), "{json}");
        }
        let (action, out) = feed(&mut session, &mut buffer, dummy.as_bytes());
        assert!(matches!(action, Action::NeedInput));
        assert_eq!(out, "NO \"Authentication failed.\"\r\n");
    }
}

#[test]
fn insufficient_scope_challenge_names_the_scope() {
    let mut session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        ..config()
    });
    take(&mut session);
    let line = format!(
        "AUTHENTICATE \"OAUTHBEARER\" \"{}\"\r\n",
        oauthbearer("alice", TOKEN)
    );
    let mut buffer = BytesMut::new();
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session
        .verdict(Verdict::TokenRefused {
            refusal: Refusal::InsufficientScope,
            discovery: Discovery {
                scope: Some("sieve".to_owned()),
                openid_configuration: Some(
                    "https://idp.example/.well-known/openid-configuration".into(),
                ),
            },
        })
        .expect("verdict");
    let json = challenge_json(&take(&mut session));
    assert!(json.contains("\"status\":\"insufficient_scope\""), "{json}");
    assert!(json.contains("\"scope\":\"sieve\""), "{json}");
    assert!(json.contains("openid-configuration"), "{json}");
}

#[test]
fn three_failures_end_with_bye_instead_of_no() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    for round in 1..=3 {
        let line = format!(
            "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\n",
            xoauth2("alice", TOKEN)
        );
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        expect_credentials(action);
        session
            .verdict(refused(Refusal::InvalidToken))
            .expect("verdict");
        take(&mut session);
        let (action, out) = feed(&mut session, &mut buffer, b"\"\"\r\n");
        if round < 3 {
            assert!(matches!(action, Action::NeedInput));
            assert_eq!(out, "NO \"Authentication failed.\"\r\n");
        } else {
            assert!(matches!(action, Action::Close));
            assert_eq!(out, "BYE \"Too many failed authentications.\"\r\n");
            assert_eq!(session.close_reason(), "too-many-auth-failures");
        }
    }
}

#[test]
fn unavailable_is_reported_as_trylater_without_challenge() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\n",
        xoauth2("alice", TOKEN)
    );
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session.verdict(Verdict::Unavailable).expect("verdict");
    assert_eq!(
        take(&mut session),
        "NO (TRYLATER) \"Authentication service temporarily unavailable; try again later.\"\r\n"
    );
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "OK \"NOOP completed.\"\r\n");
}

#[test]
fn cancel_gets_no() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"AUTHENTICATE \"XOAUTH2\"\r\n");
    assert_eq!(out, "\"\"\r\n");
    let (action, out) = feed(&mut session, &mut buffer, b"\"*\"\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "NO \"Authentication cancelled.\"\r\n");
    // Cancelling after the error challenge ends a refused attempt: it fails, and counts,
    // so that answering every challenge with `*` never escapes the failure limit.
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\n",
        xoauth2("alice", TOKEN)
    );
    for round in 1..=3 {
        let _ = feed(&mut session, &mut buffer, line.as_bytes());
        session
            .verdict(refused(Refusal::InvalidToken))
            .expect("verdict");
        take(&mut session);
        let (action, out) = feed(&mut session, &mut buffer, b"\"*\"\r\n");
        if round < 3 {
            assert_eq!(out, "NO \"Authentication failed.\"\r\n");
        } else {
            assert_eq!(out, "BYE \"Too many failed authentications.\"\r\n");
            assert!(matches!(action, Action::Close));
        }
    }
}

#[test]
fn malformed_sasl_responses_get_no() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let _ = feed(&mut session, &mut buffer, b"AUTHENTICATE \"XOAUTH2\"\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"dXNlcj0=\r\n");
    assert_eq!(out, "NO \"Invalid SASL response: expected a string.\"\r\n");
    let _ = feed(&mut session, &mut buffer, b"AUTHENTICATE \"XOAUTH2\"\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"\"not base64!\"\r\n");
    assert_eq!(out, "NO \"Invalid base64 in SASL response.\"\r\n");
    let (_, out) = feed(
        &mut session,
        &mut buffer,
        b"AUTHENTICATE \"XOAUTH2\" \"%%%\"\r\n",
    );
    assert_eq!(out, "NO \"Invalid base64 in initial response.\"\r\n");
    let (_, out) = feed(
        &mut session,
        &mut buffer,
        b"AUTHENTICATE \"XOAUTH2\" \"AQ==\"\r\n",
    );
    assert_eq!(out, "NO \"Authentication failed.\"\r\n");
}

#[test]
fn authentication_before_tls_needs_encryption() {
    let mut session = starttls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\nAUTHENTICATE \"PLAIN\" \"AGEAYg==\"\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, out) = feed(&mut session, &mut buffer, line.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(
        out,
        "NO (ENCRYPT-NEEDED) \"Authentication requires TLS: use STARTTLS first.\"\r\n\
         NO (ENCRYPT-NEEDED) \"Authentication requires TLS: use STARTTLS first.\"\r\n"
    );
}

#[test]
fn unknown_mechanism_gets_no() {
    let mut session = tls_session();
    take(&mut session);
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"AUTHENTICATE \"PLAIN\" \"AGFsaWNlAHNlY3JldA==\"\r\n",
    );
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(
        out,
        "NO \"Unsupported authentication mechanism: use OAUTHBEARER or XOAUTH2.\"\r\n"
    );
}

#[test]
fn starttls_stops_reading_and_resends_capabilities_after_the_handshake() {
    let mut session = starttls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let (action, out) = feed(&mut session, &mut buffer, b"STARTTLS\r\nCAPABILITY\r\n");
    assert!(matches!(action, Action::StartTls));
    assert_eq!(out, "OK \"Begin TLS negotiation now.\"\r\n");
    // Asked again before the handshake, the session still wants TLS and reads nothing.
    assert!(matches!(session.advance(&mut buffer), Action::StartTls));
    assert_eq!(&buffer[..], b"CAPABILITY\r\n");
    // The driver discards what followed STARTTLS.
    buffer.clear();
    session.tls_started().expect("TLS was asked for");
    assert_eq!(
        take(&mut session),
        format!("{TLS_CAPABILITIES}OK \"TLS negotiation successful.\"\r\n")
    );
    let (_, out) = feed(&mut session, &mut buffer, b"STARTTLS\r\n");
    assert_eq!(out, "NO \"TLS is already active.\"\r\n");
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\n",
        xoauth2("alice", TOKEN)
    );
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    expect_credentials(action);
}

#[test]
fn starttls_where_not_offered_gets_no() {
    let mut session = SieveSession::new(config());
    take(&mut session);
    let (action, out) = feed(&mut session, &mut BytesMut::new(), b"STARTTLS\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "NO \"STARTTLS is not available on this port.\"\r\n");
    // A stray tls_started is refused and changes nothing on the wire.
    let wrong = session.tls_started().expect_err("no TLS was asked for");
    assert_eq!(wrong.state, "reading commands");
    assert_eq!(take(&mut session), "");
}

#[test]
fn other_commands_are_refused_before_login() {
    let mut session = tls_session();
    take(&mut session);
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"LISTSCRIPTS\r\nPUTSCRIPT \"a\" {5+}\r\nkeep;\r\nUNAUTHENTICATE\r\n",
    );
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(
        out,
        "NO \"Authenticate first.\"\r\n\
         NO \"Authenticate first.\"\r\n\
         NO \"Not authenticated.\"\r\n"
    );
}

#[test]
fn over_long_line_gets_no_then_bye_when_repeated() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let mut long = b"NOOP \"".to_vec();
    long.extend(std::iter::repeat_n(b'x', 40_000));
    long.extend_from_slice(b"\"\r\n");
    let (action, out) = feed(&mut session, &mut buffer, &long);
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "NO \"Line too long.\"\r\n");
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "OK \"NOOP completed.\"\r\n");
    let (action, out) = feed(&mut session, &mut buffer, &long);
    assert!(matches!(action, Action::Close));
    assert_eq!(out, "BYE \"Too many invalid commands.\"\r\n");
}

#[test]
fn over_large_literal_is_skipped() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let mut input = b"AUTHENTICATE \"OAUTHBEARER\" {100000+}\r\n".to_vec();
    input.extend(std::iter::repeat_n(b'A', 100_000));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let (action, out) = feed(&mut session, &mut buffer, &input);
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(
        out,
        "NO \"Literal too large.\"\r\nOK \"NOOP completed.\"\r\n"
    );
}

#[test]
fn over_long_sasl_response_ends_the_exchange() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let _ = feed(
        &mut session,
        &mut buffer,
        b"AUTHENTICATE \"OAUTHBEARER\"\r\n",
    );
    let mut long = b"\"".to_vec();
    long.extend(std::iter::repeat_n(b'A', 40_000));
    long.extend_from_slice(b"\"\r\nNOOP\r\n");
    let (_, out) = feed(&mut session, &mut buffer, &long);
    assert_eq!(out, "NO \"Line too long.\"\r\nOK \"NOOP completed.\"\r\n");
}

#[test]
fn syntax_errors_get_no_then_bye() {
    let mut session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        max_bad_commands: 2,
        ..config()
    });
    take(&mut session);
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"AUTHENTICATE OAUTHBEARER\r\n\"NOOP\"\r\nNOOP\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(
        out,
        "NO \"Syntax error in command.\"\r\nBYE \"Too many invalid commands.\"\r\n"
    );
}

#[test]
fn backend_challenge_is_relayed_unchanged() {
    let mut session = tls_session();
    take(&mut session);
    let mut buffer = BytesMut::new();
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\n",
        xoauth2("alice", TOKEN)
    );
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    let backend = br#"{"status":"401","schemes":"bearer","scope":"mail"}"#.to_vec();
    session
        .verdict(Verdict::BackendRefused {
            challenge: Some(backend.clone()),
        })
        .expect("verdict");
    assert_eq!(
        take(&mut session),
        format!("\"{}\"\r\n", sasl::encode_base64(&backend))
    );
    let (_, out) = feed(&mut session, &mut buffer, b"\"\"\r\n");
    assert_eq!(out, "NO \"Authentication failed.\"\r\n");
    let _ = feed(&mut session, &mut buffer, line.as_bytes());
    session
        .verdict(Verdict::BackendRefused { challenge: None })
        .expect("verdict");
    assert_eq!(take(&mut session), "NO \"Authentication failed.\"\r\n");
}

#[test]
fn idle_timeout_says_bye_and_closes() {
    let mut session = tls_session();
    take(&mut session);
    session.idle_timeout();
    assert_eq!(
        take(&mut session),
        "BYE \"Disconnected for inactivity.\"\r\n"
    );
    assert!(matches!(
        session.advance(&mut BytesMut::new()),
        Action::Close
    ));
    assert_eq!(session.close_reason(), "idle-timeout");
}

#[test]
fn verdicts_in_the_wrong_state_are_handed_back() {
    let mut session = tls_session();
    take(&mut session);
    for verdict in [
        refused(Refusal::InvalidToken),
        Verdict::Unavailable,
        Verdict::LoggedIn {
            capabilities: Vec::new(),
        },
        Verdict::BackendRefused { challenge: None },
    ] {
        let wrong = session.verdict(verdict).expect_err("no verdict is pending");
        assert_eq!(wrong.method, "verdict");
    }
    assert_eq!(take(&mut session), "");
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"NOOP\r\n");
    assert_eq!(out, "OK \"NOOP completed.\"\r\n");
}

#[test]
fn debug_output_never_shows_the_token() {
    for (mechanism, encoded) in [
        ("XOAUTH2", xoauth2("alice", TOKEN)),
        ("OAUTHBEARER", oauthbearer("alice", TOKEN)),
    ] {
        let mut session = tls_session();
        take(&mut session);
        let mut buffer = BytesMut::new();
        let line = format!(
            "AUTHENTICATE \"{mechanism}\" {{{}+}}\r\n{encoded}\r\n",
            encoded.len()
        );
        let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
        let command = codec::sieve::parse_command(line.as_bytes()).expect("parses");
        let debug = format!("{action:?} {session:?} {command:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(!debug.contains(&encoded), "{debug}");
    }
}

#[test]
fn without_the_error_challenge_a_refused_token_fails_at_once() {
    let mut session = SieveSession::new(SieveSessionConfig {
        tls_active: true,
        error_challenge: false,
        ..config()
    });
    take(&mut session);
    let line = format!(
        "AUTHENTICATE \"XOAUTH2\" \"{}\"\r\n",
        xoauth2("alice", TOKEN)
    );
    let mut buffer = BytesMut::new();
    let (action, _) = feed(&mut session, &mut buffer, line.as_bytes());
    expect_credentials(action);
    session
        .verdict(refused(Refusal::InvalidToken))
        .expect("verdict");
    assert_eq!(take(&mut session), "NO \"Authentication failed.\"\r\n");
}

#[test]
fn transcript_files() {
    let ran = crate::testing::replay_dir("sieve", |setup| {
        assert!(
            !setup.password_fallback,
            "ManageSieve has no password fallback"
        );
        SieveSession::new(SieveSessionConfig {
            tls_active: setup.tls,
            starttls_available: setup.starttls,
            allow_plaintext_auth: setup.plaintext_auth,
            error_challenge: !setup.no_challenge,
            ..SieveSessionConfig::default()
        })
    });
    assert!(ran >= 4, "{ran} transcripts");
}

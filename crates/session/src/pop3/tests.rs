//! Transcript tests: client bytes in, exact server bytes out. The AUTH exchanges (tokens,
//! verdicts, the password fallback) are in `tests/auth.rs`.

mod auth;

use super::*;
use crate::testing::{feed, take};

const CAPA_BEFORE_TLS: &str = "+OK Capability list follows\r\nSTLS\r\nRESP-CODES\r\n\
                               AUTH-RESP-CODE\r\nIMPLEMENTATION bearergate\r\n.\r\n";
const CAPA_TLS: &str = "+OK Capability list follows\r\nSASL OAUTHBEARER XOAUTH2\r\n\
                        RESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION bearergate\r\n.\r\n";
const TLS_REQUIRED: &str = "-ERR [AUTH] Plaintext authentication disallowed on non-secure \
                            (SSL/TLS) connections: use STLS first.\r\n";

/// Implicit TLS (995).
fn tls() -> Pop3SessionConfig {
    Pop3SessionConfig {
        tls_active: true,
        ..Pop3SessionConfig::default()
    }
}

/// STLS listener (110), before the handshake.
fn stls() -> Pop3SessionConfig {
    Pop3SessionConfig {
        starttls_available: true,
        ..Pop3SessionConfig::default()
    }
}

/// A session whose greeting was checked and taken.
fn start(config: Pop3SessionConfig) -> Pop3Session {
    let mut session = Pop3Session::new(config);
    assert_eq!(take(&mut session), "+OK bearergate ready.\r\n");
    session
}

/// Replays a `C:`/`S:` transcript (RFC 1939's notation, one line each, CRLF implied):
/// each `C:` line is fed to the session, and the `S:` lines since the last `C:` must be
/// exactly what the session wrote. Returns the last action.
fn replay(session: &mut Pop3Session, buffer: &mut BytesMut, transcript: &str) -> Action {
    let mut want = String::new();
    let mut action = Action::NeedInput;
    for line in transcript
        .lines()
        .map(str::trim_start)
        .filter(|l| !l.is_empty())
    {
        if let Some(server) = line.strip_prefix("S:") {
            want.push_str(server.strip_prefix(' ').unwrap_or(server));
            want.push_str("\r\n");
        } else if let Some(client) = line.strip_prefix("C:") {
            assert_eq!(
                take(session),
                std::mem::take(&mut want),
                "before C:{client}"
            );
            let client = client.strip_prefix(' ').unwrap_or(client);
            buffer.extend_from_slice(format!("{client}\r\n").as_bytes());
            action = session.advance(buffer);
        } else {
            panic!("not a transcript line: {line}");
        }
    }
    assert_eq!(take(session), want, "at the end");
    action
}

#[test]
fn capa_before_stls_offers_stls_and_no_sasl() {
    let mut session = start(stls());
    let (action, out) = feed(&mut session, &mut BytesMut::new(), b"CAPA\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, CAPA_BEFORE_TLS);
}

#[test]
fn capa_with_tls_offers_sasl_and_no_stls() {
    let mut session = start(Pop3SessionConfig {
        starttls_available: true,
        ..tls()
    });
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"capa\r\n");
    assert_eq!(out, CAPA_TLS);
}

#[test]
fn capa_with_plaintext_auth_and_the_password_fallback() {
    let mut session = start(Pop3SessionConfig {
        allow_plaintext_auth: true,
        password_fallback: true,
        ..Pop3SessionConfig::default()
    });
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"CAPA\r\n");
    assert_eq!(
        out,
        "+OK Capability list follows\r\nSASL OAUTHBEARER XOAUTH2 PLAIN LOGIN\r\nUSER\r\n\
         RESP-CODES\r\nAUTH-RESP-CODE\r\nIMPLEMENTATION bearergate\r\n.\r\n"
    );
    // Before TLS where authentication is not allowed, the fallback offers nothing.
    let mut session = start(Pop3SessionConfig {
        password_fallback: true,
        ..stls()
    });
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"CAPA\r\n");
    assert_eq!(out, CAPA_BEFORE_TLS);
}

#[test]
fn noop_unknown_and_transaction_commands_then_quit() {
    let mut session = start(tls());
    let action = replay(
        &mut session,
        &mut BytesMut::new(),
        "C: NOOP
         S: +OK
         C: STAT
         S: -ERR Authenticate first.
         C: RETR 1
         S: -ERR Authenticate first.
         C: APOP mrose c4c9334bac560ecc979e58001b3e22fb
         S: -ERR Authenticate first.
         C: XYZZY
         S: -ERR Authenticate first.
         C:
         S: -ERR Unknown command.
         C:  NOOP
         S: -ERR Unknown command.
         C: QUIT
         S: +OK Logging out.",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(session.close_reason(), "quit");
    // Nothing is read after QUIT.
    let mut buffer = BytesMut::from(&b"NOOP\r\n"[..]);
    assert!(matches!(session.advance(&mut buffer), Action::Close));
    assert_eq!(&buffer[..], b"NOOP\r\n");
}

#[test]
fn quit_right_away_and_pipelined_commands() {
    let mut session = start(stls());
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"NOOP\r\nCAPA\r\nQUIT\r\nNOOP\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(out, format!("+OK\r\n{CAPA_BEFORE_TLS}+OK Logging out.\r\n"));
}

#[test]
fn syntax_errors_name_the_usage() {
    let mut session = start(Pop3SessionConfig {
        password_fallback: true,
        ..tls()
    });
    let action = replay(
        &mut session,
        &mut BytesMut::new(),
        "C: CAPA all
         S: -ERR No arguments allowed.
         C: STLS now
         S: -ERR No arguments allowed.
         C: QUIT now
         S: -ERR No arguments allowed.
         C: AUTH X.Y
         S: -ERR Syntax: AUTH [mechanism [initial-response]]
         C: AUTH XOAUTH2 a!b
         S: -ERR Invalid base64 data.
         C: USER
         S: -ERR Syntax: USER name
         C: PASS
         S: -ERR Syntax: PASS password",
    );
    assert!(matches!(action, Action::NeedInput));
}

#[test]
fn stls_stops_reading_and_nothing_buffered_survives() {
    let mut session = start(Pop3SessionConfig {
        allow_plaintext_auth: true,
        password_fallback: true,
        ..stls()
    });
    let mut buffer = BytesMut::new();
    let (_, out) = feed(&mut session, &mut buffer, b"USER alice\r\n");
    assert_eq!(out, "+OK\r\n");
    // A man in the middle appends a command to the client's STLS.
    let (action, out) = feed(
        &mut session,
        &mut buffer,
        b"STLS\r\nPASS injected\r\nUSER mall",
    );
    assert!(matches!(action, Action::StartTls));
    assert_eq!(out, "+OK Begin TLS negotiation\r\n");
    // Asked again before the handshake, the session still reads nothing.
    assert!(matches!(session.advance(&mut buffer), Action::StartTls));
    assert_eq!(&buffer[..], b"PASS injected\r\nUSER mall");
    assert!(session.verdict(Verdict::Unavailable).is_err());
    // The driver discards what followed STLS; framing and the USER start afresh.
    buffer.clear();
    session.tls_started().expect("TLS was asked for");
    let (_, out) = feed(&mut session, &mut buffer, b"ory\r\nPASS secret\r\n");
    assert_eq!(
        out,
        "-ERR Authenticate first.\r\n-ERR No username given.\r\n"
    );
    let (_, out) = feed(&mut session, &mut buffer, b"CAPA\r\n");
    assert!(!out.contains("STLS"), "{out}");
    let (action, out) = feed(&mut session, &mut buffer, b"STLS\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "-ERR Command not permitted when TLS active\r\n");
    assert!(session.tls_started().is_err());
}

#[test]
fn stls_where_not_offered_and_tls_started_out_of_turn() {
    let mut session = start(Pop3SessionConfig {
        allow_plaintext_auth: true,
        ..Pop3SessionConfig::default()
    });
    let (action, out) = feed(&mut session, &mut BytesMut::new(), b"STLS\r\n");
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "-ERR STLS not available on this port.\r\n");
    let wrong = session.tls_started().expect_err("no STLS pending");
    assert_eq!(wrong.method, "tls_started");
    assert_eq!(wrong.state, "reading commands");
}

#[test]
fn before_tls_every_authentication_is_refused_with_auth_code() {
    let mut session = start(Pop3SessionConfig {
        password_fallback: true,
        ..stls()
    });
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"AUTH XOAUTH2 dXNlcj1h\r\nAUTH\r\nAUTH PLAIN\r\nUSER alice\r\nPASS secret\r\nNOOP\r\n",
    );
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, format!("{}+OK\r\n", TLS_REQUIRED.repeat(5)));
}

#[test]
fn bare_auth_lists_the_mechanisms() {
    let mut session = start(tls());
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"AUTH\r\n");
    assert_eq!(
        out,
        "+OK List of supported mechanisms follows\r\nOAUTHBEARER\r\nXOAUTH2\r\n.\r\n"
    );
    let mut session = start(Pop3SessionConfig {
        password_fallback: true,
        ..tls()
    });
    let (_, out) = feed(&mut session, &mut BytesMut::new(), b"auth\r\n");
    assert_eq!(
        out,
        "+OK List of supported mechanisms follows\r\nOAUTHBEARER\r\nXOAUTH2\r\nPLAIN\r\n\
         LOGIN\r\n.\r\n"
    );
}

#[test]
fn over_long_line_is_refused_whole_then_closes_when_repeated() {
    let mut session = start(tls());
    let mut buffer = BytesMut::new();
    let long = format!("NOOP {}\r\n", "x".repeat(30_000));
    let (action, out) = feed(&mut session, &mut buffer, long.as_bytes());
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "-ERR Line too long.\r\n");
    assert!(buffer.is_empty());
    let (_, out) = feed(&mut session, &mut buffer, b"NOOP\r\n");
    assert_eq!(out, "+OK\r\n");
    // The second one, arriving in pieces, closes the connection.
    let (action, out) = feed(&mut session, &mut buffer, &long.as_bytes()[..20_000]);
    assert!(matches!(action, Action::NeedInput));
    assert_eq!(out, "");
    let (action, out) = feed(&mut session, &mut buffer, &long.as_bytes()[20_000..]);
    assert!(matches!(action, Action::Close));
    assert_eq!(out, "-ERR Line too long.\r\n");
    assert_eq!(session.close_reason(), "too-many-long-lines");
}

#[test]
fn too_many_bad_commands_close_the_connection() {
    let mut session = start(Pop3SessionConfig {
        max_bad_commands: 3,
        ..tls()
    });
    let (action, out) = feed(
        &mut session,
        &mut BytesMut::new(),
        b"STAT\r\nLIST\r\nRETR 1\r\nDELE 1\r\n",
    );
    assert!(matches!(action, Action::Close));
    assert_eq!(out, "-ERR Authenticate first.\r\n".repeat(3));
    assert_eq!(session.close_reason(), "too-many-bad-commands");
}

#[test]
fn idle_timeout_closes_without_a_word() {
    let mut session = start(tls());
    session.idle_timeout();
    assert_eq!(take(&mut session), "");
    assert!(matches!(
        session.advance(&mut BytesMut::from(&b"NOOP\r\n"[..])),
        Action::Close
    ));
    assert_eq!(session.close_reason(), "idle-timeout");
}

#[test]
fn the_default_line_limit_is_a_16_kib_token_and_a_command() {
    let config = Pop3SessionConfig::default();
    assert_eq!(config.max_line, sasl::MAX_ENCODED_RESPONSE_LEN + 1_024);
    assert_eq!(config.max_line, 24_236);
    assert_eq!(config.max_auth_failures, 3);
    assert_eq!(config.max_oversized_lines, 2);
    assert!(config.error_challenge);
}

#[test]
fn a_large_output_is_released_once_written() {
    let mut session = start(tls());
    let many = "CAPA\r\n".repeat(100);
    let (_, out) = feed(&mut session, &mut BytesMut::new(), many.as_bytes());
    assert_eq!(out, CAPA_TLS.repeat(100));
    assert_eq!(session.output().len(), 0);
}

/// Random client lines (real commands, SASL responses and junk) in random reads, against
/// every configuration, with a random verdict for every request: the session never
/// panics, every reply is whole lines, nothing is read after login, and the buffer it
/// leaves stays bounded.
#[test]
fn random_input_never_breaks_the_session() {
    let token = format!("{}\r\n", xoauth2_response());
    let lines: Vec<&[u8]> = vec![
        b"CAPA\r\n",
        b"STLS\r\n",
        b"AUTH\r\n",
        b"AUTH XOAUTH2\r\n",
        b"AUTH OAUTHBEARER =\r\n",
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH LOGIN\r\n",
        b"AUTH XOAUTH2 ",
        token.as_bytes(),
        b"YWxpY2U=\r\n",
        b"AQ==\r\n",
        b"*\r\n",
        b"\r\n",
        b"USER alice\r\n",
        b"PASS secret\r\n",
        b"NOOP\r\n",
        b"STAT\r\n",
        b"QUIT\r\n",
        b"!!\0\xff[",
        b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound as u64) as usize
    };
    let mut asked = 0;
    for round in 0..4_000 {
        let flags = round % 32;
        let mut session = Pop3Session::new(Pop3SessionConfig {
            tls_active: flags & 1 != 0,
            starttls_available: flags & 2 != 0,
            allow_plaintext_auth: flags & 4 != 0,
            password_fallback: flags & 8 != 0,
            error_challenge: flags & 16 != 0,
            max_line: 64,
            max_bad_commands: 1_000,
            max_oversized_lines: 1_000,
            ..Pop3SessionConfig::default()
        });
        let mut input: Vec<u8> = Vec::new();
        for _ in 0..next(30) {
            input.extend_from_slice(lines[next(lines.len())]);
        }
        let mut buffer = BytesMut::new();
        let mut rest = &input[..];
        let mut logged_in = false;
        while !rest.is_empty() {
            let (read, tail) = rest.split_at((next(40) + 1).min(rest.len()));
            rest = tail;
            buffer.extend_from_slice(read);
            let before = buffer.len();
            let action = session.advance(&mut buffer);
            let out = take(&mut session);
            assert!(out.is_empty() || out.ends_with("\r\n"), "{out:?}");
            if logged_in {
                assert!(matches!(action, Action::NeedInput));
                assert_eq!(buffer.len(), before, "read after login");
                continue;
            }
            match action {
                Action::NeedInput => assert!(buffer.len() <= 64 + 1, "{}", buffer.len()),
                Action::StartTls => {
                    buffer.clear();
                    session.tls_started().expect("TLS was asked for");
                }
                Action::Authenticate(_) | Action::PasswordLogin(_) => {
                    asked += 1;
                    let verdict = match next(4) {
                        0 => Verdict::Unavailable,
                        1 => Verdict::PasswordRefused,
                        2 => Verdict::TokenRefused {
                            refusal: Refusal::InsufficientScope,
                            discovery: Discovery::default(),
                        },
                        _ => Verdict::LoggedIn {
                            capabilities: Vec::new(),
                        },
                    };
                    logged_in = matches!(verdict, Verdict::LoggedIn { .. });
                    // A verdict of the wrong kind is handed back; "unavailable" fits all.
                    if session.verdict(verdict).is_err() {
                        logged_in = false;
                        session
                            .verdict(Verdict::Unavailable)
                            .expect("a request is pending");
                    }
                    let out = take(&mut session);
                    assert!(out.ends_with("\r\n"), "{out:?}");
                }
                Action::Close => break,
            }
        }
    }
    assert!(asked > 500, "only {asked} requests");
}

/// An XOAUTH2 response for alice, base64-encoded.
fn xoauth2_response() -> String {
    sasl::encode_base64(b"user=alice\x01auth=Bearer t0k3n\x01\x01")
}

#[test]
fn transcript_files() {
    let ran = crate::testing::replay_dir("pop3", |setup| {
        Pop3Session::new(Pop3SessionConfig {
            tls_active: setup.tls,
            starttls_available: setup.starttls,
            allow_plaintext_auth: setup.plaintext_auth,
            password_fallback: setup.password_fallback,
            error_challenge: !setup.no_challenge,
            ..Pop3SessionConfig::default()
        })
    });
    assert!(ran >= 2, "{ran} transcripts");
}

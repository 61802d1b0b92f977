//! Token sizes on every protocol: a 16 KiB token passes both mechanisms as an initial
//! response and on a continuation line (and, in ManageSieve, as a quoted string and a
//! literal); just past each bound the client gets its protocol's "too long" reply, never
//! "invalid base64", and the session carries on or closes as its rule says.

use bytes::BytesMut;
use sasl::{ExposeSecret, Mechanism, MAX_ENCODED_RESPONSE_LEN, MAX_RESPONSE_LEN, MAX_TOKEN_LEN};

use crate::imap::{ImapSession, ImapSessionConfig};
use crate::pop3::{Pop3Session, Pop3SessionConfig};
use crate::sieve::{SieveSession, SieveSessionConfig};
use crate::smtp::{SmtpSession, SmtpSessionConfig};
use crate::{Action, Session};

/// The line bound every protocol gives its AUTH lines.
const AUTH_LINE: usize = codec::limits::MAX_AUTH_LINE;

/// How one protocol writes an AUTH exchange and answers one that is too large.
struct Wire {
    name: &'static str,
    start: fn() -> Box<dyn Session>,
    /// The AUTH command with an initial response.
    initial: fn(&str, &str) -> String,
    /// The AUTH command without one.
    bare: fn(&str) -> String,
    /// The empty continuation the session answers `bare` with.
    prompt: &'static str,
    /// A client response line of the exchange.
    response: fn(&str) -> String,
    /// The reply to a response (or token) over the SASL layer's limits.
    too_long: &'static str,
    /// The reply to an AUTH command line over the line limit.
    line_too_long: &'static str,
    /// What the session adds when a second over-large input closes the connection.
    closing: &'static str,
}

fn wires() -> [Wire; 4] {
    [
        Wire {
            name: "imap",
            start: || {
                Box::new(ImapSession::new(ImapSessionConfig {
                    tls_active: true,
                    ..ImapSessionConfig::default()
                }))
            },
            initial: |mech, b64| format!("a AUTHENTICATE {mech} {b64}\r\n"),
            bare: |mech| format!("a AUTHENTICATE {mech}\r\n"),
            prompt: "+ \r\n",
            response: |b64| format!("{b64}\r\n"),
            too_long: "a BAD [TOOBIG] SASL response too long.\r\n",
            line_too_long: "a BAD [TOOBIG] Command line too long.\r\n",
            closing: "* BYE Too many invalid commands.\r\n",
        },
        Wire {
            name: "smtp",
            start: || {
                let mut session = SmtpSession::new(SmtpSessionConfig {
                    tls_active: true,
                    ..SmtpSessionConfig::default()
                });
                let mut input = BytesMut::from(&b"EHLO client.example\r\n"[..]);
                assert!(matches!(session.advance(&mut input), Action::NeedInput));
                Box::new(session)
            },
            initial: |mech, b64| format!("AUTH {mech} {b64}\r\n"),
            bare: |mech| format!("AUTH {mech}\r\n"),
            prompt: "334 \r\n",
            response: |b64| format!("{b64}\r\n"),
            too_long: "500 5.5.6 Authentication Exchange line is too long\r\n",
            line_too_long: "500 5.5.2 Line too long\r\n",
            closing: "421 4.7.0 Too many long lines, closing connection\r\n",
        },
        Wire {
            name: "sieve",
            start: || {
                Box::new(SieveSession::new(SieveSessionConfig {
                    tls_active: true,
                    ..SieveSessionConfig::default()
                }))
            },
            initial: |mech, b64| format!("AUTHENTICATE \"{mech}\" \"{b64}\"\r\n"),
            bare: |mech| format!("AUTHENTICATE \"{mech}\"\r\n"),
            prompt: "\"\"\r\n",
            response: |b64| format!("\"{b64}\"\r\n"),
            too_long: "NO \"SASL response too long.\"\r\n",
            line_too_long: "NO \"Line too long.\"\r\n",
            // The BYE replaces the NO it would have been.
            closing: "BYE \"Too many invalid commands.\"\r\n",
        },
        Wire {
            name: "pop3",
            start: || {
                Box::new(Pop3Session::new(Pop3SessionConfig {
                    tls_active: true,
                    ..Pop3SessionConfig::default()
                }))
            },
            initial: |mech, b64| format!("AUTH {mech} {b64}\r\n"),
            bare: |mech| format!("AUTH {mech}\r\n"),
            prompt: "+ \r\n",
            response: |b64| format!("{b64}\r\n"),
            too_long: "-ERR Authentication line too long.\r\n",
            line_too_long: "-ERR Line too long.\r\n",
            // POP3 has no unsolicited replies: the command's own -ERR is the last word.
            closing: "",
        },
    ]
}

/// A session past its greeting (and, for SMTP, its EHLO).
fn start(wire: &Wire) -> Box<dyn Session> {
    let mut session = (wire.start)();
    session.output_written();
    session
}

/// Feeds `input`; the action and what the session wrote.
fn feed(session: &mut dyn Session, input: &str) -> (Action, String) {
    let mut buffer = BytesMut::from(input.as_bytes());
    let action = session.advance(&mut buffer);
    let out = String::from_utf8_lossy(session.output()).into_owned();
    session.output_written();
    (action, out)
}

/// A client response for `mechanism` carrying a token of `token_len` octets, padded with
/// an extension key (ignored by both parsers) to exactly `total` octets when given.
fn message(mechanism: Mechanism, token_len: usize, total: Option<usize>) -> Vec<u8> {
    let (head, tail) = match mechanism {
        Mechanism::OAuthBearer => ("n,a=alice,\x01", "\x01\x01"),
        Mechanism::XOAuth2 => ("user=alice\x01", "\x01\x01"),
    };
    let token = "t".repeat(token_len);
    let bare = format!("{head}auth=Bearer {token}{tail}");
    let Some(total) = total else {
        return bare.into_bytes();
    };
    let pad = total - bare.len() - "pad=\x01".len();
    format!("{head}pad={}\x01auth=Bearer {token}{tail}", "x".repeat(pad)).into_bytes()
}

fn b64(message: &[u8]) -> String {
    sasl::encode_base64(message)
}

fn expect_token(wire: &Wire, action: Action, len: usize) {
    match action {
        Action::Authenticate(credentials) => {
            assert_eq!(
                credentials.token.expose_secret().len(),
                len,
                "{}",
                wire.name
            );
        }
        other => panic!("{}: expected Authenticate, got {other:?}", wire.name),
    }
}

#[test]
fn the_codec_line_bound_fits_the_sasl_bound_and_a_command() {
    assert_eq!(AUTH_LINE, MAX_ENCODED_RESPONSE_LEN + 1_024);
    assert_eq!(
        (
            MAX_TOKEN_LEN,
            MAX_RESPONSE_LEN,
            MAX_ENCODED_RESPONSE_LEN,
            AUTH_LINE
        ),
        (16_384, 17_408, 23_212, 24_236)
    );
    assert_eq!(codec::Limits::default().max_line, AUTH_LINE);
    assert_eq!(codec::pop3::DEFAULT_MAX_LINE, AUTH_LINE);
    assert_eq!(codec::smtp::LineLimits::default().max_auth_line, AUTH_LINE);
    // Only AUTH lines grew in SMTP.
    assert_eq!(codec::smtp::LineLimits::default().max_line, 12_288);
}

#[test]
fn a_16_kib_token_passes_every_protocol_both_mechanisms_both_ways() {
    for wire in wires() {
        for mechanism in Mechanism::ALL {
            let mech = mechanism.name();
            // The largest response: a 16 KiB token and 1 KiB of everything else.
            for total in [None, Some(MAX_RESPONSE_LEN)] {
                let response = b64(&message(mechanism, MAX_TOKEN_LEN, total));
                let mut session = start(&wire);
                let (action, out) = feed(&mut *session, &(wire.initial)(mech, &response));
                assert_eq!(out, "", "{} {mech} initial", wire.name);
                expect_token(&wire, action, MAX_TOKEN_LEN);

                let mut session = start(&wire);
                let (_, out) = feed(&mut *session, &(wire.bare)(mech));
                assert_eq!(out, wire.prompt, "{} {mech}", wire.name);
                let (action, out) = feed(&mut *session, &(wire.response)(&response));
                assert_eq!(out, "", "{} {mech} continuation", wire.name);
                expect_token(&wire, action, MAX_TOKEN_LEN);
            }
        }
    }
}

#[test]
fn sieve_takes_the_largest_token_as_a_literal_in_either_form() {
    let wire = &wires()[2];
    for mechanism in Mechanism::ALL {
        let response = b64(&message(mechanism, MAX_TOKEN_LEN, Some(MAX_RESPONSE_LEN)));
        assert_eq!(response.len(), MAX_ENCODED_RESPONSE_LEN);
        for plus in ["+", ""] {
            let mut session = start(wire);
            let command = format!(
                "AUTHENTICATE \"{}\" {{{}{plus}}}\r\n{response}\r\n",
                mechanism.name(),
                response.len()
            );
            let (action, out) = feed(&mut *session, &command);
            assert_eq!(out, "");
            expect_token(wire, action, MAX_TOKEN_LEN);
            // And as a literal on the continuation line.
            let mut session = start(wire);
            let (_, out) = feed(&mut *session, &(wire.bare)(mechanism.name()));
            assert_eq!(out, wire.prompt);
            let line = format!("{{{}{plus}}}\r\n{response}\r\n", response.len());
            let (action, _) = feed(&mut *session, &line);
            expect_token(wire, action, MAX_TOKEN_LEN);
        }
    }
}

#[test]
fn just_past_each_bound_is_too_long_never_invalid_base64() {
    for wire in wires() {
        for mechanism in Mechanism::ALL {
            let mech = mechanism.name();
            // One octet of token too many; one octet of response too many (its base64
            // still fits the line); base64 that fits the line but not the SASL layer.
            let over_token = b64(&message(mechanism, MAX_TOKEN_LEN + 1, None));
            let over_message = b64(&message(mechanism, 100, Some(MAX_RESPONSE_LEN + 1)));
            let over_base64 = "A".repeat(MAX_ENCODED_RESPONSE_LEN + 4);
            for response in [&over_token, &over_message, &over_base64] {
                let what = format!("{} {mech} {}-octet response", wire.name, response.len());
                // As an initial response: the size reply, and the session reads on.
                let mut session = start(&wire);
                let (action, out) = feed(&mut *session, &(wire.initial)(mech, response));
                assert!(matches!(action, Action::NeedInput), "{what}");
                assert_eq!(out, wire.too_long, "{what}: initial");
                // On a continuation line: the same; a second over-large input closes.
                let (_, out) = feed(&mut *session, &(wire.bare)(mech));
                assert_eq!(out, wire.prompt, "{what}");
                let (action, out) = feed(&mut *session, &(wire.response)(response));
                assert!(matches!(action, Action::Close), "{what}: {action:?}");
                let closing = if wire.name == "sieve" {
                    wire.closing.to_owned()
                } else {
                    format!("{}{}", wire.too_long, wire.closing)
                };
                assert_eq!(out, closing, "{what}: continuation");
                assert!(!out.to_ascii_lowercase().contains("base64"), "{what}");
            }
        }
    }
}

#[test]
fn a_line_past_the_line_bound_is_too_long_and_the_session_reads_on() {
    for wire in wires() {
        // One octet past the bound on the AUTH command line itself.
        let mut session = start(&wire);
        let command = (wire.initial)("XOAUTH2", "");
        let filler = "A".repeat(AUTH_LINE + 1 - (command.len() - 2));
        let line = (wire.initial)("XOAUTH2", &filler);
        assert_eq!(line.len(), AUTH_LINE + 3, "{}", wire.name);
        let (action, out) = feed(&mut *session, &line);
        assert!(matches!(action, Action::NeedInput), "{}", wire.name);
        assert_eq!(out, wire.line_too_long, "{}", wire.name);
        // The session reads on: the largest token still logs in.
        let response = b64(&message(Mechanism::XOAuth2, MAX_TOKEN_LEN, None));
        let (action, _) = feed(&mut *session, &(wire.initial)("XOAUTH2", &response));
        expect_token(&wire, action, MAX_TOKEN_LEN);

        // A continuation line of exactly the bound passes the framer and is too long for
        // the SASL layer; one octet more is too long for the framer: the same reply but
        // in ManageSieve, whose response line is a quoted string.
        let quotes = (wire.response)("").len() - 2;
        for (len, want) in [
            (AUTH_LINE - quotes, wire.too_long),
            (
                AUTH_LINE - quotes + 1,
                if quotes > 0 {
                    wire.line_too_long
                } else {
                    wire.too_long
                },
            ),
        ] {
            let mut session = start(&wire);
            let (_, out) = feed(&mut *session, &(wire.bare)("XOAUTH2"));
            assert_eq!(out, wire.prompt);
            let response = (wire.response)(&"A".repeat(len));
            let (action, out) = feed(&mut *session, &response);
            assert!(matches!(action, Action::NeedInput), "{} {len}", wire.name);
            assert_eq!(out, want, "{} {len}", wire.name);
        }
    }
}

#[test]
fn an_over_large_literal_is_skipped_up_to_128_kib_a_larger_one_closes() {
    let max = codec::Limits::default().max_command;
    assert_eq!(max, 131_072);
    let imap = &wires()[0];
    let sieve = &wires()[2];
    // Over the 64 KiB literal limit but no larger than a whole command may be: the
    // octets are skipped, the command refused, and the next command answered.
    let cases = [
        (
            imap,
            "a LOGIN {LEN+}",
            "a BAD [TOOBIG] Literal too large.\r\n",
            "b NOOP",
            "b OK NOOP completed.\r\n",
        ),
        (
            sieve,
            "PUTSCRIPT \"x\" {LEN+}",
            "NO \"Literal too large.\"\r\n",
            "NOOP",
            "OK \"NOOP completed.\"\r\n",
        ),
        (
            sieve,
            "PUTSCRIPT \"x\" {LEN}",
            "NO \"Literal too large.\"\r\n",
            "NOOP",
            "OK \"NOOP completed.\"\r\n",
        ),
    ];
    for (wire, announce, refused, next, answered) in cases {
        let mut session = start(wire);
        let command = announce.replace("LEN", &max.to_string());
        let input = format!("{command}\r\n{}\r\n{next}\r\n", "y".repeat(max));
        let (action, out) = feed(&mut *session, &input);
        assert!(matches!(action, Action::NeedInput), "{command}");
        assert_eq!(out, format!("{refused}{answered}"), "{command}");
        // One octet more cannot be skipped: the session says so and closes, reading
        // nothing after it.
        let mut session = start(wire);
        let command = announce.replace("LEN", &(max + 1).to_string());
        let (action, out) = feed(&mut *session, &format!("{command}\r\n{next}\r\n"));
        assert!(matches!(action, Action::Close), "{command}");
        let bye = if wire.name == "imap" {
            format!("{refused}* BYE Literal too large to skip; closing.\r\n")
        } else {
            "BYE \"Literal too large.\"\r\n".to_owned()
        };
        assert_eq!(out, bye, "{command}");
        assert_eq!(session.close_reason(), "literal-too-large");
    }
}

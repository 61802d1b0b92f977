//! Rows about what a client may ask before login: SASL with broken or hostile responses,
//! STARTTLS misuse (CVE-2011-0411's pipelining among it), commands that would hand the
//! client the proxy's trust (XCLIENT, XFORWARD, ID address fields, UNAUTHENTICATE) or need a
//! login, and the end of a session with commands pipelined behind it.

use crate::support::{b64, oauthbearer_b64, random_bytes, random_token, xoauth2_b64};

use super::case::Case;
use super::peers::{Port, Proto};
use super::Row;

/// What ManageSieve says last after re-sending its capabilities under TLS.
const SIEVE_TLS_OK: &str = "OK \"TLS negotiation successful.\"";

/// Base64 of a 17 KiB token in an XOAUTH2 response: over the 16 KiB every protocol takes.
fn too_large_response() -> String {
    xoauth2_b64("alice", &"A".repeat(17 * 1_024))
}

/// A response the mechanism cannot read at all: refused at once, without an error
/// challenge (there is no token to tell the client about).
fn unreadable(p: Proto, mechanism: &str, response: &str) -> Case {
    Case::new()
        .ehlo(p)
        .send(p.auth(mechanism, Some(&b64(response))))
        .expect([p.refused()])
}

/// A refused exchange: the response as initial response, the error challenge, the dummy
/// answer (XOAUTH2: an empty line), the final refusal.
fn refused(p: Proto, response: &str) -> Case {
    Case::new()
        .ehlo(p)
        .send(p.auth("XOAUTH2", Some(response)))
        .expect([p.error_challenge()])
        .send(p.response(""))
        .expect([p.refused()])
}

pub(crate) fn rows() -> Vec<Row> {
    vec![
        Row::new("an unknown SASL mechanism", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("GSSAPI", None))
                .expect([p.unknown_mechanism()])
        }),
        Row::new("a 1,000-octet mechanism name", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth(&"X".repeat(1_000), None))
                // SASL names are at most 20 characters (RFC 4422 §3.1).
                .expect([p.pick(
                    p.unknown_mechanism(),
                    "501 5.5.4 Syntax: AUTH mechanism [initial-response]",
                    p.unknown_mechanism(),
                    "-ERR Syntax: AUTH [mechanism [initial-response]]",
                )])
        }),
        Row::new("AUTHENTICATE without a mechanism", |p, _| {
            let case = Case::new().ehlo(p).send(p.pick(
                "a AUTHENTICATE\r\n",
                "AUTH\r\n",
                "AUTHENTICATE\r\n",
                "AUTH\r\n",
            ));
            match p {
                Proto::Pop3 => case.expect([
                    "+OK List of supported mechanisms follows",
                    "OAUTHBEARER",
                    "XOAUTH2",
                    ".",
                ]),
                Proto::Smtp => case.expect(["501 5.5.4 Syntax: AUTH mechanism [initial-response]"]),
                _ => case.expect([p.syntax("a")]),
            }
        }),
        Row::new("a password login without the password fallback", |p, _| {
            let plain = b64("\0alice\0alicepass");
            let case = Case::new().ehlo(p);
            match p {
                Proto::Imap => case.send("a LOGIN alice alicepass\r\n").expect([
                    "a NO [AUTHENTICATIONFAILED] LOGIN is not accepted: authenticate with XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.",
                ]),
                Proto::Pop3 => case.send("USER alice\r\n").expect([
                    "-ERR [AUTH] USER/PASS is not accepted: authenticate with AUTH XOAUTH2 or OAUTHBEARER and an OAuth 2.0 token.",
                ]),
                _ => case
                    .send(p.auth("PLAIN", Some(&plain)))
                    .expect([p.unknown_mechanism()]),
            }
        }),
        Row::new("cancel with *", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", None))
                .expect([p.go_ahead()])
                .send(p.response("*"))
                .expect([p.cancelled()])
        }),
        Row::new("* as the initial response", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some("*")))
                // Not base64 (RFC 4959, 4954, 5034: a cancel answers a challenge); only
                // ManageSieve reads it as a cancel.
                .expect([p.pick(
                    p.syntax("a").as_str(),
                    "501 5.5.2 Cannot Base64-decode Client responses",
                    p.cancelled(),
                    "-ERR Invalid base64 data.",
                )])
        }),
        Row::new("= (empty) as the initial response", |p, _| {
            // Taken as "no response yet": the empty challenge; a second empty one fails.
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some("=")))
                .expect([p.go_ahead()])
                .send(p.response(""))
                .expect([p.refused()])
        }),
        Row::new("base64 garbage as the initial response", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some("!!!not-base64!!!")))
                .expect([p.pick(
                    "a BAD Syntax error in command.",
                    "501 5.5.2 Cannot Base64-decode Client responses",
                    "NO \"Invalid base64 in initial response.\"",
                    "-ERR Invalid base64 data.",
                )])
        }),
        Row::new("base64 garbage as a response", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("OAUTHBEARER", None))
                .expect([p.go_ahead()])
                .send(p.response("%%%%"))
                .expect([p.pick(
                    "a BAD Invalid base64 in SASL response.",
                    "501 5.5.2 Cannot Base64-decode Client responses",
                    "NO \"Invalid base64 in SASL response.\"",
                    "-ERR Invalid base64 data.",
                )])
        }),
        Row::new("base64 with a blank inside a response", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("OAUTHBEARER", None))
                .expect([p.go_ahead()])
                .send(p.response("dXNl cj1h"))
                .expect([p.pick(
                    "a BAD Invalid base64 in SASL response.",
                    "501 5.5.2 Cannot Base64-decode Client responses",
                    "NO \"Invalid base64 in SASL response.\"",
                    "-ERR Invalid base64 data.",
                )])
        }),
        Row::new("valid base64 of random octets", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some(&b64(random_bytes(64)))))
                .expect([p.refused()])
        }),
        Row::new("XOAUTH2 with commas for ^A", |p, _| {
            refused(
                p,
                &b64(format!("user=alice,auth=Bearer {},,", random_token())),
            )
        }),
        Row::new("OAUTHBEARER with LF for ^A", |p, _| {
            unreadable(
                p,
                "OAUTHBEARER",
                &format!("n,a=alice,\nauth=Bearer {}\n\n", random_token()),
            )
        }),
        Row::new("OAUTHBEARER without the GS2 header", |p, _| {
            unreadable(
                p,
                "OAUTHBEARER",
                &format!("auth=Bearer {}\x01\x01", random_token()),
            )
        }),
        Row::new("OAUTHBEARER asking for channel binding", |p, s| {
            let response = format!("p=tls-unique,a=alice,\x01auth=Bearer {}\x01\x01", s.token);
            unreadable(p, "OAUTHBEARER", &response)
        }),
        Row::new("XOAUTH2 without auth=", |p, _| {
            refused(p, &b64("user=alice\x01\x01"))
        }),
        Row::new("XOAUTH2 with an empty bearer token", |p, _| {
            refused(p, &b64("user=alice\x01auth=Bearer \x01\x01"))
        }),
        Row::new("a token with NUL octets", |p, s| {
            refused(
                p,
                &b64(format!("user=alice\x01auth=Bearer {}\0x\x01\x01", s.token)),
            )
        }),
        Row::new("a token the provider does not know", |p, _| {
            refused(p, &xoauth2_b64("alice", &random_token()))
        }),
        Row::new("bob's token claiming alice", |p, s| {
            refused(p, &xoauth2_b64("alice", &s.bob_token))
        }),
        Row::new("the master user as the claimed identity", |p, s| {
            refused(p, &xoauth2_b64("alice*proxymaster", &s.token))
        }),
        Row::new("a token over 16 KiB", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some(&too_large_response())))
                .expect([p.sasl_too_long()])
        }),
        Row::new("the error challenge answered with *", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some(&xoauth2_b64("alice", &random_token()))))
                .expect([p.error_challenge()])
                .send(p.response("*"))
                .expect([p.refused()])
        }),
        Row::new("the error challenge answered with a valid token", |p, s| {
            // The exchange is over: a good token in the dummy's place must not log in.
            Case::new()
                .ehlo(p)
                .send(p.auth(
                    "OAUTHBEARER",
                    Some(&oauthbearer_b64("alice", &random_token())),
                ))
                .expect([p.error_challenge()])
                .send(p.response(&oauthbearer_b64("alice", &s.token)))
                .expect([p.refused()])
        }),
        Row::new("three refused tokens", |p, _| {
            let mut case = Case::new().ehlo(p);
            for n in 0..3 {
                case = case
                    .send(p.auth("XOAUTH2", Some(&xoauth2_b64("alice", &random_token()))))
                    .expect([p.error_challenge()])
                    .send(p.response(""));
                // ManageSieve's BYE replaces the third NO (RFC 5804 §2.1).
                if n < 2 || p != Proto::Sieve {
                    case = case.expect([p.refused()]);
                }
            }
            case.expect(p.pick(
                vec!["* BYE Too many failed authentications."],
                vec!["421 4.7.0 Too many failed authentications"],
                vec!["BYE \"Too many failed authentications.\""],
                vec![],
            ))
            .closed()
        }),
        Row::new("STARTTLS where it is not offered", |p, _| {
            Case::new()
                .send(p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS")))
                .expect([p.pick(
                    "a BAD STARTTLS is not available on this port.",
                    "454 4.7.0 TLS not available",
                    "NO \"STARTTLS is not available on this port.\"",
                    "-ERR STLS not available on this port.",
                )])
        }),
        Row::new("STARTTLS with an argument", |p, _| {
            Case::new()
                .on(Port::StartTls)
                .send(p.cmd(p.pick(
                    "STARTTLS now",
                    "STARTTLS now",
                    "STARTTLS \"now\"",
                    "STLS now",
                )))
                .expect([p.pick(
                    p.syntax("a"),
                    "501 5.5.4 Syntax error (no parameters allowed)".into(),
                    p.syntax(""),
                    "-ERR No arguments allowed.".into(),
                )])
        }),
        Row::new("STARTTLS again under TLS", |p, _| {
            Case::new()
                .on(Port::StartTls)
                .starttls(p)
                .send(p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS")))
                .expect([already_tls(p)])
        }),
        Row::new("STARTTLS on the implicit-TLS port", |p, _| {
            Case::new()
                .on(Port::Implicit)
                .send(p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS")))
                .expect([already_tls(p)])
        }),
        Row::new("two STARTTLS in one write", |p, _| {
            let starttls = p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS"));
            // The second was sent in clear text behind the first: discarded, never answered.
            let case = Case::new()
                .on(Port::StartTls)
                .send(starttls.repeat(2))
                .expect([p.starttls_ok()])
                .tls();
            match p {
                Proto::Sieve => case.expect_through(SIEVE_TLS_OK),
                _ => case,
            }
        }),
        Row::new(
            "commands injected behind STARTTLS (CVE-2011-0411)",
            |p, s| {
                let starttls = p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS"));
                let injected = p.auth("XOAUTH2", Some(&xoauth2_b64("alice", &s.token)));
                let case = Case::new()
                    .on(Port::StartTls)
                    .ehlo(p)
                    .send([starttls, injected].concat())
                    .expect([p.starttls_ok()])
                    .tls();
                let case = match p {
                    Proto::Sieve => case.expect_through(SIEVE_TLS_OK),
                    _ => case,
                };
                // A command that only a logged-in session takes gets the proxy's refusal.
                case.send(p.tagged(
                    "b",
                    p.pick(
                        "SELECT INBOX",
                        "MAIL FROM:<alice@example.test>",
                        "LISTSCRIPTS",
                        "STAT",
                    ),
                ))
                .expect([p.pick(
                    "b BAD Command not allowed before authentication.",
                    "530 5.7.0 Authentication required",
                    "NO \"Authenticate first.\"",
                    "-ERR Authenticate first.",
                )])
            },
        ),
        Row::new("clear text instead of the TLS handshake", |p, _| {
            Case::new()
                .on(Port::StartTls)
                .send(p.cmd(p.pick("STARTTLS", "STARTTLS", "STARTTLS", "STLS")))
                .expect([p.starttls_ok()])
                .send(p.probe().0)
                .closed()
        }),
        Row::new("AUTHENTICATE before STARTTLS", |p, s| {
            Case::new()
                .on(Port::StartTls)
                .ehlo(p)
                .send(p.auth("XOAUTH2", Some(&xoauth2_b64("alice", &s.token))))
                .expect([p.pick(
                    "a NO [PRIVACYREQUIRED] Authentication requires TLS: use STARTTLS first.",
                    "530 5.7.0 Must issue a STARTTLS command first",
                    "NO (ENCRYPT-NEEDED) \"Authentication requires TLS: use STARTTLS first.\"",
                    "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections: use STLS first.",
                )])
        }),
        Row::new("a password login before STARTTLS", |p, _| {
            let case = Case::new().on(Port::StartTls).ehlo(p);
            match p {
                Proto::Imap => case
                    .send("a LOGIN alice alicepass\r\n")
                    .expect(["a NO [PRIVACYREQUIRED] Use STARTTLS first; passwords are not accepted here."]),
                Proto::Smtp => case
                    .send(p.auth("PLAIN", Some(&b64("\0alice\0alicepass"))))
                    .expect(["530 5.7.0 Must issue a STARTTLS command first"]),
                Proto::Sieve => case
                    .send(p.auth("PLAIN", Some(&b64("\0alice\0alicepass"))))
                    .expect(["NO (ENCRYPT-NEEDED) \"Authentication requires TLS: use STARTTLS first.\""]),
                Proto::Pop3 => case.send("USER alice\r\n").expect([
                    "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections: use STLS first.",
                ]),
            }
        }),
        Row::new("XCLIENT from the client", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.cmd("XCLIENT ADDR=192.0.2.1 LOGIN=alice NAME=spoofed.example"))
                .expect([p.not_now()])
        }),
        Row::new("XFORWARD from the client", |p, _| {
            Case::new()
                .ehlo(p)
                .send(p.cmd("XFORWARD ADDR=192.0.2.1 NAME=spoofed.example"))
                .expect([p.not_now()])
        }),
        Row::new("ID naming another client address", |p, _| {
            let case = Case::new().send(p.cmd(
                "ID (\"x-originating-ip\" \"192.0.2.1\" \"x-originating-port\" \"1\" \"x-session-id\" \"forged\")",
            ));
            match p {
                // Answered by the proxy; at login it sends the backend its own ID with the
                // real address.
                Proto::Imap => {
                    case.expect(["* ID (\"name\" \"bearergate\")", "a OK ID completed."])
                }
                _ => case.expect([p.not_now()]),
            }
        }),
        Row::new("ID with 500 pairs", |p, _| {
            let pairs = (0..500)
                .map(|n| format!("\"k{n}\" \"v\""))
                .collect::<Vec<_>>()
                .join(" ");
            Case::new()
                .send(p.cmd(&format!("ID ({pairs})")))
                .expect([p.pick(
                    p.syntax("a"),
                    p.not_now().into(),
                    p.not_now().into(),
                    p.not_now().into(),
                )])
        }),
        Row::new("ID with a 2,000-octet value", |p, _| {
            Case::new()
                .send(p.cmd(&format!("ID (\"name\" \"{}\")", "v".repeat(2_000))))
                .expect([p.pick(
                    p.syntax("a"),
                    p.not_now().into(),
                    p.not_now().into(),
                    p.not_now().into(),
                )])
        }),
        Row::new("UNAUTHENTICATE", |p, _| {
            Case::new().send(p.cmd("UNAUTHENTICATE")).expect([p.pick(
                p.not_now(),
                p.not_now(),
                "NO \"Not authenticated.\"",
                p.not_now(),
            )])
        }),
        Row::new("commands of the logged-in state", |p, _| {
            let case = Case::new();
            match p {
                Proto::Imap => case
                    .send("a SELECT INBOX\r\nb FETCH 1 BODY[]\r\n")
                    .expect([p.not_now(), "b BAD Command not allowed before authentication."]),
                Proto::Smtp => case
                    .ehlo(p)
                    .send("MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: x\r\n\r\nhello\r\n.\r\n")
                    .expect(["530 5.7.0 Authentication required"; 3])
                    .expect([p.not_now(); 4]),
                Proto::Sieve => case
                    .send("LISTSCRIPTS\r\nGETSCRIPT \"hostile\"\r\n")
                    .expect([p.not_now(); 2]),
                Proto::Pop3 => case.send("STAT\r\nRETR 1\r\n").expect([p.not_now(); 2]),
            }
        }),
        Row::new("EHLO with CR and NUL in the name", |p, _| {
            Case::new().send(b"EHLO a\rb\0c\r\n").expect([p.pick(
                "EHLO BAD Command not allowed before authentication.",
                "501 5.5.4 Syntax: EHLO hostname",
                p.not_now(),
                p.not_now(),
            )])
        }),
        Row::new("LOGOUT with commands pipelined behind", |p, _| {
            let bytes = [
                p.cmd(p.pick("LOGOUT", "QUIT", "LOGOUT", "QUIT")),
                p.tagged("b", "NOOP"),
            ]
            .concat();
            Case::new()
                .send(bytes)
                .expect(p.pick(
                    vec!["* BYE Logging out.", "a OK LOGOUT completed."],
                    vec!["221 2.0.0 Bye"],
                    vec!["OK \"Logout completed.\""],
                    vec!["+OK Logging out."],
                ))
                .closed()
        }),
    ]
}

/// STARTTLS once TLS is up.
fn already_tls(p: Proto) -> &'static str {
    p.pick(
        "a BAD TLS is already active.",
        "503 5.5.1 TLS already active",
        "NO \"TLS is already active.\"",
        "-ERR Command not permitted when TLS active",
    )
}

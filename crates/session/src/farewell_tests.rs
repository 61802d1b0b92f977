//! The lines a client hears when it cannot be served: each protocol's refusal at a full
//! listener or address, and its goodbye when the proxy's drain is over. Exact bytes, since
//! clients act on the codes (`[UNAVAILABLE]`, `421`, `(TRYLATER)`, `[SYS/TEMP]`).

use bytes::BytesMut;

use crate::imap::{ImapSession, ImapSessionConfig};
use crate::pop3::{Pop3Session, Pop3SessionConfig};
use crate::sieve::{SieveSession, SieveSessionConfig};
use crate::smtp::{SmtpSession, SmtpSessionConfig};
use crate::testing::{feed, take};
use crate::{Action, Busy, Session};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("replies are ASCII")
}

#[test]
fn refusals_say_try_again_later_in_each_protocol() {
    let cases = [
        (
            text(crate::imap::refusal(Busy::ListenerFull)),
            "* BYE [UNAVAILABLE] Too many connections, try again later.\r\n",
        ),
        (
            text(crate::imap::refusal(Busy::AddressLimit)),
            "* BYE [UNAVAILABLE] Too many connections from your address, try again later.\r\n",
        ),
        (
            text(crate::smtp::refusal(Busy::ListenerFull, "mx.example")),
            "421 4.7.0 mx.example Too many connections, try again later\r\n",
        ),
        (
            text(crate::smtp::refusal(Busy::AddressLimit, "mx.example")),
            "421 4.7.0 mx.example Too many connections from your address, try again later\r\n",
        ),
        (
            text(crate::sieve::refusal(Busy::ListenerFull)),
            "BYE (TRYLATER) \"Too many connections, try again later.\"\r\n",
        ),
        (
            text(crate::sieve::refusal(Busy::AddressLimit)),
            "BYE (TRYLATER) \"Too many connections from your address, try again later.\"\r\n",
        ),
        (
            text(crate::pop3::refusal(Busy::ListenerFull)),
            "-ERR [SYS/TEMP] Too many connections, try again later.\r\n",
        ),
        (
            text(crate::pop3::refusal(Busy::AddressLimit)),
            "-ERR [SYS/TEMP] Too many connections from your address, try again later.\r\n",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got, want);
    }
}

/// Greeting taken, then the drain ends: the goodbye, `Close`, reason `drained`; a second
/// call adds nothing.
fn says_goodbye<S: Session>(mut session: S, goodbye: &str) {
    take(&mut session);
    session.shutting_down();
    assert_eq!(take(&mut session), goodbye);
    let mut input = BytesMut::new();
    assert!(matches!(session.advance(&mut input), Action::Close));
    assert_eq!(session.close_reason(), "drained");
    session.shutting_down();
    assert_eq!(take(&mut session), "", "a second goodbye");
}

#[test]
fn the_drain_ends_with_each_protocols_goodbye() {
    says_goodbye(
        ImapSession::new(ImapSessionConfig::default()),
        "* BYE [UNAVAILABLE] Server shutting down.\r\n",
    );
    says_goodbye(
        SmtpSession::new(SmtpSessionConfig {
            hostname: "mx.example".to_owned(),
            ..SmtpSessionConfig::default()
        }),
        "421 4.3.2 mx.example Service shutting down\r\n",
    );
    says_goodbye(
        SieveSession::new(SieveSessionConfig::default()),
        "BYE (TRYLATER) \"Server shutting down.\"\r\n",
    );
    says_goodbye(
        Pop3Session::new(Pop3SessionConfig::default()),
        "-ERR [SYS/TEMP] Server shutting down.\r\n",
    );
}

#[test]
fn the_goodbye_interrupts_an_authentication_exchange() {
    let mut session = ImapSession::new(ImapSessionConfig {
        tls_active: true,
        ..ImapSessionConfig::default()
    });
    take(&mut session);
    let mut input = BytesMut::new();
    let (action, written) = feed(&mut session, &mut input, b"a AUTHENTICATE XOAUTH2\r\n");
    assert!(matches!(action, Action::NeedInput), "{action:?}");
    assert_eq!(written, "+ \r\n");
    session.shutting_down();
    assert_eq!(
        take(&mut session),
        "* BYE [UNAVAILABLE] Server shutting down.\r\n"
    );
    assert!(matches!(session.advance(&mut input), Action::Close));
}

/// Greeting taken, then the pre-login deadline passes: the deadline's own goodbye (not the
/// idle one), `Close`, reason `prelogin-deadline`; a second call adds nothing.
fn says_deadline_goodbye<S: Session>(mut session: S, goodbye: &str) {
    take(&mut session);
    session.deadline_passed();
    assert_eq!(take(&mut session), goodbye);
    let mut input = BytesMut::new();
    assert!(matches!(session.advance(&mut input), Action::Close));
    assert_eq!(session.close_reason(), "prelogin-deadline");
    session.deadline_passed();
    assert_eq!(take(&mut session), "", "a second goodbye");
}

#[test]
fn the_prelogin_deadline_has_its_own_goodbye_in_each_protocol() {
    says_deadline_goodbye(
        ImapSession::new(ImapSessionConfig::default()),
        "* BYE Took too long to log in.\r\n",
    );
    says_deadline_goodbye(
        SmtpSession::new(SmtpSessionConfig {
            hostname: "mx.example".to_owned(),
            ..SmtpSessionConfig::default()
        }),
        "421 4.4.2 mx.example Timeout: took too long to log in\r\n",
    );
    says_deadline_goodbye(
        SieveSession::new(SieveSessionConfig::default()),
        "BYE \"Took too long to log in.\"\r\n",
    );
    says_deadline_goodbye(
        Pop3Session::new(Pop3SessionConfig::default()),
        "-ERR Took too long to log in.\r\n",
    );
}

/// The deadline can pass in the middle of a command line the client trickles: the
/// goodbye follows whatever was answered, and the half line is never answered.
#[test]
fn the_deadline_goodbye_ends_a_half_sent_command() {
    let mut session = SmtpSession::new(SmtpSessionConfig {
        hostname: "mx.example".to_owned(),
        ..SmtpSessionConfig::default()
    });
    take(&mut session);
    let mut input = BytesMut::new();
    let (action, written) = feed(&mut session, &mut input, b"NOOP\r\nNO");
    assert!(matches!(action, Action::NeedInput), "{action:?}");
    assert_eq!(written, "250 2.0.0 OK\r\n");
    session.deadline_passed();
    assert_eq!(
        take(&mut session),
        "421 4.4.2 mx.example Timeout: took too long to log in\r\n"
    );
    assert!(matches!(session.advance(&mut input), Action::Close));
}

/// Logged in, the session is done: the deadline (which the driver no longer watches then)
/// adds nothing.
#[test]
fn the_deadline_says_nothing_after_a_login() {
    let mut session = ImapSession::new(ImapSessionConfig {
        tls_active: true,
        ..ImapSessionConfig::default()
    });
    take(&mut session);
    let mut input = BytesMut::new();
    let response = crate::testing::xoauth2("alice", "token");
    let line = format!("a AUTHENTICATE XOAUTH2 {response}\r\n");
    let (action, _) = feed(&mut session, &mut input, line.as_bytes());
    assert!(matches!(action, Action::Authenticate(_)), "{action:?}");
    session
        .verdict(crate::Verdict::LoggedIn {
            capabilities: Vec::new(),
        })
        .expect("the verdict it asked for");
    take(&mut session);
    session.deadline_passed();
    assert_eq!(take(&mut session), "");
    assert!(matches!(session.advance(&mut input), Action::NeedInput));
}

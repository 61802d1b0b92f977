//! The backend-login machines (`session::backend`: the proxy in the client role) fed
//! arbitrary backend bytes in reads of the fuzzer's choosing, driven as
//! `crates/proxy/src/backend/mod.rs` drives them: write the output, read on `NeedInput`
//! (and report `closed` when the bytes run out), discard the buffer and report the
//! handshake on `StartTls`, note what is learned, stop at the end.
//!
//! Checks, whatever the backend sends:
//! - no panic, no event without progress, and nothing but `Failed(Finished)` after the end;
//! - every write is whole CRLF lines of commands (or SASL responses) the protocol's command
//!   parser reads;
//! - STARTTLS only when asked for, once; after it nothing read before counts;
//! - no secret (master password, token, client password, or a SASL response carrying one)
//!   in the `Debug` output of the machine, its events or its errors;
//! - a refusal is the client's fault only where the client's own credentials were tried
//!   (passthrough token, fallback password); the master user's is a configuration error;
//! - after a login the bytes left over are the end of what the backend sent; IMAP's
//!   capabilities are filtered for the client; SMTP's last EHLO before the hand-over offers
//!   no XCLIENT or XFORWARD.
//!
//! Input: see `bearergate_fuzz::script` (the backend's bytes; decisions unused). Flags:
//! bits 0–1 the protocol (IMAP, SMTP, ManageSieve, a start-up probe), bits 2–4 the
//! strategy (master, plain-authzid, passthrough OAUTHBEARER, passthrough XOAUTH2, xclient,
//! password; the probe: SMTP for even values, ManageSieve for odd), bit 5 STARTTLS, bit 6
//! forward the client's address, bit 7 the client named itself.
#![no_main]

use std::fmt::Debug;

use bearergate_fuzz::script::Script;
use bearergate_fuzz::{trace, tracing};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sasl::{BearerCredentials, Mechanism, PasswordCredentials, SecretString};
use session::backend::imap::ImapLogin;
use session::backend::sieve::SieveLogin;
use session::backend::smtp::SmtpLogin;
use session::backend::{
    BackendLogin, Event, Fault, Learned, LoginError, LoginRequest, MasterUser, Strategy,
};

const MASTER_PASSWORD: &str = "MASTER-secret-pw-1";
const TOKEN: &str = "TOKEN_abcdef.123-xyz";
const CLIENT_PASSWORD: &str = "CLIENT-secret-pw-2";
const SECRETS: [&str; 3] = [MASTER_PASSWORD, TOKEN, CLIENT_PASSWORD];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Imap,
    Smtp,
    Sieve,
}

fuzz_target!(|data: &[u8]| {
    let script = Script::parse(data);
    let strategy_bits = (script.flags >> 2) & 7;
    let starttls = script.flag(5);
    let request = LoginRequest {
        strategy: strategy(strategy_bits),
        client: "192.0.2.7:40123".parse().expect("an address"),
        client_name: script.flag(7).then(|| "client.example".to_owned()),
        session_id: "s-1f2e".to_owned(),
        starttls,
        forward_client_address: script.flag(6),
    };
    let own_credentials = matches!(
        request.strategy,
        Strategy::Passthrough { .. } | Strategy::Password(_)
    );
    let setup = Setup {
        starttls,
        probe: script.flags & 3 == 3,
        own_credentials,
    };
    let built = match script.flags & 3 {
        0 => ImapLogin::new(request).map(|m| drive(m, Protocol::Imap, setup, &script)),
        1 => SmtpLogin::new(request).map(|m| drive(m, Protocol::Smtp, setup, &script)),
        2 => SieveLogin::new(request).map(|m| drive(m, Protocol::Sieve, setup, &script)),
        _ if strategy_bits.is_multiple_of(2) => {
            drive(SmtpLogin::probe(starttls), Protocol::Smtp, setup, &script);
            return;
        }
        _ => {
            drive(SieveLogin::probe(starttls), Protocol::Sieve, setup, &script);
            return;
        }
    };
    if let Err(refused) = built {
        assert!(
            matches!(refused, LoginError::Unsupported { .. }),
            "{refused:?}"
        );
        assert_eq!(refused.fault(), Fault::Configuration);
    }
});

fn strategy(bits: u8) -> Strategy {
    let user = "alice".to_owned();
    let master = MasterUser {
        name: "proxymaster".to_owned(),
        password: SecretString::from(MASTER_PASSWORD),
        login_format: "{user}*{master}".to_owned(),
    };
    let bearer = |mechanism| BearerCredentials {
        mechanism,
        authzid: Some("alice".to_owned()),
        token: SecretString::from(TOKEN),
        host: Some("mail.example".to_owned()),
        port: Some(993),
    };
    match bits {
        1 => Strategy::PlainAuthzid { user, master },
        2 => Strategy::Passthrough {
            user,
            credentials: bearer(Mechanism::OAuthBearer),
        },
        3 => Strategy::Passthrough {
            user,
            credentials: bearer(Mechanism::XOAuth2),
        },
        4 => Strategy::Xclient { user },
        5 => Strategy::Password(PasswordCredentials {
            authzid: None,
            user,
            password: SecretString::from(CLIENT_PASSWORD),
        }),
        _ => Strategy::Master { user, master },
    }
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    starttls: bool,
    probe: bool,
    /// The strategy tries the client's own token or password.
    own_credentials: bool,
}

fn drive<M: BackendLogin + Debug>(
    mut machine: M,
    protocol: Protocol,
    setup: Setup,
    script: &Script,
) {
    let budget = 16 + 2 * (script.data_len() + script.reads.len());
    let mut reads = script.reads.iter();
    let mut input = BytesMut::new();
    // What the backend sent since the last handshake: a login's leftover is its end.
    let mut fed = Vec::new();
    // Everything the backend sent: a secret it echoes may show in an error's reply text.
    let mut heard = Vec::new();
    // Long base64 words the machine wrote: SASL responses, which carry secrets.
    let mut written_secrets = Vec::new();
    let mut tls = false;
    let mut events = 0usize;
    loop {
        let event = machine.advance(&mut input);
        if tracing() {
            eprintln!("event: {event:?}");
        }
        flush(&mut machine, protocol, &mut written_secrets);
        let shown = format!("{event:?} {machine:?}");
        assert_no_secret(&shown, &written_secrets, &heard);
        match event {
            Event::NeedInput => {
                let Some(read) = reads.next() else {
                    let error = machine.closed();
                    assert!(
                        !matches!(error, LoginError::Finished),
                        "closed while running"
                    );
                    assert_no_secret(&format!("{error} {error:?}"), &written_secrets, &heard);
                    return assert_finished(&mut machine, &mut input);
                };
                trace("S", &read.bytes);
                input.extend_from_slice(&read.bytes);
                fed.extend_from_slice(&read.bytes);
                heard.extend_from_slice(&read.bytes);
                continue;
            }
            Event::Learned(learned) => check_learned(protocol, &learned),
            Event::StartTls => {
                assert!(setup.starttls, "STARTTLS not asked for");
                assert!(!tls, "STARTTLS twice");
                tls = true;
                input.clear();
                fed.clear();
                let Ok(()) = machine.tls_started() else {
                    panic!("tls_started refused after StartTls");
                };
                assert!(machine.tls_started().is_err(), "a second tls_started taken");
            }
            Event::LoggedIn(logged_in) => {
                assert!(!setup.probe, "a probe logged in");
                assert!(
                    fed.ends_with(&logged_in.leftover),
                    "the leftover is not what the backend sent last"
                );
                assert!(input.is_empty(), "bytes kept back from the client");
                for capability in &logged_in.capabilities {
                    let upper = capability.to_ascii_uppercase();
                    assert!(
                        !upper.starts_with("AUTH=") && upper != "UNAUTHENTICATE",
                        "{capability} reaches the client"
                    );
                }
                if protocol == Protocol::Smtp {
                    let consumed = fed.len() - logged_in.leftover.len();
                    last_ehlo_is_safe(&fed[..consumed]);
                }
                return assert_finished(&mut machine, &mut input);
            }
            Event::Probed => {
                assert!(setup.probe, "a login ended as a probe");
                return assert_finished(&mut machine, &mut input);
            }
            Event::Failed(error) => {
                assert!(
                    !matches!(error, LoginError::Finished),
                    "failed while running"
                );
                assert_no_secret(&format!("{error} {error:?}"), &written_secrets, &heard);
                if error.fault() == Fault::Client {
                    assert!(setup.own_credentials, "the client blamed for {error:?}");
                }
                return assert_finished(&mut machine, &mut input);
            }
        }
        events += 1;
        assert!(
            events <= budget,
            "{events} events from {budget} octets: no progress"
        );
    }
}

/// After its end a machine only says so, and consumes and writes nothing.
fn assert_finished<M: BackendLogin>(machine: &mut M, input: &mut BytesMut) {
    let before = input.clone();
    assert!(matches!(
        machine.advance(input),
        Event::Failed(LoginError::Finished)
    ));
    assert_eq!(*input, before, "input consumed after the end");
    assert!(machine.output().is_empty(), "output after the end");
    assert!(
        machine.tls_started().is_err(),
        "tls_started taken after the end"
    );
    assert!(matches!(machine.closed(), LoginError::Finished));
}

/// Checks and writes out what the machine has to send; remembers its SASL responses.
fn flush<M: BackendLogin>(machine: &mut M, protocol: Protocol, secrets: &mut Vec<String>) {
    let out = machine.output().to_vec();
    trace("C", &out);
    machine.output_written();
    assert!(
        machine.output().is_empty(),
        "output survived output_written"
    );
    if out.is_empty() {
        return;
    }
    assert!(out.ends_with(b"\r\n"), "a write ends mid-line: {out:?}");
    for word in out.split(|b| !(b.is_ascii_alphanumeric() || b"+/=".contains(b))) {
        if word.len() >= 24 {
            secrets.push(String::from_utf8_lossy(word).into_owned());
        }
    }
    match protocol {
        Protocol::Imap => imap_commands(&out),
        Protocol::Smtp => smtp_commands(&out),
        Protocol::Sieve => sieve_commands(&out),
    }
}

/// Base64 text, or empty, or `*`: a SASL response line rather than a command.
fn is_sasl_line(line: &[u8]) -> bool {
    line == b"*" || sasl::decode_base64(line).is_ok() || line.is_empty()
}

fn imap_commands(out: &[u8]) {
    use codec::imap::{parse_command, CommandFramer, FramedCommand, Limits};
    let mut framer = CommandFramer::new(Limits {
        max_line: 1 << 20,
        max_literal: 1 << 20,
        max_command: 1 << 20,
    });
    let mut buf = BytesMut::from(out);
    while let Ok(Some(framed)) = framer.decode(&mut buf) {
        let FramedCommand::Complete(command) = framed else {
            continue;
        };
        let line = command.strip_suffix(b"\r\n").unwrap_or(&command);
        assert!(
            parse_command(&command).is_ok() || is_sasl_line(line),
            "the proxy wrote {:?}",
            String::from_utf8_lossy(&command)
        );
    }
}

fn smtp_commands(out: &[u8]) {
    use codec::smtp::parse_command;
    for line in out.split_inclusive(|&b| b == b'\n') {
        let bare = line.strip_suffix(b"\r\n").expect("CRLF line ends");
        assert!(
            !bare.contains(&b'\r') && !bare.contains(&b'\n'),
            "bare CR/LF"
        );
        assert!(bare.len() + 2 <= 12_288, "an over-long command line");
        assert!(
            parse_command(bare).is_ok() || is_sasl_line(bare),
            "the proxy wrote {:?}",
            String::from_utf8_lossy(line)
        );
    }
}

fn sieve_commands(out: &[u8]) {
    use codec::sieve::{parse_command, parse_sasl_response, Framer, Limits};
    let mut framer = Framer::new(Limits {
        max_line: 1 << 20,
        max_literal: 1 << 20,
        max_command: 1 << 20,
    });
    let mut buf = BytesMut::from(out);
    while let Ok(Some(command)) = framer.decode(&mut buf) {
        assert!(
            parse_command(&command).is_ok() || parse_sasl_response(&command).is_ok(),
            "the proxy wrote {:?}",
            String::from_utf8_lossy(&command)
        );
    }
    assert!(
        buf.is_empty(),
        "a partial command: {:?}",
        String::from_utf8_lossy(out)
    );
}

fn check_learned(protocol: Protocol, learned: &Learned) {
    match learned {
        Learned::SmtpExtensions(keywords) => {
            assert_eq!(protocol, Protocol::Smtp);
            for (keyword, _) in keywords {
                assert!(
                    !keyword.is_empty() && *keyword == keyword.to_ascii_uppercase(),
                    "keyword {keyword:?}"
                );
            }
        }
        Learned::SieveCapabilities(block) => {
            assert_eq!(protocol, Protocol::Sieve);
            assert!(block.len() <= session::backend::sieve::MAX_CAPABILITIES);
        }
    }
}

/// The reply the hand-over followed: the last EHLO's, which must not offer the client what
/// only the proxy may use.
fn last_ehlo_is_safe(consumed: &[u8]) {
    use codec::smtp::{ehlo_keywords, ReplyFramer, ReplyLimits};
    let mut framer = ReplyFramer::new(ReplyLimits::default());
    let mut buf = BytesMut::from(consumed);
    let mut last = None;
    loop {
        match framer.decode(&mut buf) {
            Ok(Some(reply)) => last = Some(reply),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    let Some(last) = last else {
        panic!("logged in without an EHLO reply");
    };
    assert_eq!(last.code, 250, "handed over after {last:?}");
    for (keyword, _) in ehlo_keywords(&last.lines) {
        assert!(
            keyword != "XCLIENT" && keyword != "XFORWARD",
            "handed over with {keyword} offered"
        );
    }
}

/// No secret in `shown`, unless the backend itself sent it (and it is quoted back in a
/// reply for the log).
fn assert_no_secret(shown: &str, written: &[String], heard: &[u8]) {
    for secret in SECRETS
        .iter()
        .copied()
        .chain(written.iter().map(String::as_str))
    {
        let echoed = heard.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(
            !shown.contains(secret) || echoed,
            "Debug shows a secret: {shown}"
        );
    }
}

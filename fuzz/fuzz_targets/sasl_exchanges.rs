//! The server-side SASL exchanges (`sasl::ServerExchange` for OAUTHBEARER/XOAUTH2,
//! `sasl::PasswordExchange` for PLAIN/LOGIN) driven by arbitrary line sequences, checked
//! step by step against a model of the state diagrams in their module docs.
//!
//! Input: octet 0 flags, then lines split at LF (a CR before it dropped, as the framers
//! do). Flags: bits 0–1 the mechanism (OAUTHBEARER, XOAUTH2, PLAIN, LOGIN), bit 2 the first
//! line is the command's initial response, bit 3 the exchange has discovery hints that
//! need JSON escaping. A line `FF d rest` is no client line but a verdict of the driver's,
//! whether the exchange waits for one or not (d % 5: accept, refuse with an
//! `invalid_token` / `insufficient_scope` challenge naming `rest` as its scope, refuse with
//! `rest` as the backend's own challenge, abandon); wrong-state calls must be refused with
//! the value handed back.
#![no_main]

use bearergate_fuzz::shows_secret;
use libfuzzer_sys::fuzz_target;
use sasl::{
    ChallengeError, ChallengeStatus, ClientMessage, Discovery, ExposeSecret, Failure, Mechanism,
    PasswordExchange, PasswordMechanism, PasswordStep, ServerExchange, ServerStep,
    MAX_RESPONSE_LEN,
};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let lines: Vec<&[u8]> = rest
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    let initial = flags & 4 != 0;
    match flags & 3 {
        0 => token(Mechanism::OAuthBearer, flags, initial, &lines),
        1 => token(Mechanism::XOAuth2, flags, initial, &lines),
        2 => password(PasswordMechanism::Plain, initial, &lines),
        _ => password(PasswordMechanism::Login, initial, &lines),
    }
});

/// Hints with everything JSON must escape.
fn hints() -> Discovery {
    Discovery {
        scope: Some("mail \"read\" \\ \u{1}\u{7f}\t\u{2028} é".to_owned()),
        openid_configuration: Some("https://idp.example/\"\n/.well-known".to_owned()),
    }
}

/// Where [`ServerExchange`] is, by its state diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    AwaitingResponse { prompted: bool },
    AwaitingVerdict,
    AwaitingDummy,
    Succeeded,
    Over,
}

fn token(mechanism: Mechanism, flags: u8, initial: bool, lines: &[&[u8]]) {
    let discovery = if flags & 8 != 0 {
        hints()
    } else {
        Discovery::default()
    };
    let mut exchange = ServerExchange::new(mechanism).with_discovery(discovery.clone());
    let mut model = Token::AwaitingResponse { prompted: false };
    let mut lines = lines.iter();
    if initial {
        // As a session does: an initial response that is not base64 never reaches the
        // exchange; `=` is an empty one.
        if let Some(Ok(message)) = lines.next().map(|l| ClientMessage::from_line(l)) {
            let expected = expect_token_message(mechanism, model, &message);
            let step = exchange.step(message);
            model = check_token_step(mechanism, &discovery, &exchange, step, expected);
        }
    }
    for line in lines {
        if let Some((&0xFF, verdict)) = line.split_first() {
            model = token_verdict(mechanism, &mut exchange, model, verdict);
        } else {
            let expected = expect_token_line(mechanism, model, line);
            let step = exchange.step_line(line);
            model = check_token_step(mechanism, &discovery, &exchange, step, expected);
        }
        assert_eq!(
            exchange.is_over(),
            matches!(model, Token::Succeeded | Token::Over)
        );
        assert_eq!(exchange.is_succeeded(), model == Token::Succeeded);
        assert_eq!(exchange.mechanism(), mechanism);
    }
}

/// What a step should give, by the model.
#[derive(Debug)]
enum Expect {
    EmptyChallenge,
    Validate,
    Challenge,
    Malformed,
    Undecodable,
    Refused,
    OutOfOrder,
    Cancelled,
}

fn expect_token_line(mechanism: Mechanism, model: Token, line: &[u8]) -> (Expect, Token) {
    match (model, ClientMessage::from_line(line)) {
        (Token::AwaitingDummy, _) if line != b"*" => (Expect::Refused, Token::Over),
        (Token::Succeeded | Token::Over, _) => (Expect::OutOfOrder, model),
        (_, Err(_)) => (Expect::Undecodable, Token::Over),
        (_, Ok(message)) => expect_token_message(mechanism, model, &message),
    }
}

fn expect_token_message(
    mechanism: Mechanism,
    model: Token,
    message: &ClientMessage,
) -> (Expect, Token) {
    match (model, message) {
        (Token::Succeeded | Token::Over, _) => (Expect::OutOfOrder, model),
        (_, ClientMessage::Cancel) => (Expect::Cancelled, Token::Over),
        (Token::AwaitingDummy, _) => (Expect::Refused, Token::Over),
        (Token::AwaitingVerdict, _) => (Expect::OutOfOrder, Token::Over),
        (Token::AwaitingResponse { prompted: false }, ClientMessage::Empty) => (
            Expect::EmptyChallenge,
            Token::AwaitingResponse { prompted: true },
        ),
        (Token::AwaitingResponse { .. }, ClientMessage::Empty) => (Expect::Malformed, Token::Over),
        (Token::AwaitingResponse { .. }, ClientMessage::Response(bytes)) => {
            let parsed = match mechanism {
                Mechanism::OAuthBearer => sasl::parse_oauthbearer(bytes),
                Mechanism::XOAuth2 => sasl::parse_xoauth2(bytes),
            };
            match parsed {
                Ok(_) => (Expect::Validate, Token::AwaitingVerdict),
                Err(e) if e.challenge_status().is_some() => {
                    (Expect::Challenge, Token::AwaitingDummy)
                }
                Err(_) => (Expect::Malformed, Token::Over),
            }
        }
    }
}

fn check_token_step(
    mechanism: Mechanism,
    discovery: &Discovery,
    exchange: &ServerExchange,
    step: ServerStep,
    (expected, next): (Expect, Token),
) -> Token {
    match (&expected, step) {
        (Expect::EmptyChallenge, ServerStep::SendEmptyChallenge)
        | (Expect::Refused, ServerStep::Failed(Failure::Refused))
        | (Expect::OutOfOrder, ServerStep::Failed(Failure::OutOfOrder))
        | (Expect::Undecodable, ServerStep::Failed(Failure::Undecodable(_)))
        | (Expect::Cancelled, ServerStep::Cancelled) => {}
        (Expect::Malformed, ServerStep::Failed(Failure::Malformed(_))) => {
            assert!(exchange.rejection().is_some(), "no reason for the log");
        }
        (Expect::Challenge, ServerStep::Challenge(json)) => {
            assert!(exchange.rejection().is_some(), "no reason for the log");
            let error = ChallengeError::new(ChallengeStatus::InvalidToken)
                .with_discovery(discovery.clone());
            check_challenge(mechanism, &json, &error);
        }
        (Expect::Validate, ServerStep::Validate(credentials)) => {
            assert_eq!(credentials.mechanism, mechanism);
            let token = credentials.token.expose_secret();
            assert!(sasl::is_b64token(token.as_bytes()), "not a b64token");
            let shown = format!("{credentials:?} {exchange:?}");
            let named = format!("{:?} {:?}", credentials.authzid, credentials.host);
            assert!(
                !shows_secret(&shown, token) || named.contains(token),
                "Debug shows the token: {shown}"
            );
            rebuild(mechanism, &credentials);
        }
        (_, step) => panic!("expected {expected:?}, got {step:?}"),
    }
    next
}

/// Credentials the server accepted, written by the client-side builder, must come back
/// the same through a fresh exchange.
fn rebuild(mechanism: Mechanism, credentials: &sasl::BearerCredentials) {
    let token = credentials.token.expose_secret();
    let built = match mechanism {
        Mechanism::OAuthBearer => sasl::oauthbearer_client_response(
            credentials.authzid.as_deref(),
            token,
            credentials.host.as_deref(),
            credentials.port,
        ),
        Mechanism::XOAuth2 => match &credentials.authzid {
            Some(user) => sasl::xoauth2_client_response(user, token),
            None => return,
        },
    };
    let Ok(built) = built else { return };
    let mut again = ServerExchange::new(mechanism);
    let ServerStep::Validate(back) = again.step(ClientMessage::Response(built)) else {
        panic!("a rebuilt {mechanism} response does not validate");
    };
    assert_eq!(back.authzid, credentials.authzid);
    assert_eq!(back.token.expose_secret(), token);
    assert_eq!(
        (back.host.as_deref(), back.port),
        (credentials.host.as_deref(), credentials.port)
    );
}

/// The challenge is one JSON object saying what `error` says, whatever the strings hold.
fn check_challenge(mechanism: Mechanism, json: &[u8], error: &ChallengeError) {
    let value: Value = serde_json::from_slice(json).unwrap_or_else(|e| {
        panic!(
            "challenge is not JSON ({e}): {:?}",
            String::from_utf8_lossy(json)
        )
    });
    let Value::Object(members) = value else {
        panic!("challenge is not a JSON object");
    };
    let text = |name: &str| members.get(name).and_then(Value::as_str).map(str::to_owned);
    assert_eq!(
        text("status").as_deref(),
        Some(error.status.as_str(mechanism))
    );
    assert_eq!(text("scope"), error.scope);
    let url = match mechanism {
        Mechanism::OAuthBearer => error.openid_configuration.clone(),
        Mechanism::XOAuth2 => None,
    };
    assert_eq!(text("openid-configuration"), url);
}

fn token_verdict(
    mechanism: Mechanism,
    exchange: &mut ServerExchange,
    model: Token,
    verdict: &[u8],
) -> Token {
    let Some((&choice, rest)) = verdict.split_first() else {
        return model;
    };
    let waiting = model == Token::AwaitingVerdict;
    let before = format!("{exchange:?}");
    let unchanged = |exchange: &ServerExchange| {
        assert_eq!(
            format!("{exchange:?}"),
            before,
            "a refused call changed the exchange"
        );
        model
    };
    match choice % 5 {
        0 => match exchange.accept() {
            Ok(()) if waiting => Token::Succeeded,
            Ok(()) => panic!("accept in {model:?}"),
            Err(_) if waiting => panic!("accept refused while awaiting the verdict"),
            Err(_) => unchanged(exchange),
        },
        status @ (1 | 2) => {
            let status = if status == 1 {
                ChallengeStatus::InvalidToken
            } else {
                ChallengeStatus::InsufficientScope
            };
            let error = ChallengeError::new(status).with_discovery(Discovery {
                scope: Some(String::from_utf8_lossy(rest).into_owned()),
                openid_configuration: Some("https://idp.example/".to_owned()),
            });
            match exchange.refuse(error.clone()) {
                Ok(json) if waiting => {
                    check_challenge(mechanism, &json, &error);
                    Token::AwaitingDummy
                }
                Ok(_) => panic!("refuse in {model:?}"),
                Err(_) if waiting => panic!("refuse refused while awaiting the verdict"),
                Err(wrong) => {
                    assert_eq!(wrong.value, error, "not handed back");
                    unchanged(exchange)
                }
            }
        }
        3 => match exchange.refuse_with_challenge(rest.to_vec()) {
            Ok(challenge) if waiting => {
                assert_eq!(challenge, rest, "the backend's challenge changed");
                Token::AwaitingDummy
            }
            Ok(_) => panic!("refuse_with_challenge in {model:?}"),
            Err(_) if waiting => panic!("refuse_with_challenge refused while awaiting"),
            Err(wrong) => {
                assert_eq!(wrong.value, rest, "not handed back");
                unchanged(exchange)
            }
        },
        _ => {
            exchange.abandon();
            if model == Token::Succeeded {
                model
            } else {
                Token::Over
            }
        }
    }
}

/// Where [`PasswordExchange`] is, by its state diagram.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Collecting {
    Plain { prompted: bool },
    User,
    Password { user: String },
    Over,
}

fn password(mechanism: PasswordMechanism, initial: bool, lines: &[&[u8]]) {
    let mut exchange = PasswordExchange::new(mechanism);
    assert_eq!(exchange.mechanism(), mechanism);
    let mut model = match mechanism {
        PasswordMechanism::Plain => Collecting::Plain { prompted: false },
        PasswordMechanism::Login => Collecting::User,
    };
    let mut lines = lines.iter();
    let first = if initial {
        // As a session does: an initial response that is not base64 never reaches the
        // exchange.
        match lines.next().map(|l| ClientMessage::from_line(l)) {
            Some(Ok(message)) => Some(message),
            _ => return,
        }
    } else {
        None
    };
    let (expected, next) = match (&model, &first) {
        (Collecting::User, None) => (PasswordExpect::Prompt(b"Username:"), Collecting::User),
        (_, None) => expect_password(&model, &ClientMessage::Empty),
        (_, Some(message)) => expect_password(&model, message),
    };
    let step = exchange.start(first);
    model = check_password_step(&exchange, step, expected, next);
    for line in lines {
        let (expected, next) = match ClientMessage::from_line(line) {
            Ok(message) => expect_password(&model, &message),
            Err(_) => (PasswordExpect::Undecodable, Collecting::Over),
        };
        let step = exchange.step_line(line);
        model = check_password_step(&exchange, step, expected, next);
    }
}

#[derive(Debug)]
enum PasswordExpect {
    EmptyChallenge,
    Prompt(&'static [u8]),
    Verify {
        authzid: Option<String>,
        user: String,
    },
    Malformed,
    Undecodable,
    OutOfOrder,
    Cancelled,
}

fn expect_password(model: &Collecting, message: &ClientMessage) -> (PasswordExpect, Collecting) {
    let over = |expect| (expect, Collecting::Over);
    match (model, message) {
        (Collecting::Over, _) => over(PasswordExpect::OutOfOrder),
        (_, ClientMessage::Cancel) => over(PasswordExpect::Cancelled),
        (Collecting::Plain { prompted: false }, ClientMessage::Empty) => (
            PasswordExpect::EmptyChallenge,
            Collecting::Plain { prompted: true },
        ),
        (_, ClientMessage::Empty) => over(PasswordExpect::Malformed),
        (Collecting::Plain { .. }, ClientMessage::Response(bytes)) => {
            match sasl::parse_plain(bytes) {
                Ok(plain) => over(PasswordExpect::Verify {
                    authzid: plain.authzid,
                    user: plain.authcid,
                }),
                Err(_) => over(PasswordExpect::Malformed),
            }
        }
        (Collecting::User, ClientMessage::Response(bytes)) => match login_field(bytes) {
            Some(user) => (
                PasswordExpect::Prompt(b"Password:"),
                Collecting::Password { user },
            ),
            None => over(PasswordExpect::Malformed),
        },
        (Collecting::Password { user }, ClientMessage::Response(bytes)) => match login_field(bytes)
        {
            Some(_) => over(PasswordExpect::Verify {
                authzid: None,
                user: user.clone(),
            }),
            None => over(PasswordExpect::Malformed),
        },
    }
}

/// A LOGIN field as the mechanism's docs describe it: bounded, UTF-8, no NUL.
fn login_field(bytes: &[u8]) -> Option<String> {
    if bytes.len() > MAX_RESPONSE_LEN || bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes.to_vec()).ok()
}

fn check_password_step(
    exchange: &PasswordExchange,
    step: PasswordStep,
    expected: PasswordExpect,
    next: Collecting,
) -> Collecting {
    match (&expected, step) {
        (PasswordExpect::EmptyChallenge, PasswordStep::SendEmptyChallenge)
        | (PasswordExpect::Undecodable, PasswordStep::Failed(Failure::Undecodable(_)))
        | (PasswordExpect::OutOfOrder, PasswordStep::Failed(Failure::OutOfOrder))
        | (PasswordExpect::Malformed, PasswordStep::Failed(Failure::Malformed(_)))
        | (PasswordExpect::Cancelled, PasswordStep::Cancelled) => {}
        (PasswordExpect::Prompt(want), PasswordStep::Challenge(prompt)) => {
            assert_eq!(prompt, *want);
        }
        (PasswordExpect::Verify { authzid, user }, PasswordStep::Verify(credentials)) => {
            assert_eq!(&credentials.authzid, authzid);
            assert_eq!(&credentials.user, user);
            let password = credentials.password.expose_secret();
            assert!(!credentials.user.contains('\0') && !password.contains('\0'));
            let shown = format!("{credentials:?} {exchange:?}");
            let named = format!("{:?} {:?}", credentials.user, credentials.authzid);
            assert!(
                !shows_secret(&shown, password) || named.contains(password),
                "Debug shows the password: {shown}"
            );
        }
        (_, step) => panic!("expected {expected:?}, got {step:?}"),
    }
    next
}

//! The server side of a password exchange (PLAIN, LOGIN) for the password fallback: the
//! proxy collects the client's credentials itself, so that it — not the client — talks to
//! the backend, and a refusal leaves the client with the proxy.
//!
//! ```text
//!  PLAIN:  [initial response] ─────────────────────────────▶ Verify
//!          no initial response ─▶ SendEmptyChallenge ─▶ response ─▶ Verify
//!  LOGIN:  ─▶ Challenge("Username:") ─▶ user ─▶ Challenge("Password:") ─▶ password ─▶ Verify
//!          (an initial response is the user name: SMTP `AUTH LOGIN dXNlcg==`)
//!  any state: `*` ─▶ Cancelled; undecodable ─▶ Failed(Undecodable); unusable ─▶ Failed(Malformed)
//! ```
//!
//! LOGIN has no RFC; its challenges `Username:` and `Password:` are what Dovecot, Postfix
//! (Cyrus SASL) and Exchange send, and what clients (Outlook, old Thunderbird) expect.

use secrecy::SecretString;

use crate::error::SaslError;
use crate::plain::parse_plain;
use crate::server::{ClientMessage, Failure};
use crate::MAX_RESPONSE_LEN;

/// The password mechanisms the fallback accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordMechanism {
    /// RFC 4616 PLAIN.
    Plain,
    /// The non-standard LOGIN mechanism (user name, then password, each on its own line).
    Login,
}

impl PasswordMechanism {
    /// Looks a mechanism up by its SASL name, ignoring ASCII case.
    pub fn from_name(name: &[u8]) -> Option<PasswordMechanism> {
        [PasswordMechanism::Plain, PasswordMechanism::Login]
            .into_iter()
            .find(|m| m.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The SASL name.
    pub fn name(&self) -> &'static str {
        match self {
            PasswordMechanism::Plain => "PLAIN",
            PasswordMechanism::Login => "LOGIN",
        }
    }
}

/// A user name and password a client presented. `Debug` never shows the password.
#[derive(Debug, Clone)]
pub struct PasswordCredentials {
    /// PLAIN's authorization identity, when the client gave a non-empty one.
    pub authzid: Option<String>,
    /// The user whose password this is.
    pub user: String,
    /// The password.
    pub password: SecretString,
}

/// What the session does next in a password exchange.
#[derive(Debug)]
pub enum PasswordStep {
    /// Send an empty continuation: PLAIN without an initial response.
    SendEmptyChallenge,
    /// Send these bytes, base64-encoded, as a continuation (LOGIN's prompts).
    Challenge(&'static [u8]),
    /// All credentials are in: have them checked.
    Verify(PasswordCredentials),
    /// The exchange failed: [`Failure::Undecodable`] for bad base64, else
    /// [`Failure::Malformed`].
    Failed(Failure),
    /// The client cancelled with `*`.
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// PLAIN: waiting for the response; `prompted` once the empty challenge went out.
    AwaitingPlain { prompted: bool },
    /// LOGIN: `Username:` sent.
    AwaitingUser,
    /// LOGIN: `Password:` sent.
    AwaitingPassword,
    /// Credentials handed out, failed or cancelled.
    Over,
}

/// LOGIN's first prompt.
const USERNAME_PROMPT: &[u8] = b"Username:";
/// LOGIN's second prompt.
const PASSWORD_PROMPT: &[u8] = b"Password:";

/// One server-side password exchange. Holds the LOGIN user name between its two steps, never
/// the password.
#[derive(Debug, Clone)]
pub struct PasswordExchange {
    mechanism: PasswordMechanism,
    state: State,
    user: Option<String>,
}

impl PasswordExchange {
    /// A fresh exchange for `mechanism`.
    pub fn new(mechanism: PasswordMechanism) -> Self {
        let state = match mechanism {
            PasswordMechanism::Plain => State::AwaitingPlain { prompted: false },
            PasswordMechanism::Login => State::AwaitingUser,
        };
        PasswordExchange {
            mechanism,
            state,
            user: None,
        }
    }

    /// The mechanism being run.
    pub fn mechanism(&self) -> PasswordMechanism {
        self.mechanism
    }

    /// Starts the exchange with the command's initial response, if any (`None`: the
    /// command had none).
    pub fn start(&mut self, initial: Option<ClientMessage>) -> PasswordStep {
        match (self.mechanism, initial) {
            (PasswordMechanism::Login, None) => PasswordStep::Challenge(USERNAME_PROMPT),
            (_, None) => self.step(ClientMessage::Empty),
            (_, Some(message)) => self.step(message),
        }
    }

    /// Feeds one raw continuation line (without CRLF).
    pub fn step_line(&mut self, line: &[u8]) -> PasswordStep {
        match ClientMessage::from_line(line) {
            Ok(message) => self.step(message),
            Err(error) => {
                self.state = State::Over;
                PasswordStep::Failed(Failure::Undecodable(error))
            }
        }
    }

    /// Feeds one client message.
    pub fn step(&mut self, message: ClientMessage) -> PasswordStep {
        let state = std::mem::replace(&mut self.state, State::Over);
        match (state, message) {
            (State::Over, _) => PasswordStep::Failed(Failure::OutOfOrder),
            (_, ClientMessage::Cancel) => PasswordStep::Cancelled,
            (State::AwaitingPlain { prompted: false }, ClientMessage::Empty) => {
                self.state = State::AwaitingPlain { prompted: true };
                PasswordStep::SendEmptyChallenge
            }
            (State::AwaitingPlain { .. }, ClientMessage::Empty) => {
                PasswordStep::Failed(Failure::Malformed(SaslError::EmptyResponse))
            }
            (State::AwaitingPlain { .. }, ClientMessage::Response(bytes)) => {
                match parse_plain(&bytes) {
                    Ok(plain) => PasswordStep::Verify(PasswordCredentials {
                        authzid: plain.authzid,
                        user: plain.authcid,
                        password: plain.password,
                    }),
                    Err(error) => PasswordStep::Failed(Failure::Malformed(error)),
                }
            }
            (State::AwaitingUser | State::AwaitingPassword, ClientMessage::Empty) => {
                PasswordStep::Failed(Failure::Malformed(SaslError::EmptyResponse))
            }
            (State::AwaitingUser, ClientMessage::Response(bytes)) => {
                match login_field(bytes, "user") {
                    Ok(user) => {
                        self.user = Some(user);
                        self.state = State::AwaitingPassword;
                        PasswordStep::Challenge(PASSWORD_PROMPT)
                    }
                    Err(error) => PasswordStep::Failed(Failure::Malformed(error)),
                }
            }
            (State::AwaitingPassword, ClientMessage::Response(bytes)) => {
                let user = self.user.take().unwrap_or_default();
                match login_field(bytes, "passwd") {
                    Ok(password) => PasswordStep::Verify(PasswordCredentials {
                        authzid: None,
                        user,
                        password: SecretString::from(password),
                    }),
                    Err(error) => PasswordStep::Failed(Failure::Malformed(error)),
                }
            }
        }
    }
}

/// One LOGIN field: UTF-8 without NUL, bounded like every other response.
fn login_field(bytes: Vec<u8>, field: &'static str) -> Result<String, SaslError> {
    if bytes.len() > MAX_RESPONSE_LEN {
        return Err(SaslError::TooLong {
            len: bytes.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    if bytes.contains(&0) {
        return Err(SaslError::InvalidPlainField { field });
    }
    String::from_utf8(bytes).map_err(|_| SaslError::InvalidPlainField { field })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn verified(step: PasswordStep) -> PasswordCredentials {
        match step {
            PasswordStep::Verify(credentials) => credentials,
            other => panic!("expected Verify, got {other:?}"),
        }
    }

    #[test]
    fn plain_with_initial_response() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Plain);
        let step = exchange.start(Some(ClientMessage::Response(b"\0alice\0secret".to_vec())));
        let credentials = verified(step);
        assert_eq!(credentials.user, "alice");
        assert_eq!(credentials.authzid, None);
        assert_eq!(credentials.password.expose_secret(), "secret");
        assert!(matches!(
            exchange.step_line(b"AGFsaWNlAHNlY3JldA=="),
            PasswordStep::Failed(Failure::OutOfOrder)
        ));
    }

    #[test]
    fn plain_after_an_empty_challenge_keeps_the_authzid() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Plain);
        assert!(matches!(
            exchange.start(None),
            PasswordStep::SendEmptyChallenge
        ));
        // "bob\0alice\0secret"
        let credentials = verified(exchange.step_line(b"Ym9iAGFsaWNlAHNlY3JldA=="));
        assert_eq!(credentials.authzid.as_deref(), Some("bob"));
        assert_eq!(credentials.user, "alice");
    }

    #[test]
    fn plain_refuses_a_second_empty_response_and_malformed_messages() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Plain);
        exchange.start(None);
        assert!(matches!(
            exchange.step_line(b""),
            PasswordStep::Failed(Failure::Malformed(SaslError::EmptyResponse))
        ));
        let mut exchange = PasswordExchange::new(PasswordMechanism::Plain);
        assert!(matches!(
            exchange.start(Some(ClientMessage::Response(b"alice\0secret".to_vec()))),
            PasswordStep::Failed(Failure::Malformed(SaslError::MalformedPlain))
        ));
        let mut exchange = PasswordExchange::new(PasswordMechanism::Plain);
        exchange.start(None);
        assert!(matches!(
            exchange.step_line(b"!!!"),
            PasswordStep::Failed(Failure::Undecodable(_))
        ));
    }

    #[test]
    fn login_prompts_for_user_then_password() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Login);
        assert!(matches!(
            exchange.start(None),
            PasswordStep::Challenge(b"Username:")
        ));
        assert!(matches!(
            exchange.step_line(b"YWxpY2U="),
            PasswordStep::Challenge(b"Password:")
        ));
        let credentials = verified(exchange.step_line(b"c2VjcmV0"));
        assert_eq!(credentials.user, "alice");
        assert_eq!(credentials.password.expose_secret(), "secret");
    }

    #[test]
    fn login_takes_the_user_as_initial_response() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Login);
        assert!(matches!(
            exchange.start(Some(ClientMessage::Response(b"alice".to_vec()))),
            PasswordStep::Challenge(b"Password:")
        ));
        assert_eq!(verified(exchange.step_line(b"c2VjcmV0")).user, "alice");
    }

    #[test]
    fn login_refuses_nul_empty_and_cancel() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Login);
        exchange.start(None);
        assert!(matches!(
            exchange.step(ClientMessage::Response(b"al\0ice".to_vec())),
            PasswordStep::Failed(Failure::Malformed(_))
        ));
        let mut exchange = PasswordExchange::new(PasswordMechanism::Login);
        exchange.start(None);
        assert!(matches!(
            exchange.step_line(b""),
            PasswordStep::Failed(Failure::Malformed(SaslError::EmptyResponse))
        ));
        let mut exchange = PasswordExchange::new(PasswordMechanism::Login);
        exchange.start(None);
        exchange.step_line(b"YWxpY2U=");
        assert!(matches!(exchange.step_line(b"*"), PasswordStep::Cancelled));
    }

    #[test]
    fn debug_never_shows_the_password() {
        let mut exchange = PasswordExchange::new(PasswordMechanism::Plain);
        let step = exchange.start(Some(ClientMessage::Response(
            b"\0alice\0hunter2-secret".to_vec(),
        )));
        let shown = format!("{step:?} {exchange:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn mechanism_names_ignore_case() {
        assert_eq!(
            PasswordMechanism::from_name(b"plain"),
            Some(PasswordMechanism::Plain)
        );
        assert_eq!(
            PasswordMechanism::from_name(b"Login"),
            Some(PasswordMechanism::Login)
        );
        assert_eq!(PasswordMechanism::from_name(b"XOAUTH2"), None);
    }
}

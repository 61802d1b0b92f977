//! The server side of one OAUTHBEARER/XOAUTH2 exchange, as a state machine without I/O.
//!
//! ```text
//!            Empty (once)                 Response ok          accept
//!  AwaitingResponse ───▶ SendEmptyChallenge ─────────▶ Validate ─────▶ Succeeded
//!        │                          │ token unusable       │ refuse
//!        │ garbage / 2nd Empty      └───▶ Challenge ───────┴──▶ AwaitingDummy
//!        ▼                                                        │ anything │ "*"
//!     Failed(Malformed)                              Failed(Refused)    Cancelled
//! ```
//!
//! The failure path is always two steps for both mechanisms (RFC 7628 §3.2.3, Google's
//! XOAUTH2 page): the error challenge, then *whatever* the client answers ends the exchange
//! with a failure. Real clients answer `AQ==` (curl), an empty line (Thunderbird-Android,
//! Google's spec) or the token again (Python imaplib); all are treated alike.

use std::fmt;

use crate::challenge::{ChallengeError, ChallengeStatus};
use crate::encoding::decode_base64;
use crate::error::{SaslError, WrongState};
use crate::oauthbearer::parse_oauthbearer;
use crate::xoauth2::parse_xoauth2;
use crate::{BearerCredentials, Mechanism};

/// One client message of the exchange, already taken out of its protocol framing.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// A non-empty response, base64-decoded.
    Response(Vec<u8>),
    /// An empty line, or `=` (RFC 4959 / RFC 4954 empty initial response), or no initial
    /// response at all (the session feeds `Empty` when AUTHENTICATE came without one).
    Empty,
    /// `*`: the client aborts the exchange (RFC 3501 §6.2.2, RFC 4954 §4).
    Cancel,
}

impl ClientMessage {
    /// Classifies and decodes one line (without CRLF): empty or `=` is [`Empty`], `*` is
    /// [`Cancel`], anything else must be base64.
    ///
    /// `=` is accepted as empty on continuation lines too, where it is strictly invalid
    /// base64: the meaning is unambiguous and it spares sessions a special case.
    ///
    /// [`Empty`]: ClientMessage::Empty
    /// [`Cancel`]: ClientMessage::Cancel
    pub fn from_line(line: &[u8]) -> Result<ClientMessage, SaslError> {
        match line {
            b"" | b"=" => Ok(ClientMessage::Empty),
            b"*" => Ok(ClientMessage::Cancel),
            _ => decode_base64(line).map(ClientMessage::Response),
        }
    }
}

/// Shows only the length of a response: it carries the token.
impl fmt::Debug for ClientMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientMessage::Response(bytes) => write!(f, "Response(<{} octets>)", bytes.len()),
            ClientMessage::Empty => f.write_str("Empty"),
            ClientMessage::Cancel => f.write_str("Cancel"),
        }
    }
}

/// What the session does next.
#[derive(Debug)]
pub enum ServerStep {
    /// Send an empty continuation (`+ ` / `334 ` / ManageSieve `""`): the client has not
    /// given its response yet.
    SendEmptyChallenge,
    /// Credentials parsed: validate the token, then call [`ServerExchange::accept`] or
    /// [`ServerExchange::refuse`].
    Validate(BearerCredentials),
    /// The client made an authentication attempt with an unusable credential (empty `auth=`
    /// as in RFC 7628 §4.3, a non-Bearer scheme, a bad token): there is nothing to
    /// validate. Send these bytes (the unencoded JSON error challenge, with the data given
    /// to [`ServerExchange::with_discovery`]) base64-encoded as a continuation; the
    /// exchange now waits for the client's dummy answer. The reason is in
    /// [`ServerExchange::rejection`], for the log.
    Challenge(Vec<u8>),
    /// The exchange is over and failed: IMAP `NO [AUTHENTICATIONFAILED]`, SMTP
    /// `535 5.7.8`, ManageSieve `NO` — except [`Failure::Undecodable`], see there.
    Failed(Failure),
    /// The client cancelled with `*`: IMAP tagged `BAD`, SMTP `501`, ManageSieve `NO`.
    /// (RFC 7628 §4.3's example answers a cancel with `NO`; we follow the base protocols.)
    Cancelled,
}

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The line was not valid base64 (or too long). RFC 3501 §6.2.2 wants IMAP tagged
    /// `BAD` and RFC 4954 §4 wants SMTP `501 5.5.2` for this, not the auth failure reply.
    Undecodable(SaslError),
    /// The client's response was structurally unusable (bad GS2 header, channel binding,
    /// lone `^A`, a second empty response...). No challenge is owed (RFC 7628 §3.1).
    Malformed(SaslError),
    /// The client answered our error challenge: the normal end of a refused exchange.
    Refused,
    /// A message arrived when the exchange expected none: while the token was being
    /// validated, or after the exchange was over. A session bug or a pipelining client.
    OutOfOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the client's credentials; `prompted` once an empty challenge was sent.
    AwaitingResponse {
        prompted: bool,
    },
    /// Waiting for the session's verdict on credentials handed out in
    /// [`ServerStep::Validate`]. Only reachable with parsed credentials, so an unusable
    /// attempt can never be accepted.
    AwaitingVerdict,
    /// Error challenge sent; any answer ends the exchange.
    AwaitingDummy,
    Succeeded,
    Over,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AwaitingResponse { .. } => "awaiting the client's response",
            State::AwaitingVerdict => "awaiting token validation",
            State::AwaitingDummy => "awaiting the answer to the error challenge",
            State::Succeeded => "succeeded",
            State::Over => "over",
        }
    }
}

/// One server-side authentication exchange. Holds no credentials: they are handed to the
/// session in [`ServerStep::Validate`] and not kept.
#[derive(Debug, Clone)]
pub struct ServerExchange {
    mechanism: Mechanism,
    state: State,
    /// `scope` and `openid-configuration` for the challenges the exchange sends by itself.
    discovery: ChallengeError,
    /// Why the client's response led to [`ServerStep::Challenge`] or [`Failure::Malformed`].
    rejection: Option<SaslError>,
}

impl ServerExchange {
    /// A fresh exchange for `mechanism`, waiting for the client's first message.
    pub fn new(mechanism: Mechanism) -> Self {
        ServerExchange {
            mechanism,
            state: State::AwaitingResponse { prompted: false },
            discovery: ChallengeError::new(ChallengeStatus::InvalidToken),
            rejection: None,
        }
    }

    /// Sets the `scope` and `openid-configuration` members of the challenge the exchange
    /// sends by itself for unusable credentials ([`ServerStep::Challenge`]). Without them
    /// that challenge is a bare `{"status":"invalid_token"}`: the exchange still ends
    /// correctly, but an RFC 7628 §4.3 client learns nothing of what it asked for.
    pub fn with_discovery(mut self, discovery: crate::Discovery) -> Self {
        self.discovery = self.discovery.with_discovery(discovery);
        self
    }

    /// The mechanism being run.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Why the client's response was unusable, once the exchange answered it with
    /// [`ServerStep::Challenge`] or [`Failure::Malformed`]. For the log; never contains
    /// client bytes.
    pub fn rejection(&self) -> Option<&SaslError> {
        self.rejection.as_ref()
    }

    /// Whether the exchange has ended (success, failure or cancel); further messages give
    /// [`Failure::OutOfOrder`].
    pub fn is_over(&self) -> bool {
        matches!(self.state, State::Succeeded | State::Over)
    }

    /// Whether [`accept`](Self::accept) was called.
    pub fn is_succeeded(&self) -> bool {
        self.state == State::Succeeded
    }

    /// Feeds one client message.
    ///
    /// A first `Empty` (no initial response, or `=`) is answered with an empty challenge;
    /// a second one in a row fails, since client-first mechanisms have nothing more to
    /// offer and looping would let a client hold the exchange open forever.
    pub fn step(&mut self, msg: ClientMessage) -> ServerStep {
        let (next, step) = match (self.state, msg) {
            (State::Succeeded | State::Over, _) => {
                (self.state, ServerStep::Failed(Failure::OutOfOrder))
            }
            (_, ClientMessage::Cancel) => (State::Over, ServerStep::Cancelled),
            (State::AwaitingDummy, _) => (State::Over, ServerStep::Failed(Failure::Refused)),
            (State::AwaitingVerdict, _) => (State::Over, ServerStep::Failed(Failure::OutOfOrder)),
            (State::AwaitingResponse { prompted: false }, ClientMessage::Empty) => (
                State::AwaitingResponse { prompted: true },
                ServerStep::SendEmptyChallenge,
            ),
            (State::AwaitingResponse { prompted: true }, ClientMessage::Empty) => {
                self.malformed(SaslError::EmptyResponse)
            }
            (State::AwaitingResponse { .. }, ClientMessage::Response(bytes)) => {
                self.credentials(&bytes)
            }
        };
        self.state = next;
        step
    }

    fn credentials(&mut self, decoded: &[u8]) -> (State, ServerStep) {
        let parsed = match self.mechanism {
            Mechanism::OAuthBearer => parse_oauthbearer(decoded),
            Mechanism::XOAuth2 => parse_xoauth2(decoded),
        };
        let reason = match parsed {
            Ok(creds) => return (State::AwaitingVerdict, ServerStep::Validate(creds)),
            Err(reason) => reason,
        };
        let Some(status) = reason.challenge_status() else {
            return self.malformed(reason);
        };
        let challenge = ChallengeError {
            status,
            ..self.discovery.clone()
        };
        self.rejection = Some(reason);
        (
            State::AwaitingDummy,
            ServerStep::Challenge(challenge.to_json(self.mechanism)),
        )
    }

    fn malformed(&mut self, reason: SaslError) -> (State, ServerStep) {
        self.rejection = Some(reason.clone());
        (State::Over, ServerStep::Failed(Failure::Malformed(reason)))
    }

    /// Feeds one raw line (without CRLF): [`ClientMessage::from_line`] plus [`step`].
    ///
    /// After the error challenge the line is not even decoded: whatever it is, even
    /// invalid base64, it is the client's dummy answer and ends the exchange with
    /// [`Failure::Refused`] (only `*` still counts as a cancel). Elsewhere an undecodable
    /// line ends the exchange with [`Failure::Undecodable`].
    ///
    /// [`step`]: Self::step
    pub fn step_line(&mut self, line: &[u8]) -> ServerStep {
        if self.state == State::AwaitingDummy && line != b"*" {
            self.state = State::Over;
            return ServerStep::Failed(Failure::Refused);
        }
        match ClientMessage::from_line(line) {
            Ok(msg) => self.step(msg),
            Err(err) if !self.is_over() => {
                self.state = State::Over;
                ServerStep::Failed(Failure::Undecodable(err))
            }
            Err(_) => ServerStep::Failed(Failure::OutOfOrder),
        }
    }

    /// The token was valid: the exchange succeeded. Only meaningful right after
    /// [`ServerStep::Validate`].
    pub fn accept(&mut self) -> Result<(), WrongState<()>> {
        if self.state != State::AwaitingVerdict {
            return Err(self.wrong_state("accept", ()));
        }
        self.state = State::Succeeded;
        Ok(())
    }

    /// The token was refused (after [`ServerStep::Validate`]):
    /// returns the unencoded JSON challenge for this mechanism, to be base64-encoded and
    /// sent as a continuation. The exchange then waits for the client's dummy answer.
    ///
    /// In any other state the challenge is handed back in the error.
    pub fn refuse(&mut self, error: ChallengeError) -> Result<Vec<u8>, WrongState<ChallengeError>> {
        if self.state != State::AwaitingVerdict {
            return Err(self.wrong_state("refuse", error));
        }
        self.state = State::AwaitingDummy;
        Ok(error.to_json(self.mechanism))
    }

    /// The token was refused by someone else who sent their own challenge (a backend that
    /// validates OAuth itself, with `login = "passthrough"`): the challenge is relayed as it
    /// came, and the exchange then waits for the client's dummy answer like after
    /// [`ServerExchange::refuse`].
    ///
    /// In any other state the challenge is handed back in the error.
    pub fn refuse_with_challenge(
        &mut self,
        challenge: Vec<u8>,
    ) -> Result<Vec<u8>, WrongState<Vec<u8>>> {
        if self.state != State::AwaitingVerdict {
            return Err(self.wrong_state("refuse_with_challenge", challenge));
        }
        self.state = State::AwaitingDummy;
        Ok(challenge)
    }

    /// Ends the exchange without a challenge, from any state: for outcomes that are not
    /// the token's fault (identity provider unreachable, shutdown), where the session
    /// replies `NO [UNAVAILABLE]` / `454` directly.
    pub fn abandon(&mut self) {
        if self.state != State::Succeeded {
            self.state = State::Over;
        }
    }

    fn wrong_state<T>(&self, method: &'static str, value: T) -> WrongState<T> {
        WrongState {
            method,
            state: self.state.name(),
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    const RFC_4_1_IMAP: &[u8] = b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB";
    const RFC_4_3_EMPTY_AUTH: &[u8] =
        b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9AQE=";
    const GOOGLE: &[u8] = b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==";

    fn invalid_token() -> ChallengeError {
        ChallengeError::new(ChallengeStatus::InvalidToken)
    }

    #[test]
    fn foreign_challenge_is_relayed_then_dummy_fails() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        assert!(ex.refuse_with_challenge(b"{}".to_vec()).is_err());
        let ServerStep::Validate(_) = ex.step_line(RFC_4_1_IMAP) else {
            panic!("expected Validate");
        };
        let backend = br#"{"status":"invalid_token"}"#.to_vec();
        assert_eq!(
            ex.refuse_with_challenge(backend.clone()).ok(),
            Some(backend)
        );
        assert!(matches!(
            ex.step_line(b"AQ=="),
            ServerStep::Failed(Failure::Refused)
        ));
    }

    #[test]
    fn from_line() {
        assert_eq!(ClientMessage::from_line(b""), Ok(ClientMessage::Empty));
        assert_eq!(ClientMessage::from_line(b"="), Ok(ClientMessage::Empty));
        assert_eq!(ClientMessage::from_line(b"*"), Ok(ClientMessage::Cancel));
        assert_eq!(
            ClientMessage::from_line(b"AQ=="),
            Ok(ClientMessage::Response(vec![1]))
        );
        assert_eq!(
            ClientMessage::from_line(b"**"),
            Err(SaslError::InvalidBase64)
        );
    }

    #[test]
    fn success_with_initial_response() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        let ServerStep::Validate(creds) = ex.step_line(RFC_4_1_IMAP) else {
            panic!("expected Validate");
        };
        assert_eq!(creds.authzid.as_deref(), Some("user@example.com"));
        assert!(!ex.is_over());
        assert!(ex.accept().is_ok());
        assert!(ex.is_over() && ex.is_succeeded());
        // nothing more is expected, and a second verdict is refused
        assert!(matches!(
            ex.step_line(b"AQ=="),
            ServerStep::Failed(Failure::OutOfOrder)
        ));
        assert!(ex.accept().is_err());
        assert!(ex.refuse(invalid_token()).is_err());
        ex.abandon();
        assert!(ex.is_succeeded());
    }

    #[test]
    fn curl_failure_flow() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        assert!(matches!(
            ex.step_line(RFC_4_1_IMAP),
            ServerStep::Validate(_)
        ));
        let json = ex.refuse(invalid_token()).unwrap();
        assert_eq!(json, br#"{"status":"invalid_token"}"#);
        assert!(matches!(
            ex.step_line(b"AQ=="),
            ServerStep::Failed(Failure::Refused)
        ));
        assert!(ex.is_over() && !ex.is_succeeded());
    }

    #[test]
    fn rfc7628_4_3_flow_and_any_dummy() {
        for dummy in [&b"AQ=="[..], b"", b"=", RFC_4_1_IMAP, b"not base64!"] {
            let mut ex =
                ServerExchange::new(Mechanism::OAuthBearer).with_discovery(crate::Discovery {
                    scope: Some("example_scope".into()),
                    openid_configuration: Some(
                        "https://example.com/.well-known/openid-config".into(),
                    ),
                });
            let step = ex.step_line(RFC_4_3_EMPTY_AUTH);
            let ServerStep::Challenge(json) = step else {
                panic!("expected Challenge, got {step:?}");
            };
            assert_eq!(
                crate::encode_base64(&json),
                "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWcifQ=="
            );
            assert_eq!(ex.rejection(), Some(&SaslError::EmptyAuth));
            // an unusable attempt can never be accepted, nor refused a second time
            assert!(ex.accept().is_err());
            assert!(ex.refuse(invalid_token()).is_err());
            assert!(matches!(
                ex.step_line(dummy),
                ServerStep::Failed(Failure::Refused)
            ));
            assert!(ex.is_over());
        }
    }

    #[test]
    fn unusable_tokens_get_a_bare_challenge_without_discovery() {
        let cases: &[(Mechanism, &[u8], &[u8], SaslError)] = &[
            (
                Mechanism::OAuthBearer,
                b"n,,\x01auth=Bearer a b\x01\x01",
                br#"{"status":"invalid_token"}"#,
                SaslError::InvalidToken,
            ),
            (
                Mechanism::XOAuth2,
                b"user=u\x01auth=Basic dTpw\x01\x01",
                br#"{"status":"401","schemes":"bearer"}"#,
                SaslError::UnsupportedScheme,
            ),
            (
                Mechanism::XOAuth2,
                b"user=u\x01\x01",
                br#"{"status":"401","schemes":"bearer"}"#,
                SaslError::MissingAuth,
            ),
        ];
        for (mechanism, response, json, reason) in cases {
            let mut ex = ServerExchange::new(*mechanism);
            match ex.step(ClientMessage::Response(response.to_vec())) {
                ServerStep::Challenge(got) => assert_eq!(&got, json),
                other => panic!("expected Challenge, got {other:?}"),
            }
            assert_eq!(ex.rejection(), Some(reason));
            assert!(matches!(
                ex.step(ClientMessage::Empty),
                ServerStep::Failed(Failure::Refused)
            ));
        }
    }

    #[test]
    fn cancel_after_challenge() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        assert!(matches!(
            ex.step_line(RFC_4_3_EMPTY_AUTH),
            ServerStep::Challenge(_)
        ));
        assert!(matches!(ex.step_line(b"*"), ServerStep::Cancelled));
        assert!(ex.is_over());
    }

    #[test]
    fn imaplib_flow_no_initial_response_then_token_again() {
        let mut ex = ServerExchange::new(Mechanism::XOAuth2);
        assert!(matches!(
            ex.step(ClientMessage::Empty),
            ServerStep::SendEmptyChallenge
        ));
        let ServerStep::Validate(creds) = ex.step_line(GOOGLE) else {
            panic!("expected Validate");
        };
        assert_eq!(creds.mechanism, Mechanism::XOAuth2);
        assert_eq!(
            creds.token.expose_secret(),
            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
        );
        let json = ex
            .refuse(ChallengeError {
                scope: Some("mail".into()),
                ..invalid_token()
            })
            .unwrap();
        assert_eq!(
            json,
            br#"{"status":"401","schemes":"bearer","scope":"mail"}"#
        );
        // imaplib re-sends the token as its dummy
        assert!(matches!(
            ex.step_line(GOOGLE),
            ServerStep::Failed(Failure::Refused)
        ));
    }

    #[test]
    fn google_empty_dummy() {
        let mut ex = ServerExchange::new(Mechanism::XOAuth2);
        assert!(matches!(ex.step_line(GOOGLE), ServerStep::Validate(_)));
        ex.refuse(invalid_token()).unwrap();
        assert!(matches!(
            ex.step(ClientMessage::Empty),
            ServerStep::Failed(Failure::Refused)
        ));
    }

    #[test]
    fn malformed_first_messages_fail_without_challenge() {
        let cases: &[(Mechanism, &[u8], SaslError)] = &[
            (Mechanism::OAuthBearer, b"AQ==", SaslError::LoneKvsep),
            (
                Mechanism::OAuthBearer,
                b"cD10bHMtdW5pcXVlLCwBYXV0aD1CZWFyZXIgVAEB", // p=tls-unique,,^Aauth=Bearer T^A^A
                SaslError::ChannelBindingUnsupported,
            ),
            (Mechanism::XOAuth2, b"AQ==", SaslError::MalformedKvPair),
            (Mechanism::XOAuth2, RFC_4_1_IMAP, SaslError::MalformedKvPair),
        ];
        for (mechanism, line, expected) in cases {
            let mut ex = ServerExchange::new(*mechanism);
            match ex.step_line(line) {
                ServerStep::Failed(Failure::Malformed(err)) => assert_eq!(&err, expected),
                other => panic!("{mechanism}: expected Malformed, got {other:?}"),
            }
            assert_eq!(ex.rejection(), Some(expected));
            assert!(ex.is_over());
            assert!(ex.refuse(invalid_token()).is_err());
        }
    }

    #[test]
    fn undecodable_and_repeated_empty() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        assert!(matches!(
            ex.step_line(b"%%%"),
            ServerStep::Failed(Failure::Undecodable(SaslError::InvalidBase64))
        ));
        assert!(matches!(
            ex.step_line(b"%%%"),
            ServerStep::Failed(Failure::OutOfOrder)
        ));

        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        assert!(matches!(ex.step_line(b"="), ServerStep::SendEmptyChallenge));
        assert!(matches!(
            ex.step_line(b""),
            ServerStep::Failed(Failure::Malformed(SaslError::EmptyResponse))
        ));
    }

    #[test]
    fn cancel_at_start_and_after_prompt() {
        let mut ex = ServerExchange::new(Mechanism::XOAuth2);
        assert!(matches!(
            ex.step(ClientMessage::Cancel),
            ServerStep::Cancelled
        ));
        let mut ex = ServerExchange::new(Mechanism::XOAuth2);
        assert!(matches!(
            ex.step(ClientMessage::Empty),
            ServerStep::SendEmptyChallenge
        ));
        assert!(matches!(ex.step_line(b"*"), ServerStep::Cancelled));
        assert!(matches!(
            ex.step_line(b"*"),
            ServerStep::Failed(Failure::OutOfOrder)
        ));
    }

    #[test]
    fn wrong_state_calls_hand_the_value_back() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        let err = ex
            .refuse(ChallengeError {
                scope: Some("mail".into()),
                ..invalid_token()
            })
            .unwrap_err();
        assert_eq!(err.method, "refuse");
        assert_eq!(err.value.scope.as_deref(), Some("mail"));
        assert!(err.to_string().contains("awaiting the client's response"));
        assert!(ex.accept().is_err());
        // message while validating
        assert!(matches!(
            ex.step_line(RFC_4_1_IMAP),
            ServerStep::Validate(_)
        ));
        assert!(matches!(
            ex.step_line(RFC_4_1_IMAP),
            ServerStep::Failed(Failure::OutOfOrder)
        ));
        assert!(ex.accept().is_err());
    }

    #[test]
    fn abandon_ends_the_exchange() {
        let mut ex = ServerExchange::new(Mechanism::OAuthBearer);
        assert!(matches!(
            ex.step_line(RFC_4_1_IMAP),
            ServerStep::Validate(_)
        ));
        ex.abandon();
        assert!(ex.is_over() && !ex.is_succeeded());
        assert!(ex.accept().is_err());
        assert_eq!(ex.mechanism(), Mechanism::OAuthBearer);
    }
}

//! The AUTH sub-machine every protocol shares: one SASL exchange (a bearer token with
//! OAUTHBEARER/XOAUTH2, or a password with PLAIN/LOGIN for the password fallback), the
//! request to the driver, and what each verdict means for the exchange.
//!
//! ```text
//!  start ──▶ AwaitingResponse ──line──▶ (challenge written) AwaitingResponse
//!                   │                  └─▶ credentials ─▶ AwaitingVerdict ──verdict──▶ Done
//!                   └─ failed / cancelled / bad base64 / too long ─▶ Done   └─ refused with an
//!                                                                 error challenge ─▶ AwaitingResponse
//! ```
//!
//! A protocol supplies only how a continuation looks on its wire ([`Continuation`]); its
//! final replies (and the counting of failures towards its limits) stay with the session,
//! which gets an [`Outcome`] once the exchange is over.

use sasl::{
    ChallengeError, ClientMessage, Discovery, Failure, Mechanism, PasswordExchange,
    PasswordMechanism, PasswordStep, SaslError, ServerExchange, ServerStep,
};

use crate::{Action, Refusal, Verdict, WrongState};

/// How a SASL continuation is written on one protocol's wire: IMAP `+ <base64>`, SMTP
/// `334 <base64>`, ManageSieve `"<base64>"`.
pub(crate) type Continuation = fn(&mut Vec<u8>, &str);

/// Which exchange runs.
#[derive(Debug)]
enum Exchange {
    Token(ServerExchange),
    Password(PasswordExchange),
}

/// Where the exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The next client line belongs to the exchange.
    AwaitingResponse,
    /// The driver is checking the credentials; no client line is read.
    AwaitingVerdict,
}

/// How an exchange ended, for the session's final reply.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The credentials were refused (token, password, or an unusable response): the
    /// protocol's authentication failure, counted towards its limit.
    Failed,
    /// The client cancelled with `*`.
    Cancelled,
    /// A response was not base64.
    BadBase64,
    /// A response, or the token in it, was over the SASL layer's size limits
    /// (`sasl::MAX_ENCODED_RESPONSE_LEN`, `sasl::MAX_TOKEN_LEN`): the protocol's "too long"
    /// reply, as for a line over the framing limit, never "invalid base64".
    TooLong,
    /// The identity provider or the backend is unavailable, or the client's address has no
    /// failed logins left: "try again later".
    Unavailable,
    /// The backend accepted the login; its capabilities, where the protocol shows them.
    LoggedIn(Vec<String>),
}

/// What the session does after feeding the sub-machine.
#[derive(Debug)]
pub(crate) enum Step {
    /// A continuation was written: read the client's next line.
    Continue,
    /// Hand this request to the driver and wait for its verdict.
    Ask(Action),
    /// The exchange is over.
    Done(Outcome),
}

/// Settings the session passes in.
#[derive(Debug, Clone)]
pub(crate) struct AuthSettings {
    /// Whether a refused token gets the error challenge first (RFC 7628).
    pub error_challenge: bool,
    /// What the exchange's own error challenges say.
    pub discovery: Discovery,
}

/// One running authentication.
#[derive(Debug)]
pub(crate) struct Auth {
    exchange: Exchange,
    stage: Stage,
    error_challenge: bool,
    continuation: Continuation,
    /// An error challenge went out: the credentials are refused whatever the client answers,
    /// and a cancel (`*`) then ends a failed attempt, which counts like any other. Otherwise
    /// a guesser could answer every challenge with `*` and never reach the failure limit.
    refused: bool,
}

impl Auth {
    /// A token exchange for `mechanism`.
    pub(crate) fn token(
        mechanism: Mechanism,
        settings: &AuthSettings,
        continuation: Continuation,
    ) -> Self {
        let exchange = ServerExchange::new(mechanism).with_discovery(settings.discovery.clone());
        Self {
            exchange: Exchange::Token(exchange),
            stage: Stage::AwaitingResponse,
            error_challenge: settings.error_challenge,
            continuation,
            refused: false,
        }
    }

    /// A password exchange (password fallback) for `mechanism`.
    pub(crate) fn password(
        mechanism: PasswordMechanism,
        settings: &AuthSettings,
        continuation: Continuation,
    ) -> Self {
        Self {
            exchange: Exchange::Password(PasswordExchange::new(mechanism)),
            stage: Stage::AwaitingResponse,
            error_challenge: settings.error_challenge,
            continuation,
            refused: false,
        }
    }

    /// Credentials given outside SASL (IMAP `LOGIN user pass`): straight to the verdict.
    pub(crate) fn login_command(
        credentials: sasl::PasswordCredentials,
        settings: &AuthSettings,
        continuation: Continuation,
    ) -> (Self, Step) {
        let mut auth = Self::password(PasswordMechanism::Plain, settings, continuation);
        auth.stage = Stage::AwaitingVerdict;
        (auth, Step::Ask(Action::PasswordLogin(credentials)))
    }

    /// Whether the client's next line belongs to the exchange.
    pub(crate) fn wants_line(&self) -> bool {
        self.stage == Stage::AwaitingResponse
    }

    /// Starts with the command's initial response (`None`: it had none, and the client is
    /// prompted with an empty continuation).
    pub(crate) fn start(&mut self, out: &mut Vec<u8>, initial: Option<ClientMessage>) -> Step {
        match (&mut self.exchange, initial) {
            (Exchange::Token(_), None) => {
                (self.continuation)(out, "");
                Step::Continue
            }
            (Exchange::Token(exchange), Some(message)) => {
                let step = exchange.step(message);
                self.token_step(out, step)
            }
            (Exchange::Password(exchange), initial) => {
                let step = exchange.start(initial);
                self.password_step(out, step)
            }
        }
    }

    /// Feeds one client line (without its protocol framing).
    pub(crate) fn line(&mut self, out: &mut Vec<u8>, line: &[u8]) -> Step {
        if self.stage != Stage::AwaitingResponse {
            // The session reads no line while a verdict is pending.
            return Step::Done(Outcome::Failed);
        }
        match &mut self.exchange {
            Exchange::Token(exchange) => {
                let step = exchange.step_line(line);
                self.token_step(out, step)
            }
            Exchange::Password(exchange) => {
                let step = exchange.step_line(line);
                self.password_step(out, step)
            }
        }
    }

    /// The line could not be read (too long): the exchange ends as failed.
    pub(crate) fn abandon(&mut self) {
        if let Exchange::Token(exchange) = &mut self.exchange {
            exchange.abandon();
        }
    }

    fn token_step(&mut self, out: &mut Vec<u8>, step: ServerStep) -> Step {
        match step {
            ServerStep::SendEmptyChallenge => {
                (self.continuation)(out, "");
                Step::Continue
            }
            ServerStep::Challenge(_) if !self.error_challenge => {
                self.abandon();
                Step::Done(Outcome::Failed)
            }
            ServerStep::Challenge(challenge) => {
                (self.continuation)(out, &sasl::encode_base64(&challenge));
                self.refused = true;
                Step::Continue
            }
            ServerStep::Validate(credentials) => {
                self.stage = Stage::AwaitingVerdict;
                Step::Ask(Action::Authenticate(credentials))
            }
            ServerStep::Failed(Failure::Undecodable(error) | Failure::Malformed(error))
                if is_too_long(&error) =>
            {
                Step::Done(Outcome::TooLong)
            }
            ServerStep::Failed(Failure::Undecodable(_)) => Step::Done(Outcome::BadBase64),
            ServerStep::Failed(_) => Step::Done(Outcome::Failed),
            ServerStep::Cancelled if self.refused => Step::Done(Outcome::Failed),
            ServerStep::Cancelled => Step::Done(Outcome::Cancelled),
        }
    }

    fn password_step(&mut self, out: &mut Vec<u8>, step: PasswordStep) -> Step {
        match step {
            PasswordStep::SendEmptyChallenge => {
                (self.continuation)(out, "");
                Step::Continue
            }
            PasswordStep::Challenge(prompt) => {
                (self.continuation)(out, &sasl::encode_base64(prompt));
                Step::Continue
            }
            PasswordStep::Verify(credentials) => {
                self.stage = Stage::AwaitingVerdict;
                Step::Ask(Action::PasswordLogin(credentials))
            }
            PasswordStep::Failed(Failure::Undecodable(error) | Failure::Malformed(error))
                if is_too_long(&error) =>
            {
                Step::Done(Outcome::TooLong)
            }
            PasswordStep::Failed(Failure::Undecodable(_)) => Step::Done(Outcome::BadBase64),
            PasswordStep::Failed(_) => Step::Done(Outcome::Failed),
            PasswordStep::Cancelled => Step::Done(Outcome::Cancelled),
        }
    }

    /// The driver's verdict on the credentials it was asked about. A verdict that does not
    /// fit (none pending, or a password verdict for a token) is handed back.
    pub(crate) fn verdict(
        &mut self,
        out: &mut Vec<u8>,
        verdict: Verdict,
    ) -> Result<Step, WrongState<Verdict>> {
        if self.stage != Stage::AwaitingVerdict {
            return Err(WrongState::new(
                "verdict",
                "reading the client's response",
                verdict,
            ));
        }
        let step = match (&mut self.exchange, verdict) {
            (exchange, Verdict::Unavailable) => {
                if let Exchange::Token(exchange) = exchange {
                    exchange.abandon();
                }
                Step::Done(Outcome::Unavailable)
            }
            (exchange, Verdict::LoggedIn { capabilities }) => {
                if let Exchange::Token(exchange) = exchange {
                    // Only fails outside AwaitingVerdict, which the stage rules out.
                    let _ = exchange.accept();
                }
                Step::Done(Outcome::LoggedIn(capabilities))
            }
            (Exchange::Password(_), Verdict::PasswordRefused) => Step::Done(Outcome::Failed),
            (Exchange::Token(exchange), Verdict::TokenRefused { refusal, discovery }) => {
                if !self.error_challenge {
                    exchange.abandon();
                    Step::Done(Outcome::Failed)
                } else {
                    let status = match refusal {
                        Refusal::InvalidToken => sasl::ChallengeStatus::InvalidToken,
                        Refusal::InsufficientScope => sasl::ChallengeStatus::InsufficientScope,
                    };
                    match exchange.refuse(ChallengeError::new(status).with_discovery(discovery)) {
                        Ok(challenge) => {
                            (self.continuation)(out, &sasl::encode_base64(&challenge));
                            Step::Continue
                        }
                        Err(_) => Step::Done(Outcome::Failed),
                    }
                }
            }
            (Exchange::Token(exchange), Verdict::BackendRefused { challenge }) => {
                match challenge.filter(|_| self.error_challenge) {
                    None => {
                        exchange.abandon();
                        Step::Done(Outcome::Failed)
                    }
                    Some(challenge) => match exchange.refuse_with_challenge(challenge) {
                        Ok(challenge) => {
                            (self.continuation)(out, &sasl::encode_base64(&challenge));
                            Step::Continue
                        }
                        Err(_) => Step::Done(Outcome::Failed),
                    },
                }
            }
            (_, verdict) => {
                return Err(WrongState::new(
                    "verdict",
                    "waiting for a verdict of the other kind",
                    verdict,
                ))
            }
        };
        if matches!(step, Step::Continue) {
            // A verdict continues the exchange only with an error challenge.
            self.stage = Stage::AwaitingResponse;
            self.refused = true;
        }
        Ok(step)
    }
}

/// Whether a SASL error is about size: the session answers it with its "too long" reply,
/// for an initial response as for a continuation line.
pub(crate) fn is_too_long(error: &SaslError) -> bool {
    matches!(error, SaslError::TooLong { .. })
}

/// A session that runs the AUTH sub-machine: where it keeps the machine between steps, and
/// how it answers when an exchange ends. Stepping the machine and delivering a verdict are
/// written once, here, for every protocol.
pub(crate) trait AuthHost {
    /// What the protocol needs besides the machine to reply (IMAP: the command's tag).
    type Context;

    /// Keeps the running machine (the session's authenticating state).
    fn park(&mut self, context: Self::Context, auth: Auth);

    /// Takes the running machine out, leaving the session reading commands; when none
    /// runs, the session is left as it was and says what it is doing instead.
    fn unpark(&mut self) -> Result<(Self::Context, Auth), &'static str>;

    /// Where replies go.
    fn out(&mut self) -> &mut Vec<u8>;

    /// The protocol's final reply to an exchange that is over (and the failure counting).
    fn finish_auth(&mut self, context: Self::Context, outcome: Outcome);

    /// Where an exchange goes after a step of the machine.
    fn after_auth(&mut self, context: Self::Context, auth: Auth, step: Step) -> Option<Action> {
        match step {
            Step::Continue => {
                self.park(context, auth);
                None
            }
            Step::Ask(action) => {
                self.park(context, auth);
                Some(action)
            }
            Step::Done(outcome) => {
                self.finish_auth(context, outcome);
                None
            }
        }
    }

    /// The driver's verdict: handed to the running machine, or back when none runs or it
    /// does not fit.
    fn deliver_verdict(&mut self, verdict: Verdict) -> Result<(), WrongState<Verdict>> {
        let (context, mut auth) = match self.unpark() {
            Ok(running) => running,
            Err(state) => return Err(WrongState::new("verdict", state, verdict)),
        };
        match auth.verdict(self.out(), verdict) {
            Ok(step) => {
                // A verdict never leads to another request.
                let _ = self.after_auth(context, auth, step);
                Ok(())
            }
            Err(wrong) => {
                self.park(context, auth);
                Err(wrong)
            }
        }
    }
}

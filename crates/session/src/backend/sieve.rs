//! Logging in to a ManageSieve backend (RFC 5804): capability block, optional STARTTLS (the
//! server sends its capabilities again), then AUTHENTICATE "PLAIN" as the master user or
//! with an authorization id, or the client's own mechanism and token.
//!
//! ```text
//! S: "IMPLEMENTATION" "..." ... OK        (NO/BYE: refused; (TRYLATER): unavailable)
//! C: STARTTLS                             (only when asked; then the block again)
//!    -> Learned::SieveCapabilities        (the last block before login)
//! C: AUTHENTICATE "MECH" "<response>"
//! S: "<challenge>"                        (a refusal: answered with the dummy)
//! S: OK / NO / BYE
//! ```
//!
//! ManageSieve has no password fallback and no XCLIENT: those strategies are refused
//! before the machine is built.

use bytes::{Bytes, BytesMut};
use codec::sieve::client::{write_authenticate, write_logout, write_sasl_response, write_starttls};
use codec::sieve::{
    parse_auth_response, parse_response, Capability, Code, Completion, Framer, FramingError,
    Limits, Response, Status,
};
use secrecy::ExposeSecret;

use super::{
    client_response, decode_challenge, dummy_response, encode_secret, loggable,
    passthrough_refusal, plain_response, BackendLogin, Event, Learned, LoggedIn, LoginError,
    LoginRequest, Outgoing, ProtocolError, Stage, Strategy, WrongState,
};

/// Most lines in a capability block. RFC 5804 defines nine capabilities and Pigeonhole
/// sends six or seven; the proxy keeps the block for every new session, so it is bounded.
pub const MAX_CAPABILITIES: usize = 64;

/// Most octets of names and values in a capability block: Pigeonhole's is about 600, and
/// the proxy keeps the block for every new session.
pub const MAX_BLOCK_OCTETS: usize = 64 * 1_024;

/// Pre-login backend responses: capability lines of a few hundred octets, challenges up to
/// a base64 JSON object.
fn limits() -> Limits {
    Limits {
        max_line: 64 * 1_024,
        max_literal: 64 * 1_024,
        max_command: 128 * 1_024,
    }
}

#[derive(Debug)]
enum State {
    /// Reading a capability block (`Stage::Greeting` or, after TLS, `Stage::StartTls`).
    Capabilities(Stage),
    /// `STARTTLS` sent.
    StartTls,
    /// Waiting for the driver's handshake.
    TlsPending,
    /// `AUTHENTICATE` sent; `challenge` once the backend answered with one.
    Auth {
        mechanism: &'static str,
        challenge: Option<Vec<u8>>,
    },
    Done,
}

/// What the conversation is for.
#[derive(Debug)]
enum Goal {
    /// Learn the capability block, then LOGOUT.
    Probe,
    /// Log in.
    Login(LoginRequest),
}

/// One ManageSieve backend login (or start-up probe). See the [module docs](self).
#[derive(Debug)]
pub struct SieveLogin {
    goal: Goal,
    starttls: bool,
    framer: Framer,
    state: State,
    output: Outgoing,
    /// The capability block being read.
    block: Vec<Capability>,
    /// Its size so far, names and values.
    block_octets: usize,
    /// An event to report at the next `advance`, after [`Event::Learned`].
    pending: Option<Event>,
}

impl SieveLogin {
    /// A login as `request` says; the machine waits for the capability block. Refuses the
    /// `xclient` and password strategies, which ManageSieve does not have.
    pub fn new(request: LoginRequest) -> Result<Self, LoginError> {
        if let Strategy::Xclient { .. } | Strategy::Password(_) = request.strategy {
            return Err(LoginError::Unsupported {
                strategy: request.strategy.name(),
                protocol: "ManageSieve",
            });
        }
        let starttls = request.starttls;
        Ok(Self::with_goal(Goal::Login(request), starttls))
    }

    /// A start-up probe: the capability block (after STARTTLS, if asked), reported as
    /// [`Event::Learned`], then `LOGOUT` and [`Event::Probed`].
    pub fn probe(starttls: bool) -> Self {
        Self::with_goal(Goal::Probe, starttls)
    }

    fn with_goal(goal: Goal, starttls: bool) -> Self {
        Self {
            goal,
            starttls,
            framer: Framer::new(limits()),
            state: State::Capabilities(Stage::Greeting),
            output: Outgoing::default(),
            block: Vec::new(),
            block_octets: 0,
            pending: None,
        }
    }

    fn stage(&self) -> Stage {
        match self.state {
            State::Capabilities(stage) => stage,
            State::StartTls | State::TlsPending => Stage::StartTls,
            State::Auth { .. } | State::Done => Stage::Login,
        }
    }

    fn fail(&mut self, error: LoginError) -> Event {
        self.state = State::Done;
        Event::Failed(error)
    }

    fn on_line(&mut self, line: &[u8], input: &mut BytesMut) -> Result<Option<Event>, LoginError> {
        let stage = self.stage();
        let malformed = |e: codec::sieve::ParseError| {
            LoginError::protocol(
                stage,
                ProtocolError::Malformed(format!("{e}: {}", loggable(line))),
            )
        };
        let unexpected = || LoginError::protocol(stage, ProtocolError::Unexpected(loggable(line)));
        match &mut self.state {
            State::Capabilities(_) => match parse_response(line).map_err(malformed)? {
                Response::Capability(_) if self.block.len() == MAX_CAPABILITIES => {
                    Err(LoginError::protocol(
                        stage,
                        ProtocolError::TooManyCapabilities(MAX_CAPABILITIES),
                    ))
                }
                Response::Capability(capability) => {
                    self.block_octets +=
                        capability.name.len() + capability.value.as_ref().map_or(0, String::len);
                    if self.block_octets > MAX_BLOCK_OCTETS {
                        return Err(LoginError::protocol(stage, ProtocolError::TooLong));
                    }
                    self.block.push(capability);
                    Ok(None)
                }
                Response::Completion(done) if done.status == Status::Ok => self.block_done(),
                Response::Completion(done) => Err(refusal(stage, &done, line)),
                Response::Challenge(_) => Err(unexpected()),
            },
            State::StartTls => match parse_response(line).map_err(malformed)? {
                Response::Completion(done) if done.status == Status::Ok => {
                    self.state = State::TlsPending;
                    Ok(Some(Event::StartTls))
                }
                Response::Completion(done) => Err(refusal(stage, &done, line)),
                _ => Err(unexpected()),
            },
            State::Auth {
                mechanism,
                challenge,
            } => match parse_auth_response(line).map_err(malformed)? {
                Response::Challenge(data) if challenge.is_none() => {
                    // The backend refused the token with a challenge: answer with the
                    // mechanism's dummy and keep the challenge for the client.
                    *challenge = Some(decode_challenge(&data));
                    let dummy = dummy_response(mechanism);
                    write_sasl_response(self.output.buffer(), dummy).map_err(|_| {
                        LoginError::protocol(stage, ProtocolError::Unencodable("SASL response"))
                    })?;
                    Ok(None)
                }
                Response::Challenge(_) => {
                    Err(LoginError::protocol(stage, ProtocolError::SecondChallenge))
                }
                Response::Completion(done) if done.status == Status::Ok => {
                    self.state = State::Done;
                    Ok(Some(Event::LoggedIn(LoggedIn {
                        capabilities: Vec::new(),
                        leftover: input.split(),
                    })))
                }
                Response::Completion(done) => {
                    let challenge = challenge.take();
                    let passthrough = matches!(
                        &self.goal,
                        Goal::Login(LoginRequest {
                            strategy: Strategy::Passthrough { .. },
                            ..
                        })
                    );
                    if passthrough {
                        let unavailable = matches!(done.code, Some(Code::TryLater));
                        return Err(passthrough_refusal(
                            challenge,
                            unavailable,
                            stage,
                            loggable(line),
                        ));
                    }
                    Err(refusal(stage, &done, line))
                }
                Response::Capability(_) => Err(unexpected()),
            },
            State::TlsPending | State::Done => Err(LoginError::Finished),
        }
    }

    /// A capability block ended with OK: STARTTLS, or report it and go on.
    fn block_done(&mut self) -> Result<Option<Event>, LoginError> {
        if self.starttls && matches!(self.state, State::Capabilities(Stage::Greeting)) {
            self.block.clear();
            self.block_octets = 0;
            write_starttls(self.output.buffer());
            self.state = State::StartTls;
            return Ok(None);
        }
        let learned = Event::Learned(Learned::SieveCapabilities(std::mem::take(&mut self.block)));
        self.pending = match self.authenticate() {
            Ok(next) => next,
            Err(error) => Some(self.fail(error)),
        };
        Ok(Some(learned))
    }

    /// `AUTHENTICATE "mech" "response"` (or LOGOUT for a probe).
    fn authenticate(&mut self) -> Result<Option<Event>, LoginError> {
        let request = match &self.goal {
            Goal::Probe => {
                write_logout(self.output.buffer());
                self.state = State::Done;
                return Ok(Some(Event::Probed));
            }
            Goal::Login(request) => request,
        };
        let encode = |what| LoginError::protocol(Stage::Login, ProtocolError::Unencodable(what));
        let (mechanism, response) = match &request.strategy {
            Strategy::Master { user, master } => (
                "PLAIN",
                plain_response("", &master.login_name(user), &master.password)
                    .map_err(|_| encode("PLAIN response"))?,
            ),
            Strategy::PlainAuthzid { user, master } => (
                "PLAIN",
                plain_response(user, &master.name, &master.password)
                    .map_err(|_| encode("PLAIN response"))?,
            ),
            Strategy::Passthrough { user, credentials } => (
                credentials.mechanism.name(),
                client_response(user, credentials).map_err(|_| encode("client's SASL response"))?,
            ),
            Strategy::Xclient { .. } | Strategy::Password(_) => {
                return Err(LoginError::Unsupported {
                    strategy: request.strategy.name(),
                    protocol: "ManageSieve",
                })
            }
        };
        let encoded = encode_secret(&response);
        write_authenticate(
            self.output.buffer(),
            mechanism,
            Some(encoded.expose_secret()),
        )
        .map_err(|_| encode("AUTHENTICATE"))?;
        self.state = State::Auth {
            mechanism,
            challenge: None,
        };
        Ok(None)
    }
}

/// `NO` / `BYE` where OK was wanted: `(TRYLATER)` is "try again later", anything else a
/// refusal of the proxy.
fn refusal(stage: Stage, done: &Completion, line: &[u8]) -> LoginError {
    let reply = loggable(line);
    if matches!(done.code, Some(Code::TryLater)) {
        LoginError::Unavailable { stage, reply }
    } else {
        LoginError::Refused { stage, reply }
    }
}

impl BackendLogin for SieveLogin {
    fn output(&self) -> &[u8] {
        self.output.bytes()
    }

    fn output_written(&mut self) {
        self.output.written();
    }

    fn advance(&mut self, input: &mut BytesMut) -> Event {
        loop {
            if let Some(event) = self.pending.take() {
                return event;
            }
            match self.state {
                State::TlsPending => return Event::StartTls,
                State::Done => return Event::Failed(LoginError::Finished),
                _ => {}
            }
            let line: Bytes = match self.framer.decode(input) {
                Ok(Some(line)) => line,
                Ok(None) => return Event::NeedInput,
                Err(
                    FramingError::LineTooLong
                    | FramingError::LiteralTooLarge { .. }
                    | FramingError::LiteralTooLargeToSkip { .. }
                    | FramingError::CommandTooLong,
                ) => {
                    let error = LoginError::protocol(self.stage(), ProtocolError::TooLong);
                    return self.fail(error);
                }
            };
            match self.on_line(&line, input) {
                Ok(None) => {}
                Ok(Some(event)) => return event,
                Err(error) => return self.fail(error),
            }
        }
    }

    fn tls_started(&mut self) -> Result<(), WrongState<()>> {
        if !matches!(self.state, State::TlsPending) {
            return Err(WrongState::new("tls_started", "not waiting for TLS", ()));
        }
        self.framer = Framer::new(limits());
        self.block.clear();
        self.block_octets = 0;
        // RFC 5804 §2.2: the server sends its capabilities again after TLS.
        self.state = State::Capabilities(Stage::StartTls);
        Ok(())
    }

    fn closed(&mut self) -> LoginError {
        if let State::Done = self.state {
            return LoginError::Finished;
        }
        let stage = self.stage();
        self.state = State::Done;
        LoginError::protocol(stage, ProtocolError::Closed)
    }
}

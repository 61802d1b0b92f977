//! Logging in to a POP3 backend (RFC 1939): greeting, optional STLS (RFC 2595), CAPA (RFC
//! 2449) for the `USER` and `SASL` capabilities, then USER/PASS as the master user, AUTH
//! PLAIN with an authorization id (RFC 5034), the client's own mechanism and token
//! (passthrough), or the client's password (fallback).
//!
//! ```text
//! S: +OK ...                              (-ERR: refused; with [SYS/TEMP], [IN-USE] or
//!                                          [LOGIN-DELAY]: unavailable)
//! C: STLS                                 (only when asked; then the handshake)
//! C: CAPA                                 (again after TLS; -ERR: an RFC 1939 server
//!                                          whose capabilities are not known)
//! C: XCLIENT ADDR=.. PORT=.. SESSION=..   (forward_client_address, and the greeting
//!                                          said `+OK [XCLIENT]`; -ERR changes nothing)
//! C: USER alice*proxymaster               (master, and the password fallback without an
//! C: PASS secret                           authorization id, where USER is offered)
//! C: AUTH mech response                   (≤ 255 octets; else AUTH mech, `+ `, response)
//! S: + challenge                          (a refusal: answered with the dummy)
//! S: +OK / -ERR
//! ```
//!
//! Which `-ERR` is whose fault follows RFC 2449 §8 and RFC 3206: `[SYS/TEMP]`, `[IN-USE]`
//! (the maildrop is locked) and `[LOGIN-DELAY]` say "try again later"; any other `-ERR`
//! refuses the credentials: the client's own (password, passthrough token) or the proxy's
//! (master user: a configuration error). Dovecot answers every wrong login with `-ERR
//! [AUTH] Authentication failed.`, so the code alone cannot tell the two apart; the strategy
//! does.
//!
//! The client's address reaches the backend the way Dovecot's own POP3 proxy sends it: a
//! Dovecot that trusts the proxy (`login_trusted_networks`) greets with `+OK [XCLIENT]` and
//! takes `XCLIENT ADDR=... PORT=... SESSION=...` before login, then logs and rate-limits the
//! client's address instead of the proxy's, under the proxy's session id (as IMAP's `ID`
//! does). Nothing else: the login stays the backend's to check.
//!
//! After the login the backend's transaction state belongs to the client: POP3 has no
//! post-login capabilities to pass on, and what the backend sends after its `+OK` is the
//! client's ([`LoggedIn::leftover`]).

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use codec::pop3::client::{
    write_auth, write_auth_response, write_capa, write_pass, write_stls, write_user,
};
use codec::pop3::{
    capa_keywords, Code, Expect, InitialResponse, Response, ResponseError, ResponseFramer,
    ResponseLimits, StatusLine, WriteError,
};
use secrecy::{ExposeSecret, SecretString};

use super::{
    client_response, decode_challenge, dummy_response, encode_secret, loggable,
    passthrough_refusal, plain_response, BackendLogin, Event, LoggedIn, LoginError, LoginRequest,
    Outgoing, ProtocolError, Secret, Stage, Strategy, WrongState,
};

#[derive(Debug)]
enum State {
    /// Waiting for the greeting.
    Greeting,
    /// `STLS` sent.
    Stls,
    /// Waiting for the driver's handshake.
    TlsPending,
    /// `CAPA` sent.
    Capa,
    /// `XCLIENT` sent.
    Xclient,
    /// `USER` sent; `pass` (the whole PASS command) follows its `+OK`.
    User { pass: Outgoing },
    /// `PASS` sent.
    Pass,
    /// `AUTH mech` sent without the initial response: waiting for `+ `.
    AuthContinue {
        mechanism: &'static str,
        /// The base64 response to send then.
        response: Secret,
    },
    /// The SASL response was sent; `challenge` once the backend answered with one.
    Auth {
        mechanism: &'static str,
        challenge: Option<Vec<u8>>,
    },
    /// Finished.
    Done,
}

/// How the login goes, once the capabilities are known.
#[derive(Debug)]
enum Plan {
    /// `USER` now, `PASS` after its `+OK`.
    UserPass { user: Outgoing, pass: Outgoing },
    /// `AUTH mechanism` with this (raw) response.
    Auth {
        mechanism: &'static str,
        response: Secret,
    },
}

/// One POP3 backend login. See the [module docs](self).
#[derive(Debug)]
pub struct Pop3Login {
    request: LoginRequest,
    framer: ResponseFramer,
    state: State,
    output: Outgoing,
    /// The CAPA reply's capabilities, as [`capa_keywords`] gives them; `None` before CAPA
    /// and when the backend has none (RFC 1939 alone): then USER and any mechanism are
    /// tried.
    capabilities: Option<Vec<(String, Vec<String>)>>,
    /// The greeting said `+OK [XCLIENT]`: the backend takes the client's address.
    xclient: bool,
}

impl Pop3Login {
    /// A login as `request` says; the machine waits for the greeting. Refuses the
    /// `xclient` strategy, which is SMTP's.
    pub fn new(request: LoginRequest) -> Result<Self, LoginError> {
        if let Strategy::Xclient { .. } = request.strategy {
            return Err(LoginError::Unsupported {
                strategy: request.strategy.name(),
                protocol: "POP3",
            });
        }
        Ok(Self {
            request,
            framer: ResponseFramer::new(ResponseLimits::default()),
            state: State::Greeting,
            output: Outgoing::default(),
            capabilities: None,
            xclient: false,
        })
    }

    fn stage(&self) -> Stage {
        match self.state {
            State::Greeting => Stage::Greeting,
            State::Stls | State::TlsPending => Stage::StartTls,
            State::Capa => Stage::Capability,
            State::Xclient => Stage::Xclient,
            State::User { .. }
            | State::Pass
            | State::AuthContinue { .. }
            | State::Auth { .. }
            | State::Done => Stage::Login,
        }
    }

    fn fail(&mut self, error: LoginError) -> Event {
        self.state = State::Done;
        Event::Failed(error)
    }

    /// Whether CAPA lists `USER`, or there was no CAPA to tell.
    fn offers_user(&self) -> bool {
        self.capabilities
            .as_ref()
            .is_none_or(|caps| caps.iter().any(|(tag, _)| tag == "USER"))
    }

    /// Whether CAPA's `SASL` line lists `mechanism`, or there was no CAPA to tell.
    fn offers_mechanism(&self, mechanism: &str) -> bool {
        self.capabilities.as_ref().is_none_or(|caps| {
            caps.iter().any(|(tag, params)| {
                tag == "SASL" && params.iter().any(|p| p.eq_ignore_ascii_case(mechanism))
            })
        })
    }

    fn on_response(
        &mut self,
        response: Response,
        input: &mut BytesMut,
    ) -> Result<Option<Event>, LoginError> {
        let stage = self.stage();
        let unexpected = |shown: String| {
            LoginError::protocol(stage, ProtocolError::Unexpected(loggable(shown.as_bytes())))
        };
        match (&mut self.state, response) {
            (State::Greeting, Response::Status(status)) if status.is_ok() => {
                self.xclient = matches!(&status.code, Some(Code::Other(code))
                    if code.eq_ignore_ascii_case("XCLIENT"));
                if self.request.starttls {
                    write_stls(self.output.buffer());
                    self.state = State::Stls;
                    return Ok(None);
                }
                self.ask_capabilities();
                Ok(None)
            }
            (State::Stls, Response::Status(status)) if status.is_ok() => {
                self.state = State::TlsPending;
                Ok(Some(Event::StartTls))
            }
            (State::Greeting | State::Stls, Response::Status(status)) => {
                Err(refusal(stage, &status))
            }
            (State::Capa, Response::MultiLine { lines, .. }) => {
                self.capabilities = Some(capa_keywords(&lines));
                self.forward_address().map(|()| None)
            }
            (State::Capa, Response::Status(status)) if !status.is_ok() => {
                // RFC 2449 §5: a server without CAPA answers -ERR; it may still log in.
                self.capabilities = None;
                self.forward_address().map(|()| None)
            }
            (State::Xclient, Response::Status(_)) => {
                // A refused XCLIENT does not stop the login: the backend just logs the
                // proxy's address.
                self.login().map(|()| None)
            }
            (State::User { .. }, Response::Status(status)) if status.is_ok() => {
                let State::User { pass } = std::mem::replace(&mut self.state, State::Pass) else {
                    return Err(LoginError::Finished);
                };
                self.output.buffer().extend_from_slice(pass.bytes());
                Ok(None)
            }
            (State::User { .. } | State::Pass, Response::Status(status)) => {
                self.login_done(&status, None, input)
            }
            (State::AuthContinue { .. }, Response::Continuation(_)) => {
                let State::AuthContinue {
                    mechanism,
                    response,
                } = std::mem::replace(&mut self.state, State::Done)
                else {
                    return Err(LoginError::Finished);
                };
                write_auth_response(self.output.buffer(), response.expose_secret())
                    .map_err(|_| unencodable("AUTH response"))?;
                self.state = State::Auth {
                    mechanism,
                    challenge: None,
                };
                Ok(None)
            }
            (State::AuthContinue { .. }, Response::Status(status)) => {
                self.login_done(&status, None, input)
            }
            (
                State::Auth {
                    mechanism,
                    challenge: challenge @ None,
                },
                Response::Continuation(data),
            ) => {
                // An error challenge: answer with the mechanism's dummy and keep the
                // challenge for the client.
                *challenge = Some(decode_challenge(data.as_bytes()));
                write_auth_response(self.output.buffer(), dummy_response(mechanism))
                    .map_err(|_| unencodable("SASL response"))?;
                Ok(None)
            }
            (State::Auth { .. }, Response::Continuation(_)) => {
                Err(LoginError::protocol(stage, ProtocolError::SecondChallenge))
            }
            (State::Auth { challenge, .. }, Response::Status(status)) => {
                let challenge = challenge.take();
                self.login_done(&status, challenge, input)
            }
            (State::TlsPending | State::Done, _) => Err(LoginError::Finished),
            (_, Response::Status(status)) => Err(unexpected(shown(&status))),
            (_, Response::Continuation(data)) => Err(unexpected(format!("+ {data}"))),
            (_, Response::MultiLine { status, .. }) => Err(unexpected(shown(&status))),
        }
    }

    /// `CAPA`, before the login and again after TLS.
    fn ask_capabilities(&mut self) {
        write_capa(self.output.buffer());
        self.state = State::Capa;
    }

    /// `XCLIENT` with the client's address, where wanted and offered; then the login.
    fn forward_address(&mut self) -> Result<(), LoginError> {
        if !(self.request.forward_client_address && self.xclient) {
            return self.login();
        }
        write_xclient(
            self.output.buffer(),
            self.request.client,
            &self.request.session_id,
        );
        self.state = State::Xclient;
        Ok(())
    }

    /// USER/PASS or AUTH, as the strategy and the capabilities say.
    fn login(&mut self) -> Result<(), LoginError> {
        let no_mechanism = |mechanism: &str| {
            LoginError::protocol(
                Stage::Login,
                ProtocolError::NoMechanism(mechanism.to_owned()),
            )
        };
        let plan = match &self.request.strategy {
            Strategy::Master { user, master } => {
                let name = master.login_name(user);
                if self.offers_user() {
                    let (user, pass) = user_pass(&name, &master.password)
                        .map_err(|_| unencodable("USER name or master password"))?;
                    Plan::UserPass { user, pass }
                } else if self.offers_mechanism("PLAIN") {
                    let response = plain_response("", &name, &master.password)
                        .map_err(|_| unencodable("PLAIN response"))?;
                    Plan::Auth {
                        mechanism: "PLAIN",
                        response,
                    }
                } else {
                    return Err(no_mechanism("PLAIN"));
                }
            }
            Strategy::PlainAuthzid { user, master } => {
                if !self.offers_mechanism("PLAIN") {
                    return Err(no_mechanism("PLAIN"));
                }
                let response = plain_response(user, &master.name, &master.password)
                    .map_err(|_| unencodable("PLAIN response"))?;
                Plan::Auth {
                    mechanism: "PLAIN",
                    response,
                }
            }
            Strategy::Passthrough { user, credentials } => {
                let mechanism = credentials.mechanism.name();
                if !self.offers_mechanism(mechanism) {
                    return Err(no_mechanism(mechanism));
                }
                let response = client_response(user, credentials)
                    .map_err(|_| unencodable("client's SASL response"))?;
                Plan::Auth {
                    mechanism,
                    response,
                }
            }
            Strategy::Password(credentials) => {
                // USER/PASS as the client gave them; AUTH PLAIN for an authorization
                // identity, which USER cannot carry, or for a name or password USER/PASS
                // cannot (a blank at the name's edge).
                let authzid = credentials.authzid.as_deref().filter(|a| !a.is_empty());
                let by_user = authzid.is_none() && self.offers_user();
                let lines = by_user
                    .then(|| user_pass(&credentials.user, &credentials.password).ok())
                    .flatten();
                match lines {
                    Some((user, pass)) => Plan::UserPass { user, pass },
                    None if self.offers_mechanism("PLAIN") => Plan::Auth {
                        mechanism: "PLAIN",
                        response: plain_response(
                            authzid.unwrap_or(""),
                            &credentials.user,
                            &credentials.password,
                        )
                        .map_err(|_| LoginError::PasswordRefused)?,
                    },
                    None if by_user => return Err(LoginError::PasswordRefused),
                    None => return Err(no_mechanism("PLAIN")),
                }
            }
            Strategy::Xclient { .. } => {
                return Err(LoginError::Unsupported {
                    strategy: "xclient",
                    protocol: "POP3",
                })
            }
        };
        match plan {
            Plan::UserPass { user, pass } => {
                self.output.buffer().extend_from_slice(user.bytes());
                self.state = State::User { pass };
                Ok(())
            }
            Plan::Auth {
                mechanism,
                response,
            } => self.authenticate(mechanism, response),
        }
    }

    /// `AUTH mechanism response` when the line stays within 255 octets (RFC 5034 §4), else
    /// `AUTH mechanism` and the response after the `+ `.
    fn authenticate(
        &mut self,
        mechanism: &'static str,
        response: Secret,
    ) -> Result<(), LoginError> {
        let encoded = encode_secret(&response);
        let initial = InitialResponse::Base64(Bytes::copy_from_slice(encoded.expose_secret()));
        match write_auth(self.output.buffer(), mechanism, Some(&initial)) {
            Ok(()) => {
                self.state = State::Auth {
                    mechanism,
                    challenge: None,
                };
                Ok(())
            }
            Err(WriteError::LineTooLong) => {
                write_auth(self.output.buffer(), mechanism, None)
                    .map_err(|_| unencodable("AUTH"))?;
                self.state = State::AuthContinue {
                    mechanism,
                    response: encoded,
                };
                Ok(())
            }
            Err(_) => Err(unencodable("AUTH")),
        }
    }

    /// The final reply to PASS or AUTH (or USER's `-ERR`): a login, or whose fault it was
    /// that there is none.
    fn login_done(
        &mut self,
        status: &StatusLine,
        challenge: Option<Vec<u8>>,
        input: &mut BytesMut,
    ) -> Result<Option<Event>, LoginError> {
        let ok = status.is_ok();
        let unavailable = is_unavailable(status.code.as_ref());
        match &self.request.strategy {
            Strategy::Passthrough { .. } if !ok => Err(passthrough_refusal(
                challenge,
                unavailable,
                Stage::Login,
                loggable(shown(status).as_bytes()),
            )),
            Strategy::Password(_) if challenge.is_some() => Err(LoginError::PasswordRefused),
            Strategy::Password(_) if !ok && unavailable => Err(refusal(Stage::Login, status)),
            Strategy::Password(_) if !ok => Err(LoginError::PasswordRefused),
            // PLAIN has no challenges: one means something is wrong.
            Strategy::Master { .. } | Strategy::PlainAuthzid { .. }
                if !ok || challenge.is_some() =>
            {
                Err(refusal(Stage::Login, status))
            }
            _ => {
                self.state = State::Done;
                Ok(Some(Event::LoggedIn(LoggedIn {
                    capabilities: Vec::new(),
                    leftover: input.split(),
                })))
            }
        }
    }
}

/// `USER name` and `PASS password`, each written whole before anything is sent: PASS
/// waits for USER's `+OK`, and a password PASS cannot carry is known before USER goes.
fn user_pass(name: &str, password: &SecretString) -> Result<(Outgoing, Outgoing), WriteError> {
    let mut user = Outgoing::default();
    write_user(user.buffer(), name)?;
    let mut pass = Outgoing::default();
    write_pass(pass.buffer(), password.expose_secret())?;
    Ok((user, pass))
}

/// `XCLIENT ADDR=ip PORT=port [SESSION=id]` CRLF, as Dovecot's own POP3 proxy sends it
/// (without its loop-detecting `TTL`). An address and a port are ASCII without blanks; the
/// session id goes only when it is printable ASCII of at most [`MAX_SESSION_ID`] octets, so
/// the line stays one line, within RFC 2449's 255 octets.
fn write_xclient(out: &mut Vec<u8>, client: SocketAddr, session_id: &str) {
    let mut line = format!("XCLIENT ADDR={} PORT={}", client.ip(), client.port());
    let printable = !session_id.is_empty()
        && session_id.len() <= MAX_SESSION_ID
        && session_id.bytes().all(|b| b.is_ascii_graphic());
    if printable {
        line.push_str(" SESSION=");
        line.push_str(session_id);
    }
    line.push_str("\r\n");
    out.extend_from_slice(line.as_bytes());
}

/// Longest session id sent with XCLIENT: Dovecot ignores longer ones
/// (`LOGIN_MAX_SESSION_ID_LEN`, 64).
const MAX_SESSION_ID: usize = 64;

fn unencodable(what: &'static str) -> LoginError {
    LoginError::protocol(Stage::Login, ProtocolError::Unencodable(what))
}

/// RFC 2449 §8.1 and RFC 3206: the codes that say "not now", not "not you".
fn is_unavailable(code: Option<&Code>) -> bool {
    matches!(code, Some(Code::SysTemp | Code::InUse | Code::LoginDelay))
}

/// `-ERR` where `+OK` was wanted: "try again later" or a refusal of the proxy.
fn refusal(stage: Stage, status: &StatusLine) -> LoginError {
    let reply = loggable(shown(status).as_bytes());
    if is_unavailable(status.code.as_ref()) {
        LoginError::Unavailable { stage, reply }
    } else {
        LoginError::Refused { stage, reply }
    }
}

/// A status line as the backend sent it (near enough), for the log.
fn shown(status: &StatusLine) -> String {
    let mut line = status.status.as_str().to_owned();
    if let Some(code) = &status.code {
        line.push_str(" [");
        line.push_str(code.name());
        line.push(']');
    }
    if !status.text.is_empty() {
        line.push(' ');
        line.push_str(&status.text);
    }
    line
}

impl BackendLogin for Pop3Login {
    fn output(&self) -> &[u8] {
        self.output.bytes()
    }

    fn output_written(&mut self) {
        self.output.written();
    }

    fn advance(&mut self, input: &mut BytesMut) -> Event {
        loop {
            match self.state {
                State::TlsPending => return Event::StartTls,
                State::Done => return Event::Failed(LoginError::Finished),
                _ => {}
            }
            // RFC 1939 §3: only CAPA's `+OK` opens a multi-line reply here.
            let expect = match self.state {
                State::Capa => Expect::MultiLine,
                _ => Expect::SingleLine,
            };
            let response = match self.framer.decode(input, expect) {
                Ok(Some(response)) => response,
                Ok(None) => return Event::NeedInput,
                Err(error) => {
                    let error = match error {
                        ResponseError::LineTooLong | ResponseError::TooLong => {
                            ProtocolError::TooLong
                        }
                        ResponseError::TooManyLines => {
                            ProtocolError::TooManyCapabilities(ResponseLimits::DEFAULT_MAX_LINES)
                        }
                        ResponseError::Syntax => ProtocolError::Malformed(
                            "a line that is not +OK, -ERR or a continuation".into(),
                        ),
                    };
                    return self.fail(LoginError::protocol(self.stage(), error));
                }
            };
            match self.on_response(response, input) {
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
        // Nothing read before the handshake is trusted, nor what it said it could do
        // (RFC 2595 §4: the client discards what it learned and asks again).
        self.framer = ResponseFramer::new(ResponseLimits::default());
        self.capabilities = None;
        self.ask_capabilities();
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

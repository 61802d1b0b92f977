//! The thin async loop around a protocol's pre-login session: read, feed, write, act on the
//! session's requests (STARTTLS, token validation, backend login), then relay. Written once
//! for every protocol: what differs is behind [`session::Session`] and the backend login.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bytes::BytesMut;
use session::{Action, Session, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, info_span, Instrument};

use crate::admission::Origin;
use crate::auth::{self, AuthError, Refused};
use crate::backend::{self, LoggedIn};
use crate::config::ListenerTls;
use crate::failure::LoginFailure;
use crate::listener::{next_session_id, ListenerContext};
use crate::metrics::{Credential, LoginOutcome, METRICS};
use crate::relay;
use crate::stream::{self, ClientStream};
use crate::throttle::{Charge, Cost, Limit};

/// Pre-login reads: small, since commands are small; a long AUTHENTICATE line grows the
/// buffer up to the framer's limit.
const READ_CHUNK: usize = 4 * 1_024;

/// Serves one client connection from accept to close. `admission` holds its places on the
/// listener: the per-address one is given back at login, the rest before the closing log
/// line.
pub async fn serve<S: Session>(
    tcp: TcpStream,
    peer: SocketAddr,
    context: Arc<ListenerContext>,
    mut admission: crate::admission::Admission,
    new_session: impl FnOnce(bool) -> S,
) {
    let id = next_session_id();
    let protocol = context.protocol;
    // `peer` is the client: the socket's peer, or the one a trusted load balancer's PROXY
    // header named (`via`, the balancer, is then in the span too).
    let span = info_span!(
        "session",
        id = %id,
        peer = %peer,
        via = tracing::field::Empty,
        protocol = protocol.name(),
        user = tracing::field::Empty,
        mechanism = tracing::field::Empty,
    );
    if let Some(via) = admission.origin().via {
        span.record("via", tracing::field::display(via));
    }
    async move {
        debug!("connected");
        // The pre-login future (session state, validation, backend login) is large and lives
        // on its own heap allocation, freed at login: during the relay, which may last days,
        // the task holds only the two connections and the relay's counters.
        let origin = *admission.origin();
        let pre_login = Box::pin(run(tcp, peer, origin, &context, &id, new_session));
        // When the drain is over, a session waiting for its client says goodbye in `run`
        // (polled first); one busy with anything else (a handshake, a login) is cut here.
        let ended = tokio::select! {
            biased;
            ended = pre_login => ended,
            () = context.drain_over.cancelled() => Ok(PreLoginEnd::Closed("drained")),
        };
        let closed = match ended {
            Ok(PreLoginEnd::Closed(reason)) => Ok(Closed::BeforeLogin(reason)),
            Ok(PreLoginEnd::LoggedIn(handoff)) => {
                admission.logged_in();
                relay_after_login(handoff, &context).await
            }
            Err(e) => Err(e),
        };
        drop(admission);
        match closed {
            Ok(Closed::BeforeLogin(reason)) => info!(outcome = reason, "closed"),
            Ok(Closed::AfterRelay(relayed)) => {
                METRICS.relayed(
                    protocol,
                    relayed.client_to_backend,
                    relayed.backend_to_client,
                );
                info!(
                    outcome = if relayed.stopped {
                        "drained"
                    } else {
                        "relayed"
                    },
                    client_bytes = relayed.client_to_backend,
                    backend_bytes = relayed.backend_to_client,
                    error = relayed
                        .error
                        .as_ref()
                        .filter(|e| !is_plain_close(e))
                        .map(tracing::field::display),
                    "closed"
                )
            }
            Err(e) if is_plain_close(&e) => info!(outcome = "client-closed", "closed"),
            Err(e) => info!(outcome = "io-error", error = %e, "closed"),
        }
    }
    .instrument(span)
    .await;
}

enum Closed {
    BeforeLogin(&'static str),
    AfterRelay(relay::RelayOutcome),
}

/// How the pre-login phase ended.
enum PreLoginEnd {
    /// The connection closed before a login.
    Closed(&'static str),
    /// Logged in: relay from here.
    LoggedIn(Handoff),
}

/// What the relay starts from.
struct Handoff {
    client: ClientStream,
    logged_in: LoggedIn,
    /// Client bytes read behind its login command: they belong to the backend.
    pipelined: BytesMut,
}

/// The pre-login phase, bounded by the listener's `preauth_deadline` counted from accept
/// (`origin.accepted`, before any PROXY header):
/// every TLS handshake (implicit or STARTTLS), read and write before login ends when it
/// passes, and the session then says the deadline's goodbye as far as the socket takes it
/// at once. A login already asked of the identity provider or the backend is not cut: it
/// ends within its own timeouts (the validator's, the backend's `login_timeout`), a
/// success is the login the deadline asks for, and a failure's reply is followed by the
/// deadline's goodbye. Cutting it would leave the provider and the backend half-done work
/// for a client that at worst stays `login_timeout` longer; the success reply's write is
/// the logged-in session's, unbounded like the relay.
async fn run<S: Session>(
    tcp: TcpStream,
    peer: SocketAddr,
    origin: Origin,
    context: &ListenerContext,
    session_id: &str,
    new_session: impl FnOnce(bool) -> S,
) -> std::io::Result<PreLoginEnd> {
    let deadline = origin.accepted + context.preauth_deadline;
    let connection = Connection {
        peer,
        destination: origin.destination,
    };
    let mut client = match (&context.tls_mode, &context.acceptor) {
        (ListenerTls::Implicit, Some(acceptor)) => {
            match handshake(acceptor, tcp, context, deadline, "TLS").await {
                Ok(tls) => tls,
                Err(reason) => return Ok(PreLoginEnd::Closed(reason)),
            }
        }
        _ => ClientStream::Plain(tcp),
    };
    let mut session = new_session(client.is_tls());
    let mut input = BytesMut::new();
    // Failed logins on this connection, for the growing failure delay.
    let mut failures = 0u32;
    loop {
        let action = session.advance(&mut input);
        if let Some(end) = flush_until(&mut session, &mut client, deadline).await? {
            return Ok(end);
        }
        // Past the deadline nothing more is read, and no login or handshake started. Not
        // left to the timeouts alone: a read with bytes ready gets through one whose time
        // is up, so a client that always has some would never wait on one; and a login
        // in flight may end after the deadline.
        if !matches!(action, Action::Close) && tokio::time::Instant::now() >= deadline {
            return Ok(deadline_goodbye(&mut session, &mut client, 0).await);
        }
        match action {
            Action::NeedInput => {
                if input.capacity() - input.len() < READ_CHUNK {
                    input.reserve(READ_CHUNK);
                }
                // Each read is bounded by the idle timeout and by the pre-login deadline,
                // which no amount of activity moves.
                let idle_end = tokio::time::Instant::now() + context.preauth_idle_timeout;
                let read = tokio::select! {
                    read = tokio::time::timeout_at(
                        idle_end.min(deadline),
                        client.read_buf(&mut input),
                    ) => read,
                    () = context.drain_over.cancelled() => {
                        return Ok(say_goodbye(&mut session, &mut client).await);
                    }
                };
                match read {
                    Ok(Ok(0)) => return Ok(PreLoginEnd::Closed("client-closed")),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) if deadline <= idle_end => {
                        return Ok(deadline_goodbye(&mut session, &mut client, 0).await);
                    }
                    Err(_) => {
                        session.idle_timeout();
                        if let Some(end) = flush_until(&mut session, &mut client, deadline).await? {
                            return Ok(end);
                        }
                        return Ok(PreLoginEnd::Closed("idle-timeout"));
                    }
                }
            }
            Action::Close => {
                // Polite, but not something a client that does not read can stretch.
                let _ = tokio::time::timeout_at(deadline, client.shutdown()).await;
                return Ok(PreLoginEnd::Closed(session.close_reason()));
            }
            Action::StartTls => {
                // Anything the client sent after STARTTLS was sent in clear text and could
                // have been injected: it must never be read as commands (CVE-2011-0411).
                input.clear();
                let (ClientStream::Plain(tcp), Some(acceptor)) = (client, &context.acceptor) else {
                    return Ok(PreLoginEnd::Closed("starttls-unavailable"));
                };
                client = match handshake(acceptor, tcp, context, deadline, "STARTTLS").await {
                    Ok(tls) => tls,
                    Err(reason) => return Ok(PreLoginEnd::Closed(reason)),
                };
                session.tls_started().map_err(session_bug)?;
            }
            Action::PasswordLogin(credentials) => {
                let attempt = Attempt::new(context, connection, Credential::Password, "password");
                let login = attempt.password(&credentials, session.client_name(), session_id);
                match login.await {
                    Ok(logged_in) => {
                        return attempt
                            .logged_in(session, client, logged_in, input, &credentials.user)
                            .await
                    }
                    Err(failure) => {
                        let user = Some(credentials.user.as_str());
                        attempt
                            .failed(&mut session, failure, user, &mut failures)
                            .await?
                    }
                }
            }
            Action::Authenticate(credentials) => {
                let mechanism = credentials.mechanism.name();
                let attempt = Attempt::new(context, connection, Credential::Token, mechanism);
                let login = attempt.token(&credentials, session.client_name(), session_id);
                match login.await {
                    Ok((logged_in, user)) => {
                        return attempt
                            .logged_in(session, client, logged_in, input, &user)
                            .await
                    }
                    Err(failure) => {
                        attempt
                            .failed(&mut session, failure, None, &mut failures)
                            .await?
                    }
                }
            }
        }
    }
}

/// The client's address and the one it connected to, for the backend.
#[derive(Debug, Clone, Copy)]
struct Connection {
    peer: SocketAddr,
    destination: SocketAddr,
}

/// One login attempt: asking the identity provider and the backend, and then the one place
/// where its outcome becomes metrics, logs, the failure delay and the reply.
struct Attempt<'a> {
    context: &'a ListenerContext,
    peer: SocketAddr,
    destination: SocketAddr,
    credential: Credential,
    mechanism: &'static str,
    /// What the attempt holds of the `[auth_limits]` budgets
    /// ([`crate::throttle::Throttle::begin`]).
    charge: Mutex<Charge<'a>>,
}

impl<'a> Attempt<'a> {
    fn new(
        context: &'a ListenerContext,
        connection: Connection,
        credential: Credential,
        mechanism: &'static str,
    ) -> Self {
        let Connection { peer, destination } = connection;
        Self {
            context,
            peer,
            destination,
            credential,
            mechanism,
            charge: Mutex::new(context.throttle.charge(peer.ip())),
        }
    }

    /// Applies `settle` to the attempt's charge. (The lock is never held across an await.)
    fn settle<T>(&self, settle: impl FnOnce(&mut Charge<'a>, Instant) -> T) -> T {
        let mut charge = self.charge.lock().unwrap_or_else(PoisonError::into_inner);
        settle(&mut charge, Instant::now())
    }

    /// Holds the attempt's units of the budgets before anyone is asked, or names the limit
    /// that refuses it. Where attempts in flight hold every unit, waits for one to come
    /// back for as long as a backend login may take: they are mostly good logins, which
    /// give their units back within moments.
    async fn begin(&self, user: Option<&str>, cost: Cost) -> Result<(), Limit> {
        let now = Instant::now();
        // (An absurd timeout that overflows an `Instant`: no waiting at all.)
        let deadline = now
            .checked_add(self.context.backend.login_timeout)
            .unwrap_or(now);
        let throttle = &*self.context.throttle;
        let charge = throttle
            .begin(self.peer.ip(), user, cost, now, deadline)
            .await?;
        self.settle(|held, _| *held = charge);
        Ok(())
    }

    /// Password fallback: the backend checks the password by logging in with it.
    async fn password(
        &self,
        credentials: &sasl::PasswordCredentials,
        client_name: Option<&str>,
        session_id: &str,
    ) -> Result<LoggedIn, LoginFailure> {
        self.begin(Some(&credentials.user), Cost::NoIdpRequest)
            .await
            .map_err(LoginFailure::Throttled)?;
        let backend = &self.context.backend;
        let names =
            std::iter::once(credentials.user.as_str()).chain(credentials.authzid.as_deref());
        if names
            .into_iter()
            .any(|name| backend.is_master_identity(name))
        {
            return Err(LoginFailure::MasterIdentity);
        }
        let request = backend::PasswordRequest {
            credentials,
            client: self.peer,
            destination: Some(self.destination),
            client_name,
            session_id,
        };
        let login = backend::password_login(self.context.protocol, backend, request);
        match tokio::time::timeout(backend.login_timeout, login).await {
            Ok(result) => result.map_err(LoginFailure::Backend),
            Err(_) => Err(LoginFailure::Backend(backend::BackendError::Timeout)),
        }
    }

    /// A token: the validator says whose it is, then the backend login for that user.
    /// Returns the login and the token's user.
    async fn token(
        &self,
        credentials: &sasl::BearerCredentials,
        client_name: Option<&str>,
        session_id: &str,
    ) -> Result<(LoggedIn, String), LoginFailure> {
        let validator = &self.context.validator;
        // A token known to be valid (or the built-in issuer's) is never throttled: the limits
        // spare the identity provider guesses, they do not lock out working tokens.
        let cost = Cost::of_token(validator.answer_source(&credentials.token).await);
        self.begin(credentials.authzid.as_deref(), cost)
            .await
            .map_err(LoginFailure::Throttled)?;
        let context = &self.context;
        let checked =
            auth::check(validator, credentials, &context.scope_key, &context.service).await;
        // A valid token refused for its user or its audience was no guess.
        if matches!(
            &checked,
            Ok(_)
                | Err(AuthError::Refused(
                    Refused::WrongUser { .. } | Refused::WrongService { .. }
                ))
        ) {
            self.settle(|charge, _| charge.token_accepted());
        }
        let identity = match checked {
            Ok(identity) => identity,
            Err(AuthError::Unavailable(why)) => return Err(LoginFailure::IdpUnavailable(why)),
            Err(AuthError::Refused(reason)) => {
                let discovery = validator.discovery_for(&credentials.token).clone();
                return Err(LoginFailure::TokenRefused { reason, discovery });
            }
        };
        let backend = &self.context.backend;
        let request = backend::LoginRequest {
            user: &identity.backend_user,
            credentials,
            client: self.peer,
            destination: self.destination,
            client_name,
            session_id,
        };
        let login = backend::login(self.context.protocol, backend, request);
        let logged_in = match tokio::time::timeout(backend.login_timeout, login).await {
            Ok(result) => result.map_err(LoginFailure::Backend)?,
            Err(_) => return Err(LoginFailure::Backend(backend::BackendError::Timeout)),
        };
        Ok((logged_in, identity.user.clone()))
    }

    /// The attempt failed: the one place that counts, logs, delays and replies.
    async fn failed<S: Session>(
        &self,
        session: &mut S,
        failure: LoginFailure,
        user: Option<&str>,
        failures: &mut u32,
    ) -> std::io::Result<()> {
        METRICS.login(self.context.protocol, self.credential, failure.outcome());
        failure.log(self.mechanism, user);
        if failure.is_guess() {
            let delay = self.settle(|charge, now| charge.failed(*failures, now));
            *failures += 1;
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        } else {
            self.settle(Charge::refund);
        }
        deliver(session, failure.verdict())
    }

    /// The backend said yes: the client gets the success reply and the relay starts.
    async fn logged_in<S: Session>(
        &self,
        mut session: S,
        mut client: ClientStream,
        mut logged_in: LoggedIn,
        input: BytesMut,
        user: &str,
    ) -> std::io::Result<PreLoginEnd> {
        METRICS.login(
            self.context.protocol,
            self.credential,
            LoginOutcome::Success,
        );
        self.settle(Charge::refund);
        let capabilities = std::mem::take(&mut logged_in.capabilities);
        deliver(&mut session, Verdict::LoggedIn { capabilities })?;
        flush_output(&mut session, &mut client).await?;
        // Recorded once, on success: the span's fields describe the session.
        let span = tracing::Span::current();
        span.record("user", user);
        span.record("mechanism", self.mechanism);
        info!("logged in");
        drop(session);
        Ok(PreLoginEnd::LoggedIn(Handoff {
            client,
            logged_in,
            pipelined: input,
        }))
    }
}

/// Hands over: what the client pipelined behind its login goes to the backend, what the
/// backend sent behind its login reply goes to the client, then the plain byte copy.
async fn relay_after_login(handoff: Handoff, context: &ListenerContext) -> std::io::Result<Closed> {
    let Handoff {
        mut client,
        logged_in,
        pipelined,
    } = handoff;
    let LoggedIn {
        stream: mut backend,
        leftover,
        ..
    } = logged_in;
    if !pipelined.is_empty() {
        backend.write_all(&pipelined).await?;
    }
    drop(pipelined);
    if !leftover.is_empty() {
        client.write_all(&leftover).await?;
    }
    drop(leftover);
    // The drain's end stops the copy without a word: a goodbye written into the byte
    // stream could land in the middle of a backend reply.
    let stop = context.drain_over.cancelled();
    let outcome = relay::relay_until(&mut client, &mut backend, stop).await;
    Ok(Closed::AfterRelay(outcome))
}

/// The drain is over while the session waits for its client: the protocol's goodbye, then
/// close. Not waited for: a client that does not read its socket is owed nothing, and
/// [`serve`] cuts a write that cannot finish at once.
async fn say_goodbye<S: Session>(session: &mut S, client: &mut ClientStream) -> PreLoginEnd {
    session.shutting_down();
    if flush_output(session, client).await.is_ok() {
        let _ = client.shutdown().await;
    }
    PreLoginEnd::Closed("drained")
}

/// A TLS handshake (implicit, or after STARTTLS), bounded as a whole by the idle timeout
/// and by the pre-login deadline: a ClientHello trickled byte by byte resets neither. `Err`
/// is the reason the connection closes.
async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    context: &ListenerContext,
    deadline: tokio::time::Instant,
    what: &'static str,
) -> Result<ClientStream, &'static str> {
    let idle_end = tokio::time::Instant::now() + context.preauth_idle_timeout;
    match tokio::time::timeout_at(idle_end.min(deadline), acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Ok(ClientStream::Tls(Box::new(tls))),
        Ok(Err(e)) => {
            debug!(error = %e, "{what} handshake failed");
            Err("tls-handshake-failed")
        }
        Err(_) if deadline <= idle_end => Err("prelogin-deadline"),
        Err(_) => Err("tls-handshake-timeout"),
    }
}

/// The pre-login deadline passed: the session's goodbye behind whatever of its output is
/// still unwritten (`sent` octets of it were written), then close, all only as far as the
/// socket takes it at once: a client that does not read its socket is owed nothing.
async fn deadline_goodbye<S: Session>(
    session: &mut S,
    client: &mut ClientStream,
    sent: usize,
) -> PreLoginEnd {
    session.deadline_passed();
    let rest = session.output().get(sent..).unwrap_or_default();
    let goodbye = async {
        client.write_all(rest).await?;
        client.flush().await?;
        client.shutdown().await
    };
    if stream::at_once(goodbye).await.is_none() {
        debug!("the socket did not take the goodbye at once");
    }
    PreLoginEnd::Closed("prelogin-deadline")
}

/// Reports a verdict to the session.
fn deliver<S: Session>(session: &mut S, verdict: Verdict) -> std::io::Result<()> {
    session.verdict(verdict).map_err(session_bug)
}

/// A session that refuses what the driver tells it is a bug in the driver: the connection
/// is closed (as an I/O error, logged) rather than left in a state nobody knows.
fn session_bug<T: std::fmt::Debug>(wrong: session::WrongState<T>) -> std::io::Error {
    error!(
        method = wrong.method,
        state = wrong.state,
        "the session refused the driver's call"
    );
    std::io::Error::other(format!(
        "{} called while the session was {}",
        wrong.method, wrong.state
    ))
}

/// A peer that hung up without TLS `close_notify`: what most mail clients do when they are
/// done, so it is logged as an ordinary close, not as an I/O error. (A truncation attack
/// gains nothing here: the protocols have their own end markers, and before login there is
/// nothing to truncate.)
fn is_plain_close(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof
}

/// Writes the session's output unless the pre-login deadline passes first: then the
/// deadline's goodbye follows what was written, and `Some` says how the connection ended.
async fn flush_until<S: Session>(
    session: &mut S,
    client: &mut ClientStream,
    deadline: tokio::time::Instant,
) -> std::io::Result<Option<PreLoginEnd>> {
    if session.output().is_empty() {
        return Ok(None);
    }
    let mut sent = 0;
    let write = stream::write_counting(client, session.output(), &mut sent);
    match tokio::time::timeout_at(deadline, write).await {
        Ok(Ok(())) => {
            session.output_written();
            Ok(None)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Ok(Some(deadline_goodbye(session, client, sent).await)),
    }
}

async fn flush_output<S: Session>(
    session: &mut S,
    client: &mut ClientStream,
) -> std::io::Result<()> {
    let output = session.output();
    if output.is_empty() {
        return Ok(());
    }
    client.write_all(output).await?;
    client.flush().await?;
    session.output_written();
    Ok(())
}

//! The thin async loop around [`ImapSession`]: read, feed, write, act on the session's
//! requests (STARTTLS, token validation), then relay.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use session::imap::{Action, ImapSession, ImapSessionConfig, Refusal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::auth::{self, AuthError};
use crate::backend;
use crate::config::{ListenerTls, Protocol};
use crate::metrics::{LoginOutcome, METRICS};
use crate::relay;
use crate::server::{next_session_id, ListenerContext};
use crate::stream::ClientStream;

/// Pre-login reads: small, since commands are small; a long AUTHENTICATE line grows the
/// buffer up to the framer's limit.
const READ_CHUNK: usize = 4 * 1024;

/// Serves one IMAP client connection from accept to close.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, context: Arc<ListenerContext>) {
    let id = next_session_id();
    let span = info_span!(
        "session",
        id = %id,
        peer = %peer,
        protocol = "imap",
        user = tracing::field::Empty,
        mechanism = tracing::field::Empty,
    );
    async move {
        debug!("connected");
        let outcome = run(tcp, peer, &context, &id).await;
        match outcome {
            Ok(Closed::BeforeLogin(reason)) => info!(outcome = reason, "closed"),
            Ok(Closed::AfterRelay(relayed)) => {
                METRICS.relayed(
                    Protocol::Imap,
                    relayed.client_to_backend,
                    relayed.backend_to_client,
                );
                info!(
                    outcome = "relayed",
                    client_bytes = relayed.client_to_backend,
                    backend_bytes = relayed.backend_to_client,
                    error = relayed.error.as_ref().map(tracing::field::display),
                    "closed"
                )
            }
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

async fn run(
    tcp: TcpStream,
    peer: SocketAddr,
    context: &ListenerContext,
    session_id: &str,
) -> std::io::Result<Closed> {
    let mut client = match (&context.tls_mode, &context.acceptor) {
        (ListenerTls::Implicit, Some(acceptor)) => {
            match tokio::time::timeout(context.preauth_idle_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    debug!(error = %e, "TLS handshake failed");
                    return Ok(Closed::BeforeLogin("tls-handshake-failed"));
                }
                Err(_) => return Ok(Closed::BeforeLogin("tls-handshake-timeout")),
            }
        }
        _ => ClientStream::Plain(tcp),
    };
    let mut session = ImapSession::new(ImapSessionConfig {
        tls_active: client.is_tls(),
        starttls_available: context.tls_mode == ListenerTls::Starttls,
        allow_plaintext_auth: context.allow_plaintext_auth,
        max_auth_failures: context.max_auth_failures,
        openid_configuration: context.challenge.openid_configuration.clone(),
        challenge_scope: context.challenge.scope.clone(),
        ..ImapSessionConfig::default()
    });
    let mut input = BytesMut::new();
    loop {
        let action = session.advance(&mut input);
        flush_output(&mut session, &mut client).await?;
        match action {
            Action::NeedInput => {
                if input.capacity() - input.len() < READ_CHUNK {
                    input.reserve(READ_CHUNK);
                }
                let read =
                    tokio::time::timeout(context.preauth_idle_timeout, client.read_buf(&mut input))
                        .await;
                match read {
                    Ok(Ok(0)) => return Ok(Closed::BeforeLogin("client-closed")),
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        session.idle_timeout();
                        flush_output(&mut session, &mut client).await?;
                        return Ok(Closed::BeforeLogin("idle-timeout"));
                    }
                }
            }
            Action::Close => {
                let _ = client.shutdown().await;
                return Ok(Closed::BeforeLogin(session.close_reason()));
            }
            Action::StartTls => {
                // Anything the client sent after STARTTLS was sent in clear text and could
                // have been injected: it must never be read as commands (CVE-2011-0411).
                input.clear();
                let (ClientStream::Plain(tcp), Some(acceptor)) = (client, &context.acceptor) else {
                    return Ok(Closed::BeforeLogin("starttls-unavailable"));
                };
                match tokio::time::timeout(context.preauth_idle_timeout, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => client = ClientStream::Tls(Box::new(tls)),
                    Ok(Err(e)) => {
                        debug!(error = %e, "STARTTLS handshake failed");
                        return Ok(Closed::BeforeLogin("tls-handshake-failed"));
                    }
                    Err(_) => return Ok(Closed::BeforeLogin("tls-handshake-timeout")),
                }
                session.tls_started();
            }
            Action::Authenticate(credentials) => {
                let mechanism = credentials.mechanism.name();
                let identity = match auth::check(&context.validator, &credentials).await {
                    Ok(identity) => identity,
                    Err(AuthError::Unavailable(why)) => {
                        METRICS.login(Protocol::Imap, LoginOutcome::IdpUnavailable);
                        warn!(mechanism, reason = %why, "identity provider unavailable");
                        session.unavailable();
                        continue;
                    }
                    Err(AuthError::Refused(why)) => {
                        METRICS.login(Protocol::Imap, LoginOutcome::Refused);
                        info!(mechanism, reason = %why, "authentication refused");
                        session.token_refused(refusal(&why));
                        continue;
                    }
                };
                let login =
                    backend::imap::login(&context.backend, &identity.user, peer, session_id);
                match tokio::time::timeout(context.backend.login_timeout, login).await {
                    Ok(Ok(mut logged_in)) => {
                        METRICS.login(Protocol::Imap, LoginOutcome::Success);
                        session.logged_in(&logged_in.capabilities);
                        // Recorded once, on success: the span's fields describe the session.
                        let span = tracing::Span::current();
                        span.record("user", identity.user.as_str());
                        span.record("mechanism", mechanism);
                        flush_output(&mut session, &mut client).await?;
                        info!("logged in");
                        // Commands the client pipelined behind AUTHENTICATE go to the backend
                        // as they were sent.
                        if !input.is_empty() {
                            logged_in.stream.write_all(&input).await?;
                        }
                        drop(input);
                        drop(session);
                        if !logged_in.leftover.is_empty() {
                            client.write_all(&logged_in.leftover).await?;
                        }
                        let mut backend = logged_in.stream;
                        drop(logged_in.leftover);
                        let outcome = relay::relay(&mut client, &mut backend).await;
                        return Ok(Closed::AfterRelay(outcome));
                    }
                    Ok(Err(e)) => {
                        METRICS.login(Protocol::Imap, LoginOutcome::BackendUnavailable);
                        warn!(backend = %context.backend.name, user = %identity.user, error = %e, "backend login failed");
                        session.unavailable();
                    }
                    Err(_) => {
                        METRICS.login(Protocol::Imap, LoginOutcome::BackendUnavailable);
                        warn!(backend = %context.backend.name, "backend login timed out");
                        session.unavailable();
                    }
                }
            }
        }
    }
}

fn refusal(why: &auth::Refused) -> Refusal {
    if why.is_missing_scope() {
        Refusal::InsufficientScope
    } else {
        Refusal::InvalidToken
    }
}

async fn flush_output(session: &mut ImapSession, client: &mut ClientStream) -> std::io::Result<()> {
    let output = session.output();
    if output.is_empty() {
        return Ok(());
    }
    client.write_all(output).await?;
    client.flush().await?;
    session.output_written();
    Ok(())
}

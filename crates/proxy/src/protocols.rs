//! Each protocol's pre-login session, set up from its listener and plugged into the shared
//! [`crate::driver`], and what a client turned away at accept hears in that protocol.

use std::net::SocketAddr;
use std::sync::Arc;

use session::imap::{ImapSession, ImapSessionConfig};
use session::pop3::{Pop3Session, Pop3SessionConfig};
use session::sieve::{SieveSession, SieveSessionConfig};
use session::smtp::{SmtpSession, SmtpSessionConfig};
use tokio::net::TcpStream;

use crate::admission::Admission;
use crate::config::{ListenerTls, Protocol};
use crate::driver;
use crate::listener::ListenerContext;

/// What a client turned away at accept (a full listener, or its address at
/// `max_prelogin_per_address`) is told before the connection closes: each protocol's
/// "try again later", written by its session code like every other pre-login reply.
pub fn refusal(context: &ListenerContext, why: session::Busy) -> Vec<u8> {
    match context.protocol {
        Protocol::Imap => session::imap::refusal(why),
        Protocol::Smtp => session::smtp::refusal(why, &context.hostname),
        Protocol::Sieve => session::sieve::refusal(why),
        Protocol::Pop3 => session::pop3::refusal(why),
    }
}

/// Serves a connection with the listener's protocol, holding its `admission` (its places
/// on the listener) until it ends.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    context: Arc<ListenerContext>,
    admission: Admission,
) {
    match context.protocol {
        Protocol::Imap => {
            let config = imap_config(&context);
            driver::serve(tcp, peer, context, admission, move |tls_active| {
                ImapSession::new(ImapSessionConfig {
                    tls_active,
                    ..config
                })
            })
            .await
        }
        Protocol::Smtp => {
            let config = smtp_config(&context);
            driver::serve(tcp, peer, context, admission, move |tls_active| {
                SmtpSession::new(SmtpSessionConfig {
                    tls_active,
                    ..config
                })
            })
            .await
        }
        Protocol::Sieve => {
            let config = sieve_config(&context);
            driver::serve(tcp, peer, context, admission, move |tls_active| {
                SieveSession::new(SieveSessionConfig {
                    tls_active,
                    ..config
                })
            })
            .await
        }
        Protocol::Pop3 => {
            let config = pop3_config(&context);
            driver::serve(tcp, peer, context, admission, move |tls_active| {
                Pop3Session::new(Pop3SessionConfig {
                    tls_active,
                    ..config
                })
            })
            .await
        }
    }
}

fn imap_config(context: &ListenerContext) -> ImapSessionConfig {
    ImapSessionConfig {
        starttls_available: context.tls_mode == ListenerTls::Starttls,
        allow_plaintext_auth: context.allow_plaintext_auth,
        password_fallback: context.password_fallback,
        error_challenge: context.error_challenge,
        max_auth_failures: context.max_auth_failures,
        discovery: context.challenge.clone(),
        ..ImapSessionConfig::default()
    }
}

fn smtp_config(context: &ListenerContext) -> SmtpSessionConfig {
    SmtpSessionConfig {
        starttls_available: context.tls_mode == ListenerTls::Starttls,
        allow_plaintext_auth: context.allow_plaintext_auth,
        max_auth_failures: context.max_auth_failures,
        hostname: context.hostname.clone(),
        password_fallback: context.password_fallback,
        error_challenge: context.error_challenge,
        discovery: context.challenge.clone(),
        backend_extensions: context.backend.learned().smtp_extensions,
        ..SmtpSessionConfig::default()
    }
}

fn sieve_config(context: &ListenerContext) -> SieveSessionConfig {
    SieveSessionConfig {
        starttls_available: context.tls_mode == ListenerTls::Starttls,
        allow_plaintext_auth: context.allow_plaintext_auth,
        max_auth_failures: context.max_auth_failures,
        error_challenge: context.error_challenge,
        discovery: context.challenge.clone(),
        backend_capabilities: context.backend.learned().sieve_capabilities,
        ..SieveSessionConfig::default()
    }
}

fn pop3_config(context: &ListenerContext) -> Pop3SessionConfig {
    Pop3SessionConfig {
        starttls_available: context.tls_mode == ListenerTls::Starttls,
        allow_plaintext_auth: context.allow_plaintext_auth,
        password_fallback: context.password_fallback,
        error_challenge: context.error_challenge,
        max_auth_failures: context.max_auth_failures,
        discovery: context.challenge.clone(),
        ..Pop3SessionConfig::default()
    }
}

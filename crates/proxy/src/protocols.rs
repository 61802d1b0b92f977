//! Each protocol's pre-login session, set up from its listener and plugged into the shared
//! [`driver`](crate::driver).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use session::imap::{ImapSession, ImapSessionConfig};
use session::sieve::{SieveSession, SieveSessionConfig};
use session::smtp::{SmtpSession, SmtpSessionConfig};
use session::{Action, Refusal};
use tokio::net::TcpStream;

use crate::backend::LoggedIn;
use crate::config::{ListenerTls, Protocol};
use crate::driver::{self, PreLogin};
use crate::server::ListenerContext;

/// Serves a connection with the listener's protocol.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, context: Arc<ListenerContext>) {
    match context.protocol {
        Protocol::Imap => {
            let config = imap_config(&context);
            driver::serve(tcp, peer, context, move |tls_active| {
                ImapSession::new(ImapSessionConfig {
                    tls_active,
                    ..config
                })
            })
            .await
        }
        Protocol::Smtp => {
            let config = smtp_config(&context);
            driver::serve(tcp, peer, context, move |tls_active| {
                SmtpSession::new(SmtpSessionConfig {
                    tls_active,
                    ..config
                })
            })
            .await
        }
        Protocol::Sieve => {
            let config = sieve_config(&context);
            driver::serve(tcp, peer, context, move |tls_active| {
                SieveSession::new(SieveSessionConfig {
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
        openid_configuration: context.challenge.openid_configuration.clone(),
        challenge_scope: context.challenge.scope.clone(),
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
        openid_configuration: context.challenge.openid_configuration.clone(),
        challenge_scope: context.challenge.scope.clone(),
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
        openid_configuration: context.challenge.openid_configuration.clone(),
        challenge_scope: context.challenge.scope.clone(),
        backend_capabilities: context.backend.learned().sieve_capabilities,
        ..SieveSessionConfig::default()
    }
}

/// Implements [`PreLogin`] by forwarding to the session type's methods of the same names;
/// the two that differ between protocols are given as closures.
macro_rules! pre_login {
    (
        $session:ty,
        logged_in: $logged_in:expr,
        password_refused: $password_refused:expr,
        client_name: $client_name:expr
    ) => {
        impl PreLogin for $session {
            fn output(&self) -> &[u8] {
                <$session>::output(self)
            }
            fn output_written(&mut self) {
                <$session>::output_written(self)
            }
            fn advance(&mut self, input: &mut BytesMut) -> Action {
                <$session>::advance(self, input)
            }
            fn tls_started(&mut self) {
                <$session>::tls_started(self)
            }
            fn set_discovery(&mut self, discovery: &validator::Discovery) {
                <$session>::set_discovery(
                    self,
                    discovery.scope.clone(),
                    discovery.openid_configuration.clone(),
                )
            }
            fn token_refused(&mut self, refusal: Refusal) {
                <$session>::token_refused(self, refusal)
            }
            fn backend_refused(&mut self, challenge: Option<Vec<u8>>) {
                <$session>::backend_refused(self, challenge)
            }
            fn unavailable(&mut self) {
                <$session>::unavailable(self)
            }
            fn password_refused(&mut self) {
                let refuse: fn(&mut $session) = $password_refused;
                refuse(self)
            }
            fn logged_in(&mut self, logged_in: &LoggedIn) {
                let finish: fn(&mut $session, &LoggedIn) = $logged_in;
                finish(self, logged_in)
            }
            fn idle_timeout(&mut self) {
                <$session>::idle_timeout(self)
            }
            fn close_reason(&self) -> &'static str {
                <$session>::close_reason(self)
            }
            fn client_name(&self) -> Option<&str> {
                let name: fn(&$session) -> Option<&str> = $client_name;
                name(self)
            }
        }
    };
}

pre_login!(
    ImapSession,
    logged_in: |session, logged_in| session.logged_in(&logged_in.capabilities),
    password_refused: |session| session.password_refused(),
    client_name: |_| None
);
pre_login!(
    SmtpSession,
    logged_in: |session, _| session.logged_in(),
    password_refused: |session| session.password_refused(),
    client_name: |session| session.client_ehlo()
);
pre_login!(
    SieveSession,
    logged_in: |session, _| session.logged_in(),
    // ManageSieve never asks for a password login (check-config refuses the fallback).
    password_refused: |session| session.unavailable(),
    client_name: |_| None
);

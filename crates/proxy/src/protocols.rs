//! Each protocol's pre-login session, set up from its listener and plugged into the shared
//! [`driver`](crate::driver).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use session::imap::{ImapSession, ImapSessionConfig};
use session::{Action, Refusal};
use tokio::net::TcpStream;
use tracing::warn;

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
        Protocol::Smtp | Protocol::Sieve => {
            warn!(
                protocol = context.protocol.name(),
                "protocol not available in this version"
            );
        }
    }
}

fn imap_config(context: &ListenerContext) -> ImapSessionConfig {
    ImapSessionConfig {
        starttls_available: context.tls_mode == ListenerTls::Starttls,
        allow_plaintext_auth: context.allow_plaintext_auth,
        password_fallback: context.password_fallback,
        max_auth_failures: context.max_auth_failures,
        openid_configuration: context.challenge.openid_configuration.clone(),
        challenge_scope: context.challenge.scope.clone(),
        ..ImapSessionConfig::default()
    }
}

impl PreLogin for ImapSession {
    fn output(&self) -> &[u8] {
        ImapSession::output(self)
    }
    fn output_written(&mut self) {
        ImapSession::output_written(self)
    }
    fn advance(&mut self, input: &mut BytesMut) -> Action {
        ImapSession::advance(self, input)
    }
    fn tls_started(&mut self) {
        ImapSession::tls_started(self)
    }
    fn token_refused(&mut self, refusal: Refusal) {
        ImapSession::token_refused(self, refusal)
    }
    fn backend_refused(&mut self, challenge: Option<Vec<u8>>) {
        ImapSession::backend_refused(self, challenge)
    }
    fn unavailable(&mut self) {
        ImapSession::unavailable(self)
    }
    fn unavailable_for_password(&mut self, command: &[u8]) {
        ImapSession::unavailable_for_password(self, command)
    }
    fn logged_in(&mut self, logged_in: &LoggedIn) {
        ImapSession::logged_in(self, &logged_in.capabilities)
    }
    fn idle_timeout(&mut self) {
        ImapSession::idle_timeout(self)
    }
    fn close_reason(&self) -> &'static str {
        ImapSession::close_reason(self)
    }
}

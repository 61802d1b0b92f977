//! What every connection of one listener shares: its protocol, TLS, limits, backend and
//! validator ([`ListenerContext`]), and the session ids that tie a connection's log lines
//! together. Apart from the server that builds it, so that the driver and the protocol
//! registry depend on this and not on the top of the program.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::{ListenerConfig, ListenerTls, Protocol};

/// Everything a session on one listener needs, shared by all its connections.
pub struct ListenerContext {
    /// Protocol spoken.
    pub protocol: Protocol,
    /// Client-side TLS mode.
    pub tls_mode: ListenerTls,
    /// Present for implicit and STARTTLS listeners.
    pub acceptor: Option<TlsAcceptor>,
    /// Authentication allowed before TLS.
    pub allow_plaintext_auth: bool,
    /// The proxy's name in SMTP greetings and EHLO replies.
    pub hostname: String,
    /// LOGIN / AUTH PLAIN accepted; the backend checks the password.
    pub password_fallback: bool,
    /// A refused token gets the SASL error challenge before the failure.
    pub error_challenge: bool,
    /// Failed-login delays and per-address budgets, shared by every listener.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// Disconnect after this long without input before login.
    pub preauth_idle_timeout: Duration,
    /// Disconnect this long after connecting when not logged in by then.
    pub preauth_deadline: Duration,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
    /// Where and how to log in.
    pub backend: Arc<Backend>,
    /// Token checks.
    pub validator: Arc<validator::Validator>,
    /// The key of this listener's protocol in `protocol_scopes`.
    pub scope_key: validator::ScopeKey,
    /// The service this listener is, which a token's RFC 8707 audience must name (when it
    /// names any mail service at all).
    pub service: crate::auth::ServiceName,
    /// What a client with an unusable response is told in the error challenge (the first
    /// issuer's hints); a refused token gets its own issuer's.
    pub challenge: session::Discovery,
    /// Cancelled when SIGTERM's `drain_timeout` is over: sessions still open then say the
    /// protocol's goodbye (before login) or stop relaying, and log how they ended.
    pub drain_over: CancellationToken,
    /// `proxy_protocol = true`: the load balancers whose PROXY header every connection
    /// starts with. `None`: clients connect directly.
    pub proxy_protocol: Option<Arc<TrustedProxies>>,
}

impl std::fmt::Debug for ListenerContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerContext")
            .field("protocol", &self.protocol)
            .field("tls_mode", &self.tls_mode)
            .field("allow_plaintext_auth", &self.allow_plaintext_auth)
            .field("backend", &self.backend.name)
            .field("proxy_protocol", &self.proxy_protocol)
            .finish_non_exhaustive()
    }
}

/// A listener's `proxy_trusted_networks`: who may send the PROXY header that names the
/// client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
}

impl TrustedProxies {
    /// The listener's, when it has `proxy_protocol = true`.
    pub fn of(listener: &ListenerConfig) -> Option<Arc<Self>> {
        listener.proxy_protocol.then(|| {
            Arc::new(Self {
                networks: listener.proxy_trusted_networks.clone(),
            })
        })
    }

    /// The built-in issuer's, when its `[issuer]` has `proxy_protocol = true` (its networks
    /// were checked at load; an entry that does not parse trusts no one).
    pub fn of_issuer(settings: &authz::Settings) -> Option<Arc<Self>> {
        settings.proxy_protocol.then(|| {
            Arc::new(Self {
                networks: settings
                    .proxy_trusted_networks
                    .iter()
                    .filter_map(|text| crate::config::network(text).ok())
                    .collect(),
            })
        })
    }

    /// Whether `peer` is one of them. An IPv4 peer of a dual-stack socket (`::ffff:a.b.c.d`)
    /// is matched as the IPv4 address it is.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|network| network.contains(&peer))
    }
}

/// Distinguishes sessions in the logs.
static SESSION_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A short unique id for a new session.
pub fn next_session_id() -> String {
    format!("{:08x}", SESSION_COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_networks_hold_their_addresses_and_mapped_ipv4_counts_as_ipv4() {
        let trusted = TrustedProxies {
            networks: ["10.0.0.0/8", "192.0.2.10/32", "2001:db8:1::/48"]
                .iter()
                .map(|text| text.parse().expect("network"))
                .collect(),
        };
        let ip = |text: &str| -> IpAddr { text.parse().expect("address") };
        for yes in [
            "10.1.2.3",
            "::ffff:10.9.9.9",
            "192.0.2.10",
            "2001:db8:1:ff::1",
        ] {
            assert!(trusted.trusts(ip(yes)), "{yes}");
        }
        for no in [
            "11.0.0.1",
            "192.0.2.11",
            "::ffff:192.0.2.11",
            "2001:db8:2::1",
            "::1",
        ] {
            assert!(!trusted.trusts(ip(no)), "{no}");
        }
    }
}

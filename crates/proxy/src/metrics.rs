//! Counters and the `/metrics` (Prometheus text format) and `/healthz` endpoint.
//!
//! Counters are process-wide atomics: incrementing one is a single relaxed add, cheap enough
//! for every login, and none is touched on the relay's per-read path (byte totals are added
//! once, when a session ends).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http::HttpLimits;

use crate::config::Protocol;
use crate::throttle::Limit;

const PROTOCOLS: [(Protocol, &str); 4] = [
    (Protocol::Imap, "imap"),
    (Protocol::Smtp, "smtp"),
    (Protocol::Sieve, "sieve"),
    (Protocol::Pop3, "pop3"),
];

fn index(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Imap => 0,
        Protocol::Smtp => 1,
        Protocol::Sieve => 2,
        Protocol::Pop3 => 3,
    }
}

/// How a login attempt ended, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Token valid and backend login done.
    Success,
    /// The token (or claimed identity) was refused: the client's fault.
    Refused,
    /// The identity provider could not answer.
    IdpUnavailable,
    /// The backend could not be reached or refused the proxy.
    BackendUnavailable,
    /// The client's address had used up its failed logins: refused before anyone was asked.
    Throttled,
}

const OUTCOMES: [(LoginOutcome, &str); 5] = [
    (LoginOutcome::Success, "success"),
    (LoginOutcome::Refused, "refused"),
    (LoginOutcome::Throttled, "throttled"),
    (LoginOutcome::IdpUnavailable, "idp_unavailable"),
    (LoginOutcome::BackendUnavailable, "backend_unavailable"),
];

/// What the client logged in with, as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An OAuth bearer token (XOAUTH2, OAUTHBEARER).
    Token,
    /// A password, checked by the backend (password fallback).
    Password,
}

const CREDENTIALS: [(Credential, &str); 2] = [
    (Credential::Token, "token"),
    (Credential::Password, "password"),
];

/// Why a connection was turned away at accept, as a metric label: the key whose limit it
/// met.
const REFUSALS: [(session::Busy, &str); 2] = [
    (session::Busy::ListenerFull, "max_connections"),
    (session::Busy::AddressLimit, "per_address"),
];

/// Process-wide counters.
#[derive(Debug)]
pub struct Metrics {
    connections: [AtomicU64; 4],
    refused: [[AtomicU64; 2]; 4],
    active: [AtomicI64; 4],
    logins: [[[AtomicU64; 5]; 2]; 4],
    client_bytes: [AtomicU64; 4],
    backend_bytes: [AtomicU64; 4],
    /// Logins refused by each `[auth_limits]` limit, in [`Limit::ALL`] order.
    auth_limited: [AtomicU64; 3],
    /// Keys each limit tracks now.
    auth_tracked: [AtomicU64; 3],
    /// Configuration reloads (SIGHUP), applied and refused.
    reloads: [AtomicU64; 2],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_I: AtomicI64 = AtomicI64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_ROW: [AtomicU64; 5] = [ZERO; 5];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_PAIR: [AtomicU64; 2] = [ZERO; 2];
#[allow(clippy::declare_interior_mutable_const)]
const ZERO_TABLE: [[AtomicU64; 5]; 2] = [ZERO_ROW; 2];

/// The counters of this process.
pub static METRICS: Metrics = Metrics {
    connections: [ZERO; 4],
    refused: [ZERO_PAIR; 4],
    active: [ZERO_I; 4],
    logins: [ZERO_TABLE; 4],
    client_bytes: [ZERO; 4],
    backend_bytes: [ZERO; 4],
    auth_limited: [ZERO; 3],
    auth_tracked: [ZERO; 3],
    reloads: [ZERO; 2],
};

/// Counts a connection as active until dropped.
#[derive(Debug)]
pub struct ActiveSession(Protocol);

impl Metrics {
    /// A connection was accepted; it counts as active while the guard lives.
    pub fn session_started(&self, protocol: Protocol) -> ActiveSession {
        self.connections[index(protocol)].fetch_add(1, Ordering::Relaxed);
        self.active[index(protocol)].fetch_add(1, Ordering::Relaxed);
        ActiveSession(protocol)
    }

    /// A connection was accepted and turned away at once (the protocol's refusal, then
    /// close); it is not counted in `bearergate_connections_total`.
    pub fn connection_refused(&self, protocol: Protocol, why: session::Busy) {
        let column = REFUSALS.iter().position(|(b, _)| *b == why).unwrap_or(0);
        self.refused[index(protocol)][column].fetch_add(1, Ordering::Relaxed);
    }

    /// A login attempt ended.
    pub fn login(&self, protocol: Protocol, credential: Credential, outcome: LoginOutcome) {
        let column = OUTCOMES
            .iter()
            .position(|(o, _)| *o == outcome)
            .unwrap_or(0);
        let row = CREDENTIALS
            .iter()
            .position(|(c, _)| *c == credential)
            .unwrap_or(0);
        self.logins[index(protocol)][row][column].fetch_add(1, Ordering::Relaxed);
    }

    /// A SIGHUP reload was applied (`true`) or refused, the running configuration kept.
    pub fn config_reload(&self, applied: bool) {
        self.reloads[usize::from(!applied)].fetch_add(1, Ordering::Relaxed);
    }

    /// A relay ended after carrying these byte counts.
    pub fn relayed(&self, protocol: Protocol, client_to_backend: u64, backend_to_client: u64) {
        self.client_bytes[index(protocol)].fetch_add(client_to_backend, Ordering::Relaxed);
        self.backend_bytes[index(protocol)].fetch_add(backend_to_client, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(
        &self,
        validator: &validator::ValidatorStats,
        issuers: &[validator::IssuerStats],
    ) -> String {
        let mut out = String::with_capacity(2_048);
        let push = |out: &mut String, name: &str, kind: &str, help: &str, body: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            out.push_str(body);
        };
        let mut lines = String::new();
        for (protocol, label) in PROTOCOLS {
            let _ = writeln!(
                lines,
                "bearergate_connections_total{{protocol=\"{label}\"}} {}",
                self.connections[index(protocol)].load(Ordering::Relaxed)
            );
        }
        push(
            &mut out,
            "bearergate_connections_total",
            "counter",
            "Client connections accepted.",
            &lines,
        );
        lines.clear();
        for (protocol, label) in PROTOCOLS {
            for (column, (_, reason)) in REFUSALS.iter().enumerate() {
                let _ = writeln!(
                    lines,
                    "bearergate_connections_refused_total{{protocol=\"{label}\",reason=\"{reason}\"}} {}",
                    self.refused[index(protocol)][column].load(Ordering::Relaxed)
                );
            }
        }
        push(
            &mut out,
            "bearergate_connections_refused_total",
            "counter",
            "Client connections accepted and turned away at once, by the limit they met: the \
             listener's max_connections, or max_prelogin_per_address.",
            &lines,
        );
        lines.clear();
        for (protocol, label) in PROTOCOLS {
            let _ = writeln!(
                lines,
                "bearergate_sessions_active{{protocol=\"{label}\"}} {}",
                self.active[index(protocol)].load(Ordering::Relaxed)
            );
        }
        push(
            &mut out,
            "bearergate_sessions_active",
            "gauge",
            "Open client connections.",
            &lines,
        );
        lines.clear();
        for (protocol, label) in PROTOCOLS {
            for (row, (_, credential)) in CREDENTIALS.iter().enumerate() {
                for (column, (_, outcome)) in OUTCOMES.iter().enumerate() {
                    let _ = writeln!(
                        lines,
                        "bearergate_logins_total{{protocol=\"{label}\",credential=\"{credential}\",outcome=\"{outcome}\"}} {}",
                        self.logins[index(protocol)][row][column].load(Ordering::Relaxed)
                    );
                }
            }
        }
        push(
            &mut out,
            "bearergate_logins_total",
            "counter",
            "Login attempts by credential (token, or password for the backend) and outcome.",
            &lines,
        );
        lines.clear();
        for (protocol, label) in PROTOCOLS {
            let i = index(protocol);
            let _ = writeln!(
                lines,
                "bearergate_relayed_bytes_total{{protocol=\"{label}\",direction=\"client_to_backend\"}} {}\n\
                 bearergate_relayed_bytes_total{{protocol=\"{label}\",direction=\"backend_to_client\"}} {}",
                self.client_bytes[i].load(Ordering::Relaxed),
                self.backend_bytes[i].load(Ordering::Relaxed)
            );
        }
        push(
            &mut out,
            "bearergate_relayed_bytes_total",
            "counter",
            "Bytes relayed after login, counted when sessions end.",
            &lines,
        );
        for (name, help, value) in [
            (
                "bearergate_token_cache_hits_total",
                "Token checks answered from the cache.",
                validator.cache_hits,
            ),
            (
                "bearergate_token_cache_misses_total",
                "Token checks that asked the identity provider.",
                validator.cache_misses,
            ),
            (
                "bearergate_introspection_requests_total",
                "HTTP requests to identity providers (introspection, userinfo, discovery and JWKS), all issuers together.",
                validator.introspection_requests,
            ),
            (
                "bearergate_tokens_invalid_total",
                "Token checks that refused the token.",
                validator.invalid,
            ),
            (
                "bearergate_idp_unavailable_total",
                "Token checks the identity provider could not answer.",
                validator.unavailable,
            ),
            (
                "bearergate_tokens_kept_confirmed_total",
                "Token checks the identity provider could not answer, accepted as it confirmed the token earlier (keep_confirmed_tokens).",
                validator.kept_confirmed,
            ),
        ] {
            push(
                &mut out,
                name,
                "counter",
                help,
                &format!("{name} {value}\n"),
            );
        }
        self.render_auth_limits(&mut out);
        render_issuers(&mut out, issuers);
        let name = "bearergate_config_reloads_total";
        let _ = writeln!(
            out,
            "# HELP {name} Configuration reloads (SIGHUP): ok when applied, refused when the \
             new configuration was invalid and the running one stayed.\n# TYPE {name} counter"
        );
        for (i, result) in ["ok", "refused"].into_iter().enumerate() {
            let value = self.reloads[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{result=\"{result}\"}} {value}");
        }
        out
    }
}

/// `[auth_limits]`: refusals by limit, and the keys each tracks.
impl Metrics {
    /// A login was refused by `limit` before anyone was asked.
    pub fn auth_limited(&self, limit: Limit) {
        self.auth_limited[limit_index(limit)].fetch_add(1, Ordering::Relaxed);
    }

    /// `limit`'s table now tracks `keys` addresses or users.
    pub fn auth_limit_tracked(&self, limit: Limit, keys: usize) {
        let keys = u64::try_from(keys).unwrap_or(u64::MAX);
        self.auth_tracked[limit_index(limit)].store(keys, Ordering::Relaxed);
    }

    fn render_auth_limits(&self, out: &mut String) {
        for (name, kind, help, values) in [
            (
                "bearergate_auth_limited_total",
                "counter",
                "Logins answered \"try again later\" by an [auth_limits] limit before anyone was asked: failures per address or per claimed user, identity-provider requests per address.",
                &self.auth_limited,
            ),
            (
                "bearergate_auth_limit_tracked",
                "gauge",
                "Addresses or claimed users each [auth_limits] limit tracks (bounded; the least suspicious are dropped first).",
                &self.auth_tracked,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for limit in Limit::ALL {
                let value = values[limit_index(limit)].load(Ordering::Relaxed);
                let _ = writeln!(out, "{name}{{limit=\"{}\"}} {value}", limit.label());
            }
        }
    }
}

fn limit_index(limit: Limit) -> usize {
    Limit::ALL.iter().position(|l| *l == limit).unwrap_or(0)
}

impl Drop for ActiveSession {
    fn drop(&mut self) {
        METRICS.active[index(self.0)].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The token validator's figures for `/metrics`: asked at each scrape, since a reload
/// replaces the validator (see [`crate::reload`]).
pub type ValidatorFigures =
    Arc<dyn Fn() -> (validator::ValidatorStats, Vec<validator::IssuerStats>) + Send + Sync>;

/// Serves `/metrics` and `/healthz` until shutdown, through the process's HTTP service
/// model ([`crate::http`]).
pub async fn serve(
    listener: TcpListener,
    validator: ValidatorFigures,
    shutdown: CancellationToken,
) {
    crate::http::serve(
        listener,
        None,
        router(validator),
        HttpLimits::default(),
        shutdown,
        crate::http::no_peer_tag,
        None,
    )
    .await
}

/// Binds the metrics address.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    crate::http::bind(address, "metrics").await
}

/// `GET /metrics` (Prometheus text format 0.0.4) and `GET /healthz` (liveness); anything
/// else is axum's 404, or 405 for another method.
pub fn router(validator: ValidatorFigures) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(validator)
}

async fn metrics(State(validator): State<ValidatorFigures>) -> impl IntoResponse {
    let (stats, issuers) = validator();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        METRICS.render(&stats, &issuers),
    )
}

/// Per identity provider: requests, requests refused without asking, and whether its
/// circuit is open (the provider counts as down).
fn render_issuers(out: &mut String, issuers: &[validator::IssuerStats]) {
    type Family = (
        &'static str,
        &'static str,
        &'static str,
        fn(&validator::IssuerStats) -> u64,
    );
    let families: [Family; 3] = [
        (
            "bearergate_idp_requests_total",
            "counter",
            "HTTP requests to each identity provider.",
            |i| i.requests,
        ),
        (
            "bearergate_idp_rejected_total",
            "counter",
            "Token checks answered unavailable without asking the identity provider.",
            |i| i.rejected,
        ),
        (
            "bearergate_idp_circuit_open",
            "gauge",
            "1 while the identity provider counts as down and is not asked.",
            |i| u64::from(i.circuit != validator::CircuitState::Closed),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for issuer in issuers {
            let label = issuer.name.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "{name}{{issuer=\"{label}\"}} {}", value(issuer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_every_family_once_with_labels() {
        let _guard = METRICS.session_started(Protocol::Imap);
        METRICS.connection_refused(Protocol::Pop3, session::Busy::AddressLimit);
        METRICS.login(
            Protocol::Imap,
            Credential::Password,
            LoginOutcome::Throttled,
        );
        let issuers = [validator::IssuerStats {
            name: "key\"cloak".to_owned(),
            requests: 7,
            circuit: validator::CircuitState::Open,
            rejected: 2,
        }];
        let text = METRICS.render(&validator::ValidatorStats::default(), &issuers);
        assert!(text.contains("bearergate_idp_requests_total{issuer=\"key\\\"cloak\"} 7\n"));
        assert!(text.contains("bearergate_idp_circuit_open{issuer=\"key\\\"cloak\"} 1\n"));
        assert!(text.contains("bearergate_idp_rejected_total{issuer=\"key\\\"cloak\"} 2\n"));
        for family in [
            "bearergate_connections_total",
            "bearergate_connections_refused_total",
            "bearergate_sessions_active",
            "bearergate_logins_total",
            "bearergate_relayed_bytes_total",
            "bearergate_token_cache_hits_total",
            "bearergate_config_reloads_total",
        ] {
            assert_eq!(
                text.matches(&format!("# TYPE {family} ")).count(),
                1,
                "{family}"
            );
        }
        assert!(text.contains(
            "bearergate_logins_total{protocol=\"imap\",credential=\"password\",outcome=\"throttled\"} "
        ));
        assert!(text.contains(
            "bearergate_logins_total{protocol=\"imap\",credential=\"token\",outcome=\"refused\"} "
        ));
        assert!(text.contains(
            "bearergate_connections_refused_total{protocol=\"smtp\",reason=\"max_connections\"} "
        ));
        let per_address = text
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "bearergate_connections_refused_total{protocol=\"pop3\",reason=\"per_address\"} ",
                )
            })
            .and_then(|v| v.parse::<u64>().ok())
            .expect("per-address refusals of pop3");
        assert!(per_address >= 1);
        METRICS.config_reload(false);
        let text = METRICS.render(&validator::ValidatorStats::default(), &issuers);
        let refused: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("bearergate_config_reloads_total{result=\"refused\"} "))
            .and_then(|v| v.parse().ok())
            .expect("refused reloads");
        assert!(refused >= 1);
        assert!(text.contains("bearergate_config_reloads_total{result=\"ok\"} "));
        let active: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("bearergate_sessions_active{protocol=\"imap\"} "))
            .and_then(|v| v.parse().ok())
            .expect("active gauge");
        assert!(active >= 1);
    }

    #[test]
    fn auth_limits_are_rendered_by_limit() {
        METRICS.auth_limited(Limit::User);
        METRICS.auth_limit_tracked(Limit::IdpRequests, 3);
        let text = METRICS.render(&validator::ValidatorStats::default(), &[]);
        for family in [
            "bearergate_auth_limited_total",
            "bearergate_auth_limit_tracked",
        ] {
            assert_eq!(text.matches(&format!("# TYPE {family} ")).count(), 1);
            for limit in ["address", "user", "idp_requests"] {
                assert!(
                    text.contains(&format!("{family}{{limit=\"{limit}\"}} ")),
                    "{family} {limit}"
                );
            }
        }
        let refused: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("bearergate_auth_limited_total{limit=\"user\"} "))
            .and_then(|v| v.parse().ok())
            .expect("user refusals");
        assert!(refused >= 1);
    }
}

//! What the process runs — listeners, the built-in issuer's HTTP service, metrics, and the
//! parts their connections share — and how SIGHUP replaces it with what the configuration
//! file says now ([`Running::reload`]). Start-up is the same step from nothing.
//!
//! A reload happens in two halves. [`prepare`] reads and checks the file, builds everything
//! new (validator, issuer over the same store, certificates read from disk, backends) and
//! binds the addresses that are new; any problem refuses the reload, each problem logged
//! with its key as `check-config` prints it, and what was bound is closed again — nothing
//! running has been touched. Then [`Running::apply`] cannot fail: each listener's next
//! connection gets the new context, new addresses start accepting, removed ones stop.
//!
//! What stays, and why:
//! * **Sockets** whose address is still configured ([`plan`]): no moment without a listener,
//!   and no "address in use". A removed listener stops accepting; its sessions go on.
//! * **Sessions** keep the context they were accepted with (validator, backend, certificate,
//!   timeouts) until they end: a reload never cuts or changes a connection.
//! * **Limits** of a listener that keeps its address and protocol: its `max_connections`
//!   and `max_prelogin_per_address` counts go on under the new caps, so the counts of open
//!   connections stay true ([`crate::accept::ListenerLimits`]). Another protocol on the
//!   same address is another listener, with counts of its own.
//! * **Failed-login budgets** (`[auth_limits]`) while those settings stay the same; changed
//!   settings start them afresh.
//! * What was learned of a backend (SMTP extensions, ManageSieve capabilities) while it
//!   stays at the same address; the backends are asked again anyway.
//!
//! The token cache starts empty with the new validator (each cached token is checked once
//! more); its counters carry on in `/metrics`. `[log]` is set once per process: a change
//! there is reported as needing a restart, and the rest applied.

mod http;
pub mod plan;
pub mod shared;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::accept::{ListenerLimits, ListenerSlot, Listening, Served};
use crate::config::{self, Config, ConfigError, ListenerConfig, ListenerTls, Protocol};
use crate::listener::ListenerContext;
use crate::metrics::METRICS;
use http::{HttpSocket, NextSocket};
use plan::{list, Change, Named, Plan};
use shared::{keyed, CurrentValidator, Shared};

/// The configuration in force and everything running from it.
#[derive(Debug)]
pub struct Running {
    /// The file SIGHUP reads again.
    path: PathBuf,
    /// Relative paths in it are relative to its directory.
    base: PathBuf,
    config: Config,
    shared: Shared,
    listeners: BTreeMap<SocketAddr, RunningListener>,
    issuer: Option<RunningIssuer>,
    metrics: Option<HttpSocket>,
    validator: Arc<CurrentValidator>,
    shutdown: CancellationToken,
    drain_over: CancellationToken,
    tracker: TaskTracker,
}

#[derive(Debug)]
struct RunningListener {
    slot: Arc<ListenerSlot>,
    stop: CancellationToken,
}

#[derive(Debug)]
struct RunningIssuer {
    http: HttpSocket,
    upkeep: CancellationToken,
}

/// What a new configuration needs before it can take over: built, bound, not yet running.
struct Prepared {
    config: Config,
    shared: Shared,
    changes: Changes,
}

/// What [`Running::apply`] starts, replaces and stops once the new configuration and
/// shared parts are in place.
struct Changes {
    plan: Plan,
    /// Sockets for the new listeners, by their index in `config.listeners`.
    bound: BTreeMap<usize, TcpListener>,
    issuer: Option<NextIssuer>,
    /// `Some` when `[metrics] listen` is new or moved.
    metrics: Option<NextSocket>,
}

/// Whether [`Running::apply`] logs each service it starts (at start-up) or leaves that to
/// the reload's one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announce {
    EachService,
    SummaryOnly,
}

struct NextIssuer {
    router: axum::Router,
    tls: Option<TlsAcceptor>,
    socket: NextSocket,
}

/// What changed, for the reload's log line.
#[derive(Debug, Default)]
struct Summary {
    added: Vec<Named>,
    removed: Vec<Named>,
    changed: Vec<Named>,
    kept: Vec<Named>,
    issuer: &'static str,
    metrics: &'static str,
}

/// The services the process runs between signals, shut down by `shutdown`; sessions and
/// the issuer's HTTP service run on `tracker`, which the SIGTERM drain waits for.
#[derive(Debug, Clone)]
pub struct Lifetime {
    /// Cancelled by SIGTERM: every listener stops accepting.
    pub shutdown: CancellationToken,
    /// Cancelled when the drain is over.
    pub drain_over: CancellationToken,
    /// Sessions and services to wait for.
    pub tracker: TaskTracker,
}

impl Running {
    /// Builds and starts everything `config` (read from `path`) describes.
    pub async fn start(
        config: Config,
        path: &Path,
        lifetime: Lifetime,
    ) -> Result<Self, Vec<ConfigError>> {
        let base = base_of(path);
        let prepared = prepare(config, &base, None).await?;
        let validator = CurrentValidator::new(prepared.shared.validator.clone());
        let mut running = Self {
            path: path.to_path_buf(),
            base,
            config: prepared.config,
            shared: prepared.shared,
            listeners: BTreeMap::new(),
            issuer: None,
            metrics: None,
            validator,
            shutdown: lifetime.shutdown,
            drain_over: lifetime.drain_over,
            tracker: lifetime.tracker,
        };
        running.apply(prepared.changes, Announce::EachService);
        Ok(running)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// SIGHUP: reads the file again and applies it, or refuses it and keeps everything as
    /// it is. Logs one line either way and counts it in `bearergate_config_reloads_total`.
    pub async fn reload(&mut self) {
        let prepared = match Config::load(&self.path) {
            Ok(config) => prepare(config, &self.base, Some(self)).await,
            Err(errors) => Err(errors),
        };
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(errors) => {
                METRICS.config_reload(false);
                warn!(
                    config = %self.path.display(),
                    errors = %errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                    "configuration reload refused; the running configuration stays"
                );
                return;
            }
        };
        let log_changed = prepared.config.log != self.config.log;
        let certificates = certificate_files(&prepared.config, &self.base);
        let descriptors = crate::server::descriptors_needed(&self.config);
        self.config = prepared.config;
        self.shared = prepared.shared;
        self.validator.replace(self.shared.validator.clone());
        let summary = self.apply(prepared.changes, Announce::SummaryOnly);
        if crate::server::descriptors_needed(&self.config) > descriptors {
            crate::server::check_descriptors(&self.config);
        }
        METRICS.config_reload(true);
        info!(
            listeners_added = %list(&summary.added),
            listeners_removed = %list(&summary.removed),
            listeners_changed = %list(&summary.changed),
            listeners_kept = %list(&summary.kept),
            certificates = %list(&certificates),
            issuer = summary.issuer,
            metrics = summary.metrics,
            needs_restart = if log_changed { "[log]" } else { "nothing" },
            "configuration reloaded"
        );
    }

    /// Puts a prepared configuration to work; `self.config` and `self.shared` are already
    /// the new ones. Cannot fail: everything that could was done in [`prepare`].
    fn apply(&mut self, changes: Changes, announce: Announce) -> Summary {
        let Changes {
            plan,
            mut bound,
            issuer,
            metrics,
        } = changes;
        let announce = announce == Announce::EachService;
        let mut summary = Summary::default();
        let challenge = self.shared.challenge();
        for kept in &plan.kept {
            let listener = &self.config.listeners[kept.index];
            let (Some(context), Some(running)) = (
                self.context(listener, &challenge),
                self.listeners.get(&listener.listen),
            ) else {
                continue;
            };
            let limits = match kept.change {
                Change::Protocol => limits_of(listener),
                Change::None | Change::Settings => {
                    let limits = running.slot.current().limits.clone();
                    limits.resize(listener.max_connections, listener.max_prelogin_per_address);
                    limits
                }
            };
            running.slot.replace(Served::new(context, limits));
            let named = Named(listener.protocol, listener.listen);
            match kept.change {
                Change::None => summary.kept.push(named),
                Change::Settings | Change::Protocol => summary.changed.push(named),
            }
        }
        for index in &plan.added {
            let listener = &self.config.listeners[*index];
            let (Some(context), Some(socket)) =
                (self.context(listener, &challenge), bound.remove(index))
            else {
                continue;
            };
            let slot = ListenerSlot::new(Served::new(context, limits_of(listener)));
            let stop = self.shutdown.child_token();
            if announce {
                info!(
                    protocol = listener.protocol.name(),
                    addr = %listener.listen,
                    tls = ?listener.tls,
                    "listening"
                );
            }
            self.tracker.spawn(crate::accept::accept_loop(
                Listening {
                    listener: socket,
                    slot: slot.clone(),
                    stop: stop.clone(),
                },
                self.tracker.clone(),
            ));
            self.listeners
                .insert(listener.listen, RunningListener { slot, stop });
            summary
                .added
                .push(Named(listener.protocol, listener.listen));
        }
        for address in &plan.removed {
            if let Some(running) = self.listeners.remove(address) {
                let protocol = running.slot.current().context.protocol;
                running.stop.cancel();
                summary.removed.push(Named(protocol, *address));
            }
        }
        summary.issuer = self.apply_issuer(issuer, announce);
        summary.metrics = self.apply_metrics(metrics, announce);
        self.probe_backends();
        summary
    }

    fn apply_issuer(&mut self, next: Option<NextIssuer>, announce: bool) -> &'static str {
        let running = self.issuer.take();
        let (Some(next), Some(server)) = (next, self.shared.issuer.clone()) else {
            return match running {
                Some(running) => {
                    running.http.stop();
                    running.upkeep.cancel();
                    "stopped"
                }
                None => "none",
            };
        };
        let what = match &running {
            None => "started",
            Some(_) if next.socket.is_new() => "rebuilt, on a new address",
            Some(_) => "rebuilt",
        };
        let (old_http, old_upkeep) = match running {
            Some(running) => (Some(running.http), Some(running.upkeep)),
            None => (None, None),
        };
        let NextIssuer {
            router,
            tls,
            socket,
        } = next;
        let proxies = self
            .config
            .issuer
            .as_ref()
            .and_then(crate::listener::TrustedProxies::of_issuer);
        let tracker = self.tracker.clone();
        let http = socket.start(old_http, &self.shutdown, |listener, stop| {
            tracker.spawn(crate::http::serve(
                listener,
                tls,
                router,
                crate::http::HttpLimits::default(),
                stop,
                crate::issuer::tag_peer,
                proxies,
            ));
        });
        if let Some(old) = old_upkeep {
            old.cancel();
        }
        let upkeep = self.shutdown.child_token();
        tokio::spawn(crate::issuer::upkeep(server.clone(), upkeep.clone()));
        if announce {
            info!(issuer = %server.issuer(), addr = %http.address, "built-in authorization server ready");
        }
        self.issuer = Some(RunningIssuer { http, upkeep });
        what
    }

    fn apply_metrics(&mut self, next: Option<NextSocket>, announce: bool) -> &'static str {
        let Some(next) = next else {
            if self.config.metrics.is_none() {
                if let Some(running) = self.metrics.take() {
                    running.stop();
                    return "stopped";
                }
                return "none";
            }
            return "unchanged";
        };
        let what = if self.metrics.is_some() {
            "moved"
        } else {
            "started"
        };
        let current = self.validator.clone();
        let figures: crate::metrics::ValidatorFigures = Arc::new(move || current.figures());
        let http = next.start(self.metrics.take(), &self.shutdown, |listener, stop| {
            tokio::spawn(crate::metrics::serve(listener, figures, stop));
        });
        if announce {
            info!(addr = %http.address, service = "metrics", "HTTP listening");
        }
        self.metrics = Some(http);
        what
    }

    /// One listener's context from the shared parts in force.
    fn context(
        &self,
        listener: &ListenerConfig,
        challenge: &session::Discovery,
    ) -> Option<Arc<ListenerContext>> {
        let backend = self.shared.backends.get(&listener.backend)?;
        Some(Arc::new(ListenerContext {
            protocol: listener.protocol,
            tls_mode: listener.tls,
            acceptor: self
                .shared
                .acceptor
                .clone()
                .filter(|_| listener.tls != ListenerTls::None),
            allow_plaintext_auth: listener.allow_plaintext_auth,
            password_fallback: listener.password_fallback,
            error_challenge: listener.error_challenge,
            throttle: self.shared.throttle.clone(),
            hostname: listener.hostname.clone(),
            preauth_idle_timeout: listener.preauth_idle_timeout,
            preauth_deadline: listener.preauth_deadline,
            max_auth_failures: listener.max_auth_failures,
            backend: backend.clone(),
            validator: self.shared.validator.clone(),
            scope_key: listener.protocol.scope_key(),
            service: crate::auth::ServiceName::of(listener),
            challenge: challenge.clone(),
            drain_over: self.drain_over.clone(),
            proxy_protocol: crate::listener::TrustedProxies::of(listener),
        }))
    }

    /// ManageSieve clients see the backend's capabilities in the greeting and SMTP clients
    /// its extensions in EHLO, before any login: ask the backends now (later logins keep
    /// them current).
    fn probe_backends(&self) {
        let mut asked = BTreeSet::new();
        for listener in &self.config.listeners {
            let protocol = listener.protocol;
            if !matches!(protocol, Protocol::Sieve | Protocol::Smtp)
                || !asked.insert((listener.backend.clone(), protocol.name()))
            {
                continue;
            }
            let Some(backend) = self.shared.backends.get(&listener.backend).cloned() else {
                continue;
            };
            tokio::spawn(async move {
                let probed = match protocol {
                    Protocol::Sieve => crate::backend::sieve::probe(&backend).await,
                    Protocol::Smtp => crate::backend::smtp::probe(&backend).await,
                    Protocol::Imap | Protocol::Pop3 => return,
                };
                if let Err(e) = probed {
                    warn!(backend = %backend.name, protocol = protocol.name(), error = %e, "cannot read the backend's capabilities yet");
                }
            });
        }
    }
}

/// Builds everything `config` needs and binds its new addresses; every problem, each with
/// its key. `running` is `None` at start.
async fn prepare(
    config: Config,
    base: &Path,
    running: Option<&Running>,
) -> Result<Prepared, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let shared = Shared::build(&config, base, running.map(|r| &r.shared))
        .map_err(|e| errors.extend(e))
        .ok();
    let running_listeners: &[ListenerConfig] = running.map_or(&[], |r| &r.config.listeners);
    let plan = plan::plan(running_listeners, &config.listeners);
    let mut bound = BTreeMap::new();
    for index in &plan.added {
        let address = config.listeners[*index].listen;
        match crate::listen::bind(address, config.reuse_port) {
            Ok(socket) => {
                bound.insert(*index, socket);
            }
            Err(e) => errors.push(keyed(
                format!("listeners[{index}].listen"),
                format!("cannot listen on {address}: {e}"),
            )),
        }
    }
    let issuer = match (&config.issuer, &shared) {
        (Some(settings), Some(shared)) => {
            let running = running.and_then(|r| r.issuer.as_ref()).map(|i| &i.http);
            prepare_issuer(&config, settings, shared, base, running)
                .await
                .map_err(|e| errors.extend(e))
                .ok()
        }
        _ => None,
    };
    let running_metrics = running.and_then(|r| r.metrics.as_ref());
    let metrics = match &config.metrics {
        Some(m) if running_metrics.is_some_and(|r| r.address == m.listen) => None,
        Some(m) => match NextSocket::prepare(m.listen, None, config.reuse_port).await {
            Ok(socket) => Some(socket),
            Err(e) => {
                errors.push(keyed(
                    "metrics.listen",
                    format!("cannot listen on {}: {e}", m.listen),
                ));
                None
            }
        },
        None => None,
    };
    match shared {
        Some(shared) if errors.is_empty() => Ok(Prepared {
            config,
            shared,
            changes: Changes {
                plan,
                bound,
                issuer,
                metrics,
            },
        }),
        // What was bound closes as it drops here: nothing running was touched.
        _ => Err(errors),
    }
}

/// The built-in issuer's next HTTP service: its router over the new server, its
/// certificate (its own, or `[tls]`), its socket.
async fn prepare_issuer(
    config: &Config,
    settings: &authz::Settings,
    shared: &Shared,
    base: &Path,
    running: Option<&HttpSocket>,
) -> Result<NextIssuer, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let router = match &shared.issuer {
        Some(server) => {
            let password_backend = config
                .password_backend(settings)
                .and_then(|name| shared.backends.get(name).cloned());
            crate::issuer::service(server.clone(), base, password_backend, &config.listeners)
                .map(|service| service.router)
                .map_err(|e| errors.push(shared::issuer_error(e, settings)))
                .ok()
        }
        None => None,
    };
    let tls = match (&settings.cert, &settings.key) {
        _ if settings.plaintext => None,
        (Some(cert), Some(key)) => {
            let cert = config::resolve(base, cert);
            crate::tls::server_acceptor(&cert, &config::resolve(base, key))
                .map_err(|e| errors.push(shared::tls_error(e, "issuer", &cert)))
                .ok()
        }
        _ => shared.acceptor.clone(),
    };
    let socket = NextSocket::prepare(settings.listen, running, config.reuse_port)
        .await
        .map_err(|e| {
            errors.push(keyed(
                "issuer.listen",
                format!("cannot listen on {}: {e}", settings.listen),
            ))
        })
        .ok();
    match (router, socket) {
        (Some(router), Some(socket)) if errors.is_empty() => Ok(NextIssuer {
            router,
            tls,
            socket,
        }),
        _ => Err(errors),
    }
}

fn limits_of(listener: &ListenerConfig) -> Arc<ListenerLimits> {
    ListenerLimits::new(listener.max_connections, listener.max_prelogin_per_address)
}

/// The certificate files a configuration has read, for the reload's log line.
fn certificate_files(config: &Config, base: &Path) -> Vec<String> {
    let tls = config.tls.as_ref().map(|t| &t.cert);
    let issuer = config
        .issuer
        .as_ref()
        .filter(|s| !s.plaintext)
        .and_then(|s| s.cert.as_ref());
    tls.into_iter()
        .chain(issuer)
        .map(|cert| config::resolve(base, cert).display().to_string())
        .collect()
}

/// The directory relative paths in the configuration file are resolved against.
pub fn base_of(path: &Path) -> PathBuf {
    path.parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

//! The top of the program: starts the services (one accept loop per listener, the built-in
//! issuer's HTTP service, metrics — built by [`crate::reload`], which SIGHUP runs again) and
//! waits for signals. SIGHUP reloads the configuration file and the certificates; a new
//! configuration that is invalid is refused and the running one stays. SIGTERM stops
//! accepting and gives open sessions `drain_timeout` to finish; those still open then are
//! told so (before login: the protocol's goodbye; relays: closed, since nothing may be
//! injected into the backend's byte stream) and log how they ended. Who is accepted lives
//! in [`crate::accept`]; what one connection needs, in [`crate::listener`]; what it does, in
//! [`crate::driver`].

use std::path::Path;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::reload::{Lifetime, Running};

/// Why the server could not start: each problem with the key it is about, as a refused
/// reload logs them.
#[derive(Debug, thiserror::Error)]
#[error("cannot start: {}", list(.0))]
pub struct StartError(pub Vec<ConfigError>);

fn list(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// After the drain, the longest the sessions get to log their end.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// Runs the configuration read from `path` until SIGTERM or SIGINT, reloading it at each
/// SIGHUP, then drains.
pub async fn run(config: Config, path: &Path) -> Result<(), StartError> {
    // First of all: a SIGHUP that finds no handler kills the process.
    let mut signals = Signals::install();
    raise_descriptor_limit();
    check_descriptors(&config);
    if let Some(hint) = crate::listen::migration_hint(config.reuse_port) {
        info!("{hint}");
    }
    let shutdown = CancellationToken::new();
    let drain_over = CancellationToken::new();
    let tracker = TaskTracker::new();
    let lifetime = Lifetime {
        shutdown: shutdown.clone(),
        drain_over: drain_over.clone(),
        tracker: tracker.clone(),
    };
    let mut running = Running::start(config, path, lifetime)
        .await
        .map_err(StartError)?;
    info!(
        listeners = running.config().listeners.len(),
        "bearergate ready"
    );

    while let Asked::Reload = signals.next().await {
        running.reload().await;
    }
    let drain_timeout = running.config().drain_timeout;
    info!(drain_timeout = ?drain_timeout, "shutting down: no new connections");
    shutdown.cancel();
    tracker.close();
    let drained = signals
        .ignoring_reloads(tracker.wait(), drain_timeout)
        .await;
    if !drained {
        warn!("drain timeout reached; closing the remaining sessions");
        drain_over.cancel();
        // Each session says its goodbye if its socket takes it at once, and logs its end;
        // none waits on a client, so this is quick.
        if !signals
            .ignoring_reloads(tracker.wait(), FAREWELL_WAIT)
            .await
        {
            warn!("sessions still open after their goodbye; exiting anyway");
        }
    }
    info!("bearergate stopped");
    Ok(())
}

/// What a signal asks for.
enum Asked {
    /// SIGTERM or SIGINT.
    Stop,
    /// SIGHUP.
    Reload,
}

/// The signals the process answers. Installed once, before anything else, and kept to the
/// end: a SIGHUP during the drain is logged and ignored rather than killing the process.
struct Signals {
    /// `None` when the handlers could not be installed: only SIGKILL stops the process.
    handlers: Option<(Signal, Signal, Signal)>,
}

impl Signals {
    fn install() -> Self {
        let handlers = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Some((term, int, hup)),
            _ => {
                error!("cannot install signal handlers; stop with SIGKILL");
                None
            }
        };
        Self { handlers }
    }

    async fn next(&mut self) -> Asked {
        let Some((term, int, hup)) = &mut self.handlers else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => Asked::Stop,
            _ = int.recv() => Asked::Stop,
            _ = hup.recv() => Asked::Reload,
        }
    }

    /// Waits up to `limit` for `done`, logging each SIGHUP meanwhile; whether it finished.
    async fn ignoring_reloads(
        &mut self,
        done: impl std::future::Future<Output = ()>,
        limit: Duration,
    ) -> bool {
        let done = tokio::time::timeout(limit, done);
        tokio::pin!(done);
        loop {
            let hup = async {
                match &mut self.handlers {
                    Some((_, _, hup)) => hup.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                finished = &mut done => return finished.is_ok(),
                _ = hup => warn!("SIGHUP ignored: shutting down"),
            }
        }
    }
}

/// Raises the soft limit on open files to the hard one (the default soft limit of 1,024
/// serves ~500 sessions) and logs both.
fn raise_descriptor_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!(error = %e, "cannot raise the open files limit");
    }
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() {
        info!(soft, hard, "open files limit");
    }
}

/// Warns when the listeners' `max_connections` cannot all be served: each session holds
/// two descriptors, the client's and the backend's. At start, and after a reload that
/// needs more.
pub fn check_descriptors(config: &Config) {
    let Ok((soft, _)) = rlimit::Resource::NOFILE.get() else {
        return;
    };
    let needed = descriptors_needed(config);
    if needed > soft {
        warn!(
            needed,
            limit = soft,
            "the listeners' max_connections need more open files than the process may have \
             (two per session); lower max_connections or raise the limit (LimitNOFILE=)"
        );
    }
}

/// Open files the listeners may need at most.
pub fn descriptors_needed(config: &Config) -> u64 {
    let sessions: u64 = config
        .listeners
        .iter()
        .map(|listener| listener.max_connections as u64)
        .sum();
    // Listeners, the metrics endpoint, log and identity-provider connections: a margin;
    // and the refusals each listener may be writing.
    let refusals = (config.listeners.len() * crate::accept::REFUSALS_IN_FLIGHT) as u64;
    sessions
        .saturating_mul(2)
        .saturating_add(64)
        .saturating_add(refusals)
}

//! Resilience towards one identity provider: a bound on requests in flight and a circuit
//! breaker, around every HTTP request the validator makes to it.
//!
//! Without them a hanging identity provider costs every login a task and a socket for the
//! whole request timeout, and a login storm piles thousands of them onto a server that is
//! already struggling. The bound caps what we send; the circuit turns an identity provider
//! that keeps failing into an immediate "unavailable" (a temporary failure that mail clients
//! retry) and lets a few probe requests find out when it is back.
//!
//! # The circuit
//!
//! - Closed: requests run; `failure_threshold` consecutive failures open the circuit, and
//!   the outage begins.
//! - Open: requests fail at once, unrun, for the open time (below).
//! - HalfOpen: once the open time is over, up to [`HALF_OPEN_PROBES`] requests run at once as
//!   probes; further ones fail at once. [`HALF_OPEN_PROBES`] successful probes close the
//!   circuit and end the outage; one failed probe (or one whose future is dropped) opens it
//!   again, for a new open time. Probes are real logins: a successful probe is a successful
//!   login.
//!
//! The open time follows the outage, measured from the moment the circuit opened:
//!
//! ```text
//! open time = clamp(outage so far / OUTAGE_SHARE, MIN_OPEN_FOR, circuit_open_for)
//!           = clamp(outage so far / 8,            250 ms,       10 s by default)
//! ```
//!
//! - Short after a short outage: logins resume at most an eighth of the outage after the
//!   provider is back (plus one request), so within about a second for outages of up to
//!   8 s, and never more than `circuit_open_for` late.
//! - Growing while failures continue: every 250 ms for the first 2 s, then each wait an
//!   eighth longer than the last, reaching `circuit_open_for` after 80 s — some 40 probes in
//!   the first 80 s, then one per `circuit_open_for`. A provider that stays down is asked
//!   ever less often.
//! - Reset after sustained success: [`HALF_OPEN_PROBES`] successes in a row end the outage;
//!   the next one starts again at 250 ms.
//!
//! Why not a fixed open time: a provider flapping with a period near it (up 5 s, then HTTP
//! 500 for 5 s, against 10 s open) is probed at the same phase of every period, the one that
//! failed last time — an attack run saw 25 of 199 logins succeed while the provider was up
//! half the time. Scaling the open time with the outage bounds the up-time lost after each
//! recovery to a share of the outage whatever the period, so the probes cannot lock onto
//! the bad half. Why several probes: one lucky answer from a provider that fails most
//! requests would let the whole login load through; three in a row are evidence it is back,
//! and the cap on probes in flight keeps the first moment after recovery from being a
//! thundering herd.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::DEFAULT_TIMEOUT;
use crate::error::{invalid, ConfigError};
use crate::introspection::{Unavailable, UnavailableKind};

/// Default for `max_concurrent`: 32 requests in flight, far above what one proxy needs while
/// the identity provider answers in milliseconds, and a small pile-up while it does not.
pub const DEFAULT_MAX_CONCURRENT: usize = 32;
/// Default for `queue_timeout`: the request timeout, so that waiting for a slot costs a
/// login no more than one more request would.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = DEFAULT_TIMEOUT;
/// Default for `failure_threshold`: 5 in a row is an outage, not a lost packet.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default for `open_for` (`circuit_open_for`), the longest open time: a provider that has
/// been down for minutes is asked once per 10 s per proxy, and logins resume no later than
/// 10 s after it is back.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(10);
/// The shortest open time, at the start of an outage: 250 ms is four probes a second, no
/// load for any provider, and a quarter of the "about a second" logins may wait.
pub const MIN_OPEN_FOR: Duration = Duration::from_millis(250);
/// The open time is the outage so far divided by this: logins resume at most an eighth of
/// the outage after the provider is back.
pub const OUTAGE_SHARE: u32 = 8;
/// Probes a half-open circuit runs at once, and the successes in a row that close it.
pub const HALF_OPEN_PROBES: u32 = 3;

/// Limits for one identity provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// `max_concurrent`: requests in flight towards this identity provider at most; further
    /// ones wait up to `queue_timeout` for a slot, then fail as unavailable.
    pub max_concurrent: usize,
    /// `queue_timeout`: how long a request waits for a slot. `Duration::ZERO` never waits.
    pub queue_timeout: Duration,
    /// `failure_threshold`: consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// `open_for` (`circuit_open_for`): the longest an open circuit answers "unavailable" at
    /// once before letting probes through; shorter while the outage is young (module docs).
    pub open_for: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            open_for: DEFAULT_OPEN_FOR,
        }
    }
}

impl GuardConfig {
    /// Checks every key. A zero where a count or duration must be positive would silently
    /// turn every login away, so it is refused here rather than discovered in production.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent == 0 {
            return Err(invalid("max_concurrent_requests", "must be at least 1"));
        }
        if self.max_concurrent > Semaphore::MAX_PERMITS {
            let most = Semaphore::MAX_PERMITS;
            return Err(invalid(
                "max_concurrent_requests",
                format!("must be at most {most}"),
            ));
        }
        if self.failure_threshold == 0 {
            return Err(invalid("failure_threshold", "must be at least 1"));
        }
        if self.open_for.is_zero() {
            return Err(invalid("circuit_open_for", "must be greater than zero"));
        }
        Ok(())
    }

    /// How long the circuit stays open when the outage has lasted `outage`.
    pub(crate) fn open_time(&self, outage: Duration) -> Duration {
        let shortest = MIN_OPEN_FOR.min(self.open_for);
        (outage / OUTAGE_SHARE).clamp(shortest, self.open_for)
    }
}

/// The circuit as seen from outside, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests run.
    Closed,
    /// Requests fail at once. Turns [`CircuitState::HalfOpen`] with the first request after
    /// the open time, not by itself.
    Open,
    /// Probe requests are running; the others fail at once.
    HalfOpen,
}

/// Guards the requests to one identity provider. Share it (by reference or `Arc`) among
/// everything that talks to that provider.
#[derive(Debug)]
pub(crate) struct Guard {
    name: Box<str>,
    config: GuardConfig,
    slots: Semaphore,
    circuit: Mutex<Circuit>,
    rejected: AtomicU64,
}

#[derive(Debug)]
struct Circuit {
    state: State,
    /// Bumped each time the circuit opens, so that a request admitted before then cannot
    /// count towards (or reset) the failures of a later closed period, or the probes of a
    /// later half-open one.
    epoch: u64,
    /// When the circuit opened from closed; `None` while closed. Its age sets the open time.
    outage_since: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

/// What a finished request changed, logged once the lock is released.
enum Transition {
    Unchanged,
    Opened(Duration),
    Reopened(Duration),
    Closed(Duration),
}

impl Guard {
    /// A closed circuit towards the identity provider called `name` (for log lines and
    /// errors). An unvalidated `max_concurrent` is clamped to what a semaphore holds rather
    /// than panicking.
    pub(crate) fn new(name: &str, config: GuardConfig) -> Self {
        Self {
            name: name.into(),
            config,
            slots: Semaphore::new(config.max_concurrent.min(Semaphore::MAX_PERMITS)),
            circuit: Mutex::new(Circuit {
                state: State::Closed { failures: 0 },
                epoch: 0,
                outage_since: None,
            }),
            rejected: AtomicU64::new(0),
        }
    }

    /// Runs `request` unless the circuit is open or no slot frees up within `queue_timeout`.
    ///
    /// `Err` from `request` counts as a failure of the identity provider and `Ok` as a
    /// success, so a request that got a definite "token invalid" must return `Ok`: the
    /// identity provider answered and is healthy. `request` is not polled when refused.
    pub(crate) async fn run<T, F>(&self, request: F) -> Result<T, Unavailable>
    where
        F: Future<Output = Result<T, Unavailable>>,
    {
        // Before queueing, so that an open circuit answers at once instead of after a wait.
        self.admit(false)?;
        let permit = tokio::time::timeout(self.config.queue_timeout, self.slots.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            // `Ok(Err(_))` would be a closed semaphore, which we never close.
            return Err(self.refuse(
                UnavailableKind::Overloaded,
                format!("too many requests in flight to {}", self.name),
            ));
        };
        // Again, and for real: the circuit may have opened while we waited.
        let ticket = Ticket {
            guard: self,
            kind: Some(self.admit(true)?),
        };
        let result = request.await;
        ticket.settle(result.is_ok());
        result
    }

    /// The circuit's state, for metrics.
    pub(crate) fn state(&self) -> CircuitState {
        match self.lock().state {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// Requests refused without running: by the open circuit or for want of a slot.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Whether a request may run now, and as what. With `claim`, a request admitted as a
    /// probe takes its place among the probes (turning an open circuit half-open); without,
    /// it is a look that changes nothing.
    fn admit(&self, claim: bool) -> Result<Kind, Unavailable> {
        let now = Instant::now();
        let mut circuit = self.lock();
        let epoch = circuit.epoch;
        match circuit.state {
            State::Closed { .. } => Ok(Kind::Normal { epoch }),
            State::Open { until } if now < until => {
                drop(circuit);
                let why = format!("circuit to {} is open after repeated failures", self.name);
                Err(self.refuse(UnavailableKind::CircuitOpen, why))
            }
            State::Open { .. } => {
                if claim {
                    circuit.state = State::HalfOpen {
                        in_flight: 1,
                        succeeded: 0,
                    };
                }
                Ok(Kind::Probe { epoch })
            }
            State::HalfOpen {
                in_flight,
                succeeded,
            } if in_flight < HALF_OPEN_PROBES => {
                if claim {
                    circuit.state = State::HalfOpen {
                        in_flight: in_flight + 1,
                        succeeded,
                    };
                }
                Ok(Kind::Probe { epoch })
            }
            State::HalfOpen { .. } => {
                drop(circuit);
                let why = format!("circuit to {} is open; probes are in flight", self.name);
                Err(self.refuse(UnavailableKind::CircuitOpen, why))
            }
        }
    }

    fn refuse(&self, kind: UnavailableKind, why: String) -> Unavailable {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        Unavailable::new(kind, why)
    }

    /// Counts the outcome of a request that ran.
    fn record(&self, kind: Kind, ok: bool) {
        let now = Instant::now();
        let transition = {
            let mut circuit = self.lock();
            match (kind, circuit.state) {
                // Only the probes of this half-open period leave it, and a request admitted
                // before the circuit last opened says nothing about the identity provider now.
                (Kind::Probe { epoch }, _) | (Kind::Normal { epoch }, _)
                    if epoch != circuit.epoch =>
                {
                    Transition::Unchanged
                }
                (
                    Kind::Probe { .. },
                    State::HalfOpen {
                        in_flight,
                        succeeded,
                    },
                ) if ok => {
                    let succeeded = succeeded + 1;
                    if succeeded >= HALF_OPEN_PROBES {
                        let outage = circuit.close(now);
                        Transition::Closed(outage)
                    } else {
                        circuit.state = State::HalfOpen {
                            in_flight: in_flight.saturating_sub(1),
                            succeeded,
                        };
                        Transition::Unchanged
                    }
                }
                (Kind::Probe { .. }, State::HalfOpen { .. }) => {
                    Transition::Reopened(circuit.open(now, &self.config))
                }
                (Kind::Normal { .. }, State::Closed { failures }) => {
                    let failures = if ok { 0 } else { failures.saturating_add(1) };
                    if failures >= self.config.failure_threshold {
                        circuit.outage_since = Some(now);
                        Transition::Opened(circuit.open(now, &self.config))
                    } else {
                        circuit.state = State::Closed { failures };
                        Transition::Unchanged
                    }
                }
                _ => Transition::Unchanged,
            }
        };
        let name = &self.name;
        match transition {
            Transition::Unchanged => {}
            Transition::Opened(open) => tracing::warn!(
                "identity provider {name} unreachable; answering unavailable, probing again in \
                 {open:?}"
            ),
            // Many times in a long outage: debug, the warning said it already.
            Transition::Reopened(open) => tracing::debug!(
                "identity provider {name} still unreachable; probe failed, next in {open:?}"
            ),
            Transition::Closed(outage) => {
                tracing::info!("identity provider {name} is back after {outage:?}")
            }
        }
    }

    /// The circuit even if a thread panicked while holding it: every write leaves it in a
    /// valid state, and a panicking login must not take all later logins down with it.
    fn lock(&self) -> MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Circuit {
    /// Opens for the open time the outage's age calls for, and returns that time.
    fn open(&mut self, now: Instant, config: &GuardConfig) -> Duration {
        let outage = self
            .outage_since
            .map_or(Duration::ZERO, |since| now.duration_since(since));
        let open = config.open_time(outage);
        self.state = State::Open { until: now + open };
        self.epoch = self.epoch.wrapping_add(1);
        open
    }

    /// Closes and ends the outage; returns how long it lasted.
    fn close(&mut self, now: Instant) -> Duration {
        self.state = State::Closed { failures: 0 };
        self.outage_since
            .take()
            .map_or(Duration::ZERO, |since| now.duration_since(since))
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Admitted while closed, in the given epoch.
    Normal { epoch: u64 },
    /// One of the requests of a half-open circuit, in the given epoch.
    Probe { epoch: u64 },
}

/// A running request's place in the circuit. Dropped unsettled (its future was cancelled or
/// panicked), a probe counts as failed: a provider that hangs past our callers' patience is
/// not back, and the probe's place must be freed. A dropped normal request counts as
/// nothing: it proves nothing.
#[derive(Debug)]
struct Ticket<'a> {
    guard: &'a Guard,
    kind: Option<Kind>,
}

impl Ticket<'_> {
    fn settle(mut self, ok: bool) {
        if let Some(kind) = self.kind.take() {
            self.guard.record(kind, ok);
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if let Some(kind @ Kind::Probe { .. }) = self.kind.take() {
            self.guard.record(kind, false);
        }
    }
}

#[cfg(test)]
mod tests;

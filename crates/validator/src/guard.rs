//! Resilience towards one identity provider: a bound on requests in flight and a circuit
//! breaker, around every HTTP request the validator makes to it.
//!
//! Without them a hanging identity provider costs every login a task and a socket for the
//! whole request timeout, and a login storm piles thousands of them onto a server that is
//! already struggling. The bound caps what we send; the circuit turns an identity provider
//! that keeps failing into an immediate "unavailable" (a temporary failure that mail clients
//! retry) and lets a single probe request find out when it is back.
//!
//! - Closed: requests run; `failure_threshold` consecutive failures open the circuit.
//! - Open: requests fail at once, unrun, for `open_for`.
//! - HalfOpen: the first request after `open_for` runs as the probe, the others fail at once.
//!   Its success closes the circuit; its failure, or its future being dropped, opens it again.

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
/// Default for `open_for`: 10 s between probes keeps a recovering identity provider from a
/// thundering herd, and keeps logins unavailable no longer than that after it is back.
pub const DEFAULT_OPEN_FOR: Duration = Duration::from_secs(10);

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
    /// `open_for`: how long an open circuit answers "unavailable" at once before letting one
    /// probe through.
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
}

/// The circuit as seen from outside, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Requests run.
    Closed,
    /// Requests fail at once. Turns [`CircuitState::HalfOpen`] with the first request after
    /// `open_for`, not by itself.
    Open,
    /// One probe request is running; the others fail at once.
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
    /// count towards (or reset) the failures of a later closed period.
    epoch: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed { failures: u32 },
    Open { since: Instant },
    HalfOpen,
}

/// What a finished request changed, logged once the lock is released.
enum Transition {
    Unchanged,
    Opened,
    Reopened,
    Closed,
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
            State::HalfOpen => CircuitState::HalfOpen,
        }
    }

    /// Requests refused without running: by the open circuit or for want of a slot.
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Whether a request may run now, and as what. With `claim`, the first request after
    /// `open_for` becomes the probe and the circuit turns half-open; without, it is a look
    /// that changes nothing.
    fn admit(&self, claim: bool) -> Result<Kind, Unavailable> {
        let now = Instant::now();
        let mut circuit = self.lock();
        let kind = match circuit.state {
            State::Closed { .. } => Kind::Normal {
                epoch: circuit.epoch,
            },
            State::Open { since } if now.duration_since(since) < self.config.open_for => {
                drop(circuit);
                let why = format!("circuit to {} is open after repeated failures", self.name);
                return Err(self.refuse(UnavailableKind::CircuitOpen, why));
            }
            State::Open { .. } => {
                if claim {
                    circuit.state = State::HalfOpen;
                }
                Kind::Probe
            }
            State::HalfOpen => {
                drop(circuit);
                let why = format!("circuit to {} is open; a probe is in flight", self.name);
                return Err(self.refuse(UnavailableKind::CircuitOpen, why));
            }
        };
        Ok(kind)
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
                (Kind::Probe, State::HalfOpen) if ok => {
                    circuit.state = State::Closed { failures: 0 };
                    Transition::Closed
                }
                (Kind::Probe, State::HalfOpen) => {
                    circuit.open(now);
                    Transition::Reopened
                }
                (Kind::Normal { epoch }, State::Closed { failures }) if epoch == circuit.epoch => {
                    let failures = if ok { 0 } else { failures.saturating_add(1) };
                    if failures >= self.config.failure_threshold {
                        circuit.open(now);
                        Transition::Opened
                    } else {
                        circuit.state = State::Closed { failures };
                        Transition::Unchanged
                    }
                }
                // Only the probe leaves HalfOpen, and a request admitted before the circuit
                // last opened says nothing about the identity provider now.
                _ => Transition::Unchanged,
            }
        };
        let (name, open_for) = (&self.name, self.config.open_for);
        match transition {
            Transition::Unchanged => {}
            Transition::Opened => tracing::warn!(
                "identity provider {name} unreachable; answering unavailable for {open_for:?}"
            ),
            // Once per `open_for` for the whole outage: debug, the warning said it already.
            Transition::Reopened => {
                tracing::debug!("identity provider {name} still unreachable; probe failed")
            }
            Transition::Closed => tracing::info!("identity provider {name} is back"),
        }
    }

    /// The circuit even if a thread panicked while holding it: every write leaves it in a
    /// valid state, and a panicking login must not take all later logins down with it.
    fn lock(&self) -> MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Circuit {
    fn open(&mut self, now: Instant) {
        self.state = State::Open { since: now };
        self.epoch = self.epoch.wrapping_add(1);
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Admitted while closed, in the given epoch.
    Normal { epoch: u64 },
    /// The single request of a half-open circuit.
    Probe,
}

/// A running request's place in the circuit. Dropped unsettled (its future was cancelled or
/// panicked), a probe counts as failed: otherwise the circuit would stay half-open, refusing
/// everything, forever. A dropped normal request counts as nothing: it proves nothing.
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
        if let Some(Kind::Probe) = self.kind.take() {
            self.guard.record(Kind::Probe, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use tokio::time::advance;

    use super::*;

    const OPEN_FOR: Duration = Duration::from_secs(10);
    const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
    const THRESHOLD: u32 = 3;

    fn guard(max_concurrent: usize) -> Arc<Guard> {
        let config = GuardConfig {
            max_concurrent,
            queue_timeout: QUEUE_TIMEOUT,
            failure_threshold: THRESHOLD,
            open_for: OPEN_FOR,
        };
        Arc::new(Guard::new("idp", config))
    }

    async fn succeed(guard: &Guard) -> Result<(), Unavailable> {
        guard.run(async { Ok(()) }).await
    }

    async fn fail(guard: &Guard, times: u32) {
        for _ in 0..times {
            let refused = Unavailable::new(UnavailableKind::Unreachable, "refused");
            let failed = guard.run(async { Err::<(), _>(refused.clone()) });
            assert_eq!(failed.await, Err(refused));
        }
    }

    /// A request that counts its runs, to prove that a refused one never ran.
    async fn counted(guard: &Guard, calls: &AtomicUsize) -> Result<(), Unavailable> {
        let request = async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        guard.run(request).await
    }

    /// Spawns a request and returns once it runs; it then waits for `release`: `true`
    /// makes it succeed, `false` fail.
    async fn held(
        guard: &Arc<Guard>,
    ) -> (oneshot::Sender<bool>, JoinHandle<Result<(), Unavailable>>) {
        let (started_tx, started_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        let guard = Arc::clone(guard);
        let task = tokio::spawn(async move {
            let request = async {
                let _ = started_tx.send(());
                match release_rx.await {
                    Ok(true) => Ok(()),
                    _ => Err(Unavailable::new(UnavailableKind::BadAnswer, "failed")),
                }
            };
            guard.run(request).await
        });
        started_rx.await.expect("held request started");
        (release_tx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn closed_passes_results_through() {
        let guard = guard(4);
        assert_eq!(guard.run(async { Ok(7) }).await, Ok(7));
        fail(&guard, 1).await;
        assert_eq!(guard.state(), CircuitState::Closed);
        assert_eq!(guard.rejected(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_consecutive_failures_open() {
        let guard = guard(4);
        fail(&guard, THRESHOLD - 1).await;
        assert_eq!(guard.state(), CircuitState::Closed);
        fail(&guard, 1).await;
        assert_eq!(guard.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_the_failure_count() {
        let guard = guard(4);
        fail(&guard, THRESHOLD - 1).await;
        assert_eq!(succeed(&guard).await, Ok(()));
        fail(&guard, THRESHOLD - 1).await;
        assert_eq!(guard.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn open_rejects_without_running_the_request() {
        let (guard, calls) = (guard(4), AtomicUsize::new(0));
        fail(&guard, THRESHOLD).await;
        let refused = counted(&guard, &calls).await.expect_err("circuit is open");
        assert!(
            refused.detail.contains("circuit to idp is open"),
            "{refused}"
        );
        assert_eq!(refused.kind, UnavailableKind::CircuitOpen);
        advance(OPEN_FOR - Duration::from_millis(1)).await;
        assert!(counted(&guard, &calls).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(guard.rejected(), 2);
        assert_eq!(guard.state(), CircuitState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn after_open_for_exactly_one_probe_runs_and_its_success_closes() {
        let (guard, calls) = (guard(4), AtomicUsize::new(0));
        fail(&guard, THRESHOLD).await;
        advance(OPEN_FOR).await;
        let (release, probe) = held(&guard).await;
        assert_eq!(guard.state(), CircuitState::HalfOpen);
        for _ in 0..3 {
            let refused = counted(&guard, &calls).await.expect_err("probe in flight");
            assert!(refused.detail.contains("probe"), "{refused}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0);

        release.send(true).expect("probe waiting");
        assert_eq!(probe.await.expect("probe task"), Ok(()));
        assert_eq!(guard.state(), CircuitState::Closed);
        assert_eq!(counted(&guard, &calls).await, Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn probe_failure_reopens_for_open_for_again() {
        let (guard, calls) = (guard(4), AtomicUsize::new(0));
        fail(&guard, THRESHOLD).await;
        advance(OPEN_FOR).await;
        fail(&guard, 1).await;
        assert_eq!(guard.state(), CircuitState::Open);
        advance(OPEN_FOR - Duration::from_millis(1)).await;
        assert!(counted(&guard, &calls).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        advance(Duration::from_millis(1)).await;
        assert_eq!(counted(&guard, &calls).await, Ok(()));
        assert_eq!(guard.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_probe_reopens() {
        let guard = guard(4);
        fail(&guard, THRESHOLD).await;
        advance(OPEN_FOR).await;
        let hung = guard.run(std::future::pending::<Result<(), Unavailable>>());
        let cancelled = tokio::time::timeout(Duration::from_secs(1), hung).await;
        assert!(cancelled.is_err());
        assert_eq!(guard.state(), CircuitState::Open);
        advance(OPEN_FOR).await;
        assert_eq!(succeed(&guard).await, Ok(()));
        assert_eq!(guard.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_from_before_opening_are_ignored() {
        let guard = guard(4);
        let (release, slow) = held(&guard).await;
        fail(&guard, THRESHOLD).await;
        advance(OPEN_FOR).await;
        assert_eq!(succeed(&guard).await, Ok(()));
        // Its failure belongs to the outage that is over: it must not count towards the next.
        release.send(false).expect("slow request waiting");
        assert!(slow.await.expect("slow task").is_err());
        fail(&guard, THRESHOLD - 1).await;
        assert_eq!(guard.state(), CircuitState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_concurrent_run_and_the_next_waits_for_queue_timeout() {
        let (guard, calls) = (guard(2), AtomicUsize::new(0));
        let (first, first_task) = held(&guard).await;
        let (second, second_task) = held(&guard).await;
        let queued = Instant::now();
        let refused = counted(&guard, &calls).await.expect_err("no slot");
        assert_eq!(queued.elapsed(), QUEUE_TIMEOUT);
        assert!(
            refused
                .detail
                .contains("too many requests in flight to idp")
                && refused.kind == UnavailableKind::Overloaded,
            "{refused}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(guard.rejected(), 1);
        // A full queue is our load, not the identity provider failing.
        assert_eq!(guard.state(), CircuitState::Closed);

        // A waiting request gets the first slot that frees.
        let waiter = {
            let guard = Arc::clone(&guard);
            tokio::spawn(async move { succeed(&guard).await })
        };
        advance(QUEUE_TIMEOUT / 2).await;
        first.send(true).expect("first waiting");
        assert_eq!(first_task.await.expect("first task"), Ok(()));
        assert_eq!(waiter.await.expect("waiter task"), Ok(()));
        second.send(true).expect("second waiting");
        assert_eq!(second_task.await.expect("second task"), Ok(()));
        assert_eq!(guard.rejected(), 1);
    }

    #[test]
    fn validate_names_the_key() {
        let key = |config: GuardConfig| match config.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        let default = GuardConfig::default();
        assert_eq!(default.validate(), Ok(()));
        let zero_slots = GuardConfig {
            max_concurrent: 0,
            ..default
        };
        assert_eq!(key(zero_slots), "max_concurrent_requests");
        let zero_threshold = GuardConfig {
            failure_threshold: 0,
            ..default
        };
        assert_eq!(key(zero_threshold), "failure_threshold");
        let zero_open = GuardConfig {
            open_for: Duration::ZERO,
            ..default
        };
        assert_eq!(key(zero_open), "circuit_open_for");
    }
}

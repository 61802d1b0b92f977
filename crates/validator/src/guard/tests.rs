//! The guard under tokio's paused clock: every duration is virtual, so the tests run in
//! milliseconds and assert exact times.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{advance, MissedTickBehavior};

use super::*;

const OPEN_FOR: Duration = Duration::from_secs(10);
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
const THRESHOLD: u32 = 3;

fn config(max_concurrent: usize) -> GuardConfig {
    GuardConfig {
        max_concurrent,
        queue_timeout: QUEUE_TIMEOUT,
        failure_threshold: THRESHOLD,
        open_for: OPEN_FOR,
    }
}

fn guard(max_concurrent: usize) -> Arc<Guard> {
    Arc::new(Guard::new("idp", config(max_concurrent)))
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
async fn held(guard: &Arc<Guard>) -> (oneshot::Sender<bool>, JoinHandle<Result<(), Unavailable>>) {
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

/// Opens the circuit and waits out its first open time.
async fn open_and_wait(guard: &Guard) {
    fail(guard, THRESHOLD).await;
    assert_eq!(guard.state(), CircuitState::Open);
    advance(MIN_OPEN_FOR).await;
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
    // A fresh outage: the shortest open time.
    advance(MIN_OPEN_FOR - Duration::from_millis(1)).await;
    assert!(counted(&guard, &calls).await.is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(guard.rejected(), 2);
    assert_eq!(guard.state(), CircuitState::Open);
}

#[test]
fn open_time_grows_with_the_outage_between_its_bounds() {
    let config = config(4);
    let ms = Duration::from_millis;
    let table = [
        (ms(0), MIN_OPEN_FOR),
        (ms(1_999), MIN_OPEN_FOR),
        (ms(4_000), ms(500)),
        (ms(8_000), ms(1_000)),
        (ms(40_000), ms(5_000)),
        (ms(80_000), OPEN_FOR),
        (ms(3_600_000), OPEN_FOR),
    ];
    for (outage, open) in table {
        assert_eq!(config.open_time(outage), open, "{outage:?}");
    }
    // A circuit_open_for below the shortest open time caps it too.
    let short = GuardConfig {
        open_for: ms(100),
        ..config
    };
    assert_eq!(short.open_time(Duration::ZERO), ms(100));
}

#[tokio::test(start_paused = true)]
async fn half_open_runs_a_few_probes_and_their_successes_close() {
    let (guard, calls) = (guard(8), AtomicUsize::new(0));
    open_and_wait(&guard).await;
    let mut probes = Vec::new();
    for _ in 0..HALF_OPEN_PROBES {
        probes.push(held(&guard).await);
    }
    assert_eq!(guard.state(), CircuitState::HalfOpen);
    for _ in 0..3 {
        let refused = counted(&guard, &calls).await.expect_err("probes in flight");
        assert!(refused.detail.contains("probes are in flight"), "{refused}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Each success frees its place for another probe, and the circuit stays half-open
    // until HALF_OPEN_PROBES have succeeded.
    let (release, probe) = probes.remove(0);
    release.send(true).expect("probe waiting");
    assert_eq!(probe.await.expect("probe task"), Ok(()));
    assert_eq!(guard.state(), CircuitState::HalfOpen);
    assert_eq!(counted(&guard, &calls).await, Ok(()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(guard.state(), CircuitState::HalfOpen);
    for (release, probe) in probes {
        release.send(true).expect("probe waiting");
        assert_eq!(probe.await.expect("probe task"), Ok(()));
    }
    assert_eq!(guard.state(), CircuitState::Closed);
    assert_eq!(counted(&guard, &calls).await, Ok(()));
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_for_longer_as_the_outage_goes_on() {
    let (guard, calls) = (guard(4), AtomicUsize::new(0));
    fail(&guard, THRESHOLD).await;
    // Probe after probe fails: each open time is the one the outage's age calls for.
    let mut outage = Duration::ZERO;
    while outage < Duration::from_secs(120) {
        let open = config(4).open_time(outage);
        advance(open - Duration::from_millis(1)).await;
        assert!(counted(&guard, &calls).await.is_err(), "at {outage:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        advance(Duration::from_millis(1)).await;
        outage += open;
        fail(&guard, 1).await;
        assert_eq!(guard.state(), CircuitState::Open);
    }
    assert_eq!(config(4).open_time(outage), OPEN_FOR);
    // Back: the probes run, succeed and close the circuit.
    advance(OPEN_FOR).await;
    for _ in 0..HALF_OPEN_PROBES {
        assert_eq!(counted(&guard, &calls).await, Ok(()));
    }
    assert_eq!(guard.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn sustained_success_ends_the_outage_and_the_next_starts_short() {
    let guard = guard(4);
    fail(&guard, THRESHOLD).await;
    advance(Duration::from_secs(60)).await;
    fail(&guard, 1).await; // the probe: open for 60 s / 8
    advance(Duration::from_millis(7_499)).await;
    assert!(succeed(&guard).await.is_err());
    advance(Duration::from_millis(1)).await;
    for _ in 0..HALF_OPEN_PROBES {
        assert_eq!(succeed(&guard).await, Ok(()));
    }
    assert_eq!(guard.state(), CircuitState::Closed);
    // A new outage starts over at the shortest open time.
    fail(&guard, THRESHOLD).await;
    advance(MIN_OPEN_FOR).await;
    assert_eq!(succeed(&guard).await, Ok(()));
    assert_eq!(guard.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_reopens() {
    let guard = guard(4);
    open_and_wait(&guard).await;
    let hung = guard.run(std::future::pending::<Result<(), Unavailable>>());
    let cancelled = tokio::time::timeout(Duration::from_secs(1), hung).await;
    assert!(cancelled.is_err());
    assert_eq!(guard.state(), CircuitState::Open);
    advance(OPEN_FOR).await;
    for _ in 0..HALF_OPEN_PROBES {
        assert_eq!(succeed(&guard).await, Ok(()));
    }
    assert_eq!(guard.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn late_results_from_before_opening_are_ignored() {
    let guard = guard(4);
    let (release, slow) = held(&guard).await;
    open_and_wait(&guard).await;
    for _ in 0..HALF_OPEN_PROBES {
        assert_eq!(succeed(&guard).await, Ok(()));
    }
    // Its failure belongs to the outage that is over: it must not count towards the next.
    release.send(false).expect("slow request waiting");
    assert!(slow.await.expect("slow task").is_err());
    fail(&guard, THRESHOLD - 1).await;
    assert_eq!(guard.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_late_probe_of_an_earlier_half_open_period_is_ignored() {
    let guard = guard(4);
    open_and_wait(&guard).await;
    let (late, late_probe) = held(&guard).await;
    fail(&guard, 1).await; // a second probe fails: open again
    advance(OPEN_FOR).await;
    let (current, current_probe) = held(&guard).await;
    // The earlier period's success counts for nothing now.
    late.send(true).expect("late probe waiting");
    assert_eq!(late_probe.await.expect("late task"), Ok(()));
    current.send(true).expect("current probe waiting");
    assert_eq!(current_probe.await.expect("current task"), Ok(()));
    assert_eq!(
        guard.state(),
        CircuitState::HalfOpen,
        "one success of three"
    );
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

/// What logins saw while a provider flapped.
#[derive(Debug, Default)]
struct Flapping {
    logins: u32,
    succeeded: u32,
    /// Requests that reached the provider.
    asked: u32,
    /// For each time the provider came back: how long until the first login succeeded.
    resumed_after: Vec<Duration>,
}

/// Logins every `every`, for `periods` periods of a provider that is up for `up`, then
/// answers HTTP 500 for `down`; each request takes 20 ms. Bounded: the loop ends with the
/// last period.
async fn flap(
    guard: &Guard,
    up: Duration,
    down: Duration,
    periods: u32,
    every: Duration,
) -> Flapping {
    let start = Instant::now();
    let period = up + down;
    let end = start + period * periods;
    let is_up = |at: Instant| (at - start).as_nanos() % period.as_nanos() < up.as_nanos();
    let mut seen = Flapping::default();
    // The last period whose recovery has been seen.
    let mut resumed_in = 0;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let tick = ticks.tick().await;
        if tick >= end {
            return seen;
        }
        let asked = &mut seen.asked;
        let result = guard
            .run(async {
                *asked += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if is_up(Instant::now()) {
                    Ok(())
                } else {
                    Err(Unavailable::new(
                        UnavailableKind::HttpStatus(500),
                        "HTTP 500",
                    ))
                }
            })
            .await;
        seen.logins += 1;
        if result.is_err() {
            continue;
        }
        seen.succeeded += 1;
        // The provider has been up since the start of this period; the first period has
        // no outage before it.
        let index = (tick - start).as_nanos() / period.as_nanos();
        if index > resumed_in {
            resumed_in = index;
            let back = start + period * u32::try_from(index).expect("few periods");
            seen.resumed_after.push(tick - back);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn logins_converge_while_the_provider_is_up_half_the_time() {
    let guard = Guard::new("idp", GuardConfig::default());
    let (up, down) = (Duration::from_secs(5), Duration::from_secs(5));
    let seen = flap(&guard, up, down, 8, Duration::from_millis(100)).await;
    let ratio = f64::from(seen.succeeded) / f64::from(seen.logins);
    println!("5 s up / 5 s HTTP 500, a login every 100 ms for 80 s: {seen:?}, {ratio:.3}");
    assert_eq!(seen.logins, 800);
    assert!(ratio >= 0.40, "{ratio:.3} of logins succeeded: {seen:?}");
    // Every recovery is seen, within about a second.
    assert_eq!(seen.resumed_after.len(), 7, "{seen:?}");
    for resumed in &seen.resumed_after {
        assert!(*resumed <= Duration::from_secs(1), "{seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn other_flapping_periods_lose_at_most_an_eighth_of_each_outage() {
    // Down 3 s, 8 s, 20 s: the up-time lost after each recovery stays within an eighth of
    // the outage (plus the tick and request), so no period locks the probes onto the bad
    // phase.
    for (up, down) in [(3, 3), (8, 8), (20, 20)] {
        let guard = Guard::new("idp", GuardConfig::default());
        let (up, down) = (Duration::from_secs(up), Duration::from_secs(down));
        let seen = flap(&guard, up, down, 4, Duration::from_millis(100)).await;
        let slack = down / OUTAGE_SHARE + Duration::from_millis(250);
        assert_eq!(seen.resumed_after.len(), 3, "{seen:?}");
        for resumed in &seen.resumed_after {
            assert!(*resumed <= slack, "{up:?}/{down:?}: {seen:?}");
        }
        let ratio = f64::from(seen.succeeded) / f64::from(seen.logins);
        assert!(ratio >= 0.40, "{up:?}/{down:?}: {ratio:.3} {seen:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_long_outage_is_probed_ever_less_often() {
    let guard = Guard::new("idp", GuardConfig::default());
    // Down for 200 s, logins every 100 ms.
    let (up, down) = (Duration::ZERO, Duration::from_secs(200));
    let seen = flap(&guard, up, down, 1, Duration::from_millis(100)).await;
    // 5 failures to open, then ~40 probes in the first 80 s, then one per 10 s.
    println!("a 200 s outage, a login every 100 ms: {seen:?}");
    assert_eq!(seen.logins, 2_000);
    assert!(
        (45..=60).contains(&seen.asked),
        "{} requests reached the provider",
        seen.asked
    );
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

//! Attempts that find every unit held by attempts in flight: they wait, oldest first, for
//! a unit to come back or refill, and are told to try later when none can come in time.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::time::timeout;

use super::*;

/// A refill that never comes during a test.
const HOUR: Duration = Duration::from_secs(3_600);

/// Longer than any test here takes, and far shorter than [`HOUR`]: a deadline that must not
/// be what ends the wait (and before which no unit refills).
const MINUTE: Duration = Duration::from_secs(60);

/// Long enough for a woken attempt on a loaded machine; reaching it fails the test.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Polls `future` once: its output if that finished it.
async fn poll_once<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *future).poll(cx) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        })
    })
    .await
}

/// A password attempt from `address` that may wait until `deadline`.
fn attempt<'a>(
    throttle: &'a Throttle,
    address: &str,
    deadline: Instant,
) -> Pin<Box<impl Future<Output = Result<Charge<'a>, Limit>> + 'a>> {
    let now = Instant::now();
    Box::pin(throttle.begin(ip(address), None, Cost::NoIdpRequest, now, deadline))
}

/// `count` attempts from `address` that go ahead at once.
fn hold<'a>(throttle: &'a Throttle, address: &str, count: usize) -> Vec<Charge<'a>> {
    let now = Instant::now();
    (0..count)
        .map(|_| begin(throttle, address, None, Cost::NoIdpRequest, now).expect("a free unit"))
        .collect()
}

fn waiting(throttle: &Throttle, address: &str) -> usize {
    throttle.addresses.waiting(group(ip(address)))
}

#[tokio::test]
async fn an_attempt_finding_every_unit_in_flight_waits_and_the_oldest_gets_the_first_back() {
    let throttle = Throttle::new(limits());
    let mut held = hold(&throttle, "192.0.2.1", 3);
    let deadline = Instant::now() + MINUTE;
    let mut first = attempt(&throttle, "192.0.2.1", deadline);
    let mut second = attempt(&throttle, "192.0.2.1", deadline);
    assert!(poll_once(&mut first).await.is_none(), "no unit: it waits");
    assert!(poll_once(&mut second).await.is_none());
    assert_eq!(waiting(&throttle, "192.0.2.1"), 2);

    // One in flight succeeds: its unit goes to the oldest waiter, not to the other one,
    // nor to a newcomer.
    held[0].refund(Instant::now());
    assert!(poll_once(&mut second).await.is_none(), "not its turn");
    assert!(!can_begin(&throttle, "192.0.2.1", None, Instant::now()));
    let mut got = timeout(PROMPTLY, &mut first)
        .await
        .expect("woken")
        .expect("the unit that came back");
    assert!(poll_once(&mut second).await.is_none());
    got.refund(Instant::now());
    let mut next = timeout(PROMPTLY, &mut second)
        .await
        .expect("woken")
        .expect("the next unit back");
    assert_eq!(waiting(&throttle, "192.0.2.1"), 0);
    next.refund(Instant::now());
    for charge in &mut held {
        charge.refund(Instant::now());
    }
    // Nothing was spent: the whole budget is there.
    assert_eq!(hold(&throttle, "192.0.2.1", 3).len(), 3);
}

#[tokio::test]
async fn waiters_are_told_to_try_later_as_soon_as_the_units_in_flight_are_spent() {
    let throttle = Throttle::new(AuthLimits {
        address_failure_refill: HOUR,
        ..limits()
    });
    let held = hold(&throttle, "192.0.2.2", 3);
    let deadline = Instant::now() + MINUTE;
    let mut waiters: Vec<_> = (0..5)
        .map(|_| attempt(&throttle, "192.0.2.2", deadline))
        .collect();
    for waiter in &mut waiters {
        assert!(poll_once(waiter).await.is_none());
    }
    // Two of the three in flight fail: the one left could still give its unit back.
    let mut held = held.into_iter();
    for mut guess in held.by_ref().take(2) {
        guess.failed(0, Instant::now());
    }
    for waiter in &mut waiters {
        assert!(
            poll_once(waiter).await.is_none(),
            "one unit is still in flight"
        );
    }
    // The third fails too: nothing can come back before the refill, an hour off.
    for mut guess in held {
        guess.failed(0, Instant::now());
    }
    for waiter in waiters {
        let outcome = timeout(PROMPTLY, waiter).await.expect("refused at once");
        assert_eq!(outcome.err(), Some(Limit::Address));
    }
    assert_eq!(waiting(&throttle, "192.0.2.2"), 0);
}

#[tokio::test]
async fn a_waiter_with_no_unit_by_its_deadline_is_told_to_try_later() {
    let throttle = Throttle::new(limits());
    let _in_flight = hold(&throttle, "192.0.2.3", 3);
    let started = Instant::now();
    let outcome = attempt(&throttle, "192.0.2.3", started + Duration::from_millis(100)).await;
    assert_eq!(outcome.err(), Some(Limit::Address));
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(waiting(&throttle, "192.0.2.3"), 0);
}

#[tokio::test]
async fn a_waiter_takes_a_unit_that_refills_before_its_deadline() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 1,
        address_failure_refill: Duration::from_millis(150),
        ..limits()
    });
    let started = Instant::now();
    fail(&throttle, "192.0.2.4", 0, started);
    let mut charge = attempt(&throttle, "192.0.2.4", started + MINUTE)
        .await
        .expect("the refilled unit");
    assert!(started.elapsed() >= Duration::from_millis(140));
    charge.failed(0, Instant::now());

    // With the refill past the deadline, nothing is awaited.
    let throttle = Throttle::new(AuthLimits {
        address_failures: 1,
        address_failure_refill: HOUR,
        ..limits()
    });
    fail(&throttle, "192.0.2.4", 0, Instant::now());
    let mut slow = attempt(
        &throttle,
        "192.0.2.4",
        Instant::now() + Duration::from_secs(60),
    );
    let outcome = poll_once(&mut slow).await.expect("refused without waiting");
    assert_eq!(outcome.err(), Some(Limit::Address));
}

#[tokio::test]
async fn too_many_waiters_for_one_key_are_refused_at_once() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 1,
        ..limits()
    });
    let _in_flight = hold(&throttle, "192.0.2.5", 1);
    let deadline = Instant::now() + MINUTE;
    let mut waiters: Vec<_> = (0..table::MAX_WAITERS)
        .map(|_| attempt(&throttle, "192.0.2.5", deadline))
        .collect();
    for waiter in &mut waiters {
        assert!(poll_once(waiter).await.is_none());
    }
    let mut one_more = attempt(&throttle, "192.0.2.5", deadline);
    let outcome = poll_once(&mut one_more).await.expect("refused at once");
    assert_eq!(outcome.err(), Some(Limit::Address));
    // Other addresses have queues of their own.
    let _elsewhere = hold(&throttle, "192.0.2.6", 1);
    let mut elsewhere = attempt(&throttle, "192.0.2.6", deadline);
    assert!(poll_once(&mut elsewhere).await.is_none());
}

#[tokio::test]
async fn a_waiter_that_goes_away_leaves_the_queue_to_the_next() {
    let throttle = Throttle::new(limits());
    let mut held = hold(&throttle, "192.0.2.7", 3);
    let deadline = Instant::now() + MINUTE;
    let mut gone = attempt(&throttle, "192.0.2.7", deadline);
    let mut next = attempt(&throttle, "192.0.2.7", deadline);
    assert!(poll_once(&mut gone).await.is_none());
    assert!(poll_once(&mut next).await.is_none());
    // The oldest waiter's connection is cut (the drain): its place goes with it.
    drop(gone);
    assert_eq!(waiting(&throttle, "192.0.2.7"), 1);
    held[0].refund(Instant::now());
    let mut taken = timeout(PROMPTLY, &mut next)
        .await
        .expect("woken")
        .expect("the unit that came back");
    // An attempt cut off in flight spends what it holds, as a failure would: of the three
    // units, `taken` and one more are held, and one is spent.
    drop(held.pop());
    assert!(!can_begin(&throttle, "192.0.2.7", None, Instant::now()));
    taken.refund(Instant::now());
    held[1].refund(Instant::now());
    assert!(can_begin(&throttle, "192.0.2.7", None, Instant::now()));
    assert!(can_begin(&throttle, "192.0.2.7", None, Instant::now()));
    assert!(!can_begin(&throttle, "192.0.2.7", None, Instant::now()));
}

#[tokio::test]
async fn a_full_table_keeps_the_keys_attempts_hold_or_await() {
    let throttle = Throttle::with_capacity(
        AuthLimits {
            address_failure_refill: HOUR,
            ..limits()
        },
        4,
    );
    let now = Instant::now();
    fail(&throttle, "192.0.2.8", 0, now);
    let mut in_flight = hold(&throttle, "192.0.2.8", 1);
    for n in 0..20u8 {
        fail(&throttle, &format!("198.51.100.{n}"), 0, now);
        assert!(throttle.tracked(Limit::Address) <= 5, "four idle, one busy");
    }
    // 192.0.2.8 kept its failure and its unit in flight: that one fails too, and one unit
    // of three is left.
    in_flight[0].failed(0, now);
    assert!(can_begin(&throttle, "192.0.2.8", None, now));
    assert!(!can_begin(&throttle, "192.0.2.8", None, now));
}

/// Thirty-six logins at once from one address, all as one user with unknown tokens, against
/// budgets of ten each: every one goes ahead, never more than ten at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_good_logins_from_one_address_all_go_ahead() {
    let throttle = Arc::new(Throttle::new(AuthLimits {
        address_failures: 10,
        user_failures: 10,
        address_idp_requests: 10,
        address_failure_refill: HOUR,
        user_failure_refill: HOUR,
        address_idp_request_refill: HOUR,
        ..limits()
    }));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let logins: Vec<_> = (0..36)
        .map(|_| {
            let (throttle, in_flight, peak) = (throttle.clone(), in_flight.clone(), peak.clone());
            tokio::spawn(async move {
                let now = Instant::now();
                let mut charge = throttle
                    .begin(
                        ip("192.0.2.9"),
                        Some("alice"),
                        Cost::IdpRequest,
                        now,
                        now + MINUTE,
                    )
                    .await?;
                let asking = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(asking, Ordering::SeqCst);
                // The provider and the backend answer.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                in_flight.fetch_sub(1, Ordering::SeqCst);
                charge.token_accepted();
                charge.refund(Instant::now());
                Ok::<(), Limit>(())
            })
        })
        .collect();
    for login in logins {
        let outcome = timeout(PROMPTLY, login)
            .await
            .expect("no login left waiting");
        assert_eq!(outcome.expect("login task"), Ok(()));
    }
    assert!(
        peak.load(Ordering::SeqCst) <= 10,
        "at most the budget at a time"
    );
    // Nothing was spent.
    let now = Instant::now();
    let all: Vec<_> = (0..10)
        .map(|_| begin(&throttle, "192.0.2.9", Some("alice"), Cost::IdpRequest, now))
        .collect();
    assert!(all.iter().all(Result::is_ok));
}

/// Sixty wrong passwords at once from one address with a budget of ten: ten reach the
/// backend, the rest wait for them and are then told to try later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_failing_guesses_reach_the_checker_at_most_the_budget() {
    let throttle = Arc::new(Throttle::new(AuthLimits {
        address_failures: 10,
        address_failure_refill: HOUR,
        ..limits()
    }));
    let asked = Arc::new(AtomicUsize::new(0));
    let guesses: Vec<_> = (0..60)
        .map(|_| {
            let (throttle, asked) = (throttle.clone(), asked.clone());
            tokio::spawn(async move {
                let now = Instant::now();
                let mut charge = throttle
                    .begin(
                        ip("192.0.2.10"),
                        Some("alice"),
                        Cost::NoIdpRequest,
                        now,
                        now + MINUTE,
                    )
                    .await?;
                asked.fetch_add(1, Ordering::SeqCst);
                tokio::task::yield_now().await;
                charge.failed(0, Instant::now());
                Ok::<(), Limit>(())
            })
        })
        .collect();
    let mut refused = 0;
    for guess in guesses {
        let outcome = timeout(PROMPTLY, guess)
            .await
            .expect("no guess left waiting");
        match outcome.expect("guess task") {
            Ok(()) => {}
            Err(limit) => {
                assert_eq!(limit, Limit::Address);
                refused += 1;
            }
        }
    }
    assert_eq!((asked.load(Ordering::SeqCst), refused), (10, 50));
}

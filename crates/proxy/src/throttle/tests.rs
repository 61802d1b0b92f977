use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Wake, Waker};

use super::*;

mod waiting;

fn limits() -> AuthLimits {
    AuthLimits {
        failure_delay: Duration::from_millis(100),
        max_failure_delay: Duration::from_millis(700),
        address_failures: 3,
        address_failure_refill: Duration::from_secs(10),
        user_failures: 100,
        user_failure_refill: Duration::from_secs(10),
        address_idp_requests: 100,
        address_idp_request_refill: Duration::from_secs(1),
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

/// Runs an attempt's [`Throttle::begin`] that has no time to wait (its deadline is `now`)
/// to its end, outside any runtime: one poll must finish it.
fn without_waiting<T>(future: impl Future<Output = T>) -> T {
    struct Nobody;
    impl Wake for Nobody {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Nobody));
    match pin!(future).poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("an attempt with no time to wait waited"),
    }
}

/// Begins an attempt that may not wait; the charge when it may go ahead.
fn begin<'a>(
    throttle: &'a Throttle,
    address: &str,
    user: Option<&str>,
    cost: Cost,
    now: Instant,
) -> Result<Charge<'a>, Limit> {
    without_waiting(throttle.begin(ip(address), user, cost, now, now))
}

/// One failed password attempt (no identity-provider request): begin, then failed.
fn fail(throttle: &Throttle, address: &str, connection: u32, now: Instant) -> Duration {
    fail_as(throttle, address, None, connection, now)
}

fn fail_as(
    throttle: &Throttle,
    address: &str,
    user: Option<&str>,
    connection: u32,
    now: Instant,
) -> Duration {
    let mut charge = begin(throttle, address, user, Cost::NoIdpRequest, now)
        .unwrap_or_else(|limit| panic!("{address} {user:?} refused by {limit:?}"));
    charge.failed(connection, now)
}

/// Whether an attempt may go ahead at once. (It is then dropped unsettled, which spends
/// its units.)
fn can_begin(throttle: &Throttle, address: &str, user: Option<&str>, now: Instant) -> bool {
    begin(throttle, address, user, Cost::NoIdpRequest, now).is_ok()
}

#[test]
fn delay_doubles_per_failure_up_to_the_maximum() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 100,
        ..limits()
    });
    let now = Instant::now();
    let delays: Vec<u128> = (0..5)
        .map(|_| fail(&throttle, "192.0.2.1", 0, now).as_millis())
        .collect();
    assert_eq!(delays, [100, 200, 400, 700, 700]);
}

#[test]
fn a_connection_with_failures_is_delayed_even_from_a_fresh_address() {
    let throttle = Throttle::new(limits());
    let delay = fail(&throttle, "192.0.2.1", 2, Instant::now());
    assert_eq!(delay, Duration::from_millis(400));
}

#[test]
fn a_users_failures_from_other_addresses_lengthen_the_delay() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 100,
        ..limits()
    });
    let now = Instant::now();
    for n in 1..=3 {
        fail_as(&throttle, &format!("192.0.2.{n}"), Some("alice"), 0, now);
    }
    let delay = fail_as(&throttle, "192.0.2.50", Some("alice"), 0, now);
    assert_eq!(
        delay,
        Duration::from_millis(700),
        "a fourth failure for alice"
    );
    let delay = fail_as(&throttle, "192.0.2.51", Some("bob"), 0, now);
    assert_eq!(delay, Duration::from_millis(100), "bob's first");
}

#[test]
fn attempts_in_flight_take_the_budget_before_anyone_is_asked() {
    let throttle = Throttle::new(limits());
    let now = Instant::now();
    // Three attempts start at once; the fourth finds nothing left, although none has
    // failed yet.
    let mut charges: Vec<Charge> = (0..3)
        .map(|_| begin(&throttle, "192.0.2.5", None, Cost::NoIdpRequest, now).expect("budget"))
        .collect();
    assert!(!can_begin(&throttle, "192.0.2.5", None, now));
    // One turns out a success: its unit comes back, once.
    charges[0].refund(now);
    charges[0].refund(now);
    assert!(can_begin(&throttle, "192.0.2.5", None, now));
    assert!(!can_begin(&throttle, "192.0.2.5", None, now));
}

#[test]
fn parallel_guesses_at_one_user_from_many_addresses_share_its_budget() {
    let throttle = Throttle::new(AuthLimits {
        user_failures: 3,
        user_failure_refill: Duration::from_secs(3_600),
        ..limits()
    });
    let now = Instant::now();
    let start = Barrier::new(16);
    let outcomes: Vec<Result<Charge, Limit>> = std::thread::scope(|scope| {
        let guessers: Vec<_> = (0..16u8)
            .map(|n| {
                let (throttle, start) = (&throttle, &start);
                scope.spawn(move || {
                    let address = IpAddr::from([198, 51, 100, n]);
                    start.wait();
                    without_waiting(throttle.begin(
                        address,
                        Some("alice"),
                        Cost::IdpRequest,
                        now,
                        now,
                    ))
                })
            })
            .collect();
        guessers
            .into_iter()
            .map(|guesser| guesser.join().expect("guesser thread"))
            .collect()
    });
    let allowed = outcomes.iter().filter(|o| o.is_ok()).count();
    let by_user = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Limit::User)))
        .count();
    assert_eq!((allowed, by_user), (3, 13));
    // The refused guesses gave back their addresses' units: each address may try another
    // user at once.
    assert!(can_begin(&throttle, "198.51.100.15", Some("bob"), now));
    assert_eq!(throttle.tracked(Limit::User), 2);
}

#[test]
fn claimed_users_are_compared_trimmed_and_ignoring_ascii_case() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 100,
        user_failures: 3,
        user_failure_refill: Duration::from_secs(3_600),
        ..limits()
    });
    let now = Instant::now();
    for (n, name) in ["alice", "ALICE", " Alice\t"].into_iter().enumerate() {
        fail_as(&throttle, &format!("192.0.2.{n}"), Some(name), 0, now);
    }
    assert_eq!(
        begin(
            &throttle,
            "192.0.2.9",
            Some("aLiCe"),
            Cost::NoIdpRequest,
            now
        )
        .err(),
        Some(Limit::User)
    );
    assert!(can_begin(
        &throttle,
        "192.0.2.9",
        Some("alice@example.org"),
        now
    ));
    assert!(can_begin(&throttle, "192.0.2.9", Some("bob"), now));
    // A blank name names nobody: only the address counts.
    assert!(can_begin(&throttle, "192.0.2.9", Some("  "), now));
    assert_eq!(throttle.tracked(Limit::User), 3);
}

#[test]
fn the_budgets_run_out_and_refill() {
    let throttle = Throttle::new(AuthLimits {
        user_failures: 2,
        user_failure_refill: Duration::from_secs(30),
        ..limits()
    });
    let start = Instant::now();
    for _ in 0..3 {
        fail(&throttle, "192.0.2.7", 0, start);
    }
    assert!(!can_begin(&throttle, "192.0.2.7", None, start));
    assert!(
        can_begin(&throttle, "192.0.2.8", None, start),
        "other addresses unaffected"
    );
    assert!(!can_begin(
        &throttle,
        "192.0.2.7",
        None,
        start + Duration::from_secs(9)
    ));
    assert!(can_begin(
        &throttle,
        "192.0.2.7",
        None,
        start + Duration::from_secs(10)
    ));

    fail_as(&throttle, "203.0.113.1", Some("carol"), 0, start);
    fail_as(&throttle, "203.0.113.2", Some("carol"), 0, start);
    let later = start + Duration::from_secs(29);
    assert!(!can_begin(&throttle, "203.0.113.3", Some("carol"), later));
    let later = start + Duration::from_secs(30);
    assert!(can_begin(&throttle, "203.0.113.3", Some("carol"), later));
}

#[test]
fn a_trusted_token_is_never_refused_and_its_failures_still_count() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 2,
        user_failures: 2,
        address_failure_refill: Duration::from_secs(3_600),
        user_failure_refill: Duration::from_secs(3_600),
        ..limits()
    });
    let now = Instant::now();
    // Someone else spends alice's budget, from elsewhere.
    fail_as(&throttle, "192.0.2.1", Some("alice"), 0, now);
    fail_as(&throttle, "192.0.2.2", Some("alice"), 0, now);
    assert_eq!(
        begin(&throttle, "192.0.2.3", Some("alice"), Cost::IdpRequest, now).err(),
        Some(Limit::User),
        "an unknown token naming alice waits"
    );
    // alice's working token from her own address goes ahead, and takes nothing.
    let mut real = begin(&throttle, "192.0.2.3", Some("alice"), Cost::Trusted, now)
        .expect("a known-valid token is never throttled");
    real.refund(now);
    // Even from an address out of failures.
    fail(&throttle, "192.0.2.3", 0, now);
    fail(&throttle, "192.0.2.3", 0, now);
    assert!(!can_begin(&throttle, "192.0.2.3", None, now));
    assert!(begin(&throttle, "192.0.2.3", Some("alice"), Cost::Trusted, now).is_ok());
    // A trusted attempt that fails (a valid token naming someone else) is counted where
    // budget is left, and delayed like any failure.
    let mut wrong_user =
        begin(&throttle, "192.0.2.4", Some("dave"), Cost::Trusted, now).expect("trusted");
    assert_eq!(wrong_user.failed(0, now), Duration::from_millis(100));
    fail(&throttle, "192.0.2.4", 0, now);
    assert!(
        !can_begin(&throttle, "192.0.2.4", None, now),
        "the trusted failure took one of 192.0.2.4's two units"
    );
    assert!(can_begin(&throttle, "192.0.2.5", Some("dave"), now));
    assert!(!can_begin(&throttle, "192.0.2.6", Some("dave"), now));
}

#[test]
fn only_unknown_tokens_spend_identity_provider_requests() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 100,
        address_idp_requests: 2,
        address_idp_request_refill: Duration::from_secs(2),
        ..limits()
    });
    let now = Instant::now();
    let unknown = |user, now| begin(&throttle, "192.0.2.1", user, Cost::IdpRequest, now);
    let mut first = unknown(None, now).expect("first request");
    let mut second = unknown(Some("alice"), now).expect("second request");
    assert_eq!(unknown(None, now).err(), Some(Limit::IdpRequests));
    // Cached refusals and trusted tokens cost the provider nothing.
    for _ in 0..5 {
        let mut cached = begin(&throttle, "192.0.2.1", None, Cost::NoIdpRequest, now)
            .expect("answered from the cache");
        cached.failed(0, now);
        assert!(begin(&throttle, "192.0.2.1", None, Cost::Trusted, now).is_ok());
    }
    // A provider that could not answer was still asked: the unit stays spent.
    first.refund(now);
    assert_eq!(unknown(None, now).err(), Some(Limit::IdpRequests));
    // A token the provider accepted gives its unit back.
    second.token_accepted();
    second.token_accepted();
    let mut third = unknown(None, now).expect("the accepted token's unit");
    assert_eq!(unknown(None, now).err(), Some(Limit::IdpRequests));
    third.failed(0, now);
    // Other addresses have their own ceiling; this one refills.
    assert!(begin(&throttle, "192.0.2.2", None, Cost::IdpRequest, now).is_ok());
    let later = now + Duration::from_secs(2);
    assert!(unknown(None, later).is_ok());
    assert_eq!(unknown(None, later).err(), Some(Limit::IdpRequests));
}

#[test]
fn a_refusal_by_one_limit_gives_back_what_the_others_took() {
    let throttle = Throttle::new(AuthLimits {
        address_failures: 2,
        user_failures: 2,
        address_idp_requests: 1,
        address_idp_request_refill: Duration::from_secs(3_600),
        address_failure_refill: Duration::from_secs(3_600),
        user_failure_refill: Duration::from_secs(3_600),
        ..limits()
    });
    let now = Instant::now();
    let mut spent = begin(&throttle, "192.0.2.1", None, Cost::IdpRequest, now).expect("first");
    spent.refund(now);
    for _ in 0..5 {
        assert_eq!(
            begin(&throttle, "192.0.2.1", Some("alice"), Cost::IdpRequest, now).err(),
            Some(Limit::IdpRequests)
        );
    }
    // Neither the address's failures nor alice's were spent by those refusals.
    fail_as(&throttle, "192.0.2.1", Some("alice"), 0, now);
    fail_as(&throttle, "192.0.2.1", Some("alice"), 0, now);
    assert_eq!(
        begin(&throttle, "192.0.2.1", None, Cost::NoIdpRequest, now).err(),
        Some(Limit::Address)
    );
}

#[test]
fn ipv6_addresses_count_by_56() {
    let throttle = Throttle::new(limits());
    let now = Instant::now();
    for host in [
        "2001:db8:1:200::1",
        "2001:db8:1:2ff::2",
        "2001:db8:1:280:ffff::9",
    ] {
        fail(&throttle, host, 0, now);
    }
    assert!(!can_begin(&throttle, "2001:db8:1:2aa::77", None, now));
    assert!(can_begin(&throttle, "2001:db8:1:300::1", None, now));
    fail(&throttle, "::ffff:192.0.2.9", 0, now);
    assert_eq!(throttle.tracked(Limit::Address), 3);
    assert!(can_begin(&throttle, "192.0.2.9", None, now));
}

#[test]
fn a_full_table_still_limits_new_addresses() {
    let throttle = Throttle::with_capacity(limits(), 4);
    let now = Instant::now();
    for n in 0..10u8 {
        fail(&throttle, &format!("198.51.100.{n}"), 0, now);
    }
    assert_eq!(throttle.tracked(Limit::Address), 4);
    // The newest address is tracked and limited like any other.
    assert!(can_begin(&throttle, "198.51.100.9", None, now));
    assert!(can_begin(&throttle, "198.51.100.9", None, now));
    assert!(!can_begin(&throttle, "198.51.100.9", None, now));
    // Once the budgets have refilled, the old entries make room for new ones.
    let later = now + Duration::from_secs(60);
    assert!(can_begin(&throttle, "203.0.113.1", None, later));
    assert_eq!(throttle.tracked(Limit::Address), 1);
}

#[test]
fn a_full_table_evicts_the_least_suspicious_users_first() {
    let throttle = Throttle::with_capacity(
        AuthLimits {
            address_failures: 1_000,
            user_failures: 5,
            user_failure_refill: Duration::from_secs(3_600),
            ..limits()
        },
        16,
    );
    let now = Instant::now();
    // The target: out of failures. Then a crowd of names with one failure each, far more
    // than the table holds.
    for _ in 0..5 {
        fail_as(&throttle, "192.0.2.1", Some("alice"), 0, now);
    }
    for n in 0..200 {
        fail_as(&throttle, "192.0.2.2", Some(&format!("user{n}")), 0, now);
        assert!(throttle.tracked(Limit::User) <= 16);
    }
    assert_eq!(
        begin(
            &throttle,
            "192.0.2.3",
            Some("alice"),
            Cost::NoIdpRequest,
            now
        )
        .err(),
        Some(Limit::User),
        "the one spent budget survived the crowd"
    );
    // A name with more failures than the crowd's outlives it too.
    for _ in 0..3 {
        fail_as(&throttle, "192.0.2.1", Some("bob"), 0, now);
    }
    for n in 200..400 {
        fail_as(&throttle, "192.0.2.2", Some(&format!("user{n}")), 0, now);
    }
    let mut bob = begin(&throttle, "192.0.2.4", Some("bob"), Cost::NoIdpRequest, now)
        .expect("bob has two left");
    bob.failed(0, now);
    assert!(can_begin(&throttle, "192.0.2.4", Some("bob"), now));
    assert!(!can_begin(&throttle, "192.0.2.4", Some("bob"), now));
}

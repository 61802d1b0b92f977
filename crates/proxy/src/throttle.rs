//! What failed logins cost: a growing delay before each refusal, and a budget of failures
//! per client address after which that address's logins are refused at once, before the
//! identity provider or the backend is asked.
//!
//! The delay grows with the failures of the connection and of the address, whichever is
//! more, so an attacker gains nothing by opening a new connection per guess; the budget is
//! a token bucket (`address_failures` deep, one failure back per `address_failure_refill`),
//! so a user who mistypes a password twice is never locked out for long. Known good tokens
//! are never refused by it (the driver asks the validator's cache first).
//!
//! Every attempt that could fail takes its unit from the budget *before* anyone is asked
//! ([`Throttle::begin`]) and gives it back when it turns out not to be a failure
//! ([`Throttle::refund`]): otherwise a guesser with many connections in flight would pass
//! the check with all of them while the budget still showed one failure left.
//!
//! Addresses are grouped as an attacker holds them: IPv4 by address, IPv6 by /56 (a
//! customer's allocation; a /64 would hand every subnet of it a budget of its own). The
//! table is bounded: when it is full, entries whose budget has refilled are dropped, and if
//! none has, the entry with the most budget left (the least suspicious) makes room — memory
//! stays bounded whatever the number of sources, and a new address is always limited.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `[auth_limits]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Delay before the first refusal; doubles with each further failure.
    pub failure_delay: Duration,
    /// The delay never exceeds this.
    pub max_failure_delay: Duration,
    /// Failures one address may have in a burst.
    pub address_failures: u32,
    /// One more failure allowed per this long.
    pub address_failure_refill: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            // Dovecot's auth_failure_delay.
            failure_delay: Duration::from_secs(2),
            max_failure_delay: Duration::from_secs(16),
            address_failures: 10,
            address_failure_refill: Duration::from_secs(60),
        }
    }
}

/// Most addresses tracked at once: about 48 bytes each, so a few MiB at most.
const MAX_TRACKED: usize = 65_536;

/// Longest doubling: 2^6 × the first delay, far past any sensible maximum.
const MAX_DOUBLINGS: u32 = 6;

/// An address's failure budget.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures still allowed, fractional while refilling.
    available: f64,
    /// When `available` was last brought up to date.
    updated: Instant,
}

/// The shared failure table.
#[derive(Debug)]
pub struct Throttle {
    limits: AuthLimits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
    max_tracked: usize,
}

impl Throttle {
    /// An empty table with these limits.
    pub fn new(limits: AuthLimits) -> Self {
        Self::with_capacity(limits, MAX_TRACKED)
    }

    fn with_capacity(limits: AuthLimits, max_tracked: usize) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
            max_tracked,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> AuthLimits {
        self.limits
    }

    /// An attempt from `address` that could fail is about to ask the identity provider or
    /// the backend: takes one unit of the address's budget, or returns false (refuse the
    /// attempt, ask no one) when none is left.
    pub fn begin(&self, address: IpAddr, now: Instant) -> bool {
        let key = group(address);
        let capacity = f64::from(self.limits.address_failures);
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if !buckets.contains_key(&key) && buckets.len() >= self.max_tracked {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            available: capacity,
            updated: now,
        });
        self.refill(bucket, now);
        if bucket.available < 1.0 {
            return false;
        }
        bucket.available -= 1.0;
        true
    }

    /// The attempt [`Throttle::begin`] charged was not a failure (a login, or an outage
    /// that is nobody's guess): its unit goes back.
    pub fn refund(&self, address: IpAddr, now: Instant) {
        let Ok(mut buckets) = self.buckets.lock() else {
            return;
        };
        if let Some(bucket) = buckets.get_mut(&group(address)) {
            self.refill(bucket, now);
            bucket.available =
                (bucket.available + 1.0).min(f64::from(self.limits.address_failures));
        }
    }

    /// The attempt [`Throttle::begin`] charged failed: how long to wait before the refusal,
    /// given the failures the connection had before this one.
    pub fn failed(&self, address: IpAddr, connection_failures: u32, now: Instant) -> Duration {
        let capacity = f64::from(self.limits.address_failures);
        let used = match self.buckets.lock() {
            Ok(mut buckets) => match buckets.get_mut(&group(address)) {
                Some(bucket) => {
                    self.refill(bucket, now);
                    // This failure's own unit is already taken: the ones before it.
                    ((capacity - bucket.available).max(1.0).ceil() as u32).saturating_sub(1)
                }
                None => 0,
            },
            Err(_) => 0,
        };
        self.delay(connection_failures.max(used))
    }

    /// The delay for the `previous + 1`-th failure.
    fn delay(&self, previous: u32) -> Duration {
        let factor = 1u32 << previous.min(MAX_DOUBLINGS);
        self.limits
            .failure_delay
            .saturating_mul(factor)
            .min(self.limits.max_failure_delay)
    }

    /// Drops refilled entries; when none has refilled, the one with the most budget left.
    fn make_room(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let limits = self.limits;
        buckets.retain(|_, bucket| !is_full(limits, bucket, now));
        if buckets.len() < self.max_tracked {
            return;
        }
        let least_suspicious = buckets
            .iter()
            .max_by(|a, b| a.1.available.total_cmp(&b.1.available))
            .map(|(key, _)| *key);
        if let Some(key) = least_suspicious {
            buckets.remove(&key);
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.updated = now;
        let refill = self.limits.address_failure_refill;
        let gained = if refill.is_zero() {
            f64::INFINITY
        } else {
            elapsed.as_secs_f64() / refill.as_secs_f64()
        };
        bucket.available = (bucket.available + gained).min(f64::from(self.limits.address_failures));
    }

    /// Addresses tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// Whether a bucket has refilled completely by `now`: it then says nothing an absent entry
/// would not.
fn is_full(limits: AuthLimits, bucket: &Bucket, now: Instant) -> bool {
    let missing = f64::from(limits.address_failures) - bucket.available;
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    limits.address_failure_refill.is_zero()
        || elapsed >= missing * limits.address_failure_refill.as_secs_f64()
}

/// The key an address is counted under: IPv4 (and IPv4-mapped IPv6) by address, other IPv6
/// by its /56.
fn group(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[3] &= 0xff00;
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AuthLimits {
        AuthLimits {
            failure_delay: Duration::from_millis(100),
            max_failure_delay: Duration::from_millis(700),
            address_failures: 3,
            address_failure_refill: Duration::from_secs(10),
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    /// One failed attempt: begin, then failed.
    fn fail(throttle: &Throttle, address: &str, connection: u32, now: Instant) -> Duration {
        assert!(
            throttle.begin(ip(address), now),
            "{address} still has budget"
        );
        throttle.failed(ip(address), connection, now)
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
    fn attempts_in_flight_take_the_budget_before_anyone_is_asked() {
        let throttle = Throttle::new(limits());
        let now = Instant::now();
        let address = ip("192.0.2.5");
        // Three attempts start at once; the fourth finds nothing left, although none has
        // failed yet.
        for _ in 0..3 {
            assert!(throttle.begin(address, now));
        }
        assert!(!throttle.begin(address, now));
        // One turns out a success: its unit comes back.
        throttle.refund(address, now);
        assert!(throttle.begin(address, now));
        assert!(!throttle.begin(address, now));
    }

    #[test]
    fn the_budget_runs_out_and_refills() {
        let throttle = Throttle::new(limits());
        let start = Instant::now();
        for _ in 0..3 {
            fail(&throttle, "192.0.2.7", 0, start);
        }
        let address = ip("192.0.2.7");
        assert!(!throttle.begin(address, start));
        assert!(
            throttle.begin(ip("192.0.2.8"), start),
            "other addresses unaffected"
        );
        assert!(!throttle.begin(address, start + Duration::from_secs(9)));
        assert!(throttle.begin(address, start + Duration::from_secs(10)));
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
        assert!(!throttle.begin(ip("2001:db8:1:2aa::77"), now));
        assert!(throttle.begin(ip("2001:db8:1:300::1"), now));
        fail(&throttle, "::ffff:192.0.2.9", 0, now);
        assert_eq!(throttle.tracked(), 3);
        assert!(throttle.begin(ip("192.0.2.9"), now));
    }

    #[test]
    fn a_full_table_still_limits_new_addresses() {
        let throttle = Throttle::with_capacity(limits(), 4);
        let now = Instant::now();
        for n in 0..10u8 {
            let address = IpAddr::from([198, 51, 100, n]);
            assert!(throttle.begin(address, now));
            throttle.failed(address, 0, now);
        }
        assert_eq!(throttle.tracked(), 4);
        // The newest address is tracked and limited like any other.
        let newest = IpAddr::from([198, 51, 100, 9]);
        assert!(throttle.begin(newest, now));
        assert!(throttle.begin(newest, now));
        assert!(!throttle.begin(newest, now));
        // Once the budgets have refilled, the old entries make room for new ones.
        let later = now + Duration::from_secs(60);
        assert!(throttle.begin(ip("203.0.113.1"), later));
        assert_eq!(throttle.tracked(), 1);
    }
}

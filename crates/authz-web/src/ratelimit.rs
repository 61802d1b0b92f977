//! Token buckets per client address, for what has no account to count against: anonymous
//! client registration and wrong device user codes.
//!
//! IPv6 addresses are counted per /56, the smallest block ISPs commonly delegate to one
//! customer (as the sign-in limiter does), so that a customer cannot get a fresh bucket per
//! address or per /64 of its own. The table is bounded; when it is full
//! of addresses that are still being limited, a new address is refused (fail closed): under
//! such a flood, being limited beats losing the limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many, how fast, how many addresses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketLimits {
    /// Tokens a fresh address has (the burst).
    pub(crate) burst: u32,
    /// One token comes back every this long.
    pub(crate) refill_every: Duration,
    /// Addresses remembered at most.
    pub(crate) max_addresses: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Whole tokens left at `updated`.
    tokens: u32,
    /// The start of the current refill period (the part of a period already waited is
    /// kept as time, so the arithmetic is exact).
    updated: Instant,
}

/// Per-address token buckets.
#[derive(Debug)]
pub(crate) struct AddressLimiter {
    limits: BucketLimits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl AddressLimiter {
    pub(crate) fn new(limits: BucketLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Ok` when `address` has a token left; else how long until it has one. Spends nothing.
    pub(crate) fn check(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.lock();
        let key = bucket_key(address);
        if let Some(bucket) = buckets.get_mut(&key) {
            return self.refill(bucket, now);
        }
        if buckets.len() >= self.limits.max_addresses {
            self.forget_full(&mut buckets, now);
            if buckets.len() >= self.limits.max_addresses {
                return Err(self.limits.refill_every);
            }
        }
        Ok(())
    }

    /// Spends one token of `address`; `Err` with the wait when there was none.
    pub(crate) fn take(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.lock();
        let key = bucket_key(address);
        if !buckets.contains_key(&key) && buckets.len() >= self.limits.max_addresses {
            self.forget_full(&mut buckets, now);
            if buckets.len() >= self.limits.max_addresses {
                return Err(self.limits.refill_every);
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.limits.burst,
            updated: now,
        });
        self.refill(bucket, now)?;
        if bucket.tokens == self.limits.burst {
            // Refilling counts from the first spend after a full bucket, not from long ago.
            bucket.updated = now;
        }
        bucket.tokens -= 1;
        Ok(())
    }

    /// Brings `bucket` up to `now`; `Err(wait)` when it is empty.
    fn refill(&self, bucket: &mut Bucket, now: Instant) -> Result<(), Duration> {
        let every = self.limits.refill_every.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(bucket.updated);
        let earned = elapsed.as_nanos() / every.as_nanos();
        if earned > 0 {
            let tokens = u128::from(bucket.tokens) + earned;
            bucket.tokens = u32::try_from(tokens.min(u128::from(self.limits.burst)))
                .unwrap_or(self.limits.burst);
            // Keep the remainder of the current period, so partial waits add up.
            let period = u32::try_from(earned).unwrap_or(u32::MAX);
            bucket.updated += every.saturating_mul(period);
        }
        if bucket.tokens > 0 {
            return Ok(());
        }
        Err(every.saturating_sub(now.saturating_duration_since(bucket.updated)))
    }

    /// Drops the buckets that have refilled completely: they are the same as no bucket.
    fn forget_full(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let limits = self.limits;
        let every = limits.refill_every.max(Duration::from_millis(1));
        buckets.retain(|_, bucket| {
            let missing = limits.burst.saturating_sub(bucket.tokens);
            now.saturating_duration_since(bucket.updated) < every.saturating_mul(missing)
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        // A panic while holding the lock leaves counts that are still counts.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The address a bucket is kept for: IPv4 (and IPv4-mapped IPv6) as is, IPv6 by its /56.
fn bucket_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 72))),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_addresses: usize) -> AddressLimiter {
        AddressLimiter::new(BucketLimits {
            burst: 3,
            refill_every: Duration::from_secs(60),
            max_addresses,
        })
    }

    #[test]
    fn burst_then_wait_then_one_more() {
        let limiter = limiter(10);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(address, start), Ok(()));
        }
        let wait = limiter.take(address, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(60));
        let later = start + Duration::from_secs(30);
        assert_eq!(limiter.check(address, later), Err(Duration::from_secs(30)));
        let refilled = start + Duration::from_secs(60);
        assert_eq!(limiter.take(address, refilled), Ok(()));
        assert!(limiter.take(address, refilled).is_err());
        // Another address is not affected.
        assert_eq!(limiter.take("192.0.2.2".parse().unwrap(), start), Ok(()));
    }

    #[test]
    fn check_spends_nothing() {
        let limiter = limiter(10);
        let address: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.check(address, now), Ok(()));
        }
        for _ in 0..3 {
            assert_eq!(limiter.take(address, now), Ok(()));
        }
        assert!(limiter.check(address, now).is_err());
    }

    #[test]
    fn ipv6_counts_per_slash_56() {
        // One customer usually holds a /56 (often a /48): walking its /64s must not give
        // fresh buckets, as in the sign-in limiter.
        let limiter = limiter(10);
        let now = Instant::now();
        for subnet in ["2001:db8:1:2::1", "2001:db8:1:3::1", "2001:db8:1:ff::7"] {
            assert_eq!(
                limiter.take(subnet.parse().unwrap(), now),
                Ok(()),
                "{subnet}"
            );
        }
        assert!(limiter
            .take("2001:db8:1:42::99".parse().unwrap(), now)
            .is_err());
        assert_eq!(
            limiter.take("2001:db8:1:100::1".parse().unwrap(), now),
            Ok(())
        );
        // IPv4-mapped addresses count as the IPv4 address.
        assert_eq!(
            bucket_key("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn full_table_refuses_new_addresses_until_buckets_refill() {
        let limiter = limiter(2);
        let now = Instant::now();
        assert_eq!(limiter.take("192.0.2.1".parse().unwrap(), now), Ok(()));
        assert_eq!(limiter.take("192.0.2.2".parse().unwrap(), now), Ok(()));
        let third: IpAddr = "192.0.2.3".parse().unwrap();
        assert!(limiter.take(third, now).is_err());
        assert!(limiter.check(third, now).is_err());
        // Once the others have refilled, they are forgotten and the newcomer fits.
        let later = now + Duration::from_secs(60);
        assert_eq!(limiter.take(third, later), Ok(()));
    }
}

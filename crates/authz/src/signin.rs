//! Limits on sign-in attempts at the password form, applied before the password checker (a
//! backend IMAP login or the passwd-file) is ever asked.
//!
//! Two limits, both in memory, both bounded:
//! - **per address**: a token bucket of [`SignInLimits::address_failures`] attempts, one
//!   refilled every [`SignInLimits::refill`]. IPv4 addresses count one by one; IPv6 ones by
//!   /56, the smallest prefix an ISP commonly hands a customer, so a client cannot walk its
//!   own /64s for fresh budgets. A success gives its unit back.
//! - **per account**: after [`SignInLimits::account_failures`] failures the account is locked
//!   for [`SignInLimits::failure_delay`], and every further failure doubles that, up to
//!   [`SignInLimits::max_failure_delay`]. A success clears it; so does a quiet
//!   [`SignInLimits::forget_after`].
//!
//! Attempts are taken *before* asking (take-before-asking): [`SignInLimiter::check`] spends
//! the address unit and counts the attempt against the account as if it will fail, so guesses
//! sent in parallel, from one address or many, cannot all slip past before the first failure
//! is recorded. [`SignInLimiter::failed`] confirms the failure and restarts the account's
//! window from now; [`SignInLimiter::succeeded`] refunds the address and clears the account.
//! An attempt that never gets a verdict (the backend was down) stays counted as a failure
//! until the account is forgotten: failing closed.
//!
//! Accounts are keyed by a SHA-256 of the name the caller passes (normalised by the caller),
//! so an entry has a fixed size however long the typed name; passwords never come here.
//! The clock is passed in (`now`), so tests build instants from one base.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The limits; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInLimits {
    /// How long an account is locked once it reaches `account_failures`. Default 2 s.
    pub failure_delay: Duration,
    /// The doubling stops here. Default 16 s: slow for a guesser, bearable for a person.
    pub max_failure_delay: Duration,
    /// Failures an account may have before it is locked (`max_attempts` in `[issuer]`).
    /// Default 3.
    pub account_failures: u32,
    /// Attempts one address (IPv6: one /56) may make before it has to wait for a refill;
    /// `0` refuses every sign-in. Default 10.
    pub address_failures: u32,
    /// One attempt comes back to an address this often. Default 1 minute.
    pub refill: Duration,
    /// Entries each table (addresses, accounts) holds at most; see [`SignInLimiter`] for
    /// which go when it is full. Default 100_000 (10–20 MB for both, at most).
    pub capacity: usize,
    /// An account whose last attempt is this old starts afresh. Default 15 minutes.
    pub forget_after: Duration,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            failure_delay: Duration::from_secs(2),
            max_failure_delay: Duration::from_secs(16),
            account_failures: crate::settings::defaults::max_attempts(),
            address_failures: 10,
            refill: Duration::from_secs(60),
            capacity: 100_000,
            forget_after: Duration::from_secs(15 * 60),
        }
    }
}

impl SignInLimits {
    /// The defaults, with `account_failures` from `[issuer] max_attempts`.
    pub fn from_settings(settings: &crate::Settings) -> Self {
        Self {
            account_failures: settings.max_attempts,
            ..Self::default()
        }
    }

    /// How long an account with `attempts` counted failures stays locked after the last.
    fn account_delay(&self, attempts: u32) -> Option<Duration> {
        let doublings = attempts.checked_sub(self.account_failures)?;
        let factor = 1_u32.checked_shl(doublings).unwrap_or(u32::MAX);
        let delay = self.failure_delay.checked_mul(factor);
        Some(delay.map_or(self.max_failure_delay, |d| d.min(self.max_failure_delay)))
    }
}

/// Refused for now: try again after `retry_after` (for HTTP `Retry-After`, round up to
/// whole seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// How long until an attempt can pass.
    pub retry_after: Duration,
}

/// An address's token bucket. No entry means a full bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When the next unit started to accrue.
    stamp: Instant,
}

impl Bucket {
    /// The bucket as it stands at `now`, refilled one unit per `every`.
    fn at(self, now: Instant, capacity: u32, every: Duration) -> Bucket {
        let full = Bucket {
            tokens: capacity,
            stamp: now,
        };
        if self.tokens >= capacity || every.is_zero() {
            return full;
        }
        let elapsed = now.saturating_duration_since(self.stamp);
        let missing = capacity - self.tokens;
        match u32::try_from(elapsed.as_nanos() / every.as_nanos()) {
            Ok(earned) if earned < missing => Bucket {
                tokens: self.tokens + earned,
                stamp: self.stamp.checked_add(every * earned).unwrap_or(now),
            },
            _ => full,
        }
    }

    /// How long until the next unit, when there is none.
    fn wait(self, now: Instant, every: Duration) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.stamp);
        (self.tokens == 0).then(|| every.saturating_sub(elapsed))
    }
}

/// An account's attempts.
#[derive(Debug, Clone, Copy)]
struct Account {
    /// Failures, counting attempts still waiting for a verdict.
    attempts: u32,
    /// Attempts checked and not yet reported failed or succeeded.
    pending: u32,
    /// The last attempt or failure: the lock runs from here.
    last: Instant,
}

type AccountKey = [u8; 32];

#[derive(Debug, Default)]
struct Tables {
    addresses: HashMap<IpAddr, Bucket>,
    accounts: HashMap<AccountKey, Account>,
}

/// Sign-in attempt limits for the whole server: share one (it is `Send + Sync`).
///
/// Each table is bounded by [`SignInLimits::capacity`]. When a new entry would not fit,
/// entries that carry nothing are dropped first (a full bucket, an account quiet for
/// `forget_after`); if that is not enough, the least suspicious sixteenth goes — addresses
/// with the most budget left, accounts with the fewest failures, the oldest first among
/// equals — so a flood of fresh addresses or names pushes out itself before it pushes out
/// the entries that are actually limiting someone.
pub struct SignInLimiter {
    limits: SignInLimits,
    tables: Mutex<Tables>,
}

impl fmt::Debug for SignInLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignInLimiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl SignInLimiter {
    /// A limiter with nothing recorded. A `capacity` of 0 is taken as 1.
    pub fn new(limits: SignInLimits) -> Self {
        let limits = SignInLimits {
            capacity: limits.capacity.max(1),
            ..limits
        };
        Self {
            limits,
            tables: Mutex::new(Tables::default()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &SignInLimits {
        &self.limits
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // Every update leaves the tables consistent, so a panic elsewhere cannot poison them.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May `account` try a password from `address` now? On `Ok` the attempt is taken: one
    /// unit of the address's budget is spent and the account counts it as a failure until
    /// told otherwise ([`failed`](Self::failed), [`succeeded`](Self::succeeded)). On `Err`
    /// nothing is spent, and the wait is the longer of the two limits'.
    pub fn check(&self, address: IpAddr, account: &str, now: Instant) -> Result<(), Wait> {
        let limits = &self.limits;
        let address = address_key(address);
        let account = account_key(account);
        let mut tables = self.tables();

        let bucket = match tables.addresses.get(&address) {
            Some(bucket) => bucket.at(now, limits.address_failures, limits.refill),
            None => Bucket {
                tokens: limits.address_failures,
                stamp: now,
            },
        };
        let address_wait = bucket.wait(now, limits.refill);
        let current = tables
            .accounts
            .get(&account)
            .copied()
            .filter(|a| now.saturating_duration_since(a.last) < limits.forget_after);
        let account_wait = current.and_then(|a| {
            let until = a.last.checked_add(limits.account_delay(a.attempts)?)?;
            Some(until.saturating_duration_since(now)).filter(|d| !d.is_zero())
        });
        if let Some(retry_after) = address_wait.max(account_wait) {
            return Err(Wait { retry_after });
        }

        let spent = Bucket {
            tokens: bucket.tokens - 1,
            ..bucket
        };
        self.put(&mut tables.addresses, address, spent, now);
        let attempt = match current {
            Some(a) => Account {
                attempts: a.attempts.saturating_add(1),
                pending: a.pending.saturating_add(1),
                last: now,
            },
            None => Account {
                attempts: 1,
                pending: 1,
                last: now,
            },
        };
        self.put_account(&mut tables.accounts, account, attempt, now);
        Ok(())
    }

    /// The password was wrong: the attempt [`check`](Self::check) took stays a failure (and
    /// the address unit stays spent), and the account's lock runs from now.
    pub fn failed(&self, address: IpAddr, account: &str, now: Instant) {
        // Nothing to do for the address: its unit stays spent.
        let _ = address;
        let key = account_key(account);
        let mut tables = self.tables();
        let current = tables
            .accounts
            .get(&key)
            .copied()
            .filter(|a| now.saturating_duration_since(a.last) < self.limits.forget_after);
        let failure = match current {
            // The failure was counted when it was checked.
            Some(a) if a.pending > 0 => Account {
                pending: a.pending - 1,
                last: now,
                ..a
            },
            // Not checked first (or forgotten since): count it now.
            Some(a) => Account {
                attempts: a.attempts.saturating_add(1),
                last: now,
                ..a
            },
            None => Account {
                attempts: 1,
                pending: 0,
                last: now,
            },
        };
        self.put_account(&mut tables.accounts, key, failure, now);
    }

    /// The password was right: the address gets its unit back and the account's failures
    /// are cleared.
    pub fn succeeded(&self, address: IpAddr, account: &str, now: Instant) {
        let limits = &self.limits;
        let address = address_key(address);
        let mut tables = self.tables();
        tables.accounts.remove(&account_key(account));
        if let Some(bucket) = tables.addresses.get_mut(&address) {
            let mut refunded = bucket.at(now, limits.address_failures, limits.refill);
            refunded.tokens = refunded
                .tokens
                .saturating_add(1)
                .min(limits.address_failures);
            *bucket = refunded;
        }
    }

    fn put(
        &self,
        addresses: &mut HashMap<IpAddr, Bucket>,
        key: IpAddr,
        bucket: Bucket,
        now: Instant,
    ) {
        let (capacity, every) = (self.limits.address_failures, self.limits.refill);
        if !addresses.contains_key(&key) {
            make_room(
                addresses,
                self.limits.capacity,
                |b| b.at(now, capacity, every).tokens >= capacity,
                |b| (Reverse(b.at(now, capacity, every).tokens), b.stamp),
            );
        }
        addresses.insert(key, bucket);
    }

    fn put_account(
        &self,
        accounts: &mut HashMap<AccountKey, Account>,
        key: AccountKey,
        account: Account,
        now: Instant,
    ) {
        let forget_after = self.limits.forget_after;
        if !accounts.contains_key(&key) {
            make_room(
                accounts,
                self.limits.capacity,
                |a| now.saturating_duration_since(a.last) >= forget_after,
                |a| (a.attempts, a.last),
            );
        }
        accounts.insert(key, account);
    }
}

/// Makes room for one more entry in `table`: drops the `stale` entries, and if it is still
/// full, the lowest-`rank`ed sixteenth of `capacity` (at least one). A batch, so that a
/// flood pays one O(n) pass per sixteenth of the table rather than one per entry.
fn make_room<K, V, R>(
    table: &mut HashMap<K, V>,
    capacity: usize,
    stale: impl Fn(&V) -> bool,
    rank: impl Fn(&V) -> R,
) where
    K: Copy + Eq + Hash,
    R: Ord,
{
    if table.len() < capacity {
        return;
    }
    table.retain(|_, value| !stale(value));
    if table.len() < capacity {
        return;
    }
    let batch = (table.len() + 1 - capacity)
        .max(capacity / 16)
        .min(table.len());
    let mut ranked: Vec<(R, K)> = table.iter().map(|(k, v)| (rank(v), *k)).collect();
    if let Some(last) = batch.checked_sub(1) {
        ranked.select_nth_unstable_by(last, |a, b| a.0.cmp(&b.0));
    }
    for (_, key) in ranked.iter().take(batch) {
        table.remove(key);
    }
}

/// IPv4 (and IPv4-mapped IPv6) by address, IPv6 by /56.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 72))),
        v4 => v4,
    }
}

fn account_key(account: &str) -> AccountKey {
    Sha256::digest(account.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Barrier};

    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Only the address limit bites: accounts may fail a thousand times.
    fn address_only(address_failures: u32) -> SignInLimiter {
        SignInLimiter::new(SignInLimits {
            address_failures,
            account_failures: 1_000,
            ..SignInLimits::default()
        })
    }

    /// Only the account limit bites.
    fn account_only() -> SignInLimiter {
        SignInLimiter::new(SignInLimits {
            address_failures: 1_000,
            ..SignInLimits::default()
        })
    }

    fn wait(seconds: u64) -> Result<(), Wait> {
        Err(Wait {
            retry_after: Duration::from_secs(seconds),
        })
    }

    #[test]
    fn limiter_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<SignInLimiter>();
    }

    #[test]
    fn an_address_has_a_budget_then_waits_for_the_next_refill() {
        let limiter = address_only(3);
        let (t0, a) = (Instant::now(), ip("192.0.2.1"));
        for i in 0..3 {
            assert_eq!(limiter.check(a, &format!("user{i}"), t0), Ok(()));
        }
        assert_eq!(limiter.check(a, "user9", t0), wait(60));
        assert_eq!(limiter.check(a, "user9", t0 + 20 * SECOND), wait(40));
        // Another address is not affected.
        assert_eq!(limiter.check(ip("192.0.2.2"), "user9", t0), Ok(()));
        // One unit back after one refill period, and only one.
        assert_eq!(limiter.check(a, "user9", t0 + 60 * SECOND), Ok(()));
        assert_eq!(limiter.check(a, "user9", t0 + 61 * SECOND), wait(59));
    }

    #[test]
    fn the_budget_refills_up_to_its_size_and_not_beyond() {
        let limiter = address_only(3);
        let (t0, a) = (Instant::now(), ip("192.0.2.1"));
        for _ in 0..3 {
            assert_eq!(limiter.check(a, "u", t0), Ok(()));
        }
        let later = t0 + 3_600 * SECOND;
        for _ in 0..3 {
            assert_eq!(limiter.check(a, "u", later), Ok(()));
        }
        assert_eq!(limiter.check(a, "u", later), wait(60));
    }

    #[test]
    fn failures_keep_the_unit_spent_and_successes_refund_it() {
        let limiter = address_only(2);
        let (t0, a) = (Instant::now(), ip("192.0.2.1"));
        assert_eq!(limiter.check(a, "u", t0), Ok(()));
        limiter.succeeded(a, "u", t0);
        assert_eq!(limiter.check(a, "u", t0), Ok(()));
        limiter.succeeded(a, "u", t0);
        assert_eq!(limiter.check(a, "u", t0), Ok(()));
        limiter.failed(a, "u", t0);
        assert_eq!(limiter.check(a, "u", t0), Ok(()));
        limiter.failed(a, "u", t0);
        assert_eq!(limiter.check(a, "u", t0), wait(60));
    }

    /// One attempt that fails, at `at`.
    fn fail(limiter: &SignInLimiter, account: &str, at: Instant) {
        assert_eq!(limiter.check(ip("192.0.2.1"), account, at), Ok(()));
        limiter.failed(ip("192.0.2.1"), account, at);
    }

    #[test]
    fn the_account_delay_starts_at_the_limit_doubles_and_caps() {
        let limiter = account_only();
        let a = ip("198.51.100.7");
        let t0 = Instant::now();
        fail(&limiter, "bob", t0);
        fail(&limiter, "bob", t0);
        fail(&limiter, "bob", t0);
        assert_eq!(limiter.check(a, "bob", t0), wait(2));
        assert_eq!(limiter.check(a, "bob", t0 + SECOND), wait(1));
        assert_eq!(
            limiter.check(a, "alice", t0),
            Ok(()),
            "other accounts are free"
        );
        let mut t = t0;
        for delay in [2, 4, 8, 16, 16, 16] {
            t += Duration::from_secs(delay);
            fail(&limiter, "bob", t);
            let next = limiter.check(a, "bob", t).unwrap_err().retry_after;
            assert_eq!(next, Duration::from_secs((delay * 2).min(16)));
        }
    }

    #[test]
    fn success_clears_the_account_and_quiet_forgets_it() {
        let limiter = account_only();
        let a = ip("198.51.100.7");
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&limiter, "bob", t0);
            fail(&limiter, "carol", t0);
        }
        assert_eq!(limiter.check(a, "bob", t0), wait(2));
        let t1 = t0 + 2 * SECOND;
        assert_eq!(limiter.check(a, "bob", t1), Ok(()));
        limiter.succeeded(a, "bob", t1);
        fail(&limiter, "bob", t1);
        fail(&limiter, "bob", t1);
        assert_eq!(
            limiter.check(a, "bob", t1),
            Ok(()),
            "three fresh failures allowed"
        );
        // carol's third failure was at t0; after 15 quiet minutes it is forgotten.
        let t2 = t0 + 15 * 60 * SECOND;
        fail(&limiter, "carol", t2);
        fail(&limiter, "carol", t2);
        assert_eq!(limiter.check(a, "carol", t2), Ok(()));
        assert_eq!(limiter.check(a, "carol", t2), wait(2));
    }

    #[test]
    fn unreported_attempts_count_as_failures() {
        let limiter = account_only();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(ip("192.0.2.1"), "dave", t0), Ok(()));
        }
        assert_eq!(limiter.check(ip("192.0.2.1"), "dave", t0), wait(2));
        // A failure reported without a check is counted too.
        limiter.failed(ip("192.0.2.1"), "erin", t0);
        limiter.failed(ip("192.0.2.1"), "erin", t0);
        limiter.failed(ip("192.0.2.1"), "erin", t0);
        assert_eq!(limiter.check(ip("192.0.2.1"), "erin", t0), wait(2));
    }

    #[test]
    fn ipv6_addresses_share_a_budget_per_56() {
        let limiter = address_only(2);
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip("2001:db8:0:ff00::1"), "u", t0), Ok(()));
        assert_eq!(
            limiter.check(ip("2001:db8:0:ffff:1:2:3:4"), "u", t0),
            Ok(())
        );
        assert_eq!(limiter.check(ip("2001:db8:0:ff42::9"), "u", t0), wait(60));
        assert_eq!(
            limiter.check(ip("2001:db8:0:fe00::1"), "u", t0),
            Ok(()),
            "another /56"
        );
        // IPv4 is by address, and an IPv4-mapped IPv6 address is that IPv4 address.
        assert_eq!(limiter.check(ip("203.0.113.1"), "u", t0), Ok(()));
        assert_eq!(limiter.check(ip("::ffff:203.0.113.1"), "u", t0), Ok(()));
        assert_eq!(limiter.check(ip("203.0.113.1"), "u", t0), wait(60));
        assert_eq!(limiter.check(ip("203.0.113.2"), "u", t0), Ok(()));
    }

    /// `threads` callers pass a barrier together, then check at once; how many got in.
    fn parallel_checks(
        limiter: SignInLimiter,
        threads: usize,
        per_thread: fn(usize) -> (IpAddr, String),
    ) -> usize {
        let limiter = Arc::new(limiter);
        let barrier = Arc::new(Barrier::new(threads));
        let now = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (limiter, barrier) = (Arc::clone(&limiter), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let (address, account) = per_thread(i);
                    barrier.wait();
                    limiter.check(address, &account, now).is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&passed| passed)
            .count()
    }

    #[test]
    fn parallel_checks_from_one_address_take_exactly_the_budget() {
        let passed = parallel_checks(address_only(10), 20, |i| {
            (ip("192.0.2.1"), format!("user{i}"))
        });
        assert_eq!(passed, 10);
    }

    #[test]
    fn parallel_guesses_at_one_account_from_many_addresses_take_exactly_its_limit() {
        let passed = parallel_checks(account_only(), 20, |i| {
            (
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8)),
                "bob".to_owned(),
            )
        });
        assert_eq!(passed, 3);
    }

    fn small(capacity: usize) -> SignInLimiter {
        SignInLimiter::new(SignInLimits {
            capacity,
            ..SignInLimits::default()
        })
    }

    #[test]
    fn a_flood_of_addresses_stays_bounded_and_evicts_itself_first() {
        let limiter = small(8);
        let t0 = Instant::now();
        let attacker = ip("192.0.2.66");
        for i in 0..10 {
            assert_eq!(limiter.check(attacker, &format!("a{i}"), t0), Ok(()));
        }
        for i in 0..1_000_u32 {
            let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.check(address, &format!("x{i}"), t0);
            assert!(limiter.tables().addresses.len() <= 8);
        }
        assert_eq!(
            limiter.check(attacker, "a", t0),
            wait(60),
            "the empty bucket stayed"
        );
    }

    #[test]
    fn a_flood_of_account_names_stays_bounded_and_keeps_the_locked_ones() {
        let limiter = small(8);
        let t0 = Instant::now();
        for at in [0, 0, 0, 2, 6] {
            fail(&limiter, "target", t0 + at * SECOND);
        }
        // Five failures, the last at t0 + 6 s: locked for 8 s.
        let t0 = t0 + 6 * SECOND;
        for i in 0..1_000_u32 {
            let address = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.check(address, &format!("name{i}"), t0);
            let tables = limiter.tables();
            assert!(tables.accounts.len() <= 8 && tables.addresses.len() <= 8);
        }
        assert_eq!(limiter.check(ip("192.0.2.9"), "target", t0), wait(8));
    }

    #[test]
    fn stale_entries_are_dropped_before_anything_else() {
        let limiter = small(4);
        let t0 = Instant::now();
        for i in 0..4 {
            fail(&limiter, &format!("old{i}"), t0);
        }
        let later = t0 + 16 * 60 * SECOND;
        fail(&limiter, "new", later);
        let tables = limiter.tables();
        assert_eq!(
            tables.accounts.len(),
            1,
            "all four old accounts were forgotten"
        );
        assert!(tables.accounts.contains_key(&account_key("new")));
    }

    #[test]
    fn instants_out_of_order_do_not_panic() {
        let limiter = account_only();
        let t1 = Instant::now() + 60 * SECOND;
        fail(&limiter, "bob", t1);
        let t0 = t1 - 30 * SECOND;
        assert_eq!(limiter.check(ip("192.0.2.1"), "bob", t0), Ok(()));
        limiter.succeeded(ip("192.0.2.1"), "bob", t0);
    }
}

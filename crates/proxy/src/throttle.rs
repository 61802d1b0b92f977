//! What failed logins cost, and who pays: a growing delay before each refusal, and three
//! budgets after which logins are refused with "try again later" before the identity
//! provider or the backend is asked.
//!
//! - **Failures per address** (`address_failures`, one back per `address_failure_refill`):
//!   one source guessing.
//! - **Failures per claimed user** (`user_failures`, one back per `user_failure_refill`):
//!   many sources guessing one account. The user is the one the client names (`user=`,
//!   `a=`, the password login's name), trimmed and ASCII-lower-cased: the key must be known
//!   before anyone is asked, and password logins never meet an issuer's policy (the backend
//!   gets the name as typed), so ASCII case — which the token comparison ignores and
//!   Dovecot's usual `%Lu` folds — is the one rule every path shares. Spellings that only an
//!   issuer's domain rules or the backend merge (`alice`, `alice@example.org`) count apart.
//! - **Identity-provider requests per address** (`address_idp_requests`, one back per
//!   `address_idp_request_refill`): tokens the cache does not know, each a request to the
//!   provider. Answers from the cache and the built-in issuer's tokens cost nothing, and a
//!   token the provider accepts gives its unit back: the ceiling is on requests that bring
//!   nothing, so a webmail server or a NAT with many users is not held back by their working
//!   tokens, while one source can cost a struggling provider at most one request per refill.
//!
//! A token the proxy can judge alone and trust — one the cache knows to be valid, or one the
//! built-in issuer signs (checked in process, unforgeable) — is never refused by a limit:
//! limits spare the provider and the backend guesses, they do not lock a user whose token
//! works out of their mailbox because someone else guessed at it.
//!
//! Every attempt that could fail takes its units *before* anyone is asked
//! ([`Throttle::begin`]) and gives them back when it turns out not to be a failure
//! ([`Throttle::refund`]): otherwise a guesser with many connections in flight would pass
//! the check with all of them while the budget still showed one failure left.
//!
//! Addresses are grouped as an attacker holds them: IPv4 by address, IPv6 by /56 (a
//! customer's allocation; a /64 would hand every subnet of it a budget of its own). Each
//! table is bounded: when it is full, entries whose budget has refilled are dropped, and if
//! that is not enough, the eighth with the most budget left (the least suspicious) makes
//! room — memory stays bounded whatever the number of sources or names, a new key is always
//! limited, and a flood of new keys pays for one scan per eighth of the table, not per key.
//! User names are kept as keyed hashes, never as text.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::metrics::METRICS;

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
    /// Failures naming one user, from anywhere, in a burst.
    pub user_failures: u32,
    /// One more failure for the user per this long.
    pub user_failure_refill: Duration,
    /// Identity-provider requests for unknown tokens one address may cause in a burst.
    pub address_idp_requests: u32,
    /// One more request allowed per this long.
    pub address_idp_request_refill: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            // Dovecot's auth_failure_delay.
            failure_delay: Duration::from_secs(2),
            max_failure_delay: Duration::from_secs(16),
            address_failures: 10,
            address_failure_refill: Duration::from_secs(60),
            user_failures: 10,
            user_failure_refill: Duration::from_secs(60),
            address_idp_requests: 30,
            address_idp_request_refill: Duration::from_secs(2),
        }
    }
}

/// Which limit refused a login: the metric label and the reason logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The address's failures.
    Address,
    /// The claimed user's failures.
    User,
    /// The address's identity-provider requests.
    IdpRequests,
}

impl Limit {
    /// Every limit, in the order metrics list them.
    pub const ALL: [Limit; 3] = [Limit::Address, Limit::User, Limit::IdpRequests];

    /// The `limit` label value.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::User => "user",
            Limit::IdpRequests => "idp_requests",
        }
    }
}

/// What answering an attempt will take, as far as the proxy knows before asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// A token the cache knows to be valid, or the built-in issuer's: never refused by a
    /// limit (its failures still count where budget is left).
    Trusted,
    /// No identity-provider request: a refusal the cache holds, or a password (the backend
    /// checks it).
    NoIdpRequest,
    /// A token the cache does not know: a request to the identity provider.
    IdpRequest,
}

impl Cost {
    /// The cost of validating a token whose answer would come from `source`.
    pub fn of_token(source: validator::AnswerSource) -> Self {
        match source {
            validator::AnswerSource::KnownValid | validator::AnswerSource::InProcess => {
                Cost::Trusted
            }
            validator::AnswerSource::KnownInvalid => Cost::NoIdpRequest,
            validator::AnswerSource::Provider => Cost::IdpRequest,
        }
    }
}

/// What one attempt took from the budgets: kept when it fails, given back otherwise.
#[derive(Debug)]
pub struct Charge {
    /// The address's group key.
    address: IpAddr,
    /// The claimed user's key, once [`Throttle::begin`] has seen it.
    user: Option<u64>,
    took_address: bool,
    took_user: bool,
    took_idp: bool,
}

impl Charge {
    /// Nothing taken yet, for an attempt from `address`.
    pub fn new(address: IpAddr) -> Self {
        Self {
            address: group(address),
            user: None,
            took_address: false,
            took_user: false,
            took_idp: false,
        }
    }
}

/// Most keys each table tracks: about 48 bytes each, so a few MiB for all three at most.
const MAX_TRACKED: usize = 65_536;

/// Longest doubling: 2^6 × the first delay, far past any sensible maximum.
const MAX_DOUBLINGS: u32 = 6;

/// The shared budgets.
#[derive(Debug)]
pub struct Throttle {
    limits: AuthLimits,
    addresses: Table<IpAddr>,
    users: Table<u64>,
    idp_requests: Table<IpAddr>,
    /// Keys the user hashes: an attacker cannot choose names that collide.
    user_hasher: RandomState,
}

impl Throttle {
    /// Empty tables with these limits.
    pub fn new(limits: AuthLimits) -> Self {
        Self::with_capacity(limits, MAX_TRACKED)
    }

    fn with_capacity(limits: AuthLimits, max_tracked: usize) -> Self {
        Self {
            limits,
            addresses: Table::new(
                Limit::Address,
                limits.address_failures,
                limits.address_failure_refill,
                max_tracked,
            ),
            users: Table::new(
                Limit::User,
                limits.user_failures,
                limits.user_failure_refill,
                max_tracked,
            ),
            idp_requests: Table::new(
                Limit::IdpRequests,
                limits.address_idp_requests,
                limits.address_idp_request_refill,
                max_tracked,
            ),
            user_hasher: RandomState::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> AuthLimits {
        self.limits
    }

    /// An attempt naming `user` is about to ask the identity provider or the backend: takes
    /// its units into `charge`, or refuses it (ask no one) with the limit that is spent,
    /// having given back what it took. Counts refusals for the metrics.
    pub fn begin(
        &self,
        charge: &mut Charge,
        user: Option<&str>,
        cost: Cost,
        now: Instant,
    ) -> Result<(), Limit> {
        charge.user = user.and_then(|name| self.user_key(name));
        if cost == Cost::Trusted {
            return Ok(());
        }
        let refused = if !self.addresses.take(charge.address, now) {
            Some(Limit::Address)
        } else if charge.user.is_some_and(|key| !self.users.take(key, now)) {
            self.addresses.give_back(charge.address, now);
            Some(Limit::User)
        } else if cost == Cost::IdpRequest && !self.idp_requests.take(charge.address, now) {
            self.addresses.give_back(charge.address, now);
            if let Some(key) = charge.user {
                self.users.give_back(key, now);
            }
            Some(Limit::IdpRequests)
        } else {
            None
        };
        match refused {
            Some(limit) => {
                METRICS.auth_limited(limit);
                Err(limit)
            }
            None => {
                charge.took_address = true;
                charge.took_user = charge.user.is_some();
                charge.took_idp = cost == Cost::IdpRequest;
                Ok(())
            }
        }
    }

    /// The identity provider accepted the token: its request unit goes back (whatever
    /// becomes of the login).
    pub fn token_accepted(&self, charge: &mut Charge, now: Instant) {
        if std::mem::take(&mut charge.took_idp) {
            self.idp_requests.give_back(charge.address, now);
        }
    }

    /// The attempt was not a failure (a login, or an outage that is nobody's guess): its
    /// failure units go back. An identity-provider request that was made stays counted.
    pub fn refund(&self, charge: &mut Charge, now: Instant) {
        if std::mem::take(&mut charge.took_address) {
            self.addresses.give_back(charge.address, now);
        }
        if std::mem::take(&mut charge.took_user) {
            if let Some(key) = charge.user {
                self.users.give_back(key, now);
            }
        }
    }

    /// The attempt failed: its units stay taken (a trusted one takes them now, where budget
    /// is left), and the answer is how long to wait before the refusal, given the failures
    /// the connection had before this one.
    pub fn failed(&self, charge: &mut Charge, connection_failures: u32, now: Instant) -> Duration {
        if !charge.took_address {
            charge.took_address = self.addresses.take(charge.address, now);
        }
        let mut previous = connection_failures.max(self.addresses.used(charge.address, now));
        if let Some(key) = charge.user {
            if !charge.took_user {
                charge.took_user = self.users.take(key, now);
            }
            previous = previous.max(self.users.used(key, now));
        }
        self.delay(previous)
    }

    /// Keys tracked now by one limit's table (for tests; metrics get it as each changes).
    pub fn tracked(&self, limit: Limit) -> usize {
        match limit {
            Limit::Address => self.addresses.len(),
            Limit::User => self.users.len(),
            Limit::IdpRequests => self.idp_requests.len(),
        }
    }

    /// The delay for the `previous + 1`-th failure.
    fn delay(&self, previous: u32) -> Duration {
        let factor = 1u32 << previous.min(MAX_DOUBLINGS);
        self.limits
            .failure_delay
            .saturating_mul(factor)
            .min(self.limits.max_failure_delay)
    }

    /// The key a claimed user counts under: trimmed, ASCII-lower-cased, hashed. `None` for
    /// a name that is empty once trimmed (nobody is named).
    fn user_key(&self, name: &str) -> Option<u64> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        let mut hasher = self.user_hasher.build_hasher();
        for byte in name.bytes() {
            hasher.write_u8(byte.to_ascii_lowercase());
        }
        Some(hasher.finish())
    }
}

/// A budget.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Units still available, fractional while refilling.
    available: f64,
    /// When `available` was last brought up to date.
    updated: Instant,
}

/// One limit's token buckets, by key.
#[derive(Debug)]
struct Table<K> {
    limit: Limit,
    burst: u32,
    refill: Duration,
    max_tracked: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Copy + Eq + Hash> Table<K> {
    fn new(limit: Limit, burst: u32, refill: Duration, max_tracked: usize) -> Self {
        Self {
            limit,
            burst,
            refill,
            max_tracked: max_tracked.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A poisoned lock only means another thread panicked mid-update: the numbers are still
    /// numbers, and refusing every login over it would be worse.
    fn lock(&self) -> MutexGuard<'_, HashMap<K, Bucket>> {
        self.buckets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one unit for `key`; false when none is left.
    fn take(&self, key: K, now: Instant) -> bool {
        let mut buckets = self.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_tracked {
            self.make_room(&mut buckets, now);
        }
        let capacity = f64::from(self.burst);
        let bucket = buckets.entry(key).or_insert(Bucket {
            available: capacity,
            updated: now,
        });
        self.refill(bucket, now);
        let taken = bucket.available >= 1.0;
        if taken {
            bucket.available -= 1.0;
        }
        METRICS.auth_limit_tracked(self.limit, buckets.len());
        taken
    }

    /// Gives one unit back to `key` (nothing, when it was evicted meanwhile).
    fn give_back(&self, key: K, now: Instant) {
        let mut buckets = self.lock();
        if let Some(bucket) = buckets.get_mut(&key) {
            self.refill(bucket, now);
            bucket.available = (bucket.available + 1.0).min(f64::from(self.burst));
        }
    }

    /// Units `key` has used, not counting the one its current failure took.
    fn used(&self, key: K, now: Instant) -> u32 {
        let capacity = f64::from(self.burst);
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&key) else {
            return 0;
        };
        self.refill(bucket, now);
        ((capacity - bucket.available).max(1.0).ceil() as u32).saturating_sub(1)
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Drops refilled entries; when that is not enough, the eighth with the most budget left.
    fn make_room(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| !self.is_full(bucket, now));
        if buckets.len() < self.max_tracked {
            return;
        }
        let evict = (self.max_tracked / 8).max(1);
        let mut by_budget: Vec<(f64, K)> = buckets
            .iter()
            .map(|(key, bucket)| (bucket.available, *key))
            .collect();
        // Most budget first: the first `evict` are the least suspicious.
        by_budget.select_nth_unstable_by(evict - 1, |a, b| b.0.total_cmp(&a.0));
        for (_, key) in &by_budget[..evict] {
            buckets.remove(key);
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.updated = now;
        let gained = if self.refill.is_zero() {
            f64::INFINITY
        } else {
            elapsed.as_secs_f64() / self.refill.as_secs_f64()
        };
        bucket.available = (bucket.available + gained).min(f64::from(self.burst));
    }

    /// Whether a bucket has refilled completely by `now`: it then says nothing an absent
    /// entry would not.
    fn is_full(&self, bucket: &Bucket, now: Instant) -> bool {
        let missing = f64::from(self.burst) - bucket.available;
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        self.refill.is_zero() || elapsed >= missing * self.refill.as_secs_f64()
    }
}

/// The key an address is counted under: IPv4 (and IPv4-mapped IPv6) by address, other IPv6
/// by its /56.
pub(crate) fn group(address: IpAddr) -> IpAddr {
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
mod tests;

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
//! The budgets' units are permits. Every attempt that could fail holds one unit of each
//! budget it could spend *before* anyone is asked ([`Throttle::begin`]), spends them if it
//! fails ([`Charge::failed`]) and gives them back otherwise ([`Charge::refund`]): so no
//! more attempts are out asking than the budget has failures left, and a guesser with many
//! connections in flight gets no more guesses past the identity provider or the backend
//! than one with a single connection (checking first and charging after would let all of
//! them through while the budget still showed one failure left). An attempt that finds
//! every unit held by attempts in flight *waits* for one — until one of them succeeds and
//! gives its unit back, the bucket refills, or the deadline the driver sets (the backend's
//! `login_timeout`) passes — rather than being told to try later: the units in flight are
//! not failures yet, and most are not failures at all. Thirty-six devices of one user
//! behind one NAT, or a webmail server's users, logging in at once with a budget of ten
//! then go ten at a time, each a unit's round trip behind the last, and all log in; sixty
//! parallel guesses go ten at a time too, the ten fail and spend the budget, and the fifty
//! waiting are refused the moment nothing is left in flight. Waiting is bounded everywhere:
//! by the deadline, by 64 waiters per key (`MAX_WAITERS`; more are refused at once), and not
//! at all where it cannot help (nothing in flight and no refill before the deadline: a key
//! out of failures is refused at once). Waiters are served oldest first, and a unit that
//! comes back goes to the oldest waiter rather than to whoever arrives next.
//!
//! Addresses are grouped as an attacker holds them: IPv4 by address, IPv6 by /56 (a
//! customer's allocation; a /64 would hand every subnet of it a budget of its own). Each
//! table is bounded: when it is full, entries whose budget has refilled are dropped, and if
//! that is not enough, the eighth with the most budget left (the least suspicious) makes
//! room — memory stays bounded whatever the number of sources or names, a new key is always
//! limited, and a flood of new keys pays for one scan per eighth of the table, not per key.
//! Entries whose units are held or awaited are never dropped (their attempts settle on them
//! later); they are bounded by the attempts in flight, which the connection limits bound.
//! User names are kept as keyed hashes, never as text.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::metrics::METRICS;
use table::Table;

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

/// What one attempt holds of the budgets: settled once its outcome is known — given back
/// when it was no failure, spent when it was one. An attempt dropped before that (cut off by
/// the drain) spends what it holds, as a failure would: it may have been a guess, and a
/// path that forgot to settle must err on the side of the limit.
#[derive(Debug)]
pub struct Charge<'a> {
    throttle: &'a Throttle,
    /// The address's group key.
    address: IpAddr,
    /// The claimed user's key, once [`Throttle::begin`] has seen it.
    user: Option<u64>,
    held_address: bool,
    held_user: bool,
    held_idp: bool,
}

impl Charge<'_> {
    /// The identity provider accepted the token: its request unit goes back (whatever
    /// becomes of the login).
    pub fn token_accepted(&mut self) {
        if std::mem::take(&mut self.held_idp) {
            self.throttle.idp_requests.give_back(self.address);
        }
    }

    /// The attempt was not a failure (a login, or an outage that is nobody's guess): its
    /// failure units go back. An identity-provider request that was made stays counted.
    pub fn refund(&mut self, now: Instant) {
        let throttle = self.throttle;
        if std::mem::take(&mut self.held_address) {
            throttle.addresses.give_back(self.address);
        }
        if std::mem::take(&mut self.held_user) {
            if let Some(key) = self.user {
                throttle.users.give_back(key);
            }
        }
        if std::mem::take(&mut self.held_idp) {
            throttle.idp_requests.spend(self.address, now);
        }
    }

    /// The attempt failed: its units are spent (a trusted one spends them now, where budget
    /// is left), and the answer is how long to wait before the refusal, given the failures
    /// the connection had before this one.
    pub fn failed(&mut self, connection_failures: u32, now: Instant) -> Duration {
        let throttle = self.throttle;
        if std::mem::take(&mut self.held_address) {
            throttle.addresses.spend(self.address, now);
        } else {
            throttle.addresses.spend_free(self.address, now);
        }
        let mut previous = connection_failures.max(throttle.addresses.used(self.address, now));
        if let Some(key) = self.user {
            if std::mem::take(&mut self.held_user) {
                throttle.users.spend(key, now);
            } else {
                throttle.users.spend_free(key, now);
            }
            previous = previous.max(throttle.users.used(key, now));
        }
        if std::mem::take(&mut self.held_idp) {
            throttle.idp_requests.spend(self.address, now);
        }
        throttle.delay(previous)
    }

    /// Gives back everything held without spending anything: the attempt was refused
    /// before anyone was asked.
    fn release(&mut self) {
        let throttle = self.throttle;
        if std::mem::take(&mut self.held_address) {
            throttle.addresses.give_back(self.address);
        }
        if std::mem::take(&mut self.held_user) {
            if let Some(key) = self.user {
                throttle.users.give_back(key);
            }
        }
        if std::mem::take(&mut self.held_idp) {
            throttle.idp_requests.give_back(self.address);
        }
    }
}

impl Drop for Charge<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let throttle = self.throttle;
        if std::mem::take(&mut self.held_address) {
            throttle.addresses.spend(self.address, now);
        }
        if std::mem::take(&mut self.held_user) {
            if let Some(key) = self.user {
                throttle.users.spend(key, now);
            }
        }
        if std::mem::take(&mut self.held_idp) {
            throttle.idp_requests.spend(self.address, now);
        }
    }
}

/// Most keys each table tracks while idle: about 64 bytes each, so a few MiB for all three
/// at most (plus the entries attempts in flight hold, which the connection limits bound).
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

    /// A charge for an attempt from `address` that holds nothing (yet).
    pub fn charge(&self, address: IpAddr) -> Charge<'_> {
        Charge {
            throttle: self,
            address: group(address),
            user: None,
            held_address: false,
            held_user: false,
            held_idp: false,
        }
    }

    /// An attempt from `address` naming `user` is about to ask the identity provider or the
    /// backend: holds a unit of each budget it could spend — the address's failures, the
    /// user's, the address's identity-provider requests, in that order — waiting for one
    /// where all are held by attempts in flight, until `deadline` at the latest. Or refuses
    /// it (ask no one) with the limit that has no unit for it, having given back what it
    /// held. Counts refusals for the metrics.
    pub async fn begin(
        &self,
        address: IpAddr,
        user: Option<&str>,
        cost: Cost,
        now: Instant,
        deadline: Instant,
    ) -> Result<Charge<'_>, Limit> {
        let mut charge = self.charge(address);
        charge.user = user.and_then(|name| self.user_key(name));
        if cost == Cost::Trusted {
            return Ok(charge);
        }
        // Always in this order, so that no two attempts each hold what the other awaits.
        let mut now = now;
        let refused = 'take: {
            match self.addresses.reserve(charge.address, now, deadline).await {
                Some(at) => (now, charge.held_address) = (at, true),
                None => break 'take Some(Limit::Address),
            }
            if let Some(key) = charge.user {
                match self.users.reserve(key, now, deadline).await {
                    Some(at) => (now, charge.held_user) = (at, true),
                    None => break 'take Some(Limit::User),
                }
            }
            if cost == Cost::IdpRequest {
                match self
                    .idp_requests
                    .reserve(charge.address, now, deadline)
                    .await
                {
                    Some(_) => charge.held_idp = true,
                    None => break 'take Some(Limit::IdpRequests),
                }
            }
            None
        };
        match refused {
            Some(limit) => {
                charge.release();
                METRICS.auth_limited(limit);
                Err(limit)
            }
            None => Ok(charge),
        }
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

mod table;

#[cfg(test)]
mod tests;

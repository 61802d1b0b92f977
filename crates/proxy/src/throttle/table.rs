//! One limit's budgets, by key: a token bucket per key whose units attempts in flight hold
//! as permits, and a queue of attempts waiting for one, served oldest first.
//!
//! A unit an attempt holds is still counted in the bucket (`available`) and also in
//! `in_flight`: what is free for a new attempt is the difference. Success gives the permit
//! back (nothing is spent), failure spends the unit (`available` drops with it). So at any
//! moment `in_flight <= available`: no more attempts are out asking than failures are left,
//! and a key out of failures has nothing in flight.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Limit;
use crate::metrics::METRICS;

/// Most attempts that may wait for one key's units; further ones are refused at once.
/// Sixty-four: a NAT or a webmail server's burst of logins fits (three listeners' worth of
/// the default twenty connections per address before login), while the wake-ups and the
/// memory a key's queue costs stay small.
pub(super) const MAX_WAITERS: usize = 64;

/// A budget.
#[derive(Debug)]
struct Bucket {
    /// Units not spent by failures, fractional while refilling; the units attempts in
    /// flight hold are among them.
    available: f64,
    /// When `available` was last brought up to date.
    updated: Instant,
    /// Units held by attempts in flight; never more than `available`.
    in_flight: u32,
    /// Attempts waiting for a unit, oldest first (`None` when nobody waits: most keys,
    /// most of the time, and a pointer's worth of memory).
    queue: Option<Box<Queue>>,
}

impl Bucket {
    /// Nobody holds or awaits its units: the entry may be dropped when the table is full.
    fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.queue.is_none()
    }

    /// Units a new attempt could take now.
    fn free(&self) -> f64 {
        self.available - f64::from(self.in_flight)
    }

    /// The state changed (a unit came back or was spent): the oldest waiter looks again.
    /// Its [`Notify`] keeps the wake-up if it is not waiting at this instant.
    fn wake_first(&self) {
        if let Some((_, notify)) = self.queue.as_ref().and_then(|q| q.waiting.front()) {
            notify.notify_one();
        }
    }
}

/// The attempts waiting for one key's unit.
#[derive(Debug, Default)]
struct Queue {
    next_ticket: u64,
    waiting: VecDeque<(u64, Arc<Notify>)>,
}

/// A place in a key's queue; leaving it (a refusal, the deadline, the attempt dropped)
/// takes it out and lets the next waiter look.
#[derive(Debug)]
pub(super) struct Ticket<'a, K: Copy + Eq + Hash> {
    table: &'a Table<K>,
    key: K,
    number: u64,
    notify: Arc<Notify>,
    /// Still in the queue (false once it took its unit there).
    queued: bool,
}

impl<K: Copy + Eq + Hash> Drop for Ticket<'_, K> {
    fn drop(&mut self) {
        if self.queued {
            self.table.leave(self.key, self.number);
        }
    }
}

/// What one look at a key's budget found.
#[derive(Debug)]
pub(super) enum Step {
    /// A unit is held for the attempt.
    Taken,
    /// Wait for a wake-up through `notify`, or until `until` (a refill, or the deadline).
    Wait { notify: Arc<Notify>, until: Instant },
    /// No unit will come in time, or too many wait already.
    Refused,
}

/// One limit's buckets, by key.
#[derive(Debug)]
pub(super) struct Table<K> {
    limit: Limit,
    burst: u32,
    refill: Duration,
    max_tracked: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Copy + Eq + Hash> Table<K> {
    pub(super) fn new(limit: Limit, burst: u32, refill: Duration, max_tracked: usize) -> Self {
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

    /// Holds one unit of `key` for an attempt in flight, waiting for one (oldest waiter
    /// first) until `deadline` at the latest. The time it was taken, or `None`: refused.
    /// Dropping the future mid-wait leaves the queue cleanly.
    pub(super) async fn reserve(&self, key: K, now: Instant, deadline: Instant) -> Option<Instant> {
        let mut ticket = None;
        let mut now = now;
        loop {
            match self.look(key, &mut ticket, now, deadline) {
                Step::Taken => return Some(now),
                Step::Refused => return None,
                Step::Wait { notify, until } => {
                    let until = tokio::time::Instant::from_std(until);
                    // Woken or timed out, the next look decides.
                    let _ = tokio::time::timeout_at(until, notify.notified()).await;
                    now = Instant::now();
                }
            }
        }
    }

    /// One look at `key`'s budget for an attempt that holds `ticket` (its place in the
    /// queue, once it has waited).
    pub(super) fn look<'a>(
        &'a self,
        key: K,
        ticket: &mut Option<Ticket<'a, K>>,
        now: Instant,
        deadline: Instant,
    ) -> Step {
        let mut buckets = self.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_tracked {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            available: f64::from(self.burst),
            updated: now,
            in_flight: 0,
            queue: None,
        });
        self.refill(bucket, now);
        let free = bucket.free();
        let first = match (&bucket.queue, &*ticket) {
            (None, _) => true,
            (Some(queue), Some(mine)) => {
                queue.waiting.front().map(|(n, _)| *n) == Some(mine.number)
            }
            (Some(_), None) => false,
        };
        // When waiting for a refill could help: with no unit free, when one will have grown.
        let refill_at = self.refill_at(free, now);
        let until = if free < 1.0 {
            refill_at.map_or(deadline, |at| at.min(deadline))
        } else {
            deadline
        };
        let step = if free >= 1.0 && first {
            bucket.in_flight += 1;
            if let Some(mut mine) = ticket.take() {
                mine.queued = false;
                if let Some(queue) = bucket.queue.as_mut() {
                    queue.waiting.pop_front();
                    if queue.waiting.is_empty() {
                        bucket.queue = None;
                    } else {
                        // The next in line looks too: there may be another unit free, or
                        // its refill to time.
                        bucket.wake_first();
                    }
                }
            }
            Step::Taken
        } else if now >= deadline
            || (bucket.in_flight == 0
                && free < 1.0
                && !matches!(refill_at, Some(at) if at <= deadline))
        {
            // Out of time, or nothing in flight can give a unit back and no refill comes in
            // time: a key out of failures is refused at once, as before there was a queue.
            Step::Refused
        } else if let Some(mine) = ticket.as_ref() {
            Step::Wait {
                notify: mine.notify.clone(),
                until,
            }
        } else if bucket.queue.as_ref().map_or(0, |q| q.waiting.len()) >= MAX_WAITERS {
            Step::Refused
        } else {
            let queue = bucket.queue.get_or_insert_with(Box::default);
            let number = queue.next_ticket;
            queue.next_ticket += 1;
            let notify = Arc::new(Notify::new());
            queue.waiting.push_back((number, notify.clone()));
            *ticket = Some(Ticket {
                table: self,
                key,
                number,
                notify: notify.clone(),
                queued: true,
            });
            Step::Wait { notify, until }
        };
        METRICS.auth_limit_tracked(self.limit, buckets.len());
        step
    }

    /// When the free units will have grown to one by refilling alone (`None`: too far off
    /// for an `Instant`); `now` when there is one already.
    fn refill_at(&self, free: f64, now: Instant) -> Option<Instant> {
        let missing = (1.0 - free).max(0.0);
        let wait = Duration::try_from_secs_f64(missing * self.refill.as_secs_f64()).ok()?;
        now.checked_add(wait)
    }

    /// Takes `number` out of `key`'s queue; the next waiter looks.
    fn leave(&self, key: K, number: u64) {
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&key) else {
            return;
        };
        let Some(queue) = bucket.queue.as_mut() else {
            return;
        };
        let was_first = queue.waiting.front().map(|(n, _)| *n) == Some(number);
        queue.waiting.retain(|(n, _)| *n != number);
        if queue.waiting.is_empty() {
            bucket.queue = None;
        } else if was_first {
            bucket.wake_first();
        }
    }

    /// An attempt in flight was no failure: its unit is free again.
    pub(super) fn give_back(&self, key: K) {
        let mut buckets = self.lock();
        if let Some(bucket) = buckets.get_mut(&key) {
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
            bucket.wake_first();
        }
    }

    /// An attempt in flight failed: its unit is spent.
    pub(super) fn spend(&self, key: K, now: Instant) {
        let mut buckets = self.lock();
        if let Some(bucket) = buckets.get_mut(&key) {
            self.refill(bucket, now);
            bucket.in_flight = bucket.in_flight.saturating_sub(1);
            bucket.available = (bucket.available - 1.0).max(f64::from(bucket.in_flight));
            bucket.wake_first();
        }
    }

    /// A failure of an attempt that held no unit (a trusted token): spends a free unit
    /// where one is left.
    pub(super) fn spend_free(&self, key: K, now: Instant) {
        let mut buckets = self.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.max_tracked {
            self.make_room(&mut buckets, now);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            available: f64::from(self.burst),
            updated: now,
            in_flight: 0,
            queue: None,
        });
        self.refill(bucket, now);
        if bucket.free() >= 1.0 {
            bucket.available -= 1.0;
        }
        bucket.wake_first();
        METRICS.auth_limit_tracked(self.limit, buckets.len());
    }

    /// Units `key` has spent, not counting the one its current failure took.
    pub(super) fn used(&self, key: K, now: Instant) -> u32 {
        let capacity = f64::from(self.burst);
        let mut buckets = self.lock();
        let Some(bucket) = buckets.get_mut(&key) else {
            return 0;
        };
        self.refill(bucket, now);
        ((capacity - bucket.available).max(1.0).ceil() as u32).saturating_sub(1)
    }

    /// Keys tracked.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Attempts waiting for `key`'s units (for tests).
    #[cfg(test)]
    pub(super) fn waiting(&self, key: K) -> usize {
        self.lock()
            .get(&key)
            .and_then(|bucket| bucket.queue.as_ref())
            .map_or(0, |queue| queue.waiting.len())
    }

    /// Drops idle entries whose budget has refilled; when that is not enough, the eighth
    /// with the most budget left among the idle ones. An entry whose units are held or
    /// awaited stays (its attempts settle on it later): when every entry is busy the table
    /// grows past its bound by busy entries only, which the connection limits bound.
    fn make_room(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| !(bucket.is_idle() && self.is_full(bucket, now)));
        if buckets.len() < self.max_tracked {
            return;
        }
        let mut by_budget: Vec<(f64, K)> = buckets
            .iter()
            .filter(|(_, bucket)| bucket.is_idle())
            .map(|(key, bucket)| (bucket.available, *key))
            .collect();
        let evict = (self.max_tracked / 8).max(1).min(by_budget.len());
        if evict == 0 {
            return;
        }
        // Most budget first: the first `evict` are the least suspicious.
        by_budget.select_nth_unstable_by(evict - 1, |a, b| b.0.total_cmp(&a.0));
        for (_, key) in &by_budget[..evict] {
            buckets.remove(key);
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated);
        bucket.updated = bucket.updated.max(now);
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

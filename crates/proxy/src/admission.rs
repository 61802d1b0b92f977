//! How many connections one client address may hold on a listener before logging in
//! (`max_prelogin_per_address`), so that one source cannot fill the listener's
//! `max_connections` with connections that never log in — 100 slow-loris clients from one
//! address would otherwise lock everyone else out until their `preauth_deadline`.
//!
//! The count is per listener, as nginx's `limit_conn` is per server block: the slots it
//! protects are the listener's own, and listeners serve different crowds (a webmail server
//! logs its users in to IMAP from one address; public submission does not), so each sets its
//! own cap. Dovecot's `mail_max_userip_connections` is the post-login counterpart; here a
//! connection counts from accept until it logs in (then it is a user's session, and the
//! cap no longer applies) or closes.
//!
//! Addresses are grouped as the failed-login throttle groups them: IPv4 by address, IPv6 by
//! /56 ([`crate::throttle::group`]), since whoever holds one address of a /56 holds them all.
//! The table is bounded without any eviction: an entry lives only while its address has a
//! connection before login, so it never holds more entries than the listener has
//! connections (`max_connections`, plus the one being decided).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::OwnedSemaphorePermit;

/// A connection's places on its listener: one of `max_connections` until it closes, and
/// one of its address's connections before login until it logs in. The driver gives both
/// back before it logs the connection's end, so a client that sees that line can connect
/// again. It also says where the connection came from and when, which the places were
/// decided on.
#[derive(Debug)]
pub struct Admission {
    prelogin: Option<PreloginSlot>,
    _connection: OwnedSemaphorePermit,
    /// Boxed: the admission lives in the session's task for the relay's days, and a task
    /// 100 octets larger crosses the allocator's next size class (+1 KiB a session).
    origin: Box<Origin>,
}

impl Admission {
    /// The places the accept loop took for a connection from `origin`.
    pub fn new(prelogin: PreloginSlot, connection: OwnedSemaphorePermit, origin: Origin) -> Self {
        Self {
            prelogin: Some(prelogin),
            _connection: connection,
            origin: Box::new(origin),
        }
    }

    /// Logged in: the connection no longer counts against its address.
    pub fn logged_in(&mut self) {
        self.prelogin = None;
    }

    /// Where the connection came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

/// Where a connection came from, as the session sees it: the socket's own endpoints, or
/// those a trusted load balancer's PROXY header named (`proxy_protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The client: in logs, limits, and what the backend is told.
    pub client: SocketAddr,
    /// The address the client connected to: the destination of the PROXY header sent to a
    /// backend (`send_proxy_protocol`).
    pub destination: SocketAddr,
    /// The load balancer that relayed the connection, when its header named the client.
    pub via: Option<SocketAddr>,
    /// When the connection was accepted: the pre-login deadline counts from here, so the
    /// time a PROXY header took is part of it.
    pub accepted: tokio::time::Instant,
}

/// One listener's count of connections before login, per address group.
#[derive(Debug)]
pub struct PreloginLimit {
    /// Changed by a reload ([`PreloginLimit::set_max_per_address`]) while the counts go on.
    max_per_address: AtomicU32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One connection's place in its address's count: given back when dropped — at login, or
/// when the connection closes before it.
#[derive(Debug)]
#[must_use = "the connection counts only while its slot lives"]
pub struct PreloginSlot {
    limit: Arc<PreloginLimit>,
    key: IpAddr,
}

impl PreloginLimit {
    /// An empty table allowing `max_per_address` connections before login per address
    /// group (at least one).
    pub fn new(max_per_address: u32) -> Arc<Self> {
        Arc::new(Self {
            max_per_address: AtomicU32::new(max_per_address.max(1)),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A connection from `address` was accepted: its slot, or `None` when the address
    /// already holds as many connections before login as it may.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Option<PreloginSlot> {
        let key = crate::throttle::group(address);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.max_per_address.load(Ordering::Relaxed) {
            return None;
        }
        *count += 1;
        Some(PreloginSlot {
            limit: Arc::clone(self),
            key,
        })
    }

    /// A reload changed `max_per_address` (at least one): the counts stay true, and an
    /// address over a lowered cap gets no new connection until it is under it again.
    pub fn set_max_per_address(&self, max_per_address: u32) {
        self.max_per_address
            .store(max_per_address.max(1), Ordering::Relaxed);
    }

    /// Connections before login that `address`'s group holds now.
    pub fn held(&self, address: IpAddr) -> u32 {
        let key = crate::throttle::group(address);
        self.lock().get(&key).copied().unwrap_or(0)
    }

    /// Address groups with a connection before login now.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    /// The counts are plain integers, consistent after any panic: a poisoned lock is used
    /// as it is rather than turning every later connection away.
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for PreloginSlot {
    fn drop(&mut self) {
        let mut counts = self.limit.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test address")
    }

    #[test]
    fn an_address_at_its_cap_is_refused_and_others_are_not() {
        let limit = PreloginLimit::new(3);
        let held: Vec<PreloginSlot> = (0..3)
            .map(|_| limit.admit(ip("192.0.2.1")).expect("under the cap"))
            .collect();
        assert!(limit.admit(ip("192.0.2.1")).is_none(), "the fourth");
        let other = limit.admit(ip("192.0.2.2"));
        assert!(other.is_some(), "another address is not affected");
        assert_eq!(limit.held(ip("192.0.2.1")), 3);
        assert_eq!(limit.held(ip("192.0.2.2")), 1);
        drop(held);
    }

    #[test]
    fn a_slot_given_back_at_login_or_close_makes_room() {
        let limit = PreloginLimit::new(2);
        let first = limit.admit(ip("198.51.100.7")).expect("first");
        let _second = limit.admit(ip("198.51.100.7")).expect("second");
        assert!(limit.admit(ip("198.51.100.7")).is_none());
        // The first connection logs in (or closes): it no longer counts.
        drop(first);
        assert_eq!(limit.held(ip("198.51.100.7")), 1);
        let third = limit.admit(ip("198.51.100.7"));
        assert!(third.is_some(), "room again after a slot was given back");
    }

    #[test]
    fn ipv6_counts_by_56_and_mapped_ipv4_as_ipv4() {
        let limit = PreloginLimit::new(2);
        let _a = limit
            .admit(ip("2001:db8:1:200::1"))
            .expect("first of the /56");
        let _b = limit
            .admit(ip("2001:db8:1:2ff:ffff::2"))
            .expect("second of the /56");
        assert!(
            limit.admit(ip("2001:db8:1:2aa::77")).is_none(),
            "a third address of the same /56"
        );
        assert!(
            limit.admit(ip("2001:db8:1:300::1")).is_some(),
            "the next /56 is someone else"
        );
        let _c = limit.admit(ip("::ffff:192.0.2.9")).expect("mapped");
        let _d = limit.admit(ip("192.0.2.9")).expect("plain");
        assert!(
            limit.admit(ip("192.0.2.9")).is_none(),
            "the same IPv4 address"
        );
    }

    #[test]
    fn the_table_holds_only_addresses_with_connections_before_login() {
        let limit = PreloginLimit::new(5);
        let slots: Vec<PreloginSlot> = (0..=255u8)
            .filter_map(|n| limit.admit(IpAddr::from([203, 0, 113, n])))
            .collect();
        assert_eq!(limit.tracked(), 256);
        drop(slots);
        assert_eq!(limit.tracked(), 0, "every entry leaves with its last slot");
        // A refused connection leaves nothing behind either.
        let limit = PreloginLimit::new(1);
        let held = limit.admit(ip("192.0.2.3")).expect("first");
        assert!(limit.admit(ip("192.0.2.3")).is_none());
        drop(held);
        assert_eq!(limit.tracked(), 0);
    }

    #[test]
    fn a_changed_cap_applies_to_the_next_connection_and_keeps_the_counts() {
        let limit = PreloginLimit::new(3);
        let held: Vec<PreloginSlot> = (0..3)
            .map(|_| limit.admit(ip("192.0.2.4")).expect("under the cap"))
            .collect();
        limit.set_max_per_address(2);
        assert!(
            limit.admit(ip("192.0.2.4")).is_none(),
            "over the lowered cap"
        );
        assert_eq!(limit.held(ip("192.0.2.4")), 3, "the open ones still count");
        limit.set_max_per_address(4);
        let fourth = limit.admit(ip("192.0.2.4"));
        assert!(fourth.is_some(), "room under the raised cap");
        drop(held);
    }

    #[test]
    fn slots_are_counted_across_threads_without_loss() {
        let limit = PreloginLimit::new(1_000);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..500 {
                        let slot = limit.admit(ip("192.0.2.50")).expect("under the cap");
                        drop(slot);
                    }
                });
            }
        });
        assert_eq!(limit.held(ip("192.0.2.50")), 0);
        assert_eq!(limit.tracked(), 0);
    }
}

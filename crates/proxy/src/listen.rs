//! Binding listening sockets so that a second instance can bind the same addresses.
//!
//! A rolling restart starts the new instance while the old one still serves, then sends the
//! old one SIGTERM: with `SO_REUSEPORT` both hold the address for a moment and the kernel
//! spreads new connections over them, so no connection attempt is refused while the new
//! instance comes up. Linux admits only sockets of the same effective user into one group, so
//! another user cannot take a share of the traffic.
//!
//! When the old instance closes its socket, connections the kernel had already queued on it
//! are reset unless `net.ipv4.tcp_migrate_req = 1` (Linux 5.14 and later), which moves them
//! to the socket that stays; [`migration_hint`] says so at start.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel queues for one socket (as `TcpListener::bind` does).
const BACKLOG: u32 = 1_024;

/// Binds `address` for listening, sharing it with other instances when `reuse_port` is set.
pub fn bind(address: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As every server does: a restart may bind while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Whether sockets bound to `a` and `b` would take connections for a common address: the
/// same port, and the same address, or a wildcard that covers the other (`0.0.0.0` covers
/// IPv4, `[::]` both families, as a dual-stack socket does). Without `SO_REUSEPORT` the
/// second bind fails; with it both succeed, and the kernel splits (or, wildcard against
/// address, diverts) connections between them. Between instances that is the point; between
/// two sockets of one configuration (a listener and `[metrics]`, say) it is a mistake that
/// `check-config` reports.
pub fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() != b.port() {
        return false;
    }
    let (x, y) = (a.ip().to_canonical(), b.ip().to_canonical());
    let covers = |wide: std::net::IpAddr, other: std::net::IpAddr| {
        wide.is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    x == y || covers(x, y) || covers(y, x)
}

/// Where the kernel says whether queued connections move to a sibling socket.
const MIGRATE_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// A warning for the log when shared sockets would drop queued connections at a restart:
/// `Some` when `reuse_port` is on and the kernel setting is readable and off.
pub fn migration_hint(reuse_port: bool) -> Option<&'static str> {
    if !reuse_port {
        return None;
    }
    let value = std::fs::read_to_string(MIGRATE_SYSCTL).ok()?;
    (value.trim() == "0").then_some(
        "net.ipv4.tcp_migrate_req is 0: at a rolling restart, connections queued on the old \
         instance's sockets are reset instead of moving to the new one (set it to 1)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_sockets_share_an_address_only_with_reuse_port() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let address = first.local_addr().unwrap();
        let second = bind(address, true).expect("a second instance binds the same address");
        assert_eq!(second.local_addr().unwrap(), address);

        let exclusive = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
        let taken = exclusive.local_addr().unwrap();
        assert!(
            bind(taken, true).is_err(),
            "an exclusive socket is not shared"
        );
        assert!(bind(taken, false).is_err());
    }

    /// What [`overlap`] answers is what the kernel does: each overlapping pair binds only
    /// with `SO_REUSEPORT`, each other pair binds without it.
    #[tokio::test]
    async fn overlap_is_what_the_kernel_refuses_without_reuse_port() {
        let port = bind("127.0.0.1:0".parse().unwrap(), false)
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), port);
        let pairs = [
            ("127.0.0.1", "127.0.0.1", true),
            ("0.0.0.0", "127.0.0.1", true),
            ("127.0.0.1", "0.0.0.0", true),
            ("::", "127.0.0.1", true),
            ("::", "::1", true),
            ("0.0.0.0", "::1", false),
            ("127.0.0.1", "127.0.0.2", false),
        ];
        for (first, second, overlapping) in pairs {
            assert_eq!(
                overlap(at(first), at(second)),
                overlapping,
                "{first} {second}"
            );
            let held = bind(at(first), false).unwrap();
            assert_eq!(
                bind(at(second), false).is_err(),
                overlapping,
                "{first} then {second}"
            );
            drop(held);
            let held = bind(at(first), true).unwrap();
            bind(at(second), true).expect("with SO_REUSEPORT, every pair binds");
            drop(held);
        }
        let other_port = SocketAddr::new("127.0.0.1".parse().unwrap(), port.wrapping_add(1));
        assert!(!overlap(at("127.0.0.1"), other_port));
    }

    #[tokio::test]
    async fn both_sockets_of_a_group_accept() {
        let first = bind("127.0.0.1:0".parse().unwrap(), true).unwrap();
        let address = first.local_addr().unwrap();
        let second = bind(address, true).unwrap();
        // Closing one leaves the other serving the address: what a rolling restart relies on.
        drop(first);
        let client = tokio::net::TcpStream::connect(address).await.unwrap();
        let (accepted, _) = second.accept().await.unwrap();
        assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
    }
}

//! Free loopback ports for listeners that the harness configures before the owner binds them.

use std::net::{SocketAddr, TcpListener};

/// A loopback port that was free a moment ago: bind port 0, read the port, let it go.
///
/// Another process could take it before the daemon binds it; the kernel hands ephemeral
/// ports out round-robin, so a collision within a test run is very unlikely.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// A loopback address nobody listens on (connections are refused).
pub fn closed_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

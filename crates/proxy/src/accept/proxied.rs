//! Connections to a `proxy_protocol` listener: a load balancer from
//! `proxy_trusted_networks` opens each one with a PROXY header (v1 or v2) naming the
//! client, and the proxy reads it before anything else — before the TLS handshake of an
//! implicit-TLS listener, before the greeting — in exact reads
//! ([`codec::proxy_protocol::decode`] says how many octets the header still has), so that
//! none of the octets behind it (a ClientHello, a client that speaks first) are taken from
//! the socket.
//!
//! Admission comes in two steps. At accept, only the socket's peer is known, and it is the
//! balancer: it must be trusted, and the connection takes one of `max_connections`, which
//! bounds the connections still owing their header. Once the header has named the client,
//! `max_prelogin_per_address` counts that client, as it counts a direct one; the header's
//! address is the session's from then on (logs, `[auth_limits]`, what the backend is told).
//!
//! A connection from elsewhere is closed at once, without a byte: a direct client is not to
//! be served (it could name any address it likes), and silence tells a scanner nothing. It
//! is logged as refusals are, at most once per interval with a count. A trusted peer that
//! sends no header, a malformed one, or not all of it within [`HEADER_TIME`] is closed
//! without a word and logged once: no greeting, since the spec forbids processing the
//! connection, and the balancer gets to notice. One that closes before sending anything is
//! usually a balancer's plain TCP health check: logged at debug only.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use codec::proxy_protocol::{self, Addresses, Decoded, ProxyHeader, ProxyHeaderError};
use session::Busy;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use super::{Refuser, Served};
use crate::admission::{Admission, Origin};
use crate::metrics::METRICS;

/// How long a load balancer has to send its whole header, counted from accept (and never
/// past the listener's `preauth_deadline`): 3 s, Dovecot's `haproxy_timeout` and the
/// spec's advice ("at least 3 seconds"). Balancers write the header the moment they have
/// connected, in one segment; anything slower is not one, and holds a connection slot.
pub const HEADER_TIME: Duration = Duration::from_secs(3);

/// Why no header was read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The peer closed first; `received` octets of a header had come.
    #[error("closed after {received} octets of a PROXY header")]
    Closed {
        /// Octets received.
        received: usize,
    },
    /// Not a header the proxy takes.
    #[error(transparent)]
    Refused(#[from] ProxyHeaderError),
    /// The socket failed.
    #[error("reading a PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// A new connection on a `proxy_protocol` listener, `origin` still the socket's own:
/// refused at once unless its peer is trusted and the listener has room, else served on
/// `tracker` from its header on.
pub(super) fn admit(
    stream: TcpStream,
    origin: Origin,
    served: Arc<Served>,
    refuser: &Arc<Refuser>,
    tracker: &TaskTracker,
) {
    let balancer = origin.client;
    let trusted = served
        .context
        .proxy_protocol
        .as_ref()
        .is_some_and(|trusted| trusted.trusts(balancer.ip()));
    if !trusted {
        refuser.untrusted(&served.context, balancer);
        drop(stream);
        return;
    }
    let Some(permit) = served.limits.connections.take() else {
        refuser.refuse(&served, stream, balancer, Busy::ListenerFull, tracker, true);
        return;
    };
    let refuser = Arc::clone(refuser);
    let refusals = tracker.clone();
    tracker.spawn(async move {
        serve(stream, origin, served, permit, &refuser, &refusals).await;
    });
}

/// Reads the header, admits the client it names, and serves the session.
async fn serve(
    mut stream: TcpStream,
    origin: Origin,
    served: Arc<Served>,
    permit: OwnedSemaphorePermit,
    refuser: &Refuser,
    tracker: &TaskTracker,
) {
    let context = Arc::clone(&served.context);
    let protocol = context.protocol.name();
    let balancer = origin.client;
    let header_end = origin.accepted + HEADER_TIME.min(context.preauth_deadline);
    let read = tokio::select! {
        read = tokio::time::timeout_at(header_end, read_header(&mut stream)) => read,
        () = context.drain_over.cancelled() => return,
    };
    let header = match read {
        Ok(Ok(header)) => header,
        Ok(Err(HeaderError::Closed { received: 0 })) => {
            debug!(protocol, peer = %balancer, "closed before sending a PROXY header");
            return;
        }
        Ok(Err(e)) => {
            info!(protocol, peer = %balancer, error = %e, "PROXY header refused; closed");
            return;
        }
        Err(_) => {
            info!(
                protocol,
                peer = %balancer,
                "no whole PROXY header within {:?}; closed",
                HEADER_TIME.min(context.preauth_deadline)
            );
            return;
        }
    };
    let origin = relayed(origin, &header);
    let Some(prelogin) = served.limits.prelogin.admit(origin.client.ip()) else {
        drop(permit);
        refuser.refuse(
            &served,
            stream,
            origin.client,
            Busy::AddressLimit,
            tracker,
            false,
        );
        return;
    };
    let admission = Admission::new(prelogin, permit, origin);
    // Login latency matters more than the few bytes Nagle would save.
    let _ = stream.set_nodelay(true);
    let _active = METRICS.session_started(context.protocol);
    crate::protocols::serve(stream, origin.client, context, admission).await;
}

/// The connection as the header describes it. A relayed one's client and destination are
/// the header's (an IPv4 client of a dual-stack balancer as plain IPv4), the socket's peer
/// the balancer it came through; LOCAL and the families the proxy does not serve keep the
/// socket's own endpoints (spec §2.2).
fn relayed(socket: Origin, header: &ProxyHeader) -> Origin {
    match header.addresses {
        Addresses::Tcp {
            source,
            destination,
        } => Origin {
            client: canonical(source),
            destination: canonical(destination),
            via: Some(socket.client),
            accepted: socket.accepted,
        },
        Addresses::Local => socket,
    }
}

/// The client a header names: `None` for LOCAL (and the families the proxy does not
/// serve), where the socket's own peer stands.
pub fn client_of(header: &ProxyHeader) -> Option<SocketAddr> {
    match header.addresses {
        Addresses::Tcp { source, .. } => Some(canonical(source)),
        Addresses::Local => None,
    }
}

fn canonical(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip().to_canonical(), address.port())
}

/// Reads a PROXY header (v1 or v2) off `stream` and not one octet more: each read asks for
/// exactly what the decoder says the header still has, so whatever follows stays in the
/// socket. At most 1 KiB ([`proxy_protocol::Limits`]) is ever buffered. Time limits are the
/// caller's.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<ProxyHeader, HeaderError> {
    let limits = proxy_protocol::Limits::default();
    let mut buffer = Vec::with_capacity(proxy_protocol::V2_FIXED_LEN);
    loop {
        let more = match proxy_protocol::decode(&buffer, &limits)? {
            Decoded::Header { header, .. } => return Ok(header),
            Decoded::Need(more) => more,
        };
        let mut filled = buffer.len();
        buffer.resize(filled + more, 0);
        while filled < buffer.len() {
            match stream.read(&mut buffer[filled..]).await? {
                0 => return Err(HeaderError::Closed { received: filled }),
                n => filled += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` octets per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl AsyncRead for Trickle<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.step.min(self.data.len()).min(buf.remaining());
            let (now, rest) = self.data.split_at(n);
            buf.put_slice(now);
            self.data = rest;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn v2_tcp4() -> Vec<u8> {
        let mut header = Vec::new();
        let addresses = Addresses::Tcp {
            source: "192.0.2.7:40000".parse().expect("address"),
            destination: "198.51.100.1:993".parse().expect("address"),
        };
        proxy_protocol::write_v2(&addresses, &mut header);
        header
    }

    #[tokio::test]
    async fn the_header_is_read_and_not_one_octet_more() {
        let after = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc";
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 993\r\n".to_vec();
        for header in [v2_tcp4(), v1] {
            for step in [1, 3, 1_000] {
                let input = [header.as_slice(), after].concat();
                let mut reader = Trickle { data: &input, step };
                let read = read_header(&mut reader).await.expect("a header");
                assert_eq!(
                    read.addresses,
                    Addresses::Tcp {
                        source: "192.0.2.7:40000".parse().expect("address"),
                        destination: "198.51.100.1:993".parse().expect("address"),
                    }
                );
                assert_eq!(reader.data, after, "step {step}: the rest stays unread");
            }
        }
    }

    #[tokio::test]
    async fn a_short_or_wrong_header_is_named() {
        let header = v2_tcp4();
        let mut short = Trickle {
            data: &header[..20],
            step: 1_000,
        };
        assert!(matches!(
            read_header(&mut short).await,
            Err(HeaderError::Closed { received: 20 })
        ));
        let mut nothing = Trickle { data: b"", step: 1 };
        assert!(matches!(
            read_header(&mut nothing).await,
            Err(HeaderError::Closed { received: 0 })
        ));
        let mut direct = Trickle {
            data: b"a CAPABILITY\r\nb NOOP\r\n",
            step: 1_000,
        };
        assert!(matches!(
            read_header(&mut direct).await,
            Err(HeaderError::Refused(ProxyHeaderError::NotProxy))
        ));
    }

    #[test]
    fn the_header_decides_the_client_and_local_keeps_the_socket() {
        let socket = Origin {
            client: "10.0.0.5:61000".parse().expect("address"),
            destination: "10.0.0.9:143".parse().expect("address"),
            via: None,
            accepted: tokio::time::Instant::now(),
        };
        let relayed_header = ProxyHeader {
            version: proxy_protocol::Version::V2,
            addresses: Addresses::Tcp {
                source: "[::ffff:192.0.2.7]:40000".parse().expect("address"),
                destination: "[2001:db8::1]:993".parse().expect("address"),
            },
        };
        let origin = relayed(socket, &relayed_header);
        assert_eq!(origin.client, "192.0.2.7:40000".parse().expect("address"));
        assert_eq!(
            origin.destination,
            "[2001:db8::1]:993".parse().expect("address")
        );
        assert_eq!(origin.via, Some(socket.client));
        let local = ProxyHeader {
            version: proxy_protocol::Version::V1,
            addresses: Addresses::Local,
        };
        assert_eq!(relayed(socket, &local), socket);
    }
}

//! The HTTP service model: one way for the process to serve HTTP — the metrics endpoint now,
//! the authorization server's endpoints next. A service is an axum [`Router`]; this module
//! owns the socket side: accepting, optional TLS, HTTP/1.1 framing by hyper (never parsed by
//! hand), time limits on a request head and on idle connections, and a graceful stop.
//!
//! Handlers therefore see only whole, well-formed requests, and a slow or silent client
//! costs a connection slot for at most [`HttpLimits::header_read_timeout`]. A service that
//! needs the client's address (rate limits) gets it through a [`PeerTag`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::accept::proxied;
use crate::listener::TrustedProxies;

/// Bounds on what one HTTP client may hold.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request head must arrive within this (slow-loris bound); also the TLS handshake's.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            // nginx's client_header_timeout is 60 s; a machine-read endpoint needs far less.
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// Binds a service's address, logging it under `service`.
pub async fn bind(address: SocketAddr, service: &'static str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(address).await?;
    info!(addr = %address, service, "HTTP listening");
    Ok(listener)
}

/// Serves `router` on `listener` (with TLS when `tls` is given) until `shutdown`; then stops
/// accepting and lets requests in progress finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tag: PeerTag,
    proxies: Option<Arc<TrustedProxies>>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut untrusted = UntrustedPeers::default();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (mut tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "HTTP accept failed");
                continue;
            }
        };
        if proxies
            .as_ref()
            .is_some_and(|trusted| !trusted.trusts(peer.ip()))
        {
            untrusted.closed(peer);
            continue;
        }
        let router = router.clone();
        let expects_header = proxies.is_some();
        let tls = tls.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let peer = if expects_header {
                let Some(client) = relayed_client(&mut tcp, peer).await else {
                    return;
                };
                client
            } else {
                peer
            };
            let service = TowerToHyperService::new(with_peer(router, peer, tag));
            let result = match tls {
                Some(acceptor) => {
                    let handshake = acceptor.accept(tcp);
                    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => {
                            serve_connection(TokioIo::new(stream), service, limits, shutdown).await
                        }
                        Ok(Err(e)) => {
                            debug!(%peer, error = %e, "HTTP TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => serve_connection(TokioIo::new(tcp), service, limits, shutdown).await,
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    let address = listener.local_addr().ok();
    drop(listener);
    if let Some(address) = address {
        info!(addr = %address, "HTTP service stopped: its socket is closed");
    }
    connections.close();
    connections.wait().await;
}

/// The client a trusted load balancer's PROXY header names (its own address for LOCAL);
/// `None` when no whole, valid header came within [`proxied::HEADER_TIME`]: the connection
/// is then closed without a word.
async fn relayed_client(
    tcp: &mut tokio::net::TcpStream,
    balancer: SocketAddr,
) -> Option<SocketAddr> {
    match tokio::time::timeout(proxied::HEADER_TIME, proxied::read_header(tcp)).await {
        Ok(Ok(header)) => Some(proxied::client_of(&header).unwrap_or(balancer)),
        Ok(Err(e)) => {
            debug!(peer = %balancer, error = %e, "HTTP: PROXY header refused; closed");
            None
        }
        Err(_) => {
            debug!(peer = %balancer, "HTTP: no whole PROXY header in time; closed");
            None
        }
    }
}

/// Connections from outside `proxy_trusted_networks`, closed at accept without a byte and
/// logged at most once per [`UntrustedPeers::INTERVAL`] with a count, so that a scan cannot
/// flood the log.
#[derive(Debug, Default)]
struct UntrustedPeers {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl UntrustedPeers {
    const INTERVAL: Duration = Duration::from_secs(10);

    fn closed(&mut self, peer: SocketAddr) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|last| now.duration_since(last) < Self::INTERVAL)
        {
            return;
        }
        warn!(
            %peer,
            closed = self.unlogged,
            "HTTP connection from outside proxy_trusted_networks closed without a byte"
        );
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

/// Puts the client's address into a request's extensions, as the service's own type.
pub type PeerTag = fn(&mut axum::http::Extensions, SocketAddr);

/// For services that do not care who the client is.
pub fn no_peer_tag(_: &mut axum::http::Extensions, _: SocketAddr) {}

type Incoming = hyper::Request<hyper::body::Incoming>;

/// A connection's service: the router, with the peer's address tagged on every request.
fn with_peer(
    router: Router,
    peer: SocketAddr,
    tag: PeerTag,
) -> tower::util::MapRequest<Router, impl FnMut(Incoming) -> Incoming + Clone> {
    tower::util::MapRequest::new(router, move |mut request: Incoming| {
        tag(request.extensions_mut(), peer);
        request
    })
}

async fn serve_connection<I, S>(
    io: I,
    service: TowerToHyperService<S>,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> Result<(), hyper::Error>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<
            Incoming,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start(
        limits: HttpLimits,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), "test")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let router = Router::new().route("/hello", get(|| async { "hello\n" }));
        let served = tokio::spawn(serve(
            listener,
            None,
            router,
            limits,
            shutdown.clone(),
            no_peer_tag,
            None,
        ));
        (address, shutdown, served)
    }

    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        stream.write_all(request).await.expect("send");
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.expect("read");
        String::from_utf8_lossy(&response).into_owned()
    }

    #[tokio::test]
    async fn routes_answer_and_unknown_paths_get_404() {
        let (address, shutdown, served) = start(HttpLimits::default()).await;
        let ok = exchange(
            address,
            b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nhello\n"), "{ok}");
        let missing = exchange(
            address,
            b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
        let garbage = exchange(address, b"\x16\x03\x01 not http\r\n\r\n").await;
        assert!(
            garbage.is_empty() || garbage.starts_with("HTTP/1.1 400 "),
            "{garbage}"
        );
        shutdown.cancel();
        served.await.expect("the service stops on shutdown");
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_head_is_dropped() {
        let limits = HttpLimits {
            header_read_timeout: Duration::from_millis(200),
            ..HttpLimits::default()
        };
        let (address, shutdown, served) = start(limits).await;
        // Half a request head, then silence: the connection is closed, not held.
        let reply = exchange(address, b"GET /hello HTTP/1.1\r\nHost:").await;
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
            "{reply}"
        );
        shutdown.cancel();
        served.await.expect("the service stops on shutdown");
    }
}

//! One listener's accept loop: which connections get a session, how the others are turned
//! away, and how the loop survives running out of descriptors.
//!
//! A connection gets a session when its address holds fewer than `max_prelogin_per_address`
//! connections before login ([`crate::admission`]) and the listener has fewer than
//! `max_connections`. Otherwise it is still accepted, told the protocol's "try again later"
//! ([`crate::protocols::refusal`]: `* BYE [UNAVAILABLE]`, `421 4.7.0`, `BYE (TRYLATER)`,
//! `-ERR [SYS/TEMP]`) and closed. Leaving it in the kernel's backlog instead, as a loop that
//! waits for a free slot does, gives the client silence until it times out, or a session
//! minutes later when its user has given up; a refusal is shown and retried.
//!
//! Refusals come exactly when someone is flooding, so they are bounded too: at most
//! [`REFUSALS_IN_FLIGHT`] per listener are written at once, each over within
//! [`REFUSAL_TIME`]; beyond that a plaintext refusal is one non-blocking write into the new
//! socket's empty send buffer and the connection is closed at once. A flood therefore costs
//! descriptors only for the instant of accept and close, and memory for no more than the
//! refusals in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session::Busy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admission::{Admission, PreloginLimit};
use crate::config::ListenerTls;
use crate::listener::ListenerContext;
use crate::metrics::METRICS;

/// Refusals written at once per listener; each holds a descriptor (and on implicit-TLS
/// listeners a TLS state) for up to [`REFUSAL_TIME`].
pub const REFUSALS_IN_FLIGHT: usize = 32;

/// The longest a refusal may take: handshake (implicit TLS), the line, and waiting for the
/// client to close. A client that reads its refusal closes at once.
pub const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// At most one log line per listener and reason this often, with the count since the last:
/// a flood of refusals must not become a flood of log lines.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A bound listener with its limits, ready for [`accept_loop`].
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub listener: TcpListener,
    /// What its connections share.
    pub context: Arc<ListenerContext>,
    /// `max_connections`.
    pub max_connections: usize,
    /// `max_prelogin_per_address`.
    pub max_prelogin_per_address: u32,
}

/// Accepts until `shutdown`; each admitted connection is served on `tracker`.
pub async fn accept_loop(listening: Listening, tracker: TaskTracker, shutdown: CancellationToken) {
    let Listening {
        listener,
        context,
        max_connections,
        max_prelogin_per_address,
    } = listening;
    let slots = Arc::new(Semaphore::new(max_connections));
    let prelogin = PreloginLimit::new(max_prelogin_per_address);
    let mut refuser = Refuser::new(&context);
    let mut backoff = AcceptBackoff::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff.recovered(&context);
                pair
            }
            Err(e) if is_exhaustion(&e) => {
                // Out of descriptors (or memory): retrying at once would spin on the same
                // error, starve the other listeners and flood the log. Pause, log once per
                // burst, and let relaying sessions free what they hold.
                let pause = backoff.failed(&context, &e);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
                continue;
            }
            Err(e) => {
                // A client that gave up while queued (ECONNABORTED and the like).
                debug!(error = %e, "accept failed");
                continue;
            }
        };
        // The address's own cap first: a source over it is told so, whether or not the
        // listener also happens to be full.
        let Some(slot) = prelogin.admit(peer.ip()) else {
            refuser.refuse(stream, peer, Busy::AddressLimit, &tracker);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(slot);
            refuser.refuse(stream, peer, Busy::ListenerFull, &tracker);
            continue;
        };
        let admission = Admission::new(slot, permit);
        let context = context.clone();
        tracker.spawn(async move {
            // Login latency matters more than the few bytes Nagle would save.
            let _ = stream.set_nodelay(true);
            let _active = METRICS.session_started(context.protocol);
            crate::protocols::serve(stream, peer, context, admission).await;
        });
    }
}

/// Turns connections away in the listener's protocol, within the bounds above.
///
/// On an implicit-TLS listener the refusal comes after a TLS handshake. Written in
/// plaintext before it, the line would reach a client that expects a ServerHello and
/// reports a TLS error ("wrong version number"), not the reason; closed without a word, the
/// user sees "connection failed" and the client may retry at once. The handshake costs
/// what an accepted connection's would, and it happens only inside the bounded refusals in
/// flight: beyond them an implicit-TLS connection is closed at once, so a flood buys no
/// handshakes.
struct Refuser {
    context: Arc<ListenerContext>,
    listener_full: Arc<[u8]>,
    address_limit: Arc<[u8]>,
    /// Implicit-TLS listeners only.
    handshake: Option<TlsAcceptor>,
    in_flight: Arc<Semaphore>,
    logs: [RefusalLog; 2],
}

impl Refuser {
    fn new(context: &Arc<ListenerContext>) -> Self {
        let handshake = match context.tls_mode {
            ListenerTls::Implicit => context.acceptor.clone(),
            ListenerTls::Starttls | ListenerTls::None => None,
        };
        Self {
            context: context.clone(),
            listener_full: crate::protocols::refusal(context, Busy::ListenerFull).into(),
            address_limit: crate::protocols::refusal(context, Busy::AddressLimit).into(),
            handshake,
            in_flight: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            logs: [RefusalLog::default(), RefusalLog::default()],
        }
    }

    fn refuse(&mut self, stream: TcpStream, peer: SocketAddr, why: Busy, tracker: &TaskTracker) {
        METRICS.connection_refused(self.context.protocol, why);
        self.log(peer, why);
        let line = match why {
            Busy::ListenerFull => self.listener_full.clone(),
            Busy::AddressLimit => self.address_limit.clone(),
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            if self.handshake.is_none() {
                // A new socket's send buffer is empty: the line fits without waiting.
                let _ = stream.try_write(&line);
            }
            return;
        };
        let handshake = self.handshake.clone();
        tracker.spawn(async move {
            let refusal = refuse_politely(stream, &line, handshake);
            if let Err(e) = tokio::time::timeout(REFUSAL_TIME, refusal).await {
                debug!(peer = %peer, error = %e, "refusal not finished in time");
            }
            drop(permit);
        });
    }

    fn log(&mut self, peer: SocketAddr, why: Busy) {
        let (log, reason) = match why {
            Busy::ListenerFull => (&mut self.logs[0], "max_connections"),
            Busy::AddressLimit => (&mut self.logs[1], "per_address"),
        };
        let Some(refused) = log.note(Instant::now()) else {
            return;
        };
        let protocol = self.context.protocol.name();
        match why {
            Busy::ListenerFull => warn!(
                protocol,
                reason,
                peer = %peer,
                refused,
                "connections refused: the listener is at max_connections"
            ),
            Busy::AddressLimit => warn!(
                protocol,
                reason,
                peer = %peer,
                refused,
                "connections refused: an address is at max_prelogin_per_address"
            ),
        }
    }
}

/// The refusal, then close. The client's side is read to its end before the socket goes:
/// closing with unread client bytes sends a reset, which can destroy the refusal before the
/// client has read it.
async fn refuse_politely(
    stream: TcpStream,
    line: &[u8],
    handshake: Option<TlsAcceptor>,
) -> std::io::Result<()> {
    match handshake {
        Some(acceptor) => say_and_close(acceptor.accept(stream).await?, line).await,
        None => say_and_close(stream, line).await,
    }
}

async fn say_and_close<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    line: &[u8],
) -> std::io::Result<()> {
    stream.write_all(line).await?;
    stream.shutdown().await?;
    let mut sink = [0u8; 512];
    while stream.read(&mut sink).await? != 0 {}
    Ok(())
}

/// When to log a refusal of one reason: the first, then at most one per [`LOG_EVERY`].
#[derive(Debug, Default)]
struct RefusalLog {
    last: Option<Instant>,
    since_last: u64,
}

impl RefusalLog {
    /// Counts a refusal; `Some(refusals since the last line, this one included)` when it
    /// is to be logged.
    fn note(&mut self, now: Instant) -> Option<u64> {
        self.since_last += 1;
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < LOG_EVERY)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since_last))
    }
}

/// Accept errors that mean the process is out of a resource, not that one client failed.
fn is_exhaustion(error: &std::io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM.
    matches!(error.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// How an accept loop backs off while the process is out of descriptors: pauses that double
/// from 10 ms to 1 s, one warning when a burst starts and one line with its count when it
/// ends.
#[derive(Debug)]
struct AcceptBackoff {
    failures: u64,
    pause: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const LONGEST: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Self {
            failures: 0,
            pause: Self::FIRST,
        }
    }

    fn failed(&mut self, context: &ListenerContext, error: &std::io::Error) -> Duration {
        if self.failures == 0 {
            warn!(
                protocol = context.protocol.name(),
                error = %error,
                "cannot accept connections: out of descriptors; pausing this listener"
            );
        }
        self.failures += 1;
        let pause = self.pause;
        self.pause = (self.pause * 2).min(Self::LONGEST);
        pause
    }

    fn recovered(&mut self, context: &ListenerContext) {
        if self.failures > 0 {
            info!(
                protocol = context.protocol.name(),
                failed_accepts = self.failures,
                "accepting connections again"
            );
            *self = Self::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let mut log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.note(start), Some(1), "the first is logged");
        for n in 1..=5 {
            assert_eq!(log.note(start + Duration::from_secs(n)), None);
        }
        assert_eq!(
            log.note(start + LOG_EVERY),
            Some(6),
            "the next line counts the five unlogged and itself"
        );
        assert_eq!(log.note(start + LOG_EVERY), None);
    }

    #[tokio::test]
    async fn a_refusal_is_written_whole_and_the_connection_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let client = tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.expect("connect");
            // A client that talks before it is greeted: its bytes stay unread by the
            // server, and the refusal must reach it anyway.
            stream.write_all(b"a CAPABILITY\r\n").await.expect("write");
            let mut heard = Vec::new();
            stream
                .read_to_end(&mut heard)
                .await
                .expect("read to the close");
            heard
        });
        let (stream, _) = listener.accept().await.expect("accept");
        let line = b"* BYE [UNAVAILABLE] Too many connections, try again later.\r\n";
        tokio::time::timeout(REFUSAL_TIME, refuse_politely(stream, line, None))
            .await
            .expect("within the refusal time")
            .expect("no I/O error");
        assert_eq!(client.await.expect("client task"), line);
    }
}

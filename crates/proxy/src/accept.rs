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
//!
//! What a new connection is served with ([`Served`]: context, limits, refusal lines) sits in
//! a [`ListenerSlot`] that a reload ([`crate::reload`]) replaces while the socket stays; the
//! loop reads it once per accepted connection, and a connection keeps what it was accepted
//! with until it ends.
//!
//! A listener with `proxy_protocol` admits in two steps ([`proxied`]): at accept, only
//! load balancers from `proxy_trusted_networks` (anyone else is closed before a byte is
//! sent) and within `max_connections`; then, once the PROXY header has named the client,
//! `max_prelogin_per_address` for that client.

pub mod proxied;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use session::Busy;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::admission::{Admission, Origin, PreloginLimit};
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

/// A bound listener, ready for [`accept_loop`].
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub listener: TcpListener,
    /// What new connections are served with; a reload replaces its content.
    pub slot: Arc<ListenerSlot>,
    /// Cancelled when the process shuts down or a reload removes the listener: the loop
    /// returns and closes the socket; its sessions go on.
    pub stop: CancellationToken,
}

/// Accepts until `stop`; each admitted connection is served on `tracker`.
pub async fn accept_loop(listening: Listening, tracker: TaskTracker) {
    let Listening {
        listener,
        slot,
        stop,
    } = listening;
    let refuser = Arc::new(Refuser::new());
    let mut backoff = AcceptBackoff::new();
    // What a connection's destination is when its socket cannot say.
    let bound = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => {
                let address = listener.local_addr().ok();
                // Closed before it is logged: once the line is there, connects are refused.
                drop(listener);
                if let Some(address) = address {
                    info!(addr = %address, "listener closed: no longer accepting");
                }
                return;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff.recovered(&slot.current().context);
                pair
            }
            Err(e) if is_exhaustion(&e) => {
                // Out of descriptors (or memory): retrying at once would spin on the same
                // error, starve the other listeners and flood the log. Pause, log once per
                // burst, and let relaying sessions free what they hold.
                let pause = backoff.failed(&slot.current().context, &e);
                tokio::select! {
                    _ = stop.cancelled() => return,
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
        let served = slot.current();
        let origin = Origin {
            client: peer,
            destination: stream.local_addr().unwrap_or(bound),
            via: None,
            accepted: tokio::time::Instant::now(),
        };
        if served.context.proxy_protocol.is_some() {
            proxied::admit(stream, origin, served, &refuser, &tracker);
            continue;
        }
        // The address's own cap first: a source over it is told so, whether or not the
        // listener also happens to be full.
        let Some(prelogin) = served.limits.prelogin.admit(peer.ip()) else {
            refuser.refuse(&served, stream, peer, Busy::AddressLimit, &tracker, false);
            continue;
        };
        let Some(permit) = served.limits.connections.take() else {
            drop(prelogin);
            refuser.refuse(&served, stream, peer, Busy::ListenerFull, &tracker, false);
            continue;
        };
        let admission = Admission::new(prelogin, permit, origin);
        let context = served.context.clone();
        tracker.spawn(async move {
            // Login latency matters more than the few bytes Nagle would save.
            let _ = stream.set_nodelay(true);
            let _active = METRICS.session_started(context.protocol);
            crate::protocols::serve(stream, peer, context, admission).await;
        });
    }
}

/// What one listener serves new connections with: built by the server at start and at each
/// reload, read by the accept loop once per connection.
pub struct Served {
    /// What the connection's session shares with the others.
    pub context: Arc<ListenerContext>,
    /// `max_connections` and `max_prelogin_per_address`, with the connections they count.
    pub limits: Arc<ListenerLimits>,
    listener_full: Arc<[u8]>,
    address_limit: Arc<[u8]>,
    /// Implicit-TLS listeners only: refusals come after a handshake.
    handshake: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("context", &self.context)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Served {
    /// A listener's context with its limits, and the refusals written once for all.
    pub fn new(context: Arc<ListenerContext>, limits: Arc<ListenerLimits>) -> Self {
        let handshake = match context.tls_mode {
            ListenerTls::Implicit => context.acceptor.clone(),
            ListenerTls::Starttls | ListenerTls::None => None,
        };
        Self {
            listener_full: crate::protocols::refusal(&context, Busy::ListenerFull).into(),
            address_limit: crate::protocols::refusal(&context, Busy::AddressLimit).into(),
            handshake,
            context,
            limits,
        }
    }
}

/// The [`Served`] in force on one listener. Read once per accepted connection, written
/// once per reload: a lock held only to clone an `Arc`.
#[derive(Debug)]
pub struct ListenerSlot {
    current: RwLock<Arc<Served>>,
}

impl ListenerSlot {
    /// A slot serving `served`.
    pub fn new(served: Served) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(served)),
        })
    }

    /// What the next connection gets.
    pub fn current(&self) -> Arc<Served> {
        // Replacing an `Arc` cannot leave it half-written: a poisoned lock is still sound.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `served` from the next connection on; connections accepted before keep what
    /// they were accepted with.
    pub fn replace(&self, served: Served) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(served);
    }
}

/// A listener's `max_connections` and `max_prelogin_per_address` with the connections they
/// count. A reload that keeps the listener (same address, same protocol) keeps these and
/// only changes the caps, so that the counts of open connections stay true: a lowered cap
/// admits no one until enough connections have ended, and a raised one admits at once.
#[derive(Debug)]
pub struct ListenerLimits {
    connections: ConnectionSlots,
    prelogin: Arc<PreloginLimit>,
}

impl ListenerLimits {
    /// Fresh counts with these caps.
    pub fn new(max_connections: usize, max_prelogin_per_address: u32) -> Arc<Self> {
        Arc::new(Self {
            connections: ConnectionSlots::new(max_connections),
            prelogin: PreloginLimit::new(max_prelogin_per_address),
        })
    }

    /// New caps over the same counts.
    pub fn resize(&self, max_connections: usize, max_prelogin_per_address: u32) {
        self.connections.resize(max_connections);
        self.prelogin.set_max_per_address(max_prelogin_per_address);
    }
}

/// `max_connections` as permits of a semaphore, each held by an open connection, whose
/// number a reload may change while connections hold them. Lowered below the connections
/// open, the surplus is a debt paid by forgetting permits as they come back.
#[derive(Debug)]
struct ConnectionSlots {
    permits: Arc<Semaphore>,
    sizes: Mutex<SlotSizes>,
}

#[derive(Debug)]
struct SlotSizes {
    /// The cap in force.
    limit: usize,
    /// Permits still to forget when they come back.
    owed: usize,
}

impl ConnectionSlots {
    fn new(limit: usize) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Self {
            permits: Arc::new(Semaphore::new(limit)),
            sizes: Mutex::new(SlotSizes { limit, owed: 0 }),
        }
    }

    /// A place for one more connection, or `None` when the listener is full.
    fn take(&self) -> Option<OwnedSemaphorePermit> {
        let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        while sizes.owed > 0 {
            let Ok(returned) = self.permits.try_acquire() else {
                return None;
            };
            returned.forget();
            sizes.owed -= 1;
        }
        self.permits.clone().try_acquire_owned().ok()
    }

    fn resize(&self, limit: usize) {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        let mut sizes = self.sizes.lock().unwrap_or_else(PoisonError::into_inner);
        if limit >= sizes.limit {
            let raise = limit - sizes.limit;
            let forgiven = raise.min(sizes.owed);
            sizes.owed -= forgiven;
            self.permits.add_permits(raise - forgiven);
        } else {
            let cut = sizes.limit - limit;
            let forgotten = self.permits.forget_permits(cut);
            sizes.owed += cut - forgotten;
        }
        sizes.limit = limit;
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
///
/// On a `proxy_protocol` listener the refusal that comes before the header was read
/// (`max_connections`) reads it first, within the same time: a TLS handshake fed the header
/// would fail, and the load balancer relays the line to the client.
struct Refuser {
    in_flight: Arc<Semaphore>,
    /// `max_connections`, `max_prelogin_per_address`, untrusted PROXY senders.
    logs: Mutex<[RefusalLog; 3]>,
}

impl Refuser {
    fn new() -> Self {
        Self {
            in_flight: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
            logs: Mutex::new(Default::default()),
        }
    }

    fn refuse(
        &self,
        served: &Served,
        stream: TcpStream,
        peer: SocketAddr,
        why: Busy,
        tracker: &TaskTracker,
        unread_header: bool,
    ) {
        METRICS.connection_refused(served.context.protocol, why);
        self.log(&served.context, peer, why);
        let line = match why {
            Busy::ListenerFull => served.listener_full.clone(),
            Busy::AddressLimit => served.address_limit.clone(),
        };
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            if served.handshake.is_none() {
                // A new socket's send buffer is empty: the line fits without waiting.
                let _ = stream.try_write(&line);
            }
            return;
        };
        let handshake = served.handshake.clone();
        tracker.spawn(async move {
            let refusal = refuse_politely(stream, &line, handshake, unread_header);
            if let Err(e) = tokio::time::timeout(REFUSAL_TIME, refusal).await {
                debug!(peer = %peer, error = %e, "refusal not finished in time");
            }
            drop(permit);
        });
    }

    fn log(&self, context: &ListenerContext, peer: SocketAddr, why: Busy) {
        let (index, reason) = match why {
            Busy::ListenerFull => (0, "max_connections"),
            Busy::AddressLimit => (1, "per_address"),
        };
        let Some(refused) = self.note(index) else {
            return;
        };
        let protocol = context.protocol.name();
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

impl Refuser {
    /// A connection to a `proxy_protocol` listener from outside `proxy_trusted_networks`:
    /// closed by the caller without a byte, logged here as refusals are.
    fn untrusted(&self, context: &ListenerContext, peer: SocketAddr) {
        let Some(refused) = self.note(2) else {
            return;
        };
        warn!(
            protocol = context.protocol.name(),
            reason = "untrusted_proxy",
            peer = %peer,
            refused,
            "connections closed: not from proxy_trusted_networks, and this listener takes \
             only load balancers sending a PROXY header"
        );
    }

    /// Counts one of `logs[index]`'s kind; `Some(count)` when a line is due.
    fn note(&self, index: usize) -> Option<u64> {
        // Counters only: sound after any panic.
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.get_mut(index)?.note(Instant::now())
    }
}

/// The refusal, then close. The client's side is read to its end before the socket goes:
/// closing with unread client bytes sends a reset, which can destroy the refusal before the
/// client has read it. With `unread_header`, the load balancer's PROXY header is read (and
/// dropped) first.
async fn refuse_politely(
    mut stream: TcpStream,
    line: &[u8],
    handshake: Option<TlsAcceptor>,
    unread_header: bool,
) -> std::io::Result<()> {
    if unread_header {
        proxied::read_header(&mut stream)
            .await
            .map_err(std::io::Error::other)?;
    }
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

    #[test]
    fn a_lowered_max_connections_waits_for_enough_connections_to_end() {
        let slots = ConnectionSlots::new(3);
        let mut open: Vec<_> = (0..3).map(|_| slots.take().expect("under 3")).collect();
        assert!(slots.take().is_none(), "full at 3");
        slots.resize(1);
        open.pop();
        assert!(slots.take().is_none(), "two still open, the cap is one");
        open.pop();
        assert!(slots.take().is_none(), "one still open, the cap is one");
        open.pop();
        let only = slots.take().expect("none open: room for one");
        assert!(slots.take().is_none(), "and only one");
        drop(only);
        assert!(slots.take().is_some());
    }

    #[test]
    fn a_raised_max_connections_admits_at_once_and_forgives_a_debt() {
        let slots = ConnectionSlots::new(2);
        let open: Vec<_> = (0..2).map(|_| slots.take().expect("under 2")).collect();
        slots.resize(4);
        let more: Vec<_> = (0..2).map(|_| slots.take().expect("raised to 4")).collect();
        assert!(slots.take().is_none(), "full at 4");
        // Lowered below what is open, then raised again before anything ended: the cap
        // in force is the last one, with the open connections counted once.
        slots.resize(1);
        slots.resize(5);
        let fifth = slots.take().expect("four open, cap five");
        assert!(slots.take().is_none(), "full at 5");
        drop((open, more, fifth));
        let all: Vec<_> = (0..5)
            .map(|_| slots.take().expect("empty, cap 5"))
            .collect();
        assert!(slots.take().is_none());
        drop(all);
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
        tokio::time::timeout(REFUSAL_TIME, refuse_politely(stream, line, None, false))
            .await
            .expect("within the refusal time")
            .expect("no I/O error");
        assert_eq!(client.await.expect("client task"), line);
    }
}

//! The byte pipe after login: client and backend bytes copied both ways, untouched, until
//! both sides have finished.
//!
//! Unlike `tokio::io::copy_bidirectional`, a direction holds its buffer only while bytes are
//! in flight: when the source has nothing to read the buffer is freed. An idle IMAP session
//! (IDLE, or a client that simply keeps the connection open) then costs the proxy no buffer
//! at all, which is what lets one machine hold many thousands of them. The price is one
//! allocation per burst of traffic, small next to the system calls that carry it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// First buffer of a burst: one maximal TLS record, enough for any command and reply.
pub const CHUNK: usize = 16 * 1024;

/// Largest buffer a bulk transfer (a big FETCH or APPEND, a message upload) grows to. Fewer,
/// larger reads and writes cut the proxy's CPU per byte by about a third (measured with the
/// bench); the buffer is still freed as soon as the source has nothing more to read.
pub const MAX_CHUNK: usize = 256 * 1024;

/// What the relay carried, and why it stopped if not by both sides closing.
#[derive(Debug)]
pub struct RelayOutcome {
    /// Client to backend.
    pub client_to_backend: u64,
    /// Backend to client.
    pub backend_to_client: u64,
    /// The I/O error that ended the relay, if any (a reset is the usual one).
    pub error: Option<io::Error>,
    /// Stopped from outside ([`relay_until`]: the drain is over), not by either side.
    pub stopped: bool,
}

/// Copies until the backend has closed and all it sent was delivered, or either side failed.
pub async fn relay<C, B>(client: &mut C, backend: &mut B) -> RelayOutcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    relay_until(client, backend, std::future::pending()).await
}

/// Like [`relay`], until `stop` completes: then the copy ends where it is, with the counts
/// so far. Nothing is written to either side — the relay never injects bytes into the
/// stream — and bytes in flight are dropped with the connections.
pub async fn relay_until<C, B>(
    client: &mut C,
    backend: &mut B,
    stop: impl Future<Output = ()>,
) -> RelayOutcome
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut pipe = Relay {
        client,
        backend,
        up: Direction::default(),
        down: Direction::default(),
    };
    let (error, stopped) = tokio::select! {
        biased;
        copied = &mut pipe => (copied.err(), false),
        () = stop => (None, true),
    };
    RelayOutcome {
        client_to_backend: pipe.up.total,
        backend_to_client: pipe.down.total,
        error,
        stopped,
    }
}

struct Relay<'a, C, B> {
    client: &'a mut C,
    backend: &'a mut B,
    up: Direction,
    down: Direction,
}

impl<C, B> Future for &mut Relay<'_, C, B>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut **self.get_mut();
        // A finished upload (the client half-closed) changes nothing: the backend's answer
        // is still delivered.
        let _upload = this
            .up
            .poll_copy(cx, &mut *this.client, &mut *this.backend)?;
        // In mail protocols the server ends the session (after LOGOUT/QUIT, or on its own
        // timeout). Once everything it sent has reached the client, the session is over even
        // if the client keeps its side open.
        this.down
            .poll_copy(cx, &mut *this.backend, &mut *this.client)
    }
}

/// One direction's state. `buffer` is `None` whenever nothing is in flight.
#[derive(Default)]
struct Direction {
    buffer: Option<Box<[u8]>>,
    start: usize,
    end: usize,
    total: u64,
    read_done: bool,
    needs_flush: bool,
    finished: bool,
    /// Size of the next buffer; doubles while reads fill it (0 = [`CHUNK`]).
    chunk: usize,
    /// The last read filled the buffer.
    grow: bool,
}

fn buffer_len(buffer: &Option<Box<[u8]>>) -> usize {
    buffer.as_deref().map_or(0, <[u8]>::len)
}

impl Direction {
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.finished {
            return Poll::Ready(Ok(()));
        }
        loop {
            if self.start == self.end && !self.read_done {
                let size = self.chunk.max(CHUNK);
                let buffer = self.buffer.get_or_insert_with(|| pool::take(size));
                let mut read = ReadBuf::new(buffer);
                match Pin::new(&mut *reader).poll_read(cx, &mut read) {
                    Poll::Pending => {
                        // Nothing to read: give the buffer back before sleeping.
                        pool::give_back(self.buffer.take());
                        if self.needs_flush {
                            ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                            self.needs_flush = false;
                        }
                        return Poll::Pending;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => {
                        let n = read.filled().len();
                        if n == 0 {
                            self.read_done = true;
                            pool::give_back(self.buffer.take());
                        } else {
                            self.start = 0;
                            self.end = n;
                            self.total += n as u64;
                            // A full buffer means more is waiting: read bigger next time.
                            self.grow = n == buffer_len(&self.buffer) && self.chunk < MAX_CHUNK;
                        }
                    }
                }
            }
            while self.start < self.end {
                let Some(buffer) = self.buffer.as_deref() else {
                    break;
                };
                let n =
                    ready!(Pin::new(&mut *writer).poll_write(cx, &buffer[self.start..self.end]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.start += n;
                self.needs_flush = true;
            }
            if self.grow {
                self.grow = false;
                self.chunk = (self.chunk.max(CHUNK) * 2).min(MAX_CHUNK);
                pool::give_back(self.buffer.take());
            }
            if self.read_done {
                ready!(Pin::new(&mut *writer).poll_flush(cx))?;
                ready!(Pin::new(&mut *writer).poll_shutdown(cx))?;
                self.finished = true;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

/// First-size buffers between bursts. Each command and reply of an interactive session is a
/// burst; allocating and zeroing 16 KiB for each cost about 5 % of the proxy's CPU per round
/// trip (measured with perf). A worker thread keeps a few idle ones instead: bounded per
/// thread, whatever the number of sessions, so an idle session still holds none.
mod pool {
    use std::cell::RefCell;

    use super::CHUNK;

    /// Idle buffers kept per worker thread.
    const KEPT: usize = 16;

    thread_local! {
        static IDLE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `size` bytes. Its old contents never leak: the relay only ever writes out
    /// what the current read put in it.
    pub(super) fn take(size: usize) -> Box<[u8]> {
        if size == CHUNK {
            if let Some(buffer) = IDLE.with(|idle| idle.borrow_mut().pop()) {
                return buffer;
            }
        }
        vec![0; size].into_boxed_slice()
    }

    /// Returns a buffer; grown ones (bulk transfers) and those beyond [`KEPT`] are freed.
    pub(super) fn give_back(buffer: Option<Box<[u8]>>) {
        let Some(buffer) = buffer.filter(|b| b.len() == CHUNK) else {
            return;
        };
        IDLE.with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.len() < KEPT {
                idle.push(buffer);
            }
        });
    }

    #[cfg(test)]
    pub(super) fn kept() -> usize {
        IDLE.with(|idle| idle.borrow().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_byte_for_byte_and_counts() {
        let (client_far, mut client_near) = duplex(1024);
        let (mut backend_near, backend_far) = duplex(1024);
        let task = tokio::spawn(async move { relay(&mut client_near, &mut backend_near).await });

        let up: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let down: Vec<u8> = (0..70_000u32).map(|i| (i * 13 % 256) as u8).collect();
        let (up2, down2) = (up.clone(), down.clone());
        // Each far end writes and reads at once: the pipes are small, so doing one after the
        // other would deadlock the test, not the relay.
        let writer_client = tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(client_far);
            let sending = async {
                write.write_all(&up2).await.expect("write up");
                write.shutdown().await.expect("shutdown");
            };
            let mut got = Vec::new();
            let receiving = read.read_to_end(&mut got);
            let (_, received) = tokio::join!(sending, receiving);
            received.expect("read down");
            got
        });
        // The backend answers after reading the whole upload, then closes, as a mail
        // server does after QUIT.
        let up_len = up.len();
        let writer_backend = tokio::spawn(async move {
            let (mut read, mut write) = tokio::io::split(backend_far);
            let mut got = vec![0; up_len];
            read.read_exact(&mut got).await.expect("read up");
            write.write_all(&down2).await.expect("write down");
            write.shutdown().await.expect("shutdown");
            got
        });
        let got_down = writer_client.await.expect("join");
        let got_up = writer_backend.await.expect("join");
        let outcome = task.await.expect("join");
        assert_eq!(got_up, up);
        assert_eq!(got_down, down);
        assert_eq!(outcome.client_to_backend, up.len() as u64);
        assert_eq!(outcome.backend_to_client, down.len() as u64);
        assert!(outcome.error.is_none());
    }

    #[tokio::test]
    async fn backend_close_ends_the_relay_while_the_client_stays_open() {
        let (mut client_far, mut client_near) = duplex(1024);
        let (mut backend_near, backend_far) = duplex(1024);
        let task = tokio::spawn(async move { relay(&mut client_near, &mut backend_near).await });
        let (mut read, mut write) = tokio::io::split(backend_far);
        write.write_all(b"* BYE\r\n").await.expect("write");
        write.shutdown().await.expect("shutdown");
        let outcome = task.await.expect("join");
        assert_eq!(outcome.backend_to_client, 7);
        let mut got = Vec::new();
        client_far.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"* BYE\r\n");
        let mut rest = Vec::new();
        read.read_to_end(&mut rest)
            .await
            .expect("backend sees the relay end");
    }

    #[tokio::test]
    async fn a_stopped_relay_keeps_its_counts_and_writes_nothing_more() {
        let (mut client_far, mut client_near) = duplex(1024);
        let (mut backend_near, mut backend_far) = duplex(1024);
        let stop = tokio_util::sync::CancellationToken::new();
        let stopper = stop.clone();
        let task = tokio::spawn(async move {
            relay_until(
                &mut client_near,
                &mut backend_near,
                stopper.cancelled_owned(),
            )
            .await
        });
        client_far.write_all(b"a NOOP\r\n").await.expect("write");
        let mut command = [0u8; 8];
        backend_far.read_exact(&mut command).await.expect("relayed");
        backend_far.write_all(b"a OK\r\n").await.expect("write");
        let mut reply = [0u8; 6];
        client_far.read_exact(&mut reply).await.expect("relayed");
        stop.cancel();
        let outcome = task.await.expect("join");
        assert!(outcome.stopped);
        assert!(outcome.error.is_none());
        assert_eq!(
            (outcome.client_to_backend, outcome.backend_to_client),
            (8, 6)
        );
        // Both sides see the connection end with nothing injected.
        let mut rest = Vec::new();
        client_far
            .read_to_end(&mut rest)
            .await
            .expect("client side");
        backend_far
            .read_to_end(&mut rest)
            .await
            .expect("backend side");
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn idle_direction_holds_no_buffer() {
        let (_client_far, mut client_near) = duplex(64);
        let (mut backend_near, _backend_far) = duplex(64);
        let mut pipe = Relay {
            client: &mut client_near,
            backend: &mut backend_near,
            up: Direction::default(),
            down: Direction::default(),
        };
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut &mut pipe).poll(&mut cx).is_pending());
        assert!(pipe.up.buffer.is_none() && pipe.down.buffer.is_none());
    }

    #[test]
    fn the_pool_reuses_first_size_buffers_and_stays_bounded() {
        let first = pool::take(CHUNK);
        let address = first.as_ptr();
        pool::give_back(Some(first));
        let again = pool::take(CHUNK);
        assert_eq!(again.as_ptr(), address, "reused");
        for _ in 0..100 {
            pool::give_back(Some(vec![0; CHUNK].into_boxed_slice()));
        }
        assert_eq!(pool::kept(), 16);
        pool::give_back(Some(vec![0; 2 * CHUNK].into_boxed_slice()));
        assert_eq!(pool::kept(), 16, "grown buffers are freed");
    }
}

//! Client and backend connections, plaintext or TLS, behind one type each so the session
//! driver and the relay are written once.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// A connection that may have been upgraded to TLS. The TLS variant is boxed: rustls state is
/// large, and plaintext sessions should not pay for it.
#[derive(Debug)]
pub enum MaybeTls<T> {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<T>),
}

/// The client side.
pub type ClientStream = MaybeTls<tokio_rustls::server::TlsStream<TcpStream>>;
/// The backend side.
pub type BackendStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

impl<T> MaybeTls<T> {
    /// True once TLS protects the connection.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Writes `output` and flushes, counting in `sent` what the stream took, so that a write
/// cut short (by a timeout around it) is resumed where it stopped, never repeated.
pub async fn write_counting<W: AsyncWrite + Unpin>(
    stream: &mut W,
    output: &[u8],
    sent: &mut usize,
) -> io::Result<()> {
    while let Some(rest) = output.get(*sent..).filter(|rest| !rest.is_empty()) {
        match stream.write(rest).await? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => *sent += n,
        }
    }
    stream.flush().await
}

/// Polls `io` once: its output if it finished without waiting, `None` if it would wait.
/// Unconstrained, so that tokio's cooperative budget cannot make a write the socket would
/// take look like one that has to wait.
pub async fn at_once<T>(io: impl Future<Output = T>) -> Option<T> {
    let mut io = std::pin::pin!(tokio::task::unconstrained(io));
    std::future::poll_fn(|cx| match io.as_mut().poll(cx) {
        Poll::Ready(output) => Poll::Ready(Some(output)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    /// A pipe that takes 8 octets: the first attempt writes those and would wait, the
    /// second, once they are read, writes the rest and nothing twice.
    #[tokio::test]
    async fn a_write_cut_short_resumes_where_it_stopped() {
        let (mut near, mut far) = tokio::io::duplex(8);
        let output = b"0123456789abcdef";
        let mut sent = 0;
        let first = at_once(write_counting(&mut near, output, &mut sent)).await;
        assert!(first.is_none(), "a full pipe does not take it all at once");
        assert_eq!(sent, 8);
        let mut got = [0u8; 16];
        far.read_exact(&mut got[..8]).await.expect("the first 8");
        let second = at_once(write_counting(&mut near, output, &mut sent)).await;
        assert!(matches!(second, Some(Ok(()))), "{second:?}");
        assert_eq!(sent, 16);
        far.read_exact(&mut got[8..]).await.expect("the rest");
        assert_eq!(&got, output);
    }

    #[tokio::test]
    async fn at_once_gives_what_is_ready() {
        assert_eq!(at_once(async { 7 }).await, Some(7));
        assert_eq!(at_once(std::future::pending::<()>()).await, None);
    }
}

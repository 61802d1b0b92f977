//! The process's HTTP services (the built-in issuer's endpoints, metrics) across reloads. A
//! service whose address stays keeps its socket: the new service starts accepting on a
//! duplicate of the running one's descriptor before the running one stops, so there is no
//! moment without a listener, and no "address in use" from binding it again. The running
//! one, once stopped, lets the requests it is serving finish ([`crate::http::serve`]).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A running HTTP service's socket.
#[derive(Debug)]
pub struct HttpSocket {
    /// The bound address.
    pub address: SocketAddr,
    /// The socket itself, kept for the next service to duplicate; never accepted on.
    socket: std::net::TcpListener,
    /// Stops the service accepting on it.
    stop: CancellationToken,
}

impl HttpSocket {
    /// Stops accepting; the socket closes once the service has let go of it.
    pub fn stop(self) {
        self.stop.cancel();
    }
}

/// A socket ready for the next service on `address`: the running one's, or a new one.
#[derive(Debug)]
pub struct NextSocket {
    address: SocketAddr,
    /// The socket (a duplicate of the running service's descriptor when it is kept).
    socket: std::net::TcpListener,
    /// Whether the address was bound just now.
    new: bool,
    /// What the new service accepts on.
    serve: TcpListener,
}

impl NextSocket {
    /// Binds `address`, or duplicates `running`'s socket when it is already bound there.
    /// `reuse_port`: bind with `SO_REUSEPORT` (see [`crate::listen`]).
    pub async fn prepare(
        address: SocketAddr,
        running: Option<&HttpSocket>,
        reuse_port: bool,
    ) -> std::io::Result<Self> {
        let (socket, new) = match running.filter(|r| r.address == address) {
            Some(running) => (running.socket.try_clone()?, false),
            None => (crate::listen::bind(address, reuse_port)?.into_std()?, true),
        };
        let serve = TcpListener::from_std(socket.try_clone()?)?;
        Ok(Self {
            address,
            socket,
            new,
            serve,
        })
    }

    /// Whether this binds an address the running service does not have.
    pub fn is_new(&self) -> bool {
        self.new
    }

    /// Starts the new service (`spawn` gets the listener and its stop token, a child of
    /// `shutdown`), then stops the running one.
    pub fn start(
        self,
        running: Option<HttpSocket>,
        shutdown: &CancellationToken,
        spawn: impl FnOnce(TcpListener, CancellationToken),
    ) -> HttpSocket {
        let stop = shutdown.child_token();
        spawn(self.serve, stop.clone());
        if let Some(running) = running {
            running.stop();
        }
        HttpSocket {
            address: self.address,
            socket: self.socket,
            stop,
        }
    }
}

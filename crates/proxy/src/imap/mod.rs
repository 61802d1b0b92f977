//! The IMAP driver: owns the client socket and runs the sans-I/O [`session::imap`] state
//! machine until login, then logs in to the backend and hands both sockets to the relay.

mod driver;

pub use driver::serve;

//! Sans-I/O wire codecs for bearergate.
//!
//! Everything here is synchronous: bytes in, a message, "need more bytes" (`Ok(None)`) or a
//! named error out. No sockets, no tokio. The proxy's async driver owns the buffers
//! (`bytes::BytesMut`) and the sockets; the decoders here keep only a few integers of state
//! between calls, so an idle session costs next to nothing.
//!
//! - [`imap`]: IMAP command framing (literal-aware), the pre-authentication command parser,
//!   server reply writers, and the backend side (response parser, login command writers).
//! - [`limits`]: the size limits every decoder is built with.
//! - [`proxy_protocol`]: HAProxy's PROXY protocol header (v1 and v2), read and written.
//! - [`fuzzing`]: entry points for cargo-fuzz targets; they assert the codec's invariants.
//!
//! SMTP and ManageSieve codecs will live beside [`imap`] as `smtp` and `sieve`.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod fuzzing;
pub mod imap;
pub mod limits;
pub mod pop3;
pub mod proxy_protocol;
pub mod sieve;
pub mod smtp;

pub use limits::Limits;

//! Per-protocol pre-authentication state machines: bytes in, replies and requests out.
//!
//! A session never touches a socket. Its driver feeds it the client's bytes and writes out
//! what it produces; when the session needs something only the driver can do — a TLS
//! handshake, a token check, a backend login — it says so with an `Action`, and the driver
//! reports the outcome through a method that checks the state.
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

pub mod imap;

//! HAProxy's PROXY protocol (`doc/proxy-protocol.txt`, versions 1 and 2): the header a
//! TCP load balancer puts in front of a relayed connection to name the real client, read
//! by listeners behind one, and written by the proxy to backends that want it.
//!
//! - [`decode`] reads a header from the octets received so far: the header and how many
//!   octets it took, or exactly how many more octets it still needs, or a named error. The
//!   driver reads exactly that many and calls again, so it never reads past the header into
//!   what follows (a TLS ClientHello, or a client that speaks first): those octets stay in
//!   the socket for the TLS library or the session. No buffering beyond the header, no
//!   peeking.
//! - [`write_v2`] writes the binary header the proxy sends a backend (PROXY over TCP, or
//!   LOCAL for connections of its own); [`write_v1`] the text one, for tests and tools.
//! - [`fuzzing`]: the cargo-fuzz entry point and the invariants it checks.
//!
//! The receiver's rules followed here (spec §2): the header must come first and whole; a
//! receiver configured for it must not guess whether one is present, so anything that is
//! not a header is an error; v2 LOCAL (a balancer's health check), v1 `UNKNOWN` and the
//! v2 families this proxy does not serve (UNSPEC, UDP, UNIX) mean "use the connection's
//! own endpoints" ([`Addresses::Local`]); unknown TLVs are skipped, a CRC32C TLV is
//! checked.

pub mod fuzzing;
mod v1;
mod v2;

use std::net::SocketAddr;

pub use self::v1::write_v1;
pub use self::v2::{crc32c, write_v2};

/// The longest v1 header, CRLF included (spec §2.1: `PROXY UNKNOWN` with two full IPv6
/// addresses and ports). A line without CRLF within this many octets is an error.
pub const V1_MAX_LEN: usize = 107;

/// The shortest header of either version: `PROXY UNKNOWN\r\n`. What [`decode`] asks for
/// first, since no header is shorter.
pub const MIN_LEN: usize = 15;

/// The v2 signature (spec §2.2): `\r\n\r\n\0\r\nQUIT\n`, chosen to be refused by every
/// common protocol that meets it by mistake.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version and command, family, length.
pub const V2_FIXED_LEN: usize = 16;

/// What a header may take (STYLE.md habit 2). The v1 bound is the spec's own 107 octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest v2 header, fixed part included, in octets. A longer one is refused as soon
    /// as its length field is read, before any of it is.
    ///
    /// Default 1 KiB ([`Limits::DEFAULT_MAX_V2_LEN`]): the longest block a balancer builds
    /// is a UNIX address pair (216 octets) or an IPv6 one (36) followed by HAProxy's TLVs —
    /// ALPN, the authority (SNI, at most 255), a unique id (at most 128), the SSL block
    /// with version, client CN, cipher, signature and key algorithms, a CRC32C — or a
    /// cloud balancer's endpoint id, well under 700 octets together. The field itself
    /// allows 64 KiB of TLVs that nothing here uses.
    pub max_v2_len: usize,
}

impl Limits {
    /// Default [`Limits::max_v2_len`]: 1 KiB.
    pub const DEFAULT_MAX_V2_LEN: usize = 1_024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_v2_len: Self::DEFAULT_MAX_V2_LEN,
        }
    }
}

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text header (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// Use the connection's own endpoints: v2 LOCAL (the balancer's own connection, e.g. a
    /// health check), v1 `UNKNOWN`, or a v2 family this proxy does not serve (UNSPEC, UDP,
    /// UNIX), for which the spec says to fall back to UNSPEC ("use the real connection
    /// endpoints").
    Local,
    /// A relayed TCP connection.
    Tcp {
        /// The client, as the balancer saw it.
        source: SocketAddr,
        /// The address the client connected to (the balancer's).
        destination: SocketAddr,
    },
}

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// v1 or v2.
    pub version: Version,
    /// The relayed connection's endpoints, or none.
    pub addresses: Addresses,
}

/// What [`decode`] made of the octets it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A whole header, in the first `consumed` octets; whatever follows is the
    /// connection's.
    Header {
        /// The header.
        header: ProxyHeader,
        /// Its length in octets.
        consumed: usize,
    },
    /// Not yet a whole header: it is at least this many octets (one or more) longer than
    /// what was given, so reading exactly this many more never reads past it.
    Need(usize),
}

/// Why the octets are not a header the proxy takes. Every one is the sender's fault (a
/// balancer misconfigured, or a client that is not one); the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// Neither `PROXY ` nor the v2 signature: a client talking directly, or a balancer not
    /// configured to send a header.
    #[error("not a PROXY protocol header")]
    NotProxy,
    /// A v1 line without CRLF within 107 octets.
    #[error("PROXY v1 line longer than {V1_MAX_LEN} octets")]
    V1TooLong,
    /// A v1 line that breaks the grammar; names the part.
    #[error("malformed PROXY v1 line: {0}")]
    V1Malformed(&'static str),
    /// A v2 header of another version than 2.
    #[error("PROXY v2 header with version {0}")]
    V2Version(u8),
    /// A v2 command other than LOCAL (0) and PROXY (1).
    #[error("PROXY v2 header with unassigned command {0:#x}")]
    V2Command(u8),
    /// A v2 family or transport nibble the spec leaves unassigned.
    #[error("PROXY v2 header with unassigned family and transport {0:#04x}")]
    V2Family(u8),
    /// A v2 header longer than [`Limits::max_v2_len`].
    #[error("PROXY v2 header of {len} octets, over the limit of {max}")]
    V2TooLong {
        /// The header's announced length, fixed part included.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A v2 address block shorter than its family needs.
    #[error("PROXY v2 address block of {len} octets where {needed} are needed")]
    V2ShortAddresses {
        /// What the header holds after the fixed part.
        len: usize,
        /// What the family needs.
        needed: usize,
    },
    /// A v2 TLV that runs past the end of the header, or a CRC32C TLV of the wrong size.
    #[error("PROXY v2 TLV does not fit the header")]
    V2Tlv,
    /// A v2 header whose CRC32C TLV does not match it.
    #[error("PROXY v2 header fails its CRC32C check")]
    V2Checksum,
}

/// Reads a header (either version) from the start of `input`, the octets received so far.
///
/// `Ok(Decoded::Need(n))` when more octets are needed: the header is at least `n` octets
/// longer than `input`. Errors are reported as soon as the octets rule out every header, so
/// a client that is not a balancer is refused at its first read.
pub fn decode(input: &[u8], limits: &Limits) -> Result<Decoded, ProxyHeaderError> {
    match input.first() {
        None => Ok(Decoded::Need(MIN_LEN)),
        Some(b'P') => v1::decode(input),
        Some(b'\r') => v2::decode(input, limits),
        Some(_) => Err(ProxyHeaderError::NotProxy),
    }
}

#[cfg(test)]
mod tests;

//! The binary header (spec §2.2):
//!
//! ```text
//! header    = signature ver-cmd fam len address-block
//! signature = %x0D.0A.0D.0A.00.0D.0A.51.55.49.54.0A
//! ver-cmd   = %x20 (LOCAL) / %x21 (PROXY)
//! fam       = family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX)
//!             transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM)
//! len       = 2OCTET                         ; big-endian, octets after the fixed 16
//! address-block = addresses *tlv            ; len octets in all
//!   INET:  src[4]  dst[4]  sport[2] dport[2] ; 12
//!   INET6: src[16] dst[16] sport[2] dport[2] ; 36
//!   UNIX:  src[108] dst[108]                 ; 216
//! tlv       = type[1] length[2] value[length]
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    Addresses, Decoded, Limits, ProxyHeader, ProxyHeaderError, Version, V2_FIXED_LEN, V2_SIGNATURE,
};

const LOCAL: u8 = 0x0;
const PROXY: u8 = 0x1;
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;
const UNIX_LEN: usize = 216;
/// `PP2_TYPE_CRC32C`: the header's checksum, computed with the value zeroed.
const TLV_CRC32C: u8 = 0x03;

/// A v2 header from the start of `input`, which begins with CR.
pub(super) fn decode(input: &[u8], limits: &Limits) -> Result<Decoded, ProxyHeaderError> {
    let signature = &input[..input.len().min(V2_SIGNATURE.len())];
    if signature != &V2_SIGNATURE[..signature.len()] {
        return Err(ProxyHeaderError::NotProxy);
    }
    // Version, command and family are checked as soon as they arrive: a bad one is refused
    // without waiting for the rest.
    if let Some(&ver_cmd) = input.get(12) {
        command(ver_cmd)?;
    }
    if let (Some(&ver_cmd), Some(&fam)) = (input.get(12), input.get(13)) {
        if ver_cmd & 0x0f == PROXY {
            family(fam)?;
        }
    }
    let Some(len) = input.get(14..V2_FIXED_LEN) else {
        return Ok(Decoded::Need(V2_FIXED_LEN - input.len()));
    };
    let total = V2_FIXED_LEN + usize::from(u16::from_be_bytes([len[0], len[1]]));
    if total > limits.max_v2_len {
        return Err(ProxyHeaderError::V2TooLong {
            len: total,
            max: limits.max_v2_len,
        });
    }
    let Some(header) = input.get(..total) else {
        return Ok(Decoded::Need(total - input.len()));
    };
    Ok(Decoded::Header {
        header: ProxyHeader {
            version: Version::V2,
            addresses: addresses(header)?,
        },
        consumed: total,
    })
}

/// The command of `ver_cmd`, whose version must be 2.
fn command(ver_cmd: u8) -> Result<u8, ProxyHeaderError> {
    let version = ver_cmd >> 4;
    if version != 2 {
        return Err(ProxyHeaderError::V2Version(version));
    }
    match ver_cmd & 0x0f {
        command @ (LOCAL | PROXY) => Ok(command),
        other => Err(ProxyHeaderError::V2Command(other)),
    }
}

/// The address block's length for `fam`, `None` for UNSPEC (nothing to read there); an
/// error for the nibbles the spec leaves unassigned.
fn family(fam: u8) -> Result<Option<usize>, ProxyHeaderError> {
    let (family, transport) = (fam >> 4, fam & 0x0f);
    if family > 3 || transport > 2 {
        return Err(ProxyHeaderError::V2Family(fam));
    }
    if family == 0 || transport == 0 {
        return Ok(None);
    }
    Ok(Some(match family {
        1 => INET_LEN,
        2 => INET6_LEN,
        _ => UNIX_LEN,
    }))
}

/// The addresses of a whole header. LOCAL discards the block, family included (spec
/// §2.2); UNSPEC ignores it; UDP and UNIX fall back to UNSPEC, their blocks and TLVs still
/// checked; TCP over IPv4 and IPv6 are read.
fn addresses(header: &[u8]) -> Result<Addresses, ProxyHeaderError> {
    if command(header[12])? == LOCAL {
        return Ok(Addresses::Local);
    }
    let fam = header[13];
    let Some(needed) = family(fam)? else {
        return Ok(Addresses::Local);
    };
    let block = &header[V2_FIXED_LEN..];
    if block.len() < needed {
        return Err(ProxyHeaderError::V2ShortAddresses {
            len: block.len(),
            needed,
        });
    }
    check_tlvs(header, V2_FIXED_LEN + needed)?;
    let block = &block[..needed];
    let (source, destination, ports) = match fam {
        TCP4 => {
            let ip = |at: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ))
            };
            (ip(0), ip(4), &block[8..])
        }
        TCP6 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&block[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            (ip(0), ip(16), &block[32..])
        }
        _ => return Ok(Addresses::Local),
    };
    Ok(Addresses::Tcp {
        source: SocketAddr::new(source, u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(destination, u16::from_be_bytes([ports[2], ports[3]])),
    })
}

/// Walks the TLVs from `start` to the end of `header`, each within it; a CRC32C TLV must be
/// four octets and match. Every other type is skipped: nothing here needs one.
fn check_tlvs(header: &[u8], start: usize) -> Result<(), ProxyHeaderError> {
    let mut at = start;
    while at < header.len() {
        let Some(&[kind, high, low]) = header.get(at..at + 3) else {
            return Err(ProxyHeaderError::V2Tlv);
        };
        let value = at + 3;
        let end = value + usize::from(u16::from_be_bytes([high, low]));
        if end > header.len() {
            return Err(ProxyHeaderError::V2Tlv);
        }
        if kind == TLV_CRC32C {
            check_crc32c(header, value..end)?;
        }
        at = end;
    }
    Ok(())
}

/// The checksum in `header[value]` against the header's CRC32C with those octets zeroed.
fn check_crc32c(header: &[u8], value: std::ops::Range<usize>) -> Result<(), ProxyHeaderError> {
    let Ok(sent) = <[u8; 4]>::try_from(&header[value.clone()]) else {
        return Err(ProxyHeaderError::V2Tlv);
    };
    let mut crc = Crc32c::new();
    crc.update(&header[..value.start]);
    crc.update(&[0; 4]);
    crc.update(&header[value.end..]);
    if crc.finish() != u32::from_be_bytes(sent) {
        return Err(ProxyHeaderError::V2Checksum);
    }
    Ok(())
}

/// Appends the v2 header for `addresses` to `out`: PROXY over TCP, IPv4 when both
/// addresses are (IPv4-mapped IPv6 counts as IPv4), IPv6 with mapped addresses otherwise;
/// LOCAL with UNSPEC and no address block for [`Addresses::Local`]. No TLVs.
pub fn write_v2(addresses: &Addresses, out: &mut Vec<u8>) {
    out.extend_from_slice(&V2_SIGNATURE);
    let Addresses::Tcp {
        source,
        destination,
    } = addresses
    else {
        out.extend_from_slice(&[0x20 | LOCAL, 0x00, 0, 0]);
        return;
    };
    match (source.ip().to_canonical(), destination.ip().to_canonical()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x20 | PROXY, TCP4, 0, INET_LEN as u8]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.extend_from_slice(&[0x20 | PROXY, TCP6, 0, INET6_LEN as u8]);
            out.extend_from_slice(&super::v1::mapped(s).octets());
            out.extend_from_slice(&super::v1::mapped(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

/// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of `data`, as the spec's
/// `PP2_TYPE_CRC32C` TLV carries it.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = Crc32c::new();
    crc.update(data);
    crc.finish()
}

/// A running CRC32C, bit by bit: headers are short and rarely carry one, so no table.
struct Crc32c(u32);

impl Crc32c {
    fn new() -> Self {
        Self(!0)
    }

    fn update(&mut self, data: &[u8]) {
        for &byte in data {
            self.0 ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (self.0 & 1).wrapping_neg();
                self.0 = (self.0 >> 1) ^ (0x82F6_3B78 & mask);
            }
        }
    }

    fn finish(self) -> u32 {
        !self.0
    }
}

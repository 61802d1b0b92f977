//! The text header (spec §2.1):
//!
//! ```text
//! header   = "PROXY" SP ( tcp4 / tcp6 / unknown ) CRLF          ; 107 octets at most
//! tcp4     = "TCP4" SP ipv4 SP ipv4 SP port SP port
//! tcp6     = "TCP6" SP ipv6 SP ipv6 SP port SP port
//! unknown  = "UNKNOWN" [ SP *( any octet but CR and LF ) ]
//! ipv4     = dotted quad, no leading zeros
//! port     = "0" / %x31-39 0*4DIGIT                              ; 0..65535
//! ```
//!
//! A line ends at its first CR or LF, which must be CR LF: a lone one is an error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{Addresses, Decoded, ProxyHeader, ProxyHeaderError, Version, MIN_LEN, V1_MAX_LEN};

const PREFIX: &[u8] = b"PROXY ";

/// The fields after the family, in order, as errors name them.
const FIELDS: [&str; 4] = [
    "source address",
    "destination address",
    "source port",
    "destination port",
];

/// The families, with the shortest whole header each allows: what [`need`] counts from
/// before the family is known.
const FAMILIES: [(&[u8], usize); 3] = [
    (b"UNKNOWN", MIN_LEN),
    // PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n
    (b"TCP4", 32),
    // PROXY TCP6 :: :: 0 0\r\n
    (b"TCP6", 22),
];

/// A v1 header from the start of `input`, which begins with `P`.
pub(super) fn decode(input: &[u8]) -> Result<Decoded, ProxyHeaderError> {
    let head = &input[..input.len().min(PREFIX.len())];
    if !PREFIX.starts_with(head) {
        return Err(ProxyHeaderError::NotProxy);
    }
    let window = &input[..input.len().min(V1_MAX_LEN)];
    let Some(end) = window.iter().position(|&b| b == b'\r' || b == b'\n') else {
        if input.len() >= V1_MAX_LEN {
            return Err(ProxyHeaderError::V1TooLong);
        }
        let need = need(input)?;
        if input.len() + need > V1_MAX_LEN {
            return Err(ProxyHeaderError::V1TooLong);
        }
        return Ok(Decoded::Need(need));
    };
    if window[end] == b'\n' {
        return Err(ProxyHeaderError::V1Malformed("LF without CR"));
    }
    if end + 2 > V1_MAX_LEN {
        return Err(ProxyHeaderError::V1TooLong);
    }
    match input.get(end + 1) {
        None => {
            // The LF is still to come: whatever the line already breaks is reported now,
            // as it was before the CR came.
            if end + need(&input[..end])? > V1_MAX_LEN {
                return Err(ProxyHeaderError::V1TooLong);
            }
            Ok(Decoded::Need(1))
        }
        Some(b'\n') => Ok(Decoded::Header {
            header: ProxyHeader {
                version: Version::V1,
                addresses: line(&input[..end])?,
            },
            consumed: end + 2,
        }),
        Some(_) => Err(ProxyHeaderError::V1Malformed("CR without LF")),
    }
}

/// How many more octets any header starting with `partial` (no CR or LF yet) still has at
/// least: what is missing of the field being read, one space and the shortest value of each
/// field still to come, and CRLF. An error when no header can start this way.
fn need(partial: &[u8]) -> Result<usize, ProxyHeaderError> {
    let Some(rest) = partial.strip_prefix(PREFIX) else {
        return Ok(MIN_LEN.saturating_sub(partial.len()).max(2));
    };
    let mut fields = rest.split(|&b| b == b' ');
    let family = fields.next().unwrap_or_default();
    let Some(after_family) = fields.next() else {
        // The family is still being read: the shortest header of those it may become.
        let shortest = FAMILIES
            .iter()
            .filter(|(name, _)| name.starts_with(family))
            .map(|(_, len)| *len)
            .min()
            .ok_or(ProxyHeaderError::V1Malformed("family"))?;
        return Ok(shortest.saturating_sub(partial.len()).max(2));
    };
    let shortest_address = match family {
        b"UNKNOWN" => return Ok(2),
        b"TCP4" => 7,
        b"TCP6" => 2,
        _ => return Err(ProxyHeaderError::V1Malformed("family")),
    };
    // Source and destination address, source and destination port. A field that ended
    // shorter than its shortest value is refused at once; this also keeps the bound from
    // ever falling as octets arrive, so that an error on a prefix stays one.
    let shortest = [shortest_address, shortest_address, 1, 1];
    let mut current = after_family;
    let mut index = 0;
    for field in fields {
        if current.len() < shortest[index] {
            return Err(ProxyHeaderError::V1Malformed(FIELDS[index]));
        }
        current = field;
        index += 1;
        if index == shortest.len() {
            return Err(ProxyHeaderError::V1Malformed("too many fields"));
        }
    }
    let to_come: usize = shortest[index + 1..].iter().map(|len| 1 + len).sum();
    Ok(shortest[index].saturating_sub(current.len()) + to_come + 2)
}

/// A whole line, without its CRLF.
fn line(line: &[u8]) -> Result<Addresses, ProxyHeaderError> {
    let rest = line
        .strip_prefix(PREFIX)
        .ok_or(ProxyHeaderError::NotProxy)?;
    let mut fields = rest.split(|&b| b == b' ');
    let family = fields.next().unwrap_or_default();
    let v6 = match family {
        // Whatever follows UNKNOWN is to be ignored (spec §2.1).
        b"UNKNOWN" => return Ok(Addresses::Local),
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(ProxyHeaderError::V1Malformed("family")),
    };
    let mut next = |what| fields.next().ok_or(ProxyHeaderError::V1Malformed(what));
    let source = address(next("source address")?, v6, "source address")?;
    let destination = address(next("destination address")?, v6, "destination address")?;
    let source_port = port(next("source port")?, "source port")?;
    let destination_port = port(next("destination port")?, "destination port")?;
    if fields.next().is_some() {
        return Err(ProxyHeaderError::V1Malformed("too many fields"));
    }
    Ok(Addresses::Tcp {
        source: SocketAddr::new(source, source_port),
        destination: SocketAddr::new(destination, destination_port),
    })
}

/// An address of the family the line announced. The standard library's parsers are the
/// spec's grammar: dotted quads without leading zeros, IPv6 with at most one `::`.
fn address(text: &[u8], v6: bool, what: &'static str) -> Result<IpAddr, ProxyHeaderError> {
    let text = std::str::from_utf8(text).map_err(|_| ProxyHeaderError::V1Malformed(what))?;
    let parsed = if v6 {
        text.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        text.parse::<Ipv4Addr>().map(IpAddr::V4)
    };
    parsed.map_err(|_| ProxyHeaderError::V1Malformed(what))
}

/// `port = "0" / %x31-39 0*4DIGIT`, at most 65535.
fn port(text: &[u8], what: &'static str) -> Result<u16, ProxyHeaderError> {
    let digits = !text.is_empty() && text.len() <= 5 && text.iter().all(u8::is_ascii_digit);
    let leading_zero = text.len() > 1 && text.first() == Some(&b'0');
    if !digits || leading_zero {
        return Err(ProxyHeaderError::V1Malformed(what));
    }
    let value = text
        .iter()
        .fold(0u32, |value, digit| value * 10 + u32::from(digit - b'0'));
    u16::try_from(value).map_err(|_| ProxyHeaderError::V1Malformed(what))
}

/// The v1 line for `addresses`: `PROXY TCP4 …` when both are IPv4 (IPv4-mapped IPv6
/// counts as IPv4), `PROXY TCP6 …` with mapped addresses otherwise, `PROXY UNKNOWN` for
/// [`Addresses::Local`].
pub fn write_v1(addresses: &Addresses) -> String {
    let Addresses::Tcp {
        source,
        destination,
    } = addresses
    else {
        return "PROXY UNKNOWN\r\n".to_owned();
    };
    let (source_ip, destination_ip) = (source.ip().to_canonical(), destination.ip().to_canonical());
    let (family, source_ip, destination_ip) = match (source_ip, destination_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ("TCP4", IpAddr::V4(s), IpAddr::V4(d)),
        (s, d) => ("TCP6", IpAddr::V6(mapped(s)), IpAddr::V6(mapped(d))),
    };
    format!(
        "PROXY {family} {source_ip} {destination_ip} {} {}\r\n",
        source.port(),
        destination.port()
    )
}

/// An address as IPv6, IPv4 ones mapped (`::ffff:a.b.c.d`).
pub(super) fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

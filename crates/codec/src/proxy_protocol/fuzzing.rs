//! The cargo-fuzz entry point for the PROXY protocol decoder (`fuzz/fuzz_targets/
//! proxy_header.rs` calls it with the fuzzer's octets). It must never panic on its own; the
//! `assert!`s check the decoder's invariants, so a panic is a bug found. The module's
//! proptests call it too.

use super::{decode, write_v1, write_v2, Addresses, Decoded, Limits, ProxyHeaderError};

/// A small v2 limit, so that random input hits it often (an IPv6 header with a TLV or two
/// fits; a UNIX one does not).
pub const FUZZ_LIMITS: Limits = Limits { max_v2_len: 96 };

/// Prefixes longer than this are not each decoded: every header within the limits is
/// shorter, so what comes after cannot change a result.
const PREFIX_CHECKS: usize = 300;

/// Checks [`decode`] on `data` with the fuzzing limits and the default ones.
pub fn proxy_header(data: &[u8]) {
    for limits in [FUZZ_LIMITS, Limits::default()] {
        check(data, &limits);
    }
}

/// The invariants, for one set of limits:
/// - the whole input's answer never claims more octets than it was given;
/// - every prefix's answer agrees with the whole's: a prefix of a header asks for more,
///   and honestly (the header is at least as long as the prefix plus what it asks for), an
///   error on a prefix stays an error, and a header found in a prefix is the same header;
/// - a driver that reads exactly what is asked for ends exactly at the header's end, with
///   the same answer as the whole input;
/// - a TCP header written back in either version decodes to the same addresses.
pub fn check(data: &[u8], limits: &Limits) {
    let whole = decode(data, limits);
    let header = match &whole {
        Ok(Decoded::Header { header, consumed }) => {
            assert!(*consumed <= data.len(), "consumed more than given");
            Some((*header, *consumed))
        }
        Ok(Decoded::Need(n)) => {
            assert!(*n >= 1, "asked for nothing");
            None
        }
        Err(_) => None,
    };
    for end in 0..=data.len().min(PREFIX_CHECKS) {
        let prefix = decode(&data[..end], limits);
        match (prefix, header) {
            (Ok(Decoded::Need(n)), Some((_, consumed))) => {
                assert!(n >= 1, "asked for nothing at {end}");
                assert!(
                    end + n <= consumed,
                    "at {end} asked for {n}, past the header's end at {consumed}"
                );
            }
            (Ok(Decoded::Need(n)), None) => assert!(n >= 1, "asked for nothing at {end}"),
            (Ok(Decoded::Header { header, consumed }), _) => {
                assert!(consumed <= end, "consumed more than given at {end}");
                assert_eq!(
                    whole,
                    Ok(Decoded::Header { header, consumed }),
                    "a header in a prefix and a different answer for the whole"
                );
            }
            (Err(e), _) => assert!(
                whole.is_err(),
                "error {e:?} at {end}, but the whole input gives {whole:?}"
            ),
        }
    }
    check_exact_reads(data, limits, &whole);
    if let Some((header, _)) = header {
        round_trip(&header.addresses);
    }
}

/// Reads as a driver does, exactly what is asked for each time.
fn check_exact_reads(data: &[u8], limits: &Limits, whole: &Result<Decoded, ProxyHeaderError>) {
    let mut read = 0;
    loop {
        match decode(&data[..read], limits) {
            Ok(Decoded::Need(n)) => {
                if read + n > data.len() {
                    // The input ends first; the whole must not be a header then.
                    assert!(
                        !matches!(whole, Ok(Decoded::Header { .. })),
                        "exact reads ask for {n} at {read}, past a header in the input"
                    );
                    return;
                }
                read += n;
            }
            Ok(found @ Decoded::Header { consumed, .. }) => {
                assert_eq!(consumed, read, "exact reads went past the header");
                assert_eq!(whole, &Ok(found), "exact reads found another header");
                return;
            }
            Err(e) => {
                assert!(
                    whole.is_err(),
                    "exact reads failed ({e:?}), the whole did not"
                );
                return;
            }
        }
    }
}

/// Written back, a relayed connection's addresses decode to themselves (canonical: an
/// IPv4-mapped address is written as IPv4).
pub fn round_trip(addresses: &Addresses) {
    let canonical = canonical(addresses);
    let mut v2 = Vec::new();
    write_v2(addresses, &mut v2);
    let v1 = write_v1(addresses);
    for written in [v2.as_slice(), v1.as_bytes()] {
        match decode(written, &Limits::default()) {
            Ok(Decoded::Header { header, consumed }) => {
                assert_eq!(consumed, written.len(), "{written:?}");
                assert_eq!(canonical, header.addresses, "{written:?}");
            }
            other => panic!("{written:?} written, {other:?} read"),
        }
    }
}

fn canonical(addresses: &Addresses) -> Addresses {
    match *addresses {
        Addresses::Local => Addresses::Local,
        Addresses::Tcp {
            source,
            destination,
        } => {
            let both_v4 =
                source.ip().to_canonical().is_ipv4() && destination.ip().to_canonical().is_ipv4();
            let fix = |address: std::net::SocketAddr| {
                let ip = address.ip().to_canonical();
                let ip = match ip {
                    std::net::IpAddr::V4(v4) if !both_v4 => v4.to_ipv6_mapped().into(),
                    other => other,
                };
                std::net::SocketAddr::new(ip, address.port())
            };
            Addresses::Tcp {
                source: fix(source),
                destination: fix(destination),
            }
        }
    }
}

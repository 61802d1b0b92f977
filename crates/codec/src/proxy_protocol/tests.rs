use std::net::SocketAddr;

use proptest::prelude::*;

use super::fuzzing::{check, proxy_header, round_trip};
use super::*;

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("test address")
}

fn tcp(source: &str, destination: &str) -> Addresses {
    Addresses::Tcp {
        source: addr(source),
        destination: addr(destination),
    }
}

fn header(version: Version, addresses: Addresses, consumed: usize) -> Decoded {
    Decoded::Header {
        header: ProxyHeader { version, addresses },
        consumed,
    }
}

fn decode_default(input: &[u8]) -> Result<Decoded, ProxyHeaderError> {
    decode(input, &Limits::default())
}

/// A v2 header: signature, `ver_cmd`, `fam`, and `block` with its length.
fn v2(ver_cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[ver_cmd, fam]);
    let len = u16::try_from(block.len()).expect("test block fits");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// TCP over IPv4 192.0.2.10:51234 to 198.51.100.5:993 (reference/protocols.md §8).
const V2_TCP4: [u8; 28] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, 0x11, 0x00, 0x0c,
    0xc0, 0x00, 0x02, 0x0a, 0xc6, 0x33, 0x64, 0x05, 0xc8, 0x22, 0x03, 0xe1,
];

const FFFF6: &str = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

#[test]
fn v1_lines_of_the_spec() {
    let cases: Vec<(String, Addresses)> = vec![
        (
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".into(),
            tcp("192.168.0.1:56324", "192.168.0.11:443"),
        ),
        (
            "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n".into(),
            tcp("255.255.255.255:65535", "255.255.255.255:65535"),
        ),
        (
            format!("PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n"),
            tcp(&format!("[{FFFF6}]:65535"), &format!("[{FFFF6}]:65535")),
        ),
        (
            "PROXY TCP6 2001:db8::7 :: 0 993\r\n".into(),
            tcp("[2001:db8::7]:0", "[::]:993"),
        ),
        ("PROXY UNKNOWN\r\n".into(), Addresses::Local),
        (
            format!("PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n"),
            Addresses::Local,
        ),
        (
            "PROXY UNKNOWN anything \x01 at all\r\n".into(),
            Addresses::Local,
        ),
    ];
    for (line, want) in cases {
        let mut input = line.clone().into_bytes();
        // What follows the header is the connection's, never the header's.
        input.extend_from_slice(b"\x16\x03\x01\x02\x00\x01");
        assert_eq!(
            decode_default(&input),
            Ok(header(Version::V1, want, line.len())),
            "{line:?}"
        );
    }
    assert_eq!(
        format!("PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n").len(),
        104
    );
    assert_eq!(
        format!("PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535\r\n").len(),
        V1_MAX_LEN
    );
}

#[test]
fn v1_lines_that_break_the_grammar() {
    use ProxyHeaderError::*;
    let cases: &[(&[u8], ProxyHeaderError)] = &[
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n",
            V1Malformed("LF without CR"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX",
            V1Malformed("CR without LF"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",
            V1Malformed("destination port"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n",
            V1Malformed("too many fields"),
        ),
        (
            b"PROXY TCP4 010.168.0.1 192.168.0.11 56324 443\r\n",
            V1Malformed("source address"),
        ),
        (
            b"PROXY TCP4 192.168.0 192.168.0.11 56324 443\r\n",
            V1Malformed("source address"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 2001:db8::1 56324 443\r\n",
            V1Malformed("destination address"),
        ),
        (
            b"PROXY TCP6 192.168.0.1 2001:db8::1 56324 443\r\n",
            V1Malformed("source address"),
        ),
        (
            b"PROXY TCP6 fe80::1%eth0 2001:db8::1 56324 443\r\n",
            V1Malformed("source address"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",
            V1Malformed("source port"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",
            V1Malformed("source port"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 +1 443\r\n",
            V1Malformed("source port"),
        ),
        (
            b"PROXY TCP4 192.168.0.1 192.168.0.11 1 00\r\n",
            V1Malformed("destination port"),
        ),
        (
            b"PROXY TCP4  192.168.0.1 192.168.0.11 1 2\r\n",
            V1Malformed("source address"),
        ),
        (
            b"PROXY TCP4 192.168.0.1  192.168.0.11 1 2",
            V1Malformed("destination address"),
        ),
        // A field too short for its family, refused before the line ends.
        (
            b"PROXY TCP4 192.168.0.1 TCY TC",
            V1Malformed("destination address"),
        ),
        (
            b"PROXY TCP5 192.168.0.1 192.168.0.11 1 2\r\n",
            V1Malformed("family"),
        ),
        (b"PROXY UNKNOWNX\r\n", V1Malformed("family")),
        // Refused as soon as the CR shows, not only once the LF is there.
        (b"PROXY TCP4$192.168.0.11 56\r", V1Malformed("family")),
        (b"PROXY\r\n", NotProxy),
        (b"proxy TCP4 192.168.0.1 192.168.0.11 1 2\r\n", NotProxy),
        (b"PROXI", NotProxy),
        (b"a LOGIN alice secret\r\n", NotProxy),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", NotProxy),
        (b"EHLO client.example\r\n", NotProxy),
    ];
    for (input, want) in cases {
        assert_eq!(
            decode_default(input),
            Err(*want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn v1_without_crlf_within_107_octets_is_too_long() {
    let worst = format!("PROXY UNKNOWN {FFFF6} {FFFF6} 65535 65535");
    // One octet more than the longest line: CR is the 107th octet, LF the 108th.
    let over = format!("{worst}0\r\n");
    assert_eq!(
        decode_default(over.as_bytes()),
        Err(ProxyHeaderError::V1TooLong)
    );
    let no_end = vec![b'x'; 200];
    let mut input = b"PROXY UNKNOWN ".to_vec();
    input.extend_from_slice(&no_end);
    assert_eq!(decode_default(&input), Err(ProxyHeaderError::V1TooLong));
    // A TCP4 line that could no longer fit is refused before 107 octets have come.
    let mut input = b"PROXY TCP4 ".to_vec();
    input.extend_from_slice(&[b'1'; 90]);
    assert_eq!(decode_default(&input), Err(ProxyHeaderError::V1TooLong));
    // The same when its CR has come and its LF not yet.
    input.push(b'\r');
    assert_eq!(decode_default(&input), Err(ProxyHeaderError::V1TooLong));
}

#[test]
fn need_is_the_least_any_header_still_has() {
    let cases: &[(&[u8], usize)] = &[
        (b"", MIN_LEN),
        (b"P", MIN_LEN - 1),
        (b"PROXY", MIN_LEN - 5),
        (b"PROXY ", MIN_LEN - 6),
        // TCP4 or TCP6: the shorter, TCP6 (22).
        (b"PROXY TCP", 22 - 9),
        (b"PROXY TCP4", 32 - 10),
        (b"PROXY TCP4 ", 32 - 11),
        (b"PROXY UNKNOWN", 2),
        (b"PROXY UNKNOWN 1.2.3.4", 2),
        // The source address may be complete: a space and three fields still to come.
        (b"PROXY TCP4 192.168.0.1", 1 + 7 + 1 + 1 + 1 + 1 + 2),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443", 2),
        (b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r", 1),
        (b"PROXY TCP6 ::1 ", 2 + 1 + 1 + 1 + 1 + 2),
        (&V2_TCP4[..1], V2_FIXED_LEN - 1),
        (&V2_TCP4[..13], V2_FIXED_LEN - 13),
        (&V2_TCP4[..16], 12),
        (&V2_TCP4[..27], 1),
    ];
    for (input, want) in cases {
        assert_eq!(
            decode_default(input),
            Ok(Decoded::Need(*want)),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn v2_known_answers() {
    let mut input = V2_TCP4.to_vec();
    input.extend_from_slice(b"* OK not the header's");
    assert_eq!(
        decode_default(&input),
        Ok(header(
            Version::V2,
            tcp("192.0.2.10:51234", "198.51.100.5:993"),
            28
        ))
    );
    let mut written = Vec::new();
    write_v2(&tcp("192.0.2.10:51234", "198.51.100.5:993"), &mut written);
    assert_eq!(written, V2_TCP4, "the writer gives the reference octets");

    let mut six = Vec::new();
    six.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    six.extend_from_slice(&[0xd4, 0x31, 0x00, 0x8f]);
    // ALPN "imap", then a NOOP, then a type nobody assigned: all skipped.
    let mut block = six.clone();
    block.extend_from_slice(&[0x01, 0x00, 0x04]);
    block.extend_from_slice(b"imap");
    block.extend_from_slice(&[0x04, 0x00, 0x00, 0xee, 0x00, 0x02, 0xaa, 0xbb]);
    let input = v2(0x21, 0x21, &block);
    assert_eq!(
        decode_default(&input),
        Ok(header(
            Version::V2,
            tcp("[2001:db8::7]:54321", "[2001:db8::1]:143"),
            input.len()
        ))
    );

    let local_cases: Vec<Vec<u8>> = vec![
        // A health check: LOCAL, UNSPEC, nothing.
        v2(0x20, 0x00, &[]),
        // LOCAL with an address block: skipped, family and all (spec: do not assume 0).
        v2(0x20, 0x11, &V2_TCP4[16..]),
        // LOCAL ignores even a family nobody assigned.
        v2(0x20, 0xff, &[1, 2, 3]),
        // PROXY over UNSPEC: the real endpoints.
        v2(0x21, 0x00, &[9; 7]),
        // UDP and UNIX fall back to UNSPEC.
        v2(0x21, 0x12, &V2_TCP4[16..]),
        v2(0x21, 0x22, &six),
        v2(0x21, 0x31, &[b'/'; 216]),
        v2(0x21, 0x32, &[0; 216]),
    ];
    for input in local_cases {
        assert_eq!(
            decode_default(&input),
            Ok(header(Version::V2, Addresses::Local, input.len())),
            "{input:02x?}"
        );
    }
}

#[test]
fn v2_headers_that_are_refused() {
    use ProxyHeaderError::*;
    let mut too_long = V2_SIGNATURE.to_vec();
    too_long.extend_from_slice(&[0x21, 0x11, 0x03, 0xf1]);
    let mut tlv_overrun = V2_TCP4[16..].to_vec();
    tlv_overrun.extend_from_slice(&[0x01, 0x00, 0x05, b'i', b'm']);
    let cases: Vec<(Vec<u8>, ProxyHeaderError)> = vec![
        (v2(0x11, 0x11, &V2_TCP4[16..]), V2Version(1)),
        (v2(0x31, 0x11, &V2_TCP4[16..]), V2Version(3)),
        (v2(0x22, 0x11, &V2_TCP4[16..]), V2Command(2)),
        (v2(0x2f, 0x00, &[]), V2Command(0xf)),
        (v2(0x21, 0x41, &V2_TCP4[16..]), V2Family(0x41)),
        (v2(0x21, 0x13, &V2_TCP4[16..]), V2Family(0x13)),
        // 16 + 1009 = 1025 octets: refused from the fixed part alone.
        (
            too_long,
            V2TooLong {
                len: 1_025,
                max: 1_024,
            },
        ),
        (
            v2(0x21, 0x11, &V2_TCP4[16..24]),
            V2ShortAddresses { len: 8, needed: 12 },
        ),
        (
            v2(0x21, 0x21, &V2_TCP4[16..]),
            V2ShortAddresses {
                len: 12,
                needed: 36,
            },
        ),
        (
            v2(0x21, 0x31, &[0; 215]),
            V2ShortAddresses {
                len: 215,
                needed: 216,
            },
        ),
        (v2(0x21, 0x11, &tlv_overrun), V2Tlv),
        (
            v2(0x21, 0x11, &[&V2_TCP4[16..], &[0x04, 0x00][..]].concat()),
            V2Tlv,
        ),
        (b"\r\n\r\n\0\r\nQUIT\r".to_vec(), NotProxy),
        (b"\r\nGET / HTTP/1.1".to_vec(), NotProxy),
    ];
    for (input, want) in cases {
        assert_eq!(decode_default(&input), Err(want), "{input:02x?}");
    }
}

#[test]
fn v2_errors_come_as_soon_as_their_octet_does() {
    // Version and command at the 13th octet, family at the 14th: refused before the length.
    assert_eq!(
        decode_default(&v2(0x11, 0x11, &[])[..13]),
        Err(ProxyHeaderError::V2Version(1))
    );
    assert_eq!(
        decode_default(&v2(0x21, 0x51, &[])[..14]),
        Err(ProxyHeaderError::V2Family(0x51))
    );
}

#[test]
fn the_v2_limit_is_the_limits() {
    let input = v2(0x21, 0x31, &[0; 216]);
    assert!(matches!(decode_default(&input), Ok(Decoded::Header { .. })));
    let small = Limits { max_v2_len: 200 };
    assert_eq!(
        decode(&input, &small),
        Err(ProxyHeaderError::V2TooLong { len: 232, max: 200 })
    );
}

#[test]
fn crc32c_is_castagnoli_and_checked_when_sent() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    let mut block = V2_TCP4[16..].to_vec();
    block.extend_from_slice(&[0x03, 0x00, 0x04, 0, 0, 0, 0]);
    let mut input = v2(0x21, 0x11, &block);
    let sum = crc32c(&input);
    let at = input.len() - 4;
    input[at..].copy_from_slice(&sum.to_be_bytes());
    assert_eq!(
        decode_default(&input),
        Ok(header(
            Version::V2,
            tcp("192.0.2.10:51234", "198.51.100.5:993"),
            input.len()
        ))
    );
    // One address bit changed in transit.
    input[17] ^= 1;
    assert_eq!(decode_default(&input), Err(ProxyHeaderError::V2Checksum));
    // A checksum TLV of the wrong size.
    let mut block = V2_TCP4[16..].to_vec();
    block.extend_from_slice(&[0x03, 0x00, 0x02, 0, 0]);
    assert_eq!(
        decode_default(&v2(0x21, 0x11, &block)),
        Err(ProxyHeaderError::V2Tlv)
    );
}

#[test]
fn writers_map_mixed_families_and_local() {
    let mut out = Vec::new();
    write_v2(&Addresses::Local, &mut out);
    assert_eq!(out, v2(0x20, 0x00, &[]));
    assert_eq!(write_v1(&Addresses::Local), "PROXY UNKNOWN\r\n");
    // An IPv4 client of an IPv6 listener: both written as IPv6.
    let mixed = tcp("192.0.2.7:40000", "[2001:db8::1]:993");
    assert_eq!(
        write_v1(&mixed),
        "PROXY TCP6 ::ffff:192.0.2.7 2001:db8::1 40000 993\r\n"
    );
    let mut out = Vec::new();
    write_v2(&mixed, &mut out);
    assert_eq!(&out[12..16], &[0x21, 0x21, 0x00, 36]);
    // IPv4-mapped on both sides: written as IPv4.
    let mapped = tcp("[::ffff:192.0.2.7]:40000", "[::ffff:192.0.2.1]:993");
    assert_eq!(
        write_v1(&mapped),
        "PROXY TCP4 192.0.2.7 192.0.2.1 40000 993\r\n"
    );
    round_trip(&mixed);
    round_trip(&mapped);
}

#[test]
fn the_fuzz_checks_hold_on_the_known_answers() {
    let mut inputs: Vec<Vec<u8>> = vec![
        V2_TCP4.to_vec(),
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nmore".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        format!("PROXY TCP6 {FFFF6} {FFFF6} 65535 65535\r\n").into_bytes(),
        v2(0x21, 0x31, &[0; 216]),
        v2(0x20, 0x00, &[]),
    ];
    inputs.push([V2_TCP4.as_slice(), b"\x16\x03\x01"].concat());
    for input in inputs {
        proxy_header(&input);
    }
}

fn socket_address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

/// TLVs a balancer might add (never a CRC32C, which must match): type, value.
fn tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec(
        (
            any::<u8>().prop_filter("not CRC32C", |t| *t != 0x03),
            proptest::collection::vec(any::<u8>(), 0..40),
        ),
        0..4,
    )
}

proptest! {
    #[test]
    fn written_headers_read_back_however_they_arrive(
        source in socket_address(),
        destination in socket_address(),
        extra in tlvs(),
        trailing in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let addresses = Addresses::Tcp { source, destination };
        round_trip(&addresses);
        // v2 with TLVs added behind the addresses, then the connection's first octets.
        let mut written = Vec::new();
        write_v2(&addresses, &mut written);
        for (kind, value) in &extra {
            written.push(*kind);
            written.extend_from_slice(&u16::try_from(value.len()).unwrap().to_be_bytes());
            written.extend_from_slice(value);
        }
        let len = u16::try_from(written.len() - V2_FIXED_LEN).unwrap();
        written[14..16].copy_from_slice(&len.to_be_bytes());
        let header_len = written.len();
        written.extend_from_slice(&trailing);
        let decoded = decode(&written, &Limits::default());
        prop_assert!(
            matches!(decoded, Ok(Decoded::Header { consumed, .. }) if consumed == header_len),
            "{:?}", decoded
        );
        check(&written, &Limits::default());
        check(&written, &fuzzing::FUZZ_LIMITS);
        let mut v1 = write_v1(&addresses).into_bytes();
        v1.extend_from_slice(&trailing);
        check(&v1, &Limits::default());
    }

    #[test]
    fn random_octets_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..160)) {
        proxy_header(&data);
    }

    #[test]
    fn damaged_headers_keep_the_invariants(
        source in socket_address(),
        destination in socket_address(),
        v1 in any::<bool>(),
        at in any::<prop::sample::Index>(),
        octet in any::<u8>(),
    ) {
        let addresses = Addresses::Tcp { source, destination };
        let mut written = if v1 {
            write_v1(&addresses).into_bytes()
        } else {
            let mut out = Vec::new();
            write_v2(&addresses, &mut out);
            out
        };
        let at = at.index(written.len());
        written[at] = octet;
        proxy_header(&written);
    }
}

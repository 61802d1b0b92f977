//! Base64 as SASL uses it on the wire (RFC 4648 §4, standard alphabet).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;

use crate::{SaslError, MAX_ENCODED_RESPONSE_LEN, MAX_RESPONSE_LEN};

/// Standard alphabet, padding optional (but complete if present) on input, always written on output.
///
/// RFC 4648 wants padding, but a missing `=` is unambiguous and some hand-rolled clients
/// drop it; rejecting them would buy nothing. Everything else stays strict: no whitespace,
/// no URL-safe alphabet, no non-zero trailing bits (a non-canonical encoding is a sign of a
/// broken or probing client, and accepting it would let two lines decode to one token).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes one base64 SASL response line (without CRLF).
///
/// Lines that could decode to more than [`MAX_RESPONSE_LEN`] octets are rejected before any
/// allocation. An empty line decodes to an empty vector; the protocol meaning of empty
/// lines, `=` and `*` is handled by [`crate::ClientMessage::from_line`].
pub fn decode_base64(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    if line.len() > MAX_ENCODED_RESPONSE_LEN {
        return Err(SaslError::TooLong {
            len: line.len(),
            max: MAX_ENCODED_RESPONSE_LEN,
        });
    }
    // Indifferent mode would take partial padding ("AQ="); padding is all or nothing.
    if line.ends_with(b"=") && line.len() % 4 != 0 {
        return Err(SaslError::InvalidBase64);
    }
    let decoded = ENGINE.decode(line).map_err(|_| SaslError::InvalidBase64)?;
    if decoded.len() > MAX_RESPONSE_LEN {
        return Err(SaslError::TooLong {
            len: decoded.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    Ok(decoded)
}

/// Encodes a challenge or client response for the wire, with padding.
pub fn encode_base64(data: &[u8]) -> String {
    ENGINE.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        type Row<'a> = (&'a [u8], Result<&'a [u8], SaslError>);
        let table: &[Row] = &[
            (b"", Ok(b"")),
            (b"AQ==", Ok(b"\x01")),
            (b"AQ", Ok(b"\x01")),
            (b"biws", Ok(b"n,,")),
            (b"YWI=", Ok(b"ab")),
            (b"YWI", Ok(b"ab")),
            (b"AQ=", Err(SaslError::InvalidBase64)),
            (b"A", Err(SaslError::InvalidBase64)),
            (b"=", Err(SaslError::InvalidBase64)),
            (b"*", Err(SaslError::InvalidBase64)),
            (b"AQ== ", Err(SaslError::InvalidBase64)),
            (b"A Q==", Err(SaslError::InvalidBase64)),
            (b"_-8=", Err(SaslError::InvalidBase64)),
            // trailing bits set: "AR==" would decode to 0x01 too if accepted
            (b"AR==", Err(SaslError::InvalidBase64)),
        ];
        for (input, expected) in table {
            let got = decode_base64(input);
            assert_eq!(
                got.as_deref().map_err(Clone::clone),
                expected.clone(),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn encodes_with_padding() {
        assert_eq!(encode_base64(b"\x01"), "AQ==");
        assert_eq!(encode_base64(b""), "");
        assert_eq!(encode_base64(b"n,,"), "biws");
    }

    #[test]
    fn limits() {
        let max = vec![b'x'; MAX_RESPONSE_LEN];
        let line = encode_base64(&max);
        assert_eq!(
            decode_base64(line.as_bytes()).map(|d| d.len()),
            Ok(MAX_RESPONSE_LEN)
        );

        let over = encode_base64(&vec![b'x'; MAX_RESPONSE_LEN + 1]);
        assert!(matches!(
            decode_base64(over.as_bytes()),
            Err(SaslError::TooLong { .. })
        ));
        // 23,212 encoded characters without padding can carry 17,409 octets: checked after
        // decoding too.
        let sneaky = vec![b'A'; MAX_ENCODED_RESPONSE_LEN];
        assert_eq!(
            decode_base64(&sneaky),
            Err(SaslError::TooLong {
                len: 17_409,
                max: MAX_RESPONSE_LEN
            })
        );
        let huge = vec![b'A'; 1_000_000];
        assert!(matches!(
            decode_base64(&huge),
            Err(SaslError::TooLong { .. })
        ));
    }
}

//! SASL message handling for bearergate: OAUTHBEARER (RFC 7628), XOAUTH2 (Google/Microsoft)
//! and PLAIN (RFC 4616), plus the server-side exchange state machine the IMAP, SMTP and
//! ManageSieve sessions drive.
//!
//! Nothing here does I/O. The session hands in one client message at a time (already
//! un-framed from its protocol line, see [`ClientMessage::from_line`]) and gets back a
//! [`ServerStep`] telling it what to send. Token validation happens outside: the exchange
//! stops at [`ServerStep::Validate`] and the session reports the verdict with
//! [`ServerExchange::accept`] or [`ServerExchange::refuse`].
//!
//! Tokens and passwords are kept in [`SecretString`] from the moment they are parsed, so
//! `{:?}` on any type of this crate never shows them; errors never carry client bytes.
//!
//! ```
//! use sasl::{ChallengeError, ChallengeStatus, Failure, Mechanism, ServerExchange, ServerStep};
//!
//! // C: t1 AUTHENTICATE OAUTHBEARER <initial response>
//! let line = b"biwsAWF1dGg9QmVhcmVyIG1GXzkuQjVmLTQuMUpxTQEB";
//! let mut exchange = ServerExchange::new(Mechanism::OAuthBearer)
//!     .with_discovery(sasl::Discovery { scope: Some("mail".into()), openid_configuration: None });
//! let ServerStep::Validate(credentials) = exchange.step_line(line) else { unreachable!() };
//! assert_eq!(credentials.authzid, None);
//! // ... the validator refuses the token:
//! let json = exchange
//!     .refuse(ChallengeError::new(ChallengeStatus::InvalidToken))
//!     .expect("called right after Validate");
//! assert_eq!(sasl::encode_base64(&json), "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIn0="); // S: + ...
//! // C: AQ==
//! assert!(matches!(exchange.step_line(b"AQ=="), ServerStep::Failed(Failure::Refused)));
//! // S: t1 NO [AUTHENTICATIONFAILED] ...
//! ```
#![forbid(unsafe_code)]
#![deny(missing_debug_implementations)]
#![warn(missing_docs)]

mod bearer;
mod challenge;
mod encoding;
mod error;
mod gs2;
mod oauthbearer;
mod password;
mod plain;
mod server;
mod xoauth2;

pub use secrecy::{ExposeSecret, SecretString};

pub use bearer::is_b64token;
pub use challenge::{ChallengeError, ChallengeStatus, Discovery};
pub use encoding::{decode_base64, encode_base64};
pub use error::{Fault, SaslError, WrongState};
pub use oauthbearer::{oauthbearer_client_response, parse_oauthbearer};
pub use password::{PasswordCredentials, PasswordExchange, PasswordMechanism, PasswordStep};
pub use plain::{parse_plain, plain_client_response, PlainCredentials};
pub use server::{ClientMessage, Failure, ServerExchange, ServerStep};
pub use xoauth2::{parse_xoauth2, xoauth2_client_response};

/// Longest bearer token accepted, in octets: 16 KiB.
///
/// JWT access tokens are typically 1–4 KiB, but an Entra ID token lists the user's groups
/// (up to 200 of them, 39 octets each in the JSON, before it switches to an overage
/// claim), which takes it to about 12 KiB; 16 KiB leaves room for fat tokens with many
/// claims while bounding what one unauthenticated client can make us hold. A longer token
/// is refused as too long ([`SaslError::TooLong`]), never truncated (a truncated token
/// fails in baffling ways).
pub const MAX_TOKEN_LEN: usize = 16 * 1_024;

/// Room in a client response for everything but the token: 1 KiB. That is the GS2 header
/// with its authorization identity, `host=` and `port=`, `auth=Bearer ` and the `^A`
/// separators: about 40 octets plus the user name in practice, a few hundred with a long
/// e-mail address and host name.
pub const MAX_RESPONSE_OVERHEAD: usize = 1_024;

/// Largest decoded client response accepted, in octets: 17,408, a [`MAX_TOKEN_LEN`] token
/// and [`MAX_RESPONSE_OVERHEAD`]. Longer responses are rejected ([`SaslError::TooLong`]),
/// never truncated.
pub const MAX_RESPONSE_LEN: usize = MAX_TOKEN_LEN + MAX_RESPONSE_OVERHEAD;

/// Largest base64 line that can decode to [`MAX_RESPONSE_LEN`] octets: 23,212.
///
/// Sessions must accept protocol lines at least this long (plus command overhead) for
/// AUTHENTICATE/AUTH, otherwise the limit above is never reached and large tokens fail at
/// the framing layer with a less helpful error. The codec's line limits
/// (`codec::limits::MAX_AUTH_LINE`) are this plus 1 KiB; the session crate checks that
/// the two agree.
pub const MAX_ENCODED_RESPONSE_LEN: usize = MAX_RESPONSE_LEN.div_ceil(3) * 4;

/// Server-side mechanisms we offer.
///
/// PLAIN is deliberately absent: it is only parsed/built for backend login and a possible
/// password fallback, never offered by the OAuth exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// RFC 7628 OAUTHBEARER.
    OAuthBearer,
    /// Google/Microsoft XOAUTH2.
    XOAuth2,
}

impl Mechanism {
    /// Every mechanism, in the order we advertise them (the standard one first).
    pub const ALL: [Mechanism; 2] = [Mechanism::OAuthBearer, Mechanism::XOAuth2];

    /// Looks a mechanism up by its SASL name; case-insensitive because RFC 4422 §3.1 names
    /// are compared that way and clients send `authenticate xoauth2` in lower case.
    pub fn from_name(name: &[u8]) -> Option<Mechanism> {
        Mechanism::ALL
            .into_iter()
            .find(|m| m.name().as_bytes().eq_ignore_ascii_case(name))
    }

    /// The registered SASL name, as written in capabilities.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::OAuthBearer => "OAUTHBEARER",
            Mechanism::XOAuth2 => "XOAUTH2",
        }
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a client presented with OAUTHBEARER or XOAUTH2.
///
/// `Debug` never shows the token: [`SecretString`] prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct BearerCredentials {
    /// Which mechanism carried these credentials (decides the error challenge format).
    pub mechanism: Mechanism,
    /// The identity the client wants to act as: OAUTHBEARER `a=` (unescaped) or XOAUTH2
    /// `user=`. `None` when OAUTHBEARER had an empty authzid; the identity then comes from
    /// the token alone.
    pub authzid: Option<String>,
    /// The bearer token (RFC 6750 b64token), already checked for its character set.
    pub token: SecretString,
    /// OAUTHBEARER `host=`: the server name the client believes it talks to (advisory).
    pub host: Option<String>,
    /// OAUTHBEARER `port=` (advisory).
    pub port: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_are_case_insensitive() {
        assert_eq!(
            Mechanism::from_name(b"oauthbearer"),
            Some(Mechanism::OAuthBearer)
        );
        assert_eq!(Mechanism::from_name(b"XoAuth2"), Some(Mechanism::XOAuth2));
        assert_eq!(Mechanism::from_name(b"PLAIN"), None);
        assert_eq!(Mechanism::from_name(b"XOAUTH"), None);
        assert_eq!(Mechanism::from_name(b""), None);
        assert_eq!(Mechanism::OAuthBearer.name(), "OAUTHBEARER");
        assert_eq!(Mechanism::XOAuth2.to_string(), "XOAUTH2");
    }

    #[test]
    fn encoded_limit_matches_decoded_limit() {
        assert_eq!(MAX_RESPONSE_LEN, 17_408);
        assert_eq!(MAX_ENCODED_RESPONSE_LEN, 23_212);
        let max = vec![0u8; MAX_RESPONSE_LEN];
        assert_eq!(encode_base64(&max).len(), MAX_ENCODED_RESPONSE_LEN);
    }

    /// The sizes the sessions promise: a 16 KiB token passes either mechanism with a long
    /// user and host name; one octet more is "too long", never "invalid".
    #[test]
    fn largest_token_passes_one_more_octet_is_too_long() {
        let user = format!("{}@{}.example.com", "u".repeat(64), "d".repeat(180));
        let host = format!("{}.example.com", "h".repeat(240));
        for mechanism in Mechanism::ALL {
            for len in [MAX_TOKEN_LEN, MAX_TOKEN_LEN + 1] {
                let token = "t".repeat(len);
                let message = match mechanism {
                    Mechanism::OAuthBearer => {
                        oauthbearer_client_response(Some(&user), &token, Some(&host), Some(993))
                    }
                    Mechanism::XOAuth2 => xoauth2_client_response(&user, &token),
                };
                let Ok(message) = message else {
                    panic!("{mechanism}: builder refused a {len}-octet token")
                };
                assert!(message.len() <= MAX_TOKEN_LEN + 1 + MAX_RESPONSE_OVERHEAD);
                let line = encode_base64(&message);
                let mut exchange = ServerExchange::new(mechanism);
                match exchange.step_line(line.as_bytes()) {
                    ServerStep::Validate(credentials) if len == MAX_TOKEN_LEN => {
                        assert_eq!(credentials.token.expose_secret().len(), len);
                    }
                    ServerStep::Failed(Failure::Malformed(SaslError::TooLong {
                        len: seen,
                        max,
                    })) if len > MAX_TOKEN_LEN => {
                        assert_eq!((seen, max), (len, MAX_TOKEN_LEN));
                    }
                    other => panic!("{mechanism}, {len}-octet token: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn over_long_base64_is_too_long_not_invalid() {
        let line = vec![b'A'; MAX_ENCODED_RESPONSE_LEN + 4];
        let mut exchange = ServerExchange::new(Mechanism::XOAuth2);
        assert!(matches!(
            exchange.step_line(&line),
            ServerStep::Failed(Failure::Undecodable(SaslError::TooLong { .. }))
        ));
    }
}

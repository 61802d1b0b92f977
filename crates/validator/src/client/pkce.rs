//! The authorization request of the code flow (RFC 6749 §4.1.1) with PKCE (RFC 7636) and
//! its `state`: values made from random bytes the caller supplies, so that they are
//! testable against the RFC's vectors.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A PKCE pair: the verifier stays here until the code is redeemed; the S256 challenge goes
/// into the authorization URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// `code_verifier`: 43 characters of base64url (RFC 7636 §4.1).
    pub verifier: SecretString,
    /// `code_challenge` = BASE64URL(SHA256(verifier)) (RFC 7636 §4.2).
    pub challenge: String,
}

impl Pkce {
    /// The pair for 32 random octets (RFC 7636 §4.1's recommendation).
    pub fn from_random(octets: &[u8; 32]) -> Self {
        let verifier = URL_SAFE_NO_PAD.encode(octets);
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self {
            verifier: SecretString::from(verifier),
            challenge,
        }
    }
}

/// `state` for 16 random octets: unguessable, URL-safe.
pub fn state_from_random(octets: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(octets)
}

/// What goes into one authorization URL.
#[derive(Debug)]
pub struct AuthorizationRequest<'a> {
    /// The issuer's `authorization_endpoint`.
    pub endpoint: &'a Url,
    /// Our client id.
    pub client_id: &'a str,
    /// Where the browser brings the code back (a loopback address of ours).
    pub redirect_uri: &'a str,
    /// Space-separated scopes; empty leaves `scope` out.
    pub scope: &'a str,
    /// RFC 8707 resource indicators.
    pub resources: &'a [String],
    /// The `state` to expect back.
    pub state: &'a str,
    /// The PKCE pair; only its challenge is sent.
    pub pkce: &'a Pkce,
}

impl AuthorizationRequest<'_> {
    /// The URL to open in a browser: the endpoint's own query kept, ours appended.
    pub fn url(&self) -> Url {
        let mut url = self.endpoint.clone();
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri);
            if !self.scope.is_empty() {
                query.append_pair("scope", self.scope);
            }
            for resource in self.resources {
                query.append_pair("resource", resource);
            }
            query
                .append_pair("state", self.state)
                .append_pair("code_challenge", &self.pkce.challenge)
                .append_pair("code_challenge_method", "S256");
        }
        url
    }
}

/// Whether `verifier` has the RFC 7636 §4.1 shape (43 to 128 unreserved characters).
pub fn is_verifier(verifier: &SecretString) -> bool {
    let v = verifier.expose_secret();
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    #[test]
    fn rfc_7636_appendix_b() {
        let octets = [
            116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
            37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
        ];
        let pkce = Pkce::from_random(&octets);
        assert_eq!(
            pkce.verifier.expose_secret(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
        assert_eq!(
            pkce.challenge,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(is_verifier(&pkce.verifier));
        assert!(!format!("{pkce:?}").contains("dBjft"));
    }

    #[test]
    fn authorization_url_carries_every_parameter() {
        let endpoint = Url::parse("https://idp.example.test/authorize?tenant=a").unwrap();
        let pkce = Pkce::from_random(&[7; 32]);
        let resources = ["imap://mail.example.test".to_owned()];
        let url = AuthorizationRequest {
            endpoint: &endpoint,
            client_id: "bearergate",
            redirect_uri: "http://127.0.0.1:4711/",
            scope: "urn:ietf:params:oauth:scope:mail offline_access",
            resources: &resources,
            state: &state_from_random(&[1; 16]),
            pkce: &pkce,
        }
        .url();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("tenant"), Some("a"));
        assert_eq!(get("response_type"), Some("code"));
        assert_eq!(get("redirect_uri"), Some("http://127.0.0.1:4711/"));
        assert_eq!(
            get("scope"),
            Some("urn:ietf:params:oauth:scope:mail offline_access")
        );
        assert_eq!(get("resource"), Some("imap://mail.example.test"));
        assert_eq!(get("code_challenge"), Some(pkce.challenge.as_str()));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("state").map(str::len), Some(22));
        assert!(!url.as_str().contains(pkce.verifier.expose_secret()));
    }
}

//! The JSON error challenge sent before the final failure (RFC 7628 §3.2.2; Google's
//! XOAUTH2 page for the XOAUTH2 variant).
//!
//! Written by hand: three string members do not justify a serde_json dependency in a crate
//! that parses untrusted input, and the exact member order matches the RFC 7628 §4.3 bytes.

use crate::Mechanism;

/// Why the token was refused, mapped per mechanism to the challenge's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeStatus {
    /// Token missing, malformed, expired, revoked or for someone else.
    /// OAUTHBEARER `invalid_token`, XOAUTH2 `401`.
    InvalidToken,
    /// Token valid but lacks the required scope.
    /// OAUTHBEARER `insufficient_scope`, XOAUTH2 `403`.
    InsufficientScope,
    /// The request itself was malformed.
    /// OAUTHBEARER `invalid_request`, XOAUTH2 `400`. Note that Thunderbird-Android retries
    /// at once with a fresh token on `400`, so use this only when a retry could help.
    InvalidRequest,
}

impl ChallengeStatus {
    /// The `status` member for `mechanism`: an OAuth error code (IANA "OAuth Extensions
    /// Error Registry") for OAUTHBEARER, an HTTP-style status for XOAUTH2, as Google sends
    /// and as Thunderbird-Android interprets.
    pub fn as_str(&self, mechanism: Mechanism) -> &'static str {
        match (mechanism, self) {
            (Mechanism::OAuthBearer, ChallengeStatus::InvalidToken) => "invalid_token",
            (Mechanism::OAuthBearer, ChallengeStatus::InsufficientScope) => "insufficient_scope",
            (Mechanism::OAuthBearer, ChallengeStatus::InvalidRequest) => "invalid_request",
            (Mechanism::XOAuth2, ChallengeStatus::InvalidToken) => "401",
            (Mechanism::XOAuth2, ChallengeStatus::InsufficientScope) => "403",
            (Mechanism::XOAuth2, ChallengeStatus::InvalidRequest) => "400",
        }
    }
}

/// What a refused client is told about where to get a good token (RFC 7628 §3.2.2): the
/// scope to ask for and the issuer's discovery document. One value per issuer, carried from
/// the configuration through the refusal to the challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// The scope the client should ask for.
    pub scope: Option<String>,
    /// The `openid-configuration` URL.
    pub openid_configuration: Option<String>,
}

/// Contents of the error challenge. Absent members are omitted from the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeError {
    /// Why the token was refused.
    pub status: ChallengeStatus,
    /// The scope the client should ask for. RFC 7628 §3.2.2 prefers a single scope because
    /// some clients mishandle space-separated lists.
    pub scope: Option<String>,
    /// OAUTHBEARER `openid-configuration`: an https URL of an OpenID Connect discovery
    /// document. Not sent with XOAUTH2, whose clients do not know the member.
    pub openid_configuration: Option<String>,
}

impl ChallengeError {
    /// A challenge with only a status.
    pub fn new(status: ChallengeStatus) -> Self {
        ChallengeError {
            status,
            scope: None,
            openid_configuration: None,
        }
    }

    /// The same challenge, telling the client what `discovery` says.
    pub fn with_discovery(self, discovery: Discovery) -> Self {
        ChallengeError {
            scope: discovery.scope,
            openid_configuration: discovery.openid_configuration,
            ..self
        }
    }

    /// The unencoded JSON challenge for `mechanism`, without whitespace or trailing newline.
    ///
    /// OAUTHBEARER: `{"status":"invalid_token","scope":"…","openid-configuration":"…"}`.
    /// XOAUTH2: `{"status":"401","schemes":"bearer","scope":"…"}` (Google's shape, with only
    /// the scheme we accept).
    pub fn to_json(&self, mechanism: Mechanism) -> Vec<u8> {
        let mut json = String::with_capacity(128);
        json.push('{');
        member(&mut json, "status", self.status.as_str(mechanism));
        if mechanism == Mechanism::XOAuth2 {
            member(&mut json, "schemes", "bearer");
        }
        if let Some(scope) = &self.scope {
            member(&mut json, "scope", scope);
        }
        if mechanism == Mechanism::OAuthBearer {
            if let Some(url) = &self.openid_configuration {
                member(&mut json, "openid-configuration", url);
            }
        }
        json.push('}');
        json.into_bytes()
    }
}

fn member(json: &mut String, name: &str, value: &str) {
    if !json.ends_with('{') {
        json.push(',');
    }
    json_string(json, name);
    json.push(':');
    json_string(json, value);
}

/// Writes `value` as a JSON string (RFC 8259 §7): quote, backslash and control characters
/// escaped, everything else (including non-ASCII) as UTF-8. Values come from configuration,
/// but a scope containing `"` must still not break the client's JSON parser.
fn json_string(json: &mut String, value: &str) {
    json.push('"');
    for c in value.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            '\u{8}' => json.push_str("\\b"),
            '\u{c}' => json.push_str("\\f"),
            c if u32::from(c) < 0x20 || c == '\u{7f}' => {
                json.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => json.push(c),
        }
    }
    json.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode_base64;

    #[test]
    fn rfc7628_4_3_challenge_byte_for_byte() {
        let challenge = ChallengeError {
            status: ChallengeStatus::InvalidToken,
            scope: Some("example_scope".into()),
            openid_configuration: Some("https://example.com/.well-known/openid-config".into()),
        };
        let json = challenge.to_json(Mechanism::OAuthBearer);
        assert_eq!(
            json,
            br#"{"status":"invalid_token","scope":"example_scope","openid-configuration":"https://example.com/.well-known/openid-config"}"#
        );
        assert_eq!(json.len(), 121);
        assert_eq!(
            encode_base64(&json),
            "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWcifQ=="
        );

        let cancel_variant = ChallengeError {
            openid_configuration: Some(
                "https://example.com/.well-known/openid-configuration".into(),
            ),
            ..challenge
        };
        assert_eq!(
            encode_base64(&cancel_variant.to_json(Mechanism::OAuthBearer)),
            "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0="
        );
    }

    #[test]
    fn dovecot_shapes() {
        // What Dovecot's passdb oauth2 sends (DESIGN.md), so clients see the same bytes.
        assert_eq!(
            ChallengeError::new(ChallengeStatus::InvalidToken).to_json(Mechanism::OAuthBearer),
            br#"{"status":"invalid_token"}"#
        );
        let mail = ChallengeError {
            scope: Some("mail".into()),
            openid_configuration: Some(
                "https://idp.example/.well-known/openid-configuration".into(),
            ),
            ..ChallengeError::new(ChallengeStatus::InvalidToken)
        };
        assert_eq!(
            mail.to_json(Mechanism::XOAuth2),
            br#"{"status":"401","schemes":"bearer","scope":"mail"}"#
        );
    }

    #[test]
    fn google_shape_and_statuses() {
        // Google's own example differs only in "bearer mac" and a trailing LF.
        let google = ChallengeError {
            scope: Some("https://mail.google.com/".into()),
            ..ChallengeError::new(ChallengeStatus::InvalidToken)
        };
        assert_eq!(
            google.to_json(Mechanism::XOAuth2),
            br#"{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}"#
        );
        let table = [
            (
                ChallengeStatus::InsufficientScope,
                Mechanism::OAuthBearer,
                r#"{"status":"insufficient_scope"}"#,
            ),
            (
                ChallengeStatus::InvalidRequest,
                Mechanism::OAuthBearer,
                r#"{"status":"invalid_request"}"#,
            ),
            (
                ChallengeStatus::InsufficientScope,
                Mechanism::XOAuth2,
                r#"{"status":"403","schemes":"bearer"}"#,
            ),
            (
                ChallengeStatus::InvalidRequest,
                Mechanism::XOAuth2,
                r#"{"status":"400","schemes":"bearer"}"#,
            ),
        ];
        for (status, mechanism, json) in table {
            assert_eq!(
                ChallengeError::new(status).to_json(mechanism),
                json.as_bytes()
            );
        }
    }

    #[test]
    fn escaping() {
        let nasty = ChallengeError {
            scope: Some("a\"b\\c\nd\re\tf\u{1}g\u{7f}h/ü€😀".into()),
            openid_configuration: Some("https://x/\"}".into()),
            ..ChallengeError::new(ChallengeStatus::InvalidToken)
        };
        assert_eq!(
            String::from_utf8(nasty.to_json(Mechanism::OAuthBearer)).unwrap(),
            r#"{"status":"invalid_token","scope":"a\"b\\c\nd\re\tf\u0001g\u007fh/ü€😀","openid-configuration":"https://x/\"}"}"#
        );
        let mut s = String::new();
        json_string(&mut s, "\u{8}\u{c}\u{1f}");
        assert_eq!(s, r#""\b\f\u001f""#);
    }
}

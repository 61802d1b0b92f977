//! Reading the issuer's answers, without I/O: an HTTP status and body in, a typed answer or
//! a [`RequestError`] that says whose fault it was out.

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::error::{printable, ErrorCode, Refusal, RequestError, MAX_DESCRIPTION_LEN};

/// Longest access or refresh token accepted: far above real ones (a few KiB), and the
/// longest token the proxy takes on a mail protocol (16 KiB) fits.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// A successful token endpoint answer (RFC 6749 §5.1).
#[derive(Debug, Clone)]
pub struct TokenAnswer {
    /// The access token.
    pub access_token: SecretString,
    /// Seconds until it expires, when the issuer said.
    pub expires_in: Option<u64>,
    /// A (new) refresh token; absent when the issuer keeps the old one valid or gives none.
    pub refresh_token: Option<SecretString>,
    /// The scopes granted, when the issuer said.
    pub scope: Option<String>,
}

/// A device authorization answer (RFC 8628 §3.2).
#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    /// What the device polls with.
    pub device_code: SecretString,
    /// What the person types (printable characters only, at most 64).
    pub user_code: String,
    /// Where the person types it.
    pub verification_uri: String,
    /// The same page with the code filled in, when the issuer offers one.
    pub verification_uri_complete: Option<String>,
    /// Seconds the codes live.
    pub expires_in: u64,
    /// Seconds between polls, when the issuer said (RFC 8628 §3.2 default: 5).
    pub interval: Option<u64>,
}

/// The JSON object of a 200 answer; every other status becomes the error it stands for.
pub fn json_answer(status: u16, body: &[u8]) -> Result<Map<String, Value>, RequestError> {
    let parsed = serde_json::from_slice::<Value>(body);
    if status == 200 {
        return match parsed {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(RequestError::server(
                Some(status),
                "the answer is JSON but not an object",
            )),
            Err(e) => Err(RequestError::server(
                Some(status),
                format!("the answer is not JSON: {e}"),
            )),
        };
    }
    // RFC 6749 §5.2: errors come as 400 (401 for invalid_client); a 5xx may carry one too
    // (temporarily_unavailable). An error object on any other status is taken at its word.
    if let Ok(Value::Object(map)) = &parsed {
        if let Some(code) = map.get("error").and_then(Value::as_str) {
            let description = map
                .get("error_description")
                .and_then(Value::as_str)
                .map(|d| printable(d, MAX_DESCRIPTION_LEN))
                .filter(|d| !d.is_empty());
            return Err(RequestError::Refused(Refusal {
                status,
                code: ErrorCode::parse(code),
                description,
            }));
        }
    }
    let what = match status {
        300..=399 => "a redirect (not followed: the request would be resent elsewhere)",
        429 => "too many requests",
        500..=599 => "a server error",
        _ => "an unexpected status without an OAuth error",
    };
    Err(RequestError::server(
        Some(status),
        format!("the issuer answered HTTP {status}, {what}"),
    ))
}

/// Reads a token endpoint answer (RFC 6749 §5.1).
pub fn token_answer(map: &Map<String, Value>) -> Result<TokenAnswer, RequestError> {
    let access_token = token(map, "access_token")?
        .ok_or_else(|| malformed("the token answer has no access_token"))?;
    match map.get("token_type").and_then(Value::as_str) {
        // RFC 6749 §7.1: case-insensitive; RFC 6750 defines "Bearer".
        Some(kind) if kind.eq_ignore_ascii_case("bearer") => {}
        Some(kind) => {
            return Err(malformed(&format!(
                "the token type is {:?}, not Bearer",
                printable(kind, 40)
            )))
        }
        None => return Err(malformed("the token answer has no token_type")),
    }
    Ok(TokenAnswer {
        access_token,
        expires_in: seconds(map, "expires_in")?,
        refresh_token: token(map, "refresh_token")?,
        scope: map
            .get("scope")
            .and_then(Value::as_str)
            .map(|s| printable(s, 1_000)),
    })
}

/// Reads a device authorization answer (RFC 8628 §3.2).
pub fn device_answer(map: &Map<String, Value>) -> Result<DeviceAuthorization, RequestError> {
    let device_code = token(map, "device_code")?
        .ok_or_else(|| malformed("the device answer has no device_code"))?;
    let text = |name: &str| -> Result<Option<String>, RequestError> {
        match map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if is_shown_safely(s) => Ok(Some(s.clone())),
            Some(_) => Err(malformed(&format!(
                "the device answer's {name} is malformed"
            ))),
        }
    };
    let user_code = text("user_code")?
        .filter(|code| code.len() <= 64)
        .ok_or_else(|| malformed("the device answer has no usable user_code"))?;
    let verification_uri = text("verification_uri")?
        // Google still sends the draft's name.
        .or(text("verification_url")?)
        .ok_or_else(|| malformed("the device answer has no verification_uri"))?;
    Ok(DeviceAuthorization {
        device_code,
        user_code,
        verification_uri,
        verification_uri_complete: text("verification_uri_complete")?,
        expires_in: seconds(map, "expires_in")?
            .ok_or_else(|| malformed("the device answer has no expires_in"))?,
        interval: seconds(map, "interval")?,
    })
}

/// Text shown to the person as it is: printable ASCII without spaces, at most 2,048 bytes
/// (a URL or a user code; anything else could carry terminal escapes or mislead).
fn is_shown_safely(text: &str) -> bool {
    !text.is_empty() && text.len() <= 2_048 && text.bytes().all(|b| b.is_ascii_graphic())
}

fn malformed(detail: &str) -> RequestError {
    RequestError::server(Some(200), detail)
}

/// A token member: printable ASCII without spaces (it is printed on one line and sent in
/// SASL), at most [`MAX_TOKEN_LEN`]; absent or `null` is `None`.
fn token(map: &Map<String, Value>, name: &str) -> Result<Option<SecretString>, RequestError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_TOKEN_LEN
                && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(SecretString::from(s.clone())))
        }
        Some(_) => Err(malformed(&format!("the answer's {name} is malformed"))),
    }
}

/// A number of seconds; some issuers send it as a string of digits.
fn seconds(map: &Map<String, Value>, name: &str) -> Result<Option<u64>, RequestError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| malformed(&format!("the answer's {name} is not a whole number"))),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| malformed(&format!("the answer's {name} is not a number"))),
        Some(_) => Err(malformed(&format!("the answer's {name} is not a number"))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use secrecy::ExposeSecret;

    use super::*;
    use crate::client::error::Fault;

    fn body(value: Value) -> Vec<u8> {
        value.to_string().into_bytes()
    }

    #[test]
    fn statuses_and_bodies_to_faults() {
        let table: [(u16, Vec<u8>, Fault); 10] = [
            (400, body(json!({"error": "invalid_grant"})), Fault::Grant),
            (401, body(json!({"error": "invalid_client"})), Fault::Ours),
            (400, body(json!({"error": "slow_down"})), Fault::Pending),
            (
                503,
                body(json!({"error": "temporarily_unavailable"})),
                Fault::Server,
            ),
            (503, b"<html>down</html>".to_vec(), Fault::Server),
            (502, Vec::new(), Fault::Server),
            (429, Vec::new(), Fault::Server),
            (302, Vec::new(), Fault::Server),
            (400, b"not json".to_vec(), Fault::Server),
            (200, b"[1]".to_vec(), Fault::Server),
        ];
        for (status, bytes, fault) in table {
            let error = json_answer(status, &bytes).unwrap_err();
            assert_eq!(
                error.fault(),
                fault,
                "{status} {:?}: {error:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        assert!(json_answer(200, b"{}").is_ok());
    }

    #[test]
    fn refusal_keeps_a_clean_description() {
        let error = json_answer(
            400,
            &body(json!({"error": "invalid_grant", "error_description": "gone\x1b[2J"})),
        )
        .unwrap_err();
        let RequestError::Refused(refusal) = error else {
            panic!("not a refusal")
        };
        assert_eq!(refusal.code, ErrorCode::InvalidGrant);
        assert_eq!(refusal.description.as_deref(), Some("gone[2J"));
    }

    #[test]
    fn token_answers() {
        let ok = json!({
            "access_token": "at-1", "token_type": "bearer", "expires_in": "3600",
            "refresh_token": "rt-1", "scope": "a b"
        });
        let answer = token_answer(ok.as_object().unwrap()).unwrap();
        assert_eq!(answer.access_token.expose_secret(), "at-1");
        assert_eq!(answer.expires_in, Some(3_600));
        assert_eq!(
            answer.refresh_token.as_ref().map(|t| t.expose_secret()),
            Some("rt-1")
        );
        assert!(!format!("{answer:?}").contains("at-1"));
        assert!(!format!("{answer:?}").contains("rt-1"));

        let bad = [
            json!({"token_type": "Bearer"}),
            json!({"access_token": "a", "token_type": "mac"}),
            json!({"access_token": "a"}),
            json!({"access_token": "a b", "token_type": "Bearer"}),
            json!({"access_token": "a\nb", "token_type": "Bearer"}),
            json!({"access_token": "a", "token_type": "Bearer", "expires_in": -1}),
            json!({"access_token": "a", "token_type": "Bearer", "refresh_token": 7}),
            json!({"access_token": "x".repeat(MAX_TOKEN_LEN + 1), "token_type": "Bearer"}),
        ];
        for value in bad {
            let error = token_answer(value.as_object().unwrap()).unwrap_err();
            assert_eq!(error.fault(), Fault::Server, "{value}");
        }
    }

    #[test]
    fn device_answers() {
        let ok = json!({
            "device_code": "dc", "user_code": "WDJB-MJHT",
            "verification_uri": "https://example.test/device",
            "verification_uri_complete": "https://example.test/device?user_code=WDJB-MJHT",
            "expires_in": 1800, "interval": 5
        });
        let answer = device_answer(ok.as_object().unwrap()).unwrap();
        assert_eq!(answer.user_code, "WDJB-MJHT");
        assert_eq!(answer.interval, Some(5));
        assert_eq!(answer.expires_in, 1_800);
        let google = json!({
            "device_code": "dc", "user_code": "ABC-DEF",
            "verification_url": "https://www.google.com/device", "expires_in": 1800
        });
        let answer = device_answer(google.as_object().unwrap()).unwrap();
        assert_eq!(answer.verification_uri, "https://www.google.com/device");
        assert_eq!(answer.interval, None);

        let bad = [
            json!({"user_code": "A", "verification_uri": "https://x", "expires_in": 1}),
            json!({"device_code": "d", "user_code": "A\x1b[1m", "verification_uri": "https://x", "expires_in": 1}),
            json!({"device_code": "d", "user_code": "A", "expires_in": 1}),
            json!({"device_code": "d", "user_code": "A", "verification_uri": "https://x"}),
        ];
        for value in bad {
            assert!(
                device_answer(value.as_object().unwrap()).is_err(),
                "{value}"
            );
        }
    }
}

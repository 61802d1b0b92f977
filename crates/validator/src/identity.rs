//! The identity a valid token stands for, and the pure evaluation of an RFC 7662 answer.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::InvalidReason;

/// Clock skew tolerated between us and the identity provider when checking `exp` and `nbf`.
/// None for now: the identity provider judged the token against its own clock a moment ago.
pub const CLOCK_LEEWAY: Duration = Duration::ZERO;

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The mail user, from the configured `username_claim`.
    pub user: String,
    /// The token's scopes (its `scope` member split on spaces).
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to, when the identity provider says.
    pub client_id: Option<String>,
    /// The token's `exp`, when it has one.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// True once `now` has reached the token's `exp` (plus [`CLOCK_LEEWAY`]).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| is_past(exp, now))
    }

    /// True when the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What an answer must show for its token to be accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Requirements<'a> {
    pub username_claim: &'a str,
    pub required_scopes: &'a [String],
}

/// Judges an RFC 7662 §2.2 response object at time `now`.
///
/// `active` must be JSON `true`; `exp`/`nbf` (NumericDate) are honoured; the user comes from
/// the configured claim and must be a non-empty string without control characters (it ends
/// up in the backend's LOGIN command); every required scope must be in `scope`.
pub(crate) fn evaluate(
    response: &Map<String, Value>,
    requirements: Requirements<'_>,
    now: SystemTime,
) -> Result<Identity, InvalidReason> {
    if response.get("active") != Some(&Value::Bool(true)) {
        return Err(InvalidReason::Inactive);
    }

    let expires_at = numeric_date(response, "exp")?;
    if expires_at.is_some_and(|exp| is_past(exp, now)) {
        return Err(InvalidReason::Expired);
    }
    if let Some(nbf) = numeric_date(response, "nbf")? {
        if nbf > now + CLOCK_LEEWAY {
            return Err(InvalidReason::NotYetValid);
        }
    }

    let user = user_claim(response, requirements.username_claim)?;

    let scopes: Vec<String> = match optional_str(response, "scope")? {
        Some(scope) => scope
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    if let Some(missing) = requirements
        .required_scopes
        .iter()
        .find(|required| !scopes.contains(required))
    {
        return Err(InvalidReason::MissingScope {
            scope: missing.clone(),
        });
    }

    let client_id = optional_str(response, "client_id")?.map(str::to_owned);

    Ok(Identity {
        user,
        scopes,
        client_id,
        expires_at,
    })
}

fn is_past(exp: SystemTime, now: SystemTime) -> bool {
    now >= exp + CLOCK_LEEWAY
}

pub(crate) fn user_claim(
    response: &Map<String, Value>,
    claim: &str,
) -> Result<String, InvalidReason> {
    let malformed = |problem| InvalidReason::Malformed {
        claim: claim.to_owned(),
        problem,
    };
    match response.get(claim) {
        None | Some(Value::Null) => Err(InvalidReason::NoUserClaim {
            claim: claim.to_owned(),
        }),
        Some(Value::String(user)) if user.is_empty() => Err(malformed("is empty")),
        Some(Value::String(user)) if user.chars().any(char::is_control) => {
            Err(malformed("contains control characters"))
        }
        Some(Value::String(user)) => Ok(user.clone()),
        Some(_) => Err(malformed("is not a string")),
    }
}

/// A string member that may be absent or `null`.
pub(crate) fn optional_str<'a>(
    response: &'a Map<String, Value>,
    claim: &str,
) -> Result<Option<&'a str>, InvalidReason> {
    match response.get(claim) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(InvalidReason::Malformed {
            claim: claim.to_owned(),
            problem: "is not a string",
        }),
    }
}

/// An RFC 7519 NumericDate member (seconds since the epoch, fractions allowed) that may be
/// absent or `null`.
fn numeric_date(
    response: &Map<String, Value>,
    claim: &str,
) -> Result<Option<SystemTime>, InvalidReason> {
    let malformed = || InvalidReason::Malformed {
        claim: claim.to_owned(),
        problem: "is not a NumericDate",
    };
    let since_epoch = match response.get(claim) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => Duration::from_secs(secs),
            (None, Some(secs)) => Duration::try_from_secs_f64(secs).map_err(|_| malformed())?,
            (None, None) => return Err(malformed()),
        },
        Some(_) => return Err(malformed()),
    };
    UNIX_EPOCH
        .checked_add(since_epoch)
        .map(Some)
        .ok_or_else(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW_SECS: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW_SECS)
    }

    fn judge(response: Value, required: &[&str]) -> Result<Identity, InvalidReason> {
        judge_claim(response, "username", required)
    }

    fn judge_claim(
        response: Value,
        claim: &str,
        required: &[&str],
    ) -> Result<Identity, InvalidReason> {
        let required: Vec<String> = required.iter().map(|s| (*s).to_owned()).collect();
        let Value::Object(map) = response else {
            panic!("test response must be an object");
        };
        evaluate(
            &map,
            Requirements {
                username_claim: claim,
                required_scopes: &required,
            },
            now(),
        )
    }

    #[test]
    fn rfc7662_example_is_accepted() {
        let identity = judge(
            json!({"active":true,"client_id":"l238j323ds-23ij4","username":"jdoe",
                   "scope":"read write dolphin","sub":"Z5O3upPC88QrAjx00dis",
                   "aud":"https://protected.example.net/resource",
                   "iss":"https://server.example.com/","exp":NOW_SECS + 600,
                   "iat":NOW_SECS - 60,"extension_field":"twenty-seven"}),
            &["write"],
        )
        .unwrap();
        assert_eq!(identity.user, "jdoe");
        assert_eq!(identity.scopes, ["read", "write", "dolphin"]);
        assert_eq!(identity.client_id.as_deref(), Some("l238j323ds-23ij4"));
        assert_eq!(
            identity.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(NOW_SECS + 600))
        );
        assert!(identity.has_scope("dolphin"));
        assert!(!identity.is_expired_at(now()));
        assert!(identity.is_expired_at(now() + Duration::from_secs(600)));
    }

    #[test]
    fn active_must_be_json_true() {
        let table = [
            json!({"username":"alice"}),
            json!({"active":false,"username":"alice"}),
            json!({"active":"true","username":"alice"}),
            json!({"active":1,"username":"alice"}),
            json!({"active":null,"username":"alice"}),
            json!({}),
        ];
        for response in table {
            assert_eq!(
                judge(response.clone(), &[]),
                Err(InvalidReason::Inactive),
                "{response}"
            );
        }
    }

    #[test]
    fn exp_is_honoured() {
        let at = |exp: Value| judge(json!({"active":true,"username":"a","exp":exp}), &[]);
        assert_eq!(at(json!(NOW_SECS - 1)), Err(InvalidReason::Expired));
        // exp == now: the token's lifetime ends at exp (RFC 7519 §4.1.4 "on or after").
        assert_eq!(at(json!(NOW_SECS)), Err(InvalidReason::Expired));
        assert!(at(json!(NOW_SECS + 1)).is_ok());
        assert!(at(json!(NOW_SECS as f64 + 0.5)).is_ok());
        assert!(at(Value::Null).unwrap().expires_at.is_none());
        for bad in [json!("1700000600"), json!(-5), json!(true), json!(1e300)] {
            assert!(
                matches!(at(bad.clone()), Err(InvalidReason::Malformed { ref claim, .. }) if claim == "exp"),
                "{bad}"
            );
        }
    }

    #[test]
    fn nbf_in_the_future_is_not_yet_valid() {
        let at = |nbf: u64| judge(json!({"active":true,"username":"a","nbf":nbf}), &[]);
        assert_eq!(at(NOW_SECS + 30), Err(InvalidReason::NotYetValid));
        assert!(at(NOW_SECS).is_ok());
        assert!(at(NOW_SECS - 30).is_ok());
    }

    #[test]
    fn required_scopes_are_enforced() {
        let response = json!({"active":true,"username":"a","scope":"openid  mail profile"});
        assert!(judge(response.clone(), &[]).is_ok());
        assert!(judge(response.clone(), &["mail"]).is_ok());
        assert!(judge(response.clone(), &["profile", "openid", "mail"]).is_ok());
        assert_eq!(
            judge(response.clone(), &["mail", "imap"]),
            Err(InvalidReason::MissingScope {
                scope: "imap".to_owned()
            })
        );
        // A substring is not a scope.
        assert_eq!(
            judge(response, &["mai"]),
            Err(InvalidReason::MissingScope {
                scope: "mai".to_owned()
            })
        );
        assert_eq!(
            judge(json!({"active":true,"username":"a"}), &["mail"]),
            Err(InvalidReason::MissingScope {
                scope: "mail".to_owned()
            })
        );
        assert!(matches!(
            judge(json!({"active":true,"username":"a","scope":["mail"]}), &["mail"]),
            Err(InvalidReason::Malformed { ref claim, .. }) if claim == "scope"
        ));
    }

    #[test]
    fn user_claim_rules() {
        assert_eq!(
            judge(json!({"active":true,"sub":"x"}), &[]),
            Err(InvalidReason::NoUserClaim {
                claim: "username".to_owned()
            })
        );
        assert_eq!(
            judge(json!({"active":true,"username":null}), &[]),
            Err(InvalidReason::NoUserClaim {
                claim: "username".to_owned()
            })
        );
        for bad in [
            json!(42),
            json!(["alice"]),
            json!({"name":"alice"}),
            json!(""),
            json!("alice\r\nA1 LOGOUT"),
        ] {
            let result = judge(json!({"active":true,"username":bad}), &[]);
            assert!(
                matches!(result, Err(InvalidReason::Malformed { ref claim, .. }) if claim == "username"),
                "{bad}: {result:?}"
            );
        }
        let identity = judge_claim(
            json!({"active":true,"email":"alice@example.org"}),
            "email",
            &[],
        )
        .unwrap();
        assert_eq!(identity.user, "alice@example.org");
    }

    #[test]
    fn client_id_is_optional() {
        let identity = judge(json!({"active":true,"username":"a"}), &[]).unwrap();
        assert_eq!(identity.client_id, None);
        assert!(identity.scopes.is_empty());
        assert!(matches!(
            judge(json!({"active":true,"username":"a","client_id":7}), &[]),
            Err(InvalidReason::Malformed { ref claim, .. }) if claim == "client_id"
        ));
    }

    #[test]
    fn reasons_display_without_secrets() {
        assert_eq!(InvalidReason::Inactive.to_string(), "token is not active");
        assert_eq!(
            InvalidReason::MissingScope {
                scope: "mail".into()
            }
            .to_string(),
            "token lacks required scope \"mail\""
        );
    }
}

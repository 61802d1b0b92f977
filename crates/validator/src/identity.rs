//! The identity a valid token stands for, and the pure checks of an RFC 7662 answer
//! (`active`, `exp`, `nbf`, and `iss`/`aud` when configured).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use crate::error::InvalidReason;
use crate::policy::PolicyUser;

/// Clock skew tolerated between us and the identity provider when checking `exp` and `nbf`
/// of an introspection answer. None: the identity provider judged the token against its own
/// clock a moment ago.
pub const CLOCK_LEEWAY: Duration = Duration::ZERO;

/// Who a valid token belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The mail user: the first configured user claim the token has, after the policy's
    /// domain and case rules. The identity a client claims must be this one.
    pub user: String,
    /// The claim [`Identity::user`] came from, for the log line that explains a mismatch.
    pub user_claim: String,
    /// The login at the backend: [`Identity::user`], or what `user_map` maps it to.
    pub backend_user: String,
    /// The name of the configured issuer that accepted the token.
    pub issuer: String,
    /// The token's scopes (`scope` split on spaces, or `scp`).
    pub scopes: Vec<String>,
    /// The OAuth client the token was issued to (`client_id`, else `azp`), when known.
    pub client_id: Option<String>,
    /// The token's `aud` (RFC 7519 §4.1.3; a string becomes a list of one), empty when it has
    /// none. RFC 8707 resource indicators such as `imap://mail.example.com` name the mail
    /// services the token is for; the proxy holds a login to them.
    pub audiences: Vec<String>,
    /// The token's `exp`, when it has one.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// Assembles an identity from what the policy found.
    pub(crate) fn new(found: PolicyUser, issuer: &str, expires_at: Option<SystemTime>) -> Self {
        Self {
            user: found.user,
            user_claim: found.claim,
            backend_user: found.backend_user,
            issuer: issuer.to_owned(),
            scopes: found.scopes,
            client_id: found.client_id,
            audiences: found.audiences,
            expires_at,
        }
    }

    /// True once `now` has reached the token's `exp` (plus [`CLOCK_LEEWAY`]).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|exp| is_past(exp, now))
    }

    /// True when the token carries `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// What an introspection (or userinfo) answer must show besides `active`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AnswerRules<'a> {
    /// When set, an `iss` member present in the answer must equal it.
    pub issuer: Option<&'a str>,
    /// When not empty, an `aud` member present in the answer must name one of these.
    pub audiences: &'a [String],
}

/// Judges an RFC 7662 §2.2 response object at time `now`, returning the token's `exp`.
///
/// `active` must be JSON `true`; `exp`/`nbf` (NumericDate) are honoured; `iss` and `aud`
/// are checked when the answer has them and the configuration names what they must be
/// (RFC 7662 makes them optional, so their absence is no reason to refuse).
pub(crate) fn check_answer(
    response: &Map<String, Value>,
    rules: AnswerRules<'_>,
    now: SystemTime,
) -> Result<Option<SystemTime>, InvalidReason> {
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
    if let (Some(want), Some(iss)) = (rules.issuer, optional_str(response, "iss")?) {
        if iss != want {
            return Err(InvalidReason::WrongIssuer);
        }
    }
    if !rules.audiences.is_empty() && !audience_matches(response, rules.audiences)? {
        return Err(InvalidReason::WrongAudience);
    }
    Ok(expires_at)
}

/// RFC 7662 §2.2 / RFC 7519 §4.1.3: `aud` is a string or an array of strings. An absent
/// `aud` passes.
fn audience_matches(
    response: &Map<String, Value>,
    audiences: &[String],
) -> Result<bool, InvalidReason> {
    let malformed = || InvalidReason::Malformed {
        claim: "aud".to_owned(),
        problem: "is not a string or an array of strings",
    };
    match response.get("aud") {
        None | Some(Value::Null) => Ok(true),
        Some(Value::String(aud)) => Ok(audiences.contains(aud)),
        Some(Value::Array(list)) => {
            let mut found = false;
            for aud in list {
                let Value::String(aud) = aud else {
                    return Err(malformed());
                };
                found |= audiences.contains(aud);
            }
            Ok(found)
        }
        Some(_) => Err(malformed()),
    }
}

fn is_past(exp: SystemTime, now: SystemTime) -> bool {
    now >= exp + CLOCK_LEEWAY
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
pub(crate) fn numeric_date(
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

    /// The whole path of an introspection answer: the answer checks, then a policy that
    /// takes the user from `claim` and demands `required` scopes.
    fn judge_claim(
        response: Value,
        claim: &str,
        required: &[&str],
    ) -> Result<Identity, InvalidReason> {
        let Value::Object(map) = response else {
            panic!("test response must be an object");
        };
        let policy = crate::policy::Policy {
            required_scopes: required.iter().map(|s| (*s).to_owned()).collect(),
            ..crate::policy::Policy::with_claim(claim)
        };
        let expires_at = check_answer(&map, AnswerRules::default(), now())?;
        Ok(Identity::new(policy.apply(&map)?, "test", expires_at))
    }

    fn rules_judge(response: Value, rules: AnswerRules<'_>) -> Result<(), InvalidReason> {
        let Value::Object(map) = response else {
            panic!("test response must be an object");
        };
        check_answer(&map, rules, now()).map(drop)
    }

    #[test]
    fn iss_and_aud_are_checked_when_present_and_configured() {
        let audiences = ["mail".to_owned(), "imap".to_owned()];
        let rules = AnswerRules {
            issuer: Some("https://idp.example"),
            audiences: &audiences,
        };
        let ok = json!({"active":true,"iss":"https://idp.example","aud":["x","imap"]});
        assert_eq!(rules_judge(ok, rules), Ok(()));
        // Absent members pass: RFC 7662 makes them optional.
        assert_eq!(rules_judge(json!({"active":true}), rules), Ok(()));
        assert_eq!(
            rules_judge(json!({"active":true,"iss":"https://evil.example"}), rules),
            Err(InvalidReason::WrongIssuer)
        );
        assert_eq!(
            rules_judge(json!({"active":true,"aud":"calendar"}), rules),
            Err(InvalidReason::WrongAudience)
        );
        assert_eq!(
            rules_judge(json!({"active":true,"aud":["calendar"]}), rules),
            Err(InvalidReason::WrongAudience)
        );
        assert!(matches!(
            rules_judge(json!({"active":true,"aud":[7]}), rules),
            Err(InvalidReason::Malformed { ref claim, .. }) if claim == "aud"
        ));
        // Unconfigured: anything goes.
        let any = json!({"active":true,"iss":"https://evil.example","aud":"calendar"});
        assert_eq!(rules_judge(any, AnswerRules::default()), Ok(()));
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
        // A claim that is not a string does not name a user: the next claim is tried.
        for not_a_string in [json!(42), json!(["alice"]), json!({"name":"alice"})] {
            let result = judge(json!({"active":true,"username":not_a_string}), &[]);
            assert!(
                matches!(result, Err(InvalidReason::NoUserClaim { .. })),
                "{not_a_string}: {result:?}"
            );
        }
        for bad in [json!(""), json!("alice\r\nA1 LOGOUT")] {
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
    fn audiences_come_from_aud() {
        let one = judge(
            json!({"active":true,"username":"a","aud":"imap://mail.example.test"}),
            &[],
        )
        .unwrap();
        assert_eq!(one.audiences, ["imap://mail.example.test"]);
        let two = judge(
            json!({"active":true,"username":"a","aud":["imap://h","smtp://h"]}),
            &[],
        )
        .unwrap();
        assert_eq!(two.audiences, ["imap://h", "smtp://h"]);
        let none = judge(json!({"active":true,"username":"a"}), &[]).unwrap();
        assert!(none.audiences.is_empty());
        // Neither a string nor a list of strings: refused rather than read as "no audience",
        // which would lift the restriction the issuer meant.
        for bad in [json!(7), json!(["imap://h", 7]), json!({"imap": true})] {
            assert!(
                matches!(
                    judge(json!({"active":true,"username":"a","aud":bad}), &[]),
                    Err(InvalidReason::Malformed { ref claim, .. }) if claim == "aud"
                ),
                "{bad}"
            );
        }
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

//! Whether a provider's 200 answer is well-formed: the members the validator reads have the
//! types their specification gives them.
//!
//! A malformed answer says nothing about the token: a provider answering `{"active":"yes"}`,
//! `{}` or `{"active":true,"exp":"soon"}` is broken (a misrouted proxy, an error page
//! wrapped in JSON, a half-deployed release), not telling us the token is bad. Taking it as
//! "wrong token" would turn every user away with "authentication failed", cached as a
//! refusal, while the breaker never sees the provider failing. So such an answer is an
//! outage ([`crate::UnavailableKind::BadAnswer`]): "try again later", counted towards the
//! circuit breaker, never cached, and a token confirmed earlier may still be accepted.
//!
//! Only the types are checked here; what the values mean (`active: false`, an `exp` in the
//! past, a missing scope) is the token's business and is judged by [`crate::identity`] and
//! the policy, on answers that passed these checks. `null` counts as absent, as there.

use serde_json::{Map, Value};

use crate::identity::numeric_date;

/// The type a member must have when present.
#[derive(Debug, Clone, Copy)]
enum Type {
    /// A JSON string.
    Text,
    /// A JSON boolean.
    Flag,
    /// RFC 7519 NumericDate: a non-negative number of seconds since the epoch.
    NumericDate,
    /// RFC 7519 §4.1.3 `aud`: a string or an array of strings.
    Audience,
}

/// RFC 7662 §2.2: every member of an active token's answer the specification names.
const INTROSPECTION: [(&str, Type); 11] = [
    ("scope", Type::Text),
    ("client_id", Type::Text),
    ("username", Type::Text),
    ("token_type", Type::Text),
    ("exp", Type::NumericDate),
    ("iat", Type::NumericDate),
    ("nbf", Type::NumericDate),
    ("sub", Type::Text),
    ("aud", Type::Audience),
    ("iss", Type::Text),
    ("jti", Type::Text),
];

/// OpenID Connect Core §5.1 claims and Google tokeninfo members the validator reads, after
/// [`crate::userinfo::normalise`] has turned Google's strings into numbers and booleans.
const USERINFO: [(&str, Type); 12] = [
    ("sub", Type::Text),
    ("email", Type::Text),
    ("email_verified", Type::Flag),
    ("preferred_username", Type::Text),
    ("scope", Type::Text),
    ("client_id", Type::Text),
    ("azp", Type::Text),
    ("aud", Type::Audience),
    ("iss", Type::Text),
    ("exp", Type::NumericDate),
    ("iat", Type::NumericDate),
    ("nbf", Type::NumericDate),
];

/// An RFC 7662 §2.2 answer: `active` is a boolean (REQUIRED), and for an active token
/// every member the RFC names has its type. An inactive answer is taken as it is: the RFC
/// says it should carry nothing else, and nothing else of it is read.
pub(crate) fn introspection(answer: &Map<String, Value>) -> Result<(), String> {
    match answer.get("active") {
        Some(Value::Bool(true)) => members(answer, &INTROSPECTION),
        Some(Value::Bool(false)) => Ok(()),
        None => Err("answer has no \"active\" member".to_owned()),
        Some(_) => Err("\"active\" is not a boolean".to_owned()),
    }
}

/// A userinfo or tokeninfo answer, once normalised: it names something, and the members
/// the validator reads have their types.
pub(crate) fn userinfo(answer: &Map<String, Value>) -> Result<(), String> {
    // `active` is the normalisation's own; without anything else the answer names no one.
    if answer.keys().all(|name| name == "active") {
        return Err("answer is an empty object".to_owned());
    }
    members(answer, &USERINFO)
}

fn members(answer: &Map<String, Value>, spec: &[(&str, Type)]) -> Result<(), String> {
    for &(name, want) in spec {
        let value = match answer.get(name) {
            None | Some(Value::Null) => continue,
            Some(value) => value,
        };
        let fits = match want {
            Type::Text => value.is_string(),
            Type::Flag => value.is_boolean(),
            Type::NumericDate => numeric_date(answer, name).is_ok(),
            Type::Audience => match value {
                Value::String(_) => true,
                Value::Array(list) => list.iter().all(Value::is_string),
                _ => false,
            },
        };
        if !fits {
            let what = match want {
                Type::Text => "a string",
                Type::Flag => "a boolean",
                Type::NumericDate => "a NumericDate",
                Type::Audience => "a string or an array of strings",
            };
            return Err(format!("\"{name}\" is not {what}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("test answers are objects: {other}"),
        }
    }

    #[test]
    fn introspection_known_answers() {
        let good = [
            json!({"active": false}),
            // Inactive: nothing else is read, whatever it is.
            json!({"active": false, "exp": "soon"}),
            json!({"active": true}),
            // RFC 7662 §2.2's example.
            json!({"active": true, "client_id": "l238j323ds-23ij4", "username": "jdoe",
                   "scope": "read write dolphin", "sub": "Z5O3upPC88QrAjx00dis",
                   "aud": "https://protected.example.net/resource",
                   "iss": "https://server.example.com/", "exp": 1_419_356_238_u64,
                   "iat": 1_419_350_238_u64, "extension_field": "twenty-seven"}),
            json!({"active": true, "aud": ["a", "b"], "exp": 1.5e9, "username": null}),
            // Extensions are the provider's business.
            json!({"active": true, "realm_access": {"roles": ["x"]}, "email_verified": "yes"}),
        ];
        for answer in good {
            assert_eq!(introspection(&object(answer.clone())), Ok(()), "{answer}");
        }
        let bad = [
            (json!({}), "no \"active\""),
            (json!({"username": "alice"}), "no \"active\""),
            (json!({"active": "true"}), "\"active\" is not a boolean"),
            (json!({"active": 1}), "\"active\" is not a boolean"),
            (json!({"active": null}), "\"active\" is not a boolean"),
            (json!({"active": true, "exp": "1700000000"}), "\"exp\""),
            (json!({"active": true, "exp": -5}), "\"exp\""),
            (json!({"active": true, "iat": true}), "\"iat\""),
            (json!({"active": true, "nbf": [1]}), "\"nbf\""),
            (json!({"active": true, "scope": ["mail"]}), "\"scope\""),
            (json!({"active": true, "username": 42}), "\"username\""),
            (json!({"active": true, "client_id": 7}), "\"client_id\""),
            (json!({"active": true, "aud": [7]}), "\"aud\""),
            (json!({"active": true, "aud": {"a": 1}}), "\"aud\""),
            (json!({"active": true, "iss": false}), "\"iss\""),
        ];
        for (answer, why) in bad {
            let problem = introspection(&object(answer.clone())).expect_err("malformed");
            assert!(problem.contains(why), "{answer}: {problem}");
        }
    }

    #[test]
    fn userinfo_known_answers() {
        let good = [
            json!({"sub": "1", "active": true}),
            json!({"azp": "app", "aud": "app", "exp": 1_700_000_000_u64, "active": true,
                   "email": "a@b", "email_verified": true, "scope": "openid"}),
            json!({"sub": "1", "name": 7, "active": true}),
        ];
        for answer in good {
            assert_eq!(userinfo(&object(answer.clone())), Ok(()), "{answer}");
        }
        let bad = [
            (json!({"active": true}), "empty object"),
            (json!({}), "empty object"),
            (json!({"sub": 1, "active": true}), "\"sub\""),
            (json!({"email": ["a@b"], "active": true}), "\"email\""),
            (
                json!({"email_verified": "TRUE", "active": true}),
                "\"email_verified\"",
            ),
            (
                json!({"sub": "1", "exp": "soon", "active": true}),
                "\"exp\"",
            ),
            (json!({"sub": "1", "azp": 5, "active": true}), "\"azp\""),
        ];
        for (answer, why) in bad {
            let problem = userinfo(&object(answer.clone())).expect_err("malformed");
            assert!(problem.contains(why), "{answer}: {problem}");
        }
    }
}

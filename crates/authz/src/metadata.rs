//! RFC 8414 authorization server metadata and OpenID discovery: what is implemented and
//! nothing more (no implicit, no password, no `plain` PKCE), so that clients pick safe
//! options by themselves.

use serde_json::{json, Value};

use crate::clients::GRANT_TYPES;
use crate::paths;
use crate::scope::SUPPORTED;

/// Client authentication methods at the token endpoint.
const TOKEN_AUTH_METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];
/// Introspection needs a secret (RFC 7662 §2.1: the caller must authenticate).
const SECRET_AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// The metadata document for issuer `issuer`; with `openid`, the OpenID discovery members.
pub(crate) fn document(issuer: &str, openid: bool) -> Value {
    let at = |path: &str| format!("{issuer}{path}");
    let mut document = json!({
        "issuer": issuer,
        "authorization_endpoint": at(paths::AUTHORIZE),
        "token_endpoint": at(paths::TOKEN),
        "jwks_uri": at(paths::JWKS),
        "registration_endpoint": at(paths::REGISTRATION),
        "device_authorization_endpoint": at(paths::DEVICE_AUTHORIZATION),
        "introspection_endpoint": at(paths::INTROSPECTION),
        "revocation_endpoint": at(paths::REVOCATION),
        "userinfo_endpoint": at(paths::USERINFO),
        "scopes_supported": SUPPORTED,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GRANT_TYPES,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": SECRET_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "authorization_response_iss_parameter_supported": true,
    });
    if openid {
        document["subject_types_supported"] = json!(["public"]);
        document["id_token_signing_alg_values_supported"] = json!(["ES256"]);
        document["claims_supported"] = json!([
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "preferred_username",
            "email",
        ]);
    }
    document
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_endpoint_under_the_issuer() {
        let doc = document("https://auth.example.test", false);
        assert_eq!(doc["issuer"], "https://auth.example.test");
        assert_eq!(
            doc["token_endpoint"],
            "https://auth.example.test/auth/token"
        );
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        assert!(doc.get("id_token_signing_alg_values_supported").is_none());
        let grants = doc["grant_types_supported"].as_array().unwrap();
        assert!(!grants.iter().any(|g| g == "password" || g == "implicit"));
        // The mail-client profile's three scopes.
        let scopes = doc["scopes_supported"].as_array().unwrap();
        for scope in [
            crate::MAIL_SCOPE,
            crate::CONTACTS_SCOPE,
            crate::CALENDARS_SCOPE,
        ] {
            assert!(scopes.iter().any(|s| s == scope), "{scope}");
        }
    }

    #[test]
    fn openid_adds_discovery_members() {
        let doc = document("https://auth.example.test", true);
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
        assert_eq!(doc["subject_types_supported"], json!(["public"]));
    }
}

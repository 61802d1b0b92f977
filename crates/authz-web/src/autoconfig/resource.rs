//! RFC 9728 protected-resource metadata for the mail hosts.
//!
//! - `resource` is the issuer identifier itself: RFC 9728 §3.3 has a client use the document
//!   only when `resource` equals the URL it built the well-known URL from, and this document
//!   is served from the issuer's HTTPS origin (`public_url`, which has no path). The mail
//!   protocols have no https URL of their own.
//! - `authorization_servers` names the built-in issuer; `scopes_supported` the scope a mail
//!   login needs.
//! - `bearer_methods_supported` is empty (§2: "no bearer methods are supported"): tokens
//!   reach the mail servers through SASL (OAUTHBEARER, XOAUTH2), none of RFC 6750's HTTP
//!   methods.
//! - `bearergate_mail_resources` is **not** an RFC 9728 member: the RFC 8707 resource
//!   identifiers of the advertised mail services (`imap://mail.example.com`, …), for a
//!   client that wants a token for one of them only. Clients that do not know it ignore it.

use serde_json::{json, Value};

use super::MailServer;

/// The document for `issuer`, whose RFC 8414 `metadata` names the scopes.
pub(crate) fn document(
    issuer: &str,
    metadata: &Value,
    provider: &str,
    advertised: &[MailServer],
) -> Value {
    let mut resources: Vec<String> = Vec::new();
    let mut protocols: Vec<&str> = Vec::new();
    for server in advertised {
        let resource = server.resource();
        if !resources.contains(&resource) {
            resources.push(resource);
        }
        if !protocols.contains(&server.protocol.label()) {
            protocols.push(server.protocol.label());
        }
    }
    let mail_scope_offered = metadata["scopes_supported"]
        .as_array()
        .is_some_and(|scopes| scopes.iter().any(|scope| scope == authz::MAIL_SCOPE));
    let scopes: Vec<&str> = if mail_scope_offered {
        vec![authz::MAIL_SCOPE]
    } else {
        Vec::new()
    };
    let name = if protocols.is_empty() {
        format!("Mail at {provider}")
    } else {
        format!("Mail at {provider} ({})", protocols.join(", "))
    };
    json!({
        "resource": issuer,
        "authorization_servers": [issuer],
        "scopes_supported": scopes,
        "bearer_methods_supported": [],
        "resource_name": name,
        "bearergate_mail_resources": resources,
    })
}

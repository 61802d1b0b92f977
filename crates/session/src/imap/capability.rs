//! Capability lists: the proxy's own before login, the backend's (filtered) after.

/// What the proxy advertises before login. `AUTH=` only where authentication is allowed;
/// elsewhere `LOGINDISABLED`, so clients do not even try (RFC 3501 section 6.2.3).
/// With the password fallback, `AUTH=PLAIN` too: those logins go to the backend unchanged.
pub(crate) fn pre_login(auth_allowed: bool, starttls: bool, passwords: bool) -> Vec<&'static str> {
    let mut list = vec!["IMAP4rev1", "SASL-IR", "ID", "LITERAL+"];
    if starttls {
        list.push("STARTTLS");
    }
    if auth_allowed {
        list.extend(["AUTH=OAUTHBEARER", "AUTH=XOAUTH2"]);
        if passwords {
            list.push("AUTH=PLAIN");
        }
    } else {
        list.push("LOGINDISABLED");
    }
    list
}

/// The backend's post-login capabilities as the client may see them: without what only
/// makes sense before login (`AUTH=`, `SASL-IR`, `LOGINDISABLED`, `STARTTLS`) and without
/// `UNAUTHENTICATE`, which would let a client step back into a pre-login state the proxy no
/// longer watches.
pub fn filter_backend_capabilities(capabilities: &[String]) -> Vec<String> {
    capabilities
        .iter()
        .filter(|c| {
            let upper = c.to_ascii_uppercase();
            !(upper.starts_with("AUTH=")
                || upper == "SASL-IR"
                || upper == "LOGINDISABLED"
                || upper == "STARTTLS"
                || upper == "UNAUTHENTICATE")
        })
        .cloned()
        .collect()
}

//! The proxy's own CAPA reply before login (RFC 2449 §5–6), and the mechanism list of a
//! bare AUTH.
//!
//! Only what the proxy itself can honestly say: it speaks for the AUTHORIZATION state, and
//! after login the client talks to the backend, whose transaction-state capabilities the
//! proxy does not know before the user is known. So the list is minimal:
//! - `STLS` (RFC 2595 §4) before TLS on a listener that offers it, never after.
//! - `SASL OAUTHBEARER XOAUTH2` (RFC 2449 §6.3, RFC 5034) only where authentication is
//!   allowed: with TLS, or where the listener allows plaintext authentication. No SASL
//!   before STLS (DESIGN.md). With the password fallback, `PLAIN LOGIN` too.
//! - `USER` (RFC 2449 §6.2) only with the password fallback, where authentication is
//!   allowed: USER/PASS is accepted then and only then.
//! - `RESP-CODES` (RFC 2449 §6.4) and `AUTH-RESP-CODE` (RFC 3206): every refusal of
//!   credentials carries `[AUTH]`, an outage `[SYS/TEMP]`.
//! - `IMPLEMENTATION bearergate` (RFC 2449 §6.9).
//!
//! Left out:
//! - `TOP`, `UIDL`, `EXPIRE`, `LOGIN-DELAY`: transaction-state properties of the backend
//!   (EXPIRE and LOGIN-DELAY may even differ per user, RFC 2449 §6.5, §6.7). RFC 2449 §5
//!   lets a server announce more after login; a client that wants them sends CAPA again
//!   and gets the backend's list.
//! - `PIPELINING` (RFC 2449 §6.6): the session does read pipelined commands one by one,
//!   but a refused token's error challenge takes the client's next line as its answer
//!   (RFC 7628 §3.2.2), so a command pipelined behind AUTH would be swallowed; and what a
//!   client pipelines after login goes to a backend whose pipelining the proxy cannot
//!   vouch for.
//! - `APOP` (RFC 1939 §7) is no capability, and the greeting has no timestamp: the proxy
//!   never sees a password it could check a digest against.

/// The SASL mechanisms offered, in order: the OAuth ones, then, with the password fallback,
/// PLAIN and LOGIN (checked by the backend).
pub(crate) fn mechanisms(password_fallback: bool) -> Vec<String> {
    let mut list: Vec<String> = sasl::Mechanism::ALL
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    if password_fallback {
        list.extend(
            [
                sasl::PasswordMechanism::Plain,
                sasl::PasswordMechanism::Login,
            ]
            .map(|m| m.name().to_owned()),
        );
    }
    list
}

/// The lines of the CAPA reply, between `+OK` and `.`. See the [module docs](self).
/// `password_fallback` is whether USER/PASS and PLAIN/LOGIN are accepted *here*: the
/// listener's setting, and authentication allowed.
pub(crate) fn pre_login(auth_allowed: bool, stls: bool, password_fallback: bool) -> Vec<String> {
    let mut list = Vec::new();
    if stls {
        list.push("STLS".to_owned());
    }
    if auth_allowed {
        list.push(format!("SASL {}", mechanisms(password_fallback).join(" ")));
        if password_fallback {
            list.push("USER".to_owned());
        }
    }
    list.extend(["RESP-CODES", "AUTH-RESP-CODE", "IMPLEMENTATION bearergate"].map(str::to_owned));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_tls_only_stls_and_no_sasl() {
        assert_eq!(
            pre_login(false, true, false),
            [
                "STLS",
                "RESP-CODES",
                "AUTH-RESP-CODE",
                "IMPLEMENTATION bearergate"
            ]
        );
        // The fallback changes nothing where authentication is not allowed.
        assert_eq!(pre_login(false, true, false), pre_login(false, true, true));
    }

    #[test]
    fn with_tls_sasl_and_with_the_fallback_user() {
        assert_eq!(
            pre_login(true, false, false),
            [
                "SASL OAUTHBEARER XOAUTH2",
                "RESP-CODES",
                "AUTH-RESP-CODE",
                "IMPLEMENTATION bearergate"
            ]
        );
        assert_eq!(
            pre_login(true, false, true),
            [
                "SASL OAUTHBEARER XOAUTH2 PLAIN LOGIN",
                "USER",
                "RESP-CODES",
                "AUTH-RESP-CODE",
                "IMPLEMENTATION bearergate"
            ]
        );
        let all = pre_login(true, true, true).join("\n");
        for absent in ["PIPELINING", "TOP", "UIDL", "EXPIRE", "LOGIN-DELAY", "APOP"] {
            assert!(!all.contains(absent), "{absent}");
        }
    }
}

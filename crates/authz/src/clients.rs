//! Who a client is: a registered one from the store, or an unregistered id (a public client
//! held to PKCE and native redirects), and how it authenticates at the token, device,
//! introspection and revocation endpoints.

use secrecy::ExposeSecret as _;

use crate::error::{ErrorCode, OAuthError};
use crate::model::{ClientCredentials, ClientDisplay, CredentialsVia};
use crate::native;
use crate::redirect;
use crate::server::AuthServer;
use crate::store::{ClientAuthMethod, ClientRecord, RegisteredBy, StoreError};
use crate::tokens;
use crate::DEVICE_CODE_GRANT;

/// The authorization code grant type.
pub(crate) const AUTHORIZATION_CODE: &str = "authorization_code";
/// The refresh token grant type.
pub(crate) const REFRESH_TOKEN: &str = "refresh_token";
/// Every grant type this server implements.
pub(crate) const GRANT_TYPES: [&str; 3] = [AUTHORIZATION_CODE, REFRESH_TOKEN, DEVICE_CODE_GRANT];

/// Longest client id accepted.
const MAX_CLIENT_ID: usize = 200;

/// A client, as far as the server knows it.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// In the store.
    Registered(ClientRecord),
    /// Not in the store: a public client that named itself.
    Unregistered(String),
}

impl Client {
    /// The client id.
    pub(crate) fn id(&self) -> &str {
        match self {
            Client::Registered(record) => &record.id,
            Client::Unregistered(id) => id,
        }
    }

    /// Whether it has no secret (PKCE is then its only proof).
    pub(crate) fn is_public(&self) -> bool {
        match self {
            Client::Registered(record) => record.auth_method == ClientAuthMethod::None,
            Client::Unregistered(_) => true,
        }
    }

    /// Whether it may use `grant_type`. Unregistered clients may use every implemented
    /// grant; the redirect and PKCE rules are what hold them back.
    pub(crate) fn allows(&self, grant_type: &str) -> bool {
        match self {
            Client::Registered(record) => record.grant_types.iter().any(|g| g == grant_type),
            Client::Unregistered(_) => GRANT_TYPES.contains(&grant_type),
        }
    }

    /// What the pages show about it.
    pub(crate) fn display(&self, redirect_uri: Option<&str>) -> ClientDisplay {
        let (name, verified) = match self {
            Client::Registered(record) => (
                record.name.clone(),
                record.registered_by == RegisteredBy::Admin,
            ),
            Client::Unregistered(_) => (None, false),
        };
        ClientDisplay {
            id: display_id(self.id()),
            name,
            verified,
            redirect_host: redirect_uri.and_then(redirect::display_host),
        }
    }
}

/// A self-contained client id runs to 2 KiB of base64: a person is shown its short form
/// ([`native::short_form`], enough to tell two apart); other ids in full.
fn display_id(id: &str) -> String {
    native::short_form(id).unwrap_or_else(|| id.to_owned())
}

/// RFC 6749 appendix A.1 (`client-id = *VSCHAR`), 1 to 200 of them, not in the form of a
/// self-contained client id (which only this server makes, see [`native`]).
pub(crate) fn is_client_id(id: &str) -> bool {
    (1..=MAX_CLIENT_ID).contains(&id.len())
        && id.bytes().all(|c| (0x20..=0x7e).contains(&c))
        && !native::is_native_id(id)
}

/// `client_name`: 1 to 100 characters, not all spaces, none of them control, format or
/// separator characters (see [`is_sneaky`]).
pub(crate) fn check_client_name(name: &str) -> Result<(), OAuthError> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(is_sneaky) {
        return Err(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "client_name must be 1 to 100 printable characters, without invisible or \
             direction-changing ones",
        ));
    }
    Ok(())
}

/// Characters that change how the text around them reads rather than showing as
/// themselves: controls (Cc), the format characters (Cf: bidirectional embeddings,
/// overrides and isolates, which can reverse the "unverified" note after a name; zero-width
/// spaces and joiners, soft hyphens and tags, which hide between look-alike letters), the
/// line and paragraph separators, and the rest of Unicode's `Default_Ignorable_Code_Point`
/// (the Hangul fillers, which draw as blank, the combining grapheme joiner and the variation
/// selectors, which draw as nothing) with the blank braille pattern. Listed by hand (Unicode
/// 15 `General_Category=Cf` and `Default_Ignorable_Code_Point`): std has no such tables, and
/// the lists change rarely.
fn is_sneaky(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{115F}'..='\u{1160}'
                | '\u{17B4}'..='\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFF8}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

fn client_failed(description: &str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

impl AuthServer {
    /// The client with this id, registered or not; `None` when the id is malformed. A
    /// self-contained client id (open native registration) is registered when its MAC holds
    /// and malformed otherwise; it is never looked up in the store.
    ///
    /// Its registration lasts only while `open_native` is on: the ids carry no expiry, so
    /// once the admin turns native registration off (or sets `require = true`, which turns
    /// it off by default) the ids already handed out count as unregistered client ids, held
    /// to `require` and `client_override_users` like any other.
    pub(crate) fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        if native::is_native_id(id) {
            let Some(record) = self.native_ids.open(id) else {
                return Ok(None);
            };
            if !self.settings.client_registration.open_native() {
                return Ok(Some(Client::Unregistered(record.id)));
            }
            return Ok(Some(Client::Registered(record)));
        }
        if !is_client_id(id) {
            return Ok(None);
        }
        Ok(Some(match self.store.client(id)? {
            Some(record) => Client::Registered(record),
            None => Client::Unregistered(id.to_owned()),
        }))
    }

    /// Whether `user` may authorize an unregistered client: anyone unless registration is
    /// required, then only the override users.
    pub(crate) fn may_authorize_unregistered(&self, user: &str) -> bool {
        !self.settings.client_registration.require
            || self
                .settings
                .client_override_users
                .iter()
                .any(|u| u == user)
    }

    /// Authenticates the caller of the token, device, introspection or revocation endpoint.
    ///
    /// A confidential client must use its registered method (Basic or post) with the right
    /// secret; a public or unregistered one sends only its `client_id` and must not send a
    /// secret (a secret it does not have means a confused or lying caller).
    pub(crate) fn authenticate(&self, caller: &ClientCredentials) -> Result<Client, OAuthError> {
        let Some(id) = caller.client_id.as_deref() else {
            return Err(client_failed("client authentication is required"));
        };
        let Some(client) = self.find_client(id)? else {
            return Err(client_failed("malformed client_id"));
        };
        let secret = caller.secret.as_ref().map(|s| s.expose_secret());
        let Client::Registered(record) = &client else {
            if secret.is_some() {
                return Err(client_failed("this client has no secret"));
            }
            return Ok(client);
        };
        let expected_via = match record.auth_method {
            ClientAuthMethod::None => {
                if secret.is_some() {
                    return Err(client_failed("this client has no secret"));
                }
                return Ok(client);
            }
            ClientAuthMethod::ClientSecretBasic => CredentialsVia::Basic,
            ClientAuthMethod::ClientSecretPost => CredentialsVia::Post,
        };
        let authenticated = match (secret, &record.secret_hash) {
            (Some(secret), Some(stored)) => {
                // Hash comparison first, then the method: no early return on the secret.
                tokens::matches(secret, stored) & (caller.via == expected_via)
            }
            _ => false,
        };
        if !authenticated {
            return Err(client_failed("client authentication failed"));
        }
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_1_to_200_vschars() {
        assert!(is_client_id("thunderbird"));
        assert!(is_client_id("a b~"));
        assert!(is_client_id(&"x".repeat(200)));
        assert!(!is_client_id(""));
        assert!(!is_client_id(&"x".repeat(201)));
        assert!(!is_client_id("tab\there"));
        assert!(!is_client_id("é"));
        // Only the server makes ids of the self-contained form.
        assert!(!is_client_id("bgn1.x.y"));
    }

    #[test]
    fn self_contained_ids_are_shown_shortened() {
        let long = format!("bgn1.{}.{}", "A".repeat(500), "B".repeat(43));
        assert_eq!(display_id(&long), format!("bgn1.…{}", "B".repeat(16)));
        assert_eq!(display_id("thunderbird"), "thunderbird");
        assert_eq!(display_id("bgn1.short"), "bgn1.short");
    }

    #[test]
    fn shortened_self_contained_ids_still_tell_clients_apart() {
        // Two apps registering in the same second: their ids begin alike (the payload
        // starts with the time), so what a person or a log is shown must not be the start.
        let h = crate::testing::Harness::new("");
        let register = |redirect: &str| {
            let metadata = serde_json::json!({
                "redirect_uris": [redirect],
                "token_endpoint_auth_method": "none",
                "client_name": "Thunderbird",
            });
            h.server.register(None, &metadata).unwrap()["client_id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let (real, lookalike) = (
            register("http://127.0.0.1/cb"),
            register("org.example.phish:/cb"),
        );
        assert_ne!(real, lookalike);
        assert_ne!(display_id(&real), display_id(&lookalike));
        assert!(
            display_id(&real).chars().count() <= 24,
            "{}",
            display_id(&real)
        );
    }

    #[test]
    fn client_names_are_short_and_printable() {
        assert!(check_client_name("Mail für Alice").is_ok());
        assert!(check_client_name("").is_err());
        assert!(check_client_name(&"n".repeat(101)).is_err());
        assert!(check_client_name("bad\nname").is_err());
    }

    #[test]
    fn client_names_refuse_invisible_and_bidi_characters() {
        // Each of these can make a name read as something else on the consent page (a
        // right-to-left override reverses what follows, even the "unverified" note), or
        // hide characters between look-alike ones.
        for sneaky in [
            "Thunderbird\u{202E}deifirev",
            "Mail\u{2066}App",
            "Thunder\u{200B}bird",
            "Thunder\u{200D}bird",
            "\u{FEFF}Thunderbird",
            "Thunder\u{00AD}bird",
            "Mail\u{2028}App",
            "Mail\u{E0041}App",
            "   ",
        ] {
            assert!(check_client_name(sneaky).is_err(), "{sneaky:?}");
        }
        assert!(check_client_name("Évolution (GNOME)").is_ok());
        assert!(check_client_name("メール").is_ok());
    }

    #[test]
    fn client_names_refuse_the_other_default_ignorable_characters() {
        // Unicode's Default_Ignorable_Code_Point characters that are not format characters:
        // fillers that draw as blank (a name of nothing but them reads as no name at all),
        // and joiners and selectors that draw as nothing between look-alike letters.
        for sneaky in [
            "\u{3164}",
            "\u{115F}\u{1160}",
            "\u{FFA0}",
            "Thunder\u{3164}bird",
            "Thunder\u{034F}bird",
            "Thunder\u{17B4}bird",
            "Thunder\u{180B}bird",
            "Thunder\u{FE0F}bird",
            "Thunder\u{E0100}bird",
            "Thunder\u{E0FFF}bird",
            "\u{2800}",
        ] {
            assert!(check_client_name(sneaky).is_err(), "{sneaky:?}");
        }
        // Emoji with their presentation selector are a different matter, but names need none.
        assert!(check_client_name("K-9 Mail").is_ok());
    }
}

//! Scopes: the few this server knows, parsed and written in one stable order so that two
//! spellings of the same set compare equal (consents, grants, `scope` in responses).

use crate::error::{ErrorCode, OAuthError};

/// The mail scope (draft-ietf-mailmaint-oauth-public, as Thunderbird and others ask for it);
/// the default when a request names none, and what a mail login needs.
pub(crate) const MAIL: &str = crate::MAIL_SCOPE;
/// The profile's contacts and calendars scopes: granted when asked for (a client setting up a
/// whole account asks for all three), but they open no mail login.
pub(crate) const CONTACTS: &str = crate::CONTACTS_SCOPE;
/// See [`CONTACTS`].
pub(crate) const CALENDARS: &str = crate::CALENDARS_SCOPE;
/// OpenID Connect: an ID token comes with the access token.
pub(crate) const OPENID: &str = "openid";
/// A refresh token is wanted (OpenID Connect Core §11).
pub(crate) const OFFLINE_ACCESS: &str = "offline_access";

/// Every scope the server grants, in the order responses list them.
pub(crate) const SUPPORTED: [&str; 7] = [
    OPENID,
    "profile",
    "email",
    OFFLINE_ACCESS,
    MAIL,
    CONTACTS,
    CALENDARS,
];

// A bit per scope: the set must fit its `u8`.
const _: () = assert!(SUPPORTED.len() <= 8);

/// A set of known scopes, kept in the order of [`SUPPORTED`] (a bit per scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Scopes(u8);

impl Scopes {
    /// Parses a space-separated request `scope` (RFC 6749 §3.3): duplicates collapse, order
    /// is forgotten, an unknown scope is `invalid_scope`; absent or empty means [`MAIL`].
    pub(crate) fn parse_request(scope: Option<&str>) -> Result<Self, OAuthError> {
        let parsed = Self::parse(scope.unwrap_or(""))?;
        if parsed.is_empty() {
            return Ok(Self::single(MAIL));
        }
        Ok(parsed)
    }

    /// Parses a space-separated list; unknown scopes are `invalid_scope`.
    pub(crate) fn parse(scope: &str) -> Result<Self, OAuthError> {
        let mut bits = 0u8;
        // RFC 6749 §3.3 separates with single spaces; tolerate runs of them.
        for token in scope.split(' ').filter(|token| !token.is_empty()) {
            let Some(index) = SUPPORTED.iter().position(|known| *known == token) else {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "a requested scope is not supported by this server",
                ));
            };
            bits |= 1 << index;
        }
        Ok(Scopes(bits))
    }

    /// Parses what this server wrote itself (a grant's scope); unknown words are dropped
    /// rather than failing, so that a scope retired later narrows old grants instead of
    /// breaking them.
    pub(crate) fn parse_stored(scope: &str) -> Self {
        let mut bits = 0u8;
        for token in scope.split(' ') {
            if let Some(index) = SUPPORTED.iter().position(|known| *known == token) {
                bits |= 1 << index;
            }
        }
        Scopes(bits)
    }

    fn single(scope: &str) -> Self {
        let index = SUPPORTED
            .iter()
            .position(|known| *known == scope)
            .unwrap_or(0);
        Scopes(1 << index)
    }

    /// No scope at all.
    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every scope of `self` is in `other`.
    pub(crate) fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    /// Both sets together.
    pub(crate) fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    /// Whether `scope` is in the set.
    pub(crate) fn contains(self, scope: &str) -> bool {
        self.iter().any(|have| have == scope)
    }

    /// The scopes, in the order of [`SUPPORTED`].
    pub(crate) fn iter(self) -> impl Iterator<Item = &'static str> {
        SUPPORTED
            .iter()
            .enumerate()
            .filter(move |(index, _)| self.0 & (1 << index) != 0)
            .map(|(_, scope)| *scope)
    }

    /// The scopes a resource server is told of in an access token: all but
    /// `offline_access`, which only says that a refresh token was wanted and means nothing to
    /// a mail server. Every byte counts there: neomutt refuses tokens over 510 octets.
    pub(crate) fn for_access_token(self) -> Scopes {
        Scopes(self.0 & !Self::single(OFFLINE_ACCESS).0)
    }

    /// The scopes as one space-separated string: the normal form stored and sent.
    pub(crate) fn to_scope_string(self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_tokens_leave_out_offline_access_only() {
        let granted =
            Scopes::parse_request(Some(&format!("openid offline_access {MAIL} {CONTACTS}")))
                .unwrap();
        assert_eq!(
            granted.for_access_token().to_scope_string(),
            format!("openid {MAIL} {CONTACTS}")
        );
        let mail = Scopes::parse_request(Some(MAIL)).unwrap();
        assert_eq!(mail.for_access_token(), mail);
    }

    #[test]
    fn absent_or_empty_means_mail() {
        for scope in [None, Some(""), Some("  ")] {
            assert_eq!(
                Scopes::parse_request(scope).unwrap().to_scope_string(),
                MAIL
            );
        }
    }

    #[test]
    fn normalises_order_and_duplicates() {
        let scopes = Scopes::parse_request(Some(&format!("{MAIL} email openid email"))).unwrap();
        assert_eq!(scopes.to_scope_string(), format!("openid email {MAIL}"));
    }

    #[test]
    fn unknown_scope_is_invalid_scope() {
        let error = Scopes::parse_request(Some("openid admin")).unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidScope);
        // Case matters (RFC 6749 §3.3: case-sensitive strings).
        assert!(Scopes::parse("OPENID").is_err());
    }

    #[test]
    fn subset_and_union() {
        let wide = Scopes::parse(&format!("openid {MAIL}")).unwrap();
        let narrow = Scopes::parse(MAIL).unwrap();
        let other = Scopes::parse("email").unwrap();
        assert!(narrow.is_subset_of(wide));
        assert!(!wide.is_subset_of(narrow));
        assert!(!other.is_subset_of(wide));
        assert_eq!(
            wide.union(other).to_scope_string(),
            format!("openid email {MAIL}")
        );
        assert!(wide.contains(OPENID) && !narrow.contains(OPENID));
    }

    #[test]
    fn the_profiles_contacts_and_calendars_scopes_are_known() {
        let scopes =
            Scopes::parse_request(Some(&format!("{CALENDARS} {MAIL} {CONTACTS}"))).unwrap();
        assert_eq!(
            scopes.to_scope_string(),
            format!("{MAIL} {CONTACTS} {CALENDARS}")
        );
        // Asked for alone, they are granted alone: no mail scope sneaks in.
        let contacts = Scopes::parse_request(Some(CONTACTS)).unwrap();
        assert!(!contacts.contains(MAIL) && contacts.contains(CONTACTS));
    }

    #[test]
    fn stored_scope_drops_unknown_words() {
        assert_eq!(
            Scopes::parse_stored("retired openid").to_scope_string(),
            "openid"
        );
    }
}

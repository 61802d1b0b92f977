//! From presented credentials to the mail user: validate the token, then make sure the
//! identity the client claims is the token's own. Shared by every protocol driver.

use std::sync::Arc;

use sasl::BearerCredentials;
use validator::{Identity, InvalidReason, ScopeKey, ValidationError, Validator};

/// Why a login cannot go ahead.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The client's fault: the token, or the identity claimed with it.
    #[error("{0}")]
    Refused(Refused),
    /// The identity provider could not answer; the client may retry later.
    #[error("identity provider unavailable: {0}")]
    Unavailable(validator::Unavailable),
}

/// The client-fault reasons.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The validator refused the token.
    #[error("{0}")]
    Token(InvalidReason),
    /// The token is valid but for another user than the one the client named. The message
    /// names the claim compared: "which claim?" is the first question of whoever reads it.
    #[error(
        "claimed user `{claimed}` is not the token's user `{token_user}` \
         (from claim `{claim}` of issuer {issuer})"
    )]
    WrongUser {
        /// What the client sent (`user=` / `a=`).
        claimed: String,
        /// What the token says, after the issuer's policy.
        token_user: String,
        /// The claim the token's user came from.
        claim: String,
        /// The issuer that accepted the token.
        issuer: String,
    },
}

impl Refused {
    /// True when the token lacks a required scope (OAUTHBEARER says `insufficient_scope`).
    pub fn is_missing_scope(&self) -> bool {
        matches!(self, Refused::Token(InvalidReason::MissingScope { .. }))
    }
}

/// Validates the token (with the further scopes `protocol_scopes` names for `scope_key`, the
/// listener's protocol) and checks the claimed identity against it.
///
/// The comparison ignores ASCII case: mail systems treat `Alice@Example.org` and
/// `alice@example.org` as one mailbox, and the backend login always uses the token's user,
/// never the claimed one, so a case difference cannot reach another mailbox.
pub async fn check(
    validator: &Validator,
    credentials: &BearerCredentials,
    scope_key: &ScopeKey,
) -> Result<Arc<Identity>, AuthError> {
    let identity = validator
        .validate_for(&credentials.token, scope_key)
        .await
        .map_err(|e| match e {
            ValidationError::Invalid(reason) => AuthError::Refused(Refused::Token(reason)),
            ValidationError::Unavailable(why) => AuthError::Unavailable(why),
        })?;
    if let Some(claimed) = &credentials.authzid {
        let comparable = validator.normalise_claimed(&identity, claimed);
        if !comparable.eq_ignore_ascii_case(&identity.user) {
            return Err(AuthError::Refused(Refused::WrongUser {
                claimed: claimed.clone(),
                token_user: identity.user.clone(),
                claim: identity.user_claim.clone(),
                issuer: identity.issuer.clone(),
            }));
        }
    }
    Ok(identity)
}

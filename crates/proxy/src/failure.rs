//! Why a login attempt did not end in a relay, and whose fault that was. Everything the
//! driver does with a failure follows from this one type, in one place: the reply the client
//! gets (a [`Verdict`]), the metric label, the log level, and whether it was a guess that
//! costs the client a failure delay and a unit of its address's and its claimed user's
//! budgets.

use session::{Discovery, Refusal, Verdict};
use tracing::{error, info, warn};

use crate::auth::Refused;
use crate::backend::BackendError;
use crate::metrics::LoginOutcome;
use crate::throttle::Limit;

/// Whose fault a failed login was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client's: a wrong token or password, a name it may not use, too many failures.
    Client,
    /// The identity provider is down, slow or broken.
    IdentityProvider,
    /// The backend is down, slow or misbehaving.
    Backend,
    /// Something an operator must fix: credentials the provider or backend refuses, a
    /// backend that would grant clients too much.
    Configuration,
    /// A bug of the proxy's own.
    Ours,
}

/// A login attempt that failed.
#[derive(Debug)]
pub enum LoginFailure {
    /// An `[auth_limits]` budget had no unit for the attempt (the address's failures, the
    /// claimed user's, or the address's identity-provider requests): spent, or held by
    /// attempts in flight for longer than this one could wait. Nobody was asked.
    Throttled(Limit),
    /// A password login naming the proxy's master user: nobody was asked.
    MasterIdentity,
    /// The validator refused the token, or the identity claimed with it.
    TokenRefused {
        /// Why.
        reason: Refused,
        /// What the refusing issuer tells clients about getting a good token.
        discovery: Discovery,
    },
    /// The identity provider could not say.
    IdpUnavailable(validator::Unavailable),
    /// The backend login did not happen.
    Backend(BackendError),
}

impl LoginFailure {
    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Throttled(_) | Self::MasterIdentity | Self::TokenRefused { .. } => Fault::Client,
            Self::IdpUnavailable(why) if why.is_configuration() => Fault::Configuration,
            Self::IdpUnavailable(_) => Fault::IdentityProvider,
            Self::Backend(error) => match error.fault() {
                session::backend::Fault::Client => Fault::Client,
                session::backend::Fault::Backend => Fault::Backend,
                session::backend::Fault::Configuration => Fault::Configuration,
                session::backend::Fault::Proxy => Fault::Ours,
            },
        }
    }

    /// Whether this was a guess at credentials: it costs the client the failure delay and a
    /// unit of its address's and claimed user's budgets. Outages and throttling are not
    /// guesses.
    pub fn is_guess(&self) -> bool {
        self.fault() == Fault::Client && !matches!(self, Self::Throttled(_))
    }

    /// The metric label.
    pub fn outcome(&self) -> LoginOutcome {
        match self {
            Self::Throttled(_) => LoginOutcome::Throttled,
            Self::IdpUnavailable(_) => LoginOutcome::IdpUnavailable,
            _ if self.fault() == Fault::Client => LoginOutcome::Refused,
            _ => LoginOutcome::BackendUnavailable,
        }
    }

    /// Logs the failure at the level its fault deserves: a client's mistake is routine
    /// (info), an outage is a warning, a configuration error or a bug an error.
    ///
    /// The reason is logged escaped (`?`): it may quote what a client sent (the user it
    /// claimed), which must never start a log line of its own.
    pub fn log(&self, mechanism: &str, user: Option<&str>) {
        let fault = self.fault();
        let reason = self.to_string();
        match fault {
            Fault::Client => info!(mechanism, user, ?reason, "login refused"),
            Fault::IdentityProvider | Fault::Backend => {
                warn!(
                    mechanism,
                    user,
                    ?fault,
                    ?reason,
                    "login failed, try again later"
                )
            }
            Fault::Configuration | Fault::Ours => {
                error!(
                    mechanism,
                    user,
                    ?fault,
                    ?reason,
                    "login failed, try again later"
                )
            }
        }
    }

    /// What the session tells the client.
    pub fn verdict(self) -> Verdict {
        match self {
            Self::TokenRefused { reason, discovery } => Verdict::TokenRefused {
                refusal: if reason.is_missing_scope() {
                    Refusal::InsufficientScope
                } else {
                    Refusal::InvalidToken
                },
                discovery,
            },
            Self::MasterIdentity | Self::Backend(BackendError::PasswordRefused) => {
                Verdict::PasswordRefused
            }
            Self::Backend(BackendError::TokenRefused { challenge }) => {
                Verdict::BackendRefused { challenge }
            }
            Self::Throttled(_) | Self::IdpUnavailable(_) | Self::Backend(_) => Verdict::Unavailable,
        }
    }
}

impl std::fmt::Display for LoginFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Throttled(Limit::Address) => {
                f.write_str("too many failed logins from this address")
            }
            Self::Throttled(Limit::User) => f.write_str("too many failed logins for this user"),
            Self::Throttled(Limit::IdpRequests) => {
                f.write_str("too many identity provider requests from this address")
            }
            Self::MasterIdentity => f.write_str("the name is the proxy's master user's"),
            Self::TokenRefused { reason, .. } => write!(f, "{reason}"),
            Self::IdpUnavailable(why) => write!(f, "identity provider unavailable: {why}"),
            Self::Backend(error) => write!(f, "backend: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable(kind: validator::UnavailableKind) -> LoginFailure {
        LoginFailure::IdpUnavailable(validator::Unavailable::new(kind, "test"))
    }

    #[test]
    fn faults_decide_reply_label_and_cost() {
        use validator::UnavailableKind::{Refused as IdpRefused, Timeout};
        let cases: Vec<(LoginFailure, Fault, LoginOutcome, bool)> = vec![
            (
                LoginFailure::Throttled(Limit::Address),
                Fault::Client,
                LoginOutcome::Throttled,
                false,
            ),
            (
                LoginFailure::Throttled(Limit::User),
                Fault::Client,
                LoginOutcome::Throttled,
                false,
            ),
            (
                LoginFailure::Throttled(Limit::IdpRequests),
                Fault::Client,
                LoginOutcome::Throttled,
                false,
            ),
            (
                LoginFailure::MasterIdentity,
                Fault::Client,
                LoginOutcome::Refused,
                true,
            ),
            (
                LoginFailure::Backend(BackendError::PasswordRefused),
                Fault::Client,
                LoginOutcome::Refused,
                true,
            ),
            (
                LoginFailure::Backend(BackendError::Timeout),
                Fault::Backend,
                LoginOutcome::BackendUnavailable,
                false,
            ),
            (
                unavailable(Timeout),
                Fault::IdentityProvider,
                LoginOutcome::IdpUnavailable,
                false,
            ),
            (
                unavailable(IdpRefused(401)),
                Fault::Configuration,
                LoginOutcome::IdpUnavailable,
                false,
            ),
        ];
        for (failure, fault, outcome, guess) in cases {
            assert_eq!(failure.fault(), fault, "{failure}");
            assert_eq!(failure.outcome(), outcome, "{failure}");
            assert_eq!(failure.is_guess(), guess, "{failure}");
        }
    }

    #[test]
    fn replies_follow_the_failure() {
        for limit in Limit::ALL {
            assert!(matches!(
                LoginFailure::Throttled(limit).verdict(),
                Verdict::Unavailable
            ));
        }
        assert!(matches!(
            LoginFailure::MasterIdentity.verdict(),
            Verdict::PasswordRefused
        ));
        assert!(matches!(
            LoginFailure::Backend(BackendError::TokenRefused { challenge: None }).verdict(),
            Verdict::BackendRefused { challenge: None }
        ));
        assert!(matches!(
            unavailable(validator::UnavailableKind::BadAnswer).verdict(),
            Verdict::Unavailable
        ));
        let refused = LoginFailure::TokenRefused {
            reason: Refused::Token(validator::InvalidReason::Expired),
            discovery: Discovery::default(),
        };
        assert!(matches!(
            refused.verdict(),
            Verdict::TokenRefused {
                refusal: Refusal::InvalidToken,
                ..
            }
        ));
    }
}

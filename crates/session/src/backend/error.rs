//! Why a backend login failed, and whose fault that was (STYLE.md habit 7).

use std::fmt;

/// Whose fault a failed login was: decides the client's reply, the metric and the log
/// level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The client's credentials were refused: "authentication failed".
    Client,
    /// The backend is unavailable, or misbehaved: "try again later".
    Backend,
    /// The backend refused the proxy itself, or would grant the client too much: the
    /// configuration of one of the two is wrong. "Try again later" for the client, an
    /// error for the operator.
    Configuration,
    /// The proxy's own bug (a machine driven after its end).
    Proxy,
}

/// Where in the conversation something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting (ManageSieve: the first capability block).
    Greeting,
    /// STARTTLS and what the backend says right after the handshake.
    StartTls,
    /// Asking for capabilities before login (IMAP `CAPABILITY`).
    Capability,
    /// IMAP `ID` with the client's address.
    Id,
    /// SMTP `EHLO` before login.
    Ehlo,
    /// SMTP `XCLIENT`.
    Xclient,
    /// The login itself: `LOGIN`, `AUTHENTICATE`, `AUTH`.
    Login,
    /// After the login: IMAP `CAPABILITY`, SMTP's last `EHLO`.
    PostLogin,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Greeting => "greeting",
            Self::StartTls => "STARTTLS",
            Self::Capability => "CAPABILITY",
            Self::Id => "ID",
            Self::Ehlo => "EHLO",
            Self::Xclient => "XCLIENT",
            Self::Login => "login",
            Self::PostLogin => "after login",
        })
    }
}

/// Why a backend login did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The backend validates tokens itself (passthrough) and refused this one; its error
    /// challenge, if it sent one, is for the client as it came. The client's fault.
    #[error("backend refused the token")]
    TokenRefused {
        /// The backend's decoded error challenge.
        challenge: Option<Vec<u8>>,
    },
    /// The backend refused the client's own password (password fallback). The client's
    /// fault.
    #[error("backend refused the password")]
    PasswordRefused,
    /// The backend said "try again later" (`[UNAVAILABLE]`, `BYE`, `4xx`, `TRYLATER`).
    #[error("backend unavailable at {stage}: {reply}")]
    Unavailable {
        /// Where.
        stage: Stage,
        /// The backend's reply, for the log.
        reply: String,
    },
    /// The backend refused the proxy (wrong master password, unknown user, STARTTLS or
    /// XCLIENT refused, ...): a configuration error.
    #[error("backend refused the login at {stage}: {reply}")]
    Refused {
        /// Where.
        stage: Stage,
        /// The backend's reply, for the log.
        reply: String,
    },
    /// The backend said something the proxy did not expect, or cannot do what the
    /// strategy needs.
    #[error("unexpected backend reply at {stage}: {error}")]
    Protocol {
        /// Where.
        stage: Stage,
        /// What was wrong.
        error: ProtocolError,
    },
    /// After login the backend would grant the client something only the proxy may have
    /// (SMTP XCLIENT or XFORWARD): a configuration error, so the connection is never handed
    /// over.
    #[error(
        "refusing to hand over the connection: after login the backend still offers \
         {privilege} to this connection, so the client could change the login or its \
         address; remove the client's network from smtpd_authorized_xclient_hosts / \
         smtpd_authorized_xforward_hosts (only the proxy's address belongs there)"
    )]
    Unsafe {
        /// What the backend still offers.
        privilege: Privilege,
    },
    /// The strategy does not exist for this protocol (checked before connecting): a
    /// configuration error.
    #[error("the {strategy} login is not available for {protocol}")]
    Unsupported {
        /// The strategy's name.
        strategy: &'static str,
        /// The protocol's name.
        protocol: &'static str,
    },
    /// The machine was driven after it had finished: the proxy's bug.
    #[error("backend login driven after its end")]
    Finished,
}

impl LoginError {
    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        match self {
            Self::TokenRefused { .. } | Self::PasswordRefused => Fault::Client,
            Self::Unavailable { .. } | Self::Protocol { .. } => Fault::Backend,
            Self::Refused { .. } | Self::Unsafe { .. } | Self::Unsupported { .. } => {
                Fault::Configuration
            }
            Self::Finished => Fault::Proxy,
        }
    }

    pub(crate) fn protocol(stage: Stage, error: ProtocolError) -> Self {
        Self::Protocol { stage, error }
    }
}

/// What a misbehaving (or unsuitable) backend did.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A line or reply over the machine's limit.
    #[error("reply too long")]
    TooLong,
    /// A reply that does not follow the protocol's grammar.
    #[error("malformed reply: {0}")]
    Malformed(String),
    /// A well-formed reply that does not fit the conversation.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// The backend closed the connection.
    #[error("backend closed the connection")]
    Closed,
    /// The IMAP greeting was PREAUTH: the connection is someone's already.
    #[error("backend greets with PREAUTH: it cannot log in as the user")]
    PreAuth,
    /// A second SASL challenge after the dummy response.
    #[error("second challenge")]
    SecondChallenge,
    /// A ManageSieve capability block longer than the machine keeps.
    #[error("more than {0} capabilities")]
    TooManyCapabilities(usize),
    /// The backend does not offer the SASL mechanism the strategy needs.
    #[error("backend does not offer AUTH {0}")]
    NoMechanism(String),
    /// IMAP password fallback: neither `AUTH=PLAIN` nor a usable LOGIN.
    #[error("the backend offers neither AUTH=PLAIN nor LOGIN for this password")]
    NoPasswordLogin,
    /// The `xclient` strategy, and the backend does not offer XCLIENT.
    #[error("backend does not offer XCLIENT (smtpd_authorized_xclient_hosts)")]
    NoXclient,
    /// The `xclient` strategy, and the backend's XCLIENT does not take LOGIN.
    #[error("backend's XCLIENT does not take LOGIN")]
    XclientWithoutLogin,
    /// A value the command's grammar cannot carry (names the value).
    #[error("cannot encode the {0}")]
    Unencodable(&'static str),
}

/// What an SMTP backend must not offer a client after login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Postfix XCLIENT: rewrite the client's identity or address.
    Xclient,
    /// Postfix XFORWARD: rewrite what is logged about the client.
    Xforward,
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xclient => "XCLIENT",
            Self::Xforward => "XFORWARD",
        })
    }
}

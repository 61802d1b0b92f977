//! `bearergate token`: a token helper for mail programs that can run a command for their
//! OAuth token but cannot run an OAuth flow (neomutt's `imap_oauth_refresh_command`,
//! mbsync's `PassCmd`, msmtp's `passwordeval`, scripts).
//!
//! - `login` finds the issuer's endpoints in its metadata, signs the person in with the
//!   device flow (RFC 8628) or the code flow with PKCE and a loopback redirect (RFC 8252),
//!   and keeps the tokens in a file only the user can read.
//! - `print` prints a valid access token, refreshing it first when it expires within a
//!   minute, under a lock so that concurrent mail programs never spend a rotated refresh
//!   token twice.
//! - `logout` revokes the grant and removes the file.
//!
//! Reading order: [`store`] (the file's contents) → [`disk`] (where files live, permissions,
//! atomic writes, the lock) → [`policy`] (refresh or not, and what a failure costs) →
//! [`device`] (polling) and [`loopback`] (the browser's redirect) → [`print`] and [`login`]
//! (the I/O around them) → [`cli`] (the command line). Every request goes through
//! [`validator::client`], the workspace's one HTTP client.

pub mod cli;
pub mod device;
pub mod disk;
pub mod login;
pub mod loopback;
pub mod policy;
pub mod print;
pub mod store;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use validator::client::{Fault, RequestError};

pub use cli::{run, TokenCommand, EXIT_STATUS_HELP};

use disk::StoreError;
use store::TokenFile;

/// The client id used when none is given: the built-in issuer accepts unregistered public
/// clients for the device flow and for PKCE with a loopback redirect.
pub const DEFAULT_CLIENT_ID: &str = "bearergate";

/// The scope asked for when none is given: the IETF mail scope (what the built-in issuer
/// grants for IMAP, POP3, submission and ManageSieve) and `offline_access`, which OpenID
/// issuers want before they hand out a refresh token.
pub const DEFAULT_SCOPE: &str = "urn:ietf:params:oauth:scope:mail offline_access";

/// How a `token` command ended, as its exit status (sysexits.h numbers where one fits, so
/// that scripts and mail programs can tell "later" from "never").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the sign-in failed or was refused.
    Failed,
    /// 74 (EX_IOERR): the token file could not be read or written.
    IoError,
    /// 75 (EX_TEMPFAIL): the issuer could not be reached or answer usefully; the sign-in is
    /// kept, and the same command may work later.
    TryLater,
    /// 77 (EX_NOPERM): there is no sign-in, or the issuer refused it: sign in again.
    SignIn,
    /// 78 (EX_CONFIG): something must be changed first (file permissions, client id or
    /// secret, CA file, issuer URL).
    Configuration,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Failed => 1,
            Exit::IoError => 74,
            Exit::TryLater => 75,
            Exit::SignIn => 77,
            Exit::Configuration => 78,
        }
    }
}

/// A failed `token` command: its exit status and the message for standard error.
#[derive(Debug)]
pub struct Failure {
    /// The exit status.
    pub exit: Exit,
    /// What happened and what to do, for the person.
    pub message: String,
}

impl Failure {
    /// A failure with this status and message.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    /// The failure of a request made while `doing` something.
    pub fn request(doing: &str, error: &RequestError) -> Self {
        let exit = match error.fault() {
            Fault::Network | Fault::Server | Fault::Pending => Exit::TryLater,
            Fault::Ours => Exit::Configuration,
            Fault::Grant => Exit::Failed,
        };
        Self::new(exit, format!("{doing}: {error}"))
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        let exit = match &error {
            StoreError::Missing { .. } => Exit::SignIn,
            StoreError::Io { .. } => Exit::IoError,
            StoreError::Exposed { .. }
            | StoreError::Format { .. }
            | StoreError::NoHome
            | StoreError::BadAccount(_) => Exit::Configuration,
        };
        Self::new(exit, error.to_string())
    }
}

/// The token file a command works on, and how the person named it (for the messages that
/// tell them which command to run).
#[derive(Debug, Clone)]
pub struct Target {
    /// The file.
    pub path: PathBuf,
    /// `--account NAME` or `--token-file PATH`, as the commands shown should say it.
    pub option: String,
}

impl Target {
    /// The `login` command that signs in again with `file`'s settings.
    pub fn login_command(&self, file: &TokenFile) -> String {
        let mut command = format!("bearergate token login --issuer {}", file.issuer);
        if file.client_id != DEFAULT_CLIENT_ID {
            command.push_str(&format!(" --client-id {}", file.client_id));
        }
        if let Some(secret) = &file.client_secret_file {
            command.push_str(&format!(" --client-secret-file {}", secret.display()));
        }
        if file.scope != DEFAULT_SCOPE {
            command.push_str(&format!(" --scope '{}'", file.scope));
        }
        for resource in &file.resources {
            command.push_str(&format!(" --resource {resource}"));
        }
        if let Some(ca) = &file.ca_file {
            command.push_str(&format!(" --ca-file {}", ca.display()));
        }
        if !self.option.is_empty() {
            command.push(' ');
            command.push_str(&self.option);
        }
        command
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

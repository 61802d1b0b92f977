//! The `bearergate token …` command line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::disk;
use super::login::{login, LoginRequest};
use super::print::{fresh_token, logout, refresh};
use super::{unix_now, Failure, Target, DEFAULT_CLIENT_ID, DEFAULT_SCOPE};

/// The exit statuses, for `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0   success (print: the access token is the only line on standard output)
  1   the sign-in failed or was refused
  2   the command line is wrong
  74  the token file could not be read or written
  75  temporary failure (issuer unreachable, timeout, 5xx, malformed answer); the sign-in
      is kept and the same command may work later
  77  sign in again: there is no token file, or the issuer refused the grant (invalid_grant)
  78  fix the configuration first: token file readable by others, client id or secret
      refused, CA file, issuer URL";

/// `bearergate token`: OAuth tokens for mail programs that can run a command.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Sign in at an issuer (device flow, or a browser with --browser) and keep the tokens
    /// in a file only you can read.
    #[command(after_help = LOGIN_HELP)]
    Login(LoginArgs),
    /// Print a valid access token, refreshing it first when it expires soon (for neomutt's
    /// imap_oauth_refresh_command, mbsync's PassCmd, msmtp's passwordeval).
    #[command(after_help = EXIT_STATUS_HELP)]
    Print(PrintArgs),
    /// Revoke the sign-in at the issuer and remove the token file.
    #[command(after_help = EXIT_STATUS_HELP)]
    Logout(LogoutArgs),
}

const LOGIN_HELP: &str = "\
Examples:
  bearergate token login --issuer https://mail.example.com:8443 --account work
  bearergate token login --issuer https://accounts.google.com --browser \\
      --client-id ID.apps.googleusercontent.com --client-secret-file ~/.config/google-secret \\
      --scope 'https://mail.google.com/' --account gmail

Google's device flow does not allow the mail scope: use --browser there.

Exit status: 0 signed in; 1 refused or expired; 75 issuer unreachable; 78 configuration.";

/// Which token file.
#[derive(Debug, Args)]
pub struct FileArgs {
    /// The account whose file to use: $XDG_STATE_HOME/bearergate/tokens/NAME.json (else
    /// ~/.local/state/…). Default: "default".
    #[arg(long, value_name = "NAME", conflicts_with = "token_file")]
    pub account: Option<String>,
    /// The token file, anywhere (created 0600).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
}

/// `token login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The issuer identifier (its metadata must name exactly this issuer).
    #[arg(long, value_name = "URL")]
    pub issuer: String,
    /// The client id registered at the issuer (the built-in issuer accepts any id for a
    /// client without a secret).
    #[arg(long, value_name = "ID", default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// A file holding the client secret, for issuers that give one (Google); only its path
    /// is stored.
    #[arg(long, value_name = "FILE")]
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes (Google: https://mail.google.com/; Microsoft:
    /// "https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send
    /// offline_access").
    #[arg(long, value_name = "SCOPES", default_value = DEFAULT_SCOPE)]
    pub scope: String,
    /// An RFC 8707 resource indicator (e.g. imap://mail.example.com); repeatable.
    #[arg(long = "resource", value_name = "URI")]
    pub resources: Vec<String>,
    /// Sign in through a browser (code flow with PKCE and a loopback redirect) even when
    /// the issuer offers the device flow.
    #[arg(long)]
    pub browser: bool,
    /// PEM certificates to trust for this issuer beside the public roots (a private CA);
    /// stored for later refreshes.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Time for each request to the issuer.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub file: FileArgs,
}

/// `token print`.
#[derive(Debug, Args)]
pub struct PrintArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Refresh when the access token expires within this.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub min_validity: Duration,
    /// Time for the refresh request.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `token logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    #[command(flatten)]
    pub file: FileArgs,
    /// Only remove the file; do not revoke the grant at the issuer.
    #[arg(long)]
    pub no_revoke: bool,
    /// Time for the revocation request.
    #[arg(long, value_name = "DURATION", default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Resolves `--account` / `--token-file` to a file.
pub fn target(args: &FileArgs) -> Result<Target, Failure> {
    if let Some(path) = &args.token_file {
        return Ok(Target {
            path: path.clone(),
            option: format!("--token-file {}", path.display()),
        });
    }
    let dir = disk::tokens_dir(|name| std::env::var_os(name))?;
    let (name, option) = match &args.account {
        Some(name) => (name.as_str(), format!("--account {name}")),
        None => (disk::DEFAULT_ACCOUNT, String::new()),
    };
    Ok(Target {
        path: disk::account_file(&dir, name)?,
        option,
    })
}

/// Runs a `token` command; messages go to standard error, only the token to standard output.
pub fn run(command: TokenCommand) -> ExitCode {
    let outcome = match command {
        TokenCommand::Login(args) => run_login(args),
        TokenCommand::Print(args) => run_print(&args),
        TokenCommand::Logout(args) => {
            target(&args.file).and_then(|t| logout(&t, !args.no_revoke, args.timeout))
        }
    };
    match outcome {
        Ok(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("bearergate: {}", failure.message);
            ExitCode::from(failure.exit.code())
        }
    }
}

fn run_login(args: LoginArgs) -> Result<String, Failure> {
    let target = target(&args.file)?;
    let request = LoginRequest {
        issuer: args.issuer,
        client_id: args.client_id,
        client_secret_file: args.client_secret_file.map(absolute),
        scope: args.scope,
        resources: args.resources,
        browser: args.browser,
        ca_file: args.ca_file.map(absolute),
        timeout: args.timeout,
    };
    login(&request, &target)
}

/// Paths stored in the file must not depend on the directory a mail program runs in.
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

fn run_print(args: &PrintArgs) -> Result<String, Failure> {
    let target = target(&args.file)?;
    let timeout = args.timeout;
    let fresh = fresh_token(&target, &unix_now, args.min_validity, |file| {
        refresh(file, timeout)
    })?;
    if let Some(warning) = &fresh.warning {
        eprintln!("bearergate: warning: {warning}");
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", fresh.token.expose())
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            Failure::new(
                super::Exit::IoError,
                format!("cannot write the token to standard output: {e}"),
            )
        })?;
    Ok(String::new())
}

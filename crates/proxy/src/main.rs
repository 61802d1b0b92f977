//! The `bearergate` binary: command line, configuration, runtime.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use bearergate::admin;
use bearergate::config::Config;
use clap::{Parser, Subcommand};

/// jemalloc, whose background thread hands memory freed after a burst of connections back to
/// the system while the proxy sits idle; glibc malloc keeps most of it resident for good
/// (`cargo bench -p bearergate --bench flood`, with and without default features).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// OAuth 2.0 (XOAUTH2 / OAUTHBEARER) front for IMAP, SMTP submission and ManageSieve servers.
#[derive(Debug, Parser)]
#[command(
    name = "bearergate",
    version,
    about,
    after_help = "Signals: SIGHUP reloads the configuration file and the certificates (an invalid \
                  configuration is refused and logged; the running one stays); SIGTERM or SIGINT \
                  stops accepting, lets open sessions finish for drain_timeout, and exits 0."
)]
struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE", default_value = "proxy.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and exit: 0 when valid, otherwise each error with its key.
    CheckConfig,
    /// Clients of the built-in authorization server, registered by hand.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// API keys of the built-in authorization server.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// OAuth tokens for mail programs that run a command for them (neomutt, mbsync, msmtp);
    /// needs no configuration file.
    #[command(subcommand, after_help = bearergate::token::EXIT_STATUS_HELP)]
    Token(bearergate::token::TokenCommand),
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Register a client (exact redirect URIs; a loopback one matches any port).
    Add {
        /// The client id.
        #[arg(long)]
        id: String,
        /// A redirect URI; repeat for several. Optional for device-flow-only clients.
        #[arg(long = "redirect-uri", value_name = "URI")]
        redirect_uris: Vec<String>,
        /// The name people see on the consent page.
        #[arg(long)]
        name: Option<String>,
        /// A confidential client: generate a secret (printed once).
        #[arg(long)]
        secret: bool,
    },
    /// List registered clients.
    List,
    /// Remove a client and revoke its grants.
    Remove {
        /// The client id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeysCommand {
    /// Create an API key (printed once).
    Create {
        /// What the key may do: oauth-client-registration.
        #[arg(long = "permission", value_name = "PERMISSION", required = true)]
        permissions: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(Command::Token(token)) => return bearergate::token::run(token),
        other => other,
    };
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{}: invalid configuration", cli.config.display());
            for error in &errors {
                eprintln!("  {error}");
            }
            return ExitCode::from(2);
        }
    };
    let base = cli
        .config
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let admin = match command {
        None => None,
        Some(Command::CheckConfig) => {
            println!("{}: configuration is valid", cli.config.display());
            return ExitCode::SUCCESS;
        }
        Some(Command::Clients(ClientsCommand::Add {
            id,
            redirect_uris,
            name,
            secret,
        })) => Some(admin::add_client(
            &config,
            &base,
            &id,
            &redirect_uris,
            name.as_deref(),
            secret,
        )),
        Some(Command::Clients(ClientsCommand::List)) => Some(admin::list_clients(&config, &base)),
        Some(Command::Clients(ClientsCommand::Remove { id })) => {
            Some(admin::remove_client(&config, &base, &id))
        }
        Some(Command::ApiKeys(ApiKeysCommand::Create { permissions })) => {
            Some(admin::create_api_key(&config, &base, &permissions))
        }
        // Handled before the configuration is read.
        Some(Command::Token(_)) => None,
    };
    match admin {
        Some(Ok(output)) => {
            print!("{output}");
            return ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            eprintln!("bearergate: {e}");
            return ExitCode::FAILURE;
        }
        None => {}
    }
    if let Err(e) = bearergate::logging::init(&config.log) {
        eprintln!("cannot set up logging: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bearergate::server::run(config, &cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "bearergate stopped");
            eprintln!("bearergate: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `bearergate` binary: command line, configuration, runtime.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use bearergate::config::Config;
use clap::{Parser, Subcommand};

/// OAuth 2.0 (XOAUTH2 / OAUTHBEARER) front for IMAP, SMTP submission and ManageSieve servers.
#[derive(Debug, Parser)]
#[command(name = "bearergate", version, about)]
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    if let Some(Command::CheckConfig) = cli.command {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
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
    let base = cli
        .config
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    match runtime.block_on(bearergate::server::run(config, &base)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "bearergate stopped");
            eprintln!("bearergate: {e}");
            ExitCode::FAILURE
        }
    }
}

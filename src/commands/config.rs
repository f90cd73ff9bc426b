//! `keycloak-sync config check`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the configuration and print it with secrets redacted.
    Check,
}

pub fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Check => print!("{}", settings.render()),
    }
    Ok(ExitCode::SUCCESS)
}

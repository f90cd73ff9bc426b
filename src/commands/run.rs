//! `keycloak-sync run`: the daemon.

use std::process::ExitCode;

use crate::config::Settings;
use crate::daemon::{self, RunOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Do not apply migrations at start.
    #[arg(long)]
    no_migrate: bool,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let options = RunOptions {
        migrate: !args.no_migrate,
    };
    daemon::run(settings, options).await?;
    Ok(ExitCode::SUCCESS)
}

//! `keycloak-sync dlq list|requeue`: the dead-letter queue.

use std::process::ExitCode;

use clap::Subcommand;

use super::report::finish_one;
use crate::amqp::dlq;
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count the dead-lettered messages and tally their reasons (nothing is removed).
    List {
        /// Inspect at most this many messages for their reasons.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
    /// Move dead-lettered messages back to the main queue, after a fix.
    #[command(alias = "replay")]
    Requeue {
        #[arg(long, default_value_t = u64::MAX)]
        limit: u64,
    },
}

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    Ok(match command {
        Command::List { limit } => finish_one(dlq::list(&settings.amqp, limit).await?),
        Command::Requeue { limit } => finish_one(dlq::requeue(&settings.amqp, limit).await?),
    })
}

//! `keycloak-sync vault status|purge-expired|rotate`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::report::finish_one;
use crate::config::Settings;
use crate::jobs::rotation::{rotate, RotationOptions};
use crate::store::{vault, Store};
use crate::telemetry::progress::stderr_is_terminal;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Count stored tokens by type and key id (never token values).
    Status,
    /// Delete expired tokens now.
    PurgeExpired,
    /// Re-encrypt every row not under vault.active_key; safe while the daemon writes,
    /// resumable after an interruption.
    Rotate {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: i64,
        /// Stop after this many batches (the next run resumes).
        #[arg(long)]
        max_batches: Option<u64>,
    },
}

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.database)
        .await?
        .with_feed(settings.changes.channel.as_deref());
    store.migrate().await?;
    match command {
        Command::Status => {
            let rows = vault::status(&store).await?;
            println!("{:<10} {:<16} {:>10}", "type", "key id", "tokens");
            for (token_type, key_id, count) in rows {
                println!("{token_type:<10} {key_id:<16} {count:>10}");
            }
            if let Some(keys) = &settings.vault.keys {
                println!("active key: {}", keys.active_id());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::PurgeExpired => {
            let purged = vault::purge_expired(&store).await?;
            println!("purged {purged} expired tokens");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate {
            batch_size,
            max_batches,
        } => {
            let keys = settings
                .vault
                .keys
                .clone()
                .context("vault rotate needs vault.keys and vault.active_key")?;
            let options = RotationOptions {
                batch_size: batch_size.max(1),
                max_batches,
                progress: stderr_is_terminal(),
            };
            Ok(finish_one(rotate(&store, &keys, &options).await?))
        }
    }
}

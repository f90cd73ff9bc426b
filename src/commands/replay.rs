//! `keycloak-sync replay`: a JSONL event log through the apply path.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::report::finish_one;
use crate::config::Settings;
use crate::context::AppContext;
use crate::core::intake::Intake;
use crate::jobs::replay::{replay, ReplayOptions, Source};
use crate::telemetry::progress::stderr_is_terminal;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file, or - for standard input.
    input: PathBuf,
    /// Events per transaction (default: replay.batch_size).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Batches applied concurrently (default: replay.workers).
    #[arg(long)]
    workers: Option<usize>,
    /// Write each rejected line (number, reason, redacted input) to this JSONL file.
    #[arg(long)]
    rejects: Option<PathBuf>,
    /// Do not apply migrations first.
    #[arg(long)]
    no_migrate: bool,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let context = AppContext::connect(settings, !args.no_migrate).await?;
    let (store, settings) = (context.store.clone(), context.settings.clone());
    let options = ReplayOptions {
        batch_size: args.batch_size.unwrap_or(settings.replay.batch_size),
        workers: args.workers.unwrap_or(settings.replay.workers),
        intake: Intake {
            max_message_bytes: settings.limits.max_message_bytes,
            vault_enabled: settings.vault.keys.is_some(),
            max_clock_skew: settings.limits.max_clock_skew,
            realms: settings.limits.realms.clone().into(),
            event_publishers: settings.amqp.event_publishers.clone().into(),
            token_publishers: settings.amqp.token_publishers.clone().into(),
        },
        rejects: args.rejects,
        progress: stderr_is_terminal(),
    };
    let report = replay(&store, Source::from_arg(&args.input), options)
        .await
        .with_context(|| format!("replay of {}", args.input.display()))?;
    Ok(finish_one(report))
}

//! `keycloak-sync publish`: a JSONL event log onto the exchange the daemon consumes.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::amqp::publish::{publish_lines, PublishOptions};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file, or - for standard input.
    input: PathBuf,
    /// Load testing: messages per second (default: as fast as confirms allow).
    #[arg(long)]
    rate: Option<u32>,
    /// Load testing: set each event's time to its publish time (measures lag).
    #[arg(long)]
    restamp: bool,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let options = PublishOptions {
        rate: args.rate,
        restamp: args.restamp,
    };
    let published = if args.input == Path::new("-") {
        publish_lines(&settings.amqp, std::io::stdin().lock(), options).await?
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot open {}", args.input.display()))?;
        publish_lines(&settings.amqp, BufReader::new(file), options).await?
    };
    println!(
        "published {published} messages to {}",
        settings.amqp.exchange
    );
    Ok(ExitCode::SUCCESS)
}

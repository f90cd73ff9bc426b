//! `keycloak-sync backfill`: Keycloak's stored events from a time window.

use std::process::ExitCode;

use super::admin_api_tools;
use super::report::finish;
use crate::config::Settings;
use crate::jobs::backfill::{backfill_all, parse_instant, BackfillOptions};
use crate::keycloak::EventStream;
use crate::telemetry::progress::stderr_is_terminal;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start of the window (inclusive): epoch ms, yyyy-MM-dd (UTC) or RFC 3339.
    #[arg(long, value_parser = parse_instant)]
    since: i64,
    /// End of the window (exclusive); default: open-ended.
    #[arg(long, value_parser = parse_instant)]
    until: Option<i64>,
    /// Only user events (`events`) or only admin events (`admin-events`).
    #[arg(long, value_parser = ["events", "admin-events"])]
    only: Option<String>,
    /// Read the window from its start again instead of resuming.
    #[arg(long)]
    restart: bool,
    /// Only this realm (repeatable; default: keycloak.realms).
    #[arg(long)]
    realm: Vec<String>,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    if args.until.is_some_and(|until| until <= args.since) {
        anyhow::bail!("--until must be later than --since");
    }
    let (store, keycloak) = admin_api_tools(&settings, &args.realm).await?;
    let options = BackfillOptions {
        since_ms: args.since,
        until_ms: args.until,
        streams: match args.only.as_deref() {
            Some("events") => vec![EventStream::User],
            Some(_) => vec![EventStream::Admin],
            None => vec![EventStream::User, EventStream::Admin],
        },
        restart: args.restart,
        max_message_bytes: settings.limits.max_message_bytes,
        progress: stderr_is_terminal(),
    };
    Ok(finish(backfill_all(&store, &keycloak, &options).await))
}

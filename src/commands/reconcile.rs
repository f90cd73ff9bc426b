//! `keycloak-sync reconcile`: every user of each realm from the Admin API.

use std::process::ExitCode;

use super::admin_api_tools;
use super::report::finish;
use crate::config::{SessionCheck, Settings};
use crate::jobs::reconcile::{reconcile_all, ReconcileOptions};
use crate::telemetry::progress::stderr_is_terminal;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Report the differences without writing anything.
    #[arg(long)]
    dry_run: bool,
    /// Delete even when more than reconcile.max_delete_percent of a realm would go.
    #[arg(long)]
    allow_mass_delete: bool,
    /// Also compare active sessions: `all`, a number of users to sample, or `none`
    /// (default: reconcile.sessions).
    #[arg(long, value_name = "all|N|none")]
    sessions: Option<SessionCheck>,
    /// Also read each user's groups and effective roles and correct memberships and
    /// grants (default: reconcile.directory).
    #[arg(long)]
    directory: bool,
    /// Only this realm (repeatable; default: keycloak.realms).
    #[arg(long)]
    realm: Vec<String>,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    let (store, keycloak) = admin_api_tools(&settings, &args.realm).await?;
    let options = ReconcileOptions {
        dry_run: args.dry_run,
        allow_mass_delete: args.allow_mass_delete,
        max_delete_percent: settings.reconcile.max_delete_percent,
        sessions: args.sessions.unwrap_or(settings.reconcile.sessions),
        directory: args.directory || settings.reconcile.directory,
        progress: stderr_is_terminal(),
    };
    let results = reconcile_all(&store, &keycloak, &options).await;
    Ok(finish(results.into_iter().map(|result| {
        result.map_err(|error| format!("reconcile failed: {error}"))
    })))
}

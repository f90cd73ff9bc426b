//! `keycloak-sync sessions expire`.

use std::process::ExitCode;

use clap::Subcommand;

use super::report::finish_one;
use crate::config::Settings;
use crate::context::AppContext;
use crate::jobs::expiry::{expire, learn_policies, PolicyRead};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// End every open session more than sessions.expiry_margin_secs past the time its
    /// realm's policy says Keycloak expires it (policies from sessions.realm_policies and
    /// the Admin API, read first).
    Expire {
        /// Count what would end under the policies already stored; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Only this realm (its id or its name).
        #[arg(long)]
        realm: Option<String>,
    },
}

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let Command::Expire { dry_run, realm } = command;
    let context = AppContext::connect(settings, true).await?;
    let (store, settings, admin) = (&context.store, &context.settings, context.admin());
    let policies = if dry_run {
        Default::default()
    } else {
        learn_policies(store, admin, &settings.sessions, PolicyRead::All).await?
    };
    let report = expire(
        store,
        &settings.sessions,
        realm.as_deref(),
        dry_run,
        policies,
    )
    .await?;
    Ok(finish_one(report))
}

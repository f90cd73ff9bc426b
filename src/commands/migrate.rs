//! `keycloak-sync migrate`: the schema and its pending migrations.

use std::process::ExitCode;

use crate::config::Settings;
use crate::context::AppContext;

pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let context = AppContext::connect(settings, true).await?;
    tracing::info!(schema = context.store.schema(), "migrations applied");
    Ok(ExitCode::SUCCESS)
}

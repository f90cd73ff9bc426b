//! `keycloak-sync migrate`: the schema and its pending migrations.

use std::process::ExitCode;

use crate::config::Settings;
use crate::store::Store;

pub async fn run(settings: Settings) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    tracing::info!(schema = store.schema(), "migrations applied");
    Ok(ExitCode::SUCCESS)
}

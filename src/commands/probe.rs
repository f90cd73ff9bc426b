//! `keycloak-sync probe`: the daemon's own health endpoint, for container checks.

use std::process::ExitCode;

use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// `/healthz` (the process is alive) or `/readyz` (it can do its work).
    #[arg(default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
    path: String,
}

pub async fn run(args: Args, settings: Settings) -> anyhow::Result<ExitCode> {
    Ok(crate::http::probe::probe(settings.http.listen, &args.path).await)
}

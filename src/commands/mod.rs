//! The command line: one binary, one file per subcommand holding its arguments and its
//! `run`; [`report`] decides how every command ends.

mod backfill;
mod config;
mod dlq;
mod migrate;
mod probe;
mod publish;
mod reconcile;
mod replay;
pub mod report;
mod run;
mod sample;
mod sessions;
mod vault;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::context::AppContext;
use crate::keycloak::AdminClient;
use crate::store::Store;

pub use report::EXIT_REJECTED;

#[derive(Debug, Parser)]
#[command(
    name = "keycloak-sync",
    version,
    about = "Keeps Postgres in step with Keycloak users, sessions and tokens"
)]
pub struct Cli {
    /// TOML configuration file; KEYCLOAK_SYNC__SECTION__KEY variables override it.
    #[arg(long, global = true, env = "KEYCLOAK_SYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: consume RabbitMQ, apply, serve /healthz, /readyz, /metrics.
    Run(run::Args),
    /// Inspect the dead-letter queue or requeue its messages.
    Dlq {
        #[command(subcommand)]
        command: dlq::Command,
    },
    /// Publish a JSONL event log to the exchange the daemon consumes (demos, recovery).
    Publish(publish::Args),
    /// Create the schema and apply pending migrations.
    Migrate,
    /// Apply a JSONL event log (any mix of the supported shapes) through the apply path.
    Replay(replay::Args),
    /// Sweep every user of each configured realm from Keycloak's Admin API: update
    /// profiles that differ, delete users Keycloak no longer has, end stale sessions.
    Reconcile(reconcile::Args),
    /// Apply Keycloak's stored events (user and admin) from a time window; resumes where
    /// an interrupted run of the same window stopped.
    Backfill(backfill::Args),
    /// Sessions Keycloak expires without an event.
    Sessions {
        #[command(subcommand)]
        command: sessions::Command,
    },
    /// The token vault: status, expiry sweep, key rotation.
    Vault {
        #[command(subcommand)]
        command: vault::Command,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: config::Command,
    },
    /// Ask the running daemon's own HTTP endpoint (container health checks): exit 0 on
    /// 200, 1 otherwise.
    Probe(probe::Args),
    /// Write a synthetic event history as JSONL to standard output (demos, load tests).
    Sample(sample::Args),
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Run(args) => run::run(args, settings(config)?).await,
        Command::Dlq { command } => dlq::run(command, settings(config)?).await,
        Command::Publish(args) => publish::run(args, settings(config)?).await,
        Command::Migrate => migrate::run(settings(config)?).await,
        Command::Replay(args) => replay::run(args, settings(config)?).await,
        Command::Reconcile(args) => reconcile::run(args, settings(config)?).await,
        Command::Backfill(args) => backfill::run(args, settings(config)?).await,
        Command::Sessions { command } => sessions::run(command, settings(config)?).await,
        Command::Vault { command } => vault::run(command, settings(config)?).await,
        Command::Config { command } => config::run(command, Settings::load(config)?),
        Command::Probe(args) => probe::run(args, Settings::load(config)?).await,
        Command::Sample(args) => sample::run(args),
    }
}

/// The store (migrated) and the Admin API client, limited to `realms` if any are given:
/// what reconcile and backfill work with.
async fn admin_api_tools(
    settings: &Settings,
    realms: &[String],
) -> anyhow::Result<(Store, Arc<AdminClient>)> {
    let context = AppContext::connect(settings.clone(), true).await?;
    let keycloak = context.admin_for(realms)?;
    Ok((context.store.clone(), Arc::new(keycloak)))
}

/// The validated settings, with logging set up from them.
fn settings(config: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config)?;
    crate::telemetry::init(&settings.log);
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn dlq_replay_is_a_hidden_alias_of_requeue() {
        let cli = Cli::try_parse_from(["keycloak-sync", "dlq", "replay", "--limit", "5"])
            .expect("the old name still parses");
        assert!(matches!(
            cli.command,
            Command::Dlq {
                command: dlq::Command::Requeue { limit: 5 }
            }
        ));
        let help = Cli::command()
            .find_subcommand_mut("dlq")
            .expect("dlq")
            .render_long_help()
            .to_string();
        assert!(
            help.contains("requeue") && !help.contains("replay"),
            "{help}"
        );
    }
}

//! The command line: one binary, one subcommand per job, each a call into the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::ingest::Intake;
use crate::replay::{self, ReplayOptions, Source};
use crate::sample::{self, SampleOptions};
use crate::store::Store;
use crate::telemetry;

/// Exit status of a replay that finished but refused some lines.
pub const EXIT_REJECTED: u8 = 3;

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
    Run {
        /// Do not apply migrations at start.
        #[arg(long)]
        no_migrate: bool,
    },
    /// Inspect or replay the dead-letter queue.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Publish a JSONL event log to the exchange the daemon consumes (demos, recovery).
    Publish {
        /// The file, or - for standard input.
        input: PathBuf,
        /// Load testing: messages per second (default: as fast as confirms allow).
        #[arg(long)]
        rate: Option<u32>,
        /// Load testing: set each event's time to its publish time (measures lag).
        #[arg(long)]
        restamp: bool,
    },
    /// Create the schema and apply pending migrations.
    Migrate,
    /// Apply a JSONL event log (any mix of the supported shapes) through the apply path.
    Replay {
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
    },
    /// Sweep every user of each configured realm from Keycloak's Admin API: update
    /// profiles that differ, delete users Keycloak no longer has, end stale sessions.
    Reconcile {
        /// Report the differences without writing anything.
        #[arg(long)]
        dry_run: bool,
        /// Delete even when more than reconcile.max_delete_percent of a realm would go.
        #[arg(long)]
        allow_mass_delete: bool,
        /// Also compare active sessions: `all`, a number of users to sample, or `none`
        /// (default: reconcile.sessions).
        #[arg(long, value_name = "all|N|none")]
        sessions: Option<crate::config::SessionCheck>,
        /// Only this realm (repeatable; default: keycloak.realms).
        #[arg(long)]
        realm: Vec<String>,
    },
    /// Apply Keycloak's stored events (user and admin) from a time window; resumes where
    /// an interrupted run of the same window stopped.
    Backfill {
        /// Start of the window (inclusive): epoch ms, yyyy-MM-dd (UTC) or RFC 3339.
        #[arg(long, value_parser = crate::backfill::parse_instant)]
        since: i64,
        /// End of the window (exclusive); default: open-ended.
        #[arg(long, value_parser = crate::backfill::parse_instant)]
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
    },
    /// The token vault: status, expiry sweep, key rotation.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Ask the running daemon's own HTTP endpoint (container health checks): exit 0 on
    /// 200, 1 otherwise.
    Probe {
        /// `/healthz` (the process is alive) or `/readyz` (it can do its work).
        #[arg(default_value = "/healthz", value_parser = ["/healthz", "/readyz"])]
        path: String,
    },
    /// Write a synthetic event history as JSONL to standard output (demos, load tests).
    Sample {
        #[arg(long, default_value_t = 1000)]
        events: usize,
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead-lettered messages and tally their reasons (nothing is removed).
    List {
        /// Inspect at most this many messages for their reasons.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
    /// Move dead-lettered messages back to the main queue, after a fix.
    Replay {
        #[arg(long, default_value_t = u64::MAX)]
        limit: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
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

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted.
    Check,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { no_migrate } => {
            let settings = load(cli.config)?;
            crate::daemon::run(
                settings,
                crate::daemon::RunOptions {
                    migrate: !no_migrate,
                },
            )
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq {
            command: DlqCommand::List { limit },
        } => {
            let settings = load(cli.config)?;
            let listing = crate::amqp::dlq::list(&settings.amqp, limit).await?;
            println!(
                "dead-letter queue {}: {} messages",
                settings.amqp.dead_letter_queue, listing.count
            );
            for (reason, count) in &listing.reasons {
                println!("{count:>8}  {reason}");
            }
            if u64::from(listing.count) > listing.inspected {
                println!("(reasons of the first {} messages)", listing.inspected);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq {
            command: DlqCommand::Replay { limit },
        } => {
            let settings = load(cli.config)?;
            let replayed = crate::amqp::dlq::replay(&settings.amqp, limit).await?;
            println!(
                "dlq replay summary: republished {} to {}, {} left in {}",
                replayed.republished,
                settings.amqp.queue,
                replayed.remaining,
                settings.amqp.dead_letter_queue
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish {
            input,
            rate,
            restamp,
        } => {
            let settings = load(cli.config)?;
            let options = crate::amqp::publish::PublishOptions { rate, restamp };
            let published = if input == std::path::Path::new("-") {
                crate::amqp::publish::publish_lines(
                    &settings.amqp,
                    std::io::stdin().lock(),
                    options,
                )
                .await?
            } else {
                let file = std::fs::File::open(&input)
                    .with_context(|| format!("cannot open {}", input.display()))?;
                crate::amqp::publish::publish_lines(
                    &settings.amqp,
                    std::io::BufReader::new(file),
                    options,
                )
                .await?
            };
            println!(
                "published {published} messages to {}",
                settings.amqp.exchange
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Vault { command } => run_vault(load(cli.config)?, command).await,
        Command::Reconcile {
            dry_run,
            allow_mass_delete,
            sessions,
            realm,
        } => {
            let settings = load(cli.config)?;
            let (store, keycloak) = admin_api_tools(&settings, &realm).await?;
            let options = crate::reconcile::ReconcileOptions {
                dry_run,
                allow_mass_delete,
                max_delete_percent: settings.reconcile.max_delete_percent,
                sessions: sessions.unwrap_or(settings.reconcile.sessions),
                progress: replay::stderr_is_terminal(),
            };
            let mut failed = false;
            for result in crate::reconcile::reconcile_all(&store, &keycloak, &options).await {
                match result {
                    Ok(report) => println!("reconcile summary: {report}"),
                    Err(error) => {
                        failed = true;
                        eprintln!("reconcile failed: {error}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Backfill {
            since,
            until,
            only,
            restart,
            realm,
        } => {
            if until.is_some_and(|until| until <= since) {
                anyhow::bail!("--until must be later than --since");
            }
            let settings = load(cli.config)?;
            let (store, keycloak) = admin_api_tools(&settings, &realm).await?;
            use crate::keycloak::EventStream;
            let streams = match only.as_deref() {
                Some("events") => vec![EventStream::User],
                Some(_) => vec![EventStream::Admin],
                None => vec![EventStream::User, EventStream::Admin],
            };
            let options = crate::backfill::BackfillOptions {
                since_ms: since,
                until_ms: until,
                streams,
                restart,
                max_message_bytes: settings.max_message_bytes,
                progress: replay::stderr_is_terminal(),
            };
            let mut failed = false;
            let mut rejected = false;
            for result in crate::backfill::backfill_all(&store, &keycloak, &options).await {
                match result {
                    Ok(report) => {
                        rejected |= report.rejected > 0;
                        println!("{report}");
                    }
                    Err(error) => {
                        failed = true;
                        eprintln!("{error}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else if rejected {
                ExitCode::from(EXIT_REJECTED)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Sample {
            events,
            users,
            seed,
        } => {
            let options = SampleOptions {
                events,
                users,
                seed,
                ..SampleOptions::default()
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            for line in sample::history(options) {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Probe { path } => {
            let settings = Settings::load(cli.config.as_deref())?;
            Ok(crate::http::probe(settings.http_listen, &path).await)
        }
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let settings = Settings::load(cli.config.as_deref())?;
            print!("{}", settings.render());
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let settings = load(cli.config)?;
            let store = Store::connect(&settings.database).await?;
            store.migrate().await?;
            tracing::info!(schema = store.schema(), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            input,
            batch_size,
            workers,
            rejects,
            no_migrate,
        } => {
            let settings = load(cli.config)?;
            let store = Store::connect(&settings.database)
                .await?
                .with_vault(settings.vault.keys.clone())
                .with_enrichment(settings.keycloak.enrich);
            if !no_migrate {
                store.migrate().await?;
            }
            let options = ReplayOptions {
                batch_size: batch_size.unwrap_or(settings.replay_batch_size),
                workers: workers.unwrap_or(settings.replay_workers),
                intake: Intake {
                    max_message_bytes: settings.max_message_bytes,
                    vault_enabled: settings.vault.keys.is_some(),
                },
                rejects,
                progress_bar: replay::stderr_is_terminal(),
            };
            let summary = replay::replay(&store, Source::from_arg(&input), options)
                .await
                .with_context(|| format!("replay of {}", input.display()))?;
            println!("{summary}");
            Ok(if summary.rejected > 0 {
                ExitCode::from(EXIT_REJECTED)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn run_vault(settings: Settings, command: VaultCommand) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.database).await?;
    store.migrate().await?;
    match command {
        VaultCommand::Status => {
            let rows = crate::vault::status(&store).await?;
            println!("{:<10} {:<16} {:>10}", "type", "key id", "tokens");
            for (token_type, key_id, count) in rows {
                println!("{token_type:<10} {key_id:<16} {count:>10}");
            }
            if let Some(keys) = &settings.vault.keys {
                println!("active key: {}", keys.active_id());
            }
            Ok(ExitCode::SUCCESS)
        }
        VaultCommand::PurgeExpired => {
            let purged = crate::vault::purge_expired(&store).await?;
            println!("purged {purged} expired tokens");
            Ok(ExitCode::SUCCESS)
        }
        VaultCommand::Rotate {
            batch_size,
            max_batches,
        } => {
            let keys = settings
                .vault
                .keys
                .clone()
                .context("vault rotate needs vault.keys and vault.active_key")?;
            rotate(&store, &keys, batch_size.max(1), max_batches).await
        }
    }
}

/// Re-encrypts in batches with a progress bar, then verifies nothing is left under a
/// retired key. Non-zero exit when any row failed or remains.
async fn rotate(
    store: &Store,
    keys: &crate::vault::KeyRing,
    batch_size: i64,
    max_batches: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let total = crate::vault::rows_to_rotate(store, keys).await?;
    let bar = if replay::stderr_is_terminal() {
        indicatif::ProgressBar::new(total.max(0) as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut summary = crate::vault::Rotation::default();
    let mut batches = 0u64;
    loop {
        if max_batches.is_some_and(|max| batches >= max) {
            break;
        }
        let done = crate::vault::rotate_batch(store, keys, batch_size).await?;
        batches += 1;
        summary.rotated += done.rotated;
        summary.raced += done.raced;
        summary.failed += done.failed;
        bar.inc(done.rotated);
        // Nothing left, or only rows that cannot be opened (counted as failed).
        if done.read == 0 || done.rotated + done.raced == 0 {
            break;
        }
    }
    bar.finish_and_clear();
    summary.remaining = crate::vault::rows_to_rotate(store, keys).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "vault rotate summary: rotated {}, changed meanwhile {}, failed {}, remaining under retired keys {} ({:.2}s, {:.0} rows/s)",
        summary.rotated,
        summary.raced,
        summary.failed,
        summary.remaining,
        elapsed,
        summary.rotated as f64 / elapsed.max(1e-9)
    );
    Ok(if summary.failed > 0 || summary.remaining > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The store (migrated; events it applies queue incomplete users for the daemon's
/// enrichment, as the daemon's own do) and the Admin API client, limited to `realms` if
/// any are given.
async fn admin_api_tools(
    settings: &Settings,
    realms: &[String],
) -> anyhow::Result<(Store, std::sync::Arc<crate::keycloak::AdminClient>)> {
    let mut keycloak_settings = settings.keycloak.clone();
    if !realms.is_empty() {
        keycloak_settings.realms = realms.to_vec();
    }
    let keycloak = crate::keycloak::AdminClient::new(&keycloak_settings)?;
    let store = Store::connect(&settings.database)
        .await?
        .with_enrichment(settings.keycloak.enrich);
    store.migrate().await?;
    Ok((store, std::sync::Arc::new(keycloak)))
}

fn load(config: Option<PathBuf>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config.as_deref())?;
    telemetry::init(&settings.log);
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
}

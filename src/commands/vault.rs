//! `keycloak-sync vault status|purge-expired|rotate`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use super::report::finish_one;
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;

use crate::config::{SecretUrl, Settings};
use crate::context::AppContext;
use crate::jobs::import::{import, ImportOptions};
use crate::jobs::rotation::{rotate, RotationOptions};
use crate::store::vault;
use crate::telemetry::progress::stderr_is_terminal;
use crate::vault::{LegacyFormat, LegacyKey};

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Import the tokens an application already stores: a read query whose columns are
    /// realm_id, user_id, token_type (refresh|offline), token, and optionally client_id,
    /// session_id, expires_at, issued_at (else updated_at), metadata (jsonb). Through the
    /// same rules as token messages; resumable; every imported row verified.
    Import {
        /// The SELECT to run on the source database.
        #[arg(long)]
        query: String,
        /// The application's database (default: database.url). A secret: prefer the
        /// environment variable to the command line.
        #[arg(long, env = "KEYCLOAK_SYNC_IMPORT_SOURCE_URL", hide_env_values = true)]
        source_url: Option<String>,
        /// Read, open and count; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Tokens are encrypted by the application: `scrypt-aes256gcm-hex`.
        #[arg(long, requires = "legacy_key_env")]
        legacy_format: Option<String>,
        /// The environment variable holding the legacy format's passphrase.
        #[arg(long, requires = "legacy_format")]
        legacy_key_env: Option<String>,
        /// Source rows per page (users are never split across pages).
        #[arg(long, default_value_t = 1000)]
        page_size: i64,
        /// Start over even if an earlier run of the same import stopped midway.
        #[arg(long)]
        restart: bool,
        /// Stop after this many pages (the next run resumes).
        #[arg(long)]
        max_pages: Option<u64>,
    },
}

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    let context = AppContext::connect(settings, true).await?;
    let (store, settings) = (context.store.clone(), context.settings.clone());
    match command {
        Command::Status => {
            let rows = vault::status(&store).await?;
            println!("{:<10} {:<16} {:>10}", "type", "key id", "tokens");
            for (token_type, key_id, count) in rows {
                println!("{token_type:<10} {key_id:<16} {count:>10}");
            }
            if let Some(keys) = &settings.vault.keys {
                println!("active key: {}", keys.active_id());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::PurgeExpired => {
            let purged = vault::purge_expired(&store).await?;
            println!("purged {purged} expired tokens");
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate {
            batch_size,
            max_batches,
        } => {
            let keys = settings
                .vault
                .keys
                .clone()
                .context("vault rotate needs vault.keys and vault.active_key")?;
            let options = RotationOptions {
                batch_size: batch_size.max(1),
                max_batches,
                progress: stderr_is_terminal(),
            };
            Ok(finish_one(rotate(&store, &keys, &options).await?))
        }
        Command::Import {
            query,
            source_url,
            dry_run,
            legacy_format,
            legacy_key_env,
            page_size,
            restart,
            max_pages,
        } => {
            let keys = settings
                .vault
                .keys
                .clone()
                .context("vault import needs vault.keys and vault.active_key")?;
            let legacy = match (legacy_format, legacy_key_env) {
                (Some(format), Some(variable)) => {
                    let format = LegacyFormat::parse(&format).with_context(|| {
                        format!(
                            "--legacy-format {format:?} is not known (known: scrypt-aes256gcm-hex)"
                        )
                    })?;
                    let passphrase = std::env::var(&variable).with_context(|| {
                        format!("--legacy-key-env: the environment variable {variable} is not set")
                    })?;
                    Some(LegacyKey::derive(format, &SecretString::from(passphrase)))
                }
                _ => None,
            };
            let source = SecretUrl::new(
                source_url.unwrap_or_else(|| settings.database.url.expose().to_string()),
            );
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(source.expose())
                .await
                .with_context(|| format!("cannot connect to the source database {source}"))?;
            let options = ImportOptions {
                import_id: import_id(&query, source.expose(), legacy.is_some()),
                query,
                page_size: page_size.max(1),
                dry_run,
                restart,
                max_pages,
                legacy,
                progress: stderr_is_terminal(),
            };
            let store = store.with_vault(Some(keys.clone()));
            Ok(finish_one(import(&store, &pool, keys, &options).await?))
        }
    }
}

/// Names an import for resuming: the same query on the same source in the same format.
fn import_id(query: &str, source: &str, legacy: bool) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{query}\0{source}\0{legacy}").as_bytes());
    hex::encode(&digest[..16])
}

//! Follows keycloak-sync's change feed the way an application should: LISTEN first, then
//! read everything after the last position it stored, then treat each notification as
//! "there is more after my position" and read again. Nothing is missed across restarts,
//! disconnects or notifications lost with a connection, because the `changes` table, not
//! the notification, is the record.
//!
//! ```sh
//! cargo run --example follow_changes -- \
//!     --database-url postgres://postgres@127.0.0.1:54329/keycloak_sync \
//!     --position-file ./changes.position
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use sqlx::postgres::{PgListener, PgPool};

#[derive(Parser)]
struct Args {
    /// The database keycloak-sync writes (a session-mode connection: LISTEN needs one).
    #[arg(long, env = "KEYCLOAK_SYNC__DATABASE__URL")]
    database_url: String,
    /// keycloak-sync's schema (`database.schema`).
    #[arg(long, default_value = "keycloak_sync")]
    schema: String,
    /// keycloak-sync's channel (`changes.channel`).
    #[arg(long, default_value = "keycloak_sync")]
    channel: String,
    /// Where the last applied seq is kept between runs.
    #[arg(long, default_value = "changes.position")]
    position_file: PathBuf,
    /// Stop after this many seconds without a change (default: follow for ever).
    #[arg(long)]
    idle_exit_secs: Option<u64>,
}

#[derive(sqlx::FromRow)]
struct Change {
    seq: i64,
    at: String,
    table_name: String,
    row_id: String,
    user_id: Option<String>,
    kind: String,
    detail: serde_json::Value,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pool = PgPool::connect(&args.database_url)
        .await
        .context("connecting to the database")?;
    // 1. Listen before reading, so nothing committed in between goes unnoticed.
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(&args.channel).await?;
    // 2. Catch up from the stored position.
    let mut position = read_position(&args.position_file)?;
    position = catch_up(&pool, &args, position).await?;
    // 3. Each notification says how far the feed has come; read up to there.
    loop {
        let wait = args.idle_exit_secs.map(Duration::from_secs);
        let notification = match wait {
            Some(wait) => match tokio::time::timeout(wait, listener.recv()).await {
                Ok(received) => received?,
                Err(_) => return Ok(()),
            },
            None => listener.recv().await?,
        };
        let range: serde_json::Value = serde_json::from_str(notification.payload())?;
        if range["to"].as_i64().unwrap_or(i64::MAX) > position {
            position = catch_up(&pool, &args, position).await?;
        }
    }
}

/// Prints every change after `position`, in seq order, storing the position as it goes.
async fn catch_up(pool: &PgPool, args: &Args, mut position: i64) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT seq, at::text AS at, table_name, row_id, user_id, kind, detail FROM {}.changes
         WHERE seq > $1 ORDER BY seq LIMIT 1000",
        args.schema
    );
    loop {
        let page: Vec<Change> = sqlx::query_as(&sql).bind(position).fetch_all(pool).await?;
        let Some(last) = page.last().map(|c| c.seq) else {
            return Ok(position);
        };
        for change in &page {
            // The application's own reaction goes here: drop a session, refresh a cache…
            println!(
                "{:>8} {} {:<15} {:<13} {} user={} {}",
                change.seq,
                change.at,
                change.kind,
                change.table_name,
                change.row_id,
                change.user_id.as_deref().unwrap_or("-"),
                change.detail
            );
        }
        position = last;
        std::fs::write(&args.position_file, position.to_string())
            .with_context(|| format!("storing the position in {}", args.position_file.display()))?;
    }
}

fn read_position(path: &PathBuf) -> anyhow::Result<i64> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{} does not hold a seq", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

//! Postgres: every SQL statement of the product. [`apply`](Store::apply) is the one path
//! every input goes through; `write` stores a plan with multi-row upserts whose columns
//! `rows` names; the other modules hold the queues, checkpoints and maintenance passes of
//! the features that own them.

mod apply;
mod checkpoint;
mod directory;
mod enrichment;
mod error;
mod expiry;
mod feed;
mod ids;
pub mod import;
mod inbox;
mod reconcile;
mod rows;
mod statements;
pub mod token_api;
pub mod vault;
mod write;

pub use apply::{ApplyError, EventResult};
pub use checkpoint::BackfillWindow;
pub use enrichment::{EnrichmentClaim, HeldDirectory};
pub use error::{fault_summary, is_event_fault, is_transient, until_database_answers, MayPass};
pub use expiry::{ExpiryPass, PolicySource, StoredPolicy};
pub use feed::Feed;
pub use reconcile::{ListedSessions, ReconcileRun};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use thiserror::Error;

use crate::config::{is_identifier, DatabaseSettings};
use crate::core::change::Change;
pub use crate::core::outcome::{Outcome, Tally};
use crate::vault::KeyRing;

/// A transaction of the store's pool.
type Tx<'t> = Transaction<'t, Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

// Connection poolers in transaction mode (PgBouncer before 1.21, many managed offerings)
// hand each transaction to whichever server connection is free. So every statement of
// the store runs inside a transaction of its own (`Store::begin`, which also sets the
// schema: such poolers drop the connection's startup options), and statements are
// prepared by name only while no such pooler is in the way (`statements`). The three
// functions re-exported below are the store's only way to write a statement.
pub(crate) use statements::{query, query_as, query_scalar};

#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be reached or kept failing for a reason that may pass.
    #[error("database unavailable ({summary}): {0}", summary = fault_summary(.0))]
    Unavailable(#[source] sqlx::Error),
    /// A failure that retrying will not fix: the data was refused, or the configuration
    /// is malformed.
    #[error("database error: {0}")]
    Permanent(#[source] sqlx::Error),
    #[error("invalid schema name {0:?}")]
    Schema(String),
}

impl StoreError {
    fn from_sqlx(error: sqlx::Error) -> Self {
        if statements::is_pooler_symptom(&error) {
            // Retried (as transient) without named statements.
            statements::pooler_noticed("a prepared statement was not where it was prepared");
        }
        if is_transient(&error) {
            StoreError::Unavailable(error)
        } else {
            StoreError::Permanent(error)
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    schema: String,
    retry_max: Duration,
    /// The key ring token messages are sealed with; without it they cannot be applied.
    vault: Option<Arc<KeyRing>>,
    /// Whether users that events leave incomplete are queued for reading from Keycloak.
    enrich: bool,
    /// `BEGIN` and the schema for this transaction, sent as one round trip.
    begin_sql: Arc<str>,
    /// The same, and the check that the transaction runs where its connection was opened
    /// (while statements are prepared by name).
    begin_at_home_sql: Arc<str>,
    /// Whether the inbox holds rows keyed by message id (recorded before content keys),
    /// which the inbox must still recognise; asked once, as none are written any more.
    legacy_inbox: Arc<tokio::sync::OnceCell<bool>>,
    /// Where the changes of each commit are recorded and announced; `None`: nowhere.
    feed: Option<Arc<Feed>>,
}

impl Store {
    /// Opens a pool whose connections use `schema` as their search path, and waits
    /// (up to `retry_max`) for the database to answer.
    pub async fn connect(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(settings)?;
        error::with_backoff(store.retry_max, "connect to the database", || async {
            store.pool.acquire().await.map(drop)
        })
        .await?;
        Ok(store)
    }

    /// Opens the pool without waiting for the database: for the daemon, which starts
    /// (and reports not ready) while Postgres is still down.
    pub fn connect_lazy(settings: &DatabaseSettings) -> Result<Self, StoreError> {
        if !is_identifier(&settings.schema) {
            return Err(StoreError::Schema(settings.schema.clone()));
        }
        // `sslmode`, `sslrootcert`, `sslcert` and `sslkey` come from the URL (rustls).
        crate::install_tls_provider();
        let mut options = PgConnectOptions::from_str(settings.url.expose())
            .map_err(StoreError::Permanent)?
            .application_name("keycloak-sync")
            .options([("search_path", settings.schema.as_str())]);
        if !settings.prepared_statements {
            statements::configured_off();
            // Nor are the migrator's own statements kept across transactions.
            options = options.statement_cache_capacity(0);
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .after_connect(|conn, _| Box::pin(async move { statements::set_home(conn).await }))
            .connect_lazy_with(options);
        Ok(Store {
            pool,
            schema: settings.schema.clone(),
            retry_max: settings.retry_max,
            vault: None,
            enrich: false,
            begin_sql: format!("BEGIN; SET LOCAL search_path TO \"{}\"", settings.schema).into(),
            begin_at_home_sql: format!(
                "{}; BEGIN; SET LOCAL search_path TO \"{}\"",
                statements::HOME_CHECK,
                settings.schema
            )
            .into(),
            legacy_inbox: Arc::default(),
            feed: None,
        })
    }

    /// The same store, sealing token messages with `keys`.
    pub fn with_vault(&self, keys: Option<Arc<KeyRing>>) -> Store {
        Store {
            vault: keys,
            ..self.clone()
        }
    }

    /// The same store, queueing incomplete users for enrichment (`enrichment_queue`).
    pub fn with_enrichment(&self, enrich: bool) -> Store {
        Store {
            enrich,
            ..self.clone()
        }
    }

    /// The same store, recording and announcing its changes on `channel` (the change
    /// feed), or not at all.
    pub fn with_feed(&self, channel: Option<&str>) -> Store {
        Store {
            feed: channel.map(|c| Arc::new(Feed::new(c, &self.schema))),
            ..self.clone()
        }
    }

    /// The change feed's last step in `tx`, if the feed is on.
    async fn announce(&self, tx: &mut Tx<'_>, changes: Vec<Change>) -> Result<(), sqlx::Error> {
        match &self.feed {
            Some(feed) => feed.publish(tx, changes).await,
            None => Ok(()),
        }
    }

    pub fn vault_keys(&self) -> Option<&Arc<KeyRing>> {
        self.vault.as_ref()
    }

    /// The same store, retrying transient errors for at most `retry_max` per call.
    pub fn with_retry_max(&self, retry_max: Duration) -> Store {
        Store {
            retry_max,
            ..self.clone()
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction on the store's schema: every statement runs in one (see `query`).
    /// While statements are prepared by name, its `BEGIN` checks that it runs where its
    /// connection was opened (`statements`).
    pub async fn begin(&self) -> Result<Tx<'static>, sqlx::Error> {
        loop {
            let mut conn = self.pool.acquire().await?;
            if !statements::usable(&conn) {
                // Named statements of another server connection: never sent again.
                conn.close_on_drop();
                continue;
            }
            let at_home = statements::by_name();
            let begin = if at_home {
                &self.begin_at_home_sql
            } else {
                &self.begin_sql
            };
            match Transaction::begin(conn, Some(begin.to_string().into())).await {
                Err(error) if at_home && statements::is_away_from_home(&error) => {
                    statements::pooler_noticed(
                        "a transaction ran on another server connection than its connection's first",
                    );
                }
                begun => return begun,
            }
        }
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `delete` (the age in seconds as `$1`, the batch size as `$2`) until it removes
    /// less than a batch, each batch in its own transaction so the writers are never held
    /// up for long; returns how many rows went.
    async fn delete_in_batches(
        &self,
        what: &str,
        delete: &str,
        older_than: Duration,
    ) -> Result<u64, StoreError> {
        const BATCH: i64 = 10_000;
        let mut total = 0;
        loop {
            let deleted = error::with_backoff(self.retry_max, what, || async {
                let mut tx = self.begin().await?;
                let done = query(delete)
                    .bind(older_than.as_secs_f64())
                    .bind(BATCH)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(done)
            })
            .await?;
            total += deleted;
            if deleted < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Creates the schema if needed and applies pending migrations. Idempotent, and safe
    /// to run from several processes at once: `CREATE … IF NOT EXISTS` races between
    /// sessions, so the whole step runs under an advisory lock of its own.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        error::with_backoff(self.retry_max, "apply migrations", || self.migrate_once()).await
    }

    /// All migrations in one transaction (each in a savepoint), under a transaction-level
    /// lock: that is what a pooler in transaction mode keeps on one server connection.
    async fn migrate_once(&self) -> Result<(), sqlx::Error> {
        const MIGRATION_LOCK: i64 = 0x6b63_7379_6e63_0001;
        let mut tx = self.begin().await?;
        query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema))
            .execute(&mut *tx)
            .await?;
        let migrator = sqlx::migrate::Migrator {
            migrations: MIGRATOR.migrations.clone(),
            ignore_missing: MIGRATOR.ignore_missing,
            locking: false,
            no_tx: MIGRATOR.no_tx,
        };
        migrator.run(&mut *tx).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(error) => error,
            other => sqlx::Error::Migrate(Box::new(other)),
        })?;
        if !statements::by_name() {
            // The migrator prepares its own statements by name: drop them before the
            // server connection goes back to the pooler.
            sqlx::raw_sql("DEALLOCATE ALL").execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Whether the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::raw_sql("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::from_sqlx)
    }
}

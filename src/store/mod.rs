//! Postgres adapter: the one apply path every input (queue, replay, backfill…) goes
//! through. A batch is one transaction: inbox first, then the plan of the events the
//! inbox had not seen, written with multi-row upserts.

mod apply_sql;
mod checkpoint;
mod enrichment;
mod error;
mod reconcile;
pub mod vault;

pub use checkpoint::BackfillWindow;
pub use enrichment::EnrichmentClaim;
pub use error::{is_transient, until_database_answers};
pub use reconcile::ReconcileRun;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use thiserror::Error;

use crate::config::{is_identifier, DatabaseSettings};
use crate::core::event::{Action, Event};
pub use crate::core::outcome::{Outcome, Tally};
use crate::core::plan::{plan, plan_observations, Observation};
use crate::vault::KeyRing;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be reached or kept failing for a reason that may pass.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A failure that retrying will not fix (constraint, bad SQL, bad data).
    #[error("database error: {0}")]
    Permanent(#[source] sqlx::Error),
    #[error("invalid schema name {0:?}")]
    Schema(String),
}

impl StoreError {
    fn from_sqlx(error: sqlx::Error) -> Self {
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
        let options = PgConnectOptions::from_str(settings.url.expose())
            .map_err(StoreError::Permanent)?
            .application_name("keycloak-sync")
            .options([("search_path", settings.schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.connect_timeout)
            .connect_lazy_with(options);
        Ok(Store {
            pool,
            schema: settings.schema.clone(),
            retry_max: settings.retry_max,
            vault: None,
            enrich: false,
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

    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Creates the schema if needed and applies pending migrations. Idempotent, and safe
    /// to run from several processes at once: `CREATE … IF NOT EXISTS` races between
    /// sessions, so the whole step runs under an advisory lock of its own.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        error::with_backoff(self.retry_max, "apply migrations", || self.migrate_once()).await
    }

    async fn migrate_once(&self) -> Result<(), sqlx::Error> {
        const MIGRATION_LOCK: i64 = 0x6b63_7379_6e63_0001;
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        let result = async {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema))
                .execute(&mut *conn)
                .await?;
            MIGRATOR.run(&mut *conn).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(error) => error,
                other => sqlx::Error::Migrate(Box::new(other)),
            })
        }
        .await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        result?;
        unlock.map(drop)
    }

    /// Forgets inbox entries processed longer than `older_than` ago, in bounded batches so
    /// the daemon's own writes are never held up; returns how many went. An event older
    /// than that, delivered again, is applied again: its profile, session and vault effects
    /// are idempotent by themselves, but it counts once more in `login_count` and
    /// `refresh_count`.
    pub async fn prune_inbox(&self, older_than: Duration) -> Result<u64, StoreError> {
        const BATCH: i64 = 10_000;
        let mut total = 0;
        loop {
            let deleted = error::with_backoff(self.retry_max, "prune the inbox", || async {
                sqlx::query(
                    "DELETE FROM processed_events WHERE event_id IN (
                         SELECT event_id FROM processed_events
                         WHERE processed_at < now() - make_interval(secs => $1)
                         LIMIT $2)",
                )
                .bind(older_than.as_secs_f64())
                .bind(BATCH)
                .execute(&self.pool)
                .await
                .map(|done| done.rows_affected())
            })
            .await?;
            total += deleted;
            if deleted < BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Whether the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(StoreError::from_sqlx)
    }

    /// Applies a batch in one transaction and returns each event's outcome, in input
    /// order. Transient failures are retried (up to `database.retry_max_secs`); the whole
    /// transaction is redone, so a retry never applies anything twice.
    pub async fn apply(&self, events: &[Event]) -> Result<Vec<Outcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        error::with_backoff(self.retry_max, "apply a batch", || self.apply_once(events)).await
    }

    /// Like [`apply`](Self::apply), but a batch that fails permanently is split until the
    /// events that cannot be applied are found; they come back as `Err` and the rest is
    /// applied. Only an unavailable database fails the call as a whole.
    pub async fn apply_isolating(
        &self,
        events: &[Event],
    ) -> Result<Vec<Result<Outcome, String>>, StoreError> {
        let mut results = Vec::with_capacity(events.len());
        let mut pending: Vec<&[Event]> = vec![events];
        while let Some(part) = pending.pop() {
            match self.apply(part).await {
                Ok(outcomes) => results.extend(outcomes.into_iter().map(Ok)),
                Err(StoreError::Permanent(error)) if part.len() == 1 => {
                    tracing::warn!(event_id = %part[0].id, %error, "event cannot be applied");
                    results.push(Err(format!("database refused the event: {error}")));
                }
                Err(StoreError::Permanent(_)) => {
                    let (left, right) = part.split_at(part.len() / 2);
                    // Stack order: left half first, so results stay in input order.
                    pending.push(right);
                    pending.push(left);
                }
                Err(other) => return Err(other),
            }
        }
        Ok(results)
    }

    /// Applies what the Admin API said (enrichment, reconcile) in one transaction.
    pub async fn apply_observations(&self, observations: &[Observation]) -> Result<(), StoreError> {
        if observations.is_empty() {
            return Ok(());
        }
        let plan = plan_observations(observations);
        error::with_backoff(self.retry_max, "apply what Keycloak says", || async {
            let mut tx = self.pool.begin().await?;
            apply_sql::write_plan(&mut tx, &plan, None).await?;
            tx.commit().await
        })
        .await
    }

    async fn apply_once(&self, events: &[Event]) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let outcomes = apply_in(&mut tx, events, self.vault.as_deref(), self.enrich).await?;
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The apply path inside a caller's transaction; with `enrich`, users the events leave
/// incomplete are queued for reading from Keycloak in the same transaction.
pub async fn apply_in(
    tx: &mut Transaction<'_, Postgres>,
    events: &[Event],
    vault: Option<&KeyRing>,
    enrich: bool,
) -> Result<Vec<Outcome>, sqlx::Error> {
    let mut seen = HashSet::with_capacity(events.len());
    let first: Vec<&Event> = events
        .iter()
        .filter(|e| seen.insert(e.id.as_str()))
        .collect();
    let fresh = apply_sql::record_inbox(tx, &first).await?;
    let new_events: Vec<&Event> = first
        .iter()
        .copied()
        .filter(|e| fresh.contains(e.id.as_str()))
        .collect();
    let plan = plan(new_events.iter().copied());
    apply_sql::write_plan(tx, &plan, vault).await?;
    if enrich {
        apply_sql::queue_enrichment(tx, &new_events).await?;
    }

    let mut counted = HashSet::with_capacity(events.len());
    Ok(events
        .iter()
        .map(|event| {
            if !fresh.contains(event.id.as_str()) || !counted.insert(event.id.as_str()) {
                Outcome::Duplicate
            } else if matches!(event.action, Action::Ignore) {
                Outcome::Ignored
            } else {
                Outcome::Applied
            }
        })
        .collect())
}

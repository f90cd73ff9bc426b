//! Sessions that time out without an event: each realm's policy (`realm_session_policies`)
//! and the pass that ends sessions past their `expires_at`. The apply path keeps
//! `expires_at` current for the sessions it writes (`sql/follow_expiry.sql`); this module
//! redoes it for a realm when its policy changes.

use sqlx::Row;

use super::write::ended_sessions;
use super::{query, query_scalar, Store};
use crate::core::change::{Change, ChangeKind};
use crate::core::ids::{RealmId, RealmName};
use crate::core::session_policy::Timeouts;

const FOLLOW_EXPIRY: &str = include_str!("sql/follow_expiry.sql");
const EXPIRE_BATCH: &str = include_str!("sql/expire_sessions.sql");

/// Only one expiry pass runs at a time, across replicas (a transaction-level lock, so it
/// holds through a transaction-pooling proxy too).
const EXPIRY_LOCK: i64 = 0x6b63_7379_6e63_0002;

/// Where a realm's policy comes from; configuration wins over the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    AdminApi,
    Config,
}

impl PolicySource {
    fn as_str(self) -> &'static str {
        match self {
            PolicySource::AdminApi => "admin_api",
            PolicySource::Config => "config",
        }
    }
}

/// A realm's policy as stored, with the deployment's grace and margin.
#[derive(Debug, Clone)]
pub struct StoredPolicy<'a> {
    pub realm_id: &'a RealmId,
    pub realm_name: Option<&'a RealmName>,
    pub timeouts: Timeouts,
    pub idle_grace_secs: i64,
    pub expiry_margin_secs: i64,
    pub source: PolicySource,
}

/// What one expiry pass did (or, dry, would do).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPass {
    pub ended: u64,
    pub tokens_removed: u64,
    /// Another replica held the pass: this one did nothing.
    pub busy: bool,
}

impl Store {
    /// Stores a realm's policy; when it changed, works out the realm's sessions' expiry
    /// again. Returns the number of sessions whose expiry moved, or `None` if the policy
    /// was unchanged (or a configured one outranks it).
    pub async fn set_session_policy(
        &self,
        policy: &StoredPolicy<'_>,
        batch: i64,
    ) -> Result<Option<u64>, sqlx::Error> {
        let t = policy.timeouts;
        let mut tx = self.begin().await?;
        let changed: Option<bool> = query_scalar(
            "WITH old AS (
                 SELECT idle_secs, max_lifespan_secs, idle_remember_me_secs,
                     max_lifespan_remember_me_secs, idle_grace_secs, expiry_margin_secs
                 FROM realm_session_policies WHERE realm_id = $1
             ),
             new AS (
                 INSERT INTO realm_session_policies AS p (realm_id, realm_name, idle_secs,
                     max_lifespan_secs, idle_remember_me_secs, max_lifespan_remember_me_secs,
                     idle_grace_secs, expiry_margin_secs, source)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (realm_id) DO UPDATE SET
                     realm_name = COALESCE(EXCLUDED.realm_name, p.realm_name),
                     idle_secs = EXCLUDED.idle_secs,
                     max_lifespan_secs = EXCLUDED.max_lifespan_secs,
                     idle_remember_me_secs = EXCLUDED.idle_remember_me_secs,
                     max_lifespan_remember_me_secs = EXCLUDED.max_lifespan_remember_me_secs,
                     idle_grace_secs = EXCLUDED.idle_grace_secs,
                     expiry_margin_secs = EXCLUDED.expiry_margin_secs,
                     source = EXCLUDED.source, stale = false, read_at = now()
                 WHERE p.source = 'admin_api' OR EXCLUDED.source = 'config'
                 RETURNING idle_secs, max_lifespan_secs, idle_remember_me_secs,
                     max_lifespan_remember_me_secs, idle_grace_secs, expiry_margin_secs
             )
             SELECT (SELECT row(n.*) FROM new n) IS DISTINCT FROM (SELECT row(o.*) FROM old o)
             FROM new",
        )
        .bind(policy.realm_id)
        .bind(policy.realm_name.map(|n| n.as_str()))
        .bind(t.idle)
        .bind(t.max_lifespan)
        .bind(t.idle_remember_me)
        .bind(t.max_lifespan_remember_me)
        .bind(policy.idle_grace_secs)
        .bind(policy.expiry_margin_secs)
        .bind(policy.source.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        if changed != Some(true) {
            return Ok(None);
        }
        self.follow_realm_expiry(policy.realm_id, batch)
            .await
            .map(Some)
    }

    /// Works out the expiry of a realm's sessions again, in batches by id, so a policy
    /// change over millions of sessions never holds many rows at once.
    async fn follow_realm_expiry(&self, realm: &RealmId, batch: i64) -> Result<u64, sqlx::Error> {
        let mut after = String::new();
        let mut moved = 0;
        loop {
            let mut tx = self.begin().await?;
            let ids: Vec<String> = query_scalar(
                "SELECT id FROM user_sessions
                 WHERE realm_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(realm)
            .bind(&after)
            .bind(batch)
            .fetch_all(&mut *tx)
            .await?;
            let Some(last) = ids.last() else {
                tx.commit().await?;
                return Ok(moved);
            };
            after = last.clone();
            let rows = query(FOLLOW_EXPIRY).bind(&ids).fetch_all(&mut *tx).await?;
            moved += rows.len() as u64;
            let mut changes = Vec::new();
            ended_sessions(rows, &mut changes);
            self.announce(&mut tx, changes).await?;
            tx.commit().await?;
        }
    }

    /// Realms whose policy an admin changed since it was read.
    pub async fn stale_session_policies(&self) -> Result<Vec<RealmId>, sqlx::Error> {
        let mut tx = self.begin().await?;
        let stale = query_scalar("SELECT realm_id FROM realm_session_policies WHERE stale")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(stale)
    }

    /// Open sessions of realms without a known policy (they never get an expiry).
    pub async fn sessions_without_policy(&self) -> Result<i64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let count = query_scalar(
            "SELECT count(*) FROM user_sessions s
             WHERE s.ended_at IS NULL AND NOT EXISTS (
                 SELECT 1 FROM realm_session_policies p WHERE p.realm_id = s.realm_id)",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(count)
    }

    /// One batch of the expiry pass: ends up to `batch` open sessions whose expiry lies
    /// more than the policy's margin in the past (`ended_at = expires_at`, `expired`) and
    /// removes their refresh tokens issued by then. `realm` is an id or a name.
    pub async fn expire_sessions(
        &self,
        realm: Option<&str>,
        batch: i64,
        dry_run: bool,
    ) -> Result<ExpiryPass, sqlx::Error> {
        let mut tx = self.begin().await?;
        if dry_run {
            let due: i64 = query_scalar(
                "SELECT count(*) FROM user_sessions s
                 JOIN realm_session_policies p ON p.realm_id = s.realm_id
                 WHERE s.ended_at IS NULL
                   AND s.expires_at < now() - make_interval(secs => p.expiry_margin_secs)
                   AND ($1::text IS NULL OR s.realm_id = $1 OR p.realm_name = $1)",
            )
            .bind(realm)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(ExpiryPass {
                ended: u64::try_from(due).unwrap_or_default(),
                ..ExpiryPass::default()
            });
        }
        let ours: bool = query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(EXPIRY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(ExpiryPass {
                busy: true,
                ..ExpiryPass::default()
            });
        }
        let row = query(EXPIRE_BATCH)
            .bind(realm)
            .bind(batch)
            .fetch_one(&mut *tx)
            .await?;
        let mut changes = expired_changes(&row)?;
        changes.extend(revoked_changes(&row)?);
        self.announce(&mut tx, changes).await?;
        tx.commit().await?;
        let count = |name: &str| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or_default())
        };
        Ok(ExpiryPass {
            ended: count("ended")?,
            tokens_removed: count("tokens_removed")?,
            busy: false,
        })
    }
}

/// The sessions an expiry batch ended, as feed changes.
fn expired_changes(row: &sqlx::postgres::PgRow) -> Result<Vec<Change>, sqlx::Error> {
    let ended: serde_json::Value = row.try_get("ended_rows")?;
    Ok(json_rows(&ended)
        .map(|r| {
            Change::new(
                ChangeKind::SessionEnded,
                text(r, "id").unwrap_or_default(),
                text(r, "user_id"),
            )
            .with("reason", "expired")
        })
        .collect())
}

/// The refresh tokens an expiry batch removed, as feed changes.
fn revoked_changes(row: &sqlx::postgres::PgRow) -> Result<Vec<Change>, sqlx::Error> {
    let dropped: serde_json::Value = row.try_get("dropped_rows")?;
    Ok(json_rows(&dropped)
        .map(|r| {
            Change::new(
                ChangeKind::TokenRevoked,
                text(r, "id").unwrap_or_default(),
                text(r, "user_id"),
            )
            .with("token_type", text(r, "token_type"))
            .with("client_id", text(r, "client_id"))
            .with("session_id", text(r, "session_id"))
        })
        .collect())
}

fn json_rows(value: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    value.as_array().into_iter().flatten()
}

fn text(row: &serde_json::Value, key: &str) -> Option<String> {
    row.get(key).and_then(|v| v.as_str()).map(str::to_string)
}

//! What a reconcile reads from Postgres. The ids Keycloak lists go into a temporary
//! table on one held connection, so finding the users Keycloak no longer has takes one
//! query and memory stays flat whatever the number of users.

use std::collections::HashMap;

use sqlx::pool::PoolConnection;
use sqlx::types::Json;
use sqlx::Postgres;

use super::{Store, StoreError};
use crate::core::event::Profile;
use crate::core::ids::{RealmId, SessionId, UserId};
use crate::core::plan::StoredProfile;

/// Session ids Keycloak listed, kept as 128-bit digests (16 bytes each, whatever the
/// id's length) so that millions fit in little memory; a collision is out of reach.
#[derive(Debug, Default)]
pub struct ListedSessions(std::collections::HashSet<u128>);

impl ListedSessions {
    pub fn insert(&mut self, session: &SessionId) {
        self.0.insert(digest(session));
    }

    pub fn contains(&self, session: &SessionId) -> bool {
        self.0.contains(&digest(session))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn digest(session: &SessionId) -> u128 {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, session.as_bytes()).as_u128()
}

/// Advisory-lock class of reconcile runs (the second key is the realm id's hash).
const RECONCILE_LOCK_CLASS: i32 = 0x6b63_7301;

/// One reconcile run of one realm: holds its connection, its temporary table and the
/// advisory lock that keeps two runs of the same realm from overlapping.
pub struct ReconcileRun {
    conn: Option<PoolConnection<Postgres>>,
    realm_id: RealmId,
}

type ProfileRow = (
    UserId,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
    Option<bool>,
    Option<Json<serde_json::Map<String, serde_json::Value>>>,
    Option<i64>,
    bool,
);

impl Store {
    /// Starts a run for `realm_id`; `None` if another run of that realm holds the lock.
    pub async fn begin_reconcile(
        &self,
        realm_id: &RealmId,
    ) -> Result<Option<ReconcileRun>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(StoreError::from_sqlx)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(RECONCILE_LOCK_CLASS)
            .bind(realm_id)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::from_sqlx)?;
        if !locked {
            return Ok(None);
        }
        let mut run = ReconcileRun {
            conn: Some(conn),
            realm_id: realm_id.clone(),
        };
        let conn = run.conn()?;
        for statement in [
            "CREATE TEMP TABLE IF NOT EXISTS reconcile_seen (id text COLLATE \"C\" PRIMARY KEY)",
            "TRUNCATE reconcile_seen",
        ] {
            sqlx::query(statement)
                .execute(&mut **conn)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(Some(run))
    }

    /// The stored profiles of those of `ids` that have a row.
    pub async fn stored_profiles(
        &self,
        ids: &[UserId],
    ) -> Result<HashMap<UserId, StoredProfile>, StoreError> {
        let rows: Vec<ProfileRow> = sqlx::query_as(
            "SELECT id, username, email, first_name, last_name, email_verified, enabled,
                    attributes, ts_ms(created_at),
                    deleted_at IS NOT NULL
             FROM users WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let profile = StoredProfile {
                    profile: Profile {
                        username: row.1,
                        email: row.2,
                        first_name: row.3,
                        last_name: row.4,
                        email_verified: row.5,
                        enabled: row.6,
                        attributes: row.7.map(|Json(map)| map),
                        created_at: row.8,
                        ..Profile::default()
                    },
                    deleted: row.9,
                };
                (row.0, profile)
            })
            .collect())
    }

    /// Users of the realm with sessions that were active and had started before
    /// `started_before` (epoch ms): all of them, or a random sample.
    pub async fn users_with_active_sessions(
        &self,
        realm_id: &RealmId,
        started_before: i64,
        sample: Option<u64>,
    ) -> Result<Vec<UserId>, StoreError> {
        let limit = sample.map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        sqlx::query_scalar(
            "SELECT user_id FROM (
                 SELECT DISTINCT user_id FROM user_sessions
                 WHERE realm_id = $1 AND ended_at IS NULL AND user_id IS NOT NULL
                   AND started_at < ms_ts($2)) active
             ORDER BY random() LIMIT $3",
        )
        .bind(realm_id)
        .bind(started_before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)
    }

    /// Users of the realm with an active session that had started before `started_before`
    /// (epoch ms) and that `listed` does not hold. Rows are streamed: memory is the set
    /// and the users found, whatever the number of sessions.
    pub async fn users_with_unlisted_sessions(
        &self,
        realm_id: &RealmId,
        started_before: i64,
        listed: &ListedSessions,
    ) -> Result<Vec<UserId>, StoreError> {
        use futures_util::TryStreamExt;
        let mut rows = sqlx::query_as::<_, (SessionId, UserId)>(
            "SELECT id, user_id FROM user_sessions
             WHERE realm_id = $1 AND ended_at IS NULL AND user_id IS NOT NULL
               AND started_at < ms_ts($2)",
        )
        .bind(realm_id)
        .bind(started_before)
        .fetch(&self.pool);
        let mut users = std::collections::BTreeSet::new();
        while let Some((session, user)) = rows.try_next().await.map_err(StoreError::from_sqlx)? {
            if !listed.contains(&session) {
                users.insert(user);
            }
        }
        Ok(users.into_iter().collect())
    }

    /// A user's active sessions that had started before `started_before` (epoch ms).
    pub async fn active_sessions(
        &self,
        user_id: &UserId,
        started_before: i64,
    ) -> Result<Vec<SessionId>, StoreError> {
        sqlx::query_scalar(
            "SELECT id FROM user_sessions
             WHERE user_id = $1 AND ended_at IS NULL AND started_at < ms_ts($2)
             ORDER BY id",
        )
        .bind(user_id)
        .bind(started_before)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)
    }
}

impl ReconcileRun {
    fn conn(&mut self) -> Result<&mut PoolConnection<Postgres>, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Permanent(sqlx::Error::PoolClosed))
    }

    /// Records ids Keycloak listed.
    pub async fn saw(&mut self, ids: &[UserId]) -> Result<(), StoreError> {
        let conn = self.conn()?;
        sqlx::query("INSERT INTO reconcile_seen SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
            .bind(ids)
            .execute(&mut **conn)
            .await
            .map(drop)
            .map_err(StoreError::from_sqlx)
    }

    /// Live local users of the realm that Keycloak did not list.
    pub async fn missing_count(&mut self) -> Result<i64, StoreError> {
        let realm_id = self.realm_id.clone();
        let conn = self.conn()?;
        sqlx::query_scalar(
            "SELECT count(*) FROM users u
             WHERE u.realm_id = $1 AND u.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM reconcile_seen s WHERE s.id = u.id)",
        )
        .bind(realm_id)
        .fetch_one(&mut **conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    /// The next `limit` missing users after `after` (keyset pagination by id).
    pub async fn missing_after(
        &mut self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UserId>, StoreError> {
        let realm_id = self.realm_id.clone();
        let conn = self.conn()?;
        sqlx::query_scalar(
            "SELECT u.id FROM users u
             WHERE u.realm_id = $1 AND u.deleted_at IS NULL AND u.id > $2
               AND NOT EXISTS (SELECT 1 FROM reconcile_seen s WHERE s.id = u.id)
             ORDER BY u.id LIMIT $3",
        )
        .bind(realm_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&mut **conn)
        .await
        .map_err(StoreError::from_sqlx)
    }

    /// Drops the table and the lock, and returns the connection to the pool.
    pub async fn finish(mut self) -> Result<(), StoreError> {
        let realm_id = self.realm_id.clone();
        if let Some(mut conn) = self.conn.take() {
            sqlx::query("DROP TABLE IF EXISTS reconcile_seen")
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_sqlx)?;
            sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
                .bind(RECONCILE_LOCK_CLASS)
                .bind(realm_id)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        Ok(())
    }
}

impl Drop for ReconcileRun {
    /// A run that ended early closes its connection instead of returning it to the pool
    /// with the lock still held; the server then releases the lock and the table.
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn.detach());
        }
    }
}

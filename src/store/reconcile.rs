//! What a reconcile reads from Postgres. The ids Keycloak lists go into a table under
//! the run's id, so finding the users Keycloak no longer has takes one query and memory
//! stays flat whatever the number of users.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::types::Json;

use super::{query, query_as, query_scalar, Store, StoreError};
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

/// How long a reconcile run holds its realm without showing progress (each page of users
/// renews it): a run that died is taken over after that.
const RECONCILE_LEASE: Duration = Duration::from_secs(600);

/// One reconcile run of one realm: the lease that keeps two runs of the same realm from
/// overlapping, and the ids Keycloak listed (rows of `reconcile_listed` under its run id,
/// so memory stays flat whatever the number of users, and every statement stands alone
/// in its transaction, as poolers need).
pub struct ReconcileRun {
    store: Store,
    realm_id: RealmId,
    run_id: String,
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
    /// Starts a run for `realm_id`; `None` if another run of that realm holds the lease.
    pub async fn begin_reconcile(
        &self,
        realm_id: &RealmId,
    ) -> Result<Option<ReconcileRun>, StoreError> {
        let run_id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let leased: Option<String> = query_scalar(
            "INSERT INTO reconcile_leases AS l (realm_id, run_id, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (realm_id) DO UPDATE
                 SET run_id = EXCLUDED.run_id, expires_at = EXCLUDED.expires_at
                 WHERE l.expires_at < now()
             RETURNING run_id",
        )
        .bind(realm_id)
        .bind(&run_id)
        .bind(RECONCILE_LEASE.as_secs_f64())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        if leased.is_none() {
            return Ok(None);
        }
        // What runs that ended without finishing (a crash) left behind.
        query(
            "DELETE FROM reconcile_listed s
             WHERE NOT EXISTS (SELECT 1 FROM reconcile_leases l WHERE l.run_id = s.run_id)",
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(Some(ReconcileRun {
            store: self.clone(),
            realm_id: realm_id.clone(),
            run_id,
        }))
    }

    /// The stored profiles of those of `ids` that have a row.
    pub async fn stored_profiles(
        &self,
        ids: &[UserId],
    ) -> Result<HashMap<UserId, StoredProfile>, StoreError> {
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let rows: Vec<ProfileRow> = query_as(
            "SELECT id, username, email, first_name, last_name, email_verified, enabled,
                    attributes, ts_ms(created_at),
                    deleted_at IS NOT NULL
             FROM users WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
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
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let users = query_scalar(
            "SELECT user_id FROM (
                 SELECT DISTINCT user_id FROM user_sessions
                 WHERE realm_id = $1 AND ended_at IS NULL AND user_id IS NOT NULL
                   AND started_at < ms_ts($2)) active
             ORDER BY random() LIMIT $3",
        )
        .bind(realm_id)
        .bind(started_before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(users)
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
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let mut rows = query_as::<(SessionId, UserId)>(
            "SELECT id, user_id FROM user_sessions
             WHERE realm_id = $1 AND ended_at IS NULL AND user_id IS NOT NULL
               AND started_at < ms_ts($2)",
        )
        .bind(realm_id)
        .bind(started_before)
        .fetch(&mut *tx);
        let mut users = std::collections::BTreeSet::new();
        while let Some((session, user)) = rows.try_next().await.map_err(StoreError::from_sqlx)? {
            if !listed.contains(&session) {
                users.insert(user);
            }
        }
        drop(rows);
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(users.into_iter().collect())
    }

    /// A user's active sessions that had started before `started_before` (epoch ms).
    pub async fn active_sessions(
        &self,
        user_id: &UserId,
        started_before: i64,
    ) -> Result<Vec<SessionId>, StoreError> {
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let sessions = query_scalar(
            "SELECT id FROM user_sessions
             WHERE user_id = $1 AND ended_at IS NULL AND started_at < ms_ts($2)
             ORDER BY id",
        )
        .bind(user_id)
        .bind(started_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(sessions)
    }
}

impl ReconcileRun {
    /// Records ids Keycloak listed, and keeps the lease.
    pub async fn saw(&mut self, ids: &[UserId]) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await.map_err(StoreError::from_sqlx)?;
        query(
            "INSERT INTO reconcile_listed (run_id, id) SELECT $1, unnest($2::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.run_id)
        .bind(ids)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        query(
            "UPDATE reconcile_leases SET expires_at = now() + make_interval(secs => $3)
             WHERE realm_id = $1 AND run_id = $2",
        )
        .bind(&self.realm_id)
        .bind(&self.run_id)
        .bind(RECONCILE_LEASE.as_secs_f64())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)
    }

    /// Live local users of the realm that Keycloak did not list.
    pub async fn missing_count(&mut self) -> Result<i64, StoreError> {
        let mut tx = self.store.begin().await.map_err(StoreError::from_sqlx)?;
        let count = query_scalar(
            "SELECT count(*) FROM users u
             WHERE u.realm_id = $1 AND u.deleted_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM reconcile_listed s
                               WHERE s.run_id = $2 AND s.id = u.id)",
        )
        .bind(&self.realm_id)
        .bind(&self.run_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(count)
    }

    /// The next `limit` missing users after `after` (keyset pagination by id).
    pub async fn missing_after(
        &mut self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UserId>, StoreError> {
        let mut tx = self.store.begin().await.map_err(StoreError::from_sqlx)?;
        let ids = query_scalar(
            "SELECT u.id FROM users u
             WHERE u.realm_id = $1 AND u.deleted_at IS NULL AND u.id > $2
               AND NOT EXISTS (SELECT 1 FROM reconcile_listed s
                               WHERE s.run_id = $4 AND s.id = u.id)
             ORDER BY u.id LIMIT $3",
        )
        .bind(&self.realm_id)
        .bind(after)
        .bind(limit)
        .bind(&self.run_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(ids)
    }

    /// Forgets the listed ids and gives the lease up. A run that never gets here (the
    /// process died) leaves its lease to expire after [`RECONCILE_LEASE`].
    pub async fn finish(self) -> Result<(), StoreError> {
        let mut tx = self.store.begin().await.map_err(StoreError::from_sqlx)?;
        query("DELETE FROM reconcile_listed WHERE run_id = $1")
            .bind(&self.run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        query("DELETE FROM reconcile_leases WHERE realm_id = $1 AND run_id = $2")
            .bind(&self.realm_id)
            .bind(&self.run_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)
    }
}

//! The enrichment queue (`enrichment_queue`): claimed with a lease so that several
//! replicas share it and a crashed worker's claims come back, finished only if no newer
//! event asked again in the meantime.

use std::time::Duration;

use super::rows::Rows;
use super::write::{write_plan, SealedTokens};
use super::{error as retry, query, query_as, query_scalar, Store, StoreError, Tx};
use crate::core::event::{Affected, RoleKey};
use crate::core::ids::{ClientUuid, GroupId, RealmId, RoleId, UserId};
use crate::core::plan::{plan_observations, EnrichmentRequest, Observation, Recompute, Version};

const QUEUE: &str = include_str!("sql/queue_enrichment.sql");

/// Queues the users a batch leaves incomplete, in the batch's transaction.
pub async fn queue(tx: &mut Tx<'_>, requests: &[EnrichmentRequest]) -> Result<(), sqlx::Error> {
    if requests.is_empty() {
        return Ok(());
    }
    let rows = Rows::new()
        .text("user_id", requests.iter().map(|r| Some(r.user_id.as_str())))
        .text("ver", requests.iter().map(|r| Some(r.version.as_str())))
        .bool(
            "if_read_before",
            requests.iter().map(|r| Some(r.if_read_before)),
        );
    rows.query(QUEUE).build().execute(&mut **tx).await?;
    Ok(())
}

/// Queues the users whose groups and roles the batch's admin events changed without
/// saying how (a group's role mapping, a role's composites, a group deleted, a mapping
/// without its representation), in the batch's transaction.
pub async fn queue_directory(tx: &mut Tx<'_>, recompute: &[Recompute]) -> Result<(), sqlx::Error> {
    if recompute.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&str, &str, Option<&str>)> = recompute
        .iter()
        .map(|r| match &r.affected {
            Affected::User(user) => ("user", user.as_str(), None),
            Affected::GroupMembers(group) => ("group", group.as_str(), None),
            Affected::RoleHolders(RoleKey::Id(role)) => ("role_id", role.as_str(), None),
            Affected::RoleHolders(RoleKey::Name { client_id, name }) => (
                "role_name",
                name.as_str(),
                client_id.as_ref().map(|c| c.as_str()),
            ),
        })
        .collect();
    let rows = Rows::new()
        .text("kind", keys.iter().map(|k| Some(k.0)))
        .text("key", keys.iter().map(|k| Some(k.1)))
        .text("client_id", keys.iter().map(|k| k.2))
        .text(
            "realm_id",
            recompute.iter().map(|r| Some(r.realm_id.as_str())),
        )
        .text("ver", recompute.iter().map(|r| Some(r.version.as_str())));
    rows.query(include_str!("sql/queue_directory_enrichment.sql"))
        .build()
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A user's groups and roles as the tables hold them (see [`Store::held_directory`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeldDirectory {
    pub groups: Vec<GroupId>,
    pub roles: Vec<(RoleId, Option<ClientUuid>)>,
    pub clients: Vec<ClientUuid>,
}

/// A user to read from Keycloak, as claimed from the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichmentClaim {
    pub user_id: UserId,
    pub realm_id: RealmId,
    /// The newest event version that asked; the read is applied just after it.
    pub version: Version,
    pub attempts: i32,
}

impl Store {
    /// Claims up to `limit` due users for `lease` (after which they are due again).
    pub async fn claim_enrichment(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<EnrichmentClaim>, StoreError> {
        retry::with_backoff(self.retry_max, "claim users to enrich", || async {
            let mut tx = self.begin().await?;
            let rows: Vec<(UserId, RealmId, String, i32)> = query_as(
                "UPDATE enrichment_queue q
                 SET attempts = q.attempts + 1,
                     next_attempt_at = now() + make_interval(secs => $2)
                 FROM (SELECT user_id FROM enrichment_queue
                       WHERE next_attempt_at <= now()
                       ORDER BY next_attempt_at
                       LIMIT $1
                       FOR UPDATE SKIP LOCKED) due
                 WHERE q.user_id = due.user_id
                 RETURNING q.user_id, q.realm_id, q.ver, q.attempts",
            )
            .bind(limit)
            .bind(lease.as_secs_f64())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(rows
                .into_iter()
                .map(|(user_id, realm_id, version, attempts)| EnrichmentClaim {
                    user_id,
                    realm_id,
                    version: Version::stored(version),
                    attempts,
                })
                .collect())
        })
        .await
    }

    /// Applies what Keycloak said about a claimed user and finishes the claim, in one
    /// transaction.
    pub async fn complete_enrichment(
        &self,
        claim: &EnrichmentClaim,
        observations: &[Observation],
    ) -> Result<(), StoreError> {
        let plan = plan_observations(observations);
        retry::with_backoff(self.retry_max, "apply an enriched profile", || async {
            let mut tx = self.begin().await?;
            let mut changes = Vec::new();
            write_plan(&mut tx, &plan, &SealedTokens::new(), &mut changes).await?;
            finish(&mut tx, claim).await?;
            self.announce(&mut tx, changes).await?;
            tx.commit().await
        })
        .await
    }

    /// What the tables say a user holds: the groups it is a member of, the roles it holds
    /// (directly or effectively), and the clients whose roles are worth asking Keycloak
    /// about (every client with a role known in the realm).
    pub async fn held_directory(
        &self,
        realm_id: &RealmId,
        user_id: &UserId,
    ) -> Result<HeldDirectory, StoreError> {
        retry::with_backoff(self.retry_max, "read a user's groups and roles", || async {
            // In a transaction like every statement (the schema, a pooler's checks).
            let mut tx = self.begin().await?;
            let groups: Vec<String> =
                query_scalar("SELECT group_id FROM user_groups WHERE user_id = $1 AND member")
                    .bind(user_id.as_str())
                    .fetch_all(&mut *tx)
                    .await?;
            let roles: Vec<(String, Option<String>)> = query_as(
                "SELECT role_id, client_id FROM user_roles
                 WHERE user_id = $1 AND (effective OR direct_granted)",
            )
            .bind(user_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let clients: Vec<String> = query_scalar(
                "SELECT DISTINCT client_id FROM roles
                 WHERE realm_id = $1 AND client_id IS NOT NULL AND deleted_at IS NULL
                 ORDER BY client_id",
            )
            .bind(realm_id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(HeldDirectory {
                groups: groups.into_iter().map(GroupId::from).collect(),
                roles: roles
                    .into_iter()
                    .map(|(role, client)| (RoleId::from(role), client.map(ClientUuid::from)))
                    .collect(),
                clients: clients.into_iter().map(ClientUuid::from).collect(),
            })
        })
        .await
    }

    /// Finishes a claim with nothing to apply (the user is gone, or not in a configured
    /// realm).
    pub async fn drop_enrichment(&self, claim: &EnrichmentClaim) -> Result<(), StoreError> {
        retry::with_backoff(self.retry_max, "finish an enrichment", || async {
            let mut tx = self.begin().await?;
            finish(&mut tx, claim).await?;
            tx.commit().await
        })
        .await
    }

    /// Puts a claim back to be tried again after `wait`, recording why it failed.
    pub async fn postpone_enrichment(
        &self,
        claim: &EnrichmentClaim,
        wait: Duration,
        error: &str,
    ) -> Result<(), StoreError> {
        retry::with_backoff(self.retry_max, "postpone an enrichment", || async {
            let mut tx = self.begin().await?;
            query(
                "UPDATE enrichment_queue
                 SET next_attempt_at = now() + make_interval(secs => $2), last_error = $3
                 WHERE user_id = $1",
            )
            .bind(&claim.user_id)
            .bind(wait.as_secs_f64())
            .bind(error)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
    }

    /// Users waiting to be read (for the gauge and tests).
    pub async fn enrichment_backlog(&self) -> Result<i64, StoreError> {
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let backlog = query_scalar("SELECT count(*) FROM enrichment_queue")
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(backlog)
    }
}

/// Removes the claim unless a newer event asked again meanwhile; then it is due at once.
async fn finish(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    claim: &EnrichmentClaim,
) -> Result<(), sqlx::Error> {
    let removed = query("DELETE FROM enrichment_queue WHERE user_id = $1 AND ver = $2")
        .bind(&claim.user_id)
        .bind(claim.version.as_str())
        .execute(&mut **tx)
        .await?
        .rows_affected();
    if removed == 0 {
        query(
            "UPDATE enrichment_queue SET attempts = 0, next_attempt_at = now(), last_error = NULL
             WHERE user_id = $1",
        )
        .bind(&claim.user_id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

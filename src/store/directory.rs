//! Upkeep of the groups, roles and organizations tables outside the apply path.

use super::write::{resolve_pending, upsert_organization_members};
use super::{error as retry, Store, StoreError};

impl Store {
    /// Writes the organization members added by username whose user became known after
    /// the batch that added them was written (two transactions racing: the user's and the
    /// membership's). Batches resolve their own; this sweep, run by the daemon now and
    /// then and after a replay, catches what a race left waiting. Returns how many.
    pub async fn resolve_pending_members(&self) -> Result<usize, StoreError> {
        retry::with_backoff(
            self.retry_max,
            "resolve waiting organization members",
            || async {
                let mut tx = self.begin().await?;
                let resolved = resolve_pending(&mut tx, None).await?;
                let count = resolved.len();
                let mut changes = Vec::new();
                upsert_organization_members(&mut tx, &resolved, &mut changes).await?;
                self.announce(&mut tx, changes).await?;
                tx.commit().await?;
                Ok(count)
            },
        )
        .await
    }
}

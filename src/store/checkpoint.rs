//! Backfill progress (`backfill_checkpoints`): the offset in Keycloak's list of stored
//! events each window has been applied up to.

use super::{error as retry, query, query_scalar, Store, StoreError};
use crate::core::event::EventStream;
use crate::core::ids::RealmName;

/// One backfill window of one realm's event list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillWindow {
    pub realm: RealmName,
    pub stream: EventStream,
    pub since_ms: i64,
    /// `None`: open-ended.
    pub until_ms: Option<i64>,
}

impl BackfillWindow {
    fn until_key(&self) -> i64 {
        self.until_ms.unwrap_or(-1)
    }
}

impl Store {
    /// Where the window's last run stopped: the next offset to read.
    pub async fn backfill_position(&self, window: &BackfillWindow) -> Result<u64, StoreError> {
        let mut tx = self.begin().await.map_err(StoreError::from_sqlx)?;
        let next: Option<i64> = query_scalar(
            "SELECT next_first FROM backfill_checkpoints
             WHERE realm_name = $1 AND stream = $2 AND since_ms = $3 AND until_ms = $4",
        )
        .bind(&window.realm)
        .bind(window.stream.path())
        .bind(window.since_ms)
        .bind(window.until_key())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from_sqlx)?;
        tx.commit().await.map_err(StoreError::from_sqlx)?;
        Ok(next.unwrap_or(0).max(0) as u64)
    }

    /// Records that everything before `next_first` has been applied.
    pub async fn save_backfill_position(
        &self,
        window: &BackfillWindow,
        next_first: u64,
        fetched: u64,
        finished: bool,
    ) -> Result<(), StoreError> {
        let next_first = i64::try_from(next_first).unwrap_or(i64::MAX);
        let fetched = i64::try_from(fetched).unwrap_or(i64::MAX);
        retry::with_backoff(self.retry_max, "save the backfill position", || async {
            let mut tx = self.begin().await?;
            query(
                "INSERT INTO backfill_checkpoints AS c
                     (realm_name, stream, since_ms, until_ms, next_first, fetched, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END)
                 ON CONFLICT (realm_name, stream, since_ms, until_ms) DO UPDATE SET
                     next_first = EXCLUDED.next_first,
                     fetched = c.fetched + EXCLUDED.fetched,
                     updated_at = now(),
                     finished_at = EXCLUDED.finished_at",
            )
            .bind(&window.realm)
            .bind(window.stream.path())
            .bind(window.since_ms)
            .bind(window.until_key())
            .bind(next_first)
            .bind(fetched)
            .bind(finished)
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
    }
}

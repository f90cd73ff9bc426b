//! The inbox (`processed_events`): which event keys have been applied.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;

use super::rows::Rows;
use super::{Store, StoreError, Tx};
use crate::core::event::Event;
use crate::core::outcome::Outcome;

const RECORD: &str = include_str!("sql/record_inbox.sql");
/// What [`RECORD`] checks for rows recorded before content keys.
const LEGACY_CHECK: &str = "WHERE n.message_id = n.id OR NOT EXISTS (
    SELECT 1 FROM processed_events p WHERE p.event_id = n.message_id)";

/// Inserts every event into the inbox and returns the ids it did not hold yet. With
/// `legacy`, an event recorded under its message id (before content keys) is not new.
pub async fn record<'e>(
    tx: &mut Tx<'_>,
    events: &[&'e Event],
    legacy: bool,
) -> Result<HashSet<&'e str>, sqlx::Error> {
    let mut sorted: Vec<&Event> = events.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let rows = Rows::new()
        .text("id", sorted.iter().map(|e| Some(e.id.as_str())))
        .text(
            "message_id",
            sorted.iter().map(|e| Some(e.message_id.as_str())),
        )
        .text("kind", sorted.iter().map(|e| Some(e.kind.as_str())))
        .text("type", sorted.iter().map(|e| Some(e.type_name.as_str())))
        .text("realm_id", sorted.iter().map(|e| Some(e.realm_id.as_str())))
        .int8("time", sorted.iter().map(|e| Some(e.time)))
        .text(
            "outcome",
            sorted.iter().map(|e| Some(Outcome::of_new(e).as_str())),
        );
    let sql = RECORD.replace("{legacy_check}", if legacy { LEGACY_CHECK } else { "" });
    let query = rows.query(&sql);
    let inserted: HashSet<String> = query
        .build()
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
    Ok(sorted
        .into_iter()
        .map(|e| e.id.as_str())
        .filter(|id| inserted.contains(*id))
        .collect())
}

impl Store {
    /// Forgets inbox entries processed longer than `older_than` ago, in bounded batches so
    /// the daemon's own writes are never held up; returns how many went. An event older
    /// than that, delivered again, is applied again: its profile, session and vault effects
    /// are idempotent by themselves, but it counts once more in `login_count` and
    /// `refresh_count`.
    pub async fn prune_inbox(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.delete_in_batches(
            "prune the inbox",
            "DELETE FROM processed_events WHERE event_id IN (
                 SELECT event_id FROM processed_events
                 WHERE processed_at < now() - make_interval(secs => $1)
                 LIMIT $2)",
            older_than,
        )
        .await
    }
}

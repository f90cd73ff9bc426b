//! The change feed (`changes` and `NOTIFY`): the last step of every writing transaction.
//! The changes get their seqs under a transaction-level lock that the commit releases, so
//! seqs become visible in commit order and a reader that has seen seq N never later finds
//! a smaller one.

use std::collections::HashMap;
use std::time::Duration;

use super::write::lock_key;
use super::{query, query_scalar, Store, StoreError, Tx};
use crate::core::change::{notification_payloads, Change, ChangeKind, MAX_PAYLOAD};

const PUBLISH: &str = include_str!("sql/publish_changes.sql");

/// Where and how a store announces its changes.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The `NOTIFY` channel.
    channel: String,
    /// The advisory lock that orders the commits of every writer of this schema's feed.
    lock: i64,
}

impl Feed {
    pub fn new(channel: &str, schema: &str) -> Feed {
        // A key no user id can take (NUL cannot occur in text).
        Feed {
            channel: channel.to_string(),
            lock: lock_key(&format!("changes\0{schema}")),
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Records `changes` and queues their notifications, delivered when `tx` commits. Call
    /// it last: the lock it takes is held until the commit.
    pub(crate) async fn publish(
        &self,
        tx: &mut Tx<'_>,
        changes: Vec<Change>,
    ) -> Result<(), sqlx::Error> {
        let changes = last_of_each_row(changes);
        if changes.is_empty() {
            return Ok(());
        }
        // The lock orders the feed's writers until their commits; under it the block of
        // seqs is this transaction's alone and contiguous.
        let count = changes.len() as i64;
        let last: i64 = query_scalar(
            "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock($1))
             SELECT setval('changes_seq', nextval('changes_seq') + $2 - 1) FROM locked",
        )
        .bind(self.lock)
        .bind(count)
        .fetch_one(&mut **tx)
        .await?;
        let first = last - count + 1;
        let seqs: Vec<i64> = (first..=last).collect();
        let payloads = notification_payloads(&changes, &seqs, MAX_PAYLOAD);
        let column = |field: fn(&Change) -> Option<&str>| -> Vec<Option<&str>> {
            changes.iter().map(field).collect()
        };
        let details: Vec<String> = changes
            .iter()
            .map(|c| serde_json::Value::Object(c.detail.clone()).to_string())
            .collect();
        query(PUBLISH)
            .bind(first)
            .bind(column(|c| Some(c.kind.table())))
            .bind(column(|c| Some(c.row_id.as_str())))
            .bind(column(|c| c.user_id.as_deref()))
            .bind(column(|c| Some(c.kind.as_str())))
            .bind(&details)
            .bind(&self.channel)
            .bind(&payloads)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// One change per (row, kind), the last written: a session ended by its event and by a
/// cutoff in the same transaction is announced once, with the end it kept.
fn last_of_each_row(changes: Vec<Change>) -> Vec<Change> {
    let mut seen: HashMap<(String, ChangeKind), usize> = HashMap::new();
    let mut kept: Vec<Option<Change>> = Vec::with_capacity(changes.len());
    for change in changes {
        let key = (change.row_id.clone(), change.kind);
        if let Some(&earlier) = seen.get(&key) {
            kept[earlier] = None;
        }
        seen.insert(key, kept.len());
        kept.push(Some(change));
    }
    kept.into_iter().flatten().collect()
}

impl Store {
    /// Forgets changes recorded longer than `older_than` ago, in bounded batches; returns
    /// how many went. A consumer away for longer than that must start again from the
    /// tables themselves.
    pub async fn prune_changes(&self, older_than: Duration) -> Result<u64, StoreError> {
        self.delete_in_batches(
            "prune the change feed",
            "DELETE FROM changes WHERE seq IN (
                 SELECT seq FROM changes
                 WHERE at < now() - make_interval(secs => $1)
                 ORDER BY seq LIMIT $2)",
            older_than,
        )
        .await
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_changed_twice_the_same_way_is_announced_once_with_the_last() {
        let first = Change::new(ChangeKind::SessionEnded, "s1", None).with("reason", "logout");
        let second = Change::new(ChangeKind::SessionEnded, "s1", None).with("reason", "admin");
        let other = Change::new(ChangeKind::SessionStarted, "s2", None);
        let kept = last_of_each_row(vec![first, other.clone(), second.clone()]);
        assert_eq!(kept, vec![other, second]);
    }

    #[test]
    fn each_schema_orders_its_own_feed() {
        assert_ne!(Feed::new("c", "a").lock, Feed::new("c", "b").lock);
        assert_eq!(Feed::new("c", "a").lock, Feed::new("other", "a").lock);
    }
}

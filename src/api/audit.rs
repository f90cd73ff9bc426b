//! The token API's audit trail, written by group commit: each request hands its row to
//! one writer and waits until it is committed; the writer takes every row waiting (up to
//! a batch) into one statement and one commit. Under load many requests share a commit
//! instead of each paying its own; alone, a row is written at once.

use tokio::sync::{mpsc, oneshot};

use crate::store::token_api::AuditEntry;
use crate::store::Store;

/// Rows written in one statement at most.
const MAX_BATCH: usize = 512;
/// Rows waiting for the writer at most; requests beyond wait to hand theirs over.
const QUEUE: usize = 4096;

/// One audit row (never a token).
pub struct Record {
    pub caller: String,
    pub realm_id: Option<String>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub action: &'static str,
    pub outcome: String,
}

type Waiting = (Record, oneshot::Sender<bool>);

#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<Waiting>,
}

impl AuditLog {
    /// Starts the writer (it ends when the last `AuditLog` is dropped).
    pub fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, receiver));
        AuditLog { sender }
    }

    /// Writes `record`; true once it is committed.
    pub async fn write(&self, record: Record) -> bool {
        let (done, committed) = oneshot::channel();
        if self.sender.send((record, done)).await.is_err() {
            return false;
        }
        committed.await.unwrap_or(false)
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Waiting>) {
    let mut batch: Vec<Waiting> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let entries: Vec<AuditEntry<'_>> = batch
            .iter()
            .map(|(record, _)| AuditEntry {
                caller: &record.caller,
                realm_id: record.realm_id.as_deref(),
                user_id: record.user_id.as_deref(),
                client_id: record.client_id.as_deref(),
                action: record.action,
                outcome: &record.outcome,
            })
            .collect();
        let written = store.audit(&entries).await;
        if let Err(error) = &written {
            tracing::warn!(%error, rows = entries.len(), "token API: cannot write audit rows");
        }
        drop(entries);
        for (_, done) in batch.drain(..) {
            let _ = done.send(written.is_ok());
        }
    }
}

//! The one apply path every input (queue, replay, backfill, enrichment, reconcile) goes
//! through. Tokens are sealed before the transaction; inside it the inbox decides which
//! events are new, the core plans them, and `write` stores the plan.

use std::collections::HashSet;

use secrecy::SecretString;
use thiserror::Error;

use super::error::with_backoff;
use super::write::{write_plan, SealedTokens};
use super::{enrichment, inbox, query_scalar, Store, StoreError, Tx};
use crate::core::change::Change;
use crate::core::event::{Action, Event};
use crate::core::ids::EventId;
use crate::core::intake::Rejection;
use crate::core::outcome::Outcome;
use crate::core::plan::{plan, plan_observations, Observation};
use crate::vault::{KeyRing, RowIdentity, SealError};

/// Why a batch could not be applied, told apart so callers know whether to wait (the
/// database), look for the event at fault (bisect), or stop (the vault).
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The database is unreachable or kept failing for a reason that is not the events'.
    #[error("database unavailable ({summary}): {0}", summary = super::fault_summary(.0))]
    Unavailable(#[source] sqlx::Error),
    /// The database refuses an event's data (SQLSTATE class 22 or 23): some event of the
    /// batch cannot be applied.
    #[error("database rejected the event: {0}")]
    Rejected(#[source] sqlx::Error),
    /// Token messages but no key ring (a deployment fault, not the event's).
    #[error("{}", Rejection::NoVault)]
    NoVault { event_id: EventId },
    /// Sealing failed: nothing of the batch is written.
    #[error("vault: cannot seal the token of message {event_id}: {source}")]
    Seal {
        event_id: EventId,
        source: SealError,
    },
}

impl From<StoreError> for ApplyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(error) => ApplyError::Unavailable(error),
            StoreError::Permanent(error) => ApplyError::Rejected(error),
            StoreError::Schema(name) => ApplyError::Rejected(sqlx::Error::Configuration(
                format!("invalid schema {name:?}").into(),
            )),
        }
    }
}

impl ApplyError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ApplyError::Unavailable(_))
    }
}

/// What the isolating apply says of one event: its outcome, or why it is rejected.
pub type EventResult = Result<Outcome, Rejection>;

impl Store {
    /// Applies a batch in one transaction and returns each event's outcome, in input
    /// order. Transient failures are retried (up to `database.retry_max_secs`); the whole
    /// transaction is redone, so a retry never applies anything twice.
    pub async fn apply(&self, events: &[Event]) -> Result<Vec<Outcome>, ApplyError> {
        let events: Vec<&Event> = events.iter().collect();
        self.apply_refs(&events).await
    }

    async fn apply_refs(&self, events: &[&Event]) -> Result<Vec<Outcome>, ApplyError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let first = first_of_each_id(events);
        let sealed = seal_tokens(&first, self.vault.as_deref())?;
        let outcomes = with_backoff(self.retry_max, "apply a batch", || async {
            let legacy = self.legacy_inbox().await?;
            let mut tx = self.begin().await?;
            let mut changes = Vec::new();
            let fresh =
                apply_in(&mut tx, &first, &sealed, self.enrich, legacy, &mut changes).await?;
            self.announce(&mut tx, changes).await?;
            tx.commit().await?;
            Ok(fresh)
        })
        .await?;
        Ok(outcomes_in_order(events, &outcomes))
    }

    /// Like [`apply`](Self::apply), but events the batch cannot hold are found and
    /// rejected one by one — token messages without a vault at once, events the database
    /// rejects by splitting the batch — and the rest is applied. Only an unavailable
    /// database or a sealing failure fails the call as a whole; so does a batch of
    /// several events that the database refuses every one of, the same way: that is a
    /// fault of the database (a constraint or trigger added to it), not of each event.
    pub async fn apply_isolating(&self, events: &[Event]) -> Result<Vec<EventResult>, ApplyError> {
        let mut results: Vec<Option<EventResult>> = vec![None; events.len()];
        let mut admitted = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            if matches!(event.action, Action::StoreToken(_)) && self.vault.is_none() {
                results[i] = Some(Err(Rejection::NoVault));
            } else {
                admitted.push(i);
            }
        }
        let mut refused: Vec<sqlx::Error> = Vec::new();
        let admitted_count = admitted.len();
        let mut pending: Vec<Vec<usize>> = vec![admitted];
        while let Some(part) = pending.pop() {
            if part.is_empty() {
                continue;
            }
            let batch: Vec<&Event> = part.iter().map(|i| &events[*i]).collect();
            match self.apply_refs(&batch).await {
                Ok(outcomes) => {
                    for (i, outcome) in part.iter().zip(outcomes) {
                        results[*i] = Some(Ok(outcome));
                    }
                }
                Err(ApplyError::Rejected(error)) if part.len() == 1 => {
                    tracing::warn!(event_id = ?events[part[0]].id.as_str(), %error, "event cannot be applied");
                    results[part[0]] = Some(Err(Rejection::Database(error.to_string())));
                    refused.push(error);
                }
                Err(ApplyError::Rejected(_)) => {
                    let (left, right) = part.split_at(part.len() / 2);
                    // Stack order: left half first.
                    pending.push(right.to_vec());
                    pending.push(left.to_vec());
                }
                Err(other) => return Err(other),
            }
        }
        if admitted_count >= 2 && refused.len() == admitted_count && all_alike(&refused) {
            if let Some(error) = refused.pop() {
                return Err(ApplyError::Unavailable(error));
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or(Err(Rejection::Database("not applied".into()))))
            .collect())
    }

    async fn legacy_inbox(&self) -> Result<bool, sqlx::Error> {
        self.legacy_inbox
            .get_or_try_init(|| async {
                let mut tx = self.begin().await?;
                let legacy = query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM processed_events WHERE message_id IS NULL)",
                )
                .fetch_one(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<bool, sqlx::Error>(legacy)
            })
            .await
            .copied()
    }

    /// Applies what the Admin API said (enrichment, reconcile) in one transaction.
    pub async fn apply_observations(&self, observations: &[Observation]) -> Result<(), StoreError> {
        if observations.is_empty() {
            return Ok(());
        }
        let plan = plan_observations(observations);
        with_backoff(self.retry_max, "apply what Keycloak says", || async {
            let mut tx = self.begin().await?;
            let mut changes = Vec::new();
            write_plan(&mut tx, &plan, &SealedTokens::new(), &mut changes).await?;
            self.announce(&mut tx, changes).await?;
            tx.commit().await
        })
        .await
    }
}

/// Whether the database refused each event with the same SQLSTATE and constraint.
fn all_alike(errors: &[sqlx::Error]) -> bool {
    let key = |error: &sqlx::Error| match error {
        sqlx::Error::Database(db) => Some((
            db.code().map(|c| c.into_owned()),
            db.constraint().map(str::to_string),
        )),
        _ => None,
    };
    let first = errors.first().map(key);
    errors.iter().all(|e| Some(key(e)) == first)
}

/// The first event of each id: later copies in the same batch are duplicates.
fn first_of_each_id<'e>(events: &[&'e Event]) -> Vec<&'e Event> {
    let mut seen = HashSet::with_capacity(events.len());
    events
        .iter()
        .copied()
        .filter(|e| seen.insert(e.id.as_str()))
        .collect()
}

/// Seals every token message of the batch (some may turn out to be duplicates or
/// superseded: sealing is cheap and keeps all cryptography out of the transaction).
fn seal_tokens<'e>(
    events: &[&'e Event],
    vault: Option<&KeyRing>,
) -> Result<SealedTokens<'e>, ApplyError> {
    let mut sealed = SealedTokens::new();
    for event in events {
        let Action::StoreToken(message) = &event.action else {
            continue;
        };
        let keys = vault.ok_or_else(|| ApplyError::NoVault {
            event_id: event.id.clone(),
        })?;
        let row = RowIdentity {
            realm_id: &event.realm_id,
            user_id: &message.user_id,
            token_type: message.token_type.as_str(),
            client_id: message.client_id.as_deref(),
            session_id: message.session_id.as_deref(),
        };
        let token: &SecretString = &message.token;
        let seal = keys.seal(token, &row).map_err(|source| ApplyError::Seal {
            event_id: event.id.clone(),
            source,
        })?;
        sealed.insert(event.id.as_str(), seal);
    }
    Ok(sealed)
}

/// The apply path inside a caller's transaction: returns the ids the inbox had not seen.
/// With `enrich`, users the events leave incomplete are queued in the same transaction;
/// with `legacy_inbox`, events recorded under their message id count as seen. What the
/// events changed goes to `changes`, for the feed.
pub async fn apply_in<'e>(
    tx: &mut Tx<'_>,
    first: &[&'e Event],
    sealed: &SealedTokens<'_>,
    enrich: bool,
    legacy_inbox: bool,
    changes: &mut Vec<Change>,
) -> Result<HashSet<&'e str>, sqlx::Error> {
    let fresh = inbox::record(tx, first, legacy_inbox).await?;
    let plan = plan(
        first
            .iter()
            .copied()
            .filter(|e| fresh.contains(e.id.as_str())),
    );
    write_plan(tx, &plan, sealed, changes).await?;
    if enrich {
        enrichment::queue(tx, &plan.enrichment).await?;
        enrichment::queue_directory(tx, &plan.directory.recompute).await?;
    }
    Ok(fresh)
}

/// Each event's outcome in input order: the first copy of a new id is applied (or
/// ignored); everything else is a duplicate.
fn outcomes_in_order(events: &[&Event], fresh: &HashSet<&str>) -> Vec<Outcome> {
    let mut counted = HashSet::with_capacity(events.len());
    events
        .iter()
        .map(|event| {
            if !fresh.contains(event.id.as_str()) || !counted.insert(event.id.as_str()) {
                Outcome::Duplicate
            } else {
                Outcome::of_new(event)
            }
        })
        .collect()
}

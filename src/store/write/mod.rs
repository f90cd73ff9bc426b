//! Writes a [`Plan`] inside the caller's transaction: one multi-row statement per
//! table, each merging with the same commutative rules as the planner.

mod directory;
mod sessions;
mod tokens;
mod users;

pub(crate) use directory::{resolve_pending, upsert_organization_members};
pub(crate) use sessions::ended_sessions;
pub(crate) use tokens::vault_change;
pub use tokens::SealedTokens;

use std::collections::BTreeMap;

use super::{query, query_scalar, Tx};
use crate::core::change::Change;
use crate::core::plan::{LockMode, Plan, Versioned};

/// Writes `plan`; what it changed for applications goes to `changes` (the feed).
pub async fn write_plan(
    tx: &mut Tx<'_>,
    plan: &Plan,
    sealed: &SealedTokens<'_>,
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    if plan.is_empty() {
        return Ok(());
    }
    lock_users(tx, plan).await?;
    sessions::insert_cutoffs(tx, plan).await?;
    sessions::insert_realm_cutoffs(tx, plan).await?;
    let inferred = sessions::upsert(tx, plan, changes).await?;
    sessions::apply_cutoffs(tx, plan, changes).await?;
    sessions::follow_expiry(tx, &inferred, changes).await?;
    sessions::mark_stale_policies(tx, plan).await?;
    tokens::revoke(tx, &plan.revocations, changes).await?;
    tokens::store(tx, plan, sealed, changes).await?;
    tokens::follow_refreshes(tx, plan).await?;
    // Last: the rows most batches share are then locked only until the commit.
    let named = users::upsert(tx, plan, changes).await?;
    // After the users: memberships follow their deletions.
    directory::write(tx, plan, &named, changes).await?;
    Ok(())
}

/// Makes a transaction that adds cutoffs for a user (or realm) wait for (or hold off)
/// any other that writes that user's (or realm's) sessions, so a session and a cutoff
/// written concurrently always meet. Session writers share the lock. Keys are taken in sorted order to rule
/// out deadlocks between batches.
async fn lock_users(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let mut keys: BTreeMap<i64, bool> = BTreeMap::new();
    // A session the batch names without its user (an admin's session deletion) may be a
    // stored session of a user whose cutoffs another batch is adding: sharing that user's
    // lock keeps the two from deadlocking on each other's rows.
    let unnamed: Vec<&str> = plan
        .sessions
        .iter()
        .filter(|s| s.user_id.is_none())
        .map(|s| s.id.as_str())
        .collect();
    let stored_users: Vec<String> = if unnamed.is_empty() {
        Vec::new()
    } else {
        query_scalar(
            "SELECT DISTINCT user_id FROM user_sessions
             WHERE id = ANY($1::text[]) AND user_id IS NOT NULL",
        )
        .bind(&unnamed)
        .fetch_all(&mut **tx)
        .await?
    };
    let stored = stored_users.iter().map(|u| (lock_key(u), LockMode::Shared));
    let users = plan
        .user_locks()
        .into_iter()
        .map(|(u, m)| (lock_key(u), m))
        .chain(stored);
    // NUL cannot occur in a text id, so a realm's key never equals a user's.
    let realms = plan
        .realm_locks()
        .into_iter()
        .map(|(r, m)| (lock_key(&format!("realm\0{r}")), m));
    // NUL cannot occur in an id either: a session's key is neither a user's nor a realm's.
    let sessions = plan
        .session_locks()
        .into_iter()
        .map(|id| (lock_key(&format!("session\0{id}")), LockMode::Exclusive));
    let directory = plan
        .directory
        .locks()
        .into_iter()
        .map(|((realm, area), m)| (lock_key(&format!("{}\0{realm}", area.as_str())), m));
    for (key, mode) in users.chain(realms).chain(sessions).chain(directory) {
        let exclusive = keys.entry(key).or_default();
        *exclusive |= mode == LockMode::Exclusive;
    }
    if keys.is_empty() {
        return Ok(());
    }
    let (keys, exclusive): (Vec<i64>, Vec<bool>) = keys.into_iter().unzip();
    query(
        "SELECT count(CASE WHEN x THEN pg_advisory_xact_lock(k) ELSE pg_advisory_xact_lock_shared(k) END)
         FROM UNNEST($1::int8[], $2::bool[]) WITH ORDINALITY AS t(k, x, n)",
    )
    .bind(&keys)
    .bind(&exclusive)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `column = <newer of stored and incoming>, version = <the newer version>` for each
/// (column, version column) merged last writer wins, `alias` being the table's.
pub(super) fn last_writer_wins(alias: &str, fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(f, ver)| {
            format!(
                "{f} = CASE WHEN EXCLUDED.{ver} > COALESCE({alias}.{ver}, '') \
                 THEN EXCLUDED.{f} ELSE {alias}.{f} END,\n        \
                 {ver} = GREATEST({alias}.{ver}, EXCLUDED.{ver})"
            )
        })
        .collect::<Vec<_>>()
        .join(",\n        ")
}

/// The value and version columns of a last-writer-wins field.
pub(super) fn split<T, U>(
    items: impl Iterator<Item = Option<Versioned<T>>>,
    convert: impl Fn(T) -> Option<U>,
) -> (Vec<Option<U>>, Vec<Option<String>>) {
    items
        .map(|v| match v {
            Some(v) => (convert(v.value), Some(v.version.as_str().to_string())),
            None => (None, None),
        })
        .unzip()
}

/// An advisory lock key: the same in every replica.
pub(crate) fn lock_key(user_id: &str) -> i64 {
    crate::core::ids::stable_hash(user_id) as i64
}

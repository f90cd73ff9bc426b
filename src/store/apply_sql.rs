//! The SQL of the apply path: one multi-row statement per table, each merging with the
//! same commutative rules as the planner (see `plan.rs`).

use std::collections::{BTreeMap, HashSet};
use std::sync::LazyLock;

use sqlx::{Postgres, Transaction};

use crate::core::event::{Enrichment, Event, TokenType};
use crate::core::plan::{LockMode, Plan, Revocation, TokenChange, Version, Versioned};
use crate::vault::{KeyRing, RowIdentity};

type Tx<'t> = Transaction<'t, Postgres>;

/// Inserts every event into the inbox and returns the ids it did not hold yet. A
/// concurrent transaction inserting the same id makes this one wait for its outcome, so
/// exactly one of them sees the id as new.
pub async fn record_inbox<'e>(
    tx: &mut Tx<'_>,
    events: &[&'e Event],
) -> Result<HashSet<&'e str>, sqlx::Error> {
    let mut sorted: Vec<&Event> = events.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let ids: Vec<&str> = sorted.iter().map(|e| e.id.as_str()).collect();
    let kinds: Vec<&str> = sorted.iter().map(|e| e.kind.as_str()).collect();
    let types: Vec<&str> = sorted.iter().map(|e| e.type_name.as_str()).collect();
    let realms: Vec<&str> = sorted.iter().map(|e| e.realm_id.as_str()).collect();
    let times: Vec<i64> = sorted.iter().map(|e| e.time).collect();
    let outcomes: Vec<&str> = sorted
        .iter()
        .map(|e| {
            if e.action.is_ignored() {
                "ignored"
            } else {
                "applied"
            }
        })
        .collect();
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO processed_events (event_id, kind, type, realm_id, event_time, outcome)
         SELECT n.id, n.kind, n.type, n.realm_id, ms_ts(n.time), n.outcome
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[])
              AS n(id, kind, type, realm_id, time, outcome)
         ON CONFLICT (event_id) DO NOTHING
         RETURNING event_id",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&types)
    .bind(&realms)
    .bind(&times)
    .bind(&outcomes)
    .fetch_all(&mut **tx)
    .await?;
    let inserted: HashSet<String> = inserted.into_iter().collect();
    Ok(ids
        .into_iter()
        .filter(|id| inserted.contains(*id))
        .collect())
}

pub async fn write_plan(
    tx: &mut Tx<'_>,
    plan: &Plan,
    vault: Option<&KeyRing>,
) -> Result<(), sqlx::Error> {
    if plan.is_empty() {
        return Ok(());
    }
    lock_users(tx, plan).await?;
    insert_cutoffs(tx, plan).await?;
    upsert_sessions(tx, plan).await?;
    apply_cutoffs(tx, plan).await?;
    revoke_tokens(tx, &plan.revocations).await?;
    store_tokens(tx, plan, vault).await?;
    follow_refreshes(tx, plan).await?;
    // Last: the rows most batches share are then locked only until the commit.
    upsert_users(tx, plan).await?;
    Ok(())
}

/// Queues the users that `events` leave incomplete (see [`Action::enrichment`]) and
/// that have not been read whole since: one row per user, the newest asking version kept.
pub async fn queue_enrichment(tx: &mut Tx<'_>, events: &[&Event]) -> Result<(), sqlx::Error> {
    let mut wanted: BTreeMap<&str, (Version, bool)> = BTreeMap::new();
    for event in events {
        let (Some(need), Some(user)) = (event.action.enrichment(), event.action.user_id()) else {
            continue;
        };
        let version = Version::of(event);
        let if_read_before = need == Enrichment::IfReadBefore;
        let entry = wanted
            .entry(user)
            .or_insert_with(|| (version.clone(), if_read_before));
        if version > entry.0 {
            entry.0 = version;
        }
        entry.1 |= if_read_before;
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let users: Vec<&str> = wanted.keys().copied().collect();
    let versions: Vec<&str> = wanted.values().map(|(v, _)| v.as_str()).collect();
    let if_read_before: Vec<bool> = wanted.values().map(|(_, b)| *b).collect();
    sqlx::query(
        "INSERT INTO enrichment_queue AS q (user_id, realm_id, ver)
         SELECT n.user_id, u.realm_id, n.ver
         FROM UNNEST($1::text[], $2::text[], $3::bool[]) AS n(user_id, ver, if_read_before)
         JOIN users u ON u.id = n.user_id
         WHERE u.deleted_at IS NULL
           AND (u.read_ver IS NULL OR (n.if_read_before AND u.read_ver < n.ver))
         ORDER BY n.user_id
         ON CONFLICT (user_id) DO UPDATE SET ver = EXCLUDED.ver
         WHERE q.ver < EXCLUDED.ver",
    )
    .bind(&users)
    .bind(&versions)
    .bind(&if_read_before)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Profile fields merged last-writer-wins: `(column, version column)`.
const USER_LWW_FIELDS: [&str; 7] = [
    "username",
    "email",
    "first_name",
    "last_name",
    "email_verified",
    "enabled",
    "attributes",
];

static UPSERT_USERS: LazyLock<String> = LazyLock::new(|| {
    let last_writer_wins: Vec<String> = USER_LWW_FIELDS
        .iter()
        .map(|f| {
            format!(
                "{f} = CASE WHEN EXCLUDED.{f}_ver > COALESCE(u.{f}_ver, '') THEN EXCLUDED.{f} ELSE u.{f} END,\n\
                 {f}_ver = GREATEST(u.{f}_ver, EXCLUDED.{f}_ver)"
            )
        })
        .collect();
    format!(
        "INSERT INTO users AS u (id, realm_id, username, username_ver, email, email_ver,
             first_name, first_name_ver, last_name, last_name_ver, email_verified,
             email_verified_ver, enabled, enabled_ver, attributes, attributes_ver, created_at,
             last_login_at, login_count, last_login_error_at, login_error_count, deleted_at,
             read_ver)
         SELECT n.id, n.realm_id, n.username, n.username_ver, n.email, n.email_ver,
             n.first_name, n.first_name_ver, n.last_name, n.last_name_ver, n.email_verified,
             n.email_verified_ver, n.enabled, n.enabled_ver, n.attributes::jsonb,
             n.attributes_ver, ms_ts(n.created_at), ms_ts(n.last_login_at), n.login_count,
             ms_ts(n.last_login_error_at), n.login_error_count, ms_ts(n.deleted_at), n.read_ver
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::text[], $11::bool[], $12::text[],
             $13::bool[], $14::text[], $15::text[], $16::text[], $17::int8[], $18::int8[],
             $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::text[])
           AS n(id, realm_id, username, username_ver, email, email_ver, first_name,
             first_name_ver, last_name, last_name_ver, email_verified, email_verified_ver,
             enabled, enabled_ver, attributes, attributes_ver, created_at, last_login_at,
             login_count, last_login_error_at, login_error_count, deleted_at, read_ver)
         ON CONFLICT (id) DO UPDATE SET
             {},
             created_at = LEAST(u.created_at, EXCLUDED.created_at),
             last_login_at = GREATEST(u.last_login_at, EXCLUDED.last_login_at),
             login_count = u.login_count + EXCLUDED.login_count,
             last_login_error_at = GREATEST(u.last_login_error_at, EXCLUDED.last_login_error_at),
             login_error_count = u.login_error_count + EXCLUDED.login_error_count,
             deleted_at = LEAST(u.deleted_at, EXCLUDED.deleted_at),
             read_ver = GREATEST(u.read_ver, EXCLUDED.read_ver),
             updated_at = now()",
        last_writer_wins.join(",\n")
    )
});

/// Splits optional versioned values into the value and version columns.
fn columns<T, U>(
    items: impl Iterator<Item = Option<Versioned<T>>>,
    convert: impl Fn(T) -> U,
) -> (Vec<Option<U>>, Vec<Option<String>>) {
    items
        .map(|v| match v {
            Some(v) => (Some(convert(v.value)), Some(v.version.as_str().to_string())),
            None => (None, None),
        })
        .unzip()
}

async fn upsert_users(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let users = &plan.users;
    if users.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let realms: Vec<&str> = users.iter().map(|u| u.realm_id.as_str()).collect();
    let same = |s: Option<String>| s;
    let (username, username_ver) = columns(users.iter().map(|u| u.username.clone()), same);
    let (email, email_ver) = columns(users.iter().map(|u| u.email.clone()), same);
    let (first, first_ver) = columns(users.iter().map(|u| u.first_name.clone()), same);
    let (last, last_ver) = columns(users.iter().map(|u| u.last_name.clone()), same);
    let (verified, verified_ver) = columns(users.iter().map(|u| u.email_verified.clone()), Some);
    let (enabled, enabled_ver) = columns(users.iter().map(|u| u.enabled.clone()), Some);
    let (attributes, attributes_ver) = columns(users.iter().map(|u| u.attributes.clone()), |m| {
        Some(serde_json::Value::Object(m).to_string())
    });
    sqlx::query(&UPSERT_USERS)
        .bind(&ids)
        .bind(&realms)
        .bind(&username)
        .bind(&username_ver)
        .bind(&email)
        .bind(&email_ver)
        .bind(&first)
        .bind(&first_ver)
        .bind(&last)
        .bind(&last_ver)
        .bind(&verified)
        .bind(&verified_ver)
        .bind(&enabled)
        .bind(&enabled_ver)
        .bind(&attributes)
        .bind(&attributes_ver)
        .bind(users.iter().map(|u| u.created_at).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.last_login_at).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.login_count).collect::<Vec<_>>())
        .bind(
            users
                .iter()
                .map(|u| u.last_login_error_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            users
                .iter()
                .map(|u| u.login_error_count)
                .collect::<Vec<_>>(),
        )
        .bind(users.iter().map(|u| u.deleted_at).collect::<Vec<_>>())
        .bind(
            users
                .iter()
                .map(|u| u.read_version.as_ref().map(|v| v.as_str()))
                .collect::<Vec<_>>(),
        )
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes a transaction that adds cutoffs for a user wait for (or hold off) any other
/// that writes that user's sessions, so a session and a cutoff written concurrently
/// always meet. Session writers share the lock. Keys are taken in sorted order to rule
/// out deadlocks between batches.
async fn lock_users(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let mut keys: BTreeMap<i64, bool> = BTreeMap::new();
    for (user, mode) in plan.user_locks() {
        let exclusive = keys.entry(lock_key(user)).or_default();
        *exclusive |= mode == LockMode::Exclusive;
    }
    if keys.is_empty() {
        return Ok(());
    }
    let (keys, exclusive): (Vec<i64>, Vec<bool>) = keys.into_iter().unzip();
    sqlx::query(
        "SELECT count(CASE WHEN x THEN pg_advisory_xact_lock(k) ELSE pg_advisory_xact_lock_shared(k) END)
         FROM UNNEST($1::int8[], $2::bool[]) WITH ORDINALITY AS t(k, x, n)",
    )
    .bind(&keys)
    .bind(&exclusive)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// FNV-1a: stable across processes and versions, unlike std's hasher.
fn lock_key(user_id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in user_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

async fn insert_cutoffs(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    if plan.cutoffs.is_empty() {
        return Ok(());
    }
    let c = &plan.cutoffs;
    sqlx::query(
        "INSERT INTO session_cutoffs (user_id, at, reason, ver)
         SELECT n.user_id, ms_ts(n.at), n.reason, n.ver
         FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::text[]) AS n(user_id, at, reason, ver)
         ON CONFLICT DO NOTHING",
    )
    .bind(c.iter().map(|x| x.user_id.as_str()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.at).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.reason.as_str()).collect::<Vec<_>>())
    .bind(c.iter().map(|x| x.version.as_str()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn upsert_sessions(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let sessions = &plan.sessions;
    if sessions.is_empty() {
        return Ok(());
    }
    let same = |s: String| Some(s);
    let (client, client_ver) = columns(sessions.iter().map(|s| s.client_id.clone()), same);
    let (ip, ip_ver) = columns(sessions.iter().map(|s| s.ip_address.clone()), same);
    sqlx::query(
        "INSERT INTO user_sessions AS s (id, realm_id, user_id, client_id, client_ver, ip_address,
             ip_ver, started_at, last_refresh_at, refresh_count, ended_at, end_reason, end_ver)
         SELECT n.id, n.realm_id, n.user_id, n.client_id, n.client_ver, n.ip_address, n.ip_ver,
             ms_ts(n.started_at), ms_ts(n.last_refresh_at), n.refresh_count, ms_ts(n.ended_at),
             n.end_reason, n.end_ver
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::text[],
             $13::text[])
           AS n(id, realm_id, user_id, client_id, client_ver, ip_address, ip_ver, started_at,
             last_refresh_at, refresh_count, ended_at, end_reason, end_ver)
         ON CONFLICT (id) DO UPDATE SET
             user_id = COALESCE(s.user_id, EXCLUDED.user_id),
             client_id = CASE WHEN EXCLUDED.client_ver < s.client_ver OR s.client_ver IS NULL
                              THEN EXCLUDED.client_id ELSE s.client_id END,
             client_ver = LEAST(s.client_ver, EXCLUDED.client_ver),
             ip_address = CASE WHEN EXCLUDED.ip_ver < s.ip_ver OR s.ip_ver IS NULL
                               THEN EXCLUDED.ip_address ELSE s.ip_address END,
             ip_ver = LEAST(s.ip_ver, EXCLUDED.ip_ver),
             started_at = LEAST(s.started_at, EXCLUDED.started_at),
             last_refresh_at = GREATEST(s.last_refresh_at, EXCLUDED.last_refresh_at),
             refresh_count = s.refresh_count + EXCLUDED.refresh_count,
             ended_at = CASE WHEN EXCLUDED.end_ver < s.end_ver OR s.end_ver IS NULL
                             THEN EXCLUDED.ended_at ELSE s.ended_at END,
             end_reason = CASE WHEN EXCLUDED.end_ver < s.end_ver OR s.end_ver IS NULL
                               THEN EXCLUDED.end_reason ELSE s.end_reason END,
             end_ver = LEAST(s.end_ver, EXCLUDED.end_ver)",
    )
    .bind(sessions.iter().map(|s| s.id.as_str()).collect::<Vec<_>>())
    .bind(
        sessions
            .iter()
            .map(|s| s.realm_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        sessions
            .iter()
            .map(|s| s.user_id.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(&client)
    .bind(&client_ver)
    .bind(&ip)
    .bind(&ip_ver)
    .bind(sessions.iter().map(|s| s.started_at).collect::<Vec<_>>())
    .bind(
        sessions
            .iter()
            .map(|s| s.last_refresh_at)
            .collect::<Vec<_>>(),
    )
    .bind(sessions.iter().map(|s| s.refresh_count).collect::<Vec<_>>())
    .bind(
        sessions
            .iter()
            .map(|s| s.end.as_ref().map(|e| e.at))
            .collect::<Vec<_>>(),
    )
    .bind(
        sessions
            .iter()
            .map(|s| s.end.as_ref().map(|e| e.reason.as_str()))
            .collect::<Vec<_>>(),
    )
    .bind(
        sessions
            .iter()
            .map(|s| s.end.as_ref().map(|e| e.version.as_str()))
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends sessions where a cutoff reaches them, unless they already ended earlier: new
/// cutoffs meeting stored sessions, and the batch's sessions meeting stored cutoffs (the
/// stored row may know the user when the event did not).
async fn apply_cutoffs(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    if plan.cutoffs.is_empty() && plan.sessions.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "WITH new_cutoffs AS (
             SELECT c.* FROM session_cutoffs c
             JOIN UNNEST($1::text[], $2::text[]) AS n(user_id, ver)
               ON c.user_id = n.user_id AND c.ver = n.ver
         ),
         candidates AS (
             SELECT t.id, t.end_ver, c.at, c.reason, c.ver
             FROM new_cutoffs c
             JOIN user_sessions t ON t.user_id = c.user_id AND t.started_at <= c.at
             UNION ALL
             SELECT t.id, t.end_ver, c.at, c.reason, c.ver
             FROM user_sessions t
             JOIN session_cutoffs c ON c.user_id = t.user_id AND t.started_at <= c.at
             WHERE t.id = ANY($3::text[])
         )
         UPDATE user_sessions s
         SET ended_at = c.at, end_reason = c.reason, end_ver = c.ver
         FROM (
             SELECT DISTINCT ON (id) id, at, reason, ver
             FROM candidates
             WHERE end_ver IS NULL OR ver < end_ver
             ORDER BY id, ver
         ) c
         -- Checked again on the row itself: a concurrent writer may have ended the
         -- session earlier since the candidates were read, and the row's latest
         -- version is what this condition sees.
         WHERE s.id = c.id AND (s.end_ver IS NULL OR c.ver < s.end_ver)",
    )
    .bind(
        plan.cutoffs
            .iter()
            .map(|c| c.user_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        plan.cutoffs
            .iter()
            .map(|c| c.version.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        plan.sessions
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
    )
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn revoke_tokens(tx: &mut Tx<'_>, revocations: &[Revocation]) -> Result<(), sqlx::Error> {
    let (mut sessions, mut session_at) = (Vec::new(), Vec::new());
    let (mut users, mut user_at) = (Vec::new(), Vec::new());
    let (mut grant_users, mut grant_clients, mut grant_at) = (Vec::new(), Vec::new(), Vec::new());
    for revocation in revocations {
        match revocation {
            Revocation::Session { session_id, at } => {
                sessions.push(session_id.as_str());
                session_at.push(*at);
            }
            Revocation::User { user_id, at } => {
                users.push(user_id.as_str());
                user_at.push(*at);
            }
            Revocation::OfflineGrant {
                user_id,
                client_id,
                at,
            } => {
                grant_users.push(user_id.as_str());
                grant_clients.push(client_id.as_str());
                grant_at.push(*at);
            }
        }
    }
    if !sessions.is_empty() {
        sqlx::query(
            "DELETE FROM auth_vault v USING UNNEST($1::text[], $2::int8[]) AS r(session_id, at)
             WHERE v.session_id = r.session_id AND v.issued_at <= ms_ts(r.at)",
        )
        .bind(&sessions)
        .bind(&session_at)
        .execute(&mut **tx)
        .await?;
    }
    if !users.is_empty() {
        sqlx::query(
            "DELETE FROM auth_vault v USING UNNEST($1::text[], $2::int8[]) AS r(user_id, at)
             WHERE v.user_id = r.user_id AND v.issued_at <= ms_ts(r.at)",
        )
        .bind(&users)
        .bind(&user_at)
        .execute(&mut **tx)
        .await?;
    }
    if !grant_users.is_empty() {
        sqlx::query(
            "INSERT INTO grant_revocations (user_id, client_id, at)
             SELECT r.user_id, r.client_id, ms_ts(r.at)
             FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS r(user_id, client_id, at)
             ON CONFLICT DO NOTHING",
        )
        .bind(&grant_users)
        .bind(&grant_clients)
        .bind(&grant_at)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "DELETE FROM auth_vault v
             USING UNNEST($1::text[], $2::text[], $3::int8[]) AS r(user_id, client_id, at)
             WHERE v.token_type = 'offline' AND v.user_id = r.user_id
               AND v.client_id = r.client_id AND v.issued_at <= ms_ts(r.at)",
        )
        .bind(&grant_users)
        .bind(&grant_clients)
        .bind(&grant_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Conditions under which a token is not kept: its user deleted or disabled, its session
/// ended, or (offline) its grant revoked — at or after the token's time.
const TOKEN_STILL_VALID: &str = "
    NOT EXISTS (SELECT 1 FROM session_cutoffs c
                WHERE c.user_id = n.user_id AND c.at >= ms_ts(n.issued_at))
    AND NOT EXISTS (SELECT 1 FROM user_sessions s
                    WHERE s.id = n.session_id AND s.ended_at >= ms_ts(n.issued_at))
    AND NOT (n.token_type = 'offline' AND EXISTS (
        SELECT 1 FROM grant_revocations g
        WHERE g.user_id = n.user_id AND g.client_id = n.client_id AND g.at >= ms_ts(n.issued_at)))";

/// On a conflict the newer message (by version) owns the sealed token and the row's
/// identity; metadata is merged in SQL, newer values winning, and gains `updatedAt`.
const TOKEN_MERGE: &str = "
    session_id = CASE WHEN newer THEN EXCLUDED.session_id ELSE v.session_id END,
    client_id = CASE WHEN newer THEN EXCLUDED.client_id ELSE v.client_id END,
    key_id = CASE WHEN newer THEN EXCLUDED.key_id ELSE v.key_id END,
    nonce = CASE WHEN newer THEN EXCLUDED.nonce ELSE v.nonce END,
    ciphertext = CASE WHEN newer THEN EXCLUDED.ciphertext ELSE v.ciphertext END,
    expires_at = CASE WHEN newer THEN EXCLUDED.expires_at ELSE v.expires_at END,
    issued_at = CASE WHEN newer THEN EXCLUDED.issued_at ELSE v.issued_at END,
    metadata = (CASE WHEN newer THEN v.metadata || EXCLUDED.metadata
                     ELSE EXCLUDED.metadata || v.metadata END)
               || jsonb_build_object('updatedAt', now()),
    issued_ver = GREATEST(v.issued_ver, EXCLUDED.issued_ver),
    updated_at = now()";

static STORE_REFRESH_TOKENS: LazyLock<String> =
    LazyLock::new(|| token_upsert("(realm_id, user_id) WHERE token_type = 'refresh'"));

static STORE_OFFLINE_TOKENS: LazyLock<String> = LazyLock::new(|| {
    token_upsert(
    "(realm_id, user_id, (coalesce(client_id, '')), (coalesce(session_id, ''))) WHERE token_type = 'offline'",
)
});

fn token_upsert(conflict: &str) -> String {
    format!(
        "INSERT INTO auth_vault AS v (id, realm_id, user_id, token_type, session_id, client_id,
             key_id, nonce, ciphertext, expires_at, metadata, issued_at, issued_ver)
         SELECT gen_random_uuid(), n.realm_id, n.user_id, n.token_type, n.session_id,
             n.client_id, n.key_id, n.nonce, n.ciphertext, ms_ts(n.expires_at),
             n.metadata::jsonb || jsonb_build_object('updatedAt', now()),
             ms_ts(n.issued_at), n.issued_ver
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::bytea[], $8::bytea[], $9::int8[], $10::text[], $11::int8[], $12::text[])
           AS n(realm_id, user_id, token_type, session_id, client_id, key_id, nonce,
             ciphertext, expires_at, metadata, issued_at, issued_ver)
         WHERE {TOKEN_STILL_VALID}
         ON CONFLICT {conflict} DO UPDATE SET {}",
        TOKEN_MERGE.replace("newer", "EXCLUDED.issued_ver > v.issued_ver")
    )
}

/// Seals and writes the plan's tokens: one multi-row upsert per token type, each row
/// written with `INSERT … ON CONFLICT … DO UPDATE` (no read-then-write).
async fn store_tokens(
    tx: &mut Tx<'_>,
    plan: &Plan,
    vault: Option<&KeyRing>,
) -> Result<(), sqlx::Error> {
    if plan.tokens.is_empty() {
        return Ok(());
    }
    let Some(keys) = vault else {
        return Err(sqlx::Error::Configuration(
            "token messages need a vault key ring (vault.keys, vault.active_key)".into(),
        ));
    };
    for (token_type, sql) in [
        (TokenType::Refresh, &*STORE_REFRESH_TOKENS),
        (TokenType::Offline, &*STORE_OFFLINE_TOKENS),
    ] {
        let tokens: Vec<&TokenChange> = plan
            .tokens
            .iter()
            .filter(|t| t.token_type == token_type)
            .collect();
        if tokens.is_empty() {
            continue;
        }
        let mut sealed = Vec::with_capacity(tokens.len());
        for token in &tokens {
            let row = RowIdentity {
                realm_id: &token.realm_id,
                user_id: &token.user_id,
                token_type: token.token_type.as_str(),
                client_id: token.client_id.as_deref(),
                session_id: token.session_id.as_deref(),
            };
            sealed.push(
                keys.seal(&token.token, &row)
                    .map_err(|e| sqlx::Error::Encode(Box::new(e)))?,
            );
        }
        sqlx::query(sql)
            .bind(
                tokens
                    .iter()
                    .map(|t| t.realm_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                tokens
                    .iter()
                    .map(|t| t.user_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                tokens
                    .iter()
                    .map(|t| t.token_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                tokens
                    .iter()
                    .map(|t| t.session_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                tokens
                    .iter()
                    .map(|t| t.client_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(sealed.iter().map(|s| s.key_id.as_str()).collect::<Vec<_>>())
            .bind(sealed.iter().map(|s| s.nonce.clone()).collect::<Vec<_>>())
            .bind(
                sealed
                    .iter()
                    .map(|s| s.ciphertext.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(tokens.iter().map(|t| t.expires_at).collect::<Vec<_>>())
            .bind(
                tokens
                    .iter()
                    .map(|t| serde_json::Value::Object(t.metadata.clone()).to_string())
                    .collect::<Vec<_>>(),
            )
            .bind(tokens.iter().map(|t| t.issued_at).collect::<Vec<_>>())
            .bind(
                tokens
                    .iter()
                    .map(|t| t.version.as_str())
                    .collect::<Vec<_>>(),
            )
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Copies each refreshed session's count and last refresh into its tokens' metadata —
/// for new refreshes and for new tokens of sessions that were refreshed before.
async fn follow_refreshes(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let mut sessions: Vec<&str> = plan
        .refreshed_sessions
        .iter()
        .map(String::as_str)
        .chain(plan.tokens.iter().filter_map(|t| t.session_id.as_deref()))
        .collect();
    if sessions.is_empty() {
        return Ok(());
    }
    sessions.sort_unstable();
    sessions.dedup();
    sqlx::query(
        "UPDATE auth_vault v
         SET metadata = v.metadata || jsonb_build_object(
                 'refreshCount', s.refresh_count,
                 'lastRefresh', (extract(epoch FROM s.last_refresh_at) * 1000)::int8),
             updated_at = now()
         FROM user_sessions s
         WHERE v.session_id = s.id AND s.id = ANY($1::text[]) AND s.refresh_count > 0",
    )
    .bind(&sessions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

//! `auth_vault` on the apply path: revocations, sealed tokens, refresh metadata.

use std::collections::HashMap;

use std::collections::HashSet;

use sqlx::Row;

use crate::core::change::{Change, ChangeKind};
use crate::core::event::TokenType;
use crate::core::plan::{Plan, Revocation, TokenChange};
use crate::store::rows::Rows;
use crate::store::{query, Tx};
use crate::vault::Sealed;

const STORE: &str = include_str!("../sql/store_tokens.sql");

/// Each token message's token, sealed before the transaction, by message id.
pub type SealedTokens<'a> = HashMap<&'a str, Sealed>;

/// The unique index each token type's upsert conflicts on.
fn slot(token_type: TokenType) -> &'static str {
    match token_type {
        TokenType::Refresh => "(realm_id, user_id) WHERE token_type = 'refresh'",
        TokenType::Offline => {
            "(realm_id, user_id, (coalesce(client_id, '')), (coalesce(session_id, ''))) WHERE token_type = 'offline'"
        }
    }
}

/// One multi-row upsert per token type (`INSERT … ON CONFLICT … DO UPDATE`: no
/// read-then-write). A token without its sealed copy is a bug of the caller: an error.
pub async fn store(
    tx: &mut Tx<'_>,
    plan: &Plan,
    sealed: &SealedTokens<'_>,
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    for token_type in [TokenType::Refresh, TokenType::Offline] {
        let tokens: Vec<(&TokenChange, &Sealed)> = plan
            .tokens
            .iter()
            .filter(|t| t.token_type == token_type)
            .map(|t| {
                sealed
                    .get(t.source.as_str())
                    .map(|s| (t, s))
                    .ok_or_else(|| {
                        sqlx::Error::Protocol(format!("token message {} was not sealed", t.source))
                    })
            })
            .collect::<Result<_, _>>()?;
        if tokens.is_empty() {
            continue;
        }
        let metadata: Vec<String> = tokens
            .iter()
            .map(|(t, _)| serde_json::Value::Object(t.metadata.clone()).to_string())
            .collect();
        let rows = Rows::new()
            .text(
                "realm_id",
                tokens.iter().map(|(t, _)| Some(t.realm_id.as_str())),
            )
            .text(
                "user_id",
                tokens.iter().map(|(t, _)| Some(t.user_id.as_str())),
            )
            .text(
                "token_type",
                tokens.iter().map(|(t, _)| Some(t.token_type.as_str())),
            )
            .text(
                "session_id",
                tokens.iter().map(|(t, _)| t.session_id.as_deref()),
            )
            .text(
                "client_id",
                tokens.iter().map(|(t, _)| t.client_id.as_deref()),
            )
            .text(
                "key_id",
                tokens.iter().map(|(_, s)| Some(s.key_id.as_str())),
            )
            .bytea("nonce", tokens.iter().map(|(_, s)| s.nonce.as_slice()))
            .bytea(
                "ciphertext",
                tokens.iter().map(|(_, s)| s.ciphertext.as_slice()),
            )
            .int8("expires_at", tokens.iter().map(|(t, _)| t.expires_at))
            .text("metadata", metadata.iter().map(Some))
            .int8("issued_at", tokens.iter().map(|(t, _)| Some(t.issued_at)))
            .text(
                "issued_ver",
                tokens.iter().map(|(t, _)| Some(t.version.as_str())),
            );
        let query = rows.query(&STORE.replace("{slot}", slot(token_type)));
        let written = query.build().fetch_all(&mut **tx).await?;
        // A row that kept a newer token than this batch's is not a change.
        let versions: HashSet<&str> = tokens.iter().map(|(t, _)| t.version.as_str()).collect();
        for row in written {
            let version: String = row.get(5);
            if versions.contains(version.as_str()) {
                changes.push(vault_change(ChangeKind::TokenStored, &row));
            }
        }
    }
    Ok(())
}

/// A vault row `(id, user_id, token_type, client_id, session_id, …)` as a feed change.
pub(crate) fn vault_change(kind: ChangeKind, row: &sqlx::postgres::PgRow) -> Change {
    Change::new(kind, row.get::<String, _>(0), row.get(1))
        .with("token_type", row.get::<String, _>(2))
        .with("client_id", row.get::<Option<String>, _>(3))
        .with("session_id", row.get::<Option<String>, _>(4))
}

/// What the vault's deletions return for the feed.
const REVOKED: &str = "RETURNING v.id::text, v.user_id, v.token_type, v.client_id, v.session_id";

/// Rows of (id, instant) pairs.
fn pairs<'a>(name: &'static str, items: &'a [(&'a str, i64)]) -> Rows<'a> {
    Rows::new()
        .text(name, items.iter().map(|(id, _)| Some(*id)))
        .int8("at", items.iter().map(|(_, at)| Some(*at)))
}

/// Deletes the vault rows that revocations reach (issued at or before their time) and
/// records grant revocations so tokens learnt about later are not kept either.
pub async fn revoke(
    tx: &mut Tx<'_>,
    revocations: &[Revocation],
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    let mut sessions = Vec::new();
    let mut online = Vec::new();
    let mut realms = Vec::new();
    let mut users = Vec::new();
    let mut grants = Vec::new();
    for revocation in revocations {
        match revocation {
            Revocation::Session {
                session_id,
                at,
                offline: true,
            } => sessions.push((session_id.as_str(), *at)),
            Revocation::Session {
                session_id,
                at,
                offline: false,
            } => online.push((session_id.as_str(), *at)),
            Revocation::Realm { realm_id, at } => realms.push((realm_id.as_str(), *at)),
            Revocation::User { user_id, at } => users.push((user_id.as_str(), *at)),
            Revocation::OfflineGrant {
                user_id,
                client_id,
                at,
            } => grants.push((user_id.as_str(), client_id.as_str(), *at)),
        }
    }
    let every_type = "";
    let refresh_only = "AND v.token_type = 'refresh'";
    for (column, items, only) in [
        ("session_id", &sessions, every_type),
        ("session_id", &online, refresh_only),
        ("realm_id", &realms, every_type),
        ("user_id", &users, every_type),
    ] {
        if items.is_empty() {
            continue;
        }
        let sql = format!(
            "DELETE FROM auth_vault v USING {{rows}}
             WHERE v.{column} = n.{column} AND v.issued_at <= ms_ts(n.at) {only}
             {REVOKED}"
        );
        let revoked = pairs(column, items)
            .query(&sql)
            .build()
            .fetch_all(&mut **tx)
            .await?;
        changes.extend(
            revoked
                .iter()
                .map(|row| vault_change(ChangeKind::TokenRevoked, row)),
        );
    }
    if !sessions.is_empty() {
        // An offline token learnt about later is refused by this record; a refresh token
        // by the session's end.
        pairs("session_id", &sessions)
            .query(
                "INSERT INTO offline_session_ends (session_id, at)
                 SELECT n.session_id, ms_ts(n.at) FROM {rows}
                 ON CONFLICT DO NOTHING",
            )
            .build()
            .execute(&mut **tx)
            .await?;
    }
    if !grants.is_empty() {
        let rows = || {
            Rows::new()
                .text("user_id", grants.iter().map(|g| Some(g.0)))
                .text("client_id", grants.iter().map(|g| Some(g.1)))
                .int8("at", grants.iter().map(|g| Some(g.2)))
        };
        rows()
            .query(
                "INSERT INTO grant_revocations (user_id, client_id, at)
                 SELECT n.user_id, n.client_id, ms_ts(n.at) FROM {rows}
                 ON CONFLICT DO NOTHING",
            )
            .build()
            .execute(&mut **tx)
            .await?;
        let sql = format!(
            "DELETE FROM auth_vault v USING {{rows}}
             WHERE v.token_type = 'offline' AND v.user_id = n.user_id
               AND v.client_id = n.client_id AND v.issued_at <= ms_ts(n.at)
             {REVOKED}"
        );
        let revoked = rows().query(&sql).build().fetch_all(&mut **tx).await?;
        changes.extend(
            revoked
                .iter()
                .map(|row| vault_change(ChangeKind::TokenRevoked, row)),
        );
    }
    Ok(())
}

/// Copies each refreshed session's count and last refresh into its tokens' metadata —
/// for new refreshes and for new tokens of sessions that were refreshed before.
pub async fn follow_refreshes(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let mut sessions: Vec<&str> = plan
        .refreshed_sessions
        .iter()
        .map(|s| s.as_str())
        .chain(plan.tokens.iter().filter_map(|t| t.session_id.as_deref()))
        .collect();
    if sessions.is_empty() {
        return Ok(());
    }
    sessions.sort_unstable();
    sessions.dedup();
    query(
        "UPDATE auth_vault v
         SET metadata = v.metadata || jsonb_build_object(
                 'refreshCount', s.refresh_count, 'lastRefresh', ts_ms(s.last_refresh_at)),
             updated_at = now()
         FROM user_sessions s
         WHERE v.session_id = s.id AND s.id = ANY($1::text[]) AND s.refresh_count > 0",
    )
    .bind(&sessions)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

//! `user_sessions`, `session_cutoffs`, `realm_cutoffs`, and what the expiry of sessions
//! needs on the apply path.

use std::collections::HashMap;

use sqlx::Row;

use crate::core::change::{Change, ChangeKind};
use crate::core::plan::{Plan, SessionChange, SessionEnd, Versioned};
use crate::store::rows::Rows;
use crate::store::{query, Tx};

const UPSERT: &str = include_str!("../sql/upsert_sessions.sql");
const APPLY_CUTOFFS: &str = include_str!("../sql/apply_cutoffs.sql");
const FOLLOW_EXPIRY: &str = include_str!("../sql/follow_expiry.sql");
/// The branch of [`APPLY_CUTOFFS`] for a batch with realm cutoffs ($4/$5).
const NEW_REALM_CUTOFFS: &str = "UNION ALL
    SELECT t.id, t.end_ver, c.at, 'admin', c.ver
    FROM realm_cutoffs c
    JOIN UNNEST($4::text[], $5::text[]) AS n(realm_id, ver)
      ON c.realm_id = n.realm_id AND c.ver = n.ver
    JOIN user_sessions t ON t.realm_id = c.realm_id AND t.started_at <= c.at
    -- A session an event ended before the cutoff keeps that end (its version is older).
     AND (t.end_ver IS NULL OR t.ended_at >= c.at)";

pub async fn insert_cutoffs(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let cutoffs = &plan.cutoffs;
    if cutoffs.is_empty() {
        return Ok(());
    }
    let rows = Rows::new()
        .text("user_id", cutoffs.iter().map(|c| Some(c.user_id.as_str())))
        .int8("at", cutoffs.iter().map(|c| Some(c.at)))
        .text("reason", cutoffs.iter().map(|c| Some(c.reason.as_str())))
        .text("ver", cutoffs.iter().map(|c| Some(c.version.as_str())))
        .text(
            "client_id",
            cutoffs
                .iter()
                .map(|c| c.client_id.as_ref().map(|c| c.as_str())),
        );
    rows.query(
        "INSERT INTO session_cutoffs (user_id, at, reason, ver, client_id)
         SELECT n.user_id, ms_ts(n.at), n.reason, n.ver, n.client_id FROM {rows}
         ON CONFLICT DO NOTHING",
    )
    .build()
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn insert_realm_cutoffs(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    let cutoffs = &plan.realm_cutoffs;
    if cutoffs.is_empty() {
        return Ok(());
    }
    let rows = Rows::new()
        .text(
            "realm_id",
            cutoffs.iter().map(|c| Some(c.realm_id.as_str())),
        )
        .int8("at", cutoffs.iter().map(|c| Some(c.at)))
        .text("ver", cutoffs.iter().map(|c| Some(c.version.as_str())));
    rows.query(
        "INSERT INTO realm_cutoffs (realm_id, at, ver)
         SELECT n.realm_id, ms_ts(n.at), n.ver FROM {rows}
         ON CONFLICT DO NOTHING",
    )
    .build()
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Realms whose policy an admin changed are read again by the next expiry pass.
pub async fn mark_stale_policies(tx: &mut Tx<'_>, plan: &Plan) -> Result<(), sqlx::Error> {
    if plan.stale_policies.is_empty() {
        return Ok(());
    }
    let realms: Vec<&str> = plan.stale_policies.iter().map(|r| r.as_str()).collect();
    query(
        "UPDATE realm_session_policies SET stale = true
         WHERE realm_id = ANY($1::text[]) AND source = 'admin_api' AND NOT stale",
    )
    .bind(&realms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Lets the inferred ends of the batch's sessions follow their expiry, which the upsert
/// moved with their activity: later activity shows Keycloak still had the session.
pub async fn follow_expiry(
    tx: &mut Tx<'_>,
    inferred: &[String],
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    if inferred.is_empty() {
        return Ok(());
    }
    let rows = query(FOLLOW_EXPIRY)
        .bind(inferred)
        .fetch_all(&mut **tx)
        .await?;
    ended_sessions(rows, changes);
    Ok(())
}

/// `(id, user_id, end_reason)` rows of sessions a statement wrote, as feed changes: those
/// with a reason are the ones it ended.
pub(crate) fn ended_sessions(rows: Vec<sqlx::postgres::PgRow>, changes: &mut Vec<Change>) {
    for row in rows {
        let Some(reason) = row.get::<Option<String>, _>(2) else {
            continue;
        };
        changes.push(
            Change::new(
                ChangeKind::SessionEnded,
                row.get::<String, _>(0),
                row.get(1),
            )
            .with("reason", reason),
        );
    }
}

/// A first-writer field as (value, version).
fn first<T: AsRef<str>>(v: &Option<Versioned<T>>) -> Option<(&str, &str)> {
    v.as_ref().map(|v| (v.value.as_ref(), v.version.as_str()))
}

fn end(session: &SessionChange) -> Option<&SessionEnd> {
    session.end.as_ref()
}

/// Writes the batch's sessions; returns those whose end is inferred (for
/// [`follow_expiry`]).
pub async fn upsert(
    tx: &mut Tx<'_>,
    plan: &Plan,
    changes: &mut Vec<Change>,
) -> Result<Vec<String>, sqlx::Error> {
    let sessions = &plan.sessions;
    let mut inferred = Vec::new();
    if sessions.is_empty() {
        return Ok(inferred);
    }
    let rows = Rows::new()
        .text("id", sessions.iter().map(|s| Some(s.id.as_str())))
        .text(
            "realm_id",
            sessions.iter().map(|s| Some(s.realm_id.as_str())),
        )
        .text("user_id", sessions.iter().map(|s| s.user_id.as_deref()))
        .text(
            "client_id",
            sessions.iter().map(|s| first(&s.client_id).map(|v| v.0)),
        )
        .text(
            "client_ver",
            sessions.iter().map(|s| first(&s.client_id).map(|v| v.1)),
        )
        .text(
            "ip_address",
            sessions.iter().map(|s| first(&s.ip_address).map(|v| v.0)),
        )
        .text(
            "ip_ver",
            sessions.iter().map(|s| first(&s.ip_address).map(|v| v.1)),
        )
        .int8("started_at", sessions.iter().map(|s| Some(s.started_at)))
        .int8(
            "last_refresh_at",
            sessions.iter().map(|s| s.last_refresh_at),
        )
        .int8(
            "refresh_count",
            sessions.iter().map(|s| Some(s.refresh_count)),
        )
        .int8(
            "last_activity_at",
            sessions.iter().map(|s| s.last_activity_at),
        )
        .bool("remember_me", sessions.iter().map(|s| Some(s.remember_me)))
        .bool(
            "offline_only",
            sessions.iter().map(|s| Some(s.offline_only)),
        )
        .int8("ended_at", sessions.iter().map(|s| end(s).map(|e| e.at)))
        .text(
            "end_reason",
            sessions.iter().map(|s| end(s).map(|e| e.reason.as_str())),
        )
        .text(
            "end_ver",
            sessions.iter().map(|s| end(s).map(|e| e.version.as_str())),
        );
    let written = rows.query(UPSERT).build().fetch_all(&mut **tx).await?;
    let planned: HashMap<&str, &SessionChange> =
        sessions.iter().map(|s| (s.id.as_str(), s)).collect();
    for row in written {
        let id: String = row.get(0);
        let created: bool = row.get(2);
        let end_ver: Option<String> = row.get(3);
        if row.get::<bool, _>(5) {
            inferred.push(id.clone());
        }
        let Some(session) = planned.get(id.as_str()) else {
            continue;
        };
        let kind = match end(session) {
            // This change's ending event is the one the row keeps.
            Some(e) if end_ver.as_deref() == Some(e.version.as_str()) => ChangeKind::SessionEnded,
            _ if created && end_ver.is_none() => ChangeKind::SessionStarted,
            _ => continue,
        };
        let reason: Option<String> = row.get(4);
        let change = Change::new(kind, id, row.get(1));
        changes.push(match kind {
            ChangeKind::SessionEnded => change.with("reason", reason),
            _ => change.with("realm_id", session.realm_id.as_str()),
        });
    }
    Ok(inferred)
}

/// Ends the sessions that new cutoffs reach, and the batch's sessions that stored
/// cutoffs reach.
pub async fn apply_cutoffs(
    tx: &mut Tx<'_>,
    plan: &Plan,
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    if plan.cutoffs.is_empty() && plan.realm_cutoffs.is_empty() && plan.sessions.is_empty() {
        return Ok(());
    }
    let users: Vec<&str> = plan.cutoffs.iter().map(|c| c.user_id.as_str()).collect();
    let versions: Vec<&str> = plan.cutoffs.iter().map(|c| c.version.as_str()).collect();
    let sessions: Vec<&str> = plan.sessions.iter().map(|s| s.id.as_str()).collect();
    let realms: Vec<&str> = plan
        .realm_cutoffs
        .iter()
        .map(|c| c.realm_id.as_str())
        .collect();
    let realm_versions: Vec<&str> = plan
        .realm_cutoffs
        .iter()
        .map(|c| c.version.as_str())
        .collect();
    let sql = APPLY_CUTOFFS.replace(
        "{new_realm_cutoffs}",
        if realms.is_empty() {
            ""
        } else {
            NEW_REALM_CUTOFFS
        },
    );
    let ended = query(&sql)
        .bind(&users)
        .bind(&versions)
        .bind(&sessions)
        .bind(&realms)
        .bind(&realm_versions)
        .fetch_all(&mut **tx)
        .await?;
    ended_sessions(ended, changes);
    Ok(())
}

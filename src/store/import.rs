//! `vault import`'s own rows: reading the application's table page by page (by user, in
//! byte order, so a page never splits a user) and the checkpoint that makes a run
//! resumable. The tokens themselves go through the apply path like token messages.

use sqlx::{PgPool, Row};

use super::{query, query_as, Store};
use crate::core::import::SlotKey;

/// Where a run stopped and what it had counted.
#[derive(Debug, Clone, Default)]
pub struct ImportCheckpoint {
    pub after: Option<(String, String)>,
    pub counts: serde_json::Value,
    pub finished: bool,
}

/// One page of the source query's rows as JSON objects (each row whole, so optional
/// columns may be absent), users whole: at most `limit` rows unless one user has more,
/// then that user's rows alone.
pub async fn source_page(
    source: &PgPool,
    source_query: &str,
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let page = format!(
        "SELECT to_jsonb(q) FROM ({source_query}) q
         WHERE $1::text IS NULL
            OR (q.realm_id::text COLLATE \"C\", q.user_id::text COLLATE \"C\")
               > ($1::text COLLATE \"C\", $2::text COLLATE \"C\")
         ORDER BY q.realm_id::text COLLATE \"C\", q.user_id::text COLLATE \"C\"
         LIMIT $3"
    );
    let (realm, user) = match after {
        Some((r, u)) => (Some(r.as_str()), Some(u.as_str())),
        None => (None, None),
    };
    let mut tx = source.begin().await?;
    sqlx::query("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await?;
    let mut rows: Vec<serde_json::Value> = sqlx::query_scalar(&page)
        .bind(realm)
        .bind(user)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
    if rows.len() as i64 == limit {
        let key = |row: &serde_json::Value| {
            (
                text(row, "realm_id").unwrap_or_default(),
                text(row, "user_id").unwrap_or_default(),
            )
        };
        let last = rows.last().map(key);
        let first = rows.first().map(key);
        if first == last {
            // One user fills the page: all of that user's rows, alone.
            if let Some((realm, user)) = last {
                rows = sqlx::query_scalar(&format!(
                    "SELECT to_jsonb(q) FROM ({source_query}) q
                     WHERE q.realm_id::text = $1 AND q.user_id::text = $2"
                ))
                .bind(realm)
                .bind(user)
                .fetch_all(&mut *tx)
                .await?;
            }
        } else {
            // The last user may go on in the next page: leave it for that page.
            rows.retain(|row| Some(key(row)) != last);
        }
    }
    tx.commit().await?;
    Ok(rows)
}

/// A column of a source row as text (numbers included), if present and not null.
pub fn text(row: &serde_json::Value, column: &str) -> Option<String> {
    match row.get(column)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Store {
    pub async fn import_checkpoint(
        &self,
        import_id: &str,
    ) -> Result<ImportCheckpoint, sqlx::Error> {
        let mut tx = self.begin().await?;
        let row = query(
            "SELECT after_realm, after_user, counts, finished_at IS NOT NULL AS finished
             FROM vault_imports WHERE import_id = $1",
        )
        .bind(import_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match row {
            None => ImportCheckpoint::default(),
            Some(row) => {
                let realm: Option<String> = row.try_get("after_realm")?;
                let user: Option<String> = row.try_get("after_user")?;
                ImportCheckpoint {
                    after: realm.zip(user),
                    counts: row.try_get("counts")?,
                    finished: row.try_get("finished")?,
                }
            }
        })
    }

    /// Records how far a run got (after a page is applied) or that it finished.
    pub async fn save_import_checkpoint(
        &self,
        import_id: &str,
        checkpoint: &ImportCheckpoint,
    ) -> Result<(), sqlx::Error> {
        let (realm, user) = match &checkpoint.after {
            Some((r, u)) => (Some(r.as_str()), Some(u.as_str())),
            None => (None, None),
        };
        let mut tx = self.begin().await?;
        query(
            "INSERT INTO vault_imports AS i (import_id, after_realm, after_user, counts, finished_at)
             VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)
             ON CONFLICT (import_id) DO UPDATE SET
                 after_realm = EXCLUDED.after_realm, after_user = EXCLUDED.after_user,
                 counts = EXCLUDED.counts, finished_at = EXCLUDED.finished_at, updated_at = now()",
        )
        .bind(import_id)
        .bind(realm)
        .bind(user)
        .bind(&checkpoint.counts)
        .bind(checkpoint.finished)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// For each vault slot `(realm, user, token type, client, session)`, the version of the
    /// message the vault holds there now, if any.
    pub async fn slot_versions(
        &self,
        slots: &[SlotKey],
    ) -> Result<Vec<Option<String>>, sqlx::Error> {
        let column = |f: fn(&SlotKey) -> Option<&str>| slots.iter().map(f).collect::<Vec<_>>();
        let mut tx = self.begin().await?;
        let rows: Vec<(i64, Option<String>)> = query_as(
            "SELECT n.i, v.issued_ver
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
                 WITH ORDINALITY AS n(realm_id, user_id, token_type, client_id, session_id, i)
             LEFT JOIN auth_vault v ON v.realm_id = n.realm_id AND v.user_id = n.user_id
                 AND v.token_type = n.token_type
                 AND (n.token_type = 'refresh'
                      OR (coalesce(v.client_id, '') = coalesce(n.client_id, '')
                          AND coalesce(v.session_id, '') = coalesce(n.session_id, '')))
             ORDER BY n.i",
        )
        .bind(column(|s| Some(s.realm_id.as_str())))
        .bind(column(|s| Some(s.user_id.as_str())))
        .bind(column(|s| Some(s.token_type.as_str())))
        .bind(column(|s| s.client_id.as_deref()))
        .bind(column(|s| s.session_id.as_deref()))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|(_, v)| v).collect())
    }
}

//! `vault import`'s own rows: reading the application's table page by page (by user, in
//! byte order, so a page never splits a user) and the checkpoint that makes a run
//! resumable. The tokens themselves go through the apply path like token messages.

use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{query, query_as, Store};
use crate::core::import::{slot_of, SlotKey};

/// Where a run stopped and what it had counted.
#[derive(Debug, Clone, Default)]
pub struct ImportCheckpoint {
    pub after: Option<(String, String)>,
    pub counts: serde_json::Value,
    pub finished: bool,
}

/// The source query's rows in (realm, user) byte order through one cursor of a read-only
/// transaction (the query runs once), handed out in pages that never split a user.
pub struct SourceReader {
    tx: Transaction<'static, Postgres>,
    /// Rows read past the end of the last page: the next user's.
    carry: Vec<serde_json::Value>,
    exhausted: bool,
}

impl SourceReader {
    /// Opens the cursor after the user `after` (the last one a previous run applied).
    pub async fn open(
        source: &PgPool,
        source_query: &str,
        after: Option<&(String, String)>,
    ) -> Result<SourceReader, sqlx::Error> {
        let mut tx = source.begin().await?;
        sqlx::query("SET TRANSACTION READ ONLY")
            .execute(&mut *tx)
            .await?;
        let (realm, user) = match after {
            Some((r, u)) => (r.as_str(), u.as_str()),
            None => ("", ""),
        };
        // DECLARE takes no parameters: the position goes in through settings of this
        // transaction, read by the cursor's query.
        sqlx::query(
            "SELECT set_config('keycloak_sync.after_realm', $1, true),
                    set_config('keycloak_sync.after_user', $2, true),
                    set_config('keycloak_sync.resume', $3, true)",
        )
        .bind(realm)
        .bind(user)
        .bind(if after.is_some() { "on" } else { "off" })
        .execute(&mut *tx)
        .await?;
        // One statement (extended protocol): the query cannot smuggle in another.
        sqlx::query(&format!(
            "DECLARE vault_import NO SCROLL CURSOR FOR
             SELECT to_jsonb(q) FROM ({source_query}) q
             WHERE current_setting('keycloak_sync.resume') = 'off'
                OR (q.realm_id::text COLLATE \"C\", q.user_id::text COLLATE \"C\")
                   > (current_setting('keycloak_sync.after_realm') COLLATE \"C\",
                      current_setting('keycloak_sync.after_user') COLLATE \"C\")
             ORDER BY q.realm_id::text COLLATE \"C\", q.user_id::text COLLATE \"C\""
        ))
        .persistent(false)
        .execute(&mut *tx)
        .await?;
        Ok(SourceReader {
            tx,
            carry: Vec::new(),
            exhausted: false,
        })
    }

    /// The next rows, at least `size` unless the source ends, every user whole; empty at
    /// the end.
    pub async fn next_page(&mut self, size: i64) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        let mut page = std::mem::take(&mut self.carry);
        while !self.exhausted && (page.len() as i64) < size {
            let fetched = self.fetch(size).await?;
            page.extend(fetched);
        }
        // Read on while the last user goes on; what follows belongs to the next page.
        let Some(last) = page.last().map(user_key) else {
            return Ok(page);
        };
        while !self.exhausted {
            let fetched = self.fetch(size).await?;
            let split = fetched
                .iter()
                .position(|row| user_key(row) != last)
                .unwrap_or(fetched.len());
            let mut fetched = fetched;
            self.carry = fetched.split_off(split);
            page.extend(fetched);
            if !self.carry.is_empty() {
                break;
            }
        }
        Ok(page)
    }

    async fn fetch(&mut self, size: i64) -> Result<Vec<serde_json::Value>, sqlx::Error> {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar(&format!("FETCH FORWARD {} FROM vault_import", size.max(1)))
                .fetch_all(&mut *self.tx)
                .await?;
        if (rows.len() as i64) < size.max(1) {
            self.exhausted = true;
        }
        Ok(rows)
    }

    pub async fn close(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

fn user_key(row: &serde_json::Value) -> (String, String) {
    let slot = slot_of(row);
    (slot.realm_id, slot.user_id)
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

//! The token API's rows: the stored token a request names, the sealed access token kept
//! beside it, the refresh lease (one refresh in flight per token across replicas, taken
//! and given back in statements of their own: no transaction stays open while Keycloak
//! answers), the refresh's result written in one commit, a refused grant's removal, and
//! the audit trail.

use std::time::Duration;

use secrecy::SecretString;
use sqlx::Row;

use super::rows::Rows;
use super::vault::{open_row, VaultError};
use super::write::{lock_key, vault_change};
use super::{query, query_scalar, Store, Tx};
use crate::core::change::{Change, ChangeKind};
use crate::vault::{KeyRing, RowIdentity, Sealed};

use super::vault::StoredToken;

/// `auth_vault.token_type` of a kept access token.
const ACCESS: &str = "access";

/// The access token kept for a source token.
pub struct HeldAccess {
    pub token: SecretString,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    pub scope: Option<String>,
}

/// A stored refresh or offline token a request names, and what is kept beside it.
pub struct Held {
    pub source: StoredToken,
    /// `issued_ver` of the source row: a refresh writes only over what it read.
    pub source_version: String,
    pub access: Option<HeldAccess>,
}

/// What a refresh at Keycloak gave, to be written in one commit.
pub struct Refreshed {
    pub access_token: SecretString,
    pub access_expires_at_ms: i64,
    pub scope: Option<String>,
    /// The rotated refresh (or offline) token, if Keycloak sent a new one.
    pub refresh_token: Option<SecretString>,
    pub refresh_expires_at_ms: Option<i64>,
}

/// One row of `token_audit` (never a token).
pub struct AuditEntry<'a> {
    pub caller: &'a str,
    pub realm_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub action: &'a str,
    pub outcome: &'a str,
}

fn access_identity(source: &StoredToken) -> RowIdentity<'_> {
    RowIdentity {
        token_type: ACCESS,
        ..source.identity()
    }
}

impl Store {
    /// The newest live token of the user for the client (and session, if given): the
    /// offline token with `offline`, else the refresh token; and its access token.
    pub async fn held_token(
        &self,
        keys: &KeyRing,
        realm_id: &str,
        user_id: &str,
        client_id: &str,
        session_id: Option<&str>,
        offline: bool,
    ) -> Result<Option<Held>, VaultError> {
        // One statement: the token and the access token kept beside it.
        let sql = "SELECT v.id::text, v.realm_id, v.user_id, v.token_type, v.session_id,
                          v.client_id, v.key_id, v.nonce, v.ciphertext,
                          ts_ms(v.expires_at) AS expires_ms, v.metadata, v.issued_ver,
                          a.key_id AS access_key_id, a.nonce AS access_nonce,
                          a.ciphertext AS access_ciphertext,
                          ts_ms(a.issued_at) AS access_issued_ms,
                          ts_ms(a.expires_at) AS access_expires_ms,
                          a.metadata->>'scope' AS access_scope
                   FROM auth_vault v
                   LEFT JOIN auth_vault a ON a.source_id = v.id AND a.token_type = 'access'
                   WHERE v.realm_id = $1 AND v.user_id = $2 AND v.client_id = $3
                     AND ($4::text IS NULL OR v.session_id = $4) AND v.token_type = $5
                     AND (v.expires_at IS NULL OR v.expires_at > now())
                   ORDER BY v.issued_at DESC LIMIT 1";
        let mut tx = self.begin().await?;
        let row = query(sql)
            .bind(realm_id)
            .bind(user_id)
            .bind(client_id)
            .bind(session_id)
            .bind(if offline { "offline" } else { "refresh" })
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let source = open_row(keys, &row)?;
        let source_version: String = row.try_get("issued_ver")?;
        let access_key: Option<String> = row.try_get("access_key_id")?;
        let access = match access_key {
            None => None,
            Some(key_id) => {
                let sealed = Sealed {
                    key_id,
                    nonce: row.try_get("access_nonce")?,
                    ciphertext: row.try_get("access_ciphertext")?,
                };
                // Sealed under a key no longer in the ring: refreshed again instead.
                match keys.open(&sealed, &access_identity(&source)) {
                    Ok(token) => Some(HeldAccess {
                        token,
                        issued_at_ms: row.try_get("access_issued_ms")?,
                        expires_at_ms: row
                            .try_get::<Option<i64>, _>("access_expires_ms")?
                            .unwrap_or(0),
                        scope: row.try_get("access_scope")?,
                    }),
                    Err(_) => None,
                }
            }
        };
        Ok(Some(Held {
            source,
            source_version,
            access,
        }))
    }

    /// Takes the refresh lease of a token for `holder` unless another holder's has not
    /// run out; true if taken.
    pub async fn take_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let taken: Option<String> = query_scalar(
            "INSERT INTO token_refresh_leases (token_id, holder, until)
             VALUES ($1::uuid, $2, now() + $3 * interval '1 millisecond')
             ON CONFLICT (token_id) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
               WHERE token_refresh_leases.until < now()
                  OR token_refresh_leases.holder = EXCLUDED.holder
             RETURNING holder",
        )
        .bind(token_id)
        .bind(holder)
        .bind(lease.as_millis() as i64)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(taken.is_some())
    }

    /// Gives the lease back (a refresh that failed before writing anything).
    pub async fn give_back_refresh_lease(
        &self,
        token_id: &str,
        holder: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        end_lease(&mut tx, token_id, holder).await?;
        tx.commit().await
    }

    /// Writes a refresh's result in one commit and gives the lease back: the rotated
    /// token replaces the source row's (only if the row still holds the version read:
    /// a newer token stored meanwhile wins), the access token is kept beside it. A
    /// rotated token is a new message version, newer than any message issued before the
    /// refresh, so an older token message arriving later never replaces it.
    pub async fn record_refresh(
        &self,
        keys: &KeyRing,
        held: &Held,
        refreshed: &Refreshed,
        holder: &str,
    ) -> Result<bool, VaultError> {
        let source = &held.source;
        let seal = |token: &SecretString, identity: &RowIdentity| {
            keys.seal(token, identity)
                .map_err(|error| VaultError::Open {
                    id: source.id.clone(),
                    source: error,
                })
        };
        let access = seal(&refreshed.access_token, &access_identity(source))?;
        let rotated = match &refreshed.refresh_token {
            Some(token) => Some(seal(token, &source.identity())?),
            None => None,
        };
        let mut tx = self.begin().await?;
        lock_user(&mut tx, &source.user_id).await?;
        let mut current = true;
        if let Some(sealed) = &rotated {
            let written = query(
                "UPDATE auth_vault
                 SET key_id = $3, nonce = $4, ciphertext = $5,
                     expires_at = COALESCE(ms_ts($6), expires_at),
                     issued_at = now(), issued_ver = $7, updated_at = now(),
                     metadata = metadata || jsonb_build_object('updatedAt', now(),
                                                               'rotatedBy', 'token-api')
                 WHERE id = $1::uuid AND issued_ver = $2",
            )
            .bind(&source.id)
            .bind(&held.source_version)
            .bind(&sealed.key_id)
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(refreshed.refresh_expires_at_ms)
            .bind(api_version())
            .execute(&mut *tx)
            .await?;
            current = written.rows_affected() == 1;
        }
        if current {
            query(
                "INSERT INTO auth_vault AS v (id, realm_id, user_id, token_type, session_id,
                     client_id, key_id, nonce, ciphertext, expires_at, metadata, issued_at,
                     issued_ver, source_id)
                 SELECT gen_random_uuid(), s.realm_id, s.user_id, 'access', s.session_id,
                     s.client_id, $2, $3, $4, ms_ts($5),
                     jsonb_build_object('scope', $6::text), now(), $7, s.id
                 FROM auth_vault s WHERE s.id = $1::uuid
                 ON CONFLICT (source_id) WHERE token_type = 'access' DO UPDATE SET
                     key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce,
                     ciphertext = EXCLUDED.ciphertext, expires_at = EXCLUDED.expires_at,
                     metadata = EXCLUDED.metadata, issued_at = EXCLUDED.issued_at,
                     issued_ver = EXCLUDED.issued_ver, updated_at = now()",
            )
            .bind(&source.id)
            .bind(&access.key_id)
            .bind(&access.nonce)
            .bind(&access.ciphertext)
            .bind(refreshed.access_expires_at_ms)
            .bind(refreshed.scope.as_deref())
            .bind(api_version())
            .execute(&mut *tx)
            .await?;
        }
        end_lease(&mut tx, &source.id, holder).await?;
        tx.commit().await?;
        Ok(current)
    }

    /// Keycloak refused the grant (`invalid_grant`): the token leaves the vault as a
    /// revocation would, announced in the change feed (`reason: grant_revoked`).
    pub async fn remove_refused_token(
        &self,
        source: &StoredToken,
        holder: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        lock_user(&mut tx, &source.user_id).await?;
        let rows = query(
            "DELETE FROM auth_vault v WHERE v.id = $1::uuid
             RETURNING v.id::text, v.user_id, v.token_type, v.client_id, v.session_id",
        )
        .bind(&source.id)
        .fetch_all(&mut *tx)
        .await?;
        end_lease(&mut tx, &source.id, holder).await?;
        let changes: Vec<Change> = rows
            .iter()
            .map(|row| vault_change(ChangeKind::TokenRevoked, row).with("reason", "grant_revoked"))
            .collect();
        self.announce(&mut tx, changes).await?;
        tx.commit().await
    }

    /// Audit rows, in one statement and one commit.
    pub async fn audit(&self, entries: &[AuditEntry<'_>]) -> Result<(), sqlx::Error> {
        if entries.is_empty() {
            return Ok(());
        }
        let rows = Rows::new()
            .text("caller", entries.iter().map(|e| Some(e.caller)))
            .text("realm_id", entries.iter().map(|e| e.realm_id))
            .text("user_id", entries.iter().map(|e| e.user_id))
            .text("client_id", entries.iter().map(|e| e.client_id))
            .text("action", entries.iter().map(|e| Some(e.action)))
            .text("outcome", entries.iter().map(|e| Some(e.outcome)))
            .query(
                "INSERT INTO token_audit (caller, realm_id, user_id, client_id, action, outcome)
                 SELECT n.caller, n.realm_id, n.user_id, n.client_id, n.action, n.outcome
                 FROM {rows}",
            );
        let mut tx = self.begin().await?;
        rows.build().execute(&mut *tx).await?;
        tx.commit().await
    }

    /// Deletes audit rows older than `older_than`; returns how many.
    pub async fn prune_token_audit(&self, older_than: Duration) -> Result<u64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let deleted = query("DELETE FROM token_audit WHERE at < now() - $1 * interval '1 second'")
            .bind(older_than.as_secs() as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }
}

/// The user's advisory lock, as the apply path takes it for the user's tokens, so a
/// cutoff or revocation and a refresh's write see each other.
async fn lock_user(tx: &mut Tx<'_>, user_id: &str) -> Result<(), sqlx::Error> {
    query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock_key(user_id))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Gives `holder`'s lease on the token back, within `tx`.
async fn end_lease(tx: &mut Tx<'_>, token_id: &str, holder: &str) -> Result<(), sqlx::Error> {
    query("DELETE FROM token_refresh_leases WHERE token_id = $1::uuid AND holder = $2")
        .bind(token_id)
        .bind(holder)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The message version of a token the API wrote: what a message issued now would carry
/// (`core::plan::Version`), so an older token message arriving later loses to it.
fn api_version() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let id = format!("token-api-{}", uuid::Uuid::new_v4().simple());
    crate::core::plan::Version::observed(now, &id)
        .as_str()
        .to_string()
}

//! The vault's rows: reading tokens back for services written in Rust, and the
//! maintenance passes (status, expiry sweep, key rotation). Writing happens on the apply
//! path (`apply_sql`), in the same transaction as the events that revoke tokens.

use std::sync::Arc;

use sqlx::Row;
use thiserror::Error;

use super::rows::Rows;
use super::write::vault_change;
use super::{query, query_as, query_scalar, Store};
use secrecy::SecretString;

use crate::core::change::ChangeKind;
use crate::core::event::TokenType;
use crate::core::ids::{ClientId, RealmId, SessionId, UserId};
use crate::vault::{KeyRing, RowIdentity, SealError, Sealed};

#[derive(Debug, Error)]
pub enum VaultError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("vault row {id}: {source}")]
    Open { id: String, source: SealError },
    #[error("vault row {id}: unknown token type {token_type:?}")]
    TokenType { id: String, token_type: String },
}

/// A token read back from the vault. The token is a secret: zeroized on drop, and
/// `Debug` prints `[REDACTED]`.
#[derive(Debug)]
pub struct StoredToken {
    pub id: String,
    pub realm_id: RealmId,
    pub user_id: UserId,
    pub token: SecretString,
    pub token_type: TokenType,
    pub client_id: Option<ClientId>,
    pub session_id: Option<SessionId>,
    /// Epoch milliseconds.
    pub expires_at: Option<i64>,
    pub metadata: serde_json::Value,
}

impl StoredToken {
    /// The row identity its ciphertext is bound to.
    pub fn identity(&self) -> RowIdentity<'_> {
        RowIdentity {
            realm_id: &self.realm_id,
            user_id: &self.user_id,
            token_type: self.token_type.as_str(),
            client_id: self.client_id.as_deref(),
            session_id: self.session_id.as_deref(),
        }
    }
}

/// Read access and maintenance for the vault table of one store.
#[derive(Clone)]
pub struct Vault {
    store: Store,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("schema", &self.store.schema())
            .field("keys", &self.keys)
            .finish()
    }
}

pub(super) const SELECT_ROWS: &str =
    "SELECT id::text, realm_id, user_id, token_type, session_id, client_id,
        key_id, nonce, ciphertext, ts_ms(expires_at) AS expires_ms,
        metadata, issued_ver
 FROM auth_vault";

impl Vault {
    pub fn new(store: &Store, keys: Arc<KeyRing>) -> Vault {
        Vault {
            store: store.clone(),
            keys,
        }
    }

    fn open_row(&self, row: &sqlx::postgres::PgRow) -> Result<StoredToken, VaultError> {
        open_row(&self.keys, row)
    }

    /// The user's refresh token, if one is kept and not expired.
    pub async fn refresh_token(
        &self,
        realm_id: &RealmId,
        user_id: &UserId,
    ) -> Result<Option<StoredToken>, VaultError> {
        let sql = format!(
            "{SELECT_ROWS} WHERE realm_id = $1 AND user_id = $2 AND token_type = 'refresh'
               AND (expires_at IS NULL OR expires_at > now())"
        );
        let mut tx = self.store.begin().await?;
        let row = query(&sql)
            .bind(realm_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        row.as_ref().map(|row| self.open_row(row)).transpose()
    }

    /// The rows of these users that hold exactly these message versions (`issued_ver`),
    /// opened: what an import verifies.
    pub async fn holding_versions(
        &self,
        users: &[&str],
        versions: &[String],
    ) -> Result<Vec<(String, StoredToken)>, VaultError> {
        let sql = format!(
            "{SELECT_ROWS} WHERE user_id = ANY($1::text[]) AND issued_ver = ANY($2::text[])"
        );
        let mut tx = self.store.begin().await?;
        let rows = query(&sql)
            .bind(users)
            .bind(versions)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| Ok((row.try_get("issued_ver")?, self.open_row(row)?)))
            .collect()
    }

    /// The user's offline tokens (all clients and sessions), not expired.
    pub async fn offline_tokens(
        &self,
        realm_id: &RealmId,
        user_id: &UserId,
    ) -> Result<Vec<StoredToken>, VaultError> {
        let sql = format!(
            "{SELECT_ROWS} WHERE realm_id = $1 AND user_id = $2 AND token_type = 'offline'
               AND (expires_at IS NULL OR expires_at > now())
             ORDER BY client_id, session_id"
        );
        let mut tx = self.store.begin().await?;
        let rows = query(&sql)
            .bind(realm_id)
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows.iter().map(|row| self.open_row(row)).collect()
    }
}

/// Opens one selected vault row (see `SELECT_ROWS`).
pub(super) fn open_row(
    keys: &KeyRing,
    row: &sqlx::postgres::PgRow,
) -> Result<StoredToken, VaultError> {
    let id: String = row.try_get("id")?;
    let realm_id: RealmId = row.try_get("realm_id")?;
    let user_id: UserId = row.try_get("user_id")?;
    let stored_type: String = row.try_get("token_type")?;
    let session_id: Option<SessionId> = row.try_get("session_id")?;
    let client_id: Option<ClientId> = row.try_get("client_id")?;
    let token_type = TokenType::from_stored(&stored_type).ok_or_else(|| VaultError::TokenType {
        id: id.clone(),
        token_type: stored_type.clone(),
    })?;
    let sealed = Sealed {
        key_id: row.try_get("key_id")?,
        nonce: row.try_get("nonce")?,
        ciphertext: row.try_get("ciphertext")?,
    };
    let identity = RowIdentity {
        realm_id: &realm_id,
        user_id: &user_id,
        token_type: token_type.as_str(),
        client_id: client_id.as_deref(),
        session_id: session_id.as_deref(),
    };
    let token = keys
        .open(&sealed, &identity)
        .map_err(|source| VaultError::Open {
            id: id.clone(),
            source,
        })?;
    Ok(StoredToken {
        id,
        realm_id,
        user_id,
        token,
        token_type,
        client_id,
        session_id,
        expires_at: row.try_get("expires_ms")?,
        metadata: row.try_get("metadata")?,
    })
}

/// Row counts by token type and key id: what `vault status` prints.
pub async fn status(store: &Store) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    let mut tx = store.begin().await?;
    let counts =
        query_as("SELECT token_type, key_id, count(*) FROM auth_vault GROUP BY 1, 2 ORDER BY 1, 2")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;
    Ok(counts)
}

/// Deletes expired tokens in batches; returns how many.
pub async fn purge_expired(store: &Store) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = store.begin().await?;
        let rows = query(
            "DELETE FROM auth_vault WHERE id IN (
                 SELECT id FROM auth_vault WHERE expires_at <= now() LIMIT 5000)
             RETURNING id::text, user_id, token_type, client_id, session_id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let deleted = rows.len() as u64;
        // The token API's access tokens are caches that expire within minutes: gone
        // without an announcement.
        let changes = rows
            .iter()
            .filter(|row| row.get::<String, _>(2) != "access")
            .map(|row| vault_change(ChangeKind::TokenRevoked, row).with("reason", "expired"))
            .collect();
        store.announce(&mut tx, changes).await?;
        tx.commit().await?;
        total += deleted;
        if deleted == 0 {
            return Ok(total);
        }
    }
}

/// What one batch of a rotation did.
#[derive(Debug, Default, Clone)]
pub struct RotatedBatch {
    /// Rows read in this batch (0: the pass is over).
    pub read: u64,
    pub rotated: u64,
    /// Rows another writer changed between read and re-encryption.
    pub raced: u64,
    pub failed: u64,
    /// The last row id read: the next batch starts after it.
    pub last_id: Option<String>,
}

/// Rows not under the active key.
pub async fn rows_to_rotate(store: &Store, keys: &KeyRing) -> Result<i64, VaultError> {
    let mut tx = store.begin().await?;
    let count = query_scalar(
        "SELECT count(*) FROM auth_vault WHERE key_id <> $1 AND token_type <> 'access'",
    )
    .bind(keys.active_id())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(count)
}

/// Re-encrypts up to `batch` rows under a retired key of the ring after row id `after`,
/// in one transaction. Each row is rewritten only if it still holds what was read (same
/// version and key), so a token written meanwhile by the daemon is never lost. Paged by
/// id, so rows that cannot be opened are passed over, not read again; a later run picks
/// up what is left.
pub async fn rotate_batch(
    store: &Store,
    keys: &KeyRing,
    batch: i64,
    after: &str,
) -> Result<RotatedBatch, VaultError> {
    let retired: Vec<&str> = keys
        .key_ids()
        .filter(|id| *id != keys.active_id())
        .collect();
    let mut tx = store.begin().await?;
    // The token API's access tokens are caches: dropped, not re-sealed (the next request
    // refreshes).
    query("DELETE FROM auth_vault WHERE token_type = 'access' AND key_id = ANY($1::text[])")
        .bind(&retired)
        .execute(&mut *tx)
        .await?;
    let sql = format!(
        "{SELECT_ROWS} WHERE key_id = ANY($1::text[]) AND id > $3::uuid AND token_type <> 'access'
         ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED"
    );
    let rows = query(&sql)
        .bind(&retired)
        .bind(batch)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
    let mut outcome = RotatedBatch {
        read: rows.len() as u64,
        last_id: match rows.last() {
            Some(row) => Some(row.try_get::<String, _>("id")?),
            None => None,
        },
        ..RotatedBatch::default()
    };
    // Per rewritten row: id, old key, version read, and the new sealing.
    let mut rewrites: Vec<(String, String, String, Sealed)> = Vec::new();
    for row in &rows {
        let token = match open_row(keys, row) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(%error, "cannot re-encrypt a vault row");
                outcome.failed += 1;
                continue;
            }
        };
        let sealed = keys
            .seal(&token.token, &token.identity())
            .map_err(|source| VaultError::Open {
                id: token.id.clone(),
                source,
            })?;
        let old_key = row.try_get::<String, _>("key_id")?;
        let version = row.try_get::<String, _>("issued_ver")?;
        rewrites.push((token.id, old_key, version, sealed));
    }
    if !rewrites.is_empty() {
        let columns = Rows::new()
            .text("id", rewrites.iter().map(|r| Some(r.0.as_str())))
            .text("old_key", rewrites.iter().map(|r| Some(r.1.as_str())))
            .text("issued_ver", rewrites.iter().map(|r| Some(r.2.as_str())))
            .text("key_id", rewrites.iter().map(|r| Some(r.3.key_id.as_str())))
            .bytea("nonce", rewrites.iter().map(|r| r.3.nonce.as_slice()))
            .bytea(
                "ciphertext",
                rewrites.iter().map(|r| r.3.ciphertext.as_slice()),
            );
        // Rewritten only where the row still holds what was read.
        let query = columns.query(
            "UPDATE auth_vault v
             SET key_id = n.key_id, nonce = n.nonce, ciphertext = n.ciphertext, updated_at = now()
             FROM {rows}
             WHERE v.id = n.id::uuid AND v.key_id = n.old_key AND v.issued_ver = n.issued_ver",
        );
        let updated = query.build().execute(&mut *tx).await?.rows_affected();
        outcome.rotated = updated;
        outcome.raced = rewrites.len() as u64 - updated;
    }
    tx.commit().await?;
    Ok(outcome)
}

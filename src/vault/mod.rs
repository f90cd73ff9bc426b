//! The token vault's cryptography: the key ring, sealing and opening, and the shape of a
//! token read back. Imports nothing of ours; the rows themselves are written and read by
//! `store` (the apply path seals before its transaction, `store::vault` reads).

mod keyring;

pub use keyring::{KeyRing, KeyRingError, RowIdentity, SealError, Sealed};

use secrecy::SecretString;

/// A token read back from the vault. The token is a secret: zeroized on drop, and
/// `Debug` prints `[REDACTED]`.
#[derive(Debug)]
pub struct StoredToken {
    pub id: String,
    pub realm_id: String,
    pub user_id: String,
    pub token: SecretString,
    pub token_type: String,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
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
            token_type: &self.token_type,
            client_id: self.client_id.as_deref(),
            session_id: self.session_id.as_deref(),
        }
    }
}

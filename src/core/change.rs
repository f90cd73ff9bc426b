//! The change feed's vocabulary: what a commit changed, as applications are told it
//! (`changes` table and `NOTIFY`; `store/sql/publish_changes.sql` writes both).

use serde::Serialize;
use serde_json::{Map, Value};

/// What happened to a row. Activity (logins counted, sessions refreshed) is not a change
/// here: applications follow what alters what a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    UserCreated,
    UserUpdated,
    UserDisabled,
    UserDeleted,
    SessionStarted,
    SessionEnded,
    TokenStored,
    TokenRevoked,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::UserCreated => "user_created",
            ChangeKind::UserUpdated => "user_updated",
            ChangeKind::UserDisabled => "user_disabled",
            ChangeKind::UserDeleted => "user_deleted",
            ChangeKind::SessionStarted => "session_started",
            ChangeKind::SessionEnded => "session_ended",
            ChangeKind::TokenStored => "token_stored",
            ChangeKind::TokenRevoked => "token_revoked",
        }
    }

    /// The public table the changed row is in.
    pub fn table(self) -> &'static str {
        match self {
            ChangeKind::UserCreated
            | ChangeKind::UserUpdated
            | ChangeKind::UserDisabled
            | ChangeKind::UserDeleted => "users",
            ChangeKind::SessionStarted | ChangeKind::SessionEnded => "user_sessions",
            ChangeKind::TokenStored | ChangeKind::TokenRevoked => "auth_vault",
        }
    }
}

/// One changed row. `detail` holds what a consumer needs to act without a read (the end
/// reason of a session, the type, client and session of a token), never a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub row_id: String,
    pub user_id: Option<String>,
    pub detail: Map<String, Value>,
}

impl Change {
    pub fn new(kind: ChangeKind, row_id: impl Into<String>, user_id: Option<String>) -> Change {
        Change {
            kind,
            row_id: row_id.into(),
            user_id,
            detail: Map::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Change {
        let value = value.into();
        if !value.is_null() {
            self.detail.insert(key.to_string(), value);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_table_and_serialise_as_their_name() {
        for kind in [
            ChangeKind::UserDisabled,
            ChangeKind::SessionEnded,
            ChangeKind::TokenRevoked,
        ] {
            assert_eq!(
                serde_json::to_value(kind).expect("json"),
                serde_json::Value::from(kind.as_str())
            );
        }
        assert_eq!(ChangeKind::SessionStarted.table(), "user_sessions");
        assert_eq!(ChangeKind::TokenStored.table(), "auth_vault");
        let change = Change::new(ChangeKind::UserCreated, "u1", None)
            .with("realm_id", "r")
            .with("none", None::<String>);
        assert_eq!(change.detail.len(), 1, "null details are left out");
    }
}

//! `vault import`'s rules, pure: a source row read into a token, the newest per vault slot
//! chosen (the rest superseded), and each kept token as the token message the apply path
//! takes — so imported tokens obey every rule live ones do.

use std::collections::HashMap;
use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::core::event::{Action, Event, Kind, Shape, TokenMessage, TokenType};
use crate::core::ids::{ClientId, EventId, RealmId, SessionId, UserId};

/// Where a row goes in the vault, and how it is reported: never with its token.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub realm_id: String,
    pub user_id: String,
    pub token_type: String,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
}

impl fmt::Display for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "realm {} user {} {} token",
            self.realm_id, self.user_id, self.token_type
        )?;
        if let Some(client) = &self.client_id {
            write!(f, " client {client}")?;
        }
        if let Some(session) = &self.session_id {
            write!(f, " session {session}")?;
        }
        Ok(())
    }
}

/// One source row, its token opened.
pub struct SourceToken {
    pub slot: SlotKey,
    pub token_type: TokenType,
    pub token: SecretString,
    /// Epoch milliseconds: `issued_at`, else the row's `updated_at`.
    pub issued_at: i64,
    pub expires_at: Option<i64>,
    pub metadata: Map<String, Value>,
}

impl fmt::Debug for SourceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceToken")
            .field("slot", &self.slot)
            .field("issued_at", &self.issued_at)
            .field("token", &"[redacted]")
            .finish()
    }
}

/// Why a source row cannot be imported as it stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowProblem {
    #[error("column {0} is missing or empty")]
    Missing(&'static str),
    #[error("token_type must be refresh or offline, not {0:?}")]
    TokenType(String),
    #[error("column {0} is not a time (epoch milliseconds or an ISO 8601 timestamp)")]
    Time(&'static str),
    #[error("column metadata is not a JSON object")]
    Metadata,
}

/// The slot a source row names, as far as it can be read (for reporting a row that fails).
pub fn slot_of(row: &Value) -> SlotKey {
    SlotKey {
        realm_id: text(row, "realm_id").unwrap_or_default(),
        user_id: text(row, "user_id").unwrap_or_default(),
        token_type: text(row, "token_type").unwrap_or_default(),
        client_id: text(row, "client_id"),
        session_id: text(row, "session_id"),
    }
}

/// Reads a source row; `open` turns the stored token into the token (identity for
/// plaintext, the legacy format's decryption otherwise).
pub fn read_row<E>(
    row: &Value,
    open: impl FnOnce(&str) -> Result<SecretString, E>,
) -> Result<Result<SourceToken, E>, RowProblem> {
    let slot = slot_of(row);
    for (name, value) in [("realm_id", &slot.realm_id), ("user_id", &slot.user_id)] {
        if value.is_empty() {
            return Err(RowProblem::Missing(name));
        }
    }
    let token_type = TokenType::from_stored(&slot.token_type)
        .ok_or_else(|| RowProblem::TokenType(slot.token_type.clone()))?;
    let issued_at = match time_ms(row, "issued_at")? {
        Some(at) => at,
        None => {
            time_ms(row, "updated_at")?.ok_or(RowProblem::Missing("issued_at (or updated_at)"))?
        }
    };
    let expires_at = time_ms(row, "expires_at")?;
    let metadata = match row.get("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            _ => return Err(RowProblem::Metadata),
        },
        Some(_) => return Err(RowProblem::Metadata),
    };
    let stored = match row.get("token") {
        Some(Value::String(token)) if !token.is_empty() => token,
        _ => return Err(RowProblem::Missing("token")),
    };
    Ok(open(stored).map(|token| SourceToken {
        slot,
        token_type,
        token,
        issued_at,
        expires_at,
        metadata,
    }))
}

fn text(row: &Value, column: &str) -> Option<String> {
    match row.get(column)? {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Epoch milliseconds from a number or from `to_jsonb`'s timestamp text.
fn time_ms(row: &Value, column: &'static str) -> Result<Option<i64>, RowProblem> {
    match row.get(column) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(RowProblem::Time(column)),
        Some(Value::String(s)) => {
            // to_jsonb writes `2024-11-22T10:07:56.363+00:00`; `timestamp` columns have no
            // offset and are taken as UTC.
            let parsed = OffsetDateTime::parse(s, &Rfc3339)
                .or_else(|_| OffsetDateTime::parse(&format!("{s}Z"), &Rfc3339))
                .map_err(|_| RowProblem::Time(column))?;
            Ok(Some((parsed.unix_timestamp_nanos() / 1_000_000) as i64))
        }
        Some(_) => Err(RowProblem::Time(column)),
    }
}

/// The newest token per vault slot (refresh: per realm and user; offline: per realm, user,
/// client and session), by issue time, then by the token's digest so reruns choose alike;
/// and how many were superseded.
pub fn newest_per_slot(tokens: Vec<SourceToken>) -> (Vec<SourceToken>, u64) {
    let mut kept: HashMap<SlotKey, SourceToken> = HashMap::new();
    let mut superseded = 0;
    for token in tokens {
        let slot = match token.token_type {
            TokenType::Refresh => SlotKey {
                client_id: None,
                session_id: None,
                ..token.slot.clone()
            },
            TokenType::Offline => token.slot.clone(),
        };
        superseded += 1;
        match kept.get(&slot) {
            Some(current) if rank(current) >= rank(&token) => {}
            _ => {
                kept.insert(slot, token);
            }
        }
    }
    let kept: Vec<SourceToken> = kept.into_values().collect();
    superseded -= kept.len() as u64;
    (kept, superseded)
}

fn rank(token: &SourceToken) -> (i64, [u8; 32]) {
    (token.issued_at, digest(&token.token))
}

/// SHA-256 of a token: how an import compares what it wrote with its source.
pub fn digest(token: &SecretString) -> [u8; 32] {
    Sha256::digest(token.expose_secret().as_bytes()).into()
}

/// The token message an imported token becomes. Its id is derived from the slot, the issue
/// time and the token's digest, so importing the same row again is a duplicate.
pub fn token_event(token: &SourceToken) -> Event {
    let mut hasher = Sha256::new();
    for part in [
        token.slot.realm_id.as_str(),
        token.slot.user_id.as_str(),
        token.token_type.as_str(),
        token.slot.client_id.as_deref().unwrap_or(""),
        token.slot.session_id.as_deref().unwrap_or(""),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.update(token.issued_at.to_be_bytes());
    hasher.update(digest(&token.token));
    let id = format!("import:{}", hex::encode(&hasher.finalize()[..16]));
    Event {
        id: EventId::new(id.clone()),
        message_id: EventId::new(id),
        time: token.issued_at,
        realm_id: RealmId::new(token.slot.realm_id.as_str()),
        kind: Kind::Token,
        type_name: token.token_type.as_str().to_string(),
        shape: Shape::Envelope,
        action: Action::StoreToken(TokenMessage {
            user_id: UserId::new(token.slot.user_id.as_str()),
            session_id: token.slot.session_id.as_deref().map(SessionId::new),
            client_id: token.slot.client_id.as_deref().map(ClientId::new),
            token_type: token.token_type,
            token: token.token.clone(),
            expires_at: token.expires_at,
            metadata: token.metadata.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plain(s: &str) -> Result<SecretString, std::convert::Infallible> {
        Ok(SecretString::from(s.to_string()))
    }

    fn token(row: Value) -> SourceToken {
        read_row(&row, plain).expect("row").expect("token")
    }

    #[test]
    fn rows_read_times_as_numbers_or_timestamps_and_name_what_is_wrong() {
        let t = token(
            json!({"realm_id":"r","user_id":"u","token_type":"refresh","token":"tok",
            "issued_at":"2024-11-22T10:07:56.363+00:00","metadata":{"a":1}}),
        );
        assert_eq!(t.issued_at, 1_732_270_076_363);
        assert_eq!(t.metadata["a"], 1);
        let from_update = token(json!({"realm_id":"r","user_id":"u","token_type":"offline",
            "token":"tok","updated_at":1000,"client_id":"web","session_id":"s"}));
        assert_eq!(from_update.issued_at, 1000);
        assert_eq!(from_update.slot.client_id.as_deref(), Some("web"));
        let bad = |row: Value| read_row(&row, plain).err();
        assert_eq!(
            bad(
                json!({"realm_id":"r","user_id":"u","token_type":"access","token":"t","issued_at":1})
            ),
            Some(RowProblem::TokenType("access".into()))
        );
        assert_eq!(
            bad(json!({"realm_id":"r","user_id":"u","token_type":"refresh","token":"t"})),
            Some(RowProblem::Missing("issued_at (or updated_at)"))
        );
        assert_eq!(
            bad(
                json!({"realm_id":"r","user_id":"u","token_type":"refresh","token":"t","issued_at":"soon"})
            ),
            Some(RowProblem::Time("issued_at"))
        );
        assert!(!format!("{t:?}").contains("tok\""), "{t:?}");
    }

    #[test]
    fn the_newest_token_per_slot_is_kept_and_the_rest_counted() {
        let row = |user: &str, kind: &str, client: &str, at: i64, tok: &str| {
            token(
                json!({"realm_id":"r","user_id":user,"token_type":kind,"token":tok,
                "issued_at":at,"client_id":client,"session_id":"s"}),
            )
        };
        let (kept, superseded) = newest_per_slot(vec![
            row("u1", "refresh", "a", 1, "old"),
            row("u1", "refresh", "b", 3, "newest"),
            row("u1", "refresh", "c", 2, "middle"),
            row("u1", "offline", "a", 1, "off-a"),
            row("u1", "offline", "b", 1, "off-b"),
            row("u2", "refresh", "a", 1, "other-user"),
        ]);
        assert_eq!(superseded, 2);
        let mut tokens: Vec<&str> = kept.iter().map(|t| t.token.expose_secret()).collect();
        tokens.sort_unstable();
        assert_eq!(tokens, ["newest", "off-a", "off-b", "other-user"]);
    }

    #[test]
    fn the_same_row_makes_the_same_message_and_another_token_another() {
        let row = json!({"realm_id":"r","user_id":"u","token_type":"refresh","token":"tok","issued_at":5});
        let a = token_event(&token(row.clone()));
        let b = token_event(&token(row));
        assert_eq!(a.id, b.id);
        assert_eq!(a.time, 5);
        let other = token_event(&token(
            json!({"realm_id":"r","user_id":"u","token_type":"refresh","token":"tok2","issued_at":5}),
        ));
        assert_ne!(a.id, other.id);
        assert!(!a.id.as_str().contains("tok"));
    }
}

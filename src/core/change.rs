//! The change feed's vocabulary: what a commit changed, as applications are told it
//! (`changes` table and `NOTIFY`), and how a commit's changes are split into notifications
//! that fit Postgres's payload limit.

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
    GroupMemberAdded,
    GroupMemberRemoved,
    RoleGranted,
    RoleRevoked,
    OrganizationMemberAdded,
    OrganizationMemberRemoved,
    GroupDeleted,
    RoleDeleted,
    OrganizationDeleted,
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
            ChangeKind::GroupMemberAdded => "group_member_added",
            ChangeKind::GroupMemberRemoved => "group_member_removed",
            ChangeKind::RoleGranted => "role_granted",
            ChangeKind::RoleRevoked => "role_revoked",
            ChangeKind::OrganizationMemberAdded => "organization_member_added",
            ChangeKind::OrganizationMemberRemoved => "organization_member_removed",
            ChangeKind::GroupDeleted => "group_deleted",
            ChangeKind::RoleDeleted => "role_deleted",
            ChangeKind::OrganizationDeleted => "organization_deleted",
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
            ChangeKind::GroupMemberAdded | ChangeKind::GroupMemberRemoved => "user_groups",
            ChangeKind::RoleGranted | ChangeKind::RoleRevoked => "user_roles",
            ChangeKind::OrganizationMemberAdded | ChangeKind::OrganizationMemberRemoved => {
                "organization_members"
            }
            ChangeKind::GroupDeleted => "groups",
            ChangeKind::RoleDeleted => "roles",
            ChangeKind::OrganizationDeleted => "organizations",
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

/// Postgres refuses a `NOTIFY` payload of 8000 bytes or more; this leaves room.
pub const MAX_PAYLOAD: usize = 7_900;

/// The notifications for one commit's changes, `seqs[i]` being the seq of `changes[i]`
/// (ascending): each a compact JSON object
/// `{"from":F,"to":T,"changes":[{"seq":…,"table":…,"row_id":…,"user_id":…,"kind":…,"detail":{…}}]}`
/// under `limit` bytes, the ranges consecutive. A change too large to fit alone is sent
/// as its range with an empty list: the reader finds it in `changes`.
pub fn notification_payloads(changes: &[Change], seqs: &[i64], limit: usize) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut entries: Vec<String> = Vec::new();
    let mut size = 0;
    let mut from: Option<i64> = None;
    let mut to = 0;
    let envelope = |from: i64, to: i64, entries: &[String]| {
        format!(
            r#"{{"from":{from},"to":{to},"changes":[{}]}}"#,
            entries.join(",")
        )
    };
    // `{"from":…,"to":…,"changes":[]}` with two 19-digit numbers.
    const FRAME: usize = 80;
    for (change, &seq) in changes.iter().zip(seqs) {
        let entry = serde_json::json!({
            "seq": seq,
            "table": change.kind.table(),
            "row_id": change.row_id,
            "user_id": change.user_id,
            "kind": change.kind.as_str(),
            "detail": change.detail,
        })
        .to_string();
        let fits = FRAME + size + entries.len() + entry.len() < limit;
        if !fits && from.is_some() {
            payloads.push(envelope(from.unwrap_or(seq), to, &entries));
            entries.clear();
            size = 0;
            from = None;
        }
        from.get_or_insert(seq);
        to = seq;
        if FRAME + entry.len() < limit {
            size += entry.len();
            entries.push(entry);
        }
    }
    if let Some(from) = from {
        payloads.push(envelope(from, to, &entries));
    }
    payloads
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(i: usize) -> Change {
        Change::new(
            ChangeKind::UserUpdated,
            format!("user-{i}"),
            Some(format!("user-{i}")),
        )
    }

    #[test]
    fn one_small_commit_is_one_notification() {
        let changes = vec![
            user(1),
            Change::new(ChangeKind::SessionEnded, "s1", Some("user-1".into()))
                .with("reason", "logout"),
        ];
        let payloads = notification_payloads(&changes, &[7, 8], MAX_PAYLOAD);
        assert_eq!(payloads.len(), 1);
        let parsed: Value = serde_json::from_str(&payloads[0]).expect("json");
        assert_eq!(parsed["from"], 7);
        assert_eq!(parsed["to"], 8);
        assert_eq!(parsed["changes"][1]["kind"], "session_ended");
        assert_eq!(parsed["changes"][1]["table"], "user_sessions");
        assert_eq!(parsed["changes"][1]["detail"]["reason"], "logout");
    }

    #[test]
    fn thousands_of_changes_split_into_few_notifications_under_the_limit_with_consecutive_ranges() {
        let changes: Vec<Change> = (0..5_000).map(user).collect();
        let seqs: Vec<i64> = (1_000..6_000).collect();
        let payloads = notification_payloads(&changes, &seqs, MAX_PAYLOAD);
        assert!(
            payloads.len() > 1 && payloads.len() < 200,
            "{}",
            payloads.len()
        );
        let mut next = 1_000;
        let mut listed = 0;
        for payload in &payloads {
            assert!(payload.len() < 8_000, "{}", payload.len());
            let parsed: Value = serde_json::from_str(payload).expect("json");
            assert_eq!(parsed["from"], next);
            listed += parsed["changes"].as_array().expect("list").len();
            next = parsed["to"].as_i64().expect("to") + 1;
        }
        assert_eq!(next, 6_000);
        assert_eq!(listed, 5_000, "every change listed once");
    }

    #[test]
    fn a_change_too_large_to_list_keeps_its_range() {
        let huge = user(1).with("note", "x".repeat(10_000));
        let payloads = notification_payloads(&[user(0), huge, user(2)], &[1, 2, 3], MAX_PAYLOAD);
        let ranges: Vec<(i64, i64, usize)> = payloads
            .iter()
            .map(|p| {
                let v: Value = serde_json::from_str(p).expect("json");
                (
                    v["from"].as_i64().expect("from"),
                    v["to"].as_i64().expect("to"),
                    v["changes"].as_array().expect("list").len(),
                )
            })
            .collect();
        assert_eq!(ranges.first().map(|r| r.0), Some(1));
        assert_eq!(ranges.last().map(|r| r.1), Some(3));
        assert_eq!(ranges.iter().map(|r| r.2).sum::<usize>(), 2);
        assert!(payloads.iter().all(|p| p.len() < 8_000));
    }

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

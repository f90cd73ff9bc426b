//! `users`: one upsert per batch.

use std::sync::LazyLock;

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{last_writer_wins, split};
use crate::core::change::{Change, ChangeKind};
use crate::core::plan::{Plan, UserChange};
use crate::store::rows::Rows;
use crate::store::Tx;

/// Profile fields merged last-writer-wins, each with a `<field>_ver` column. `attributes`
/// is merged per key in `upsert_users.sql`.
const LAST_WRITER_WINS: [&str; 6] = [
    "username",
    "email",
    "first_name",
    "last_name",
    "email_verified",
    "enabled",
];

/// A row's attributes after the upsert: the whole map last writer wins, overlaid with the
/// single changes newer than it. Most rows have none: then the plain last writer wins,
/// without the merge.
const NEW_ATTRIBUTES: &str = "CASE
        WHEN u.attribute_updates = '{}' AND EXCLUDED.attribute_updates = '{}' THEN
            CASE WHEN EXCLUDED.attributes_ver > COALESCE(u.attributes_ver, '')
                 THEN EXCLUDED.attributes ELSE u.attributes END
        ELSE overlay_attributes(
            CASE WHEN EXCLUDED.attributes_ver > COALESCE(u.attributes_ver, '')
                 THEN EXCLUDED.attributes ELSE u.attributes END,
            newer_attribute_updates(u.attribute_updates, EXCLUDED.attribute_updates,
                                    GREATEST(u.attributes_ver, EXCLUDED.attributes_ver)))
    END";

/// `users.change_flags` of an upsert: 1 when a profile value changed, 2 when it disabled
/// the user, 4 when it deleted the user.
const CHANGED_PROFILE: i16 = 1;
const DISABLED: i16 = 2;
const DELETED: i16 = 4;

static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let wins = |f: &str| format!("EXCLUDED.{f}_ver > COALESCE(u.{f}_ver, '')");
    let versions: Vec<String> = LAST_WRITER_WINS
        .iter()
        .map(|f| format!("{f}_ver"))
        .collect();
    let fields: Vec<(&str, &str)> = LAST_WRITER_WINS
        .iter()
        .zip(&versions)
        .map(|(f, ver)| (*f, ver.as_str()))
        .collect();
    let changed: Vec<String> = LAST_WRITER_WINS
        .iter()
        .map(|f| format!("({} AND EXCLUDED.{f} IS DISTINCT FROM u.{f})", wins(f)))
        .chain([format!("({NEW_ATTRIBUTES}) IS DISTINCT FROM u.attributes")])
        .collect();
    let flags = format!(
        "(CASE WHEN {} THEN {CHANGED_PROFILE} ELSE 0 END
         + CASE WHEN {} AND EXCLUDED.enabled IS FALSE AND u.enabled IS NOT FALSE THEN {DISABLED} ELSE 0 END
         + CASE WHEN EXCLUDED.deleted_at IS NOT NULL AND u.deleted_at IS NULL THEN {DELETED} ELSE 0 END)::smallint",
        changed.join("\n            OR "),
        wins("enabled"),
    );
    include_str!("../sql/upsert_users.sql")
        .replace("{last_writer_wins}", &last_writer_wins("u", &fields))
        .replace("{new_attributes}", NEW_ATTRIBUTES)
        .replace("{change_flags}", &flags)
});

/// `{"<name>": {"value": [..] | null, "ver": "<version>"}}`, as `users.attribute_updates`
/// keeps them.
fn attribute_updates(user: &UserChange) -> String {
    let updates: serde_json::Map<String, serde_json::Value> = user
        .attribute_updates
        .iter()
        .map(|(name, change)| {
            let entry = serde_json::json!({"value": change.value, "ver": change.version.as_str()});
            (name.clone(), entry)
        })
        .collect();
    serde_json::Value::Object(updates).to_string()
}

/// The feed's view of one upserted row: `(id, created, change_flags)`. Login counters
/// alone are no change.
type Written = (String, bool, i16);

fn user_changes(plan: &Plan, written: Vec<Written>, changes: &mut Vec<Change>) {
    let realms: HashMap<&str, &str> = plan
        .users
        .iter()
        .map(|u| (u.id.as_str(), u.realm_id.as_str()))
        .collect();
    // A user first learnt of by its deletion is made already deleted.
    let deleted: HashSet<&str> = plan
        .users
        .iter()
        .filter(|u| u.deleted_at.is_some())
        .map(|u| u.id.as_str())
        .collect();
    for (id, created, flags) in written {
        let kind = if flags & DELETED != 0 || (created && deleted.contains(id.as_str())) {
            ChangeKind::UserDeleted
        } else if created {
            ChangeKind::UserCreated
        } else if flags & DISABLED != 0 {
            ChangeKind::UserDisabled
        } else if flags & CHANGED_PROFILE != 0 {
            ChangeKind::UserUpdated
        } else {
            continue;
        };
        let realm = realms.get(id.as_str()).map(|r| r.to_string());
        changes.push(Change::new(kind, id.clone(), Some(id)).with("realm_id", realm));
    }
}

/// Writes the plan's users; returns those a username may newly belong to (new rows and
/// rows whose profile changed), for what waits on a username.
pub async fn upsert(
    tx: &mut Tx<'_>,
    plan: &Plan,
    changes: &mut Vec<Change>,
) -> Result<Vec<String>, sqlx::Error> {
    let users = &plan.users;
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let (username, username_ver) = split(users.iter().map(|u| u.username.clone()), |s| s);
    let (email, email_ver) = split(users.iter().map(|u| u.email.clone()), |s| s);
    let (first, first_ver) = split(users.iter().map(|u| u.first_name.clone()), |s| s);
    let (last, last_ver) = split(users.iter().map(|u| u.last_name.clone()), |s| s);
    let (verified, verified_ver) = split(users.iter().map(|u| u.email_verified.clone()), Some);
    let (enabled, enabled_ver) = split(users.iter().map(|u| u.enabled.clone()), Some);
    let (attributes, attributes_ver) = split(users.iter().map(|u| u.attributes.clone()), |m| {
        Some(serde_json::Value::Object(m).to_string())
    });
    let attribute_updates: Vec<String> = users.iter().map(attribute_updates).collect();
    let rows = Rows::new()
        .text("id", users.iter().map(|u| Some(u.id.as_str())))
        .text("realm_id", users.iter().map(|u| Some(u.realm_id.as_str())))
        .text("username", username.iter().map(Option::as_ref))
        .text("username_ver", username_ver.iter().map(Option::as_ref))
        .text("email", email.iter().map(Option::as_ref))
        .text("email_ver", email_ver.iter().map(Option::as_ref))
        .text("first_name", first.iter().map(Option::as_ref))
        .text("first_name_ver", first_ver.iter().map(Option::as_ref))
        .text("last_name", last.iter().map(Option::as_ref))
        .text("last_name_ver", last_ver.iter().map(Option::as_ref))
        .bool("email_verified", verified)
        .text(
            "email_verified_ver",
            verified_ver.iter().map(Option::as_ref),
        )
        .bool("enabled", enabled)
        .text("enabled_ver", enabled_ver.iter().map(Option::as_ref))
        .text("attributes", attributes.iter().map(Option::as_ref))
        .text("attributes_ver", attributes_ver.iter().map(Option::as_ref))
        .text("attribute_updates", attribute_updates.iter().map(Some))
        .int8("created_at", users.iter().map(|u| u.created_at))
        .int8("last_login_at", users.iter().map(|u| u.last_login_at))
        .int8("login_count", users.iter().map(|u| Some(u.login_count)))
        .int8(
            "last_login_error_at",
            users.iter().map(|u| u.last_login_error_at),
        )
        .int8(
            "login_error_count",
            users.iter().map(|u| Some(u.login_error_count)),
        )
        .int8("deleted_at", users.iter().map(|u| u.deleted_at))
        .text(
            "read_ver",
            users
                .iter()
                .map(|u| u.read_ver.as_ref().map(|v| v.as_str())),
        );
    let written: Vec<Written> = rows
        .query(&UPSERT)
        .build()
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    let named: Vec<String> = written
        .iter()
        .filter(|(_, created, flags)| *created || flags & CHANGED_PROFILE != 0)
        .map(|(id, _, _)| id.clone())
        .collect();
    user_changes(plan, written, changes);
    Ok(named)
}

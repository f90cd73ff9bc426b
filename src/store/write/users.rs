//! `users`: one upsert per batch.

use std::sync::LazyLock;

use std::collections::HashMap;

use sqlx::Row;

use crate::core::change::{Change, ChangeKind};
use crate::core::plan::{Plan, UserChange, Versioned};
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

static UPSERT: LazyLock<String> = LazyLock::new(|| {
    let assignments: Vec<String> = LAST_WRITER_WINS
        .iter()
        .map(|f| {
            format!(
                "{f} = CASE WHEN EXCLUDED.{f}_ver > COALESCE(u.{f}_ver, '') THEN EXCLUDED.{f} ELSE u.{f} END,\n    \
                 {f}_ver = GREATEST(u.{f}_ver, EXCLUDED.{f}_ver)"
            )
        })
        .collect();
    include_str!("../sql/upsert_users.sql")
        .replace("{last_writer_wins}", &assignments.join(",\n    "))
});

/// The value and version columns of a last-writer-wins field.
fn split<T, U>(
    items: impl Iterator<Item = Option<Versioned<T>>>,
    convert: impl Fn(T) -> Option<U>,
) -> (Vec<Option<U>>, Vec<Option<String>>) {
    items
        .map(|v| match v {
            Some(v) => (convert(v.value), Some(v.version.as_str().to_string())),
            None => (None, None),
        })
        .unzip()
}

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

/// The feed's view of one upserted row: `(id, created, disabled, deleted, changed)`, each
/// flag about this statement (disabled or deleted by it, profile values different after
/// it). Login counters alone are no change.
type Written = (String, bool, bool, bool, bool);

fn user_changes(plan: &Plan, written: Vec<Written>, changes: &mut Vec<Change>) {
    let realms: HashMap<&str, &str> = plan
        .users
        .iter()
        .map(|u| (u.id.as_str(), u.realm_id.as_str()))
        .collect();
    for (id, created, disabled, deleted, changed) in written {
        let kind = if deleted {
            ChangeKind::UserDeleted
        } else if created {
            ChangeKind::UserCreated
        } else if disabled {
            ChangeKind::UserDisabled
        } else if changed {
            ChangeKind::UserUpdated
        } else {
            continue;
        };
        let realm = realms.get(id.as_str()).map(|r| r.to_string());
        changes.push(Change::new(kind, id.clone(), Some(id)).with("realm_id", realm));
    }
}

pub async fn upsert(
    tx: &mut Tx<'_>,
    plan: &Plan,
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    let users = &plan.users;
    if users.is_empty() {
        return Ok(());
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
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect();
    user_changes(plan, written, changes);
    Ok(())
}

//! `groups`, `roles`, `organizations` and who belongs to or holds them: one statement per
//! table, merging with the planner's rules (see `sql/directory/`).

use std::sync::LazyLock;

use sqlx::Row;

use super::{last_writer_wins, split};
use crate::core::change::{Change, ChangeKind};
use crate::core::event::MemberRef;
use crate::core::plan::{MembershipChange, Plan};
use crate::store::rows::Rows;
use crate::store::{query, Tx};

static UPSERT_GROUPS: LazyLock<String> = LazyLock::new(|| {
    include_str!("../sql/directory/upsert_groups.sql").replace(
        "{last_writer_wins}",
        &last_writer_wins(
            "g",
            &[
                ("name", "name_ver"),
                ("path", "path_ver"),
                ("parent_id", "parent_ver"),
            ],
        ),
    )
});
static UPSERT_ROLES: LazyLock<String> = LazyLock::new(|| {
    include_str!("../sql/directory/upsert_roles.sql").replace(
        "{last_writer_wins}",
        &last_writer_wins("r", &[("name", "name_ver"), ("composite", "composite_ver")]),
    )
});
static UPSERT_ORGANIZATIONS: LazyLock<String> = LazyLock::new(|| {
    include_str!("../sql/directory/upsert_organizations.sql").replace(
        "{last_writer_wins}",
        &last_writer_wins("o", &[("name", "name_ver"), ("alias", "alias_ver")]),
    )
});

/// Writes the plan's directory part, after the users (whose deletions it follows);
/// `named`: the users a username may newly belong to (see `users::upsert`).
pub async fn write(
    tx: &mut Tx<'_>,
    plan: &Plan,
    named: &[String],
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    let directory = &plan.directory;
    let mut deleted_groups = Vec::new();
    let mut deleted_roles = Vec::new();
    let mut deleted_organizations = Vec::new();

    if !directory.groups.is_empty() {
        let groups = &directory.groups;
        let (names, name_vers) = split(groups.iter().map(|g| g.name.clone()), Some);
        let (paths, path_vers) = split(groups.iter().map(|g| g.path.clone()), Some);
        // A top-level group: a known place (a version) without a parent.
        let (parents, parent_vers) = split(groups.iter().map(|g| g.parent_id.clone()), |p| {
            p.map(|p| p.to_string())
        });
        let rows = Rows::new()
            .text("id", groups.iter().map(|g| Some(g.id.as_str())))
            .text("realm_id", groups.iter().map(|g| Some(g.realm_id.as_str())))
            .text("name", names.iter().map(Option::as_ref))
            .text("name_ver", name_vers.iter().map(Option::as_ref))
            .text("path", paths.iter().map(Option::as_ref))
            .text("path_ver", path_vers.iter().map(Option::as_ref))
            .text("parent_id", parents.iter().map(Option::as_ref))
            .text("parent_ver", parent_vers.iter().map(Option::as_ref))
            .int8("deleted_at", groups.iter().map(|g| g.deleted_at));
        let mut announced = Vec::new();
        for row in rows
            .query(&UPSERT_GROUPS)
            .build()
            .fetch_all(&mut **tx)
            .await?
        {
            let id: String = row.get(0);
            if row.get::<bool, _>(2) {
                announced.push(id.clone());
            }
            if row.get::<bool, _>(3) {
                deleted_groups.push(id);
            }
        }
        let touched: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        for row in query(include_str!("../sql/directory/cascade_group_deletions.sql"))
            .bind(&touched)
            .fetch_all(&mut **tx)
            .await?
        {
            let id: String = row.get(0);
            if row.get::<bool, _>(2) {
                announced.push(id.clone());
            }
            deleted_groups.push(id);
        }
        query(include_str!("../sql/directory/derive_group_paths.sql"))
            .bind(&touched)
            .execute(&mut **tx)
            .await?;
        let realms = |id: &str| {
            groups
                .iter()
                .find(|g| g.id.as_str() == id)
                .map(|g| g.realm_id.to_string())
        };
        for id in announced {
            let realm = realms(&id);
            changes.push(Change::new(ChangeKind::GroupDeleted, id, None).with("realm_id", realm));
        }
    }

    if !directory.roles.is_empty() {
        let roles = &directory.roles;
        let (names, name_vers) = split(roles.iter().map(|r| r.name.clone()), Some);
        let (composites, composite_vers) = split(roles.iter().map(|r| r.composite.clone()), Some);
        let rows = Rows::new()
            .text("id", roles.iter().map(|r| Some(r.id.as_str())))
            .text("realm_id", roles.iter().map(|r| Some(r.realm_id.as_str())))
            .text(
                "client_id",
                roles
                    .iter()
                    .map(|r| r.client_id.as_ref().map(|c| c.as_str())),
            )
            .text("name", names.iter().map(Option::as_ref))
            .text("name_ver", name_vers.iter().map(Option::as_ref))
            .bool("composite", composites)
            .text("composite_ver", composite_vers.iter().map(Option::as_ref))
            .int8("deleted_at", roles.iter().map(|r| r.deleted_at));
        for row in rows
            .query(&UPSERT_ROLES)
            .build()
            .fetch_all(&mut **tx)
            .await?
        {
            let id: String = row.get(0);
            if row.get::<bool, _>(2) {
                changes.push(Change::new(ChangeKind::RoleDeleted, id.clone(), None));
            }
            if row.get::<bool, _>(3) {
                deleted_roles.push(id);
            }
        }
    }
    if !directory.role_name_deletions.is_empty() {
        let deletions = &directory.role_name_deletions;
        let rows = Rows::new()
            .text(
                "realm_id",
                deletions.iter().map(|d| Some(d.realm_id.as_str())),
            )
            .text(
                "client_id",
                deletions
                    .iter()
                    .map(|d| d.client_id.as_ref().map(|c| c.as_str())),
            )
            .text("name", deletions.iter().map(|d| Some(d.name.as_str())))
            .int8("at", deletions.iter().map(|d| Some(d.at)));
        for row in rows
            .query(include_str!("../sql/directory/delete_roles_by_name.sql"))
            .build()
            .fetch_all(&mut **tx)
            .await?
        {
            let id: String = row.get(0);
            if row.get::<bool, _>(1) {
                changes.push(Change::new(ChangeKind::RoleDeleted, id.clone(), None));
            }
            deleted_roles.push(id);
        }
    }

    if !directory.organizations.is_empty() {
        let organizations = &directory.organizations;
        let (names, name_vers) = split(organizations.iter().map(|o| o.name.clone()), Some);
        let (aliases, alias_vers) = split(organizations.iter().map(|o| o.alias.clone()), Some);
        let rows = Rows::new()
            .text("id", organizations.iter().map(|o| Some(o.id.as_str())))
            .text(
                "realm_id",
                organizations.iter().map(|o| Some(o.realm_id.as_str())),
            )
            .text("name", names.iter().map(Option::as_ref))
            .text("name_ver", name_vers.iter().map(Option::as_ref))
            .text("alias", aliases.iter().map(Option::as_ref))
            .text("alias_ver", alias_vers.iter().map(Option::as_ref))
            .int8("deleted_at", organizations.iter().map(|o| o.deleted_at));
        for row in rows
            .query(&UPSERT_ORGANIZATIONS)
            .build()
            .fetch_all(&mut **tx)
            .await?
        {
            let id: String = row.get(0);
            if row.get::<bool, _>(2) {
                changes.push(Change::new(
                    ChangeKind::OrganizationDeleted,
                    id.clone(),
                    None,
                ));
            }
            if row.get::<bool, _>(3) {
                deleted_organizations.push(id);
            }
        }
    }

    if !directory.group_members.is_empty() {
        let members = &directory.group_members;
        let rows = membership_rows(members)
            .text("user_id", members.iter().map(|m| Some(m.key.0.as_str())))
            .text("group_id", members.iter().map(|m| Some(m.key.1.as_str())));
        let sql = include_str!("../sql/directory/upsert_group_members.sql");
        let kinds = [ChangeKind::GroupMemberAdded, ChangeKind::GroupMemberRemoved];
        upsert_reporting(tx, rows, sql, kinds, changes).await?;
    }

    if !directory.role_grants.is_empty() {
        let grants = &directory.role_grants;
        let memberships: Vec<&MembershipChange<_>> = grants.iter().map(|g| &g.membership).collect();
        let versions: Vec<&str> = memberships
            .iter()
            .map(|m| m.verdict.version.as_str())
            .collect();
        let rows = Rows::new()
            .text(
                "user_id",
                memberships.iter().map(|m| Some(m.key.0.as_str())),
            )
            .text(
                "role_id",
                memberships.iter().map(|m| Some(m.key.1.as_str())),
            )
            .text(
                "realm_id",
                memberships.iter().map(|m| Some(m.realm_id.as_str())),
            )
            .text(
                "client_id",
                grants
                    .iter()
                    .map(|g| g.client_id.as_ref().map(|c| c.as_str())),
            )
            .text("role_name", grants.iter().map(|g| g.role_name.as_deref()))
            .bool(
                "granted",
                memberships.iter().map(|m| Some(m.verdict.value.member)),
            )
            .int8(
                "decided_at",
                memberships.iter().map(|m| Some(m.verdict.value.at)),
            )
            .text("ver", versions.iter().map(|v| Some(*v)));
        let sql = include_str!("../sql/directory/upsert_role_grants.sql");
        let kinds = [ChangeKind::RoleGranted, ChangeKind::RoleRevoked];
        upsert_reporting(tx, rows, sql, kinds, changes).await?;
    }

    let mut organization_members: Vec<OrganizationMemberRow> = directory
        .organization_members
        .iter()
        .map(|m| OrganizationMemberRow {
            organization_id: m.key.0.to_string(),
            realm_id: m.realm_id.to_string(),
            user_id: match &m.key.1 {
                MemberRef::Id(id) => Some(id.to_string()),
                MemberRef::Username(_) => None,
            },
            username: match &m.key.1 {
                MemberRef::Username(name) => Some(name.clone()),
                MemberRef::Id(_) => None,
            },
            member: m.verdict.value.member,
            decided_at: m.verdict.value.at,
            ver: m.verdict.version.as_str().to_string(),
            since: m.since,
        })
        .collect();
    // Members added by username before their user was known: written now if it is —
    // asked only when a username may be new (most batches only log known users in).
    if !named.is_empty() {
        let named: Vec<&str> = named.iter().map(String::as_str).collect();
        organization_members.extend(resolve_pending(tx, Some(&named)).await?);
    }
    upsert_organization_members(tx, &organization_members, changes).await?;

    if !directory.effective_roles.is_empty() {
        let effective = &directory.effective_roles;
        let rows = Rows::new()
            .text(
                "user_id",
                effective.iter().map(|e| Some(e.user_id.as_str())),
            )
            .text(
                "role_id",
                effective.iter().map(|e| Some(e.role.id.as_str())),
            )
            .text(
                "realm_id",
                effective.iter().map(|e| Some(e.realm_id.as_str())),
            )
            .text(
                "client_id",
                effective
                    .iter()
                    .map(|e| e.role.client_id.as_ref().map(|c| c.as_str())),
            )
            .text(
                "role_name",
                effective.iter().map(|e| e.role.name.as_deref()),
            )
            .bool(
                "effective",
                effective.iter().map(|e| Some(e.effective.value)),
            )
            .text(
                "ver",
                effective.iter().map(|e| Some(e.effective.version.as_str())),
            );
        let sql = include_str!("../sql/directory/upsert_effective_roles.sql");
        let kinds = [ChangeKind::RoleGranted, ChangeKind::RoleRevoked];
        upsert_reporting(tx, rows, sql, kinds, changes).await?;
    }

    let deleted_users: Vec<&str> = plan
        .users
        .iter()
        .filter(|u| u.deleted_at.is_some())
        .map(|u| u.id.as_str())
        .collect();
    if deleted_users.is_empty()
        && deleted_groups.is_empty()
        && deleted_roles.is_empty()
        && deleted_organizations.is_empty()
    {
        return Ok(());
    }
    let ended = query(include_str!(
        "../sql/directory/end_what_hangs_on_deletions.sql"
    ))
    .bind(&deleted_users)
    .bind(&deleted_groups)
    .bind(&deleted_roles)
    .bind(&deleted_organizations)
    .fetch_all(&mut **tx)
    .await?;
    for row in ended.iter().filter(|row| row.get::<bool, _>(4)) {
        let kind = match row.get::<&str, _>(0) {
            "user_groups" => ChangeKind::GroupMemberRemoved,
            "user_roles" => ChangeKind::RoleRevoked,
            _ => ChangeKind::OrganizationMemberRemoved,
        };
        let (key, user, realm): (String, String, String) = (row.get(1), row.get(2), row.get(3));
        changes.push(Change::new(kind, key, Some(user)).with("realm_id", realm));
    }
    Ok(())
}

/// An `organization_members` row to merge: the member by id, or by username.
pub(crate) struct OrganizationMemberRow {
    organization_id: String,
    realm_id: String,
    user_id: Option<String>,
    username: Option<String>,
    member: bool,
    decided_at: i64,
    ver: String,
    since: Option<i64>,
}

/// Takes the waiting members by username whose user is now known (among `users`, or
/// all of them).
pub(crate) async fn resolve_pending(
    tx: &mut Tx<'_>,
    users: Option<&[&str]>,
) -> Result<Vec<OrganizationMemberRow>, sqlx::Error> {
    let rows = query(include_str!("../sql/directory/resolve_pending_members.sql"))
        .bind(users)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows
        .iter()
        .map(|row| OrganizationMemberRow {
            organization_id: row.get(0),
            realm_id: row.get(1),
            user_id: Some(row.get(2)),
            username: None,
            member: row.get(3),
            decided_at: row.get(4),
            ver: row.get(5),
            since: row.get(6),
        })
        .collect())
}

pub(crate) async fn upsert_organization_members(
    tx: &mut Tx<'_>,
    members: &[OrganizationMemberRow],
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    if members.is_empty() {
        return Ok(());
    }
    let rows = Rows::new()
        .text(
            "organization_id",
            members.iter().map(|m| Some(m.organization_id.as_str())),
        )
        .text(
            "realm_id",
            members.iter().map(|m| Some(m.realm_id.as_str())),
        )
        .text("user_id", members.iter().map(|m| m.user_id.as_deref()))
        .text("username", members.iter().map(|m| m.username.as_deref()))
        .bool("member", members.iter().map(|m| Some(m.member)))
        .int8("decided_at", members.iter().map(|m| Some(m.decided_at)))
        .text("ver", members.iter().map(|m| Some(m.ver.as_str())))
        .int8("since", members.iter().map(|m| m.since));
    let sql = include_str!("../sql/directory/upsert_organization_members.sql");
    let kinds = [
        ChangeKind::OrganizationMemberAdded,
        ChangeKind::OrganizationMemberRemoved,
    ];
    upsert_reporting(tx, rows, sql, kinds, changes).await
}

/// The verdict columns every membership-like table shares.
fn membership_rows<K>(members: &[MembershipChange<K>]) -> Rows<'_> {
    Rows::new()
        .text(
            "realm_id",
            members.iter().map(|m| Some(m.realm_id.as_str())),
        )
        .bool(
            "member",
            members.iter().map(|m| Some(m.verdict.value.member)),
        )
        .int8(
            "decided_at",
            members.iter().map(|m| Some(m.verdict.value.at)),
        )
        .text(
            "ver",
            members.iter().map(|m| Some(m.verdict.version.as_str())),
        )
        .int8("since", members.iter().map(|m| m.since))
}

/// Runs a membership upsert (`sql` over `rows`) that returns each row as (group, role
/// or organization; user; realm; held before, null for a new row; held after), and
/// announces the rows whose state changed: `added` when one became held, `removed` when
/// one no longer is. A new row that is not held announces nothing.
async fn upsert_reporting(
    tx: &mut Tx<'_>,
    rows: Rows<'_>,
    sql: &str,
    [added, removed]: [ChangeKind; 2],
    changes: &mut Vec<Change>,
) -> Result<(), sqlx::Error> {
    for row in rows.query(sql).build().fetch_all(&mut **tx).await? {
        let (before, after): (Option<bool>, bool) = (row.get(3), row.get(4));
        let kind = match (before, after) {
            (Some(true), false) => removed,
            (Some(false) | None, true) => added,
            _ => continue,
        };
        let (key, user, realm): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        changes.push(Change::new(kind, key, Some(user)).with("realm_id", realm));
    }
    Ok(())
}

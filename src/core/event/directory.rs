//! Admin events about groups, roles and organizations, and who belongs to or holds them:
//! what applications authorize with.

use crate::core::ids::{ClientUuid, GroupId, OrganizationId, RoleId, UserId};

/// A group as a `GroupRepresentation` describes it; absent fields stay unknown.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupRecord {
    pub id: GroupId,
    pub name: Option<String>,
    pub path: Option<String>,
    /// `Some(None)`: a top-level group.
    pub parent_id: Option<Option<GroupId>>,
}

/// A role as a `RoleRepresentation` (or a role mapping's entry) describes it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RoleRecord {
    pub id: RoleId,
    pub name: Option<String>,
    /// The client it belongs to; `None` for a realm role.
    pub client_id: Option<ClientUuid>,
    pub composite: Option<bool>,
}

impl GroupRecord {
    pub fn with_id(id: &GroupId) -> Self {
        GroupRecord {
            id: id.clone(),
            ..GroupRecord::default()
        }
    }
}

impl RoleRecord {
    pub fn with_id(id: &RoleId) -> Self {
        RoleRecord {
            id: id.clone(),
            ..RoleRecord::default()
        }
    }
}

impl OrganizationRecord {
    pub fn with_id(id: &OrganizationId) -> Self {
        OrganizationRecord {
            id: id.clone(),
            ..OrganizationRecord::default()
        }
    }
}

/// How an event names a role it deletes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum RoleKey {
    Id(RoleId),
    /// `roles/{name}` or `clients/{client}/roles/{name}`: by name within its container.
    Name {
        client_id: Option<ClientUuid>,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct OrganizationRecord {
    pub id: OrganizationId,
    pub name: Option<String>,
    pub alias: Option<String>,
}

/// How an organization membership event names the member: by id when removing
/// (`organizations/{o}/members/{user}`), by username when adding (Keycloak records the
/// add on `organizations/{o}/members`, the user only in its details).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum MemberRef {
    Id(UserId),
    Username(String),
}

/// Whose effective roles changed in a way the event does not spell out: to be read again
/// from the Admin API.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Affected {
    User(UserId),
    /// Every member of the group (a role mapping of the group changed, or it was deleted).
    GroupMembers(GroupId),
    /// Every holder of the role (its composites changed).
    RoleHolders(RoleKey),
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirectoryAction {
    /// GROUP CREATE/UPDATE.
    Group(GroupRecord),
    /// GROUP DELETE: Keycloak removes its subgroups and every membership with it.
    GroupDeleted(GroupId),
    /// GROUP_MEMBERSHIP CREATE/DELETE on `users/{id}/groups/{group}`.
    Membership {
        user_id: UserId,
        group: GroupRecord,
        member: bool,
    },
    /// REALM_ROLE / CLIENT_ROLE CREATE/UPDATE.
    Role(RoleRecord),
    RoleDeleted(RoleKey),
    /// REALM_ROLE_MAPPING / CLIENT_ROLE_MAPPING CREATE/DELETE on
    /// `users/{id}/role-mappings/…`: the roles listed in the representation.
    RoleMapping {
        user_id: UserId,
        roles: Vec<RoleRecord>,
        granted: bool,
    },
    Organization(OrganizationRecord),
    OrganizationDeleted(OrganizationId),
    OrganizationMembership {
        organization_id: OrganizationId,
        member_ref: MemberRef,
        member: bool,
    },
    /// Nothing to write from the event itself; the affected users' roles are read again.
    Recompute(Affected),
}

impl DirectoryAction {
    /// Users (or sets of users) whose groups and effective roles are worth reading from
    /// the Admin API after this event.
    pub fn affected(&self) -> Option<Affected> {
        match self {
            DirectoryAction::Membership { user_id, .. }
            | DirectoryAction::RoleMapping { user_id, .. } => Some(Affected::User(user_id.clone())),
            DirectoryAction::GroupDeleted(group) => Some(Affected::GroupMembers(group.clone())),
            DirectoryAction::RoleDeleted(role) => Some(Affected::RoleHolders(role.clone())),
            DirectoryAction::Recompute(affected) => Some(affected.clone()),
            _ => None,
        }
    }
}

//! Groups, roles, organizations and memberships, folded per row with the same commutative
//! rules as users and sessions: names last writer wins per field, deletions keep the
//! earliest, and each membership (or direct role grant) the verdict of its latest event
//! by version, removals included.

use std::collections::{BTreeMap, BTreeSet};

use super::version::{last_writer, max_opt, min_opt, Version, Versioned};
use crate::core::event::{
    Affected, DirectoryAction, GroupRecord, MemberRef, OrganizationRecord, RoleKey, RoleRecord,
};
use crate::core::ids::{ClientUuid, GroupId, OrganizationId, RealmId, RoleId, UserId};

#[derive(Debug, Clone, PartialEq)]
pub struct GroupChange {
    pub id: GroupId,
    pub realm_id: RealmId,
    pub name: Option<Versioned<String>>,
    pub path: Option<Versioned<String>>,
    /// `Versioned(None)`: a top-level group.
    pub parent_id: Option<Versioned<Option<GroupId>>>,
    pub deleted_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoleChange {
    pub id: RoleId,
    pub realm_id: RealmId,
    pub client_id: Option<ClientUuid>,
    pub name: Option<Versioned<String>>,
    pub composite: Option<Versioned<bool>>,
    pub deleted_at: Option<i64>,
}

/// A role deleted by name (`roles/{name}`): resolved against the roles known by then, and
/// remembered for grants learnt later.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RoleNameDeletion {
    pub realm_id: RealmId,
    pub client_id: Option<ClientUuid>,
    pub name: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrganizationChange {
    pub id: OrganizationId,
    pub realm_id: RealmId,
    pub name: Option<Versioned<String>>,
    pub alias: Option<Versioned<String>>,
    pub deleted_at: Option<i64>,
}

/// The latest event's verdict on a membership: member (or granted) or not, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub member: bool,
    pub at: i64,
}

/// The merged change to a membership-like row (`user_groups`, `user_roles`' direct
/// grant, `organization_members`).
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipChange<K> {
    pub key: K,
    pub realm_id: RealmId,
    pub verdict: Versioned<Verdict>,
    /// The latest time it was granted: once the latest event is a grant, its time.
    pub since: Option<i64>,
}

/// A direct role grant also names the role it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantChange {
    pub membership: MembershipChange<(UserId, RoleId)>,
    pub client_id: Option<ClientUuid>,
    pub role_name: Option<String>,
}

/// Whether a user holds a role at all, as the Admin API computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveChange {
    pub user_id: UserId,
    pub realm_id: RealmId,
    pub role: RoleRecord,
    pub effective: Versioned<bool>,
}

/// Users whose groups and effective roles are worth reading again, and the newest event
/// that asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recompute {
    pub realm_id: RealmId,
    pub affected: Affected,
    pub version: Version,
}

#[derive(Debug, Default, PartialEq)]
pub struct DirectoryPlan {
    pub groups: Vec<GroupChange>,
    pub roles: Vec<RoleChange>,
    pub role_name_deletions: Vec<RoleNameDeletion>,
    pub organizations: Vec<OrganizationChange>,
    pub group_members: Vec<MembershipChange<(UserId, GroupId)>>,
    pub role_grants: Vec<GrantChange>,
    pub organization_members: Vec<MembershipChange<(OrganizationId, MemberRef)>>,
    pub effective_roles: Vec<EffectiveChange>,
    pub recompute: Vec<Recompute>,
}

/// What a directory lock guards, per realm: the group tree and the memberships hanging
/// on it, roles and the grants of them, organizations and their members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DirectoryArea {
    Groups,
    Roles,
    Organizations,
}

impl DirectoryArea {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryArea::Groups => "groups",
            DirectoryArea::Roles => "roles",
            DirectoryArea::Organizations => "organizations",
        }
    }
}

impl DirectoryPlan {
    /// The users whose memberships or grants this plan writes.
    pub fn member_users(&self) -> impl Iterator<Item = &str> {
        self.group_members
            .iter()
            .map(|m| m.key.0.as_str())
            .chain(self.role_grants.iter().map(|g| g.membership.key.0.as_str()))
            .chain(self.effective_roles.iter().map(|e| e.user_id.as_str()))
            .chain(
                self.organization_members
                    .iter()
                    .filter_map(|m| match &m.key.1 {
                        MemberRef::Id(id) => Some(id.as_str()),
                        MemberRef::Username(_) => None,
                    }),
            )
    }

    /// A deletion and the rows hanging on what it deletes, written concurrently, must see
    /// each other (else a membership written beside its group's deletion would outlive
    /// it): per realm and area, writers of hanging rows share a lock that a deletion takes
    /// alone. Deletions are rare admin acts; they briefly hold off the area's writers.
    pub fn locks(&self) -> BTreeMap<(&str, DirectoryArea), super::LockMode> {
        use DirectoryArea::{Groups, Organizations, Roles};
        // (realm, area, whether the write deletes)
        let writes = self
            .groups
            .iter()
            // A group row is the tree's structure: its path derives from its ancestors
            // and moves its subgroups', so two writers of one realm's tree must see each
            // other (else a subgroup written beside its parent never gets its path): they
            // take the tree's lock alone. Structure changes are rare admin acts.
            .map(|g| (&g.realm_id, Groups, true))
            .chain(
                self.group_members
                    .iter()
                    .map(|m| (&m.realm_id, Groups, false)),
            )
            .chain(
                self.roles
                    .iter()
                    .map(|r| (&r.realm_id, Roles, r.deleted_at.is_some())),
            )
            .chain(
                self.role_name_deletions
                    .iter()
                    .map(|d| (&d.realm_id, Roles, true)),
            )
            .chain(
                self.role_grants
                    .iter()
                    .map(|g| (&g.membership.realm_id, Roles, false)),
            )
            .chain(
                self.effective_roles
                    .iter()
                    .map(|e| (&e.realm_id, Roles, false)),
            )
            .chain(
                self.organizations
                    .iter()
                    .map(|o| (&o.realm_id, Organizations, o.deleted_at.is_some())),
            )
            .chain(
                self.organization_members
                    .iter()
                    .map(|m| (&m.realm_id, Organizations, false)),
            );
        let mut locks = BTreeMap::new();
        for (realm, area, deletes) in writes {
            let mode = if deletes {
                super::LockMode::Exclusive
            } else {
                super::LockMode::Shared
            };
            let held = locks.entry((realm.as_str(), area)).or_insert(mode);
            if deletes {
                *held = mode;
            }
        }
        locks
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.roles.is_empty()
            && self.role_name_deletions.is_empty()
            && self.organizations.is_empty()
            && self.group_members.is_empty()
            && self.role_grants.is_empty()
            && self.organization_members.is_empty()
            && self.effective_roles.is_empty()
            && self.recompute.is_empty()
    }
}

#[derive(Default)]
pub(super) struct DirectoryPlanner {
    groups: BTreeMap<GroupId, GroupChange>,
    roles: BTreeMap<RoleId, RoleChange>,
    /// Every deletion of a name counts: a name deleted, taken by a new role and deleted
    /// again within one batch deletes each role at its own deletion.
    role_name_deletions: BTreeMap<(RealmId, Option<ClientUuid>, String), BTreeSet<i64>>,
    organizations: BTreeMap<OrganizationId, OrganizationChange>,
    group_members: BTreeMap<(UserId, GroupId), MembershipChange<(UserId, GroupId)>>,
    role_grants: BTreeMap<(UserId, RoleId), GrantChange>,
    organization_members:
        BTreeMap<(OrganizationId, MemberRef), MembershipChange<(OrganizationId, MemberRef)>>,
    effective_roles: BTreeMap<(UserId, RoleId), EffectiveChange>,
    recompute: BTreeMap<(RealmId, Affected), Version>,
}

impl<K> MembershipChange<K> {
    fn new(key: K, realm_id: &RealmId, member: bool, at: i64, version: &Version) -> Self {
        MembershipChange {
            key,
            realm_id: realm_id.clone(),
            verdict: Versioned {
                value: Verdict { member, at },
                version: version.clone(),
            },
            since: None,
        }
    }

    /// Folds one verdict in: the latest by version decides; `joined` verdicts (an event
    /// that added the member, whose time is the latest join — not a listing that only
    /// says it is a member now) keep the latest join time.
    fn decide(&mut self, member: bool, joined: bool, at: i64, version: &Version) {
        if *version > self.verdict.version {
            self.verdict = Versioned {
                value: Verdict { member, at },
                version: version.clone(),
            };
        }
        if member && joined {
            max_opt(&mut self.since, at);
        }
    }
}

/// Folds a verdict into `map`'s membership for `key`, made by it if new.
fn decide_in<K: Ord + Clone>(
    map: &mut BTreeMap<K, MembershipChange<K>>,
    key: K,
    realm_id: &RealmId,
    (member, joined): (bool, bool),
    at: i64,
    version: &Version,
) {
    map.entry(key.clone())
        .or_insert_with(|| MembershipChange::new(key, realm_id, member, at, version))
        .decide(member, joined, at, version);
}

impl DirectoryPlanner {
    pub(super) fn add(
        &mut self,
        realm_id: &RealmId,
        time: i64,
        version: &Version,
        action: &DirectoryAction,
    ) {
        if let Some(affected) = action.affected() {
            let newest = self
                .recompute
                .entry((realm_id.clone(), affected))
                .or_insert_with(|| version.clone());
            if version > newest {
                *newest = version.clone();
            }
        }
        match action {
            DirectoryAction::Group(record) => {
                self.group(realm_id, record, version);
            }
            DirectoryAction::GroupDeleted(id) => {
                let group = self.group(realm_id, &GroupRecord::with_id(id), version);
                min_opt(&mut group.deleted_at, time);
            }
            DirectoryAction::Membership {
                user_id,
                group,
                member,
            } => {
                self.group(realm_id, group, version);
                let key = (user_id.clone(), group.id.clone());
                let verdict = (*member, true);
                decide_in(
                    &mut self.group_members,
                    key,
                    realm_id,
                    verdict,
                    time,
                    version,
                );
            }
            DirectoryAction::Role(record) => {
                self.role(realm_id, record, version);
            }
            DirectoryAction::RoleDeleted(RoleKey::Id(id)) => {
                let role = self.role(realm_id, &RoleRecord::with_id(id), version);
                min_opt(&mut role.deleted_at, time);
            }
            DirectoryAction::RoleDeleted(RoleKey::Name { client_id, name }) => {
                self.role_name_deletions
                    .entry((realm_id.clone(), client_id.clone(), name.clone()))
                    .or_default()
                    .insert(time);
            }
            DirectoryAction::RoleMapping {
                user_id,
                roles,
                granted,
            } => {
                for record in roles {
                    self.role(realm_id, record, version);
                    let key = (user_id.clone(), record.id.clone());
                    let grant =
                        self.role_grants
                            .entry(key.clone())
                            .or_insert_with(|| GrantChange {
                                membership: MembershipChange::new(
                                    key, realm_id, *granted, time, version,
                                ),
                                client_id: None,
                                role_name: None,
                            });
                    grant.membership.decide(*granted, true, time, version);
                    if grant.client_id.is_none() {
                        grant.client_id = record.client_id.clone();
                    }
                    if grant.role_name.is_none() {
                        grant.role_name = record.name.clone();
                    }
                }
            }
            DirectoryAction::Organization(record) => {
                self.organization(realm_id, record, version);
            }
            DirectoryAction::OrganizationDeleted(id) => {
                let organization =
                    self.organization(realm_id, &OrganizationRecord::with_id(id), version);
                min_opt(&mut organization.deleted_at, time);
            }
            DirectoryAction::OrganizationMembership {
                organization_id,
                member_ref,
                member,
            } => {
                let key = (organization_id.clone(), member_ref.clone());
                let members = &mut self.organization_members;
                decide_in(members, key, realm_id, (*member, true), time, version);
            }
            DirectoryAction::Recompute(_) => {}
        }
    }

    /// What the Admin API lists for a user: memberships (without a join time: a listing
    /// says who is a member, not since when) and effective roles.
    pub(super) fn observe(
        &mut self,
        version: &Version,
        time: i64,
        realm_id: &RealmId,
        user_id: &UserId,
        groups: &[(GroupRecord, bool)],
        roles: &[(RoleRecord, bool)],
    ) {
        for (group, member) in groups {
            if *member {
                self.group(realm_id, group, version);
            }
            let key = (user_id.clone(), group.id.clone());
            decide_in(
                &mut self.group_members,
                key,
                realm_id,
                (*member, false),
                time,
                version,
            );
        }
        for (role, held) in roles {
            if *held {
                self.role(realm_id, role, version);
            }
            let change = self
                .effective_roles
                .entry((user_id.clone(), role.id.clone()))
                .or_insert_with(|| EffectiveChange {
                    user_id: user_id.clone(),
                    realm_id: realm_id.clone(),
                    role: role.clone(),
                    effective: Versioned {
                        value: *held,
                        version: version.clone(),
                    },
                });
            if *version > change.effective.version {
                change.effective = Versioned {
                    value: *held,
                    version: version.clone(),
                };
            }
        }
    }

    fn group(
        &mut self,
        realm_id: &RealmId,
        record: &GroupRecord,
        version: &Version,
    ) -> &mut GroupChange {
        let group = self
            .groups
            .entry(record.id.clone())
            .or_insert_with(|| GroupChange {
                id: record.id.clone(),
                realm_id: realm_id.clone(),
                name: None,
                path: None,
                parent_id: None,
                deleted_at: None,
            });
        if let Some(name) = &record.name {
            last_writer(&mut group.name, name.clone(), version);
        }
        if let Some(path) = &record.path {
            last_writer(&mut group.path, path.clone(), version);
        }
        if let Some(parent) = &record.parent_id {
            last_writer(&mut group.parent_id, parent.clone(), version);
        }
        group
    }

    fn role(
        &mut self,
        realm_id: &RealmId,
        record: &RoleRecord,
        version: &Version,
    ) -> &mut RoleChange {
        let role = self
            .roles
            .entry(record.id.clone())
            .or_insert_with(|| RoleChange {
                id: record.id.clone(),
                realm_id: realm_id.clone(),
                client_id: None,
                name: None,
                composite: None,
                deleted_at: None,
            });
        if role.client_id.is_none() {
            role.client_id = record.client_id.clone();
        }
        if let Some(name) = &record.name {
            last_writer(&mut role.name, name.clone(), version);
        }
        if let Some(composite) = record.composite {
            last_writer(&mut role.composite, composite, version);
        }
        role
    }

    fn organization(
        &mut self,
        realm_id: &RealmId,
        record: &OrganizationRecord,
        version: &Version,
    ) -> &mut OrganizationChange {
        let organization = self
            .organizations
            .entry(record.id.clone())
            .or_insert_with(|| OrganizationChange {
                id: record.id.clone(),
                realm_id: realm_id.clone(),
                name: None,
                alias: None,
                deleted_at: None,
            });
        if let Some(name) = &record.name {
            last_writer(&mut organization.name, name.clone(), version);
        }
        if let Some(alias) = &record.alias {
            last_writer(&mut organization.alias, alias.clone(), version);
        }
        organization
    }

    pub(super) fn finish(self) -> DirectoryPlan {
        DirectoryPlan {
            groups: self.groups.into_values().collect(),
            roles: self.roles.into_values().collect(),
            role_name_deletions: self
                .role_name_deletions
                .into_iter()
                .flat_map(|((realm_id, client_id, name), times)| {
                    times.into_iter().map(move |at| RoleNameDeletion {
                        realm_id: realm_id.clone(),
                        client_id: client_id.clone(),
                        name: name.clone(),
                        at,
                    })
                })
                .collect(),
            organizations: self.organizations.into_values().collect(),
            group_members: self.group_members.into_values().collect(),
            role_grants: self.role_grants.into_values().collect(),
            organization_members: self.organization_members.into_values().collect(),
            effective_roles: self.effective_roles.into_values().collect(),
            recompute: self
                .recompute
                .into_iter()
                .map(|((realm_id, affected), version)| Recompute {
                    realm_id,
                    affected,
                    version,
                })
                .collect(),
        }
    }
}

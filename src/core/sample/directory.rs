//! The groups, roles and organizations part of a sample history: admins adding users to
//! groups and organizations and granting roles, renaming, nesting and deleting groups,
//! deleting roles (by name) and making them again, as Keycloak's admin resources record
//! it (see `core::event::parse::directory`).

use std::collections::BTreeSet;

use rand::Rng;
use serde_json::{json, Value};

use super::History;

pub(super) struct SimGroup {
    id: String,
    name: String,
    parent: Option<usize>,
    deleted: bool,
}

pub(super) struct SimRole {
    id: String,
    name: String,
    /// The client's internal id for a client role.
    client: Option<String>,
    deleted: bool,
}

#[derive(Default)]
pub(super) struct SimDirectory {
    groups: Vec<SimGroup>,
    roles: Vec<SimRole>,
    organizations: Vec<(String, String, bool)>,
    /// (user index, group index), (user index, role index), (user index, organization).
    memberships: BTreeSet<(usize, usize)>,
    grants: BTreeSet<(usize, usize)>,
    organization_members: BTreeSet<(usize, usize)>,
}

const CLIENT_UUID: &str = "3f6c9a52-7d1e-4b8a-9c0d-5e2f1a7b8c90";

impl History {
    fn path_of(&self, group: usize) -> String {
        let directory = &self.directory;
        let mut names = vec![directory.groups[group].name.clone()];
        let mut at = directory.groups[group].parent;
        while let Some(parent) = at {
            names.push(directory.groups[parent].name.clone());
            at = directory.groups[parent].parent;
        }
        names.reverse();
        format!("/{}", names.join("/"))
    }

    fn group_rep(&self, group: usize) -> Value {
        let g = &self.directory.groups[group];
        json!({"id": g.id, "name": g.name, "path": self.path_of(group), "subGroups": [], "attributes": {}})
    }

    fn role_rep(&self, role: usize) -> Value {
        let r = &self.directory.roles[role];
        json!({"id": r.id, "name": r.name, "composite": false, "clientRole": r.client.is_some(),
               "containerId": r.client.as_deref().unwrap_or(super::REALM_ID)})
    }

    fn live_groups(&self) -> Vec<usize> {
        (0..self.directory.groups.len())
            .filter(|&g| !self.directory.groups[g].deleted)
            .collect()
    }

    fn new_group(&mut self, parent: Option<usize>) -> String {
        let id = self.uuid();
        let n = self.directory.groups.len();
        self.directory.groups.push(SimGroup {
            id: id.clone(),
            name: format!("group{n}"),
            parent,
            deleted: false,
        });
        match parent {
            None => {
                let rep = json!({"id": id, "name": format!("group{n}"), "path": self.path_of(n)});
                self.admin_event("GROUP", "CREATE", &format!("groups/{id}"), Some(rep))
            }
            // GroupResource.addChild: the parent's `children` path, the child's id in the body.
            Some(parent) => {
                let parent_id = self.directory.groups[parent].id.clone();
                let rep = json!({"id": id, "name": format!("group{n}")});
                let path = format!("groups/{parent_id}/children");
                self.admin_event("GROUP", "CREATE", &path, Some(rep))
            }
        }
    }

    fn new_role(&mut self, name: String, client: Option<String>) -> String {
        let id = self.uuid();
        let n = self.directory.roles.len();
        self.directory.roles.push(SimRole {
            id,
            name: name.clone(),
            client: client.clone(),
            deleted: false,
        });
        let path = match &client {
            None => format!("roles/{name}"),
            Some(client) => format!("clients/{client}/roles/{name}"),
        };
        let resource = if client.is_some() {
            "CLIENT_ROLE"
        } else {
            "REALM_ROLE"
        };
        let rep = self.role_rep(n);
        self.admin_event(resource, "CREATE", &path, Some(rep))
    }

    /// A realm role name no live role has: one of a few, so names come back after a
    /// deletion (under a new id), else a new one.
    fn free_role_name(&mut self) -> String {
        let name = format!("role{}", self.rng.random_range(0..5));
        let taken = |name: &str| {
            self.directory
                .roles
                .iter()
                .any(|r| !r.deleted && r.client.is_none() && r.name == name)
        };
        if taken(&name) {
            format!("role{}", self.directory.roles.len())
        } else {
            name
        }
    }

    /// One admin change to who belongs to or holds what.
    pub(super) fn directory_step(&mut self, index: usize) -> String {
        // Enough of each to work with: deleted ones are replaced.
        if self.live_groups().len() < 4 {
            let parent = self.live_groups().first().copied();
            let nested = parent.filter(|_| self.rng.random_bool(0.5));
            return self.new_group(nested);
        }
        let live_roles = self.directory.roles.iter().filter(|r| !r.deleted).count();
        if live_roles < 4 {
            let n = self.directory.roles.len();
            let client = (n % 3 == 2).then(|| CLIENT_UUID.to_string());
            return self.new_role(format!("role{n}"), client);
        }
        if self.directory.organizations.len() < 2 {
            let id = self.uuid();
            let n = self.directory.organizations.len();
            self.directory
                .organizations
                .push((id.clone(), format!("org{n}"), false));
            let rep = json!({"id": id, "name": format!("Org {n}"), "alias": format!("org{n}"), "enabled": true});
            return self.admin_event(
                "ORGANIZATION",
                "CREATE",
                &format!("organizations/{id}"),
                Some(rep),
            );
        }
        let user_id = self.users[index].id.clone();
        match self.rng.random_range(0..100) {
            0..=29 => {
                let groups = self.live_groups();
                let group = groups[self.rng.random_range(0..groups.len())];
                let member = self.directory.memberships.contains(&(index, group));
                let group_id = self.directory.groups[group].id.clone();
                let rep = self.group_rep(group);
                let path = format!("users/{user_id}/groups/{group_id}");
                if member {
                    self.directory.memberships.remove(&(index, group));
                    self.admin_event("GROUP_MEMBERSHIP", "DELETE", &path, Some(rep))
                } else {
                    self.directory.memberships.insert((index, group));
                    self.admin_event("GROUP_MEMBERSHIP", "CREATE", &path, Some(rep))
                }
            }
            30..=59 => {
                let live: Vec<usize> = (0..self.directory.roles.len())
                    .filter(|&r| !self.directory.roles[r].deleted)
                    .collect();
                let role = live[self.rng.random_range(0..live.len())];
                let granted = self.directory.grants.contains(&(index, role));
                let (resource, path) = match &self.directory.roles[role].client {
                    None => (
                        "REALM_ROLE_MAPPING",
                        format!("users/{user_id}/role-mappings/realm"),
                    ),
                    Some(client) => (
                        "CLIENT_ROLE_MAPPING",
                        format!("users/{user_id}/role-mappings/clients/{client}"),
                    ),
                };
                let rep = json!([self.role_rep(role)]);
                if granted {
                    self.directory.grants.remove(&(index, role));
                    self.admin_event(resource, "DELETE", &path, Some(rep))
                } else {
                    self.directory.grants.insert((index, role));
                    self.admin_event(resource, "CREATE", &path, Some(rep))
                }
            }
            60..=74 => {
                let live: Vec<usize> = (0..self.directory.organizations.len())
                    .filter(|&o| !self.directory.organizations[o].2)
                    .collect();
                let org = live[self.rng.random_range(0..live.len())];
                let org_id = self.directory.organizations[org].0.clone();
                if self.directory.organization_members.remove(&(index, org)) {
                    let path = format!("organizations/{org_id}/members/{user_id}");
                    self.admin_event("ORGANIZATION_MEMBERSHIP", "DELETE", &path, None)
                } else {
                    self.directory.organization_members.insert((index, org));
                    let username = self.users[index].username.clone();
                    let rep = json!({"id": org_id, "name": self.directory.organizations[org].1});
                    // OrganizationMemberResource.addMember: the user only in the details.
                    self.admin_event_with_details(
                        "ORGANIZATION_MEMBERSHIP",
                        "CREATE",
                        &format!("organizations/{org_id}/members"),
                        Some(rep),
                        json!({"username": username, "email": format!("{username}@example.com")}),
                    )
                }
            }
            75..=84 => {
                let groups = self.live_groups();
                let group = groups[self.rng.random_range(0..groups.len())];
                let group_id = self.directory.groups[group].id.clone();
                let name = format!("group{}-{}", group, self.rng.random_range(0..100));
                self.directory.groups[group].name = name.clone();
                let path = format!("groups/{group_id}");
                self.admin_event(
                    "GROUP",
                    "UPDATE",
                    &path,
                    Some(json!({"id": group_id, "name": name})),
                )
            }
            85..=89 => {
                // A group role mapping: its members' effective roles change.
                let groups = self.live_groups();
                let group = groups[self.rng.random_range(0..groups.len())];
                let group_id = self.directory.groups[group].id.clone();
                let role = self.role_rep(0);
                let path = format!("groups/{group_id}/role-mappings/realm");
                self.admin_event("REALM_ROLE_MAPPING", "CREATE", &path, Some(json!([role])))
            }
            90..=93 => {
                // A group and everything below it deleted; a new one takes its place.
                let groups = self.live_groups();
                let group = groups[self.rng.random_range(0..groups.len())];
                let mut doomed = vec![group];
                let mut i = 0;
                while i < doomed.len() {
                    let parent = doomed[i];
                    doomed.extend(
                        (0..self.directory.groups.len())
                            .filter(|&g| self.directory.groups[g].parent == Some(parent)),
                    );
                    i += 1;
                }
                for g in &doomed {
                    self.directory.groups[*g].deleted = true;
                }
                self.directory
                    .memberships
                    .retain(|(_, g)| !doomed.contains(g));
                let group_id = self.directory.groups[group].id.clone();
                self.admin_event("GROUP", "DELETE", &format!("groups/{group_id}"), None)
            }
            94..=96 => {
                // A role deleted by name (RoleContainerResource: no representation); the
                // next role made may take the name again.
                let live: Vec<usize> = (0..self.directory.roles.len())
                    .filter(|&r| !self.directory.roles[r].deleted)
                    .collect();
                if live.len() <= 4 {
                    let name = self.free_role_name();
                    return self.new_role(name, None);
                }
                let role = live[self.rng.random_range(0..live.len())];
                self.directory.roles[role].deleted = true;
                self.directory.grants.retain(|(_, r)| *r != role);
                let r = &self.directory.roles[role];
                let (resource, path) = match &r.client {
                    None => ("REALM_ROLE", format!("roles/{}", r.name)),
                    Some(client) => ("CLIENT_ROLE", format!("clients/{client}/roles/{}", r.name)),
                };
                self.admin_event(resource, "DELETE", &path, None)
            }
            _ => {
                let name = self.free_role_name();
                self.new_role(name, None)
            }
        }
    }
}

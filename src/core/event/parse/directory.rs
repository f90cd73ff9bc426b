//! Admin events about groups, roles and organizations, read as Keycloak records them:
//! the resource path is the request's path below `admin/realms/{realm}/`, the
//! representation the request body (or what the resource returned).
//!
//! Checked against Keycloak's `UserResource` (group membership), `RoleMapperResource` and
//! `ClientRoleMappingsResource` (`…/role-mappings/realm`, `…/role-mappings/clients/{id}`,
//! representation: the list of roles), `GroupsResource`/`GroupResource` (`groups/{id}`,
//! `groups/{parent}/children` with the child's id in the representation),
//! `RoleContainerResource` and `RoleByIdResource` (`roles/{name}`,
//! `clients/{id}/roles/{name}`, `roles-by-id/{id}`, `…/composites`), and the
//! organization resources (`organizations/{id}`; a member added on
//! `organizations/{id}/members` with the username in the details, removed on
//! `organizations/{id}/members/{user}`).

use serde_json::{Map, Value};

use super::super::directory::{
    Affected, DirectoryAction, GroupRecord, MemberRef, OrganizationRecord, RoleKey, RoleRecord,
};
use super::super::fields::{kind_of, Fields, MAX_TEXT_LEN};
use super::super::{Action, Ignored};
use super::{ParseError, RawAdmin};
use crate::core::ids::{ClientUuid, GroupId, OrganizationId, RoleId, UserId};

pub(super) fn action(raw: &RawAdmin, path: &[&str]) -> Result<Action, ParseError> {
    let operation = raw.operation_type.as_str();
    let added = match operation {
        "CREATE" | "UPDATE" => true,
        "DELETE" => false,
        _ => return Ok(Action::Ignore(Ignored::NoEffect)),
    };
    let rep = raw.representation.as_deref();
    let directory = match raw.resource_type.as_str() {
        "GROUP" => group(path, rep, operation),
        "GROUP_MEMBERSHIP" => match path {
            ["users", user, "groups", group] => {
                let mut record = represented_group(rep).unwrap_or_default();
                record.id = GroupId::from(*group);
                Some(DirectoryAction::Membership {
                    user_id: UserId::from(*user),
                    group: record,
                    member: added,
                })
            }
            _ => None,
        },
        "REALM_ROLE_MAPPING" | "CLIENT_ROLE_MAPPING" => return role_mapping(path, rep, added),
        "REALM_ROLE" | "CLIENT_ROLE" => role(path, rep, operation),
        "ORGANIZATION" => match path {
            ["organizations", id] if added => {
                let mut record = represented_organization(rep).unwrap_or_default();
                record.id = OrganizationId::from(*id);
                Some(DirectoryAction::Organization(record))
            }
            ["organizations", id] => Some(DirectoryAction::OrganizationDeleted(
                OrganizationId::from(*id),
            )),
            // A created organization's path may lack its id; the representation has it.
            ["organizations"] if added => represented_organization(rep)
                .filter(|record| !record.id.is_empty())
                .map(DirectoryAction::Organization),
            _ => None,
        },
        "ORGANIZATION_MEMBERSHIP" => match (path, operation) {
            (["organizations", org, "members"], "CREATE") => raw
                .details
                .get("username")
                .filter(|name| !name.is_empty())
                .map(|name| DirectoryAction::OrganizationMembership {
                    organization_id: OrganizationId::from(*org),
                    member_ref: MemberRef::Username(name.clone()),
                    member: true,
                }),
            // A CREATE below `members/` is an invitation (`invite-user`,
            // `invite-existing-user`): not a membership until it is accepted.
            (["organizations", org, "members", user], "DELETE") => {
                Some(DirectoryAction::OrganizationMembership {
                    organization_id: OrganizationId::from(*org),
                    member_ref: MemberRef::Id(UserId::from(*user)),
                    member: false,
                })
            }
            _ => None,
        },
        _ => None,
    };
    Ok(directory.map_or(Action::Ignore(Ignored::NoEffect), Action::Directory))
}

fn group(path: &[&str], rep: Option<&str>, operation: &str) -> Option<DirectoryAction> {
    if operation == "DELETE" {
        return match path {
            ["groups", id] => Some(DirectoryAction::GroupDeleted(GroupId::from(*id))),
            _ => None,
        };
    }
    let mut record = represented_group(rep).unwrap_or_default();
    match path {
        ["groups", id] => {
            record.id = GroupId::from(*id);
            // GroupsResource records a top-level group's creation on `groups/{id}`; an
            // UPDATE there may be of any group.
            if operation == "CREATE" {
                record.parent_id = Some(None);
            }
        }
        // A child created (or moved) under `parent`: its id is in the representation.
        ["groups", parent, "children"] => {
            record.parent_id = Some(Some(GroupId::from(*parent)));
        }
        // A group moved to the top level, or created there on an older version.
        ["groups"] => record.parent_id = Some(None),
        _ => return None,
    }
    (!record.id.is_empty()).then_some(DirectoryAction::Group(record))
}

fn role_mapping(path: &[&str], rep: Option<&str>, granted: bool) -> Result<Action, ParseError> {
    let directory = match path {
        ["users", user, "role-mappings", rest @ ..] => {
            let user_id = UserId::from(*user);
            let client = match rest {
                ["realm"] => None,
                ["clients", client] => Some(ClientUuid::from(*client)),
                _ => return Ok(Action::Ignore(Ignored::NoEffect)),
            };
            match rep {
                // Without the representation (realms that do not include it) the roles
                // are unknown: the user's roles are read again.
                None => DirectoryAction::Recompute(Affected::User(user_id)),
                Some(text) => DirectoryAction::RoleMapping {
                    roles: represented_roles(text, client.as_ref())?,
                    user_id,
                    granted,
                },
            }
        }
        ["groups", group, "role-mappings", ..] => {
            DirectoryAction::Recompute(Affected::GroupMembers(GroupId::from(*group)))
        }
        _ => return Ok(Action::Ignore(Ignored::NoEffect)),
    };
    Ok(Action::Directory(directory))
}

fn role(path: &[&str], rep: Option<&str>, operation: &str) -> Option<DirectoryAction> {
    let (key, rest) = match path {
        ["roles-by-id", id, rest @ ..] => (RoleKey::Id(RoleId::from(*id)), rest),
        ["roles", name, rest @ ..] => (
            RoleKey::Name {
                client_id: None,
                name: (*name).to_string(),
            },
            rest,
        ),
        ["clients", client, "roles", name, rest @ ..] => (
            RoleKey::Name {
                client_id: Some(ClientUuid::from(*client)),
                name: (*name).to_string(),
            },
            rest,
        ),
        _ => return None,
    };
    match (rest, operation) {
        // Composites added or removed: every holder's effective roles change.
        (["composites", ..], _) => Some(DirectoryAction::Recompute(Affected::RoleHolders(key))),
        ([], "DELETE") => Some(DirectoryAction::RoleDeleted(key)),
        ([], _) => {
            let mut record = rep
                .and_then(parse_object)
                .map(|object| role_record(&Fields::new(&object, "representation"), None))?;
            if let RoleKey::Id(id) = &key {
                record.id = id.clone();
            }
            match &key {
                RoleKey::Name { client_id, name } => {
                    record.client_id = client_id.clone();
                    record.name.get_or_insert_with(|| name.clone());
                }
                RoleKey::Id(_) => {}
            }
            (!record.id.is_empty()).then_some(DirectoryAction::Role(record))
        }
        _ => None,
    }
}

/// The representation as a JSON object, or `None` when it is absent or not one: where a
/// representation only adds names, an unreadable one is no reason to refuse the event.
fn parse_object(text: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

fn represented_group(rep: Option<&str>) -> Option<GroupRecord> {
    let object = parse_object(rep?)?;
    let fields = Fields::new(&object, "representation");
    Some(GroupRecord {
        id: GroupId::from(fields.id("id").ok().flatten().unwrap_or_default()),
        name: fields.text("name", MAX_TEXT_LEN).ok().flatten(),
        path: fields.text("path", MAX_TEXT_LEN).ok().flatten(),
        parent_id: fields
            .id("parentId")
            .ok()
            .flatten()
            .map(|parent| Some(GroupId::from(parent))),
    })
}

fn represented_organization(rep: Option<&str>) -> Option<OrganizationRecord> {
    let object = parse_object(rep?)?;
    let fields = Fields::new(&object, "representation");
    Some(OrganizationRecord {
        id: OrganizationId::from(fields.id("id").ok().flatten().unwrap_or_default()),
        name: fields.text("name", MAX_TEXT_LEN).ok().flatten(),
        alias: fields.text("alias", MAX_TEXT_LEN).ok().flatten(),
    })
}

/// One role of a mapping or a role representation. `client` is the client of the
/// mapping's path; a representation's own `clientRole`/`containerId` agree with it.
fn role_record(fields: &Fields, client: Option<&ClientUuid>) -> RoleRecord {
    let client_role = fields.bool("clientRole").ok().flatten().unwrap_or(false);
    let container = fields.id("containerId").ok().flatten();
    RoleRecord {
        id: RoleId::from(fields.id("id").ok().flatten().unwrap_or_default()),
        name: fields.text("name", MAX_TEXT_LEN).ok().flatten(),
        client_id: client
            .cloned()
            .or_else(|| container.filter(|_| client_role).map(ClientUuid::from)),
        composite: fields.bool("composite").ok().flatten(),
    }
}

/// The roles a mapping event lists: its effect needs their ids, so a representation
/// that is not a list of roles with ids is refused, naming the entry.
fn represented_roles(
    text: &str,
    client: Option<&ClientUuid>,
) -> Result<Vec<RoleRecord>, ParseError> {
    let value: Value = serde_json::from_str(text).map_err(|e| ParseError::Field {
        field: "representation".into(),
        expected: "a list of RoleRepresentation as a JSON string",
        got: format!("text that is not JSON ({e})"),
    })?;
    let Value::Array(entries) = value else {
        return Err(ParseError::Field {
            field: "representation".into(),
            expected: "a list of RoleRepresentation",
            got: kind_of(&value).into(),
        });
    };
    let mut roles = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let at = format!("representation[{index}]");
        let Value::Object(object) = entry else {
            return Err(ParseError::Field {
                field: at,
                expected: "a RoleRepresentation object",
                got: kind_of(entry).into(),
            });
        };
        let fields = Fields::new(object, &at);
        let id = fields.required_id("id")?;
        let mut record = role_record(&fields, client);
        record.id = RoleId::from(id);
        roles.push(record);
    }
    Ok(roles)
}

/// A group as the Admin API lists it (`GET …/users/{id}/groups`); `at` names it in errors.
pub fn read_admin_group(value: &Value, at: &str) -> Result<GroupRecord, ParseError> {
    let Value::Object(object) = value else {
        return Err(ParseError::Field {
            field: at.to_string(),
            expected: "a GroupRepresentation object",
            got: kind_of(value).into(),
        });
    };
    let fields = Fields::new(object, at);
    Ok(GroupRecord {
        id: GroupId::from(fields.required_id("id")?),
        name: fields.text("name", MAX_TEXT_LEN)?,
        path: fields.text("path", MAX_TEXT_LEN)?,
        parent_id: None,
    })
}

/// A role as the Admin API lists it (`…/role-mappings/…/composite`); `client` is the
/// client whose roles were asked for.
pub fn read_admin_role(
    value: &Value,
    at: &str,
    client: Option<&ClientUuid>,
) -> Result<RoleRecord, ParseError> {
    let Value::Object(object) = value else {
        return Err(ParseError::Field {
            field: at.to_string(),
            expected: "a RoleRepresentation object",
            got: kind_of(value).into(),
        });
    };
    let fields = Fields::new(object, at);
    let id = fields.required_id("id")?;
    let mut record = role_record(&fields, client);
    record.id = RoleId::from(id);
    Ok(record)
}

//! A user's groups and effective roles as the Admin API lists them, against what the
//! tables hold: what enrichment and `reconcile --directory` apply.

use crate::core::event::{read_admin_group, read_admin_role, GroupRecord, RoleRecord};
use crate::core::ids::{ClientUuid, RealmId, RealmName, UserId};
use crate::core::plan::{Observation, Version};
use crate::keycloak::{AdminClient, KeycloakError};
use crate::store::{Store, StoreError};

/// Why a user's groups and roles could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryReadError {
    #[error("{0}")]
    Keycloak(#[from] KeycloakError),
    /// Keycloak answered something that is not what its API documents.
    #[error("{0}")]
    Answer(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Reads `user_id`'s groups (`…/users/{id}/groups`) and effective roles
/// (`…/role-mappings/realm/composite`, and `…/clients/{client}/composite` for each client
/// with a role known in the realm): listed ones are held, those the tables hold and
/// Keycloak no longer lists are not. `None` if Keycloak has no such user. The
/// observation is placed at `version` (its time `at`).
pub async fn read_directory(
    store: &Store,
    keycloak: &AdminClient,
    (realm, realm_id): (&RealmName, &RealmId),
    user_id: &UserId,
    (at, version): (i64, &Version),
) -> Result<Option<Observation>, DirectoryReadError> {
    let held = store.held_directory(realm_id, user_id).await?;
    let Some(listed_groups) = keycloak.user_groups(realm, user_id).await? else {
        return Ok(None);
    };
    let mut groups = Vec::with_capacity(listed_groups.len());
    for (index, value) in listed_groups.iter().enumerate() {
        let group = read_admin_group(value, &format!("groups[{index}]"))
            .map_err(|e| DirectoryReadError::Answer(format!("Keycloak's group list: {e}")))?;
        groups.push((group, true));
    }
    for id in &held.groups {
        if !groups.iter().any(|(g, _)| g.id == *id) {
            groups.push((GroupRecord::with_id(id), false));
        }
    }
    let mut roles = Vec::new();
    let mut asked: Vec<Option<&ClientUuid>> = vec![None];
    asked.extend(held.clients.iter().map(Some));
    for client in &asked {
        let Some(listed) = keycloak
            .user_effective_roles(realm, user_id, *client)
            .await?
        else {
            if client.is_none() {
                return Ok(None);
            }
            // The client is gone: none of its roles is held.
            continue;
        };
        for (index, value) in listed.iter().enumerate() {
            let role = read_admin_role(value, &format!("roles[{index}]"), *client)
                .map_err(|e| DirectoryReadError::Answer(format!("Keycloak's role list: {e}")))?;
            roles.push((role, true));
        }
    }
    for (id, client) in &held.roles {
        if asked.contains(&client.as_ref()) && !roles.iter().any(|(r, _)| r.id == *id) {
            let mut role = RoleRecord::with_id(id);
            role.client_id = client.clone();
            roles.push((role, false));
        }
    }
    Ok(Some(Observation::Directory {
        realm_id: realm_id.clone(),
        user_id: user_id.clone(),
        groups,
        roles,
        at,
        version: version.clone(),
    }))
}

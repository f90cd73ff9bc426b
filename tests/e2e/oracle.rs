//! Keycloak as the oracle: what its Admin API lists against what the tables say.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{sessions, users, wait_until};
use crate::World;

/// A user as both sides can say it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Profile {
    pub id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: Option<bool>,
    pub email_verified: Option<bool>,
}

impl Profile {
    fn of_keycloak(user: &Value) -> Profile {
        let text = |k: &str| user[k].as_str().map(str::to_string);
        Profile {
            id: text("id").unwrap_or_default(),
            username: text("username"),
            email: text("email"),
            first_name: text("firstName"),
            last_name: text("lastName"),
            enabled: user["enabled"].as_bool(),
            email_verified: user["emailVerified"].as_bool(),
        }
    }
}

/// Profiles of every user Keycloak lists, and the live sessions of each.
#[derive(Debug, PartialEq, Eq)]
pub struct View {
    pub profiles: BTreeSet<Profile>,
    pub live_sessions: BTreeMap<String, Vec<String>>,
}

pub async fn keycloak_view(world: &World) -> View {
    let mut profiles = BTreeSet::new();
    let mut live_sessions = BTreeMap::new();
    for user in world.realm.users().await {
        let profile = Profile::of_keycloak(&user);
        let sessions = world.realm.live_session_ids(&profile.id).await;
        live_sessions.insert(profile.id.clone(), sessions);
        profiles.insert(profile);
    }
    View {
        profiles,
        live_sessions,
    }
}

/// The same from the tables: users not deleted, and the sessions still active of each.
pub async fn table_view(world: &World) -> View {
    let rows = users(&world.store).await;
    let open = sessions(&world.store).await;
    let mut profiles = BTreeSet::new();
    let mut live_sessions = BTreeMap::new();
    for user in rows
        .into_iter()
        .filter(|u| u.deleted_at.is_none() && u.realm_id == world.realm.id)
    {
        let mut ids: Vec<String> = open
            .iter()
            .filter(|s| s.is_active && s.user_id.as_deref() == Some(user.id.as_str()))
            .map(|s| s.id.clone())
            .collect();
        ids.sort();
        live_sessions.insert(user.id.clone(), ids);
        profiles.insert(Profile {
            id: user.id,
            username: user.username,
            email: user.email,
            first_name: user.first_name,
            last_name: user.last_name,
            enabled: user.enabled,
            email_verified: user.email_verified,
        });
    }
    View {
        profiles,
        live_sessions,
    }
}

/// Waits until the tables say what Keycloak says; else fails showing both.
pub async fn settle(world: &World, what: &str) {
    let agreed = wait_until(crate::SETTLE, || async {
        keycloak_view(world).await == table_view(world).await
    })
    .await;
    if !agreed {
        let keycloak = keycloak_view(world).await;
        let tables = table_view(world).await;
        panic!(
            "{what}: the tables disagree with Keycloak\nKeycloak: {keycloak:#?}\ntables:   {tables:#?}\ndaemon log:\n{}",
            world.daemon.log_text()
        );
    }
}

//! A synthetic but plausible Keycloak event history, as JSONL lines in time order.
//!
//! It drives the demo, the benchmarks and the order-independence property test: users
//! register (or appear by logging in), log in, refresh, log out, edit their profile, get
//! updated, disabled and deleted by admins — in all three input shapes, with ties in time
//! and events the product ignores.

mod directory;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

pub const REALM_ID: &str = "5d0f1c1e-7b45-4c0f-9d35-acme00000001";
pub const REALM_NAME: &str = "acme";
const CLIENTS: [&str; 3] = ["web-app", "mobile-app", "account-console"];
const AZNAMIER_USER_CLASS: &str =
    "com.github.aznamier.keycloak.event.provider.EventClientNotificationMqMsg";
const AZNAMIER_ADMIN_CLASS: &str =
    "com.github.aznamier.keycloak.event.provider.EventAdminNotificationMqMsg";

#[derive(Debug, Clone, Copy)]
pub struct SampleOptions {
    pub events: usize,
    pub users: usize,
    pub seed: u64,
    /// Epoch ms of the first event.
    pub start_ms: i64,
    /// Extra weight of everyday traffic (logins, refreshes, token exchanges) against 100
    /// for the whole event catalogue: 0 makes deletions, disablings and admin edits
    /// common (tests), the default gives a production-like mix.
    pub everyday_weight: u32,
    /// Weight of admin changes to groups, roles and organizations against the same 100:
    /// 0 (the default) leaves them out.
    pub directory_weight: u32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            events: 1000,
            users: 100,
            seed: 1,
            start_ms: 1_732_270_000_000,
            everyday_weight: 200,
            directory_weight: 0,
        }
    }
}

struct SimUser {
    id: String,
    username: String,
    enabled: bool,
    deleted: bool,
    sessions: Vec<String>,
}

/// Iterator over the lines of one history.
pub struct History {
    rng: StdRng,
    options: SampleOptions,
    clock: i64,
    produced: usize,
    users: Vec<SimUser>,
    live: Vec<usize>,
    directory: directory::SimDirectory,
}

pub fn history(options: SampleOptions) -> History {
    History {
        rng: StdRng::seed_from_u64(options.seed),
        options,
        clock: options.start_ms,
        produced: 0,
        users: Vec::new(),
        live: Vec::new(),
        directory: directory::SimDirectory::default(),
    }
}

impl Iterator for History {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.produced >= self.options.events {
            return None;
        }
        self.produced += 1;
        // Steps of 0 ms give events with equal times, as Keycloak clusters do.
        self.clock += self.rng.random_range(0..25);
        Some(self.step())
    }
}

impl History {
    fn uuid(&mut self) -> String {
        let bytes: [u8; 16] = self.rng.random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    fn ip(&mut self) -> String {
        format!("203.0.113.{}", self.rng.random_range(1..255))
    }

    fn step(&mut self) -> String {
        // Everyone deleted: someone new signs up, whatever the target user count.
        let want_new = self.live.is_empty()
            || (self.users.len() < self.options.users && self.rng.random_bool(0.08));
        if want_new {
            return self.new_user();
        }
        let slot = self.rng.random_range(0..self.live.len());
        let index = self.live[slot];
        let has_session = !self.users[index].sessions.is_empty();
        let enabled = self.users[index].enabled;
        let everyday = self.options.everyday_weight;
        let roll = self
            .rng
            .random_range(0..100 + everyday + self.options.directory_weight);
        if roll >= 100 + everyday {
            return self.directory_step(index);
        }
        // Realm-wide admin actions are rare in production (an admin signing everyone out,
        // editing the realm's settings): the production-like mix makes them rarer still.
        let realm_rarity = 10.0 / (10.0 + f64::from(self.options.everyday_weight));
        if roll >= 100 {
            return match roll % 3 {
                0 if enabled => self.login(index),
                1 if has_session => self.refresh(index),
                2 if has_session => self.code_to_token(index),
                _ if enabled => self.login(index),
                _ => self.login_error(index),
            };
        }
        match roll {
            0..=24 if enabled => self.login(index),
            25..=49 if has_session => self.refresh(index),
            50..=59 if has_session => self.logout(index),
            60..=64 => self.login_error(index),
            65..=72 if has_session => self.code_to_token(index),
            73..=76 => self.update_profile(index),
            77..=78 => self.verify_email(index),
            79..=84 => self.admin_update(index),
            85 => self.lockout(index),
            86..=87 if has_session => self.admin_end_session(index),
            88 => self.delete(index, slot),
            89 => self.revoke_grant(index),
            90 => self.admin_ignored(),
            91 if has_session => self.session_expired(index),
            92 => self.admin_logout(index),
            93 if self.rng.random_bool(0.2 * realm_rarity) => {
                self.realm_event("ACTION", "logout-all")
            }
            94 if self.rng.random_bool(realm_rarity) => self.realm_event("UPDATE", ""),
            _ if enabled => self.login(index),
            _ => self.admin_update(index),
        }
    }

    fn new_user(&mut self) -> String {
        let id = self.uuid();
        let n = self.users.len();
        let username = format!("user{n:05}");
        self.users.push(SimUser {
            id: id.clone(),
            username: username.clone(),
            enabled: true,
            deleted: false,
            sessions: Vec::new(),
        });
        self.live.push(n);
        if self.rng.random_bool(0.75) {
            let session = self.uuid();
            self.users[n].sessions.push(session.clone());
            let details = json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "auth_method": "openid-connect",
                "register_method": "form",
                "redirect_uri": "https://app.example.com/cb",
            });
            self.user_event("REGISTER", Some(&id), Some(&session), details)
        } else {
            // A user Keycloak had before the sync started: first seen at login.
            self.login(n)
        }
    }

    fn login(&mut self, index: usize) -> String {
        let session = self.uuid();
        self.users[index].sessions.push(session.clone());
        let id = self.users[index].id.clone();
        let mut details = json!({
            "username": self.users[index].username,
            "auth_method": "openid-connect",
            "redirect_uri": "https://app.example.com/cb",
        });
        if self.rng.random_bool(0.2) {
            details["remember_me"] = json!("true");
        }
        self.user_event("LOGIN", Some(&id), Some(&session), details)
    }

    /// USER_SESSION_DELETED as Keycloak 26.5's expiry task reports it.
    fn session_expired(&mut self, index: usize) -> String {
        let session = self.pick_session(index);
        self.users[index].sessions.retain(|s| *s != session);
        let id = self.users[index].id.clone();
        self.user_event(
            "USER_SESSION_DELETED",
            Some(&id),
            Some(&session),
            json!({"reason": "user_session_expired"}),
        )
    }

    /// An admin logging the user out (`POST users/{id}/logout`).
    fn admin_logout(&mut self, index: usize) -> String {
        self.users[index].sessions.clear();
        let path = format!("users/{}/logout", self.users[index].id);
        self.admin_event("USER", "ACTION", &path, None)
    }

    /// A REALM admin event (`logout-all`, or an update of the realm's settings).
    fn realm_event(&mut self, operation: &str, path: &str) -> String {
        if path == "logout-all" {
            for user in &mut self.users {
                user.sessions.clear();
            }
        }
        self.admin_event("REALM", operation, path, None)
    }

    fn pick_session(&mut self, index: usize) -> String {
        let sessions = &self.users[index].sessions;
        sessions[self.rng.random_range(0..sessions.len())].clone()
    }

    fn refresh(&mut self, index: usize) -> String {
        let session = self.pick_session(index);
        let id = self.users[index].id.clone();
        self.user_event(
            "REFRESH_TOKEN",
            Some(&id),
            Some(&session),
            json!({"token_type": "Refresh"}),
        )
    }

    fn code_to_token(&mut self, index: usize) -> String {
        let session = self.pick_session(index);
        let id = self.users[index].id.clone();
        self.user_event(
            "CODE_TO_TOKEN",
            Some(&id),
            Some(&session),
            json!({"grant_type": "authorization_code"}),
        )
    }

    fn logout(&mut self, index: usize) -> String {
        let session = self.pick_session(index);
        self.users[index].sessions.retain(|s| *s != session);
        let id = self.users[index].id.clone();
        self.user_event(
            "LOGOUT",
            Some(&id),
            Some(&session),
            json!({"redirect_uri": "https://app.example.com/"}),
        )
    }

    fn login_error(&mut self, index: usize) -> String {
        let id = self.users[index].id.clone();
        let username = self.users[index].username.clone();
        if self.rng.random_bool(0.3) {
            // Unknown user: no userId, ignored.
            return self.user_event(
                "LOGIN_ERROR",
                None,
                None,
                json!({"username": "nobody", "error": "user_not_found"}),
            );
        }
        self.user_event(
            "LOGIN_ERROR",
            Some(&id),
            None,
            json!({"username": username, "error": "invalid_user_credentials"}),
        )
    }

    fn update_profile(&mut self, index: usize) -> String {
        let id = self.users[index].id.clone();
        let stamp = self.rng.random_range(0..1000);
        let details = if self.rng.random_bool(0.5) {
            let mut details = json!({"updated_first_name": format!("First{stamp}"), "updated_last_name": format!("Last{stamp}"), "context": "ACCOUNT"});
            // Attributes as Keycloak's attribute change listener reports them: values
            // joined by `::`, a removal as a `previous_` detail alone.
            if stamp % 3 == 0 {
                details["updated_department"] = json!(format!("d{}::x", stamp % 7));
            }
            if stamp % 5 == 0 {
                details["previous_phone"] = json!("p0");
            }
            details
        } else {
            json!({"updated_email": format!("{}+{stamp}@example.com", self.users[index].username), "context": "ACCOUNT"})
        };
        let kind = if details.get("updated_email").is_some() {
            "UPDATE_EMAIL"
        } else {
            "UPDATE_PROFILE"
        };
        self.user_event(kind, Some(&id), None, details)
    }

    fn verify_email(&mut self, index: usize) -> String {
        let id = self.users[index].id.clone();
        self.user_event(
            "VERIFY_EMAIL",
            Some(&id),
            None,
            json!({"email": "verified@example.com"}),
        )
    }

    fn admin_update(&mut self, index: usize) -> String {
        let id = self.users[index].id.clone();
        let mut rep = Map::new();
        rep.insert("id".into(), json!(id));
        rep.insert("username".into(), json!(self.users[index].username));
        let stamp = self.rng.random_range(0..1000);
        rep.insert("firstName".into(), json!(format!("Admin{stamp}")));
        let attributes = if stamp % 2 == 0 {
            json!({"department": [format!("d{}", stamp % 7)], "phone": [format!("p{stamp}")]})
        } else {
            json!({"department": [format!("d{}", stamp % 7)]})
        };
        rep.insert("attributes".into(), attributes);
        if self.rng.random_bool(0.35) {
            let enabled = !self.users[index].enabled;
            self.users[index].enabled = enabled;
            if !enabled {
                self.users[index].sessions.clear();
            }
            rep.insert("enabled".into(), json!(enabled));
        }
        let operation = if self.rng.random_bool(0.1) {
            "CREATE"
        } else {
            "UPDATE"
        };
        self.admin_event(
            "USER",
            operation,
            &format!("users/{id}"),
            Some(Value::Object(rep)),
        )
    }

    fn lockout(&mut self, index: usize) -> String {
        self.users[index].enabled = false;
        self.users[index].sessions.clear();
        let id = self.users[index].id.clone();
        self.user_event(
            "USER_DISABLED_BY_PERMANENT_LOCKOUT",
            Some(&id),
            None,
            json!({}),
        )
    }

    fn admin_end_session(&mut self, index: usize) -> String {
        let session = self.pick_session(index);
        self.users[index].sessions.retain(|s| *s != session);
        // As RealmAdminResource records it (24+): whether the offline session went too.
        let offline = session.bytes().last().is_some_and(|b| b % 2 == 0);
        self.admin_event(
            "USER_SESSION",
            "DELETE",
            &format!("sessions/{session}"),
            Some(json!({ "offline": offline })),
        )
    }

    fn delete(&mut self, index: usize, slot: usize) -> String {
        self.users[index].deleted = true;
        self.users[index].sessions.clear();
        self.live.swap_remove(slot);
        let id = self.users[index].id.clone();
        if self.rng.random_bool(0.5) {
            self.user_event(
                "DELETE_ACCOUNT",
                Some(&id),
                None,
                json!({"username": self.users[index].username}),
            )
        } else {
            self.admin_event("USER", "DELETE", &format!("users/{id}"), None)
        }
    }

    fn revoke_grant(&mut self, index: usize) -> String {
        let id = self.users[index].id.clone();
        let client = CLIENTS[self.rng.random_range(0..CLIENTS.len())];
        self.user_event(
            "REVOKE_GRANT",
            Some(&id),
            None,
            json!({"revoked_client": client}),
        )
    }

    fn admin_ignored(&mut self) -> String {
        let client = self.uuid();
        self.admin_event(
            "CLIENT",
            "UPDATE",
            &format!("clients/{client}"),
            Some(json!({"id": client, "enabled": true})),
        )
    }

    fn user_event(
        &mut self,
        kind: &str,
        user: Option<&str>,
        session: Option<&str>,
        mut details: Value,
    ) -> String {
        let client = CLIENTS[self.rng.random_range(0..CLIENTS.len())];
        let ip = self.ip();
        // Keycloak reports errors in their own field, not in the details.
        let error = details.as_object_mut().and_then(|d| d.remove("error"));
        let mut body = Map::new();
        body.insert("time".into(), json!(self.clock));
        body.insert("realmId".into(), json!(REALM_ID));
        body.insert("type".into(), json!(kind));
        body.insert("clientId".into(), json!(client));
        body.insert("ipAddress".into(), json!(ip));
        body.insert("details".into(), details);
        if let Some(user) = user {
            body.insert("userId".into(), json!(user));
        }
        if let Some(session) = session {
            body.insert("sessionId".into(), json!(session));
        }
        if let Some(error) = error {
            body.insert("error".into(), error);
        }
        self.shape(body, "user", AZNAMIER_USER_CLASS)
    }

    fn admin_event(
        &mut self,
        resource: &str,
        operation: &str,
        path: &str,
        representation: Option<Value>,
    ) -> String {
        self.admin_event_with_details(resource, operation, path, representation, Value::Null)
    }

    /// An admin event with details (Keycloak 23+ records some, e.g. the username of an
    /// organization member).
    fn admin_event_with_details(
        &mut self,
        resource: &str,
        operation: &str,
        path: &str,
        representation: Option<Value>,
        details: Value,
    ) -> String {
        let mut body = Map::new();
        body.insert("time".into(), json!(self.clock));
        body.insert("realmId".into(), json!(REALM_ID));
        body.insert(
            "authDetails".into(),
            json!({"realmId": REALM_ID, "clientId": "admin-cli", "userId": "00000000-0000-4000-8000-00000000ad01", "ipAddress": "198.51.100.4"}),
        );
        body.insert("resourceType".into(), json!(resource));
        body.insert("operationType".into(), json!(operation));
        body.insert("resourcePath".into(), json!(path));
        if let Some(rep) = representation {
            body.insert("representation".into(), json!(rep.to_string()));
        }
        if !details.is_null() {
            body.insert("details".into(), details);
        }
        self.shape(body, "admin", AZNAMIER_ADMIN_CLASS)
    }

    /// Dresses a body in one of the three input shapes.
    fn shape(&mut self, mut body: Map<String, Value>, kind: &str, class: &str) -> String {
        let roll = self.rng.random_range(0..100);
        if roll < 60 {
            body.insert("schema".into(), json!(1));
            body.insert("kind".into(), json!(kind));
            body.insert("id".into(), json!(self.uuid()));
            body.insert("realmName".into(), json!(REALM_NAME));
        } else if roll < 85 {
            body.insert("@class".into(), json!(class));
            if kind == "admin" {
                if let Some(resource) = body.get("resourceType").cloned() {
                    body.insert("resourceTypeAsString".into(), resource);
                }
            }
        } else if roll < 93 {
            body.insert("id".into(), json!(self.uuid()));
        }
        Value::Object(body).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::parse_message;

    #[test]
    fn histories_are_reproducible_and_parse() {
        let options = SampleOptions {
            events: 2000,
            users: 50,
            seed: 7,
            everyday_weight: 0,
            ..SampleOptions::default()
        };
        let first: Vec<String> = history(options).collect();
        let second: Vec<String> = history(options).collect();
        assert_eq!(first, second);
        let mut types = std::collections::BTreeSet::new();
        for line in &first {
            let event =
                parse_message(line.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{e}: {line}"));
            types.insert(event.type_name);
        }
        for expected in [
            "REGISTER",
            "LOGIN",
            "REFRESH_TOKEN",
            "LOGOUT",
            "USER.UPDATE",
            "USER.DELETE",
            "USER_SESSION.DELETE",
        ] {
            assert!(
                types.contains(expected),
                "{expected} missing from {types:?}"
            );
        }
    }

    #[test]
    fn id_less_events_do_not_collide() {
        let lines: Vec<String> = history(SampleOptions {
            events: 5000,
            users: 200,
            seed: 3,
            ..SampleOptions::default()
        })
        .collect();
        let mut ids = std::collections::HashSet::new();
        for line in &lines {
            let event = parse_message(line.as_bytes(), 1 << 20).expect("parses");
            assert!(ids.insert(event.id.clone()), "duplicate id for {line}");
        }
    }
}

//! Events → the changes they make, folded per row.
//!
//! Every change is built from operations that commute: last-writer-wins by a
//! [`Version`], minimum, maximum and sums of distinct events. Folding a batch here and
//! merging the result into the stored row in SQL with the same operations therefore gives
//! the same rows whatever order, batching or redelivery the events come in (GUIDE §4).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use secrecy::{ExposeSecret, SecretString};

use crate::event::{Action, Event, Profile, TokenType};

/// Position of a write: `(time, event id)`, encoded so that byte order is that order.
///
/// The leading digit ranks whole sources: placeholders (`0`, values a LOGIN guesses
/// for a user it has never seen) lose to every real profile change (`1`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(String);

impl Version {
    pub fn of(event: &Event) -> Self {
        Version(format!("1{:015}:{}", event.time, event.id))
    }

    pub fn placeholder(event: &Event) -> Self {
        Version(format!("0{:015}:{}", event.time, event.id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: Version,
}

/// Keeps the value with the highest version.
fn last_writer<T>(slot: &mut Option<Versioned<T>>, value: T, version: &Version) {
    if slot
        .as_ref()
        .is_none_or(|current| *version > current.version)
    {
        *slot = Some(Versioned {
            value,
            version: version.clone(),
        });
    }
}

/// Keeps the value with the lowest version.
fn first_writer<T>(slot: &mut Option<Versioned<T>>, value: T, version: &Version) {
    if slot
        .as_ref()
        .is_none_or(|current| *version < current.version)
    {
        *slot = Some(Versioned {
            value,
            version: version.clone(),
        });
    }
}

fn min_opt(slot: &mut Option<i64>, value: i64) {
    *slot = Some(slot.map_or(value, |current| current.min(value)));
}

fn max_opt(slot: &mut Option<i64>, value: i64) {
    *slot = Some(slot.map_or(value, |current| current.max(value)));
}

/// Why a session ended (`user_sessions.end_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndReason {
    Logout,
    Admin,
    UserDeleted,
    UserDisabled,
    Expired,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::Admin => "admin",
            EndReason::UserDeleted => "user_deleted",
            EndReason::UserDisabled => "user_disabled",
            EndReason::Expired => "expired",
        }
    }
}

/// The merged change to one `users` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserChange {
    pub id: String,
    pub realm_id: String,
    pub username: Option<Versioned<String>>,
    pub email: Option<Versioned<String>>,
    pub first_name: Option<Versioned<String>>,
    pub last_name: Option<Versioned<String>>,
    pub email_verified: Option<Versioned<bool>>,
    pub enabled: Option<Versioned<bool>>,
    pub attributes: Option<Versioned<Map<String, Value>>>,
    pub created_at: Option<i64>,
    pub last_login_at: Option<i64>,
    pub login_count: i64,
    pub last_login_error_at: Option<i64>,
    pub login_error_count: i64,
    pub deleted_at: Option<i64>,
}

impl UserChange {
    fn apply_profile(&mut self, profile: &Profile, version: &Version) {
        let text = |slot: &mut Option<Versioned<String>>, value: &Option<String>| {
            if let Some(value) = value {
                last_writer(slot, value.clone(), version);
            }
        };
        text(&mut self.username, &profile.username);
        text(&mut self.email, &profile.email);
        text(&mut self.first_name, &profile.first_name);
        text(&mut self.last_name, &profile.last_name);
        if let Some(verified) = profile.email_verified {
            last_writer(&mut self.email_verified, verified, version);
        }
        if let Some(enabled) = profile.enabled {
            last_writer(&mut self.enabled, enabled, version);
        }
        if let Some(attributes) = &profile.attributes {
            last_writer(&mut self.attributes, attributes.clone(), version);
        }
        if let Some(created) = profile.created_at {
            min_opt(&mut self.created_at, created);
        }
    }
}

/// When and why a session ended; the lowest version wins.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEnd {
    pub at: i64,
    pub reason: EndReason,
    pub version: Version,
}

/// The merged change to one `user_sessions` row.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionChange {
    pub id: String,
    pub realm_id: String,
    pub user_id: Option<String>,
    /// First writer wins: the client and address the session began with.
    pub client_id: Option<Versioned<String>>,
    pub ip_address: Option<Versioned<String>>,
    pub started_at: i64,
    pub last_refresh_at: Option<i64>,
    pub refresh_count: i64,
    pub end: Option<SessionEnd>,
}

/// A user-level event (deletion, disabling) that ends every session of the user that had
/// started by then, including sessions only learnt about later.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionCutoff {
    pub user_id: String,
    pub at: i64,
    pub reason: EndReason,
    pub version: Version,
}

/// Vault rows to delete: those issued at or before `at`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revocation {
    Session {
        session_id: String,
        at: i64,
    },
    User {
        user_id: String,
        at: i64,
    },
    OfflineGrant {
        user_id: String,
        client_id: String,
        at: i64,
    },
}

/// A token to keep in the vault: the newest message per slot (one refresh token per
/// user; one offline token per user, client and session), metadata of all the batch's
/// messages for that slot merged, newer values winning.
#[derive(Debug, Clone)]
pub struct TokenChange {
    pub realm_id: String,
    pub user_id: String,
    pub token_type: TokenType,
    pub client_id: Option<String>,
    pub session_id: Option<String>,
    pub token: SecretString,
    pub expires_at: Option<i64>,
    pub metadata: Map<String, Value>,
    pub issued_at: i64,
    pub version: Version,
}

impl PartialEq for TokenChange {
    fn eq(&self, other: &Self) -> bool {
        self.realm_id == other.realm_id
            && self.user_id == other.user_id
            && self.token_type == other.token_type
            && self.client_id == other.client_id
            && self.session_id == other.session_id
            && self.token.expose_secret() == other.token.expose_secret()
            && self.expires_at == other.expires_at
            && self.metadata == other.metadata
            && self.issued_at == other.issued_at
            && self.version == other.version
    }
}

/// The vault slot a token occupies.
type TokenSlot = (String, String, TokenType, Option<String>, Option<String>);

fn token_slot(token: &TokenChange) -> TokenSlot {
    match token.token_type {
        TokenType::Refresh => (
            token.realm_id.clone(),
            token.user_id.clone(),
            TokenType::Refresh,
            None,
            None,
        ),
        TokenType::Offline => (
            token.realm_id.clone(),
            token.user_id.clone(),
            TokenType::Offline,
            token.client_id.clone(),
            token.session_id.clone(),
        ),
    }
}

/// Everything a batch of (new, deduplicated) events changes, one entry per row, sorted
/// by key so concurrent writers lock rows in the same order.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub users: Vec<UserChange>,
    pub sessions: Vec<SessionChange>,
    pub cutoffs: Vec<SessionCutoff>,
    pub revocations: Vec<Revocation>,
    pub tokens: Vec<TokenChange>,
    /// Sessions with new REFRESH_TOKEN events: their vault tokens' metadata follows.
    pub refreshed_sessions: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
            && self.sessions.is_empty()
            && self.cutoffs.is_empty()
            && self.revocations.is_empty()
            && self.tokens.is_empty()
    }

    /// The users whose sessions and cutoffs must not be written concurrently, with
    /// whether this plan needs them exclusively (it adds cutoffs) or shared (it only
    /// writes sessions, which other session writers may do at the same time).
    pub fn user_locks(&self) -> BTreeMap<&str, LockMode> {
        let mut locks = BTreeMap::new();
        for user in self.sessions.iter().filter_map(|s| s.user_id.as_deref()) {
            locks.insert(user, LockMode::Shared);
        }
        for revocation in &self.revocations {
            if let Revocation::OfflineGrant { user_id, .. } = revocation {
                locks.entry(user_id.as_str()).or_insert(LockMode::Shared);
            }
        }
        // Cutoffs and tokens must each see the other (a token older than a cutoff is not
        // kept, a cutoff removes older tokens), as must tokens and session ends.
        for user in self
            .cutoffs
            .iter()
            .map(|c| c.user_id.as_str())
            .chain(self.tokens.iter().map(|t| t.user_id.as_str()))
        {
            locks.insert(user, LockMode::Exclusive);
        }
        locks
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

#[derive(Default)]
struct Planner {
    users: BTreeMap<String, UserChange>,
    sessions: BTreeMap<String, SessionChange>,
    cutoffs: Vec<SessionCutoff>,
    revocations: Vec<Revocation>,
    tokens: BTreeMap<TokenSlot, TokenChange>,
    refreshed_sessions: Vec<String>,
}

impl Planner {
    fn user(&mut self, event: &Event, user_id: &str) -> &mut UserChange {
        self.users
            .entry(user_id.to_string())
            .or_insert_with(|| UserChange {
                id: user_id.to_string(),
                realm_id: event.realm_id.clone(),
                ..UserChange::default()
            })
    }

    fn session(
        &mut self,
        event: &Event,
        session_id: &str,
        user_id: Option<&str>,
    ) -> &mut SessionChange {
        let session = self
            .sessions
            .entry(session_id.to_string())
            .or_insert_with(|| SessionChange {
                id: session_id.to_string(),
                realm_id: event.realm_id.clone(),
                user_id: None,
                client_id: None,
                ip_address: None,
                started_at: event.time,
                last_refresh_at: None,
                refresh_count: 0,
                end: None,
            });
        session.started_at = session.started_at.min(event.time);
        if session.user_id.is_none() {
            session.user_id = user_id.map(str::to_string);
        }
        session
    }

    fn end_session(
        &mut self,
        event: &Event,
        session_id: &str,
        user_id: Option<&str>,
        reason: EndReason,
    ) {
        let version = Version::of(event);
        let session = self.session(event, session_id, user_id);
        if session.end.as_ref().is_none_or(|end| version < end.version) {
            session.end = Some(SessionEnd {
                at: event.time,
                reason,
                version,
            });
        }
        self.revocations.push(Revocation::Session {
            session_id: session_id.to_string(),
            at: event.time,
        });
    }

    fn cut_off(&mut self, event: &Event, user_id: &str, reason: EndReason) {
        self.cutoffs.push(SessionCutoff {
            user_id: user_id.to_string(),
            at: event.time,
            reason,
            version: Version::of(event),
        });
        self.revocations.push(Revocation::User {
            user_id: user_id.to_string(),
            at: event.time,
        });
    }

    fn add(&mut self, event: &Event) {
        let version = Version::of(event);
        match &event.action {
            Action::Register {
                user_id,
                username,
                email,
            } => {
                let profile = Profile {
                    username: username.clone(),
                    email: email.clone(),
                    enabled: Some(true),
                    created_at: Some(event.time),
                    ..Profile::default()
                };
                self.user(event, user_id).apply_profile(&profile, &version);
            }
            Action::Login {
                user_id,
                session_id,
                client_id,
                ip_address,
                username,
            } => {
                let guess = Version::placeholder(event);
                let user = self.user(event, user_id);
                if let Some(username) = username {
                    last_writer(&mut user.username, username.clone(), &guess);
                }
                last_writer(&mut user.enabled, true, &guess);
                max_opt(&mut user.last_login_at, event.time);
                user.login_count += 1;
                if let Some(session_id) = session_id {
                    let session = self.session(event, session_id, Some(user_id));
                    if let Some(client) = client_id {
                        first_writer(&mut session.client_id, client.clone(), &version);
                    }
                    if let Some(ip) = ip_address {
                        first_writer(&mut session.ip_address, ip.clone(), &version);
                    }
                }
            }
            Action::LoginError { user_id } => {
                let user = self.user(event, user_id);
                max_opt(&mut user.last_login_error_at, event.time);
                user.login_error_count += 1;
            }
            Action::Logout {
                user_id,
                session_id,
            } => self.end_session(event, session_id, Some(user_id), EndReason::Logout),
            Action::RefreshToken {
                user_id,
                session_id,
                client_id,
                ip_address,
            } => {
                self.refreshed_sessions.push(session_id.clone());
                let session = self.session(event, session_id, Some(user_id));
                max_opt(&mut session.last_refresh_at, event.time);
                session.refresh_count += 1;
                if let Some(client) = client_id {
                    first_writer(&mut session.client_id, client.clone(), &version);
                }
                if let Some(ip) = ip_address {
                    first_writer(&mut session.ip_address, ip.clone(), &version);
                }
            }
            Action::UpdateProfile { user_id, profile } => {
                self.user(event, user_id).apply_profile(profile, &version);
                if profile.enabled == Some(false) {
                    self.cut_off(event, user_id, EndReason::UserDisabled);
                }
            }
            Action::DeleteUser { user_id } => {
                min_opt(&mut self.user(event, user_id).deleted_at, event.time);
                self.cut_off(event, user_id, EndReason::UserDeleted);
            }
            Action::DisableUser { user_id } => {
                let profile = Profile {
                    enabled: Some(false),
                    ..Profile::default()
                };
                self.user(event, user_id).apply_profile(&profile, &version);
                self.cut_off(event, user_id, EndReason::UserDisabled);
            }
            Action::RevokeGrant { user_id, client_id } => {
                self.revocations.push(Revocation::OfflineGrant {
                    user_id: user_id.clone(),
                    client_id: client_id.clone(),
                    at: event.time,
                });
            }
            Action::EndSession { session_id } => {
                self.end_session(event, session_id, None, EndReason::Admin)
            }
            Action::StoreToken(message) => {
                let change = TokenChange {
                    realm_id: event.realm_id.clone(),
                    user_id: message.user_id.clone(),
                    token_type: message.token_type,
                    client_id: message.client_id.clone(),
                    session_id: message.session_id.clone(),
                    token: message.token.clone(),
                    expires_at: message.expires_at,
                    metadata: message.metadata.clone(),
                    issued_at: event.time,
                    version,
                };
                match self.tokens.entry(token_slot(&change)) {
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        slot.insert(change);
                    }
                    std::collections::btree_map::Entry::Occupied(mut slot) => {
                        let current = slot.get_mut();
                        let (older, mut newer) = if change.version > current.version {
                            (current.clone(), change)
                        } else {
                            (change, current.clone())
                        };
                        let mut metadata = older.metadata;
                        metadata.extend(newer.metadata);
                        newer.metadata = metadata;
                        *current = newer;
                    }
                }
            }
            Action::Ignore => {}
        }
    }

    fn finish(mut self) -> Plan {
        self.cutoffs.sort();
        self.cutoffs.dedup();
        self.revocations.sort();
        self.revocations.dedup();
        self.refreshed_sessions.sort();
        self.refreshed_sessions.dedup();
        Plan {
            users: self.users.into_values().collect(),
            sessions: self.sessions.into_values().collect(),
            cutoffs: self.cutoffs,
            revocations: self.revocations,
            tokens: self.tokens.into_values().collect(),
            refreshed_sessions: self.refreshed_sessions,
        }
    }
}

/// Plans a batch. The events must already be deduplicated (the inbox does that).
pub fn plan<'a>(events: impl IntoIterator<Item = &'a Event>) -> Plan {
    let mut planner = Planner::default();
    for event in events {
        planner.add(event);
    }
    planner.finish()
}

#[cfg(test)]
mod tests;

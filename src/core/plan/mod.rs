//! Events → the changes they make, folded per row.
//!
//! Every change is built from operations that commute: last-writer-wins by a
//! [`Version`], minimum, maximum and sums of distinct events. Folding a batch here and
//! merging the result into the stored row in SQL with the same operations therefore gives
//! the same rows whatever order, batching or redelivery the events come in (GUIDE §4).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use secrecy::{ExposeSecret, SecretString};

use crate::core::event::{Action, Enrichment, Event, Profile, TokenType};

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

    /// Just after `base` (a stored version) and before anything newer than it: where
    /// the profile read from the Admin API in answer to the event at `base` goes.
    pub fn read_after(base: &str) -> Self {
        Version(format!("{base} read"))
    }

    /// What the Admin API showed at `at_ms` (epoch ms), e.g. during a reconcile.
    pub fn observed(at_ms: i64, source: &str) -> Self {
        Version(format!("1{at_ms:015}:{source}"))
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
    /// `Some(None)`: a profile read whole says the field is empty.
    pub username: Option<Versioned<Option<String>>>,
    pub email: Option<Versioned<Option<String>>>,
    pub first_name: Option<Versioned<Option<String>>>,
    pub last_name: Option<Versioned<Option<String>>>,
    pub email_verified: Option<Versioned<bool>>,
    pub enabled: Option<Versioned<bool>>,
    pub attributes: Option<Versioned<Map<String, Value>>>,
    pub created_at: Option<i64>,
    pub last_login_at: Option<i64>,
    pub login_count: i64,
    pub last_login_error_at: Option<i64>,
    pub login_error_count: i64,
    pub deleted_at: Option<i64>,
    /// The newest version at which the whole profile was read from the Admin API.
    pub read_ver: Option<Version>,
}

impl UserChange {
    fn apply_profile(&mut self, profile: &Profile, version: &Version) {
        let text = |slot: &mut Option<Versioned<Option<String>>>, value: &Option<String>| {
            if value.is_some() || profile.complete {
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
        if profile.complete && self.read_ver.as_ref().is_none_or(|v| version > v) {
            self.read_ver = Some(version.clone());
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
    /// The id of the message it comes from: its token was sealed before the transaction.
    pub source: String,
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
        self.source == other.source
            && self.realm_id == other.realm_id
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
    /// Users the events leave incomplete, to read from the Admin API.
    pub enrichment: Vec<EnrichmentRequest>,
}

/// A user worth reading whole from the Admin API, because of the events at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichmentRequest {
    pub user_id: String,
    /// The newest asking event; the read is applied just after it.
    pub version: Version,
    /// Read again even if it was read before (the profile changed in ways events do not
    /// carry), as long as that read is older than `version`.
    pub if_read_before: bool,
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

/// Where a change comes from: its realm, its time and its position among writes.
struct Stamp<'a> {
    realm_id: &'a str,
    time: i64,
    version: Version,
}

impl<'a> Stamp<'a> {
    fn of(event: &'a Event) -> Self {
        Stamp {
            realm_id: &event.realm_id,
            time: event.time,
            version: Version::of(event),
        }
    }
}

/// What the Admin API says about a user or session (enrichment, reconcile), planned
/// with the same rules as events.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// `at`: when it was read (epoch ms); a disabled user's sessions end then.
    Profile {
        realm_id: String,
        user_id: String,
        profile: Profile,
        at: i64,
        version: Version,
    },
    /// Keycloak no longer has the user.
    UserGone {
        realm_id: String,
        user_id: String,
        at: i64,
        version: Version,
    },
    /// Keycloak no longer has the session.
    SessionGone {
        realm_id: String,
        user_id: String,
        session_id: String,
        at: i64,
        version: Version,
    },
}

impl Observation {
    fn stamp(&self) -> Stamp<'_> {
        let (Observation::Profile {
            realm_id,
            at,
            version,
            ..
        }
        | Observation::UserGone {
            realm_id,
            at,
            version,
            ..
        }
        | Observation::SessionGone {
            realm_id,
            at,
            version,
            ..
        }) = self;
        Stamp {
            realm_id,
            time: *at,
            version: version.clone(),
        }
    }
}

#[derive(Default)]
struct Planner {
    users: BTreeMap<String, UserChange>,
    sessions: BTreeMap<String, SessionChange>,
    cutoffs: Vec<SessionCutoff>,
    revocations: Vec<Revocation>,
    tokens: BTreeMap<TokenSlot, TokenChange>,
    refreshed_sessions: Vec<String>,
    enrichment: BTreeMap<String, EnrichmentRequest>,
}

impl Planner {
    fn user(&mut self, stamp: &Stamp, user_id: &str) -> &mut UserChange {
        self.users
            .entry(user_id.to_string())
            .or_insert_with(|| UserChange {
                id: user_id.to_string(),
                realm_id: stamp.realm_id.to_string(),
                ..UserChange::default()
            })
    }

    fn session(
        &mut self,
        stamp: &Stamp,
        session_id: &str,
        user_id: Option<&str>,
    ) -> &mut SessionChange {
        let session = self
            .sessions
            .entry(session_id.to_string())
            .or_insert_with(|| SessionChange {
                id: session_id.to_string(),
                realm_id: stamp.realm_id.to_string(),
                user_id: None,
                client_id: None,
                ip_address: None,
                started_at: stamp.time,
                last_refresh_at: None,
                refresh_count: 0,
                end: None,
            });
        session.started_at = session.started_at.min(stamp.time);
        if session.user_id.is_none() {
            session.user_id = user_id.map(str::to_string);
        }
        session
    }

    fn end_session(
        &mut self,
        stamp: &Stamp,
        session_id: &str,
        user_id: Option<&str>,
        reason: EndReason,
    ) {
        let session = self.session(stamp, session_id, user_id);
        if session
            .end
            .as_ref()
            .is_none_or(|end| stamp.version < end.version)
        {
            session.end = Some(SessionEnd {
                at: stamp.time,
                reason,
                version: stamp.version.clone(),
            });
        }
        self.revocations.push(Revocation::Session {
            session_id: session_id.to_string(),
            at: stamp.time,
        });
    }

    fn cut_off(&mut self, stamp: &Stamp, user_id: &str, reason: EndReason) {
        self.cutoffs.push(SessionCutoff {
            user_id: user_id.to_string(),
            at: stamp.time,
            reason,
            version: stamp.version.clone(),
        });
        self.revocations.push(Revocation::User {
            user_id: user_id.to_string(),
            at: stamp.time,
        });
    }

    fn update_profile(&mut self, stamp: &Stamp, user_id: &str, profile: &Profile) {
        self.user(stamp, user_id)
            .apply_profile(profile, &stamp.version);
        if profile.enabled == Some(false) {
            self.cut_off(stamp, user_id, EndReason::UserDisabled);
        }
    }

    fn delete_user(&mut self, stamp: &Stamp, user_id: &str) {
        min_opt(&mut self.user(stamp, user_id).deleted_at, stamp.time);
        self.cut_off(stamp, user_id, EndReason::UserDeleted);
    }

    fn observe(&mut self, observation: &Observation) {
        let stamp = observation.stamp();
        match observation {
            Observation::Profile {
                user_id, profile, ..
            } => self.update_profile(&stamp, user_id, profile),
            Observation::UserGone { user_id, .. } => self.delete_user(&stamp, user_id),
            Observation::SessionGone {
                user_id,
                session_id,
                ..
            } => self.end_session(&stamp, session_id, Some(user_id), EndReason::Expired),
        }
    }

    fn ask_enrichment(&mut self, event: &Event, version: &Version) {
        let (Some(need), Some(user)) = (event.action.enrichment(), event.action.user_id()) else {
            return;
        };
        let if_read_before = need == Enrichment::IfReadBefore;
        let request =
            self.enrichment
                .entry(user.to_string())
                .or_insert_with(|| EnrichmentRequest {
                    user_id: user.to_string(),
                    version: version.clone(),
                    if_read_before,
                });
        if *version > request.version {
            request.version = version.clone();
        }
        request.if_read_before |= if_read_before;
    }

    fn add(&mut self, event: &Event) {
        let stamp = Stamp::of(event);
        let version = stamp.version.clone();
        self.ask_enrichment(event, &version);
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
                self.user(&stamp, user_id).apply_profile(&profile, &version);
            }
            Action::Login {
                user_id,
                session_id,
                client_id,
                ip_address,
                username,
            } => {
                let guess = Version::placeholder(event);
                let user = self.user(&stamp, user_id);
                if let Some(username) = username {
                    last_writer(&mut user.username, Some(username.clone()), &guess);
                }
                last_writer(&mut user.enabled, true, &guess);
                max_opt(&mut user.last_login_at, event.time);
                user.login_count += 1;
                if let Some(session_id) = session_id {
                    let session = self.session(&stamp, session_id, Some(user_id));
                    if let Some(client) = client_id {
                        first_writer(&mut session.client_id, client.clone(), &version);
                    }
                    if let Some(ip) = ip_address {
                        first_writer(&mut session.ip_address, ip.clone(), &version);
                    }
                }
            }
            Action::LoginError { user_id } => {
                let user = self.user(&stamp, user_id);
                max_opt(&mut user.last_login_error_at, event.time);
                user.login_error_count += 1;
            }
            Action::Logout {
                user_id,
                session_id,
            } => self.end_session(&stamp, session_id, Some(user_id), EndReason::Logout),
            Action::RefreshToken {
                user_id,
                session_id,
                client_id,
                ip_address,
            } => {
                self.refreshed_sessions.push(session_id.clone());
                let session = self.session(&stamp, session_id, Some(user_id));
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
                self.update_profile(&stamp, user_id, profile)
            }
            Action::DeleteUser { user_id } => self.delete_user(&stamp, user_id),
            Action::DisableUser { user_id } => {
                let profile = Profile {
                    enabled: Some(false),
                    ..Profile::default()
                };
                self.update_profile(&stamp, user_id, &profile);
            }
            Action::RevokeGrant { user_id, client_id } => {
                self.revocations.push(Revocation::OfflineGrant {
                    user_id: user_id.clone(),
                    client_id: client_id.clone(),
                    at: event.time,
                });
            }
            Action::EndSession { session_id } => {
                self.end_session(&stamp, session_id, None, EndReason::Admin)
            }
            Action::StoreToken(message) => {
                let change = TokenChange {
                    source: event.id.clone(),
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
            enrichment: self.enrichment.into_values().collect(),
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

/// Plans what the Admin API said. Observations need no inbox: every rule they go
/// through (last writer, earliest end, earliest deletion) is idempotent by itself.
pub fn plan_observations<'a>(observations: impl IntoIterator<Item = &'a Observation>) -> Plan {
    let mut planner = Planner::default();
    for observation in observations {
        planner.observe(observation);
    }
    planner.finish()
}

/// A `users` row's profile as stored, to compare with what the Admin API says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredProfile {
    pub profile: Profile,
    pub deleted: bool,
}

/// The fields on which a profile read whole from Keycloak differs from the stored one,
/// as applying it would change them. A deleted user is never revived, and `created_at`
/// only ever moves earlier.
pub fn profile_differences(stored: &StoredProfile, read: &Profile) -> Vec<&'static str> {
    if stored.deleted {
        return Vec::new();
    }
    let stored = &stored.profile;
    let mut fields = Vec::new();
    // A profile read whole sets absent names to empty; a partial one leaves them.
    let mut text = |name, stored: &Option<String>, read_value: &Option<String>| {
        if (read_value.is_some() || read.complete) && stored != read_value {
            fields.push(name);
        }
    };
    text("username", &stored.username, &read.username);
    text("email", &stored.email, &read.email);
    text("first_name", &stored.first_name, &read.first_name);
    text("last_name", &stored.last_name, &read.last_name);
    if read.email_verified.is_some() && stored.email_verified != read.email_verified {
        fields.push("email_verified");
    }
    if read.enabled.is_some() && stored.enabled != read.enabled {
        fields.push("enabled");
    }
    if read.attributes.is_some() && stored.attributes != read.attributes {
        fields.push("attributes");
    }
    if let Some(created) = read.created_at {
        if stored.created_at.is_none_or(|at| created < at) {
            fields.push("created_at");
        }
    }
    fields
}

#[cfg(test)]
mod tests;

//! What a plan holds: the merged change to each row.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::version::{last_writer, min_opt, Version, Versioned};
use crate::core::event::{Profile, TokenType};
use crate::core::ids::{ClientId, EventId, RealmId, SessionId, UserId};

/// Why a session ended (`user_sessions.end_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndReason {
    Logout,
    Admin,
    UserDeleted,
    UserDisabled,
    Expired,
    /// The user's consent to the client was revoked (an offline-only session of it).
    Revoked,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::Admin => "admin",
            EndReason::UserDeleted => "user_deleted",
            EndReason::UserDisabled => "user_disabled",
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
        }
    }
}

/// The merged change to one `users` row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserChange {
    pub id: UserId,
    pub realm_id: RealmId,
    /// `Some(None)`: a profile read whole says the field is empty.
    pub username: Option<Versioned<Option<String>>>,
    pub email: Option<Versioned<Option<String>>>,
    pub first_name: Option<Versioned<Option<String>>>,
    pub last_name: Option<Versioned<Option<String>>>,
    pub email_verified: Option<Versioned<bool>>,
    pub enabled: Option<Versioned<bool>>,
    pub attributes: Option<Versioned<Map<String, Value>>>,
    /// Single attributes changed by events, last writer wins per key; they override the
    /// whole map where they are newer than it (merged so in SQL).
    pub attribute_updates: BTreeMap<String, Versioned<Option<Vec<String>>>>,
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
    pub(super) fn apply_profile(&mut self, profile: &Profile, version: &Version) {
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
        for (name, values) in &profile.attribute_changes {
            let newer = Versioned {
                value: values.clone(),
                version: version.clone(),
            };
            match self.attribute_updates.entry(name.clone()) {
                Entry::Vacant(slot) => {
                    slot.insert(newer);
                }
                Entry::Occupied(mut slot) if *version > slot.get().version => {
                    slot.insert(newer);
                }
                Entry::Occupied(_) => {}
            }
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
    pub id: SessionId,
    pub realm_id: RealmId,
    pub user_id: Option<UserId>,
    /// First writer wins: the client and address the session began with.
    pub client_id: Option<Versioned<ClientId>>,
    pub ip_address: Option<Versioned<String>>,
    pub started_at: i64,
    pub last_refresh_at: Option<i64>,
    pub refresh_count: i64,
    /// The latest event that refreshed the session in Keycloak (`lastSessionRefresh`).
    pub last_activity_at: Option<i64>,
    /// Once a LOGIN said remember-me, the session keeps the longer timeouts.
    pub remember_me: bool,
    /// A LOGIN said `refresh_token_type: Offline`: Keycloak made an offline session only
    /// (a direct grant with `offline_access`), which revoking the client's consent ends.
    pub offline_only: bool,
    pub end: Option<SessionEnd>,
}

/// A user-level event (deletion, disabling) that ends every session of the user that had
/// started by then, including sessions only learnt about later; with `client_id` (a
/// consent's revocation), only the user's offline-only sessions of that client.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SessionCutoff {
    pub user_id: UserId,
    pub at: i64,
    pub reason: EndReason,
    pub version: Version,
    pub client_id: Option<ClientId>,
}

/// An admin logging out a whole realm (`logout-all`): every session of the realm that had
/// started by then ends, including sessions only learnt about later.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RealmCutoff {
    pub realm_id: RealmId,
    pub at: i64,
    pub version: Version,
}

/// Vault rows to delete: those issued at or before `at`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Revocation {
    /// The online session ended: its refresh tokens die with it. Its offline tokens
    /// belong to the offline session of the same id, which Keycloak keeps unless
    /// `offline` says that one ended too.
    Session {
        session_id: SessionId,
        at: i64,
        offline: bool,
    },
    /// The realm's not-before moved: every token of the realm issued by then is void.
    Realm {
        realm_id: RealmId,
        at: i64,
    },
    User {
        user_id: UserId,
        at: i64,
    },
    OfflineGrant {
        user_id: UserId,
        client_id: ClientId,
        at: i64,
    },
}

/// A token to keep in the vault: the newest message per slot (one refresh token per
/// user; one offline token per user, client and session), metadata of all the batch's
/// messages for that slot merged, newer values winning.
#[derive(Debug, Clone)]
pub struct TokenChange {
    /// The id of the message it comes from: its token was sealed before the transaction.
    pub source: EventId,
    pub realm_id: RealmId,
    pub user_id: UserId,
    pub token_type: TokenType,
    pub client_id: Option<ClientId>,
    pub session_id: Option<SessionId>,
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
pub(super) type TokenSlot = (
    RealmId,
    UserId,
    TokenType,
    Option<ClientId>,
    Option<SessionId>,
);

pub(super) fn token_slot(token: &TokenChange) -> TokenSlot {
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
    pub realm_cutoffs: Vec<RealmCutoff>,
    pub revocations: Vec<Revocation>,
    pub tokens: Vec<TokenChange>,
    /// Realms whose session policy an admin changed: to be read again.
    pub stale_policies: Vec<RealmId>,
    /// Sessions with new REFRESH_TOKEN events: their vault tokens' metadata follows.
    pub refreshed_sessions: Vec<SessionId>,
    /// Users the events leave incomplete, to read from the Admin API.
    pub enrichment: Vec<EnrichmentRequest>,
    /// Groups, roles, organizations and memberships.
    pub directory: super::DirectoryPlan,
}

/// A user worth reading whole from the Admin API, because of the events at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrichmentRequest {
    pub user_id: UserId,
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
            && self.realm_cutoffs.is_empty()
            && self.revocations.is_empty()
            && self.tokens.is_empty()
            && self.stale_policies.is_empty()
            && self.directory.is_empty()
    }

    /// Like [`user_locks`](Self::user_locks), per realm: a realm-wide cutoff and the
    /// realm's sessions and tokens written concurrently must meet.
    pub fn realm_locks(&self) -> BTreeMap<&str, LockMode> {
        let mut locks = BTreeMap::new();
        for realm in self
            .sessions
            .iter()
            .map(|s| s.realm_id.as_str())
            .chain(self.tokens.iter().map(|t| t.realm_id.as_str()))
        {
            locks.insert(realm, LockMode::Shared);
        }
        for cutoff in &self.realm_cutoffs {
            locks.insert(cutoff.realm_id.as_str(), LockMode::Exclusive);
        }
        locks
    }

    /// The sessions whose end and tokens must not be written concurrently: an admin's
    /// session deletion names no user, so the user's lock cannot make it meet a token of
    /// that session stored at the same time (a kept token the deletion should have taken).
    pub fn session_locks(&self) -> BTreeSet<&str> {
        let ends = self.revocations.iter().filter_map(|r| match r {
            Revocation::Session { session_id, .. } => Some(session_id.as_str()),
            _ => None,
        });
        let tokens = self.tokens.iter().filter_map(|t| t.session_id.as_deref());
        ends.chain(tokens).collect()
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
        // Memberships and grants meet their user's deletion (a cutoff) the same way.
        for user in self.directory.member_users() {
            locks.entry(user).or_insert(LockMode::Shared);
        }
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

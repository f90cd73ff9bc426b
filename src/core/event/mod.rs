//! The typed event every input shape is parsed into, and what it asks of the database.
//!
//! Parsing (`parse`) turns bytes into an [`Event`]; from then on the rest of the program
//! works with known-good values and never looks at JSON again.

mod directory;
mod fields;
mod parse;

pub use directory::{
    Affected, DirectoryAction, GroupRecord, MemberRef, OrganizationRecord, RoleKey, RoleRecord,
};
pub use fields::kind_of as json_kind;
pub use parse::{
    parse_message, read_admin_group, read_admin_role, read_admin_user, ParseError, Shape,
};

use std::collections::BTreeMap;
use std::fmt;

pub use super::ids::{ClientId, EventId, RealmId, RealmName, SessionId, UserId};

use secrecy::SecretString;
use serde_json::{Map, Value};

/// Upper bound for a Keycloak timestamp (epoch ms): keeps version keys fixed-width.
pub const MAX_EPOCH_MS: i64 = 999_999_999_999_999;

/// One Keycloak event (or application token message), whichever shape it arrived in.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Idempotency key. For a Keycloak event, derived from what every path carries
    /// (provider envelope, aznamier queue, REST backfill), so one Keycloak event counts
    /// once whichever brought it; for a token message, its id. It also breaks ties
    /// between events of the same millisecond, alike on every path.
    pub id: EventId,
    /// The message's own id: Keycloak's or the publisher's, or, without one, derived from
    /// the message's whole content. Kept beside the key (`processed_events.message_id`).
    pub message_id: EventId,
    /// Epoch milliseconds at which Keycloak recorded the event.
    pub time: i64,
    pub realm_id: RealmId,
    pub kind: Kind,
    /// `LOGIN`, `USER.UPDATE`, `refresh`…: what `processed_events.type` records.
    pub type_name: String,
    pub shape: Shape,
    pub action: Action,
}

impl Event {
    /// Which of `lanes` concurrent batches should take this event: every event of one
    /// user (or, without a user, of one session, else of one realm) goes the same way,
    /// so concurrent transactions seldom wait for each other's locks. The apply path is
    /// correct however events are split; this only spares the waiting.
    pub fn lane(&self, lanes: usize) -> usize {
        if lanes <= 1 {
            return 0;
        }
        let key = match (&self.action, self.action.user_id()) {
            (_, Some(user)) => user.as_str(),
            (Action::EndSession { session_id, .. }, None) => session_id.as_str(),
            _ => self.realm_id.as_str(),
        };
        (crate::core::ids::stable_hash(key) % lanes as u64) as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Admin,
    Token,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Admin => "admin",
            Kind::Token => "token",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of Keycloak's stored event lists a backfill reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventStream {
    /// `GET …/events`: user events.
    User,
    /// `GET …/admin-events`.
    Admin,
}

impl EventStream {
    pub fn path(self) -> &'static str {
        match self {
            EventStream::User => "events",
            EventStream::Admin => "admin-events",
        }
    }
}

impl fmt::Display for EventStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

/// What an event means for the synchronised tables (GUIDE §4), decided once at parse time.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// REGISTER: the names Keycloak put in the details (`username`, `email`,
    /// `first_name`, `last_name`); the user is enabled and created at the event's time.
    Register {
        user_id: UserId,
        profile: Profile,
    },
    Login {
        user_id: UserId,
        session_id: Option<SessionId>,
        client_id: Option<ClientId>,
        ip_address: Option<String>,
        username: Option<String>,
        /// `details.remember_me`: the realm's remember-me timeouts apply to the session.
        remember_me: bool,
        /// `details.refresh_token_type: Offline`: the grant made an offline session only.
        offline: bool,
    },
    LoginError {
        user_id: UserId,
    },
    Logout {
        user_id: UserId,
        session_id: SessionId,
    },
    RefreshToken {
        user_id: UserId,
        session_id: SessionId,
        client_id: Option<ClientId>,
        ip_address: Option<String>,
    },
    /// CODE_TO_TOKEN and IMPERSONATE: evidence that the session exists (sessions begun
    /// before keycloak-sync was deployed appear at their first activity).
    SessionActivity {
        user_id: UserId,
        session_id: SessionId,
        client_id: Option<ClientId>,
        ip_address: Option<String>,
    },
    /// UPDATE_PROFILE, UPDATE_EMAIL, VERIFY_EMAIL and admin USER CREATE/UPDATE.
    UpdateProfile {
        user_id: UserId,
        profile: Profile,
    },
    DeleteUser {
        user_id: UserId,
    },
    /// An admin logged the user out (`users/{id}/logout`): every session begun by then
    /// ends and the tokens issued by then are void.
    LogoutUser {
        user_id: UserId,
    },
    /// USER_DISABLED_BY_PERMANENT_LOCKOUT.
    DisableUser {
        user_id: UserId,
    },
    RevokeGrant {
        user_id: UserId,
        client_id: ClientId,
    },
    /// Admin USER_SESSION DELETE (`sessions/{id}`). Keycloak removes the online session;
    /// with `isOffline=true` (representation `{"offline":true}`, 24+) it revokes the
    /// offline session of that id and the online one with it.
    EndSession {
        session_id: SessionId,
        offline: bool,
    },
    /// USER_SESSION_DELETED (Keycloak 26.5+): its expiry task removed the session, timed
    /// out or made invalid (remember-me switched off), possibly minutes after the fact.
    SessionExpired {
        user_id: UserId,
        session_id: SessionId,
    },
    /// Admin REALM ACTION `logout-all`: Keycloak removes every session of the realm and
    /// sets the realm's not-before, voiding every token issued by then.
    LogoutRealm,
    /// Admin REALM UPDATE: the realm's session policy may have changed; read it again.
    RealmUpdated,
    StoreToken(TokenMessage),
    /// Groups, roles, organizations and their members.
    Directory(DirectoryAction),
    /// Valid, but nothing to do: recorded as `ignored`, counted by reason.
    Ignore(Ignored),
}

/// Why a valid Keycloak event changes nothing. Only input that is not a Keycloak event at
/// all is rejected; an event that lacks what its effect needs is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ignored {
    /// Its type (or resource) has no effect on the synchronised tables.
    NoEffect,
    /// Keycloak recorded a failed operation.
    Failed,
    /// It lacks this field, which its effect needs (Keycloak emits UPDATE_PROFILE and
    /// UPDATE_EMAIL without `userId` during a first broker login, for example).
    Missing(&'static str),
    /// Its realm is not among `limits.realms`.
    OtherRealm,
}

impl Ignored {
    /// A bounded metric label: `no_effect`, `failed` or `missing`.
    pub fn reason(self) -> &'static str {
        match self {
            Ignored::NoEffect => "no_effect",
            Ignored::Failed => "failed",
            Ignored::Missing(_) => "missing",
            Ignored::OtherRealm => "other_realm",
        }
    }

    /// The missing field, when that is the reason (a field name of ours, so bounded).
    pub fn field(self) -> &'static str {
        match self {
            Ignored::Missing(field) => field,
            _ => "",
        }
    }
}

impl Action {
    pub fn is_ignored(&self) -> bool {
        matches!(self, Action::Ignore(_))
    }

    /// Whether the event leaves the user's profile incomplete.
    pub fn enrichment(&self) -> Option<Enrichment> {
        match self {
            Action::Register { .. } | Action::UpdateProfile { .. } => {
                Some(Enrichment::IfReadBefore)
            }
            Action::Login { .. } | Action::LoginError { .. } | Action::DisableUser { .. } => {
                Some(Enrichment::IfNeverRead)
            }
            _ => None,
        }
    }

    /// The user this event is about, when it names one.
    pub fn user_id(&self) -> Option<&UserId> {
        match self {
            Action::Register { user_id, .. }
            | Action::Login { user_id, .. }
            | Action::LoginError { user_id }
            | Action::Logout { user_id, .. }
            | Action::RefreshToken { user_id, .. }
            | Action::SessionActivity { user_id, .. }
            | Action::UpdateProfile { user_id, .. }
            | Action::DeleteUser { user_id }
            | Action::LogoutUser { user_id }
            | Action::SessionExpired { user_id, .. }
            | Action::DisableUser { user_id }
            | Action::RevokeGrant { user_id, .. } => Some(user_id),
            Action::StoreToken(token) => Some(&token.user_id),
            Action::Directory(
                DirectoryAction::Membership { user_id, .. }
                | DirectoryAction::RoleMapping { user_id, .. },
            ) => Some(user_id),
            Action::Directory(_) => None,
            Action::EndSession { .. }
            | Action::LogoutRealm
            | Action::RealmUpdated
            | Action::Ignore(_) => None,
        }
    }
}

/// When an event makes the user worth reading from the Admin API (GUIDE §2.3), because
/// events carry only part of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrichment {
    /// Only if the user was never read whole: the event says nothing new about the profile.
    IfNeverRead,
    /// If the user was not read whole since this event: it changed the profile in ways it
    /// does not fully carry.
    IfReadBefore,
}

/// Profile fields an event sets; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub username: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_verified: Option<bool>,
    pub enabled: Option<bool>,
    /// The whole attribute map (a representation): keys it lacks are removed.
    pub attributes: Option<Map<String, Value>>,
    /// Single attributes an event changed, each to its values or, `None`, removed.
    pub attribute_changes: BTreeMap<String, Option<Vec<String>>>,
    /// Epoch ms (`createdTimestamp`).
    pub created_at: Option<i64>,
    /// Read whole from the Admin API: a name or email it leaves out is empty, not unknown.
    pub complete: bool,
}

impl Profile {
    pub fn is_empty(&self) -> bool {
        *self == Profile::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TokenType {
    Refresh,
    Offline,
}

impl TokenType {
    /// `tokenType` of a message, `auth_vault.token_type` of a row.
    pub fn from_stored(text: &str) -> Option<TokenType> {
        match text {
            "refresh" => Some(TokenType::Refresh),
            "offline" => Some(TokenType::Offline),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Refresh => "refresh",
            TokenType::Offline => "offline",
        }
    }
}

/// A token an application wants kept in the vault. `token` is a secret: its `Debug`
/// prints `[REDACTED]`.
#[derive(Debug, Clone)]
pub struct TokenMessage {
    pub user_id: UserId,
    pub session_id: Option<SessionId>,
    pub client_id: Option<ClientId>,
    pub token_type: TokenType,
    pub token: SecretString,
    pub expires_at: Option<i64>,
    pub metadata: Map<String, Value>,
}

impl PartialEq for TokenMessage {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret;
        self.user_id == other.user_id
            && self.session_id == other.session_id
            && self.client_id == other.client_id
            && self.token_type == other.token_type
            && self.token.expose_secret() == other.token.expose_secret()
            && self.expires_at == other.expires_at
            && self.metadata == other.metadata
    }
}

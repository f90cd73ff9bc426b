//! What the Admin API says, planned with the same rules as events, and how a profile
//! read whole differs from the stored one.

use super::version::Version;
use super::Stamp;
use crate::core::event::{GroupRecord, Profile, RoleRecord};
use crate::core::ids::{RealmId, SessionId, UserId};

/// What the Admin API says about a user or session (enrichment, reconcile), planned
/// with the same rules as events.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// `at`: when it was read (epoch ms); a disabled user's sessions end then.
    Profile {
        realm_id: RealmId,
        user_id: UserId,
        profile: Profile,
        at: i64,
        version: Version,
    },
    /// Keycloak no longer has the user.
    UserGone {
        realm_id: RealmId,
        user_id: UserId,
        at: i64,
        version: Version,
    },
    /// A user's groups and effective roles as the Admin API lists them, each with its
    /// verdict: listed (`true`), or held before and no longer listed (`false`).
    Directory {
        realm_id: RealmId,
        user_id: UserId,
        groups: Vec<(GroupRecord, bool)>,
        roles: Vec<(RoleRecord, bool)>,
        at: i64,
        version: Version,
    },
    /// Keycloak no longer has the session.
    SessionGone {
        realm_id: RealmId,
        user_id: UserId,
        session_id: SessionId,
        at: i64,
        version: Version,
    },
}

impl Observation {
    pub(super) fn stamp(&self) -> Stamp<'_> {
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
        }
        | Observation::Directory {
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

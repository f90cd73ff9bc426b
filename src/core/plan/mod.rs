//! Events → the changes they make, folded per row.
//!
//! Every change is built from operations that commute: last-writer-wins by a
//! [`Version`], minimum, maximum and sums of distinct events. Folding a batch here and
//! merging the result into the stored row in SQL with the same operations therefore gives
//! the same rows whatever order, batching or redelivery the events come in (GUIDE §4).

mod changes;
mod directory;
mod observation;
mod version;

pub use changes::{
    EndReason, EnrichmentRequest, LockMode, Plan, RealmCutoff, Revocation, SessionChange,
    SessionCutoff, SessionEnd, TokenChange, UserChange,
};
pub use directory::{
    DirectoryPlan, GrantChange, GroupChange, MembershipChange, OrganizationChange, Recompute,
    RoleChange, RoleNameDeletion, Verdict,
};
pub use observation::{profile_differences, Observation, StoredProfile};
pub use version::{Version, Versioned};

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

use changes::{token_slot, TokenSlot};
use version::{first_writer, last_writer, max_opt, min_opt};

use crate::core::event::{Action, Enrichment, Event, Profile};
use crate::core::ids::{ClientId, RealmId, SessionId, UserId};

/// Where a change comes from: its realm, its time and its position among writes.
struct Stamp<'a> {
    realm_id: &'a RealmId,
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

#[derive(Default)]
struct Planner {
    users: BTreeMap<UserId, UserChange>,
    sessions: BTreeMap<SessionId, SessionChange>,
    cutoffs: Vec<SessionCutoff>,
    realm_cutoffs: Vec<RealmCutoff>,
    revocations: Vec<Revocation>,
    tokens: BTreeMap<TokenSlot, TokenChange>,
    stale_policies: Vec<RealmId>,
    refreshed_sessions: Vec<SessionId>,
    enrichment: BTreeMap<UserId, EnrichmentRequest>,
    directory: directory::DirectoryPlanner,
}

impl Planner {
    fn user(&mut self, stamp: &Stamp, user_id: &UserId) -> &mut UserChange {
        self.users
            .entry(user_id.clone())
            .or_insert_with(|| UserChange {
                id: user_id.clone(),
                realm_id: stamp.realm_id.clone(),
                ..UserChange::default()
            })
    }

    fn session(
        &mut self,
        stamp: &Stamp,
        session_id: &SessionId,
        user_id: Option<&UserId>,
    ) -> &mut SessionChange {
        let session = self
            .sessions
            .entry(session_id.clone())
            .or_insert_with(|| SessionChange {
                id: session_id.clone(),
                realm_id: stamp.realm_id.clone(),
                user_id: None,
                client_id: None,
                ip_address: None,
                started_at: stamp.time,
                last_refresh_at: None,
                refresh_count: 0,
                last_activity_at: None,
                remember_me: false,
                offline_only: false,
                end: None,
            });
        session.started_at = session.started_at.min(stamp.time);
        if session.user_id.is_none() {
            session.user_id = user_id.cloned();
        }
        session
    }

    /// Ends the online session; `offline`: the offline session of the same id too.
    fn end_session(
        &mut self,
        stamp: &Stamp,
        session_id: &SessionId,
        user_id: Option<&UserId>,
        reason: EndReason,
        offline: bool,
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
            session_id: session_id.clone(),
            at: stamp.time,
            offline,
        });
    }

    fn logout_realm(&mut self, stamp: &Stamp) {
        self.realm_cutoffs.push(RealmCutoff {
            realm_id: stamp.realm_id.clone(),
            at: stamp.time,
            version: stamp.version.clone(),
        });
        self.revocations.push(Revocation::Realm {
            realm_id: stamp.realm_id.clone(),
            at: stamp.time,
        });
    }

    fn cut_off(&mut self, stamp: &Stamp, user_id: &UserId, reason: EndReason) {
        self.cutoffs.push(SessionCutoff {
            user_id: user_id.clone(),
            at: stamp.time,
            reason,
            version: stamp.version.clone(),
            client_id: None,
        });
        self.revocations.push(Revocation::User {
            user_id: user_id.clone(),
            at: stamp.time,
        });
    }

    fn update_profile(&mut self, stamp: &Stamp, user_id: &UserId, profile: &Profile) {
        self.user(stamp, user_id)
            .apply_profile(profile, &stamp.version);
        if profile.enabled == Some(false) {
            // Keycloak keeps a disabled user's sessions (its Admin API lists them, and they
            // work again once the user is enabled), so they stay open; the cutoff takes the
            // user's tokens out of the vault and keeps older ones out.
            self.cut_off(stamp, user_id, EndReason::UserDisabled);
        }
    }

    fn delete_user(&mut self, stamp: &Stamp, user_id: &UserId) {
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
            } => self.end_session(&stamp, session_id, Some(user_id), EndReason::Expired, false),
            Observation::Directory {
                user_id,
                groups,
                roles,
                ..
            } => self.directory.observe(
                &stamp.version,
                stamp.time,
                stamp.realm_id,
                user_id,
                groups,
                roles,
            ),
        }
    }

    fn ask_enrichment(&mut self, event: &Event, version: &Version) {
        let (Some(need), Some(user)) = (event.action.enrichment(), event.action.user_id()) else {
            return;
        };
        let if_read_before = need == Enrichment::IfReadBefore;
        let request = self
            .enrichment
            .entry(user.clone())
            .or_insert_with(|| EnrichmentRequest {
                user_id: user.clone(),
                version: version.clone(),
                if_read_before,
            });
        if *version > request.version {
            request.version = version.clone();
        }
        request.if_read_before |= if_read_before;
    }

    /// A session of `user_id` that an event refreshed in Keycloak, saying where it came
    /// from: the client and address it began with (the first writer wins).
    fn session_from(
        &mut self,
        stamp: &Stamp,
        session_id: &SessionId,
        user_id: &UserId,
        (client_id, ip_address): (Option<&ClientId>, Option<&String>),
    ) -> &mut SessionChange {
        let session = self.session(stamp, session_id, Some(user_id));
        if let Some(client) = client_id {
            first_writer(&mut session.client_id, client.clone(), &stamp.version);
        }
        if let Some(ip) = ip_address {
            first_writer(&mut session.ip_address, ip.clone(), &stamp.version);
        }
        max_opt(&mut session.last_activity_at, stamp.time);
        session
    }

    /// The newest message per vault slot wins; the metadata of all of them is merged,
    /// newer values winning.
    fn keep_token(&mut self, change: TokenChange) {
        match self.tokens.entry(token_slot(&change)) {
            Entry::Vacant(slot) => {
                slot.insert(change);
            }
            Entry::Occupied(mut slot) => {
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

    /// One arm per action; read whole, it is the table of GUIDE §4.
    fn add(&mut self, event: &Event) {
        let stamp = Stamp::of(event);
        let version = stamp.version.clone();
        self.ask_enrichment(event, &version);
        match &event.action {
            Action::Register { user_id, profile } => {
                self.user(&stamp, user_id).apply_profile(profile, &version);
            }
            Action::Login {
                user_id,
                session_id,
                client_id,
                ip_address,
                username,
                remember_me,
                offline,
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
                    let origin = (client_id.as_ref(), ip_address.as_ref());
                    let session = self.session_from(&stamp, session_id, user_id, origin);
                    session.remember_me |= *remember_me;
                    session.offline_only |= *offline;
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
            } => self.end_session(&stamp, session_id, Some(user_id), EndReason::Logout, true),
            Action::RefreshToken {
                user_id,
                session_id,
                client_id,
                ip_address,
            } => {
                self.refreshed_sessions.push(session_id.clone());
                let origin = (client_id.as_ref(), ip_address.as_ref());
                let session = self.session_from(&stamp, session_id, user_id, origin);
                max_opt(&mut session.last_refresh_at, event.time);
                session.refresh_count += 1;
            }
            Action::SessionActivity {
                user_id,
                session_id,
                client_id,
                ip_address,
            } => {
                let origin = (client_id.as_ref(), ip_address.as_ref());
                self.session_from(&stamp, session_id, user_id, origin);
            }
            Action::UpdateProfile { user_id, profile } => {
                self.update_profile(&stamp, user_id, profile)
            }
            Action::DeleteUser { user_id } => self.delete_user(&stamp, user_id),
            Action::LogoutUser { user_id } => self.cut_off(&stamp, user_id, EndReason::Admin),
            Action::DisableUser { user_id } => {
                let profile = Profile {
                    enabled: Some(false),
                    ..Profile::default()
                };
                self.update_profile(&stamp, user_id, &profile);
            }
            Action::RevokeGrant { user_id, client_id } => {
                // Keycloak ends the user's offline sessions of the client with the consent.
                self.cutoffs.push(SessionCutoff {
                    user_id: user_id.clone(),
                    at: stamp.time,
                    reason: EndReason::Revoked,
                    version: stamp.version.clone(),
                    client_id: Some(client_id.clone()),
                });
                self.revocations.push(Revocation::OfflineGrant {
                    user_id: user_id.clone(),
                    client_id: client_id.clone(),
                    at: event.time,
                });
            }
            Action::SessionExpired {
                user_id,
                session_id,
            } => self.end_session(&stamp, session_id, Some(user_id), EndReason::Expired, false),
            Action::EndSession {
                session_id,
                offline,
            } => self.end_session(&stamp, session_id, None, EndReason::Admin, *offline),
            Action::LogoutRealm => self.logout_realm(&stamp),
            Action::RealmUpdated => self.stale_policies.push(event.realm_id.clone()),
            Action::StoreToken(message) => self.keep_token(TokenChange {
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
            }),
            Action::Directory(action) => {
                self.directory
                    .add(&event.realm_id, event.time, &version, action)
            }
            Action::Ignore(_) => {}
        }
    }

    fn finish(mut self) -> Plan {
        self.cutoffs.sort();
        self.cutoffs.dedup();
        self.realm_cutoffs.sort();
        self.realm_cutoffs.dedup();
        self.stale_policies.sort();
        self.stale_policies.dedup();
        self.revocations.sort();
        self.revocations.dedup();
        self.refreshed_sessions.sort();
        self.refreshed_sessions.dedup();
        Plan {
            users: self.users.into_values().collect(),
            sessions: self.sessions.into_values().collect(),
            cutoffs: self.cutoffs,
            realm_cutoffs: self.realm_cutoffs,
            revocations: self.revocations,
            tokens: self.tokens.into_values().collect(),
            stale_policies: self.stale_policies,
            refreshed_sessions: self.refreshed_sessions,
            enrichment: self.enrichment.into_values().collect(),
            directory: self.directory.finish(),
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

#[cfg(test)]
mod tests;

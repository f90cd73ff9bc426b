//! `keycloak-sync reconcile`: a full sweep of each realm's users through the Admin API,
//! for what events cannot tell (changes made before keycloak-sync ran, LDAP imports,
//! direct database edits, lost events).
//!
//! Profiles that differ are applied at the time they were read (less a clock-skew
//! allowance), so an event newer than the sweep still wins. Users Keycloak no longer
//! lists are confirmed one by one (a listing paged while users are added can skip some)
//! and only then deleted — and not at all if more than `reconcile.max_delete_percent` of
//! the realm would go, which is what pointing at the wrong realm or server looks like.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use thiserror::Error;

use super::directory::{read_directory, DirectoryReadError};
use crate::config::{ReconcileSettings, SessionCheck};
use crate::core::event::read_admin_user;
use crate::core::ids::{RealmId, RealmName, UserId};
use crate::core::plan::{profile_differences, Observation, Version};
use crate::keycloak::{AdminClient, KeycloakError};
use crate::store::{ListedSessions, ReconcileRun, Store, StoreError};
use crate::telemetry::metrics;
use crate::telemetry::progress::{Progress, Unit};

/// Keycloak's clock may run behind ours: what a sweep reads is placed this much earlier,
/// so that an event Keycloak stamped just after the read is never taken for older.
const CLOCK_SKEW_MS: i64 = 30_000;
/// Sessions younger than this are not compared: Keycloak may not list them yet.
const SESSION_GRACE_MS: i64 = 60_000;
/// Requests to Keycloak in flight at once when confirming deletions or reading sessions.
const CONCURRENCY: usize = 4;
/// Missing users confirmed (and deleted) per step.
const CONFIRM_CHUNK: i64 = 200;
/// Above this many sessions in Keycloak, sessions are read per user whatever it costs in
/// requests: the per-client listing keeps every listed session in memory (16 bytes each).
const MAX_LISTED_SESSIONS: u64 = 4_000_000;

/// How a reconcile read Keycloak's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionSource {
    /// `GET …/users/{id}/sessions` for each user with active sessions here.
    #[default]
    PerUser,
    /// `GET …/clients/{id}/user-sessions`, paged, for each client with sessions; then per
    /// user only for the users with a session no client listed (which confirms the end
    /// exactly as the per-user way would).
    PerClient,
}

impl fmt::Display for SessionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionSource::PerUser => "per user",
            SessionSource::PerClient => "per client",
        })
    }
}

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// Report the differences, write nothing.
    pub dry_run: bool,
    /// Delete even above `max_delete_percent`.
    pub allow_mass_delete: bool,
    pub max_delete_percent: f64,
    pub sessions: SessionCheck,
    /// Also sweep each listed user's groups and effective roles.
    pub directory: bool,
    pub progress: bool,
}

impl ReconcileOptions {
    pub fn scheduled(settings: &ReconcileSettings) -> Self {
        ReconcileOptions {
            dry_run: false,
            allow_mass_delete: false,
            max_delete_percent: settings.max_delete_percent,
            sessions: settings.sessions,
            directory: settings.directory,
            progress: false,
        }
    }
}

/// What a sweep of one realm found (and, unless a dry run, did).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReconcileReport {
    pub realm: String,
    pub dry_run: bool,
    /// Users Keycloak listed.
    pub listed: u64,
    /// Listed users unknown here: created.
    pub created: u64,
    /// Listed users whose profile differed: updated.
    pub updated: u64,
    pub unchanged: u64,
    /// Listed users whose representation could not be read (never deleted; see the log).
    pub unreadable: u64,
    /// Live local users of the realm before the sweep, and those Keycloak did not list.
    pub local: u64,
    pub missing: u64,
    /// Missing users Keycloak confirmed gone: deleted here.
    pub deleted: u64,
    /// Missing from the listing but found by id (created or moved during the sweep).
    pub still_present: u64,
    /// A dry run that a real run would stop at the mass-delete guard.
    pub over_delete_limit: bool,
    /// Users whose sessions were compared, and local sessions Keycloak no longer has.
    pub session_users: u64,
    pub sessions_ended: u64,
    /// How sessions were read, and the Admin API requests it took.
    pub session_source: SessionSource,
    pub session_requests: u64,
    /// Users whose groups and effective roles were read; memberships and grants held
    /// here before, and those Keycloak no longer lists.
    pub directory_users: u64,
    pub memberships_held: u64,
    pub memberships_ended: u64,
    /// A dry run that a real run would stop at the guard for memberships.
    pub over_membership_limit: bool,
    pub elapsed: Duration,
}

impl fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb =
            |done: &'static str, would: &'static str| if self.dry_run { would } else { done };
        write!(
            f,
            "reconcile summary: realm {}{}: Keycloak listed {} users; {} {}, {} {}, {} unchanged, {} unreadable; \
             {} of {} local users missing from Keycloak: {} {}, {} still present{}; \
             sessions of {} users compared ({}, {} requests): {} {}; \
             groups and roles of {} users read: {} of {} held {}{} ({:.1}s)",
            self.realm,
            if self.dry_run { " (dry run)" } else { "" },
            self.listed,
            self.created,
            verb("created", "to create"),
            self.updated,
            verb("updated", "to update"),
            self.unchanged,
            self.unreadable,
            self.missing,
            self.local,
            self.deleted,
            verb("deleted", "to delete"),
            self.still_present,
            if self.over_delete_limit {
                " (over the mass-delete limit: a real run stops here)"
            } else {
                ""
            },
            self.session_users,
            self.session_source,
            self.session_requests,
            self.sessions_ended,
            verb("sessions ended", "sessions to end"),
            self.directory_users,
            self.memberships_ended,
            self.memberships_held,
            verb("no longer held", "to end"),
            if self.over_membership_limit {
                " (over the mass-delete limit: a real run stops here)"
            } else {
                ""
            },
            self.elapsed.as_secs_f64(),
        )
    }
}

#[derive(Debug, Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Keycloak(#[from] KeycloakError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Directory(#[from] DirectoryReadError),
    #[error(
        "realm {realm}: {missing} of {local} local users ({percent:.1} %) are not in Keycloak, \
         over reconcile.max_delete_percent ({limit} %): nothing was deleted. Check keycloak.url \
         and keycloak.realms; if the deletions are right, run again with --allow-mass-delete"
    )]
    MassDelete {
        realm: String,
        missing: u64,
        local: u64,
        percent: f64,
        limit: f64,
    },
    #[error(
        "realm {realm}: {ending} of {held} memberships and role grants ({percent:.1} %) are no \
         longer in Keycloak, over reconcile.max_delete_percent ({limit} %): none was ended. \
         Check keycloak.url and keycloak.realms; if it is right, run again with \
         --allow-mass-delete"
    )]
    MassMembershipRemoval {
        realm: String,
        ending: u64,
        held: u64,
        percent: f64,
        limit: f64,
    },
    #[error("realm {realm}: another reconcile of this realm is running")]
    Busy { realm: String },
    #[error("realm {realm}: user {index} of Keycloak's list has no readable id: {problem}")]
    UnreadableId {
        realm: String,
        index: u64,
        problem: String,
    },
}

/// Reconciles every configured realm; one realm failing does not stop the others.
pub async fn reconcile_all(
    store: &Store,
    keycloak: &Arc<AdminClient>,
    options: &ReconcileOptions,
) -> Vec<Result<ReconcileReport, ReconcileError>> {
    let mut results = Vec::new();
    for realm in keycloak.realms() {
        results.push(reconcile_realm(store, keycloak, realm, options).await);
    }
    results
}

pub async fn reconcile_realm(
    store: &Store,
    keycloak: &Arc<AdminClient>,
    realm: &RealmName,
    options: &ReconcileOptions,
) -> Result<ReconcileReport, ReconcileError> {
    let started = Instant::now();
    let realm_id = keycloak.realm_id(realm).await?;
    let mut run = store
        .begin_reconcile(&realm_id)
        .await?
        .ok_or_else(|| ReconcileError::Busy {
            realm: realm.to_string(),
        })?;
    let mut sweep = Sweep {
        store,
        keycloak,
        realm,
        realm_id: &realm_id,
        options,
        report: ReconcileReport {
            realm: realm.to_string(),
            dry_run: options.dry_run,
            ..ReconcileReport::default()
        },
        removals: Vec::new(),
    };
    let swept = async {
        sweep.profiles(&mut run).await?;
        sweep.deletions(&mut run).await?;
        sweep.membership_removals().await
    }
    .await;
    // The lease goes whether the sweep finished or failed, so the next run may start.
    let finished = run.finish().await;
    swept?;
    finished?;
    sweep.sessions().await?;
    let mut report = sweep.report;
    report.elapsed = started.elapsed();
    Ok(report)
}

struct Sweep<'a> {
    store: &'a Store,
    keycloak: &'a Arc<AdminClient>,
    realm: &'a RealmName,
    realm_id: &'a RealmId,
    options: &'a ReconcileOptions,
    report: ReconcileReport,
    /// What Keycloak no longer lists for the users swept, applied at the end behind the
    /// guard (what Keycloak does list is applied page by page).
    removals: Vec<Observation>,
}

impl Sweep<'_> {
    /// Pages through Keycloak's users, applying the profiles that differ.
    async fn profiles(&mut self, run: &mut ReconcileRun) -> Result<(), ReconcileError> {
        // The count only sizes the progress bar: not asked for when none is drawn.
        let total = if self.options.progress {
            self.keycloak.user_count(self.realm).await.ok()
        } else {
            None
        };
        let bar = Progress::new(
            self.options.progress,
            format!("{}: users", self.realm),
            total,
            Unit::Items("users"),
        );
        let max = self.keycloak.page_size();
        let mut first = 0u64;
        loop {
            let read_at = crate::now_ms() - CLOCK_SKEW_MS;
            let page = self.keycloak.users(self.realm, first, max).await?;
            let mut ids = Vec::with_capacity(page.len());
            let mut read = Vec::with_capacity(page.len());
            for (offset, value) in page.iter().enumerate() {
                let index = first + offset as u64;
                match read_admin_user(value, "user") {
                    Ok((id, profile)) => {
                        ids.push(id.clone());
                        read.push((id, profile));
                    }
                    Err(problem) => {
                        let Some(id) = value.get("id").and_then(|v| v.as_str()) else {
                            return Err(ReconcileError::UnreadableId {
                                realm: self.realm.to_string(),
                                index,
                                problem: problem.to_string(),
                            });
                        };
                        tracing::warn!(realm = %self.realm, user_id = id.escape_debug().to_string(), %problem, "user representation not applied; the user is kept");
                        self.report.unreadable += 1;
                        ids.push(UserId::from(id));
                    }
                }
            }
            run.saw(&ids).await?;
            let stored = self.store.stored_profiles(&ids).await?;
            let version = Version::observed(read_at, "reconcile");
            let mut observations = Vec::new();
            for (user_id, profile) in read {
                match stored.get(&user_id) {
                    None => self.report.created += 1,
                    Some(stored) => {
                        if !stored.deleted {
                            self.report.local += 1;
                        }
                        let differences = profile_differences(stored, &profile);
                        if differences.is_empty() {
                            self.report.unchanged += 1;
                            continue;
                        }
                        tracing::debug!(realm = %self.realm, %user_id, fields = ?differences, "profile differs from Keycloak");
                        self.report.updated += 1;
                    }
                }
                observations.push(Observation::Profile {
                    realm_id: self.realm_id.clone(),
                    user_id,
                    profile,
                    at: read_at,
                    version: version.clone(),
                });
            }
            if !self.options.dry_run {
                self.store.apply_observations(&observations).await?;
            }
            if self.options.directory {
                self.directories(&ids, read_at).await?;
            }
            self.report.listed += page.len() as u64;
            bar.inc(page.len() as u64);
            if page.len() < max as usize {
                break;
            }
            first += page.len() as u64;
        }
        bar.finish();
        Ok(())
    }

    /// Reads the groups and effective roles of a page's users: what Keycloak lists is
    /// applied now, what it no longer lists is kept for the guarded step at the end.
    async fn directories(&mut self, ids: &[UserId], read_at: i64) -> Result<(), ReconcileError> {
        let version = Version::observed(read_at, "reconcile");
        let mut held = Vec::new();
        for group in ids.chunks(CONCURRENCY) {
            let reads = group.iter().map(|user_id| {
                read_directory(
                    self.store,
                    self.keycloak,
                    (self.realm, self.realm_id),
                    user_id,
                    (read_at, &version),
                )
            });
            for observation in try_join_all(reads).await?.into_iter().flatten() {
                let Observation::Directory {
                    realm_id,
                    user_id,
                    groups,
                    roles,
                    at,
                    version,
                } = observation
                else {
                    continue;
                };
                self.report.directory_users += 1;
                let (kept_groups, ended_groups): (Vec<_>, Vec<_>) =
                    groups.into_iter().partition(|(_, member)| *member);
                let (kept_roles, ended_roles): (Vec<_>, Vec<_>) =
                    roles.into_iter().partition(|(_, held)| *held);
                let ended = (ended_groups.len() + ended_roles.len()) as u64;
                self.report.memberships_ended += ended;
                self.report.memberships_held +=
                    (kept_groups.len() + kept_roles.len()) as u64 + ended;
                if !ended_groups.is_empty() || !ended_roles.is_empty() {
                    self.removals.push(Observation::Directory {
                        realm_id: realm_id.clone(),
                        user_id: user_id.clone(),
                        groups: ended_groups,
                        roles: ended_roles,
                        at,
                        version: version.clone(),
                    });
                }
                held.push(Observation::Directory {
                    realm_id,
                    user_id,
                    groups: kept_groups,
                    roles: kept_roles,
                    at,
                    version,
                });
            }
        }
        if !self.options.dry_run {
            self.store.apply_observations(&held).await?;
        }
        Ok(())
    }

    /// Ends the memberships and grants Keycloak no longer lists — not at all if more than
    /// `reconcile.max_delete_percent` of those held would end, as with users.
    async fn membership_removals(&mut self) -> Result<(), ReconcileError> {
        let (ending, held) = (self.report.memberships_ended, self.report.memberships_held);
        if ending == 0 {
            return Ok(());
        }
        let percent = ending as f64 * 100.0 / held.max(1) as f64;
        if percent > self.options.max_delete_percent && !self.options.allow_mass_delete {
            if self.options.dry_run {
                self.report.over_membership_limit = true;
                return Ok(());
            }
            return Err(ReconcileError::MassMembershipRemoval {
                realm: self.realm.to_string(),
                ending,
                held,
                percent,
                limit: self.options.max_delete_percent,
            });
        }
        if !self.options.dry_run {
            for chunk in self.removals.chunks(CONFIRM_CHUNK as usize) {
                self.store.apply_observations(chunk).await?;
            }
        }
        Ok(())
    }

    /// Confirms and deletes the local users Keycloak did not list, behind the guard.
    async fn deletions(&mut self, run: &mut ReconcileRun) -> Result<(), ReconcileError> {
        // Local users before this sweep: those Keycloak listed, and those it did not.
        let missing = run.missing_count().await?.max(0) as u64;
        self.report.missing = missing;
        self.report.local += missing;
        let local = self.report.local;
        if missing == 0 {
            return Ok(());
        }
        let percent = missing as f64 * 100.0 / local.max(1) as f64;
        if percent > self.options.max_delete_percent && !self.options.allow_mass_delete {
            if self.options.dry_run {
                self.report.over_delete_limit = true;
                return Ok(());
            }
            return Err(ReconcileError::MassDelete {
                realm: self.realm.to_string(),
                missing,
                local,
                percent,
                limit: self.options.max_delete_percent,
            });
        }
        let bar = Progress::new(
            self.options.progress,
            format!("{}: confirming deletions", self.realm),
            Some(missing),
            Unit::Items("users"),
        );
        let mut after = UserId::default();
        loop {
            let ids = run.missing_after(&after, CONFIRM_CHUNK).await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            let mut gone = Vec::new();
            for group in ids.chunks(CONCURRENCY) {
                let answers =
                    try_join_all(group.iter().map(|id| self.keycloak.user(self.realm, id))).await?;
                let at = crate::now_ms();
                for (user_id, answer) in group.iter().zip(answers) {
                    bar.inc(1);
                    if answer.is_some() {
                        self.report.still_present += 1;
                    } else {
                        gone.push(Observation::UserGone {
                            realm_id: self.realm_id.clone(),
                            user_id: user_id.clone(),
                            at,
                            version: Version::observed(at, "reconcile"),
                        });
                    }
                }
            }
            self.report.deleted += gone.len() as u64;
            if !self.options.dry_run {
                self.store.apply_observations(&gone).await?;
            }
        }
        bar.finish();
        Ok(())
    }

    /// Ends the local sessions that Keycloak no longer has, for all or a sample of the
    /// users with active sessions.
    async fn sessions(&mut self) -> Result<(), ReconcileError> {
        let sample = match self.options.sessions {
            SessionCheck::None => return Ok(()),
            SessionCheck::All => None,
            SessionCheck::Sample(n) => Some(n),
        };
        let checked_at = crate::now_ms();
        let started_before = checked_at - SESSION_GRACE_MS;
        let mut users = self
            .store
            .users_with_active_sessions(self.realm_id, started_before, sample)
            .await?;
        if sample.is_none() {
            if let Some(unlisted) = self.users_no_client_lists(&users, started_before).await? {
                users = unlisted;
            }
        }
        self.report.session_requests += users.len() as u64;
        let bar = Progress::new(
            self.options.progress,
            format!("{}: sessions", self.realm),
            Some(users.len() as u64),
            Unit::Items("users"),
        );
        let version = Version::observed(checked_at, "reconcile");
        for chunk in users.chunks(CONCURRENCY * 25) {
            let mut ended = Vec::new();
            for group in chunk.chunks(CONCURRENCY) {
                ended.extend(
                    try_join_all(group.iter().map(|user_id| {
                        self.ended_sessions(user_id, started_before, checked_at, &version)
                    }))
                    .await?,
                );
            }
            let ended: Vec<Observation> = ended.into_iter().flatten().collect();
            self.report.session_users += chunk.len() as u64;
            self.report.sessions_ended += ended.len() as u64;
            bar.inc(chunk.len() as u64);
            if !self.options.dry_run {
                self.store.apply_observations(&ended).await?;
            }
        }
        bar.finish();
        Ok(())
    }

    /// Reads the realm's sessions client by client when that takes fewer requests than
    /// one per user, and returns the users with an active session here that no client
    /// listed; `None` to read per user (cheaper, too many sessions to hold, or Keycloak
    /// refuses client-session-stats to a service account without view-realm).
    async fn users_no_client_lists(
        &mut self,
        users: &[UserId],
        started_before: i64,
    ) -> Result<Option<Vec<UserId>>, ReconcileError> {
        if users.is_empty() {
            return Ok(None);
        }
        let counts = match self.keycloak.client_session_counts(self.realm).await {
            Ok(counts) => counts,
            Err(KeycloakError::Refused { message, .. }) => {
                tracing::info!(realm = %self.realm, %message, "client session counts refused: reading sessions per user");
                self.report.session_requests += 1;
                return Ok(None);
            }
            Err(error) => return Err(error.into()),
        };
        self.report.session_requests += 1;
        let max = u64::from(self.keycloak.page_size().max(1));
        let total: u64 = counts.iter().map(|c| c.active).sum();
        // A short page ends each client's listing.
        let pages: u64 = counts.iter().map(|c| c.active / max + 1).sum();
        if pages >= users.len() as u64 || total > MAX_LISTED_SESSIONS {
            return Ok(None);
        }
        self.report.session_source = SessionSource::PerClient;
        let bar = Progress::new(
            self.options.progress,
            format!("{}: sessions by client", self.realm),
            Some(total),
            Unit::Items("sessions"),
        );
        let mut listed = ListedSessions::default();
        for client in counts.iter().filter(|c| c.active > 0) {
            let mut first = 0u64;
            loop {
                let page = self
                    .keycloak
                    .client_sessions(self.realm, &client.id, first, max as u32)
                    .await?;
                self.report.session_requests += 1;
                for (session, _user) in &page {
                    listed.insert(session);
                }
                bar.inc(page.len() as u64);
                if (page.len() as u64) < max {
                    break;
                }
                first += max;
            }
        }
        bar.finish();
        let unlisted = self
            .store
            .users_with_unlisted_sessions(self.realm_id, started_before, &listed)
            .await?;
        Ok(Some(unlisted))
    }

    async fn ended_sessions(
        &self,
        user_id: &UserId,
        started_before: i64,
        checked_at: i64,
        version: &Version,
    ) -> Result<Vec<Observation>, ReconcileError> {
        // A user Keycloak no longer has is the deletion step's business.
        let Some(live) = self.keycloak.user_session_ids(self.realm, user_id).await? else {
            return Ok(Vec::new());
        };
        let local = self.store.active_sessions(user_id, started_before).await?;
        Ok(local
            .into_iter()
            .filter(|id| !live.contains(id))
            .map(|session_id| Observation::SessionGone {
                realm_id: self.realm_id.clone(),
                user_id: user_id.clone(),
                session_id,
                at: checked_at,
                version: version.clone(),
            })
            .collect())
    }
}

/// One round of the daemon's scheduled reconcile (`reconcile.interval_secs`): every realm,
/// reported in logs and metrics. Several replicas may run it; the per-realm lock lets one
/// of them sweep at a time.
pub async fn scheduled_round(
    store: &Store,
    keycloak: &Arc<AdminClient>,
    options: &ReconcileOptions,
) {
    for result in reconcile_all(store, keycloak, options).await {
        match result {
            Ok(report) => {
                metrics::reconcile_run(true);
                tracing::info!(%report, "scheduled reconcile finished");
            }
            Err(ReconcileError::Busy { realm }) => {
                tracing::info!(
                    realm,
                    "scheduled reconcile skipped: another replica is running it"
                );
            }
            Err(error) => {
                metrics::reconcile_run(false);
                tracing::error!(%error, "scheduled reconcile failed");
            }
        }
    }
}

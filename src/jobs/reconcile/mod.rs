//! `keycloak-sync reconcile`: a full sweep of each realm's users through the Admin API,
//! for what events cannot tell (changes made before keycloak-sync ran, LDAP imports,
//! direct database edits, lost events).
//!
//! Profiles that differ are applied at the time they were read (less a clock-skew
//! allowance), so an event newer than the sweep still wins. Users Keycloak no longer
//! lists are confirmed one by one (a listing paged while users are added can skip some)
//! and only then deleted — and not at all if more than `reconcile.max_delete_percent` of
//! the realm would go, which is what pointing at the wrong realm or server looks like.
//!
//! One phase per file: profiles and deletions (`profiles.rs`), groups and roles
//! (`directory.rs`), sessions (`sessions.rs`).

mod directory;
mod profiles;
mod sessions;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;

use super::directory::DirectoryReadError;
use crate::config::{ReconcileSettings, SessionCheck};
use crate::core::ids::{RealmId, RealmName};
use crate::core::plan::Observation;
use crate::keycloak::{AdminClient, KeycloakError};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics;

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

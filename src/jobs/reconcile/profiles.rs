//! Reconcile: the users Keycloak lists (profiles applied page by page) and those it no
//! longer lists (confirmed one by one, deleted behind the guard).

use futures_util::future::try_join_all;

use super::{ReconcileError, Sweep, CLOCK_SKEW_MS, CONCURRENCY, CONFIRM_CHUNK};
use crate::core::event::read_admin_user;
use crate::core::ids::UserId;
use crate::core::plan::{profile_differences, Observation, Version};
use crate::store::ReconcileRun;
use crate::telemetry::progress::{Progress, Unit};

impl Sweep<'_> {
    /// Pages through Keycloak's users, applying the profiles that differ.
    pub(super) async fn profiles(&mut self, run: &mut ReconcileRun) -> Result<(), ReconcileError> {
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

    /// Confirms and deletes the local users Keycloak did not list, behind the guard.
    pub(super) async fn deletions(&mut self, run: &mut ReconcileRun) -> Result<(), ReconcileError> {
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
}

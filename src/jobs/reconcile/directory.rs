//! Reconcile: each user's groups and effective roles, and the memberships and grants
//! Keycloak no longer lists (ended behind the guard).

use futures_util::future::try_join_all;

use super::{ReconcileError, Sweep, CONCURRENCY, CONFIRM_CHUNK};
use crate::core::ids::UserId;
use crate::core::plan::{Observation, Version};
use crate::jobs::directory::read_directory;

impl Sweep<'_> {
    /// Reads the groups and effective roles of a page's users: what Keycloak lists is
    /// applied now, what it no longer lists is kept for the guarded step at the end.
    pub(super) async fn directories(
        &mut self,
        ids: &[UserId],
        read_at: i64,
    ) -> Result<(), ReconcileError> {
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
    pub(super) async fn membership_removals(&mut self) -> Result<(), ReconcileError> {
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
}

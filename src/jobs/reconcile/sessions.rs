//! Reconcile: the local sessions Keycloak no longer has, for all users with active
//! sessions or a sample of them.

use futures_util::future::try_join_all;

use super::{
    ReconcileError, SessionSource, Sweep, CONCURRENCY, MAX_LISTED_SESSIONS, SESSION_GRACE_MS,
};
use crate::config::SessionCheck;
use crate::core::ids::UserId;
use crate::core::plan::{Observation, Version};
use crate::keycloak::KeycloakError;
use crate::store::ListedSessions;
use crate::telemetry::progress::{Progress, Unit};

impl Sweep<'_> {
    /// Ends the local sessions that Keycloak no longer has, for all or a sample of the
    /// users with active sessions.
    pub(super) async fn sessions(&mut self) -> Result<(), ReconcileError> {
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

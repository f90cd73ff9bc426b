//! Enrichment: REGISTER and LOGIN carry only a username and email, so users that events
//! leave incomplete are read whole from the Admin API in the background.
//!
//! Event processing never waits for Keycloak: the apply path only queues the user
//! (`enrichment_queue`, in the same transaction as the event). This worker claims due
//! users, reads them, and applies the profile just after the event that asked
//! ([`Version::read_after`]), so it never overwrites a newer change. While Keycloak is
//! slow or down, claims are put back with a growing delay.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio_util::sync::CancellationToken;

use super::directory::{read_directory, DirectoryReadError};
use crate::core::event::read_admin_user;
use crate::core::plan::{Observation, Version};
use crate::keycloak::AdminClient;
use crate::store::{EnrichmentClaim, Store, StoreError};
use crate::telemetry::metrics;

/// How long a claim is held before another worker may take it (a crashed worker's
/// claims come back after this).
const LEASE: Duration = Duration::from_secs(120);
/// How often an idle worker looks for due users.
const POLL: Duration = Duration::from_secs(1);
/// How often the backlog gauge is refreshed (a count over the whole queue).
const BACKLOG_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EnrichmentReport {
    pub claimed: usize,
    pub enriched: usize,
    /// Keycloak no longer has the user (its deletion arrives as an event or by reconcile).
    pub gone: usize,
    /// The user's realm is not in `keycloak.realms`.
    pub skipped: usize,
    /// Put back to be tried again later.
    pub postponed: usize,
}

enum Done {
    Enriched,
    Gone,
    Skipped,
    Postponed { keycloak_down: bool },
}

pub struct Enricher {
    pub store: Store,
    pub keycloak: Arc<AdminClient>,
    /// Users claimed at once.
    pub batch_size: i64,
    /// Requests to Keycloak in flight at once.
    pub concurrency: usize,
    /// First retry delay; doubles with each failed attempt.
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl Enricher {
    pub fn new(store: Store, keycloak: Arc<AdminClient>, concurrency: usize) -> Self {
        Enricher {
            store,
            keycloak,
            batch_size: 50,
            concurrency,
            retry_base: Duration::from_secs(2),
            retry_cap: Duration::from_secs(300),
        }
    }

    /// Works the queue until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_count: Option<std::time::Instant> = None;
        loop {
            let pause = match self.run_once().await {
                Ok(tally) => {
                    record(&tally);
                    if tally.claimed as i64 >= self.batch_size && tally.postponed == 0 {
                        Duration::ZERO
                    } else {
                        POLL
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "enrichment paused: the queue cannot be read");
                    POLL * 5
                }
            };
            if last_count.is_none_or(|at| at.elapsed() >= BACKLOG_EVERY) {
                last_count = Some(std::time::Instant::now());
                if let Ok(backlog) = self.store.enrichment_backlog().await {
                    metrics::enrichment_backlog(backlog);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Claims one batch of due users and reads them.
    pub async fn run_once(&self) -> Result<EnrichmentReport, StoreError> {
        let claims = self.store.claim_enrichment(self.batch_size, LEASE).await?;
        let mut tally = EnrichmentReport {
            claimed: claims.len(),
            ..EnrichmentReport::default()
        };
        let mut keycloak_down = false;
        let mut results = stream::iter(claims)
            .map(|claim| self.enrich(claim))
            .buffered(self.concurrency);
        while let Some(result) = results.next().await {
            match result? {
                Done::Enriched => tally.enriched += 1,
                Done::Gone => tally.gone += 1,
                Done::Skipped => tally.skipped += 1,
                Done::Postponed {
                    keycloak_down: down,
                } => {
                    tally.postponed += 1;
                    keycloak_down |= down;
                }
            }
            if keycloak_down {
                break;
            }
        }
        // With Keycloak down, the claims not looked at come back when their lease ends.
        Ok(tally)
    }

    async fn enrich(&self, claim: EnrichmentClaim) -> Result<Done, StoreError> {
        let realm = match self.keycloak.realm_named(&claim.realm_id).await {
            Ok(Some(realm)) => realm,
            Ok(None) => {
                tracing::debug!(realm_id = %claim.realm_id, "not enriching a user of an unconfigured realm");
                self.store.drop_enrichment(&claim).await?;
                return Ok(Done::Skipped);
            }
            Err(error) => {
                return self
                    .postpone(&claim, &error.to_string(), error.is_transient())
                    .await
            }
        };
        let answer = match self.keycloak.user(&realm, &claim.user_id).await {
            Ok(Some(answer)) => answer,
            Ok(None) => {
                self.store.drop_enrichment(&claim).await?;
                return Ok(Done::Gone);
            }
            Err(error) => {
                return self
                    .postpone(&claim, &error.to_string(), error.is_transient())
                    .await
            }
        };
        let profile = match read_admin_user(&answer, "user") {
            Ok((id, profile)) if id == claim.user_id => profile,
            Ok((id, _)) => {
                let problem = format!(
                    "asked for user {} and Keycloak answered {id}",
                    claim.user_id
                );
                return self.postpone(&claim, &problem, false).await;
            }
            Err(error) => {
                let problem = format!("Keycloak's user representation: {error}");
                return self.postpone(&claim, &problem, false).await;
            }
        };
        let at = crate::now_ms();
        let version = Version::read_after(&claim.version);
        let read = read_directory(
            &self.store,
            &self.keycloak,
            (&realm, &claim.realm_id),
            &claim.user_id,
            (at, &version),
        );
        let directory = match read.await {
            Ok(Some(observation)) => observation,
            Ok(None) => {
                self.store.drop_enrichment(&claim).await?;
                return Ok(Done::Gone);
            }
            Err(DirectoryReadError::Keycloak(error)) => {
                return self
                    .postpone(&claim, &error.to_string(), error.is_transient())
                    .await
            }
            Err(DirectoryReadError::Answer(problem)) => {
                return self.postpone(&claim, &problem, false).await
            }
            Err(DirectoryReadError::Store(error)) => return Err(error),
        };
        let profile = Observation::Profile {
            realm_id: claim.realm_id.clone(),
            user_id: claim.user_id.clone(),
            profile,
            at,
            version,
        };
        self.store
            .complete_enrichment(&claim, &[profile, directory])
            .await?;
        Ok(Done::Enriched)
    }

    async fn postpone(
        &self,
        claim: &EnrichmentClaim,
        problem: &str,
        keycloak_down: bool,
    ) -> Result<Done, StoreError> {
        let exponent = u32::try_from(claim.attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
        let wait = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.retry_cap);
        tracing::warn!(user_id = %claim.user_id, attempts = claim.attempts, retry_in_secs = wait.as_secs(), problem, "enrichment postponed");
        self.store.postpone_enrichment(claim, wait, problem).await?;
        Ok(Done::Postponed { keycloak_down })
    }
}

fn record(tally: &EnrichmentReport) {
    for (outcome, count) in [
        ("enriched", tally.enriched),
        ("gone", tally.gone),
        ("skipped", tally.skipped),
        ("postponed", tally.postponed),
    ] {
        if count > 0 {
            metrics::enrichments(outcome, count);
        }
    }
}

//! Sessions that time out: learning each realm's policy (configuration first, then the
//! Admin API) and ending the sessions Keycloak has dropped by now. Shared by
//! `keycloak-sync sessions expire` and the daemon's periodic pass.

use std::fmt;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::SessionsSettings;
use crate::core::ids::{RealmId, RealmName};
use crate::core::session_policy::SessionPolicy;
use crate::keycloak::{AdminClient, KeycloakError};
use crate::store::{PolicySource, Store, StoredPolicy};

/// Which realms' policies to read from the Admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyRead {
    /// Every configured realm.
    All,
    /// Only realms an admin REALM UPDATE marked stale.
    Stale,
}

/// What learning the policies did.
#[derive(Debug, Default, Clone)]
pub struct PolicyReport {
    /// Realms whose policy is known (from either source).
    pub known: u64,
    /// Sessions whose expiry moved because a policy changed.
    pub sessions_moved: u64,
    /// Realms whose policy could not be read, with why.
    pub unknown: Vec<String>,
}

/// Stores the configured policies, then those the Admin API gives (`admin`, if any) for
/// the realms `read` selects. A realm whose policy cannot be read keeps the one it had.
pub async fn learn_policies(
    store: &Store,
    admin: Option<&AdminClient>,
    settings: &SessionsSettings,
    read: PolicyRead,
) -> Result<PolicyReport, sqlx::Error> {
    let mut report = PolicyReport::default();
    for (realm_id, policy) in &settings.realm_policies {
        let policy = stored(settings, realm_id, None, *policy, PolicySource::Config);
        report.sessions_moved += store
            .set_session_policy(&policy, settings.expire_batch)
            .await?
            .unwrap_or_default();
        report.known += 1;
    }
    let Some(admin) = admin else {
        return Ok(report);
    };
    let stale = store.stale_session_policies().await?;
    for realm in admin.realms() {
        let (realm_id, policy) = match admin.session_policy(realm).await {
            Ok(answer) => answer,
            Err(error) => {
                report.unknown.push(unreadable(realm, &error));
                continue;
            }
        };
        if settings
            .realm_policies
            .iter()
            .any(|(id, _)| *id == realm_id)
        {
            continue;
        }
        if read == PolicyRead::Stale && !stale.contains(&realm_id) {
            continue;
        }
        let Some(policy) = policy else {
            report.unknown.push(format!(
                "realm {realm}: the Admin API shows no session timeouts (grant the service \
                 account view-realm, or set sessions.realm_policies)"
            ));
            continue;
        };
        let policy = stored(
            settings,
            &realm_id,
            Some(realm),
            policy,
            PolicySource::AdminApi,
        );
        report.sessions_moved += store
            .set_session_policy(&policy, settings.expire_batch)
            .await?
            .unwrap_or_default();
        report.known += 1;
    }
    Ok(report)
}

fn stored<'a>(
    settings: &SessionsSettings,
    realm_id: &'a RealmId,
    realm_name: Option<&'a RealmName>,
    policy: SessionPolicy,
    source: PolicySource,
) -> StoredPolicy<'a> {
    StoredPolicy {
        realm_id,
        realm_name,
        timeouts: policy.timeouts(),
        idle_grace_secs: secs(settings.idle_grace),
        expiry_margin_secs: secs(settings.expiry_margin),
        source,
    }
}

fn unreadable(realm: &RealmName, error: &KeycloakError) -> String {
    format!("realm {realm}: session policy not read: {error}")
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// What an expiry pass did, or (dry) would do.
#[derive(Debug, Default, Clone)]
pub struct ExpiryReport {
    pub dry_run: bool,
    pub ended: u64,
    pub tokens_removed: u64,
    /// Another replica was running the pass.
    pub busy: bool,
    pub policies: PolicyReport,
    /// Open sessions of realms whose policy is unknown: never expired.
    pub without_policy: i64,
    pub elapsed: Duration,
}

impl fmt::Display for ExpiryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run { "would end" } else { "ended" };
        write!(
            f,
            "sessions expire summary: {verb} {} sessions, removed {} refresh tokens; \
             {} realm policies known, {} sessions' expiry moved; {} open sessions in realms \
             without a policy ({:.2}s)",
            self.ended,
            self.tokens_removed,
            self.policies.known,
            self.policies.sessions_moved,
            self.without_policy,
            self.elapsed.as_secs_f64()
        )?;
        if self.busy {
            write!(f, "; another replica is running the pass")?;
        }
        for problem in &self.policies.unknown {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// One pass: ends, batch by batch, every open session (of `realm`, an id or a name, if
/// given) more than the margin past its expiry.
pub async fn expire(
    store: &Store,
    settings: &SessionsSettings,
    realm: Option<&str>,
    dry_run: bool,
    policies: PolicyReport,
) -> Result<ExpiryReport, sqlx::Error> {
    let started = Instant::now();
    let mut report = ExpiryReport {
        dry_run,
        policies,
        ..ExpiryReport::default()
    };
    loop {
        let pass = store
            .expire_sessions(realm, settings.expire_batch, dry_run)
            .await?;
        report.ended += pass.ended;
        report.tokens_removed += pass.tokens_removed;
        report.busy |= pass.busy;
        if dry_run || pass.busy || pass.ended < settings.expire_batch.unsigned_abs() {
            break;
        }
    }
    report.without_policy = store.sessions_without_policy().await?;
    report.elapsed = started.elapsed();
    if report.ended > 0 && !dry_run {
        info!(
            ended = report.ended,
            tokens_removed = report.tokens_removed,
            "sessions past their expiry ended"
        );
    }
    for problem in &report.policies.unknown {
        warn!("{problem}");
    }
    Ok(report)
}

/// The daemon's pass: policies (all of them when `full`, else only those an admin
/// changed), then the expiry. Failures are logged; the next pass tries again.
pub async fn scheduled_pass(
    store: &Store,
    admin: Option<&AdminClient>,
    settings: &SessionsSettings,
    full: bool,
) {
    let read = if full {
        PolicyRead::All
    } else {
        PolicyRead::Stale
    };
    let result = async {
        let policies = learn_policies(store, admin, settings, read).await?;
        expire(store, settings, None, false, policies).await
    }
    .await;
    if let Err(error) = result {
        warn!(%error, "session expiry pass failed; will try again");
    }
}

//! `keycloak-sync run`: wiring only. Every task — the consumer, the HTTP endpoints, the
//! enrichment worker and the periodic passes — hangs off one cancellation token and is
//! joined before the process exits.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::amqp::Consumer;
use crate::config::Settings;
use crate::context::AppContext;
use crate::core::intake::Intake;
use crate::http::{self, Endpoints};
use crate::jobs::enrichment::Enricher;
use crate::jobs::expiry::scheduled_pass;
use crate::jobs::reconcile::{scheduled_round, ReconcileOptions};
use crate::store::{until_database_answers, vault, Store};
use crate::telemetry::health::Health;
use crate::telemetry::metrics;

/// Per-call retry budget inside the daemon: short, so the consumer loop keeps turning
/// (and reporting) while it waits for the database itself.
const DAEMON_RETRY: Duration = Duration::from_secs(5);
/// How often organization members added before their user was known are looked at.
const PENDING_MEMBERS_EVERY: Duration = Duration::from_secs(300);
/// How often old inbox entries are pruned (with `daemon.inbox_retention_days`).
const INBOX_PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Per-request retry budget of enrichment reads.
const ENRICH_RETRY: Duration = Duration::from_secs(2);

pub struct RunOptions {
    pub migrate: bool,
}

/// Runs until SIGTERM or SIGINT, then drains within `daemon.shutdown_grace_secs`.
pub async fn run(settings: Settings, options: RunOptions) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let metrics =
        metrics::install(&tasks, shutdown.clone()).context("installing the metrics recorder")?;
    tasks.spawn(cancel_on_signal(shutdown.clone()));

    let health = Arc::new(Health::default());
    health.beat();
    let context = AppContext::lazy(settings)?.with_store_retry(DAEMON_RETRY);
    let settings = context.settings.clone();
    let store = context.store.clone();

    let listen = settings.http.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz, /metrics");
    let endpoints = Endpoints {
        health: health.clone(),
        store: store.clone(),
        metrics,
        ping_lock: Default::default(),
    };
    // Graceful: on shutdown the endpoints stop taking connections and finish the answers
    // in hand while the batch in hand drains.
    let http_shutdown = shutdown.clone();
    tasks.spawn(async move {
        if let Err(error) = http::serve(listener, endpoints, http_shutdown).await {
            tracing::error!(%error, "the HTTP endpoints stopped");
        }
    });

    let drained = if !options.migrate || migrate_when_reachable(&store, &health, &shutdown).await? {
        spawn_background(&tasks, &context, &shutdown)?;
        let consumer = Consumer {
            settings: settings.amqp.clone(),
            store,
            intake: Intake {
                max_message_bytes: settings.limits.max_message_bytes,
                vault_enabled: settings.vault.keys.is_some(),
                max_clock_skew: settings.limits.max_clock_skew,
                realms: settings.limits.realms.clone().into(),
                event_publishers: settings.amqp.event_publishers.clone().into(),
                token_publishers: settings.amqp.token_publishers.clone().into(),
            },
            health,
            shutdown: shutdown.clone(),
        };
        tasks.spawn(consumer.run());
        tasks.spawn(crate::amqp::limbo::drain(
            settings.amqp.clone(),
            settings.limits.max_message_bytes,
            shutdown.clone(),
        ));
        tasks.close();
        shutdown.cancelled().await;
        let grace = settings.daemon.shutdown_grace;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: finishing the batch in hand"
        );
        tokio::time::timeout(grace, tasks.wait()).await.is_ok()
    } else {
        tasks.close();
        tasks.wait().await;
        true
    };
    if drained {
        tracing::info!("stopped");
        Ok(())
    } else {
        anyhow::bail!(
            "shutdown grace of {} s exceeded; unacknowledged messages will be redelivered",
            settings.daemon.shutdown_grace.as_secs()
        )
    }
}

/// The enrichment worker and the periodic passes the settings ask for.
fn spawn_background(
    tasks: &TaskTracker,
    context: &AppContext,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let (settings, store) = (&*context.settings, &context.store);
    if settings.api.listen.is_some() {
        let api =
            crate::api::ApiState::new(context.clone()).context("the token API (api.listen)")?;
        let api_shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = crate::api::serve(api, api_shutdown.clone()).await {
                tracing::error!(%error, "the token API stopped");
                api_shutdown.cancel();
            }
        });
        if let Some(retention) = settings.api.audit_retention {
            let store = store.clone();
            tasks.spawn(periodically(
                Duration::ZERO,
                INBOX_PRUNE_EVERY,
                shutdown.clone(),
                move || prune_token_audit(store.clone(), retention),
            ));
        }
    }
    if settings.vault.keys.is_some() && !settings.vault.purge_interval.is_zero() {
        let store = store.clone();
        tasks.spawn(periodically(
            Duration::ZERO,
            settings.vault.purge_interval,
            shutdown.clone(),
            move || purge_expired_tokens(store.clone()),
        ));
    }
    if let Some(retention) = settings.daemon.inbox_retention {
        let store = store.clone();
        tasks.spawn(periodically(
            Duration::ZERO,
            INBOX_PRUNE_EVERY,
            shutdown.clone(),
            move || prune_inbox(store.clone(), retention),
        ));
    }
    if let Some(retention) = settings.changes.retention {
        let store = store.clone();
        tasks.spawn(periodically(
            Duration::ZERO,
            INBOX_PRUNE_EVERY,
            shutdown.clone(),
            move || prune_changes(store.clone(), retention),
        ));
    }
    {
        let store = store.clone();
        tasks.spawn(periodically(
            Duration::ZERO,
            PENDING_MEMBERS_EVERY,
            shutdown.clone(),
            move || resolve_pending_members(store.clone()),
        ));
    }
    spawn_session_expiry(tasks, context, shutdown);
    let Some(admin) = context.admin() else {
        return Ok(());
    };
    if settings.keycloak.enrich {
        // Short per-request budget: a failed read goes back to the queue with a delay.
        let client = Arc::new(admin.with_retry_max(ENRICH_RETRY));
        let enricher = Enricher::new(store.clone(), client, settings.keycloak.enrich_concurrency);
        tasks.spawn(enricher.run(shutdown.clone()));
    }
    if let Some(every) = settings.reconcile.interval {
        let keycloak = Arc::new(admin.clone());
        let options = ReconcileOptions::scheduled(&settings.reconcile);
        let store = store.clone();
        tasks.spawn(periodically(every, every, shutdown.clone(), move || {
            let (store, keycloak, options) = (store.clone(), keycloak.clone(), options.clone());
            async move { scheduled_round(&store, &keycloak, &options).await }
        }));
    }
    Ok(())
}

/// Every `sessions.expire_interval_secs`: policies (read whole every
/// `sessions.policy_refresh_secs`, else only those an admin changed), then the expiry.
fn spawn_session_expiry(tasks: &TaskTracker, context: &AppContext, shutdown: &CancellationToken) {
    let (settings, store) = (&*context.settings, &context.store);
    let Some(every) = settings.sessions.expire_interval else {
        return;
    };
    let admin = context.admin().cloned().map(Arc::new);
    let full_every = (settings.sessions.policy_refresh.as_secs() / every.as_secs().max(1)).max(1);
    let (store, sessions) = (store.clone(), settings.sessions.clone());
    let mut passes = 0u64;
    tasks.spawn(periodically(
        Duration::ZERO,
        every,
        shutdown.clone(),
        move || {
            let full = passes % full_every == 0;
            passes += 1;
            let (store, admin, sessions) = (store.clone(), admin.clone(), sessions.clone());
            async move { scheduled_pass(&store, admin.as_deref(), &sessions, full).await }
        },
    ));
}

/// Applies migrations, waiting for the database if it is not up yet. Returns false if
/// shutdown came first.
async fn migrate_when_reachable(
    store: &Store,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let migrated =
        until_database_answers(health, shutdown, "applying migrations", || store.migrate())
            .await
            .context("applying migrations")?;
    Ok(migrated.is_some())
}

/// Runs `task` once `first_after` has passed, then every `period`, until `shutdown`.
async fn periodically<F, Fut>(
    first_after: Duration,
    period: Duration,
    shutdown: CancellationToken,
    mut task: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first_after, period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        // A pass in progress finishes; the next one does not start.
        task().await;
    }
}

/// One expiry sweep of the vault.
async fn purge_expired_tokens(store: Store) {
    match vault::purge_expired(&store).await {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, "expired vault tokens deleted"),
        Err(error) => tracing::warn!(%error, "expired-token sweep failed; will try again"),
    }
}

/// Forgets inbox entries older than `daemon.inbox_retention_days`.
async fn prune_inbox(store: Store, retention: Duration) {
    match store.prune_inbox(retention).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "old inbox entries removed"),
        Err(error) => tracing::warn!(%error, "inbox pruning failed; will try again"),
    }
}

/// Writes organization members added before their user was known (see
/// `Store::resolve_pending_members`).
async fn resolve_pending_members(store: Store) {
    match store.resolve_pending_members().await {
        Ok(0) => {}
        Ok(resolved) => tracing::info!(resolved, "waiting organization members written"),
        Err(error) => tracing::warn!(%error, "waiting organization members: will try again"),
    }
}

/// Forgets changes older than `changes.retention_days`.
async fn prune_changes(store: Store, retention: Duration) {
    match store.prune_changes(retention).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "old change feed entries removed"),
        Err(error) => tracing::warn!(%error, "change feed pruning failed; will try again"),
    }
}

/// SIGTERM or SIGINT cancels `shutdown`; so does the end of everything else.
async fn cancel_on_signal(shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    _ = shutdown.cancelled() => return,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the daemon");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = shutdown.cancelled() => return,
    }
    shutdown.cancel();
}

/// Deletes token API audit rows older than `api.audit_retention_days`.
async fn prune_token_audit(store: Store, retention: Duration) {
    match store.prune_token_audit(retention).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "pruned old token API audit rows"),
        Err(error) => tracing::warn!(%error, "cannot prune the token API audit rows"),
    }
}

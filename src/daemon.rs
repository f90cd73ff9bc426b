//! `keycloak-sync run`: the consumer, the HTTP endpoints and signal handling, wired
//! around one cancellation token.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::amqp::Consumer;
use crate::config::Settings;
use crate::enrich::Enricher;
use crate::health::Health;
use crate::http::{self, Endpoints};
use crate::ingest::Intake;
use crate::keycloak::AdminClient;
use crate::reconcile::ReconcileOptions;
use crate::store::Store;

/// Per-call retry budget inside the daemon: short, so the consumer loop keeps turning
/// (and reporting) while it waits for the database itself.
const DAEMON_RETRY: Duration = Duration::from_secs(5);
/// How often old inbox entries are pruned (with `daemon.inbox_retention_days`).
const INBOX_PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Per-request retry budget of enrichment reads.
const ENRICH_RETRY: Duration = Duration::from_secs(2);

pub struct RunOptions {
    pub migrate: bool,
}

/// Runs until SIGTERM or SIGINT, then drains within `daemon.shutdown_grace_secs`.
pub async fn run(settings: Settings, options: RunOptions) -> anyhow::Result<()> {
    let metrics = crate::metrics::install().context("installing the metrics recorder")?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());

    let health = Arc::new(Health::default());
    health.beat();
    let store = Store::connect_lazy(&settings.database)?
        .with_retry_max(DAEMON_RETRY)
        .with_vault(settings.vault.keys.clone())
        .with_enrichment(settings.keycloak.enrich);

    let listener = TcpListener::bind(settings.http_listen)
        .await
        .with_context(|| format!("cannot listen on {} (http.listen)", settings.http_listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /healthz, /readyz, /metrics");
    let endpoints = Endpoints {
        health: health.clone(),
        store: store.clone(),
        metrics,
    };
    let http_shutdown = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, endpoints, http_shutdown.clone()));

    if options.migrate && !migrate_when_reachable(&store, &health, &shutdown).await? {
        http_shutdown.cancel();
        let _ = server.await;
        return Ok(());
    }

    if settings.vault.keys.is_some() && !settings.vault.purge_interval.is_zero() {
        let store = store.clone();
        tokio::spawn(periodically(
            Duration::ZERO,
            settings.vault.purge_interval,
            shutdown.clone(),
            move || purge_expired_tokens(store.clone()),
        ));
    }
    if let Some(retention) = settings.inbox_retention {
        let store = store.clone();
        tokio::spawn(periodically(
            Duration::ZERO,
            INBOX_PRUNE_EVERY,
            shutdown.clone(),
            move || prune_inbox(store.clone(), retention),
        ));
    }
    if settings.keycloak.url.is_some() {
        if settings.keycloak.enrich {
            // Short per-request budget: a failed read goes back to the queue with a delay.
            let client = Arc::new(
                AdminClient::new(&settings.keycloak)
                    .context("keycloak settings")?
                    .with_retry_max(ENRICH_RETRY),
            );
            let enricher =
                Enricher::new(store.clone(), client, settings.keycloak.enrich_concurrency);
            tokio::spawn(enricher.run(shutdown.clone()));
        }
        if let Some(every) = settings.reconcile.interval {
            let keycloak =
                Arc::new(AdminClient::new(&settings.keycloak).context("keycloak settings")?);
            let options = ReconcileOptions::scheduled(&settings.reconcile);
            let store = store.clone();
            tokio::spawn(periodically(every, every, shutdown.clone(), move || {
                let (store, keycloak, options) = (store.clone(), keycloak.clone(), options.clone());
                async move { crate::reconcile::scheduled_round(&store, &keycloak, &options).await }
            }));
        }
    }
    let consumer = Consumer {
        settings: settings.amqp.clone(),
        store,
        intake: Intake {
            max_message_bytes: settings.max_message_bytes,
            vault_enabled: settings.vault.keys.is_some(),
        },
        health,
        shutdown: shutdown.clone(),
    };
    let mut consuming = tokio::spawn(consumer.run());
    let drained = tokio::select! {
        result = &mut consuming => {
            result.context("the consumer task failed")?;
            true
        }
        _ = shutdown.cancelled() => {
            tracing::info!(grace_secs = settings.shutdown_grace.as_secs(), "shutting down: finishing the batch in hand");
            match tokio::time::timeout(settings.shutdown_grace, &mut consuming).await {
                Ok(result) => { result.context("the consumer task failed")?; true }
                Err(_) => false,
            }
        }
    };
    http_shutdown.cancel();
    let _ = server.await;
    if drained {
        tracing::info!("stopped");
        Ok(())
    } else {
        consuming.abort();
        anyhow::bail!(
            "shutdown grace of {} s exceeded; unacknowledged messages will be redelivered",
            settings.shutdown_grace.as_secs()
        )
    }
}

/// Applies migrations, waiting for the database if it is not up yet. Returns false if
/// shutdown came first.
async fn migrate_when_reachable(
    store: &Store,
    health: &Health,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let migrated = health
        .until_database_answers(shutdown, "applying migrations", || store.migrate())
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
    Fut: std::future::Future<Output = ()>,
{
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + first_after, period);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        task().await;
    }
}

/// One expiry sweep of the vault.
async fn purge_expired_tokens(store: Store) {
    match crate::vault::purge_expired(&store).await {
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

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => tracing::info!("SIGTERM received"),
                        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the daemon");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        shutdown.cancel();
    });
}

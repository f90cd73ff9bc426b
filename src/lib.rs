//! keycloak-sync keeps an application's Postgres in step with Keycloak.
//!
//! Layers, each importing only the ones below it:
//!
//! * [`commands`] — one file per subcommand; [`daemon`] wires the long-running worker.
//! * [`jobs`] — work that moves data from a source through the apply path: replay,
//!   backfill, reconcile, enrichment, key rotation.
//! * adapters — [`store`] (Postgres: every SQL statement), [`amqp`] (RabbitMQ),
//!   [`keycloak`] (the Admin API), [`http`] (probes and metrics).
//! * plumbing — [`config`], [`telemetry`] (logs, metrics, health, progress), [`retry`]
//!   (the one back-off policy).
//! * [`vault`] — the key ring and sealing; imports nothing of ours.
//! * [`core`] — pure, no I/O: ids, events, the event→change plan.

pub mod amqp;
pub mod api;
pub mod commands;
pub mod config;
pub mod context;
pub mod core;
pub mod daemon;
pub mod http;
pub mod jobs;
pub mod keycloak;
pub mod retry;
pub mod store;
pub mod telemetry;
pub mod vault;

/// The wall clock in epoch milliseconds, the unit of every event time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// reqwest needs a process-wide rustls provider: the one lapin already uses (ring).
pub fn install_tls_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

//! keycloak-sync keeps an application's Postgres in step with Keycloak.
//!
//! The pure core — [`event`] (bytes → typed events) and [`plan`] (events → row changes) —
//! knows nothing of I/O. The adapters around it: [`store`] (Postgres, the one apply path),
//! [`replay`] (JSONL files), [`amqp`] (RabbitMQ), [`http`] (probes and metrics), and the
//! command line in [`cli`]; [`daemon`] wires the long-running worker.

pub mod amqp;
pub mod backfill;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod enrich;
pub mod event;
pub mod health;
pub mod http;
pub mod ingest;
pub mod keycloak;
pub mod metrics;
pub mod plan;
pub mod reconcile;
pub mod replay;
pub mod sample;
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
pub(crate) fn install_tls_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

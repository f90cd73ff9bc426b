//! `/healthz`, `/readyz` and `/metrics` for orchestrators and Prometheus.

pub mod probe;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::store::{MayPass, Store};
use crate::telemetry::health::Health;

/// A loop silent for longer than this is reported stuck by `/healthz`.
const MAX_SILENCE: Duration = Duration::from_secs(60);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Endpoints {
    pub health: Arc<Health>,
    pub store: Store,
    pub metrics: PrometheusHandle,
    /// One database check at a time, however many probes wait for it.
    pub ping_lock: Arc<tokio::sync::Mutex<()>>,
}

pub fn router(endpoints: Endpoints) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(endpoints)
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(endpoints))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn healthz(State(endpoints): State<Endpoints>) -> Response {
    if endpoints.health.alive(MAX_SILENCE) {
        (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
    } else {
        let body =
            json!({"status": "stuck", "reason": "the consumer loop has not turned for over 60 s"});
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// The database is asked at most this often, whatever the rate of probes.
const PING_EVERY: Duration = Duration::from_secs(1);

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    let mut reasons = Vec::new();
    let health = &endpoints.health;
    let ping = match health.recent_ping(PING_EVERY) {
        Some(result) => result,
        None => {
            let _one_at_a_time = endpoints.ping_lock.lock().await;
            match health.recent_ping(PING_EVERY) {
                Some(result) => result,
                None => {
                    let result =
                        match tokio::time::timeout(PING_TIMEOUT, endpoints.store.ping()).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(error)) => Err(error.summary()),
                            Err(_) => Err("no answer within 2 s"),
                        };
                    health.record_ping(result);
                    result
                }
            }
        }
    };
    if let Err(reason) = ping {
        reasons.push(format!("database: {reason}"));
    }
    match health.database_fault() {
        Some(fault) => reasons.push(format!("database: {fault}; the batch in hand waits")),
        None => health.set_database_up(ping.is_ok()),
    }
    let node = endpoints.health.attached_node();
    if node.is_none() {
        reasons.push("queue consumer not attached".to_string());
    }
    if reasons.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"ready": true, "amqp_node": node})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reasons": reasons, "amqp_node": node})),
        )
            .into_response()
    }
}

async fn metrics(State(endpoints): State<Endpoints>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        endpoints.metrics.render(),
    )
        .into_response()
}

//! Prometheus metrics. Each is recorded by one function here and described in
//! `describe`; labels are kept to bounded sets.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::core::event::{Action, Event, Ignored, Kind};
use crate::core::outcome::Outcome;

/// Event types that get their own label value; anything else is counted as `other`, so
/// input can never grow the number of series.
const KNOWN_TYPES: &[&str] = &[
    "REGISTER",
    "LOGIN",
    "LOGIN_ERROR",
    "LOGOUT",
    "REFRESH_TOKEN",
    "UPDATE_PROFILE",
    "UPDATE_EMAIL",
    "VERIFY_EMAIL",
    "DELETE_ACCOUNT",
    "USER_DISABLED_BY_PERMANENT_LOCKOUT",
    "REVOKE_GRANT",
    "CODE_TO_TOKEN",
    "IMPERSONATE",
    "USER_SESSION_DELETED",
    "CLIENT_LOGIN",
    "USER.CREATE",
    "USER.UPDATE",
    "USER.DELETE",
    "USER.ACTION",
    "USER_SESSION.DELETE",
    "refresh",
    "offline",
];

fn type_label(event: &Event) -> &'static str {
    KNOWN_TYPES
        .iter()
        .find(|t| **t == event.type_name)
        .copied()
        .unwrap_or("other")
}

fn kind_label(kind: Kind) -> &'static str {
    kind.as_str()
}

/// Histogram samples are buffered until drained: without a periodic drain they would
/// grow with every event when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the global recorder and returns the handle `/metrics` renders. Must run
/// inside the tokio runtime: it spawns the task that keeps histogram buffers bounded.
pub fn install(
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<PrometheusHandle> {
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ];
    let sizes = [1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
    let lag = [
        0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 5.0, 30.0,
        300.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full("keycloak_sync_lag_seconds".into()), &lag)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)?
        .set_buckets_for_metric(Matcher::Full("keycloak_sync_batch_size".into()), &sizes)?
        .install_recorder()?;
    describe();
    let upkeep = handle.clone();
    tasks.spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => upkeep.run_upkeep(),
            }
        }
    });
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "keycloak_sync_token_api_requests_total",
        "Token API requests by caller, action (read, store) and outcome."
    );
    describe_counter!(
        "keycloak_sync_messages_received_total",
        "Messages taken from the queue."
    );
    describe_counter!(
        "keycloak_sync_events_applied_total",
        "Events whose effect was committed."
    );
    describe_counter!(
        "keycloak_sync_events_duplicate_total",
        "Events already in the inbox: changed nothing."
    );
    describe_counter!(
        "keycloak_sync_events_ignored_by_reason_total",
        "Valid events that changed nothing, by reason (no_effect, failed, missing) and the missing field."
    );
    describe_counter!(
        "keycloak_sync_events_ignored_total",
        "Valid events with nothing to do."
    );
    describe_counter!(
        "keycloak_sync_messages_dead_lettered_total",
        "Messages sent to the dead-letter queue."
    );
    describe_histogram!("keycloak_sync_batch_size", "Messages per applied batch.");
    describe_histogram!(
        "keycloak_sync_apply_seconds",
        Unit::Seconds,
        "Time to apply and commit one batch."
    );
    describe_histogram!(
        "keycloak_sync_lag_seconds",
        Unit::Seconds,
        "Commit time minus event time."
    );
    describe_counter!(
        "keycloak_sync_reconnects_total",
        "Reconnections after a lost connection."
    );
    describe_gauge!(
        "keycloak_sync_consumer_connected",
        "1 while the queue consumer is attached."
    );
    describe_gauge!(
        "keycloak_sync_amqp_node",
        "1 for the RabbitMQ node (host:port of amqp.url) the consumer is attached to."
    );
    describe_gauge!("keycloak_sync_database_up", "1 while the database answers.");
}

pub fn received(count: usize) {
    counter!("keycloak_sync_messages_received_total").increment(count as u64);
}

/// Records the outcome of each event of a committed batch, and its lag. Counts are
/// summed per label set first: one registry update per series, not per event.
pub fn applied(events: &[Event], outcomes: &[Outcome], elapsed: Duration, now_ms: i64) {
    histogram!("keycloak_sync_batch_size").record(events.len() as f64);
    histogram!("keycloak_sync_apply_seconds").record(elapsed.as_secs_f64());
    let mut counts: HashMap<(Outcome, &'static str, &'static str), u64> = HashMap::new();
    let mut ignored: HashMap<Ignored, u64> = HashMap::new();
    let lag = histogram!("keycloak_sync_lag_seconds");
    for (event, outcome) in events.iter().zip(outcomes) {
        *counts
            .entry((*outcome, kind_label(event.kind), type_label(event)))
            .or_default() += 1;
        if let (Outcome::Ignored, Action::Ignore(why)) = (outcome, &event.action) {
            *ignored.entry(*why).or_default() += 1;
        }
        if *outcome != Outcome::Duplicate {
            lag.record((now_ms - event.time).max(0) as f64 / 1000.0);
        }
    }
    for ((outcome, kind, event_type), count) in counts {
        let labels = [("kind", kind), ("type", event_type)];
        let name = match outcome {
            Outcome::Applied => "keycloak_sync_events_applied_total",
            Outcome::Ignored => "keycloak_sync_events_ignored_total",
            Outcome::Duplicate => "keycloak_sync_events_duplicate_total",
        };
        counter!(name, &labels).increment(count);
    }
    for (why, count) in ignored {
        counter!("keycloak_sync_events_ignored_by_reason_total", "reason" => why.reason(), "field" => why.field())
            .increment(count);
    }
}

/// `reason` is a short fixed class ([`Rejection::class`](crate::core::intake::Rejection::class)), never input text.
pub fn dead_lettered(kind: &'static str, reason: &'static str) {
    counter!("keycloak_sync_messages_dead_lettered_total", "kind" => kind, "reason" => reason)
        .increment(1);
}

/// A token API request: `caller` is `realm/client` of an authenticated caller (a client
/// Keycloak issued a token to) or `unauthenticated`; `outcome` a fixed code.
pub fn token_api(caller: &str, action: &'static str, outcome: &str) {
    counter!("keycloak_sync_token_api_requests_total",
        "caller" => caller.to_string(), "action" => action, "outcome" => outcome.to_string())
    .increment(1);
}

pub fn reconnected(target: &'static str) {
    counter!("keycloak_sync_reconnects_total", "target" => target).increment(1);
}

/// Moves the consumer from the node `was` on (if any) to `now` (if any): the node
/// series is 1 for the node attached to, 0 for nodes attached to before.
pub fn consumer_attached(was: Option<&str>, now: Option<&str>) {
    if let Some(node) = was {
        gauge!("keycloak_sync_amqp_node", "node" => node.to_string()).set(0.0);
    }
    if let Some(node) = now {
        gauge!("keycloak_sync_amqp_node", "node" => node.to_string()).set(1.0);
    }
    gauge!("keycloak_sync_consumer_connected").set(if now.is_some() { 1.0 } else { 0.0 });
}

pub fn database_up(up: bool) {
    gauge!("keycloak_sync_database_up").set(if up { 1.0 } else { 0.0 });
}

/// Users read (or not) by the enrichment worker, by what became of them.
pub fn enrichments(outcome: &'static str, count: usize) {
    counter!("keycloak_sync_enrichments_total", "outcome" => outcome).increment(count as u64);
}

pub fn enrichment_backlog(users: i64) {
    gauge!("keycloak_sync_enrichment_backlog").set(users as f64);
}

/// A scheduled reconcile of one realm finished (`ok`) or failed.
pub fn reconcile_run(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    counter!("keycloak_sync_reconcile_runs_total", "outcome" => outcome).increment(1);
}

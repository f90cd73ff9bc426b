//! What RabbitMQ dead-letters by itself — a message redelivered more than
//! `amqp.delivery_limit` times, after crashes or rolling restarts — goes to an internal
//! queue (`<dead-letter queue>.limbo`), not straight to the dead-letter queue: the broker
//! copies bodies as they are, token messages included. The daemon drains it, keeps what
//! the redactor keeps, and forwards each copy to the dead-letter queue with the reason
//! `delivery_limit`; the original leaves the internal queue only once the copy is
//! confirmed.

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::Confirmation;
use tokio_util::sync::CancellationToken;

use super::{dead_letter_properties, header_text, Broker};
use crate::config::AmqpSettings;
use crate::core::redact::dead_letter_copy;
use crate::retry::Policy;
use crate::telemetry::metrics;

/// The reason a forwarded copy carries.
pub const DELIVERY_LIMIT_REASON: &str = "delivery_limit: redelivered more than \
     amqp.delivery_limit times (consumers crashed or restarted while holding it, or it \
     stops every consumer that takes it)";

/// The internal queue the dead-letter exchange feeds.
pub fn limbo_queue(settings: &AmqpSettings) -> String {
    format!("{}.limbo", settings.dead_letter_queue)
}

/// The exchange (fanout) through which redacted copies reach the dead-letter queue,
/// keeping their original routing key.
pub fn redacted_exchange(settings: &AmqpSettings) -> String {
    format!("{}.in", settings.dead_letter_queue)
}

/// Drains the internal queue until `shutdown`, reconnecting on its own.
pub async fn drain(settings: AmqpSettings, max_message_bytes: usize, shutdown: CancellationToken) {
    let mut pause = Policy::reconnect(settings.reconnect_max).pauses();
    while !shutdown.is_cancelled() {
        match drain_once(&settings, max_message_bytes, &shutdown).await {
            Ok(()) => break,
            Err(error) => {
                let wait = pause.next_wait();
                tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "dead-letter drain lost its connection; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn drain_once(
    settings: &AmqpSettings,
    max_message_bytes: usize,
    shutdown: &CancellationToken,
) -> Result<(), lapin::Error> {
    let broker = Broker::connect(settings).await?;
    if settings.declare_topology {
        super::declare_topology(&broker.connection, settings).await?;
    }
    broker
        .consume
        .basic_qos(50, BasicQosOptions::default())
        .await?;
    let queue = limbo_queue(settings);
    let mut deliveries = broker
        .consume
        .basic_consume(
            ShortString::from(queue.as_str()),
            ShortString::from(format!(
                "keycloak-sync-limbo-{}",
                uuid::Uuid::new_v4().simple()
            )),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break,
            next = deliveries.next() => match next {
                Some(delivery) => delivery?,
                None => break,
            },
        };
        // The broker keeps the original routing key and records the original exchange.
        let exchange = header_text(&delivery.properties, "x-first-death-exchange")
            .unwrap_or_else(|| delivery.exchange.to_string());
        let properties = dead_letter_properties(
            &delivery.properties,
            delivery.routing_key.as_str(),
            &exchange,
            DELIVERY_LIMIT_REASON,
            crate::now_ms(),
        );
        let confirm = broker
            .publish
            .basic_publish(
                ShortString::from(redacted_exchange(settings)),
                delivery.routing_key.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &dead_letter_copy(&delivery.data, max_message_bytes),
                properties,
            )
            .await?
            .await?;
        if !matches!(confirm, Confirmation::Ack(None)) {
            // Unroutable or refused: the original stays in the internal queue.
            tracing::error!(queue = ?settings.dead_letter_queue, "the dead-letter queue refused a forwarded copy");
            break;
        }
        delivery.ack(BasicAckOptions::default()).await?;
        metrics::dead_lettered("unknown", "delivery_limit");
        tracing::warn!(routing_key = ?delivery.routing_key.as_str(), "message dead-lettered by the broker's delivery limit; forwarded redacted");
    }
    broker.close().await;
    Ok(())
}

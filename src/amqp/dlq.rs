//! `keycloak-sync dlq list|replay`: inspect the dead-letter queue and send its messages
//! back into the main flow once the cause is fixed.

use std::collections::BTreeMap;

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};

use super::{header_text, Broker, REASON_HEADER, ROUTING_KEY_HEADER};
use crate::config::AmqpSettings;

/// What `dlq list` reports.
#[derive(Debug, Default)]
pub struct Listing {
    pub count: u32,
    /// Reason → number of messages, over the messages inspected.
    pub reasons: BTreeMap<String, u64>,
    pub inspected: u64,
}

async fn queue_depth(broker: &Broker, queue: &str) -> lapin::Result<u32> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = broker
        .consume
        .queue_declare(ShortString::from(queue), passive, FieldTable::default())
        .await?;
    Ok(queue.message_count())
}

/// Why a copy is in the queue: our header, or the broker's own dead-lettering reason
/// (for example the delivery limit).
fn reason_of(properties: &BasicProperties) -> String {
    if let Some(reason) = header_text(properties, REASON_HEADER) {
        return reason;
    }
    match header_text(properties, "x-first-death-reason") {
        Some(reason) => format!("dead-lettered by the broker: {reason}"),
        None => "unknown".to_string(),
    }
}

/// The next message of the dead-letter queue, unacknowledged.
async fn next_message(
    broker: &Broker,
    queue: &str,
) -> lapin::Result<Option<lapin::message::BasicGetMessage>> {
    broker
        .consume
        .basic_get(ShortString::from(queue), BasicGetOptions::default())
        .await
}

/// Counts the queue and tallies the reasons of up to `limit` messages without removing
/// any (they are read unacknowledged and returned when the channel closes).
pub async fn list(settings: &AmqpSettings, limit: u64) -> anyhow::Result<Listing> {
    let broker = Broker::connect(settings).await?;
    let mut listing = Listing {
        count: queue_depth(&broker, &settings.dead_letter_queue).await?,
        ..Listing::default()
    };
    while listing.inspected < limit.min(u64::from(listing.count)) {
        let Some(message) = next_message(&broker, &settings.dead_letter_queue).await? else {
            break;
        };
        *listing
            .reasons
            .entry(reason_of(&message.delivery.properties))
            .or_default() += 1;
        listing.inspected += 1;
    }
    broker.close().await;
    Ok(listing)
}

/// What `dlq replay` did.
#[derive(Debug, Default)]
pub struct Replayed {
    pub republished: u64,
    pub remaining: u32,
}

/// Moves up to `limit` messages (never more than were there at the start, so messages
/// that fail again are not looped) back to the main queue. Each copy is acknowledged only
/// after the broker confirmed the republished message.
pub async fn replay(settings: &AmqpSettings, limit: u64) -> anyhow::Result<Replayed> {
    let broker = Broker::connect(settings).await?;
    let at_start = u64::from(queue_depth(&broker, &settings.dead_letter_queue).await?);
    let mut replayed = Replayed::default();
    while replayed.republished < limit.min(at_start) {
        let Some(message) = next_message(&broker, &settings.dead_letter_queue).await? else {
            break;
        };
        let delivery = message.delivery;
        let routing_key = header_text(&delivery.properties, ROUTING_KEY_HEADER).unwrap_or_default();
        // Straight to the main queue through the default exchange: the original binding
        // may have been on another exchange (aznamier's).
        let confirmation = broker
            .publish
            .basic_publish(
                ShortString::from(""),
                ShortString::from(settings.queue.as_str()),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &delivery.data,
                delivery.properties.clone(),
            )
            .await?
            .await?;
        match confirmation {
            Confirmation::Ack(None) => {}
            Confirmation::Ack(Some(_)) => {
                anyhow::bail!("queue {} does not exist: message returned", settings.queue)
            }
            _ => anyhow::bail!(
                "the broker refused the republished message (routing key {routing_key:?})"
            ),
        }
        broker
            .consume
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await?;
        replayed.republished += 1;
    }
    replayed.remaining = queue_depth(&broker, &settings.dead_letter_queue).await?;
    broker.close().await;
    Ok(replayed)
}

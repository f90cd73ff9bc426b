//! The dead-letter queue's tools: inspect it (`dlq list`) and requeue its messages into
//! the main flow once the cause is fixed (`dlq requeue`).

use std::collections::BTreeMap;
use std::fmt;

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation};

use super::{header_text, AmqpError, Broker, REASON_HEADER, ROUTING_KEY_HEADER};
use crate::config::AmqpSettings;

/// What `dlq list` reports.
#[derive(Debug, Default)]
pub struct DlqListing {
    pub queue: String,
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
pub async fn list(settings: &AmqpSettings, limit: u64) -> Result<DlqListing, AmqpError> {
    let broker = Broker::connect(settings).await?;
    let mut listing = DlqListing {
        queue: settings.dead_letter_queue.clone(),
        count: queue_depth(&broker, &settings.dead_letter_queue).await?,
        ..DlqListing::default()
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

/// What `dlq requeue` did.
#[derive(Debug, Default)]
pub struct RequeueReport {
    pub queue: String,
    pub dead_letter_queue: String,
    pub requeued: u64,
    pub remaining: u32,
}

impl fmt::Display for DlqListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dead-letter queue {}: {} messages",
            self.queue, self.count
        )?;
        for (reason, count) in &self.reasons {
            write!(f, "\n{count:>8}  {reason}")?;
        }
        if u64::from(self.count) > self.inspected {
            write!(f, "\n(reasons of the first {} messages)", self.inspected)?;
        }
        Ok(())
    }
}

impl fmt::Display for RequeueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dlq requeue summary: requeued {} to {}, {} left in {}",
            self.requeued, self.queue, self.remaining, self.dead_letter_queue
        )
    }
}

/// Moves up to `limit` messages (never more than were there at the start, so messages
/// that fail again are not looped) back to the main queue. Each copy is acknowledged only
/// after the broker confirmed the republished message.
pub async fn requeue(settings: &AmqpSettings, limit: u64) -> Result<RequeueReport, AmqpError> {
    let broker = Broker::connect(settings).await?;
    let at_start = u64::from(queue_depth(&broker, &settings.dead_letter_queue).await?);
    let mut report = RequeueReport {
        queue: settings.queue.clone(),
        dead_letter_queue: settings.dead_letter_queue.clone(),
        ..RequeueReport::default()
    };
    while report.requeued < limit.min(at_start) {
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
            Confirmation::Ack(Some(_)) => return Err(AmqpError::NoQueue(settings.queue.clone())),
            _ => {
                return Err(AmqpError::NotConfirmed(format!(
                    "the requeued message (routing key {routing_key:?})"
                )))
            }
        }
        broker
            .consume
            .basic_ack(delivery.delivery_tag, BasicAckOptions::default())
            .await?;
        report.requeued += 1;
    }
    report.remaining = queue_depth(&broker, &settings.dead_letter_queue).await?;
    broker.close().await;
    Ok(report)
}

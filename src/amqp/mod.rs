//! RabbitMQ adapter: topology, the batch consumer, dead-lettering and the DLQ tools.

mod consumer;
pub mod dlq;
pub mod limbo;
pub mod publish;

pub use consumer::Consumer;

use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::AmqpSettings;

/// What can go wrong talking to the broker outside the consumer (publish, dlq tools).
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("RabbitMQ: {0}")]
    Broker(#[from] lapin::Error),
    #[error("reading the input: {0}")]
    Input(#[from] std::io::Error),
    #[error("queue {0} does not exist: the message came back")]
    NoQueue(String),
    #[error("the broker did not confirm {0}")]
    NotConfirmed(String),
}

/// Headers set on every dead-lettered copy.
pub const REASON_HEADER: &str = "x-keycloak-sync-reason";
pub const ROUTING_KEY_HEADER: &str = "x-original-routing-key";
pub const EXCHANGE_HEADER: &str = "x-original-exchange";
pub const DEAD_LETTERED_AT_HEADER: &str = "x-dead-lettered-at";
/// The broker user that published the original (its `user_id`).
pub const PUBLISHER_HEADER: &str = "x-original-user-id";

/// One connection with a consuming channel and a publishing channel in confirm mode.
pub struct Broker {
    pub connection: Connection,
    pub consume: Channel,
    pub publish: Channel,
}

impl Broker {
    pub async fn connect(settings: &AmqpSettings) -> lapin::Result<Broker> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(b"keycloak-sync".to_vec()));
        let connection = Connection::connect(settings.url.expose(), properties).await?;
        let consume = connection.create_channel().await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Broker {
            connection,
            consume,
            publish,
        })
    }

    pub async fn close(&self) {
        let _ = self.consume.close(200, ShortString::from("bye")).await;
        let _ = self.publish.close(200, ShortString::from("bye")).await;
        let _ = self.connection.close(200, ShortString::from("bye")).await;
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn long_string(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text.as_bytes().to_vec()))
}

/// Declares the exchange, the quorum queue with its delivery limit and dead-letter
/// exchange, the dead-letter queue, the internal queue the dead-letter exchange feeds
/// (see `limbo`), and the bindings. Idempotent; a dead-letter queue bound to the
/// dead-letter exchange by an earlier version is unbound.
pub async fn declare_topology(channel: &Channel, settings: &AmqpSettings) -> lapin::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            ShortString::from(settings.exchange.as_str()),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            ShortString::from(settings.dead_letter_exchange.as_str()),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    let queue_options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let quorum = AMQPValue::LongString(LongString::from(b"quorum".to_vec()));
    channel
        .queue_declare(
            ShortString::from(settings.dead_letter_queue.as_str()),
            queue_options,
            table(&[("x-queue-type", quorum.clone())]),
        )
        .await?;
    let redacted = limbo::redacted_exchange(settings);
    channel
        .exchange_declare(
            ShortString::from(redacted.as_str()),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(settings.dead_letter_queue.as_str()),
            ShortString::from(redacted.as_str()),
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let limbo = limbo::limbo_queue(settings);
    channel
        .queue_declare(
            ShortString::from(limbo.as_str()),
            queue_options,
            table(&[("x-queue-type", quorum.clone())]),
        )
        .await?;
    channel
        .queue_bind(
            ShortString::from(limbo.as_str()),
            ShortString::from(settings.dead_letter_exchange.as_str()),
            ShortString::from(""),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // Copies reach the dead-letter queue only redacted, through the daemon.
    channel
        .queue_unbind(
            ShortString::from(settings.dead_letter_queue.as_str()),
            ShortString::from(settings.dead_letter_exchange.as_str()),
            ShortString::from(""),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            ShortString::from(settings.queue.as_str()),
            queue_options,
            table(&[
                ("x-queue-type", quorum),
                (
                    "x-dead-letter-exchange",
                    long_string(&settings.dead_letter_exchange),
                ),
                (
                    "x-delivery-limit",
                    AMQPValue::LongInt(settings.delivery_limit.min(i32::MAX as u32) as i32),
                ),
            ]),
        )
        .await?;
    let mut bindings = vec![(settings.exchange.as_str(), settings.binding_key.as_str())];
    if settings.bind_aznamier {
        bindings.push((settings.aznamier_exchange.as_str(), "KK.EVENT.#"));
    }
    for (exchange, key) in bindings {
        channel
            .queue_bind(
                ShortString::from(settings.queue.as_str()),
                ShortString::from(exchange),
                ShortString::from(key),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}

/// Properties of a dead-letter copy: the original's, plus the reason and origin headers.
pub fn dead_letter_properties(
    original: &BasicProperties,
    routing_key: &str,
    exchange: &str,
    reason: &str,
    now_ms: i64,
) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(ShortString::from(REASON_HEADER), long_string(reason));
    headers.insert(
        ShortString::from(ROUTING_KEY_HEADER),
        long_string(routing_key),
    );
    headers.insert(ShortString::from(EXCHANGE_HEADER), long_string(exchange));
    headers.insert(
        ShortString::from(DEAD_LETTERED_AT_HEADER),
        AMQPValue::LongLongInt(now_ms),
    );
    // The copy is published by keycloak-sync's own broker user: RabbitMQ refuses a
    // `user_id` naming anyone else, so the original publisher moves to a header.
    if let Some(user) = original.user_id() {
        headers.insert(
            ShortString::from(PUBLISHER_HEADER),
            long_string(user.as_str()),
        );
    }
    let mut copy = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    if let Some(v) = original.content_type() {
        copy = copy.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        copy = copy.with_content_encoding(v.clone());
    }
    if let Some(v) = original.message_id() {
        copy = copy.with_message_id(v.clone());
    }
    if let Some(v) = original.correlation_id() {
        copy = copy.with_correlation_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        copy = copy.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        copy = copy.with_type(v.clone());
    }
    if let Some(v) = original.app_id() {
        copy = copy.with_app_id(v.clone());
    }
    copy
}

pub fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_headers_name_reason_and_origin() {
        let properties = dead_letter_properties(
            &BasicProperties::default(),
            "kc.acme.user.LOGIN",
            "keycloak.events",
            "field `time` is missing",
            42,
        );
        assert_eq!(
            header_text(&properties, REASON_HEADER).as_deref(),
            Some("field `time` is missing")
        );
        assert_eq!(
            header_text(&properties, ROUTING_KEY_HEADER).as_deref(),
            Some("kc.acme.user.LOGIN")
        );
        assert_eq!(properties.delivery_mode(), &Some(2));
    }
}

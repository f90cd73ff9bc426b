//! RabbitMQ adapter: topology, the batch consumer, dead-lettering and the DLQ tools.

mod acks;
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

use std::time::Duration;

use crate::config::{AmqpSettings, ConnectOrder, SecretUrl};

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

/// A node that does not complete the AMQP handshake within this is passed over.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection with a consuming channel and a publishing channel in confirm mode.
pub struct Broker {
    pub connection: Connection,
    pub consume: Channel,
    pub publish: Channel,
    /// Which of `amqp.url` this is, and its `host:port`.
    pub index: usize,
    pub address: String,
}

impl Broker {
    /// Connects to the first node of `amqp.url` that answers, going round the list from
    /// where `amqp.connect_order` says.
    pub async fn connect(settings: &AmqpSettings) -> lapin::Result<Broker> {
        let first = match settings.connect_order {
            ConnectOrder::Listed => 0,
            ConnectOrder::Shuffled => rand::random_range(0..settings.urls.len().max(1)),
        };
        Broker::connect_from(settings, first).await
    }

    /// Tries each node once, starting at `first`; the last node's error if none answers.
    pub async fn connect_from(settings: &AmqpSettings, first: usize) -> lapin::Result<Broker> {
        let count = settings.urls.len();
        let mut last_error = lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "amqp.url lists no broker",
        ));
        for step in 0..count {
            let index = (first + step) % count;
            let url = &settings.urls[index];
            match Broker::connect_to(url).await {
                Ok((connection, consume, publish)) => {
                    return Ok(Broker {
                        connection,
                        consume,
                        publish,
                        index,
                        address: url.address(),
                    })
                }
                Err(error) => {
                    if count > 1 {
                        tracing::warn!(node = %url.address(), %error, "RabbitMQ node unreachable; trying the next");
                    }
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    async fn connect_to(url: &SecretUrl) -> lapin::Result<(Connection, Channel, Channel)> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(b"keycloak-sync".to_vec()));
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(url.expose(), properties),
        )
        .await
        .map_err(|_| {
            lapin::Error::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no AMQP handshake within {} s", CONNECT_TIMEOUT.as_secs()),
            ))
        })??;
        let consume = connection.create_channel().await?;
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok((connection, consume, publish))
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
/// (see `limbo`), and the bindings, on a channel of its own. Idempotent; a dead-letter
/// queue bound to the dead-letter exchange by an earlier version is unbound.
///
/// The queues are quorum queues (replicated over a cluster's nodes) whose leaders the
/// broker places on the node with the fewest leaders (`balanced`), so the queues of
/// several deployments spread over a cluster.
pub async fn declare_topology(
    connection: &Connection,
    settings: &AmqpSettings,
) -> lapin::Result<()> {
    let mut channel = connection.create_channel().await?;
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
    declare_quorum_queue(connection, &mut channel, &settings.dead_letter_queue, &[]).await?;
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
    declare_quorum_queue(connection, &mut channel, &limbo, &[]).await?;
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
    declare_quorum_queue(
        connection,
        &mut channel,
        &settings.queue,
        &[
            (
                "x-dead-letter-exchange",
                long_string(&settings.dead_letter_exchange),
            ),
            (
                "x-delivery-limit",
                AMQPValue::LongInt(settings.delivery_limit.min(i32::MAX as u32) as i32),
            ),
        ],
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
    let _ = channel.close(200, ShortString::from("declared")).await;
    Ok(())
}

const LEADER_LOCATOR: &str = "x-queue-leader-locator";

/// Declares a durable quorum queue with `arguments` and a balanced leader. A queue made
/// without the leader locator (by an earlier version) cannot be declared with it — the
/// broker refuses, closing the channel — so it is declared again as it was made, on a
/// new channel: its leader stays where it is.
async fn declare_quorum_queue(
    connection: &Connection,
    channel: &mut Channel,
    name: &str,
    arguments: &[(&str, AMQPValue)],
) -> lapin::Result<()> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let mut entries = vec![("x-queue-type", long_string("quorum"))];
    entries.extend(arguments.iter().cloned());
    let mut balanced = entries.clone();
    balanced.push((LEADER_LOCATOR, long_string("balanced")));
    match channel
        .queue_declare(ShortString::from(name), options, table(&balanced))
        .await
    {
        Ok(_) => Ok(()),
        Err(error) if refuses_leader_locator(&error) => {
            tracing::info!(
                queue = name,
                "queue made without a leader locator; declared as it was made"
            );
            *channel = connection.create_channel().await?;
            channel
                .queue_declare(ShortString::from(name), options, table(&entries))
                .await
                .map(|_| ())
        }
        Err(error) => Err(error),
    }
}

fn refuses_leader_locator(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(refusal)
        if refusal.get_id() == 406 && refusal.get_message().as_str().contains(LEADER_LOCATOR))
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

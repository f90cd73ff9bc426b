//! `[amqp]`: the broker, its topology and the consumer's batching.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::{ConfigError, SecretUrl};

const URL: Key = Key::new(
    "amqp.url",
    Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
    Shown::SecretUrl,
    "secret",
);
const EXCHANGE: Key = Key::new("amqp.exchange", Some("keycloak.events"), Shown::Plain, "");
const QUEUE: Key = Key::new("amqp.queue", Some("keycloak-sync"), Shown::Plain, "");
const BINDING_KEY: Key = Key::new("amqp.binding_key", Some("kc.#"), Shown::Plain, "");
const DEAD_LETTER_EXCHANGE: Key = Key::new(
    "amqp.dead_letter_exchange",
    Some("keycloak-sync.dlx"),
    Shown::Plain,
    "",
);
const DEAD_LETTER_QUEUE: Key = Key::new(
    "amqp.dead_letter_queue",
    Some("keycloak-sync.dlq"),
    Shown::Plain,
    "",
);
const DECLARE_TOPOLOGY: Key = Key::new("amqp.declare_topology", Some("true"), Shown::Plain, "");
const BIND_AZNAMIER: Key = Key::new("amqp.bind_aznamier", Some("false"), Shown::Plain, "");
const AZNAMIER_EXCHANGE: Key = Key::new(
    "amqp.aznamier_exchange",
    Some("amq.topic"),
    Shown::Plain,
    "",
);
const PREFETCH: Key = Key::new("amqp.prefetch", Some("1500"), Shown::Plain, "");
const BATCH_SIZE: Key = Key::new(
    "amqp.batch_size",
    Some("500"),
    Shown::Plain,
    "at most `amqp.prefetch`",
);
const BATCH_MAX_WAIT: Key = Key::new("amqp.batch_max_wait_ms", Some("20"), Shown::Plain, "");
const WORKERS: Key = Key::new("amqp.workers", Some("3"), Shown::Plain, "");
const DELIVERY_LIMIT: Key = Key::new("amqp.delivery_limit", Some("10"), Shown::Plain, "");
const RECONNECT_MAX: Key = Key::new("amqp.reconnect_max_secs", Some("30"), Shown::Plain, "");
const EVENT_PUBLISHERS: Key = Key::new(
    "amqp.event_publishers",
    Some(""),
    Shown::Plain,
    "empty: anyone; else the broker users whose Keycloak events are taken, comma-separated",
);
const TOKEN_PUBLISHERS: Key = Key::new(
    "amqp.token_publishers",
    Some(""),
    Shown::Plain,
    "empty: anyone; else the broker users whose token messages are taken, comma-separated",
);

/// Keys whose values are comma-separated lists in the environment.
pub const LIST_KEYS: &[&str] = &[EVENT_PUBLISHERS.name, TOKEN_PUBLISHERS.name];

pub const KEYS: &[Key] = &[
    URL,
    EXCHANGE,
    QUEUE,
    BINDING_KEY,
    DEAD_LETTER_EXCHANGE,
    DEAD_LETTER_QUEUE,
    DECLARE_TOPOLOGY,
    BIND_AZNAMIER,
    AZNAMIER_EXCHANGE,
    PREFETCH,
    BATCH_SIZE,
    BATCH_MAX_WAIT,
    WORKERS,
    DELIVERY_LIMIT,
    RECONNECT_MAX,
    EVENT_PUBLISHERS,
    TOKEN_PUBLISHERS,
];

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    pub url: SecretUrl,
    pub exchange: String,
    pub queue: String,
    pub binding_key: String,
    pub dead_letter_exchange: String,
    pub dead_letter_queue: String,
    /// Off for brokers where the topology is managed elsewhere.
    pub declare_topology: bool,
    /// Also bind the queue to the aznamier plugin's `KK.EVENT.#` keys.
    pub bind_aznamier: bool,
    pub aznamier_exchange: String,
    /// Unacknowledged messages the broker may hand over: bounds memory in flight.
    pub prefetch: u16,
    pub batch_size: usize,
    pub batch_max_wait: Duration,
    /// Batches applied at once, each in its own transaction.
    pub workers: usize,
    /// Deliveries after which the queue dead-letters a message by itself.
    pub delivery_limit: u32,
    /// Ceiling of the wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// Broker users (RabbitMQ checks a message's `user_id` against its connection's user)
    /// whose events, and whose token messages, are taken; empty: anyone.
    pub event_publishers: Vec<String>,
    pub token_publishers: Vec<String>,
}

impl AmqpSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let url = values
            .url(&URL, &["amqp", "amqps"])?
            .ok_or_else(|| URL.invalid("is not set"))?;
        let prefetch: u16 = values.at_least(&PREFETCH, 1)?;
        Ok(AmqpSettings {
            url,
            exchange: values.non_empty(&EXCHANGE)?,
            queue: values.non_empty(&QUEUE)?,
            binding_key: values.non_empty(&BINDING_KEY)?,
            dead_letter_exchange: values.non_empty(&DEAD_LETTER_EXCHANGE)?,
            dead_letter_queue: values.non_empty(&DEAD_LETTER_QUEUE)?,
            declare_topology: values.get(&DECLARE_TOPOLOGY)?,
            bind_aznamier: values.get(&BIND_AZNAMIER)?,
            aznamier_exchange: values.get(&AZNAMIER_EXCHANGE)?,
            prefetch,
            batch_size: values.within(&BATCH_SIZE, 1..=usize::from(prefetch))?,
            batch_max_wait: Duration::from_millis(values.get(&BATCH_MAX_WAIT)?),
            workers: values.at_least(&WORKERS, 1)?,
            delivery_limit: values.at_least(&DELIVERY_LIMIT, 1)?,
            reconnect_max: values.secs(&RECONNECT_MAX)?.max(Duration::from_secs(1)),
            event_publishers: values.list(&EVENT_PUBLISHERS)?,
            token_publishers: values.list(&TOKEN_PUBLISHERS)?,
        })
    }
}

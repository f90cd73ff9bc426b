//! `[amqp]`: the broker, its topology and the consumer's batching.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use url::Url;

use super::{ConfigError, SecretUrl};

const URL: Key = Key::new(
    "amqp.url",
    Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
    Shown::SecretUrl,
    "secret; several: comma-separated, one per cluster node",
);
const CONNECT_ORDER: Key = Key::new(
    "amqp.connect_order",
    Some("shuffled"),
    Shown::Plain,
    "`shuffled` or `listed`",
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
const PREFETCH: Key = Key::new(
    "amqp.prefetch",
    Some("4500"),
    Shown::Plain,
    "3 × `amqp.batch_size` × `amqp.workers` keeps every lane fed",
);
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
    CONNECT_ORDER,
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

/// Where in the broker list a connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOrder {
    /// Each process starts at a random broker and goes round the list from there, so
    /// replicas sharing one configuration spread over the nodes.
    Shuffled,
    /// The first broker first: for a list ordered by preference.
    Listed,
}

#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// The cluster's nodes; a lost connection moves on to the next one.
    pub urls: Vec<SecretUrl>,
    pub connect_order: ConnectOrder,
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
        let list: String = values
            .optional(&URL)?
            .ok_or_else(|| URL.invalid("is not set"))?;
        let urls = broker_list(&list).map_err(|problem| URL.invalid(problem))?;
        let prefetch: u16 = values.at_least(&PREFETCH, 1)?;
        Ok(AmqpSettings {
            urls,
            connect_order: values.one_of(
                &CONNECT_ORDER,
                &[
                    ("shuffled", ConnectOrder::Shuffled),
                    ("listed", ConnectOrder::Listed),
                ],
            )?,
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

/// Reads a comma-separated list of AMQP URLs. A URL without credentials takes the first
/// listed credentials, and one without a virtual host (path) or options (query) the
/// first listed ones: `amqp://user:pw@node1/%2f,amqp://node2,amqp://node3`. Problems
/// name the URL by its place in the list, never by its text.
pub fn broker_list(text: &str) -> Result<Vec<SecretUrl>, String> {
    let mut parsed = Vec::new();
    for (index, part) in text.split(',').map(str::trim).enumerate() {
        let place = index + 1;
        if part.is_empty() {
            return Err(format!("URL {place} of the list is empty"));
        }
        let url = Url::parse(part)
            .map_err(|e| format!("URL {place} of the list is not a valid URL ({e})"))?;
        if !matches!(url.scheme(), "amqp" | "amqps") {
            return Err(format!(
                "URL {place} of the list: scheme {:?} is not amqp or amqps",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("URL {place} of the list has no host"));
        }
        parsed.push(url);
    }
    let credentials = parsed
        .iter()
        .find(|url| !url.username().is_empty())
        .map(|url| {
            (
                url.username().to_string(),
                url.password().map(str::to_string),
            )
        });
    let vhost = parsed
        .iter()
        .find(|url| !matches!(url.path(), "" | "/"))
        .map(|url| url.path().to_string());
    let query = parsed
        .iter()
        .find_map(|url| url.query().map(str::to_string));
    Ok(parsed
        .into_iter()
        .map(|mut url| {
            if let (true, Some((user, password))) = (url.username().is_empty(), &credentials) {
                let _ = url.set_username(user);
                let _ = url.set_password(password.as_deref());
            }
            if let (true, Some(path)) = (matches!(url.path(), "" | "/"), &vhost) {
                url.set_path(path);
            }
            if url.query().is_none() {
                url.set_query(query.as_deref());
            }
            SecretUrl::new(String::from(url))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(list: &str) -> Vec<String> {
        broker_list(list)
            .expect("valid list")
            .iter()
            .map(|url| url.expose().to_string())
            .collect()
    }

    #[test]
    fn later_urls_share_the_first_credentials_vhost_and_options() {
        assert_eq!(
            texts("amqp://kcs:pw@n1:5672/prod?heartbeat=10, amqp://n2:5672 ,amqp://other:x@n3"),
            vec![
                "amqp://kcs:pw@n1:5672/prod?heartbeat=10",
                "amqp://kcs:pw@n2:5672/prod?heartbeat=10",
                "amqp://other:x@n3/prod?heartbeat=10",
            ]
        );
        assert_eq!(texts("amqp://n1"), vec!["amqp://n1"]);
    }

    #[test]
    fn a_bad_url_is_named_by_its_place_not_its_text() {
        for (list, expected) in [
            ("amqp://a:secret@n1,", "URL 2 of the list is empty"),
            ("amqp://a:secret@n1,http://n2", "URL 2 of the list: scheme"),
            ("amqp://a:secret@n1,amqp://", "URL 2 of the list"),
            ("nonsense:secret", "URL 1 of the list"),
        ] {
            let problem = broker_list(list).expect_err(list);
            assert!(problem.starts_with(expected), "{list}: {problem}");
            assert!(!problem.contains("secret"), "{problem}");
        }
    }
}

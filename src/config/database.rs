//! `[database]`: the Postgres the product writes.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::{is_identifier, ConfigError, SecretUrl};

const URL: Key = Key::new("database.url", None, Shown::SecretUrl, "required; secret");
const SCHEMA: Key = Key::new("database.schema", Some("keycloak_sync"), Shown::Plain, "");
const MAX_CONNECTIONS: Key = Key::new("database.max_connections", Some("8"), Shown::Plain, "");
const CONNECT_TIMEOUT: Key = Key::new(
    "database.connect_timeout_secs",
    Some("10"),
    Shown::Plain,
    "",
);
const RETRY_MAX: Key = Key::new(
    "database.retry_max_secs",
    Some("60"),
    Shown::Plain,
    "how long transient errors are retried",
);

const PREPARED_STATEMENTS: Key = Key::new(
    "database.prepared_statements",
    Some("true"),
    Shown::Plain,
    "turned off by itself when a pooler in transaction mode is noticed; `false` from the start",
);

pub const KEYS: &[Key] = &[
    URL,
    SCHEMA,
    MAX_CONNECTIONS,
    CONNECT_TIMEOUT,
    RETRY_MAX,
    PREPARED_STATEMENTS,
];

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretUrl,
    pub schema: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// How long one operation keeps retrying transient database errors.
    pub retry_max: Duration,
    /// Whether statements are prepared by name and kept per connection. A pooler in
    /// transaction mode runs each transaction on any server connection, where a name
    /// prepared elsewhere is unknown: there, every statement is prepared unnamed, afresh.
    pub prepared_statements: bool,
}

impl DatabaseSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let url = values
            .url(&URL, &["postgres", "postgresql"])?
            .ok_or_else(|| URL.invalid("is not set"))?;
        let schema: String = values.get(&SCHEMA)?;
        if !is_identifier(&schema) {
            return Err(SCHEMA.invalid(format!(
                "{schema:?} is not a plain identifier (lower-case letters, digits, _; at most 63)"
            )));
        }
        Ok(DatabaseSettings {
            url,
            schema,
            max_connections: values.at_least(&MAX_CONNECTIONS, 1)?,
            connect_timeout: values.secs(&CONNECT_TIMEOUT)?,
            retry_max: values.secs(&RETRY_MAX)?,
            prepared_statements: values.get(&PREPARED_STATEMENTS)?,
        })
    }
}

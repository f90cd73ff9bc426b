//! Configuration: built-in defaults, then an optional TOML file, then
//! `KEYCLOAK_SYNC__SECTION__KEY` environment variables. Read and validated once at start;
//! secrets are wrapped so that `Debug` and `config check` never print them.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use thiserror::Error;
use url::Url;

use crate::vault::KeyRing;

pub const ENV_PREFIX: &str = "KEYCLOAK_SYNC";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration key `{key}` (environment {env}): {problem}")]
    Invalid {
        key: &'static str,
        env: String,
        problem: String,
    },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        env: env_name(key),
        problem: problem.into(),
    }
}

/// The environment variable that sets `key` (`database.url` → `KEYCLOAK_SYNC__DATABASE__URL`).
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase())
}

/// How `config check` shows a key's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    Plain,
    /// Never shown.
    Secret,
    /// A URL shown with its password and query redacted.
    SecretUrl,
}

/// One configuration key: the one list that the loader's defaults, `config check` and
/// the deployment files are checked against.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    /// `None`: no default (optional, or required where validation says so).
    pub default: Option<&'static str>,
    pub shown: Shown,
}

const fn key(name: &'static str, default: Option<&'static str>, shown: Shown) -> Key {
    Key {
        name,
        default,
        shown,
    }
}

pub const KEYS: &[Key] = &[
    key("database.url", None, Shown::SecretUrl),
    key("database.schema", Some("keycloak_sync"), Shown::Plain),
    key("database.max_connections", Some("8"), Shown::Plain),
    key("database.connect_timeout_secs", Some("10"), Shown::Plain),
    key("database.retry_max_secs", Some("60"), Shown::Plain),
    key(
        "amqp.url",
        Some("amqp://guest:guest@127.0.0.1:5672/%2f"),
        Shown::SecretUrl,
    ),
    key("amqp.exchange", Some("keycloak.events"), Shown::Plain),
    key("amqp.queue", Some("keycloak-sync"), Shown::Plain),
    key("amqp.binding_key", Some("kc.#"), Shown::Plain),
    key(
        "amqp.dead_letter_exchange",
        Some("keycloak-sync.dlx"),
        Shown::Plain,
    ),
    key(
        "amqp.dead_letter_queue",
        Some("keycloak-sync.dlq"),
        Shown::Plain,
    ),
    key("amqp.declare_topology", Some("true"), Shown::Plain),
    key("amqp.bind_aznamier", Some("false"), Shown::Plain),
    key("amqp.aznamier_exchange", Some("amq.topic"), Shown::Plain),
    key("amqp.prefetch", Some("1500"), Shown::Plain),
    key("amqp.batch_size", Some("500"), Shown::Plain),
    key("amqp.batch_max_wait_ms", Some("20"), Shown::Plain),
    key("amqp.workers", Some("3"), Shown::Plain),
    key("amqp.delivery_limit", Some("10"), Shown::Plain),
    key("amqp.reconnect_max_secs", Some("30"), Shown::Plain),
    key("daemon.shutdown_grace_secs", Some("20"), Shown::Plain),
    key("daemon.inbox_retention_days", Some("0"), Shown::Plain),
    key("http.listen", Some("0.0.0.0:8080"), Shown::Plain),
    key("keycloak.url", None, Shown::Plain),
    key("keycloak.realms", Some(""), Shown::Plain),
    key("keycloak.client_id", None, Shown::Plain),
    key("keycloak.client_secret", None, Shown::Secret),
    key("keycloak.token_realm", None, Shown::Plain),
    key("keycloak.timeout_secs", Some("10"), Shown::Plain),
    key("keycloak.retry_max_secs", Some("30"), Shown::Plain),
    key("keycloak.page_size", Some("100"), Shown::Plain),
    key("keycloak.enrich", Some("true"), Shown::Plain),
    key("keycloak.enrich_concurrency", Some("4"), Shown::Plain),
    key("reconcile.interval_secs", Some("0"), Shown::Plain),
    key("reconcile.max_delete_percent", Some("10"), Shown::Plain),
    key("reconcile.sessions", Some("none"), Shown::Plain),
    key("vault.keys", None, Shown::Secret),
    key("vault.active_key", None, Shown::Plain),
    key("vault.purge_interval_secs", Some("300"), Shown::Plain),
    key("log.format", Some("text"), Shown::Plain),
    key("log.level", Some("info"), Shown::Plain),
    key("limits.max_message_bytes", Some("1048576"), Shown::Plain),
    key("replay.batch_size", Some("500"), Shown::Plain),
    key("replay.workers", Some("2"), Shown::Plain),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    database: RawDatabase,
    amqp: RawAmqp,
    daemon: RawDaemon,
    http: RawHttp,
    keycloak: RawKeycloak,
    reconcile: RawReconcile,
    #[serde(default)]
    vault: RawVault,
    log: RawLog,
    limits: RawLimits,
    replay: RawReplay,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: Option<SecretString>,
    schema: String,
    max_connections: u32,
    connect_timeout_secs: u64,
    retry_max_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmqp {
    url: SecretString,
    exchange: String,
    queue: String,
    binding_key: String,
    dead_letter_exchange: String,
    dead_letter_queue: String,
    declare_topology: bool,
    bind_aznamier: bool,
    aznamier_exchange: String,
    prefetch: u16,
    batch_size: usize,
    batch_max_wait_ms: u64,
    workers: usize,
    delivery_limit: u32,
    reconnect_max_secs: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    shutdown_grace_secs: u64,
    inbox_retention_days: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeycloak {
    url: Option<String>,
    realms: Vec<String>,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    token_realm: Option<String>,
    timeout_secs: u64,
    retry_max_secs: u64,
    page_size: u32,
    enrich: bool,
    enrich_concurrency: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReconcile {
    interval_secs: u64,
    max_delete_percent: f64,
    sessions: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    keys: Option<SecretString>,
    active_key: Option<String>,
    #[serde(default = "default_purge_interval")]
    purge_interval_secs: u64,
}

fn default_purge_interval() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: String,
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_message_bytes: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReplay {
    batch_size: usize,
    workers: usize,
}

/// A URL whose password is a secret: `Display` shows it with the password redacted.
#[derive(Clone)]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(SecretString::from(url.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Url::parse(self.0.expose_secret()) {
            Ok(mut url) => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("[redacted]"));
                }
                // Query strings may carry passwords too (`?password=`).
                if url.query().is_some() {
                    url.set_query(Some("[redacted]"));
                }
                // The password placeholder is shown as typed, not percent-encoded.
                write!(
                    f,
                    "{}",
                    url.as_str().replace("%5Bredacted%5D", "[redacted]")
                )
            }
            Err(_) => f.write_str("[redacted: not a valid URL]"),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: SecretUrl,
    pub schema: String,
    pub max_connections: u32,
    pub connect_timeout: Duration,
    /// How long one operation keeps retrying transient database errors.
    pub retry_max: Duration,
}

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
}

#[derive(Debug, Clone)]
pub struct KeycloakSettings {
    /// Base URL, with `/auth` for servers that still use that prefix.
    pub url: Option<Url>,
    pub realms: Vec<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    /// The realm the service account logs in to; `None`: each realm's own.
    pub token_realm: Option<String>,
    pub timeout: Duration,
    /// How long one request keeps retrying what may pass (5xx, 429, timeouts).
    pub retry_max: Duration,
    pub page_size: u32,
    /// Read users that events leave incomplete from the Admin API (needs `url`).
    pub enrich: bool,
    pub enrich_concurrency: usize,
}

/// Which users' sessions a reconcile compares with Keycloak's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionCheck {
    None,
    All,
    /// A random sample of this many users with active sessions.
    Sample(u64),
}

impl std::str::FromStr for SessionCheck {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "none" => Ok(SessionCheck::None),
            "all" => Ok(SessionCheck::All),
            other => other
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .map(SessionCheck::Sample)
                .ok_or_else(|| format!("{other:?} is not none, all or a number of users")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How often the daemon reconciles; `None`: never (run `keycloak-sync reconcile`).
    pub interval: Option<Duration>,
    /// Above this share of local users missing from Keycloak, nothing is deleted.
    pub max_delete_percent: f64,
    pub sessions: SessionCheck,
}

#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// The parsed key ring; `None` when `vault.keys` is unset (token messages refused).
    pub keys: Option<Arc<KeyRing>>,
    /// How often the daemon deletes expired tokens (0: never).
    pub purge_interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    /// How long a SIGTERM may take to finish the batch in hand and close.
    pub shutdown_grace: Duration,
    /// How long the inbox remembers an event id; `None`: for ever.
    pub inbox_retention: Option<Duration>,
    pub http_listen: SocketAddr,
    pub keycloak: KeycloakSettings,
    pub reconcile: ReconcileSettings,
    pub vault: VaultSettings,
    pub log: LogSettings,
    pub max_message_bytes: usize,
    pub replay_batch_size: usize,
    pub replay_workers: usize,
    /// Every key's effective value as `config check` shows it (secrets redacted).
    effective: Vec<(&'static str, String)>,
}

impl Settings {
    /// Loads defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, None)
    }

    /// As [`load`](Self::load), reading the environment from `env` instead of the process
    /// (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        for key in KEYS {
            if key.name == "keycloak.realms" {
                builder = builder.set_default(key.name, Vec::<String>::new())?;
            } else if let Some(default) = key.default {
                builder = builder.set_default(key.name, default)?;
            }
        }
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("keycloak.realms")
            .source(env);
        let merged = builder.add_source(environment).build()?;
        let raw: Raw = merged.clone().try_deserialize()?;
        let mut settings = raw.validate()?;
        settings.effective = effective_values(&merged);
        Ok(settings)
    }
}

impl Raw {
    fn validate(self) -> Result<Settings, ConfigError> {
        let db_url = self
            .database
            .url
            .ok_or_else(|| invalid("database.url", "is not set"))?;
        check_url(
            "database.url",
            db_url.expose_secret(),
            &["postgres", "postgresql"],
        )?;
        let schema = self.database.schema;
        if !is_identifier(&schema) {
            return Err(invalid(
                "database.schema",
                format!("{schema:?} is not a plain identifier (lower-case letters, digits, _; at most 63)"),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        check_url(
            "amqp.url",
            self.amqp.url.expose_secret(),
            &["amqp", "amqps"],
        )?;
        if self.amqp.exchange.is_empty() {
            return Err(invalid("amqp.exchange", "must not be empty"));
        }
        for (key, value) in [
            ("amqp.queue", &self.amqp.queue),
            ("amqp.binding_key", &self.amqp.binding_key),
            ("amqp.dead_letter_exchange", &self.amqp.dead_letter_exchange),
            ("amqp.dead_letter_queue", &self.amqp.dead_letter_queue),
        ] {
            if value.is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        if self.amqp.prefetch == 0 {
            return Err(invalid("amqp.prefetch", "must be at least 1"));
        }
        if self.amqp.batch_size == 0 || self.amqp.batch_size > usize::from(self.amqp.prefetch) {
            return Err(invalid(
                "amqp.batch_size",
                format!(
                    "must be between 1 and amqp.prefetch ({})",
                    self.amqp.prefetch
                ),
            ));
        }
        if self.amqp.workers == 0 {
            return Err(invalid("amqp.workers", "must be at least 1"));
        }
        if self.amqp.delivery_limit == 0 {
            return Err(invalid("amqp.delivery_limit", "must be at least 1"));
        }
        let http_listen = self.http.listen.parse().map_err(|e| {
            invalid(
                "http.listen",
                format!("{:?} is not host:port ({e})", self.http.listen),
            )
        })?;
        let keycloak_url = match self.keycloak.url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => {
                check_url("keycloak.url", url, &["http", "https"])?;
                Some(Url::parse(url).map_err(|e| invalid("keycloak.url", e.to_string()))?)
            }
            None => None,
        };
        if keycloak_url.is_some() {
            if self.keycloak.client_id.as_deref().unwrap_or("").is_empty() {
                return Err(invalid(
                    "keycloak.client_id",
                    "is required with keycloak.url",
                ));
            }
            if self.keycloak.client_secret.is_none() {
                return Err(invalid(
                    "keycloak.client_secret",
                    "is required with keycloak.url",
                ));
            }
            if self.keycloak.realms.iter().all(|r| r.is_empty()) {
                return Err(invalid(
                    "keycloak.realms",
                    "lists no realm, but keycloak.url is set",
                ));
            }
        }
        if self.keycloak.timeout_secs == 0 {
            return Err(invalid("keycloak.timeout_secs", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.keycloak.page_size) {
            return Err(invalid("keycloak.page_size", "must be between 1 and 10000"));
        }
        if self.keycloak.enrich_concurrency == 0 {
            return Err(invalid("keycloak.enrich_concurrency", "must be at least 1"));
        }
        let max_delete_percent = self.reconcile.max_delete_percent;
        if !(0.0..=100.0).contains(&max_delete_percent) {
            return Err(invalid(
                "reconcile.max_delete_percent",
                "must be between 0 and 100",
            ));
        }
        let sessions = self
            .reconcile
            .sessions
            .parse()
            .map_err(|e: String| invalid("reconcile.sessions", e))?;
        if self.reconcile.interval_secs > 0 && keycloak_url.is_none() {
            return Err(invalid("reconcile.interval_secs", "needs keycloak.url"));
        }
        let format = match self.log.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("{other:?} is not one of text, json"),
                ))
            }
        };
        if self.limits.max_message_bytes < 1024 {
            return Err(invalid("limits.max_message_bytes", "must be at least 1024"));
        }
        if self.replay.workers == 0 {
            return Err(invalid("replay.workers", "must be at least 1"));
        }
        if self.replay.batch_size == 0 {
            return Err(invalid("replay.batch_size", "must be at least 1"));
        }
        Ok(Settings {
            database: DatabaseSettings {
                url: SecretUrl(db_url),
                schema,
                max_connections: self.database.max_connections,
                connect_timeout: Duration::from_secs(self.database.connect_timeout_secs),
                retry_max: Duration::from_secs(self.database.retry_max_secs),
            },
            amqp: AmqpSettings {
                url: SecretUrl(self.amqp.url),
                exchange: self.amqp.exchange,
                queue: self.amqp.queue,
                binding_key: self.amqp.binding_key,
                dead_letter_exchange: self.amqp.dead_letter_exchange,
                dead_letter_queue: self.amqp.dead_letter_queue,
                declare_topology: self.amqp.declare_topology,
                bind_aznamier: self.amqp.bind_aznamier,
                aznamier_exchange: self.amqp.aznamier_exchange,
                prefetch: self.amqp.prefetch,
                batch_size: self.amqp.batch_size,
                batch_max_wait: Duration::from_millis(self.amqp.batch_max_wait_ms),
                workers: self.amqp.workers,
                delivery_limit: self.amqp.delivery_limit,
                reconnect_max: Duration::from_secs(self.amqp.reconnect_max_secs.max(1)),
            },
            shutdown_grace: Duration::from_secs(self.daemon.shutdown_grace_secs),
            inbox_retention: Some(Duration::from_secs(
                self.daemon.inbox_retention_days.saturating_mul(86_400),
            ))
            .filter(|d| !d.is_zero()),
            http_listen,
            keycloak: KeycloakSettings {
                enrich: self.keycloak.enrich && keycloak_url.is_some(),
                url: keycloak_url,
                realms: self
                    .keycloak
                    .realms
                    .into_iter()
                    .filter(|r| !r.is_empty())
                    .collect(),
                client_id: self.keycloak.client_id,
                client_secret: self.keycloak.client_secret,
                token_realm: self.keycloak.token_realm.filter(|r| !r.is_empty()),
                timeout: Duration::from_secs(self.keycloak.timeout_secs),
                retry_max: Duration::from_secs(self.keycloak.retry_max_secs),
                page_size: self.keycloak.page_size,
                enrich_concurrency: self.keycloak.enrich_concurrency,
            },
            reconcile: ReconcileSettings {
                interval: Some(Duration::from_secs(self.reconcile.interval_secs))
                    .filter(|d| !d.is_zero()),
                max_delete_percent,
                sessions,
            },
            vault: VaultSettings {
                keys: match &self.vault.keys {
                    Some(spec) => Some(Arc::new(
                        KeyRing::parse(spec, self.vault.active_key.as_deref())
                            .map_err(|e| invalid("vault.keys", e.to_string()))?,
                    )),
                    None => None,
                },
                purge_interval: Duration::from_secs(self.vault.purge_interval_secs),
            },
            log: LogSettings {
                format,
                level: self.log.level,
            },
            max_message_bytes: self.limits.max_message_bytes,
            replay_batch_size: self.replay.batch_size,
            replay_workers: self.replay.workers,
            effective: Vec::new(),
        })
    }
}

fn check_url(key: &'static str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    // The parser's message never includes the URL itself, which may hold a password.
    let url = Url::parse(value).map_err(|e| invalid(key, format!("not a valid URL ({e})")))?;
    if !schemes.contains(&url.scheme()) {
        return Err(invalid(
            key,
            format!(
                "scheme {:?} is not one of {}",
                url.scheme(),
                schemes.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Postgres identifiers the schema name may be, so it can be quoted without escaping.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

fn effective_values(merged: &config::Config) -> Vec<(&'static str, String)> {
    KEYS.iter()
        .map(|key| {
            let shown = match (key.shown, merged.get::<config::Value>(key.name)) {
                (_, Err(_)) => "(unset)".to_string(),
                (Shown::Secret, Ok(_)) => "\"[redacted]\"".to_string(),
                (Shown::SecretUrl, Ok(value)) => {
                    let url = value.into_string().unwrap_or_default();
                    format!("\"{}\"", SecretUrl::new(url))
                }
                (Shown::Plain, Ok(value)) => match value.clone().into_array() {
                    Ok(items) => format!(
                        "[{}]",
                        items
                            .into_iter()
                            .map(|v| format!("{:?}", v.to_string()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Err(_) => {
                        let text = value.to_string();
                        let bare = text.parse::<f64>().is_ok() || text == "true" || text == "false";
                        if bare {
                            text
                        } else {
                            format!("{text:?}")
                        }
                    }
                },
            };
            (key.name, shown)
        })
        .collect()
}

impl Settings {
    /// The effective configuration as TOML, secrets redacted.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut section = "";
        for (name, value) in &self.effective {
            let (this_section, field) = name.split_once('.').unwrap_or(("", name));
            if this_section != section {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("[{this_section}]\n"));
                section = this_section;
            }
            out.push_str(&format!("{field} = {value}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const DB: (&str, &str) = (
        "KEYCLOAK_SYNC__DATABASE__URL",
        "postgres://sync:hunter2@db.internal:5432/app",
    );

    #[test]
    fn defaults_apply_and_environment_overrides() {
        let settings = Settings::load_from(
            None,
            Some(env(&[
                DB,
                ("KEYCLOAK_SYNC__DATABASE__SCHEMA", "kc"),
                ("KEYCLOAK_SYNC__KEYCLOAK__REALMS", "acme,beta"),
                ("KEYCLOAK_SYNC__LOG__FORMAT", "json"),
            ])),
        )
        .expect("valid");
        assert_eq!(settings.database.schema, "kc");
        assert_eq!(settings.keycloak.realms, vec!["acme", "beta"]);
        assert_eq!(settings.log.format, LogFormat::Json);
        assert_eq!(settings.http_listen.to_string(), "0.0.0.0:8080");
        assert_eq!(settings.replay_batch_size, 500);
        assert_eq!(settings.amqp.queue, "keycloak-sync");
    }

    #[test]
    fn file_is_read_and_environment_wins_over_it() {
        let dir = std::env::temp_dir().join(format!("kcs-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("sync.toml");
        std::fs::write(
            &file,
            "[database]\nschema = \"from_file\"\nmax_connections = 3\n[http]\nlisten = \"127.0.0.1:9000\"\n",
        )
        .expect("write");
        let settings = Settings::load_from(
            Some(&file),
            Some(env(&[
                DB,
                ("KEYCLOAK_SYNC__DATABASE__MAX_CONNECTIONS", "5"),
            ])),
        )
        .expect("valid");
        assert_eq!(settings.database.schema, "from_file");
        assert_eq!(settings.database.max_connections, 5);
        assert_eq!(settings.http_listen.port(), 9000);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            (vec![], "database.url"),
            (
                vec![DB, ("KEYCLOAK_SYNC__DATABASE__SCHEMA", "Bad-Name")],
                "database.schema",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__HTTP__LISTEN", "nowhere")],
                "http.listen",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__LOG__FORMAT", "xml")],
                "log.format",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__AMQP__URL", "http://x")],
                "amqp.url",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__DATABASE__MAX_CONNECTIONS", "lots")],
                "database.max_connections",
            ),
            (vec![DB, ("KEYCLOAK_SYNC__DATABASE__NAME", "x")], "name"),
            (
                vec![DB, ("KEYCLOAK_SYNC__VAULT__KEYS", "k1:c2hvcnQ=")],
                "vault.keys",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__AMQP__WORKERS", "0")],
                "amqp.workers",
            ),
            (
                vec![
                    DB,
                    ("KEYCLOAK_SYNC__KEYCLOAK__URL", "https://sso.example.com"),
                ],
                "keycloak.client_id",
            ),
            (
                vec![
                    DB,
                    ("KEYCLOAK_SYNC__KEYCLOAK__URL", "https://sso.example.com"),
                    ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID", "sync"),
                    ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET", "x"),
                ],
                "keycloak.realms",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__RECONCILE__SESSIONS", "some")],
                "reconcile.sessions",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__RECONCILE__MAX_DELETE_PERCENT", "150")],
                "reconcile.max_delete_percent",
            ),
            (
                vec![DB, ("KEYCLOAK_SYNC__RECONCILE__INTERVAL_SECS", "3600")],
                "reconcile.interval_secs",
            ),
        ];
        for (pairs, key) in cases {
            let err = Settings::load_from(None, Some(env(&pairs)))
                .expect_err(key)
                .to_string();
            assert!(err.contains(key), "{err:?} should name {key}");
        }
    }

    #[test]
    fn secrets_never_print() {
        let settings = Settings::load_from(
            None,
            Some(env(&[
                DB,
                ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET", "s3cr3t-value"),
                (
                    "KEYCLOAK_SYNC__AMQP__URL",
                    "amqp://app:rabbitpass@mq:5672/%2f",
                ),
            ])),
        )
        .expect("valid");
        let shown = format!("{}\n{settings:?}", settings.render());
        for secret in ["hunter2", "s3cr3t-value", "rabbitpass"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(
            shown.contains("postgres://sync:%5Bredacted%5D@db.internal:5432/app")
                || shown.contains("[redacted]")
        );
        assert!(
            shown.contains("db.internal"),
            "host stays visible for operators"
        );
    }

    #[test]
    fn keycloak_settings_and_enrichment_default() {
        let off = Settings::load_from(None, Some(env(&[DB]))).expect("valid");
        assert!(!off.keycloak.enrich, "no Keycloak, no enrichment");
        let on = Settings::load_from(
            None,
            Some(env(&[
                DB,
                (
                    "KEYCLOAK_SYNC__KEYCLOAK__URL",
                    "https://sso.example.com/auth",
                ),
                ("KEYCLOAK_SYNC__KEYCLOAK__REALMS", "acme,beta"),
                ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_ID", "sync"),
                ("KEYCLOAK_SYNC__KEYCLOAK__CLIENT_SECRET", "x"),
                ("KEYCLOAK_SYNC__RECONCILE__SESSIONS", "250"),
            ])),
        )
        .expect("valid");
        assert!(on.keycloak.enrich);
        assert_eq!(on.keycloak.page_size, 100);
        assert_eq!(on.reconcile.sessions, SessionCheck::Sample(250));
        assert_eq!(on.reconcile.interval, None);
        assert_eq!(on.reconcile.max_delete_percent, 10.0);
    }

    #[test]
    fn the_readme_lists_every_key_with_its_variable() {
        let readme = include_str!("../README.md");
        for key in KEYS {
            let row = format!("| `{}` | `{}` |", key.name, env_name(key.name));
            assert!(
                readme.contains(&row),
                "README lacks the row for {}",
                key.name
            );
        }
    }

    #[test]
    fn env_names_follow_the_convention() {
        assert_eq!(env_name("database.url"), "KEYCLOAK_SYNC__DATABASE__URL");
        assert_eq!(
            env_name("limits.max_message_bytes"),
            "KEYCLOAK_SYNC__LIMITS__MAX_MESSAGE_BYTES"
        );
    }
}

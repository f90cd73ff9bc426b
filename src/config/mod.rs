//! Configuration: built-in defaults, then an optional TOML file, then
//! `KEYCLOAK_SYNC__SECTION__KEY` environment variables. Read and validated once at start;
//! secrets are wrapped so that `Debug` and `config check` never print them.
//!
//! Each section's file describes its keys once ([`Key`]) and reads them into its typed
//! settings; this file merges the sources and refuses keys nobody describes.

mod amqp;
mod api;
mod changes;
mod daemon;
mod database;
mod http;
mod key;
mod keycloak;
mod limits;
mod log;
mod reconcile;
mod replay;
mod secret_url;
mod sessions;
mod vault;

pub use amqp::{AmqpSettings, ConnectOrder};
pub use api::{ApiClient, ApiSettings};
pub use changes::ChangesSettings;
pub use daemon::DaemonSettings;
pub use database::DatabaseSettings;
pub use http::HttpSettings;
pub use key::{env_name, Key, Shown};
pub use keycloak::KeycloakSettings;
pub use limits::LimitsSettings;
pub use log::{LogFormat, LogSettings};
pub use reconcile::{ReconcileSettings, SessionCheck};
pub use replay::ReplaySettings;
pub use secret_url::SecretUrl;
pub use sessions::SessionsSettings;
pub use vault::VaultSettings;

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use thiserror::Error;

use key::Values;

pub const ENV_PREFIX: &str = "KEYCLOAK_SYNC";

/// Every key of every section.
pub static KEYS: LazyLock<Vec<Key>> = LazyLock::new(|| {
    [
        database::KEYS,
        amqp::KEYS,
        daemon::KEYS,
        changes::KEYS,
        http::KEYS,
        api::KEYS,
        keycloak::KEYS,
        reconcile::KEYS,
        sessions::KEYS,
        vault::KEYS,
        log::KEYS,
        limits::KEYS,
        replay::KEYS,
    ]
    .concat()
});

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
    #[error("configuration: unknown key `{0}`")]
    Unknown(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub daemon: DaemonSettings,
    pub changes: ChangesSettings,
    pub http: HttpSettings,
    pub api: ApiSettings,
    pub keycloak: KeycloakSettings,
    pub reconcile: ReconcileSettings,
    pub sessions: SessionsSettings,
    pub vault: VaultSettings,
    pub log: LogSettings,
    pub limits: LimitsSettings,
    pub replay: ReplaySettings,
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
        env: Option<HashMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let list_keys: Vec<&str> =
            [keycloak::LIST_KEYS, limits::LIST_KEYS, amqp::LIST_KEYS].concat();
        let mut builder = config::Config::builder();
        for key in KEYS.iter() {
            if list_keys.contains(&key.name) {
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
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",");
        for list in &list_keys {
            environment = environment.with_list_parse_key(list);
        }
        let merged = builder.add_source(environment.source(env)).build()?;
        refuse_unknown_keys(&merged)?;
        let values = Values(&merged);
        let keycloak = KeycloakSettings::read(&values)?;
        Ok(Settings {
            database: DatabaseSettings::read(&values)?,
            amqp: AmqpSettings::read(&values)?,
            daemon: DaemonSettings::read(&values)?,
            changes: ChangesSettings::read(&values)?,
            http: HttpSettings::read(&values)?,
            api: ApiSettings::read(&values)?,
            reconcile: ReconcileSettings::read(&values, &keycloak)?,
            sessions: SessionsSettings::read(&values)?,
            keycloak,
            vault: VaultSettings::read(&values)?,
            log: LogSettings::read(&values)?,
            limits: LimitsSettings::read(&values)?,
            replay: ReplaySettings::read(&values)?,
            effective: effective_values(&merged),
        })
    }
}

/// A misspelt key would otherwise be silently ignored.
fn refuse_unknown_keys(merged: &config::Config) -> Result<(), ConfigError> {
    let sections: HashMap<String, config::Value> = merged.clone().try_deserialize()?;
    for (section, value) in sections {
        let fields = value
            .into_table()
            .map_err(|_| ConfigError::Unknown(section.clone()))?;
        for field in fields.keys() {
            let name = format!("{section}.{field}");
            if !KEYS.iter().any(|key| key.name == name) {
                return Err(ConfigError::Unknown(name));
            }
        }
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
                (Shown::Tables, Ok(value)) => inline_tables(value),
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

/// An array of tables (or its JSON from the environment) as TOML inline tables, each
/// `secret` redacted.
fn inline_tables(value: config::Value) -> String {
    let tables: Vec<serde_json::Value> = match value.clone().into_string() {
        Ok(text) => serde_json::from_str(&text).unwrap_or_default(),
        Err(_) => value.try_deserialize().unwrap_or_default(),
    };
    let shown: Vec<String> = tables
        .iter()
        .filter_map(serde_json::Value::as_object)
        .map(|table| {
            let fields: Vec<String> = table
                .iter()
                .map(|(name, value)| {
                    let shown = if name == "secret" {
                        "\"[redacted]\"".to_string()
                    } else {
                        value.to_string()
                    };
                    format!("{name} = {shown}")
                })
                .collect();
            format!("{{ {} }}", fields.join(", "))
        })
        .collect();
    format!("[{}]", shown.join(", "))
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
        assert_eq!(settings.http.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(settings.replay.batch_size, 500);
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
        assert_eq!(settings.http.listen.port(), 9000);
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
        let readme = include_str!("../../README.md");
        for key in KEYS.iter() {
            let row = key.readme_row();
            assert!(readme.contains(&row), "README lacks the row {row}");
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

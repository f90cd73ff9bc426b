//! `[log]`: how the process logs.

use super::key::{Key, Shown, Values};
use super::ConfigError;

const LOG_FORMAT: Key = Key::new("log.format", Some("text"), Shown::Plain, "`text` or `json`");
const LOG_LEVEL: Key = Key::new(
    "log.level",
    Some("info"),
    Shown::Plain,
    "`RUST_LOG` overrides",
);

pub const KEYS: &[Key] = &[LOG_FORMAT, LOG_LEVEL];

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

impl LogSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        Ok(LogSettings {
            format: values.one_of(
                &LOG_FORMAT,
                &[("text", LogFormat::Text), ("json", LogFormat::Json)],
            )?,
            level: values.get(&LOG_LEVEL)?,
        })
    }
}

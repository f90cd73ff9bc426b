//! `[log]`, `[limits]` and `[replay]`: how the process logs, what input it accepts, and
//! how `replay` batches.

use super::key::{Key, Shown, Values};
use super::ConfigError;

const LOG_FORMAT: Key = Key::new("log.format", Some("text"), Shown::Plain, "`text` or `json`");
const LOG_LEVEL: Key = Key::new(
    "log.level",
    Some("info"),
    Shown::Plain,
    "`RUST_LOG` overrides",
);
const MAX_MESSAGE_BYTES: Key = Key::new(
    "limits.max_message_bytes",
    Some("1048576"),
    Shown::Plain,
    "",
);
const REPLAY_BATCH_SIZE: Key = Key::new("replay.batch_size", Some("500"), Shown::Plain, "");
const REPLAY_WORKERS: Key = Key::new("replay.workers", Some("2"), Shown::Plain, "");

pub const KEYS: &[Key] = &[
    LOG_FORMAT,
    LOG_LEVEL,
    MAX_MESSAGE_BYTES,
    REPLAY_BATCH_SIZE,
    REPLAY_WORKERS,
];

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

#[derive(Debug, Clone)]
pub struct LimitsSettings {
    /// Larger messages are rejected unread.
    pub max_message_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct ReplaySettings {
    pub batch_size: usize,
    pub workers: usize,
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

impl LimitsSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        Ok(LimitsSettings {
            max_message_bytes: values.at_least(&MAX_MESSAGE_BYTES, 1024)?,
        })
    }
}

impl ReplaySettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        Ok(ReplaySettings {
            batch_size: values.at_least(&REPLAY_BATCH_SIZE, 1)?,
            workers: values.at_least(&REPLAY_WORKERS, 1)?,
        })
    }
}

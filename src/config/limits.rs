//! `[limits]`: what input is accepted at all.

use super::key::{Key, Shown, Values};
use super::ConfigError;

const MAX_MESSAGE_BYTES: Key = Key::new(
    "limits.max_message_bytes",
    Some("1048576"),
    Shown::Plain,
    "",
);

pub const KEYS: &[Key] = &[MAX_MESSAGE_BYTES];

#[derive(Debug, Clone)]
pub struct LimitsSettings {
    /// Larger messages are rejected unread.
    pub max_message_bytes: usize,
}

impl LimitsSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        Ok(LimitsSettings {
            max_message_bytes: values.at_least(&MAX_MESSAGE_BYTES, 1024)?,
        })
    }
}

//! `[changes]`: the change feed applications follow (`changes` table and `NOTIFY`).

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::ConfigError;

const ENABLED: Key = Key::new(
    "changes.enabled",
    Some("true"),
    Shown::Plain,
    "`false`: no `changes` rows, no notifications",
);
const CHANNEL: Key = Key::new("changes.channel", Some("keycloak_sync"), Shown::Plain, "");
const RETENTION: Key = Key::new(
    "changes.retention_days",
    Some("7"),
    Shown::Plain,
    "0 keeps every change",
);

pub const KEYS: &[Key] = &[ENABLED, CHANNEL, RETENTION];

#[derive(Debug, Clone)]
pub struct ChangesSettings {
    /// The `NOTIFY` channel, or `None` with the feed off.
    pub channel: Option<String>,
    /// How long the daemon keeps changes; `None`: for ever.
    pub retention: Option<Duration>,
}

impl ChangesSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let enabled: bool = values.get(&ENABLED)?;
        let channel: String = values.get(&CHANNEL)?;
        // A plain identifier: `LISTEN name` then needs no quoting, and case is what it says.
        let plain = channel.len() <= 63
            && channel.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && channel
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !plain {
            return Err(CHANNEL.invalid(format!(
                "must be lower-case letters, digits and underscores (at most 63), not {channel:?}"
            )));
        }
        let days: u64 = values.get(&RETENTION)?;
        Ok(ChangesSettings {
            channel: enabled.then_some(channel),
            retention: Some(Duration::from_secs(days.saturating_mul(86_400)))
                .filter(|d| !d.is_zero()),
        })
    }
}

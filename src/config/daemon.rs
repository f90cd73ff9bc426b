//! `[daemon]`: the long-running worker's own behaviour.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::ConfigError;

const SHUTDOWN_GRACE: Key = Key::new("daemon.shutdown_grace_secs", Some("20"), Shown::Plain, "");
const INBOX_RETENTION: Key = Key::new(
    "daemon.inbox_retention_days",
    Some("0"),
    Shown::Plain,
    "keep every event id; see below",
);

pub const KEYS: &[Key] = &[SHUTDOWN_GRACE, INBOX_RETENTION];

#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// How long a SIGTERM may take to finish the batch in hand and close.
    pub shutdown_grace: Duration,
    /// How long the inbox remembers an event id; `None`: for ever.
    pub inbox_retention: Option<Duration>,
}

impl DaemonSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let days: u64 = values.get(&INBOX_RETENTION)?;
        Ok(DaemonSettings {
            shutdown_grace: values.secs(&SHUTDOWN_GRACE)?,
            inbox_retention: Some(Duration::from_secs(days.saturating_mul(86_400)))
                .filter(|d| !d.is_zero()),
        })
    }
}

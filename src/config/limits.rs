//! `[limits]`: what input is accepted at all.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::ConfigError;

const MAX_MESSAGE_BYTES: Key = Key::new(
    "limits.max_message_bytes",
    Some("1048576"),
    Shown::Plain,
    "",
);

const MAX_CLOCK_SKEW: Key = Key::new(
    "limits.max_clock_skew_secs",
    Some("300"),
    Shown::Plain,
    "events timed further in the future are rejected; 0: no limit",
);

const REALMS: Key = Key::new(
    "limits.realms",
    Some(""),
    Shown::Plain,
    "empty: every realm; else the realm ids whose events are applied, comma-separated",
);

pub const KEYS: &[Key] = &[MAX_MESSAGE_BYTES, MAX_CLOCK_SKEW, REALMS];
pub const LIST_KEYS: &[&str] = &[REALMS.name];

#[derive(Debug, Clone)]
pub struct LimitsSettings {
    /// Larger messages are rejected unread.
    pub max_message_bytes: usize,
    /// An event timed further ahead of this host's clock is rejected: it would win every
    /// last-writer-wins and outlive every revocation until its time came.
    pub max_clock_skew: Option<Duration>,
    /// Realm ids whose events are applied; empty: all. Others are ignored and counted.
    pub realms: Vec<String>,
}

impl LimitsSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let skew = values.secs(&MAX_CLOCK_SKEW)?;
        Ok(LimitsSettings {
            max_message_bytes: values.at_least(&MAX_MESSAGE_BYTES, 1024)?,
            max_clock_skew: (!skew.is_zero()).then_some(skew),
            realms: values.list(&REALMS)?,
        })
    }
}

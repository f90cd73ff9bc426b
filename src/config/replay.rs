//! `[replay]`: how `replay` batches.

use super::key::{Key, Shown, Values};
use super::ConfigError;

const REPLAY_BATCH_SIZE: Key = Key::new("replay.batch_size", Some("500"), Shown::Plain, "");
const REPLAY_WORKERS: Key = Key::new("replay.workers", Some("2"), Shown::Plain, "");

pub const KEYS: &[Key] = &[REPLAY_BATCH_SIZE, REPLAY_WORKERS];

#[derive(Debug, Clone)]
pub struct ReplaySettings {
    pub batch_size: usize,
    pub workers: usize,
}

impl ReplaySettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        Ok(ReplaySettings {
            batch_size: values.at_least(&REPLAY_BATCH_SIZE, 1)?,
            workers: values.at_least(&REPLAY_WORKERS, 1)?,
        })
    }
}

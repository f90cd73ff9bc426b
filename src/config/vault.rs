//! `[vault]`: the key ring tokens are sealed with.

use std::sync::Arc;
use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::ConfigError;
use crate::vault::KeyRing;

const KEYS_KEY: Key = Key::new("vault.keys", None, Shown::Secret, "unset; secret");
const ACTIVE_KEY: Key = Key::new("vault.active_key", None, Shown::Plain, "unset");
const PURGE_INTERVAL: Key = Key::new(
    "vault.purge_interval_secs",
    Some("300"),
    Shown::Plain,
    "0: no sweep",
);

pub const KEYS: &[Key] = &[KEYS_KEY, ACTIVE_KEY, PURGE_INTERVAL];

#[derive(Debug, Clone)]
pub struct VaultSettings {
    /// The parsed key ring; `None` when `vault.keys` is unset (token messages rejected).
    pub keys: Option<Arc<KeyRing>>,
    /// How often the daemon deletes expired tokens (0: never).
    pub purge_interval: Duration,
}

impl VaultSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let active: Option<String> = values.optional(&ACTIVE_KEY)?;
        let keys = match values.secret(&KEYS_KEY)? {
            Some(spec) => Some(Arc::new(
                KeyRing::parse(&spec, active.as_deref())
                    .map_err(|e| KEYS_KEY.invalid(e.to_string()))?,
            )),
            None => None,
        };
        Ok(VaultSettings {
            keys,
            purge_interval: values.secs(&PURGE_INTERVAL)?,
        })
    }
}

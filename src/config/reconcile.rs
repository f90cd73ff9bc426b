//! `[reconcile]`: the full sweep of users against the Admin API.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::{ConfigError, KeycloakSettings};

const RECONCILE_INTERVAL: Key = Key::new(
    "reconcile.interval_secs",
    Some("0"),
    Shown::Plain,
    "the daemon never reconciles",
);
const MAX_DELETE_PERCENT: Key =
    Key::new("reconcile.max_delete_percent", Some("10"), Shown::Plain, "");
const SESSIONS: Key = Key::new(
    "reconcile.sessions",
    Some("none"),
    Shown::Plain,
    "`all` or a number of users",
);

const DIRECTORY: Key = Key::new(
    "reconcile.directory",
    Some("false"),
    Shown::Plain,
    "also read each user's groups and effective roles",
);

pub const KEYS: &[Key] = &[RECONCILE_INTERVAL, MAX_DELETE_PERCENT, SESSIONS, DIRECTORY];

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
    /// Also sweep each user's groups and effective roles (2 or more requests a user).
    pub directory: bool,
}

impl ReconcileSettings {
    pub(super) fn read(values: &Values, keycloak: &KeycloakSettings) -> Result<Self, ConfigError> {
        let interval = values.secs(&RECONCILE_INTERVAL)?;
        if !interval.is_zero() && keycloak.url.is_none() {
            return Err(RECONCILE_INTERVAL.invalid("needs keycloak.url"));
        }
        let sessions: String = values.get(&SESSIONS)?;
        Ok(ReconcileSettings {
            interval: Some(interval).filter(|d| !d.is_zero()),
            max_delete_percent: values.within(&MAX_DELETE_PERCENT, 0.0..=100.0)?,
            sessions: sessions.parse().map_err(|e: String| SESSIONS.invalid(e))?,
            directory: values.get(&DIRECTORY)?,
        })
    }
}

//! `[sessions]`: ending sessions that Keycloak expires without telling.

use std::time::Duration;

use super::key::{Key, Shown, Values};
use super::ConfigError;
use crate::core::ids::RealmId;
use crate::core::session_policy::{parse_realm_policies, SessionPolicy};

const EXPIRE_INTERVAL: Key = Key::new(
    "sessions.expire_interval_secs",
    Some("60"),
    Shown::Plain,
    "0: the daemon never expires sessions",
);
const EXPIRY_MARGIN: Key = Key::new("sessions.expiry_margin_secs", Some("300"), Shown::Plain, "");
const IDLE_GRACE: Key = Key::new(
    "sessions.idle_grace_secs",
    Some("120"),
    Shown::Plain,
    "Keycloak's idle timeout window",
);
const POLICY_REFRESH: Key = Key::new(
    "sessions.policy_refresh_secs",
    Some("3600"),
    Shown::Plain,
    "and on each admin REALM UPDATE",
);
const REALM_POLICIES: Key = Key::new(
    "sessions.realm_policies",
    Some(""),
    Shown::Plain,
    "empty; `REALM_ID=IDLE:MAX[:IDLE_RM:MAX_RM]`, comma-separated",
);
const EXPIRE_BATCH: Key = Key::new("sessions.expire_batch", Some("10000"), Shown::Plain, "");

pub const KEYS: &[Key] = &[
    EXPIRE_INTERVAL,
    EXPIRY_MARGIN,
    IDLE_GRACE,
    POLICY_REFRESH,
    REALM_POLICIES,
    EXPIRE_BATCH,
];

#[derive(Debug, Clone)]
pub struct SessionsSettings {
    /// How often the daemon ends expired sessions; `None`: never.
    pub expire_interval: Option<Duration>,
    /// How far past its expiry a session must be before it is ended, so that activity a
    /// slow queue delays can still keep it open.
    pub expiry_margin: Duration,
    /// Added to the idle timeout, as Keycloak tolerates a refresh not yet seen everywhere.
    pub idle_grace: Duration,
    /// How often policies are read again from the Admin API.
    pub policy_refresh: Duration,
    /// Policies given per realm id; they win over the Admin API.
    pub realm_policies: Vec<(RealmId, SessionPolicy)>,
    /// Sessions ended (or policies followed) per transaction.
    pub expire_batch: i64,
}

impl SessionsSettings {
    pub(super) fn read(values: &Values) -> Result<Self, ConfigError> {
        let policies: String = values.optional(&REALM_POLICIES)?.unwrap_or_default();
        Ok(SessionsSettings {
            expire_interval: Some(values.secs(&EXPIRE_INTERVAL)?).filter(|d| !d.is_zero()),
            expiry_margin: values.secs(&EXPIRY_MARGIN)?,
            idle_grace: values.secs(&IDLE_GRACE)?,
            policy_refresh: Duration::from_secs(values.at_least(&POLICY_REFRESH, 1)?),
            realm_policies: parse_realm_policies(&policies)
                .map_err(|e| REALM_POLICIES.invalid(e))?,
            expire_batch: values.within(&EXPIRE_BATCH, 1..=1_000_000)?,
        })
    }
}

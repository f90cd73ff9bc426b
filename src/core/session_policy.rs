//! A realm's session timeouts as Keycloak applies them, so that `user_sessions.expires_at`
//! says when Keycloak itself would drop a session (its `RealmExpiration.fromRealm` and
//! `AuthenticationManager.isSessionValid`).

use serde_json::Value;

use crate::core::ids::RealmId;

/// Keycloak's defaults for a realm timeout of 0 or less (`Constants`).
const DEFAULT_IDLE_SECS: i64 = 1800;
const DEFAULT_MAX_LIFESPAN_SECS: i64 = 36_000;

/// A realm's four SSO session settings as the realm holds them (seconds; 0 means
/// Keycloak's default, and a remember-me value never shortens the regular one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle: i64,
    pub max_lifespan: i64,
    pub idle_remember_me: i64,
    pub max_lifespan_remember_me: i64,
}

/// The timeouts Keycloak enforces under a [`SessionPolicy`], in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: i64,
    pub max_lifespan: i64,
    pub idle_remember_me: i64,
    pub max_lifespan_remember_me: i64,
}

impl SessionPolicy {
    pub fn timeouts(&self) -> Timeouts {
        let or_default = |value: i64, default: i64| if value > 0 { value } else { default };
        let idle = or_default(self.idle, DEFAULT_IDLE_SECS);
        let max_lifespan = or_default(self.max_lifespan, DEFAULT_MAX_LIFESPAN_SECS);
        Timeouts {
            idle,
            max_lifespan,
            idle_remember_me: idle.max(self.idle_remember_me),
            max_lifespan_remember_me: max_lifespan.max(self.max_lifespan_remember_me),
        }
    }

    /// Reads the policy from a `RealmRepresentation` (`GET /admin/realms/{realm}`).
    /// `None` when the answer leaves the timeouts out, as Keycloak does for a service
    /// account that may not view the realm: no policy is guessed.
    pub fn from_realm(realm: &Value) -> Result<Option<SessionPolicy>, String> {
        let field = |name: &str| -> Result<Option<i64>, String> {
            match realm.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(value) => value
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("`{name}` is {value}, not a whole number")),
            }
        };
        let (Some(idle), Some(max_lifespan)) = (
            field("ssoSessionIdleTimeout")?,
            field("ssoSessionMaxLifespan")?,
        ) else {
            return Ok(None);
        };
        Ok(Some(SessionPolicy {
            idle,
            max_lifespan,
            idle_remember_me: field("ssoSessionIdleTimeoutRememberMe")?.unwrap_or(0),
            max_lifespan_remember_me: field("ssoSessionMaxLifespanRememberMe")?.unwrap_or(0),
        }))
    }
}

/// Parses `sessions.realm_policies`: comma-separated `REALM_ID=IDLE:MAX[:IDLE_RM:MAX_RM]`
/// entries, seconds with Keycloak's meaning of 0.
pub fn parse_realm_policies(text: &str) -> Result<Vec<(RealmId, SessionPolicy)>, String> {
    let mut policies: Vec<(RealmId, SessionPolicy)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (realm, numbers) = entry
            .split_once('=')
            .ok_or_else(|| format!("{entry:?} is not REALM_ID=IDLE:MAX[:IDLE_RM:MAX_RM]"))?;
        let realm = realm.trim();
        if realm.is_empty() {
            return Err(format!("{entry:?} names no realm"));
        }
        let numbers = numbers
            .split(':')
            .map(|n| {
                n.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| format!("{entry:?}: {n:?} is not a number of seconds"))
            })
            .collect::<Result<Vec<i64>, String>>()?;
        let policy = match numbers.as_slice() {
            [idle, max] => SessionPolicy {
                idle: *idle,
                max_lifespan: *max,
                idle_remember_me: 0,
                max_lifespan_remember_me: 0,
            },
            [idle, max, idle_rm, max_rm] => SessionPolicy {
                idle: *idle,
                max_lifespan: *max,
                idle_remember_me: *idle_rm,
                max_lifespan_remember_me: *max_rm,
            },
            _ => return Err(format!("{entry:?} needs two or four numbers of seconds")),
        };
        if policies.iter().any(|(r, _)| r.as_str() == realm) {
            return Err(format!("realm {realm:?} is given twice"));
        }
        policies.push((RealmId::from(realm), policy));
    }
    Ok(policies)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zero_means_keycloak_default_and_remember_me_never_shortens() {
        let policy = SessionPolicy {
            idle: 0,
            max_lifespan: 0,
            idle_remember_me: 600,
            max_lifespan_remember_me: 604_800,
        };
        assert_eq!(
            policy.timeouts(),
            Timeouts {
                idle: 1800,
                max_lifespan: 36_000,
                idle_remember_me: 1800,
                max_lifespan_remember_me: 604_800,
            }
        );
    }

    #[test]
    fn realm_representation_without_timeouts_gives_no_policy() {
        let brief = json!({"id": "r1", "realm": "demo"});
        assert_eq!(SessionPolicy::from_realm(&brief), Ok(None));
        let full = json!({"ssoSessionIdleTimeout": 900, "ssoSessionMaxLifespan": 7200,
                          "ssoSessionIdleTimeoutRememberMe": 0});
        assert_eq!(
            SessionPolicy::from_realm(&full),
            Ok(Some(SessionPolicy {
                idle: 900,
                max_lifespan: 7200,
                idle_remember_me: 0,
                max_lifespan_remember_me: 0,
            }))
        );
        let wrong = json!({"ssoSessionIdleTimeout": "900", "ssoSessionMaxLifespan": 7200});
        assert!(SessionPolicy::from_realm(&wrong)
            .unwrap_err()
            .contains("ssoSessionIdleTimeout"));
    }

    #[test]
    fn configured_policies_are_read_or_refused_with_the_entry_named() {
        let parsed = parse_realm_policies("a=900:7200, b=0:0:3600:86400").unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[1].0.as_str(), "b");
        assert_eq!(parsed[1].1.timeouts().idle_remember_me, 3600);
        for bad in ["a=900", "=1:2", "a=1:x", "a=1:2,a=3:4", "a"] {
            assert!(parse_realm_policies(bad).is_err(), "{bad}");
        }
        assert!(parse_realm_policies("").unwrap().is_empty());
    }
}

//! The token API's decisions, without I/O: reading a request, who may ask for what, when a
//! held access token must be refreshed, and what a caller's bearer token must say.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::core::ids::{ClientId, RealmName, SessionId, UserId};

/// The default of `minValiditySecs`.
pub const DEFAULT_MIN_VALIDITY_SECS: u64 = 30;
/// The most `minValiditySecs` may ask for (a day).
pub const MAX_MIN_VALIDITY_SECS: u64 = 86_400;
/// The longest id the API accepts (Keycloak's ids are UUIDs or short names).
const MAX_ID_LEN: usize = 255;

/// `POST /v1/tokens/access`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub realm: RealmName,
    pub user_id: UserId,
    pub client_id: ClientId,
    pub session_id: Option<SessionId>,
    pub offline: bool,
    pub min_validity_secs: u64,
}

/// A request the API refuses with 400, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRequest {
    pub field: &'static str,
    pub problem: String,
}

impl std::fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidRequest {
    InvalidRequest {
        field,
        problem: problem.into(),
    }
}

/// An id field: a non-empty string of printable characters, not too long.
fn id_field(body: &Value, field: &'static str) -> Result<Option<String>, InvalidRequest> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            if text.is_empty() {
                Err(invalid(field, "is empty"))
            } else if text.len() > MAX_ID_LEN {
                Err(invalid(field, format!("longer than {MAX_ID_LEN} bytes")))
            } else if text.chars().any(char::is_control) {
                Err(invalid(field, "holds control characters"))
            } else {
                Ok(Some(text.clone()))
            }
        }
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

fn required(body: &Value, field: &'static str) -> Result<String, InvalidRequest> {
    id_field(body, field)?.ok_or_else(|| invalid(field, "is required"))
}

const ACCESS_FIELDS: &[&str] = &[
    "realm",
    "userId",
    "clientId",
    "sessionId",
    "offline",
    "minValiditySecs",
];

impl AccessRequest {
    /// Reads the JSON body; unknown fields are refused (a misspelt `sessionId` would
    /// otherwise silently widen the request).
    pub fn read(body: &Value) -> Result<AccessRequest, InvalidRequest> {
        let object = body
            .as_object()
            .ok_or_else(|| invalid("body", "must be a JSON object"))?;
        if let Some(unknown) = object.keys().find(|k| !ACCESS_FIELDS.contains(&k.as_str())) {
            return Err(invalid("body", format!("unknown field {unknown:?}")));
        }
        let offline = match body.get("offline") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(invalid("offline", "must be true or false")),
        };
        let min_validity_secs = match body.get("minValiditySecs") {
            None | Some(Value::Null) => DEFAULT_MIN_VALIDITY_SECS,
            Some(value) => match value.as_u64() {
                Some(secs) if secs <= MAX_MIN_VALIDITY_SECS => secs,
                _ => {
                    return Err(invalid(
                        "minValiditySecs",
                        format!(
                            "must be a whole number of seconds from 0 to {MAX_MIN_VALIDITY_SECS}"
                        ),
                    ))
                }
            },
        };
        Ok(AccessRequest {
            realm: RealmName::from(required(body, "realm")?.as_str()),
            user_id: UserId::new(required(body, "userId")?),
            client_id: ClientId::from(required(body, "clientId")?.as_str()),
            session_id: id_field(body, "sessionId")?.map(SessionId::new),
            offline,
            min_validity_secs,
        })
    }
}

/// What one caller (a client of a realm, by its `azp`) may do: read users' access tokens
/// of the `read` clients, store tokens of the `store` clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerGrant {
    pub realm: RealmName,
    pub client_id: String,
    pub read: BTreeSet<String>,
    pub store: BTreeSet<String>,
}

/// What a caller asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Read,
    Store,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Store => "store",
        }
    }
}

/// Default deny: a caller may act on a client's tokens only if a grant of its own realm
/// names that client for that action. Tokens of another realm are never reachable.
pub fn may(
    grants: &[CallerGrant],
    caller_realm: &str,
    caller: &str,
    action: Action,
    target_realm: &str,
    target_client: &str,
) -> bool {
    caller_realm == target_realm
        && grants.iter().any(|g| {
            g.realm.as_str() == caller_realm
                && g.client_id == caller
                && match action {
                    Action::Read => g.read.contains(target_client),
                    Action::Store => g.store.contains(target_client),
                }
        })
}

/// Whether a held access token must be refreshed before it is served. It must when it has
/// less than `min_validity_ms` left — or, when Keycloak's lifespan is shorter than that
/// (it can never give `min_validity`), once it has used a tenth of its life: the freshest
/// token Keycloak gives is served, without refreshing on every request.
pub fn needs_refresh(
    now_ms: i64,
    issued_at_ms: i64,
    expires_at_ms: i64,
    min_validity_ms: i64,
) -> bool {
    let left = expires_at_ms - now_ms;
    if left <= 0 {
        return true;
    }
    let lifespan = (expires_at_ms - issued_at_ms).max(0);
    let wanted = min_validity_ms.min(lifespan - lifespan / 10);
    left < wanted
}

/// The claims of a caller's bearer token the API checks (its signature is checked
/// against the realm's keys by the adapter before these are read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerClaims {
    pub iss: Option<String>,
    pub azp: Option<String>,
    pub exp: Option<i64>,
    pub nbf: Option<i64>,
    pub typ: Option<String>,
}

/// Why a bearer token does not authenticate its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimProblem {
    Issuer,
    Expired,
    NotYetValid,
    NoAuthorizedParty,
    NotAnAccessToken,
}

impl std::fmt::Display for ClaimProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClaimProblem::Issuer => "issued by another realm or server",
            ClaimProblem::Expired => "expired",
            ClaimProblem::NotYetValid => "not valid yet",
            ClaimProblem::NoAuthorizedParty => "names no authorized party (azp)",
            ClaimProblem::NotAnAccessToken => "not an access token",
        })
    }
}

/// Allowed clock difference with Keycloak when checking `exp` and `nbf`.
pub const CLOCK_LEEWAY_SECS: i64 = 30;

/// The caller (`azp`) the claims authenticate, issued by `issuer` and valid at `now`.
pub fn caller_of(
    claims: &CallerClaims,
    issuer: &str,
    now_secs: i64,
) -> Result<String, ClaimProblem> {
    if claims.iss.as_deref() != Some(issuer) {
        return Err(ClaimProblem::Issuer);
    }
    if claims
        .typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("Bearer"))
    {
        return Err(ClaimProblem::NotAnAccessToken);
    }
    match claims.exp {
        Some(exp) if exp + CLOCK_LEEWAY_SECS > now_secs => {}
        _ => return Err(ClaimProblem::Expired),
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf - CLOCK_LEEWAY_SECS > now_secs)
    {
        return Err(ClaimProblem::NotYetValid);
    }
    claims
        .azp
        .clone()
        .filter(|azp| !azp.is_empty())
        .ok_or(ClaimProblem::NoAuthorizedParty)
}

/// The time a stored token is written at: the token's own issue time (`iat`, a JWT's as
/// Keycloak's refresh and offline tokens are), never later than `now_ms`; else `now_ms`.
/// So an application storing a token older than the one the vault holds (the one it
/// logged in with, after the API rotated it) does not replace the newer: reusing it
/// would make Keycloak end the session. The claim is read, not verified: it only orders
/// tokens the caller may store anyway.
pub fn stored_token_time(token: &str, now_ms: i64) -> i64 {
    use base64::Engine;
    let issued_ms = token
        .split('.')
        .nth(1)
        .and_then(|payload| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .and_then(|claims| claims.get("iat").and_then(Value::as_i64))
        .filter(|secs| *secs > 0)
        .and_then(|secs| secs.checked_mul(1000));
    issued_ms.map_or(now_ms, |issued| issued.min(now_ms))
}

/// The realm a token's issuer names: `{base}realms/{realm}`.
pub fn realm_of_issuer<'a>(base: &str, issuer: &'a str) -> Option<&'a str> {
    let rest = issuer.strip_prefix(base.trim_end_matches('/'))?;
    let realm = rest.strip_prefix("/realms/")?;
    (!realm.is_empty() && !realm.contains('/')).then_some(realm)
}

#[cfg(test)]
mod tests;

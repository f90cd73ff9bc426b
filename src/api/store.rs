//! `PUT /v1/tokens`: stores a refresh or offline token with the token message's fields,
//! through the same apply path and rules as a message from the queue, answering after
//! the commit: `{"stored": true}`, or `{"stored": false, "reason": …}` when the rules
//! keep it out (the user deleted, disabled or logged out, the session ended, at or after
//! the token's time, or a newer token held).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::{json_body, ApiError, ApiState, Caller, Target};
use crate::core::event::parse_message;
use crate::core::ids::RealmName;
use crate::core::plan::Version;
use crate::core::token_api::{stored_token_time, Action};
use crate::store::vault::Vault;

/// The fields a token message takes (`realm` by name here, or `realmId`).
const FIELDS: &[&str] = &[
    "realm",
    "realmId",
    "userId",
    "sessionId",
    "clientId",
    "tokenType",
    "token",
    "expiresAt",
    "metadata",
    "id",
];

pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match state.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(error) => {
            state
                .audit(None, Action::Store, Target::default(), error.code)
                .await;
            return error.into_response();
        }
    };
    let body = match json_body(&body) {
        Ok(Value::Object(body)) => body,
        Ok(_) => return ApiError::invalid("body: must be a JSON object").into_response(),
        Err(error) => {
            state
                .audit(Some(&caller), Action::Store, Target::default(), error.code)
                .await;
            return error.into_response();
        }
    };
    let text = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
    let (user_id, client_id) = (text("userId"), text("clientId"));
    let (answer, realm_id) = store(&state, &caller, &body).await;
    let target = Target {
        realm_id: realm_id.as_deref(),
        user_id: user_id.as_deref(),
        client_id: client_id.as_deref(),
    };
    match answer {
        Ok(answer) => {
            let outcome = if answer["stored"] == true {
                "stored"
            } else {
                "not_stored"
            };
            state
                .audit(Some(&caller), Action::Store, target, outcome)
                .await;
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err(error) => {
            state
                .audit(Some(&caller), Action::Store, target, error.code)
                .await;
            error.into_response()
        }
    }
}

async fn store(
    state: &ApiState,
    caller: &Caller,
    body: &Map<String, Value>,
) -> (Result<Value, ApiError>, Option<String>) {
    if let Some(unknown) = body.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return (
            Err(ApiError::invalid(format!(
                "body: unknown field {unknown:?}"
            ))),
            None,
        );
    }
    let Some(client_id) = body.get("clientId").and_then(Value::as_str) else {
        return (Err(ApiError::invalid("clientId: is required")), None);
    };
    // The realm by name (checked against the caller's grant) or by id.
    let admin = match state.context.admin() {
        Some(admin) => admin,
        None => {
            return (
                Err(ApiError::unavailable(
                    "keycloak.url is not set",
                    Duration::from_secs(60),
                )),
                None,
            )
        }
    };
    let realm_id = match (body.get("realm"), body.get("realmId")) {
        (Some(Value::String(name)), None) => {
            match admin.realm_id(&RealmName::from(name.as_str())).await {
                Ok(id) => id.to_string(),
                Err(error) if error.is_transient() => {
                    return (
                        Err(ApiError::unavailable(
                            error.to_string(),
                            Duration::from_secs(5),
                        )),
                        None,
                    )
                }
                Err(error) => return (Err(ApiError::invalid(format!("realm: {error}"))), None),
            }
        }
        (None, Some(Value::String(id))) => id.clone(),
        (Some(_), Some(_)) => {
            return (
                Err(ApiError::invalid("realm and realmId: give one, not both")),
                None,
            )
        }
        _ => {
            return (
                Err(ApiError::invalid(
                    "realm: is required (a realm name), or realmId",
                )),
                None,
            )
        }
    };
    // The grant names realms by name: the caller's realm must be this one.
    let caller_realm_id = match admin
        .realm_id(&RealmName::from(caller.realm.as_str()))
        .await
    {
        Ok(id) => id.to_string(),
        Err(error) => {
            return (
                Err(ApiError::unavailable(
                    error.to_string(),
                    Duration::from_secs(5),
                )),
                Some(realm_id),
            )
        }
    };
    let target_realm = if caller_realm_id == realm_id {
        caller.realm.as_str()
    } else {
        ""
    };
    if let Err(error) = state.allow(caller, Action::Store, target_realm, client_id) {
        return (Err(error), Some(realm_id));
    }
    let answer = apply(state, body, &realm_id).await;
    (answer, Some(realm_id))
}

/// The token message the body describes, applied; then whether the vault holds it.
async fn apply(
    state: &ApiState,
    body: &Map<String, Value>,
    realm_id: &str,
) -> Result<Value, ApiError> {
    let mut message = body.clone();
    message.remove("realm");
    message.insert("realmId".into(), json!(realm_id));
    message.insert("schema".into(), json!(1));
    message.insert("kind".into(), json!("token"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    message.insert("time".into(), json!(stored_token_time(token, now)));
    if !message.contains_key("id") {
        message.insert("id".into(), json!(uuid::Uuid::new_v4().to_string()));
    }
    let bytes = serde_json::to_vec(&Value::Object(message)).unwrap_or_default();
    let settings = &state.context.settings;
    let event = parse_message(&bytes, settings.limits.max_message_bytes)
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    let store = &state.context.store;
    store
        .apply(std::slice::from_ref(&event))
        .await
        .map_err(|error| {
            if error.is_transient() {
                ApiError::unavailable(error.to_string(), Duration::from_secs(1))
            } else {
                ApiError::invalid(error.to_string())
            }
        })?;
    let keys = store
        .vault_keys()
        .ok_or_else(|| ApiError::unavailable("vault.keys is not set", Duration::from_secs(60)))?;
    let version = Version::of(&event).as_str().to_string();
    let user = body
        .get("userId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let held = Vault::new(store, keys.clone())
        .holding_versions(&[user], &[version])
        .await
        .map_err(ApiError::database)?;
    Ok(if held.is_empty() {
        json!({
            "stored": false,
            "reason": "kept out by the vault's rules: the user was deleted, disabled or logged out, \
                       or the session ended, at or after the token's time, or a newer token is held",
        })
    } else {
        json!({"stored": true})
    })
}

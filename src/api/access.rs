//! `POST /v1/tokens/access`: a valid access token for a user. Served from the vault while
//! it has `minValiditySecs` left; else refreshed at Keycloak with the stored refresh (or
//! offline) token — one refresh in flight per token: within the process a lock per
//! token, across replicas the token's lease (`store::token_api`); whoever does not hold
//! it waits (up to `api.refresh_wait_ms`) and serves what the holder wrote.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde_json::json;

use super::{json_body, ApiError, ApiState, Caller, Target};
use crate::core::ids::RealmId;
use crate::core::token_api::{needs_refresh, AccessRequest, Action};
use crate::keycloak::KeycloakError;
use crate::store::token_api::{Held, Refreshed};

/// How long a refresh lease lasts beyond the wait (a replica that dies mid-refresh
/// leaves it to run out).
const LEASE_MARGIN: Duration = Duration::from_secs(5);

pub async fn handle(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let caller = match state.authenticate(&headers).await {
        Ok(caller) => caller,
        Err(error) => {
            state
                .audit(None, Action::Read, Target::default(), error.code)
                .await;
            return error.into_response();
        }
    };
    let request = match json_body(&body)
        .and_then(|body| AccessRequest::read(&body).map_err(|e| ApiError::invalid(e.to_string())))
    {
        Ok(request) => request,
        Err(error) => {
            state
                .audit(Some(&caller), Action::Read, Target::default(), error.code)
                .await;
            return error.into_response();
        }
    };
    let (answer, realm_id) = serve(&state, &caller, &request).await;
    let target = Target {
        realm_id: realm_id.as_deref(),
        user_id: Some(&request.user_id),
        client_id: Some(&request.client_id),
    };
    match answer {
        Ok((outcome, body)) => {
            state
                .audit(Some(&caller), Action::Read, target, outcome)
                .await;
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(error) => {
            state
                .audit(Some(&caller), Action::Read, target, error.code)
                .await;
            error.into_response()
        }
    }
}

type Served = Result<(&'static str, serde_json::Value), ApiError>;

async fn serve(
    state: &ApiState,
    caller: &Caller,
    request: &AccessRequest,
) -> (Served, Option<String>) {
    if let Err(error) = state.allow(caller, Action::Read, &request.realm, &request.client_id) {
        return (Err(error), None);
    }
    let realm_id = match realm_id(state, request).await {
        Ok(id) => id,
        Err(error) => return (Err(error), None),
    };
    let _slot = match state.slot(caller).await {
        Ok(slot) => slot,
        Err(error) => return (Err(error), Some(realm_id.to_string())),
    };
    let flight = {
        let key = format!(
            "{realm_id}\u{0}{}\u{0}{}\u{0}{}\u{0}{}",
            request.user_id,
            request.client_id,
            request.session_id.as_deref().unwrap_or(""),
            request.offline
        );
        let mut flights = state.flights.lock().await;
        flights.retain(|_, lock| std::sync::Arc::strong_count(lock) > 1);
        flights.entry(key).or_default().clone()
    };
    let _one_at_a_time = flight.lock().await;
    let served = access_token(state, request, &realm_id).await;
    (served, Some(realm_id.to_string()))
}

/// The realm's id (rows carry ids, requests names), from the Admin API (cached).
async fn realm_id(state: &ApiState, request: &AccessRequest) -> Result<RealmId, ApiError> {
    let admin = state
        .context
        .admin()
        .ok_or_else(|| ApiError::unavailable("keycloak.url is not set", Duration::from_secs(60)))?;
    admin
        .realm_id(&request.realm)
        .await
        .map_err(|error| match error {
            KeycloakError::Config(message) => {
                ApiError::new(StatusCode::NOT_FOUND, "no_token", message)
            }
            other => keycloak_down(&other),
        })
}

fn keycloak_down(error: &KeycloakError) -> ApiError {
    ApiError::unavailable(error.to_string(), Duration::from_secs(5))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn answer(
    token: &secrecy::SecretString,
    expires_at_ms: i64,
    scope: Option<&str>,
    held: &Held,
) -> serde_json::Value {
    json!({
        "accessToken": token.expose_secret(),
        "expiresAt": expires_at_ms,
        "scope": scope,
        "sessionId": held.source.session_id.as_deref(),
        "tokenType": "Bearer",
    })
}

async fn access_token(state: &ApiState, request: &AccessRequest, realm_id: &RealmId) -> Served {
    let store = &state.context.store;
    let keys = store
        .vault_keys()
        .ok_or_else(|| ApiError::unavailable("vault.keys is not set", Duration::from_secs(60)))?
        .clone();
    let settings = &state.context.settings.api;
    let min_validity_ms = request.min_validity_secs as i64 * 1000;
    let deadline = Instant::now() + settings.refresh_wait;
    let mut pause = Duration::from_millis(25);
    loop {
        let held = read(state, request, realm_id, &keys)
            .await?
            .ok_or_else(|| no_token(request))?;
        if let Some(body) = fresh(&held, min_validity_ms) {
            return Ok(("served", body));
        }
        let lease = settings.refresh_wait + LEASE_MARGIN;
        let token_id = held.source.id.clone();
        if store
            .take_refresh_lease(&token_id, &state.holder, lease)
            .await
            .map_err(ApiError::database)?
        {
            // Read again under the lease: a holder that committed since the read above
            // has rotated the token, and refreshing with the old one would be a reuse
            // (Keycloak then ends the session).
            let Some(held) = read(state, request, realm_id, &keys).await? else {
                let _ = store
                    .give_back_refresh_lease(&token_id, &state.holder)
                    .await;
                return Err(no_token(request));
            };
            if let Some(body) = fresh(&held, min_validity_ms) {
                let _ = store
                    .give_back_refresh_lease(&token_id, &state.holder)
                    .await;
                return Ok(("served", body));
            }
            if held.source.id != token_id {
                let _ = store
                    .give_back_refresh_lease(&token_id, &state.holder)
                    .await;
                continue;
            }
            match refresh(state, request, &held, &keys).await {
                Ok(Some(body)) => return Ok(("refreshed", body)),
                // The row changed since it was read (a newer token was stored): again.
                Ok(None) => continue,
                Err(error) => {
                    if error.code != "grant_revoked" {
                        let _ = store
                            .give_back_refresh_lease(&token_id, &state.holder)
                            .await;
                    }
                    return Err(error);
                }
            }
        }
        // Another replica refreshes this token: wait for its result.
        if Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                "another replica's refresh of this token did not finish in time",
                Duration::from_secs(1),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The answer from the kept access token, if it may be served without a refresh.
fn fresh(held: &Held, min_validity_ms: i64) -> Option<serde_json::Value> {
    let access = held.access.as_ref()?;
    let stale = needs_refresh(
        now_ms(),
        access.issued_at_ms,
        access.expires_at_ms,
        min_validity_ms,
    );
    (!stale).then(|| {
        answer(
            &access.token,
            access.expires_at_ms,
            access.scope.as_deref(),
            held,
        )
    })
}

async fn read(
    state: &ApiState,
    request: &AccessRequest,
    realm_id: &RealmId,
    keys: &crate::vault::KeyRing,
) -> Result<Option<Held>, ApiError> {
    state
        .context
        .store
        .held_token(
            keys,
            realm_id,
            &request.user_id,
            &request.client_id,
            request.session_id.as_deref(),
            request.offline,
        )
        .await
        .map_err(ApiError::database)
}

fn no_token(request: &AccessRequest) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_token",
        format!(
            "the vault holds no live {} token of user {} for client {}",
            if request.offline {
                "offline"
            } else {
                "refresh"
            },
            request.user_id,
            request.client_id
        ),
    )
}

/// Refreshes at Keycloak and writes the result; `Ok(None)` if the row changed meanwhile.
async fn refresh(
    state: &ApiState,
    request: &AccessRequest,
    held: &Held,
    keys: &crate::vault::KeyRing,
) -> Result<Option<serde_json::Value>, ApiError> {
    let store = &state.context.store;
    let client = state
        .context
        .settings
        .api
        .client(&request.realm, &request.client_id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "not_configured",
                format!(
                    "no [[api.clients]] entry for client {} of realm {}: cannot refresh its tokens",
                    request.client_id, request.realm
                ),
            )
        })?;
    let endpoint = state
        .context
        .token_endpoint()
        .ok_or_else(|| ApiError::unavailable("keycloak.url is not set", Duration::from_secs(60)))?;
    let started = now_ms();
    let issued = endpoint
        .refresh(
            &request.realm,
            &client.client_id,
            client.secret.as_ref(),
            &held.source.token,
        )
        .await;
    let issued = match issued {
        Ok(issued) => issued,
        Err(KeycloakError::InvalidGrant { message, .. }) => {
            store
                .remove_refused_token(&held.source, &state.holder)
                .await
                .map_err(ApiError::database)?;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "grant_revoked",
                format!("Keycloak refused the stored token ({message}); it left the vault"),
            ));
        }
        Err(error) if error.is_transient() => return Err(keycloak_down(&error)),
        Err(error) => {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "keycloak_refused",
                error.to_string(),
            ))
        }
    };
    let expires_at_ms = started + issued.expires_in as i64 * 1000;
    let refreshed = Refreshed {
        access_token: issued.access_token,
        access_expires_at_ms: expires_at_ms,
        scope: issued.scope,
        refresh_token: issued.refresh_token,
        // 0: an offline token without a maximum lifespan.
        refresh_expires_at_ms: issued
            .refresh_expires_in
            .filter(|secs| *secs > 0)
            .map(|secs| started + secs as i64 * 1000),
    };
    let written = store
        .record_refresh(keys, held, &refreshed, &state.holder)
        .await
        .map_err(ApiError::database)?;
    Ok(written.then(|| {
        answer(
            &refreshed.access_token,
            expires_at_ms,
            refreshed.scope.as_deref(),
            held,
        )
    }))
}

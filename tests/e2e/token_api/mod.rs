//! The token API against the real Keycloak: what its callers share.

mod offline;
mod outage;
mod rotation;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::kc::{Realm, Tokens, WEB_SECRET};

const BACKEND_SECRET: &str = "backend-secret-e2e";
const VAULT_KEYS: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn api_settings(realm: &str, port: u16) -> Vec<(String, String)> {
    let callers =
        json!([{"realm": realm, "client_id": "backend", "read": ["web"], "store": ["web"]}]);
    let clients = json!([{"realm": realm, "client_id": "web", "secret": WEB_SECRET}]);
    vec![
        (
            "KEYCLOAK_SYNC__API__LISTEN".into(),
            format!("127.0.0.1:{port}"),
        ),
        ("KEYCLOAK_SYNC__API__CALLERS".into(), callers.to_string()),
        ("KEYCLOAK_SYNC__API__CLIENTS".into(), clients.to_string()),
        ("KEYCLOAK_SYNC__VAULT__KEYS".into(), VAULT_KEYS.into()),
        ("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY".into(), "k1".into()),
    ]
}

async fn service_client(realm: &Realm, client_id: &str, secret: &str) {
    let answer = realm
        .admin(
            Method::POST,
            "/clients",
            Some(
                json!({"clientId": client_id, "enabled": true, "publicClient": false,
                        "secret": secret, "serviceAccountsEnabled": true,
                        "standardFlowEnabled": false, "directAccessGrantsEnabled": false}),
            ),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{client_id}: {}",
        answer.body
    );
}

/// A client-credentials access token of `client_id`.
async fn caller_token(realm: &Realm, client_id: &str, secret: &str) -> String {
    let body: Value = reqwest::Client::new()
        .post(format!(
            "{}/realms/{}/protocol/openid-connect/token",
            realm.url, realm.name
        ))
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn call(
    method: Method,
    port: u16,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Value) {
    let (status, _, body) = call_with_wait(method, port, path, token, body).await;
    (status, body)
}

/// [`call`], with the answer's `Retry-After` (seconds).
async fn call_with_wait(
    method: Method,
    port: u16,
    path: &str,
    token: &str,
    body: Value,
) -> (StatusCode, Option<u64>, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("http://127.0.0.1:{port}{path}"))
        .bearer_auth(token)
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("API request");
    let status = response.status();
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (status, wait, response.json().await.unwrap_or(Value::Null))
}

/// Stores a user's token through `PUT /v1/tokens`; fails the test unless stored.
async fn store(port: u16, caller: &str, realm: &str, user: &str, tokens: &Tokens, kind: &str) {
    let (status, stored) = call(
        Method::PUT,
        port,
        "/v1/tokens",
        caller,
        json!({"realm": realm, "userId": user, "sessionId": tokens.session_id,
               "clientId": "web", "tokenType": kind, "token": tokens.refresh}),
    )
    .await;
    assert_eq!(
        (status, stored.clone()),
        (StatusCode::OK, json!({"stored": true})),
        "{stored}"
    );
}

/// Borrowed pairs of owned settings (what `World` and `Daemon` take).
fn pairs(settings: &[(String, String)]) -> Vec<(&str, &str)> {
    settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

async fn refresh_events(realm: &Realm, user: &str) -> usize {
    realm
        .admin(
            Method::GET,
            &format!("/events?type=REFRESH_TOKEN&user={user}&max=1000"),
            None,
        )
        .await
        .ok("stored events")
        .as_array()
        .map_or(0, Vec::len)
}

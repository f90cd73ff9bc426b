//! Keycloak down: a token that must be refreshed answers 503 `keycloak_unavailable`
//! with `Retry-After`, and the vault is unchanged; a kept access token that is still
//! fresh enough is served meanwhile; once Keycloak is back the refresh succeeds. And an
//! expired caller token is refused.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{
    api_settings, call, call_with_wait, caller_token, pairs, service_client, store, BACKEND_SECRET,
};
use crate::kc::Realm;
use crate::proxy::Proxy;
use crate::support::{count, free_port};
use crate::World;

/// The vault's rows as they are, ciphertext and times included.
async fn vault_state(world: &World) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT concat_ws('|', id, token_type, key_id, encode(nonce, 'hex'),
                encode(ciphertext, 'hex'), issued_at, expires_at, metadata)
         FROM auth_vault ORDER BY id",
    )
    .fetch_all(world.store.pool())
    .await
    .expect("vault rows")
}

#[tokio::test]
async fn keycloak_down_answers_503_and_leaves_the_vault_unchanged() {
    // Everything (the test's logins, the daemon's Admin API, token endpoint and JWKS)
    // reaches Keycloak through a relay the test cuts.
    let proxy = Proxy::start(&crate::kc::keycloak_url()).await;
    let name = Realm::fresh_name();
    let port = free_port();
    let settings = api_settings(&name, port);
    let world = World::on_named(
        &proxy.url,
        &name,
        json!({"revokeRefreshToken": true, "refreshTokenMaxReuse": 0, "accessTokenLifespan": 60}),
        &pairs(&settings),
    )
    .await;
    let realm = &world.realm;
    service_client(realm, "backend", BACKEND_SECRET).await;
    let alice = realm.create_user("alice", "alice@example.com").await;
    let login = realm.login("web", "alice", false).await;
    let backend = caller_token(realm, "backend", BACKEND_SECRET).await;
    store(port, &backend, &name, &alice, &login, "refresh").await;
    let ask = json!({"realm": name, "userId": alice, "clientId": "web"});
    let path = "/v1/tokens/access";
    let (status, kept) = call(Method::POST, port, path, &backend, ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    let before = vault_state(&world).await;
    assert_eq!(
        before.len(),
        2,
        "the refresh token and its kept access token"
    );

    proxy.cut().await;
    let forced = json!({"realm": name, "userId": alice, "clientId": "web",
                        "minValiditySecs": 3600});
    let (status, wait, body) =
        call_with_wait(Method::POST, port, path, &backend, forced.clone()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("keycloak_unavailable")
        ),
        "{body}"
    );
    assert!(wait.is_some_and(|secs| secs >= 1), "Retry-After: {wait:?}");
    assert_eq!(vault_state(&world).await, before, "the vault changed");
    // What needs no refresh is served without Keycloak.
    let (status, body) = call(Method::POST, port, path, &backend, ask.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accessToken"], kept["accessToken"]);
    let unavailable = count(
        &world.store,
        "SELECT count(*) FROM token_audit WHERE outcome = 'keycloak_unavailable'",
    )
    .await;
    assert_eq!(unavailable, 1);

    proxy.restore().await;
    let (status, body) = call(Method::POST, port, path, &backend, forced).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["accessToken"], kept["accessToken"]);
    assert_ne!(vault_state(&world).await, before);
    realm.delete().await;
}

#[tokio::test]
async fn an_expired_caller_token_is_refused() {
    let name = Realm::fresh_name();
    let port = free_port();
    let settings = api_settings(&name, port);
    let world = World::named(&name, json!({}), &pairs(&settings)).await;
    let realm = &world.realm;
    service_client(realm, "backend", BACKEND_SECRET).await;
    // The caller's tokens live one second (the client's own access token lifespan).
    let backend = realm.client_uuid("backend").await;
    let mut representation = realm
        .admin(Method::GET, &format!("/clients/{backend}"), None)
        .await
        .ok("backend client");
    representation["attributes"]["access.token.lifespan"] = json!("1");
    let updated = realm
        .admin(
            Method::PUT,
            &format!("/clients/{backend}"),
            Some(representation),
        )
        .await;
    assert!(updated.status.is_success(), "{}", updated.body);
    let token = caller_token(realm, "backend", BACKEND_SECRET).await;
    let exp: i64 = crate::kc::claim(&token, "exp").parse().expect("exp");
    let iat: i64 = crate::kc::claim(&token, "iat").parse().expect("iat");
    assert!(exp - iat <= 1, "the caller token lives {}s", exp - iat);

    let ask = json!({"realm": name, "userId": "nobody", "clientId": "web"});
    let path = "/v1/tokens/access";
    let (status, body) = call(Method::POST, port, path, &token, ask.clone()).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "accepted while young: {body}"
    );
    // Past its expiry and the clock leeway the API allows.
    let leeway = keycloak_sync::core::token_api::CLOCK_LEEWAY_SECS as u64;
    tokio::time::sleep(Duration::from_secs(leeway + 3)).await;
    let (status, body) = call(Method::POST, port, path, &token, ask).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthenticated")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{body}"
    );
    realm.delete().await;
}

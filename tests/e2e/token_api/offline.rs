//! Offline tokens through the API, and a user who logs out: the offline token outlives
//! the browser session's logout and is still refreshed at Keycloak; the logged-out
//! session's refresh token leaves the vault (through the queue), so nothing of it is
//! served any more, not even its kept access token that has not expired.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{api_settings, call, caller_token, pairs, service_client, store, BACKEND_SECRET};
use crate::kc::Realm;
use crate::support::{free_port, wait_until};
use crate::World;

#[tokio::test]
async fn offline_tokens_outlive_a_logout_whose_session_is_no_longer_served() {
    let name = Realm::fresh_name();
    let port = free_port();
    let settings = api_settings(&name, port);
    let world = World::named(
        &name,
        json!({"revokeRefreshToken": true, "refreshTokenMaxReuse": 0, "accessTokenLifespan": 60}),
        &pairs(&settings),
    )
    .await;
    let realm = &world.realm;
    service_client(realm, "backend", BACKEND_SECRET).await;
    let alice = realm.create_user("alice", "alice@example.com").await;
    let offline = realm.login("web", "alice", true).await;
    let online = realm.login("web", "alice", false).await;
    let backend = caller_token(realm, "backend", BACKEND_SECRET).await;
    store(port, &backend, &name, &alice, &offline, "offline").await;
    store(port, &backend, &name, &alice, &online, "refresh").await;

    let ask_offline = json!({"realm": name, "userId": alice, "clientId": "web", "offline": true});
    let ask_online = json!({"realm": name, "userId": alice, "clientId": "web"});
    let path = "/v1/tokens/access";
    let (status, first) = call(Method::POST, port, path, &backend, ask_offline.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["sessionId"], json!(offline.session_id));
    assert_eq!(
        crate::kc::claim(first["accessToken"].as_str().unwrap_or_default(), "sid"),
        offline.session_id,
        "the access token belongs to the offline session"
    );
    let (status, body) = call(Method::POST, port, path, &backend, ask_online.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessionId"], json!(online.session_id));

    // The browser session logs out: once its LOGOUT is applied, the API has nothing of it.
    realm.logout("web", &online).await;
    let gone = wait_until(crate::SETTLE, || async {
        let (status, _) = call(Method::POST, port, path, &backend, ask_online.clone()).await;
        status == StatusCode::NOT_FOUND
    })
    .await;
    assert!(gone, "the logged-out session's token was still served");
    let (_, body) = call(Method::POST, port, path, &backend, ask_online).await;
    assert_eq!(body["error"], "no_token", "{body}");

    // The offline token is refreshed at Keycloak after the logout (rotated; a tenth of
    // the kept access token's life used).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let forced = json!({"realm": name, "userId": alice, "clientId": "web", "offline": true,
                        "minValiditySecs": 3600});
    let (status, body) = call(Method::POST, port, path, &backend, forced.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_ne!(body["accessToken"], first["accessToken"]);
    assert_eq!(body["sessionId"], json!(offline.session_id));
    // …and once more: the rotated offline token was kept (a reuse would be refused).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (status, again) = call(Method::POST, port, path, &backend, forced).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_ne!(again["accessToken"], body["accessToken"]);
    realm.delete().await;
}

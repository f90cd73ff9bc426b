//! Offline tokens: an offline login outlives the logout of its browser session in
//! Keycloak and in the tables; revoking the user's consent (the admin console's "revoke"
//! of an offline token) ends the offline session in Keycloak and in the tables, and takes
//! the client's offline tokens out of the vault.

use reqwest::Method;

use crate::support::count;
use crate::World;

async fn offline_sessions(world: &World, user: &str, client_uuid: &str) -> Vec<String> {
    world
        .realm
        .admin(
            Method::GET,
            &format!("/users/{user}/offline-sessions/{client_uuid}"),
            None,
        )
        .await
        .ok("offline sessions")
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn offline_sessions_outlive_logout_and_consent_revocation_reaches_the_vault() {
    let world = World::new().await;
    let realm = &world.realm;
    let alice = realm.create_user("alice", "alice@example.com").await;
    let web = realm.client_uuid("web").await;
    let offline = realm.login("web", "alice", true).await;
    let online = realm.login("web", "alice", false).await;
    assert_eq!(crate::kc::claim(&offline.refresh, "typ"), "Offline");
    realm
        .refresh("web", &offline)
        .await
        .ok("refresh with the offline token");
    world.settle("after an offline and an online login").await;

    realm.logout("web", &online).await;
    world.settle("after the online session's logout").await;
    assert_eq!(
        offline_sessions(&world, &alice, &web).await,
        vec![offline.session_id.clone()]
    );

    let revoked = realm
        .admin(
            Method::DELETE,
            &format!("/users/{alice}/consents/web"),
            None,
        )
        .await;
    assert!(revoked.status.is_success(), "revoke: {}", revoked.body);
    assert!(offline_sessions(&world, &alice, &web).await.is_empty());
    let refused = realm.refresh("web", &offline).await;
    assert_eq!(refused.status, reqwest::StatusCode::BAD_REQUEST);
    // Keycloak ends the offline session here, announced only as the consent's
    // revocation (USER ACTION users/{id}/consents/{client}); its LOGIN said it was
    // offline only, so the tables end it too.
    world.settle("after the consent's revocation").await;
    let row = crate::support::session(&world.store, &offline.session_id).await;
    assert_eq!(row.end_reason.as_deref(), Some("revoked"));
    let ended = crate::support::wait_until(crate::SETTLE, || async {
        count(
            &world.store,
            &format!(
                "SELECT count(*) FROM grant_revocations WHERE user_id = '{alice}' AND client_id = 'web'"
            ),
        )
        .await
            == 1
    })
    .await;
    assert!(ended, "the revocation is recorded for the vault");
    crate::fixtures::keep(&world, "offline").await;
    realm.delete().await;
}

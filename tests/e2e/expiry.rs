//! Sessions Keycloak ends without an event: with a short maximum lifespan, the daemon's
//! inferred expiry ends exactly the sessions Keycloak stopped listing, and a session that
//! began later stays open.

use std::time::Duration;

use serde_json::json;

use crate::support::session;
use crate::World;

#[tokio::test]
async fn the_inferred_expiry_ends_the_sessions_keycloak_ended() {
    let world = World::with(
        json!({"ssoSessionIdleTimeout": 3600, "ssoSessionMaxLifespan": 25}),
        &[
            ("KEYCLOAK_SYNC__SESSIONS__EXPIRE_INTERVAL_SECS", "1"),
            ("KEYCLOAK_SYNC__SESSIONS__EXPIRY_MARGIN_SECS", "0"),
        ],
    )
    .await;
    let realm = &world.realm;
    let alice = realm.create_user("alice", "alice@example.com").await;
    let early = realm.login("web", "alice", false).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    let late = realm.login("web", "alice", false).await;
    world.settle("both sessions live").await;

    // Past the first session's lifespan, not the second's.
    let gone = crate::support::wait_until(Duration::from_secs(40), || async {
        realm.session_ids(&alice).await == vec![late.session_id.clone()]
    })
    .await;
    assert!(
        gone,
        "Keycloak ended the first session at its maximum lifespan"
    );
    world
        .settle("after Keycloak expired the first session")
        .await;
    let ended = session(&world.store, &early.session_id).await;
    assert_eq!(ended.end_reason.as_deref(), Some("expired"));
    assert!(session(&world.store, &late.session_id).await.is_active);
    realm.delete().await;
}

//! Sessions Keycloak ends without an event: with a short maximum lifespan, the daemon's
//! inferred expiry ends exactly the sessions Keycloak stopped listing, and a session that
//! began later stays open. On Keycloak 26.5+ its own sweep reports each expired session
//! (`USER_SESSION_DELETED`), and that alone ends it in the tables.

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

/// With the daemon's inferred expiry off, only Keycloak's own report can end the session:
/// 26.5+ sweeps it (`scripts/keycloak.sh` sets its period to 60 s, the least it takes) and
/// publishes `USER_SESSION_DELETED`; before 26.5 nothing is published, and the session
/// stays open in the tables, which is why the inferred expiry exists.
#[tokio::test]
async fn keycloak_reports_the_sessions_it_swept() {
    let world = World::with(
        json!({"ssoSessionIdleTimeout": 3600, "ssoSessionMaxLifespan": 10}),
        &[("KEYCLOAK_SYNC__SESSIONS__EXPIRE_INTERVAL_SECS", "0")],
    )
    .await;
    let realm = &world.realm;
    let reports = realm.server_version().await >= (26, 5);
    let alice = realm.create_user("alice", "alice@example.com").await;
    let login = realm.login("web", "alice", false).await;
    world.settle("the session live").await;

    let swept = crate::support::wait_until(Duration::from_secs(60), || async {
        realm.session_ids(&alice).await.is_empty()
    })
    .await;
    assert!(swept, "Keycloak ended the session at its maximum lifespan");
    if reports {
        // Keycloak sweeps every 60 s at the most often (`scripts/keycloak.sh`), and only
        // sessions past their lifespan by its cleaner's 180 s window.
        let ended = crate::support::wait_until(Duration::from_secs(300), || async {
            !session(&world.store, &login.session_id).await.is_active
        })
        .await;
        assert!(
            ended,
            "USER_SESSION_DELETED ended the session in the tables"
        );
        let row = session(&world.store, &login.session_id).await;
        assert_eq!(row.end_reason.as_deref(), Some("expired"));
        crate::fixtures::keep(&world, "expiry").await;
    } else {
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert!(
            session(&world.store, &login.session_id).await.is_active,
            "before 26.5 Keycloak reports no expiry, so only the inferred expiry ends it"
        );
    }
    realm.delete().await;
}

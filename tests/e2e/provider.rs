//! The provider inside Keycloak: a failed admin operation publishes nothing and leaves no
//! outbox row; with direct delivery and the broker unreachable, logins keep succeeding, the
//! spool fills, Keycloak restarts gracefully with it non-empty, and it drains when the
//! broker returns, nothing lost. The outage runs on a second Keycloak of its own (its own
//! port, database, spool and broker user), so the tests sharing the first never see it.
//! The same drills with the outbox, and SIGKILL, are in `outbox.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::instance::{grant, Instance};
use crate::support::{count, user, wait_until};
use crate::World;

#[tokio::test]
async fn a_failed_admin_operation_publishes_nothing() {
    let world = World::new().await;
    let realm = &world.realm;
    realm.create_user("alice", "alice@example.com").await;
    let again = realm
        .admin(
            Method::POST,
            "/users",
            Some(json!({"username": "alice", "enabled": true})),
        )
        .await;
    assert_eq!(
        again.status,
        reqwest::StatusCode::CONFLICT,
        "{}",
        again.body
    );
    let missing = realm
        .admin(
            Method::PUT,
            "/users/00000000-0000-4000-8000-000000000000",
            Some(json!({"firstName": "Nobody"})),
        )
        .await;
    assert_eq!(missing.status, reqwest::StatusCode::NOT_FOUND);
    // A successful operation after them: once it arrives, the failed ones would have too.
    realm.create_user("marker", "marker@example.com").await;
    world.settle("after the marker").await;
    let arrived = wait_until(crate::SETTLE, || async {
        count(
            &world.store,
            "SELECT count(*) FROM processed_events WHERE type = 'USER.CREATE'",
        )
        .await
            == 2
    })
    .await;
    assert!(arrived, "the two creations arrived");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(
            &world.store,
            "SELECT count(*) FROM processed_events WHERE kind = 'admin'"
        )
        .await,
        2,
        "nothing of the refused creation nor of the update of no one"
    );
    // Only a committed change writes an outbox row, and the relay deleted what it published.
    let port = crate::kc::keycloak_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse::<u16>().ok())
        .expect("KEYCLOAK_URL has a port");
    let database = Instance::database_name_of(port);
    assert_eq!(
        crate::instance::outbox_depth(&database, &format!("kc.{}.%", realm.name)).await,
        0,
        "no outbox row of the realm is left"
    );
    realm.delete().await;
}

const PORT: u16 = 30180;
const BROKER_USER: &str = "kcs-e2e-provider";

fn spooled_bytes() -> u64 {
    crate::instance::spooled_bytes(PORT)
}

async fn timed_logins(world: &World, n: usize) -> Vec<Duration> {
    let mut took = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        world.realm.login("web", "alice", false).await;
        took.push(start.elapsed());
    }
    took.sort();
    took
}

#[tokio::test]
async fn logins_go_on_through_a_broker_outage_and_a_restart_and_nothing_is_lost() {
    let keycloak = Arc::new(
        Instance::new(PORT)
            .broker_user(BROKER_USER)
            .args("--spi-events-listener--keycloak-sync--delivery=direct"),
    );
    keycloak.run_async("up").await;
    let world = World::on(&keycloak.url(), json!({}), &[]).await;
    let alice = world.realm.create_user("alice", "alice@example.com").await;
    let before = timed_logins(&world, 10).await;
    world.settle("before the outage").await;

    grant(BROKER_USER, false);
    let during = timed_logins(&world, 10).await;
    assert!(
        wait_until(Duration::from_secs(20), || async { spooled_bytes() > 0 }).await,
        "the spool holds the events"
    );
    let (p50_before, p50_during) = (before[5], during[5]);
    eprintln!("login p50 before the outage {p50_before:?}, during {p50_during:?}");
    assert!(
        p50_during < p50_before * 3 + Duration::from_millis(50),
        "logins are not slowed by the outage: p50 {p50_before:?} before, {p50_during:?} during"
    );

    // Restarted gracefully while the broker is still away: the spool survives.
    keycloak.run_async("down").await;
    assert!(spooled_bytes() > 0, "the spool outlives the restart");
    grant(BROKER_USER, true);
    keycloak.run_async("up").await;
    world
        .settle("after the broker and Keycloak came back")
        .await;
    let logins = wait_until(crate::SETTLE, || async {
        user(&world.store, &alice).await.login_count == 20
    })
    .await;
    assert!(
        logins,
        "every login Keycloak answered, once: {:?}",
        user(&world.store, &alice).await
    );
    assert!(
        wait_until(Duration::from_secs(30), || async { spooled_bytes() == 0 }).await,
        "the spool drained"
    );
    world.realm.delete().await;
}

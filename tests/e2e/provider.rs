//! The provider inside Keycloak: a failed admin operation publishes nothing; with the
//! broker unreachable, logins keep succeeding, the spool fills, Keycloak restarts
//! gracefully with it non-empty, and it drains when the broker returns, nothing lost.
//! The outage runs on a second Keycloak of its own (its own port, database, spool and
//! broker user), so the tests sharing the first never see it.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

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
    realm.delete().await;
}

const PORT: u16 = 58180;
const BROKER_USER: &str = "kcs-e2e-provider";

fn rabbitmqctl(args: &[&str]) -> String {
    let node =
        std::env::var("KCS_RABBITMQ_NODE").expect("KCS_RABBITMQ_NODE (scripts/services.sh env)");
    let output = Command::new("rabbitmqctl")
        .args(["-n", &node, "-q"])
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn grant(allowed: bool) {
    if allowed {
        rabbitmqctl(&["set_permissions", "-p", "/", BROKER_USER, ".*", ".*", ".*"]);
    } else {
        rabbitmqctl(&["clear_permissions", "-p", "/", BROKER_USER]);
        // And the connection it holds.
        for line in rabbitmqctl(&["list_connections", "user", "pid"]).lines() {
            if let Some(pid) = line.strip_prefix(&format!("{BROKER_USER}\t")) {
                let _ = Command::new("rabbitmqctl")
                    .args([
                        "-n",
                        &std::env::var("KCS_RABBITMQ_NODE").unwrap_or_default(),
                    ])
                    .args(["close_connection", pid.trim(), "outage drill"])
                    .output();
            }
        }
    }
}

/// `scripts/keycloak.sh` for the second instance.
fn second_keycloak(command: &str) {
    let amqp = crate::support::amqp_url().replace("guest:guest@", &format!("{BROKER_USER}:drill@"));
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/keycloak.sh"))
        .arg(command)
        .env("KCS_KEYCLOAK_PORT", PORT.to_string())
        .env("KCS_KEYCLOAK_AMQP_URL", amqp)
        .status()
        .expect("scripts/keycloak.sh");
    assert!(status.success(), "scripts/keycloak.sh {command}");
}

/// Stops the second instance however the test ends.
struct SecondKeycloak;

impl Drop for SecondKeycloak {
    fn drop(&mut self) {
        grant(true);
        second_keycloak("down");
    }
}

/// Bytes in the spool's segments (its `position` file aside).
fn spooled_bytes() -> u64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!(".local/keycloak/run-{PORT}/spool"));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
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
    let users = rabbitmqctl(&["list_users"]);
    if !users.lines().any(|l| l.starts_with(BROKER_USER)) {
        rabbitmqctl(&["add_user", BROKER_USER, "drill"]);
    }
    grant(true);
    second_keycloak("up");
    let _guard = SecondKeycloak;
    let world = World::on(&format!("http://127.0.0.1:{PORT}"), json!({}), &[]).await;
    let alice = world.realm.create_user("alice", "alice@example.com").await;
    let before = timed_logins(&world, 10).await;
    world.settle("before the outage").await;

    grant(false);
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
    second_keycloak("down");
    assert!(spooled_bytes() > 0, "the spool outlives the restart");
    grant(true);
    second_keycloak("up");
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

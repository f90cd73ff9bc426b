//! Through a connection pooler: Debian's PgBouncer (1.18) in transaction mode — each
//! transaction on whichever server connection is free, no prepared statements across
//! them, startup options such as the search_path dropped — and in session mode. Started
//! by `scripts/services.sh up` in front of the test Postgres.

use std::process::Command;
use std::time::Duration;

use keycloak_sync::core::sample::{history, SampleOptions};
use keycloak_sync::store::Store;

use crate::support::*;

fn transaction_pooler(db: &TestDb) -> String {
    through_pooler(db)
}

fn session_pooler(db: &TestDb) -> String {
    through("KCS_TEST_PGBOUNCER_SESSION_URL", 54331, db)
}

fn sample(events: usize, seed: u64) -> Vec<Vec<u8>> {
    history(SampleOptions {
        events,
        users: 60,
        seed,
        everyday_weight: 20,
        ..SampleOptions::default()
    })
    .map(String::into_bytes)
    .collect()
}

/// Replays `bodies` with the real binary through `url` (migrations included), with
/// several workers so that transactions interleave on the pooler's server connections.
fn replay_through(url: &str, prepared: Option<bool>, bodies: &[Vec<u8>]) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("kcs-pooler-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("events.jsonl");
    let mut text = Vec::new();
    for body in bodies {
        text.extend_from_slice(body);
        text.push(b'\n');
    }
    std::fs::write(&file, text).expect("write");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
    command
        .arg("replay")
        .arg(&file)
        .args(["--batch-size", "50", "--workers", "4"])
        .env("KEYCLOAK_SYNC__DATABASE__URL", url)
        .env("KEYCLOAK_SYNC__DATABASE__RETRY_MAX_SECS", "5")
        .env("KEYCLOAK_SYNC__LOG__LEVEL", "warn")
        .env_remove("KEYCLOAK_SYNC__DATABASE__PREPARED_STATEMENTS")
        .env_remove("RUST_LOG");
    if let Some(prepared) = prepared {
        command.env(
            "KEYCLOAK_SYNC__DATABASE__PREPARED_STATEMENTS",
            prepared.to_string(),
        );
    }
    let output = command.output().expect("run replay");
    let _ = std::fs::remove_dir_all(&dir);
    output
}

/// Replays through the pooler and compares with a direct replay; answers the log.
async fn assert_replay_matches_direct(
    pooled: impl Fn(&TestDb) -> String,
    prepared: Option<bool>,
) -> String {
    let db = TestDb::new().await;
    let bodies = sample(3000, 11);
    let output = replay_through(&pooled(&db), prepared, &bodies);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rejected 0 "),
        "nothing refused: {stdout}\n{stderr}"
    );
    let direct = db.store().await;
    assert_eq!(
        full_rows(&direct).await,
        rows_of_clean_replay(&admin_url(), &bodies).await,
        "the same rows as a direct replay"
    );
    stderr
}

const NOTICED: &str = "a connection pooler in transaction mode sits in front of Postgres";

#[tokio::test]
async fn replay_through_pgbouncer_in_transaction_mode_refuses_nothing() {
    // Debian's PgBouncer (1.18) keeps no prepared statements across transactions.
    assert_replay_matches_direct(transaction_pooler, Some(false)).await;
}

/// Nothing configured: the pooler is noticed before a named statement runs where it was
/// not prepared (before, the replay retried "prepared statement … does not exist" for as
/// long as it could, then failed), and said once.
#[tokio::test]
async fn replay_through_pgbouncer_in_transaction_mode_with_the_default_settings() {
    let log = assert_replay_matches_direct(transaction_pooler, None).await;
    assert_eq!(log.matches(NOTICED).count(), 1, "{log}");
    assert!(!log.contains("prepared statement"), "{log}");
}

#[tokio::test]
async fn replay_through_pgbouncer_in_session_mode_refuses_nothing() {
    // A session pooler keeps each connection on one server connection: named statements
    // stay on.
    let log = assert_replay_matches_direct(session_pooler, None).await;
    assert!(!log.contains(NOTICED), "{log}");
}

#[tokio::test]
async fn replay_directly_keeps_named_statements() {
    let log = assert_replay_matches_direct(|db: &TestDb| db.url.clone(), None).await;
    assert!(!log.contains(NOTICED), "{log}");
}

#[tokio::test]
async fn the_daemon_works_through_pgbouncer_in_transaction_mode() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    let daemon = Daemon::start(
        &transaction_pooler(&db),
        &amqp,
        &names,
        &[("KEYCLOAK_SYNC__DATABASE__PREPARED_STATEMENTS", "false")],
    );
    daemon.wait_ready(Duration::from_secs(30)).await;
    let bodies = sample(1500, 12);
    publish(&amqp, &names.exchange, &bodies).await;
    let direct = db.store().await;
    let expected = rows_of_clean_replay(&admin_url(), &bodies).await;
    let converged = wait_until(Duration::from_secs(60), || async {
        count(&direct, "SELECT count(*) FROM processed_events").await
            == count_distinct_events(&bodies)
    })
    .await;
    assert!(converged, "not all applied; log:\n{}", daemon.log_text());
    assert_eq!(full_rows(&direct).await, expected);
    assert_eq!(
        queue_depth(&amqp, &names.dlq).await,
        0,
        "nothing dead-lettered"
    );
}

fn count_distinct_events(bodies: &[Vec<u8>]) -> i64 {
    let ids: std::collections::HashSet<String> = bodies
        .iter()
        .map(|b| event(std::str::from_utf8(b).expect("utf8")).id.to_string())
        .collect();
    ids.len() as i64
}

/// The maintenance steps hold nothing across transactions either: a reconcile run's
/// lease, the expiry pass, the vault's reads.
#[tokio::test]
async fn reconcile_runs_and_expiry_passes_work_through_the_transaction_pooler() {
    let db = TestDb::new().await;
    db.store().await;
    let pooled = Store::connect(&keycloak_sync::config::DatabaseSettings {
        url: keycloak_sync::config::SecretUrl::new(transaction_pooler(&db)),
        prepared_statements: false,
        ..db.settings("keycloak_sync")
    })
    .await
    .expect("connect through the pooler");
    pooled.migrate().await.expect("migrations are idempotent");
    let realm = keycloak_sync::core::ids::RealmId::from("r");
    let run = pooled
        .begin_reconcile(&realm)
        .await
        .expect("begin")
        .expect("free");
    assert!(
        pooled
            .begin_reconcile(&realm)
            .await
            .expect("begin")
            .is_none(),
        "a second run of the realm waits"
    );
    run.finish().await.expect("finish");
    let again = pooled.begin_reconcile(&realm).await.expect("begin");
    assert!(again.is_some(), "free again once finished");
    if let Some(run) = again {
        run.finish().await.expect("finish");
    }
    let pass = pooled
        .expire_sessions(None, 100, false)
        .await
        .expect("expiry pass");
    assert!(!pass.busy);
}

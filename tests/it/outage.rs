//! The fault suite: while a long history streams in, the database goes read-only and back,
//! Postgres restarts, PgBouncer restarts, RabbitMQ restarts and the daemon is killed with
//! `-9`. It runs against private servers started for the test, so stopping them disturbs
//! nothing else.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use std::sync::Arc;

use keycloak_sync::core::sample::{history, SampleOptions};
use keycloak_sync::store::Store;
use keycloak_sync::vault::KeyRing;
use secrecy::SecretString;

use crate::support::*;

struct PrivateServers {
    dir: PathBuf,
    pg_port: u16,
    amqp_port: u16,
}

/// A port that is free together with `port + offset` for each offset: RabbitMQ also takes
/// port+1 (management) and port+1000 (distribution); Postgres's PgBouncers take port+1 and
/// port+2.
fn free_port_with_neighbours(offsets: &[u16]) -> u16 {
    loop {
        let port = 20_000 + (rand::random::<u16>() % 9_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && offsets.iter().all(|offset| free(port + offset)) {
            return port;
        }
    }
}

impl PrivateServers {
    fn script(&self, action: &str) -> bool {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
            .arg(action)
            .env("KCS_STATE_DIR", &self.dir)
            .env("KCS_PG_PORT", self.pg_port.to_string())
            .env("KCS_AMQP_PORT", self.amqp_port.to_string())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    fn start() -> PrivateServers {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(".local/test-servers")
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&dir).expect("state dir");
        let servers = PrivateServers {
            dir,
            pg_port: free_port_with_neighbours(&[1, 2]),
            amqp_port: free_port_with_neighbours(&[1, 1000]),
        };
        assert!(servers.script("up"), "private servers did not start");
        servers
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.pg_port)
    }

    /// `url` (on this Postgres) through the PgBouncer in transaction mode in front of it.
    fn through_pgbouncer(&self, url: &str) -> String {
        url.replace(
            &format!(":{}/", self.pg_port),
            &format!(":{}/", self.pg_port + 1),
        )
    }

    fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }
}

impl Drop for PrivateServers {
    fn drop(&mut self) {
        self.script("down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Publishes every body, retrying whole chunks while the broker is away (republished
/// messages are duplicates the inbox absorbs).
async fn publish_through_outages(amqp: String, exchange: String, bodies: Vec<Vec<u8>>) {
    for chunk in bodies.chunks(500) {
        loop {
            let attempt = tokio::spawn({
                let (amqp, exchange, chunk) = (amqp.clone(), exchange.clone(), chunk.to_vec());
                async move { publish(&amqp, &exchange, &chunk).await }
            });
            if attempt.await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readiness_goes_down_and_back(
    daemon: &Daemon,
    outage: impl FnOnce(),
    recovery: impl FnOnce(),
) {
    outage();
    let down = wait_until(Duration::from_secs(30), || async {
        matches!(daemon.get("/readyz").await, Some((503, _)))
    })
    .await;
    assert!(
        down,
        "/readyz never reported the outage; log:\n{}",
        daemon.log_text()
    );
    let (_, body) = daemon
        .get("/readyz")
        .await
        .expect("readyz answers during the outage");
    assert!(body.contains("\"ready\":false"), "{body}");
    recovery();
    let up = wait_until(Duration::from_secs(60), || async {
        matches!(daemon.get("/readyz").await, Some((200, _)))
    })
    .await;
    assert!(up, "/readyz did not recover; log:\n{}", daemon.log_text());
}

const VAULT_KEYS: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// The sample history with a token message after every fourth LOGIN (refresh and offline
/// in turn, each with its own plaintext `SECRET-FS-n`), and three poison messages among
/// them: a body that is not JSON, a token message of an unknown type, an event whose time
/// is not a number. Poison bodies carry token-like text too.
fn history_with_tokens_and_poison(events: usize) -> (Vec<Vec<u8>>, Vec<&'static str>) {
    let mut bodies = Vec::new();
    let mut logins = 0;
    for body in history(SampleOptions {
        events,
        users: 300,
        seed: 77,
        ..SampleOptions::default()
    }) {
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("sample is JSON");
        bodies.push(body.into_bytes());
        if parsed["type"] != "LOGIN" {
            continue;
        }
        logins += 1;
        if logins % 4 != 0 {
            continue;
        }
        let kind = if logins % 8 == 0 {
            "offline"
        } else {
            "refresh"
        };
        bodies.push(
            serde_json::json!({
                "schema": 1, "kind": "token", "id": format!("tok-{logins}"),
                "time": parsed["time"].as_i64().expect("time") + 1,
                "realmId": parsed["realmId"], "userId": parsed["userId"],
                "sessionId": parsed["sessionId"], "clientId": parsed["clientId"],
                "tokenType": kind, "token": format!("SECRET-FS-{logins}"),
            })
            .to_string()
            .into_bytes(),
        );
    }
    let poison = [
        r#"{"schema":1,"kind":"token","id":"poison-1","token":"SECRET-POISON-1", and then garbage"#,
        r#"{"schema":1,"kind":"token","id":"poison-2","time":1732270000000,"realmId":"r","userId":"u","sessionId":"s","clientId":"web","tokenType":"bogus","token":"SECRET-POISON-2"}"#,
        r#"{"schema":1,"kind":"user","id":"poison-3","time":"soon","realmId":"r","type":"LOGIN","userId":"u","details":{"refresh_token":"SECRET-POISON-3"}}"#,
    ];
    for (n, body) in poison.iter().enumerate() {
        let at = bodies.len() * (n + 1) / 4;
        bodies.insert(at, body.as_bytes().to_vec());
    }
    (bodies, poison.to_vec())
}

fn vault_ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(&SecretString::from(VAULT_KEYS), Some("k1")).expect("ring"))
}

/// Users, sessions and vault rows (which token message each slot holds), bookkeeping
/// included, write times (the metadata's `updatedAt` too) and ciphertexts left out.
async fn all_rows(store: &Store) -> serde_json::Value {
    let (users, sessions) = full_rows(store).await;
    let vault: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT jsonb_set(
                    to_jsonb(v) - 'id' - 'nonce' - 'ciphertext' - 'created_at' - 'updated_at',
                    '{metadata}', v.metadata - 'updatedAt')
         FROM auth_vault v ORDER BY token_type, user_id, client_id, session_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("vault rows");
    serde_json::json!({"users": users, "sessions": sessions, "vault": vault})
}

/// What a clean replay of the valid messages leaves, and how many events its inbox holds.
async fn clean_replay(
    admin: &str,
    bodies: &[Vec<u8>],
    poison: &[&str],
) -> (serde_json::Value, i64) {
    let db = TestDb::on(admin).await;
    let store = db.store().await.with_vault(Some(vault_ring()));
    let events: Vec<_> = bodies
        .iter()
        .map(|b| std::str::from_utf8(b).expect("utf8"))
        .filter(|b| !poison.contains(b))
        .map(event)
        .collect();
    for chunk in events.chunks(500) {
        store.apply(chunk).await.expect("reference apply");
    }
    let rows = all_rows(&store).await;
    let processed = count(&store, "SELECT count(*) FROM processed_events").await;
    store.pool().close().await;
    (rows, processed)
}

/// Waits until the inbox has grown by `by` events since `from`, and returns its size.
async fn progress(store: &Store, from: i64, by: i64, daemon: &Daemon, after: &str) -> i64 {
    let moved = wait_until(Duration::from_secs(60), || async {
        count(store, "SELECT count(*) FROM processed_events").await >= from + by
    })
    .await;
    assert!(
        moved,
        "no progress after {after}; log:\n{}",
        daemon.log_text()
    );
    count(store, "SELECT count(*) FROM processed_events").await
}

#[tokio::test]
async fn the_fault_suite_loses_nothing_refuses_nothing_and_leaks_no_token() {
    let servers = PrivateServers::start();
    let admin = servers.admin_url();
    let db = TestDb::on(&admin).await;
    let store = db.store().await;
    let amqp = servers.amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    let daemon_url = servers.through_pgbouncer(&db.url);
    let env = [
        ("KEYCLOAK_SYNC__AMQP__BATCH_SIZE", "50"),
        ("KEYCLOAK_SYNC__DATABASE__PREPARED_STATEMENTS", "false"),
        ("KEYCLOAK_SYNC__DATABASE__RETRY_MAX_SECS", "2"),
        ("KEYCLOAK_SYNC__VAULT__KEYS", VAULT_KEYS),
        ("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k1"),
    ];
    let mut daemon = Daemon::start(&daemon_url, &amqp, &names, &env);
    daemon.wait_ready(Duration::from_secs(60)).await;

    let (bodies, poison) = history_with_tokens_and_poison(8_000);
    let publisher = tokio::spawn(publish_through_outages(
        amqp.clone(),
        names.exchange.clone(),
        bodies.clone(),
    ));
    let mut done = progress(&store, 0, 500, &daemon, "the start").await;

    // 1. A failover leaves the database read-only: the daemon holds its batch, refuses
    //    nothing, reports why, and goes on once it is writable.
    readiness_goes_down_and_back(
        &daemon,
        || {
            let (admin, name) = (admin.clone(), db.name.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(set_read_only(&admin, &name, true));
            })
            .join()
            .expect("read-only");
        },
        || {
            std::thread::sleep(Duration::from_secs(2));
            let (admin, name) = (admin.clone(), db.name.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Runtime::new().expect("runtime");
                runtime.block_on(set_read_only(&admin, &name, false));
            })
            .join()
            .expect("writable");
        },
    )
    .await;
    done = progress(&store, done, 300, &daemon, "the read-only database").await;

    // 2. PgBouncer restarts under the daemon's pool.
    assert!(servers.script("restart-pgbouncer"));
    done = progress(&store, done, 300, &daemon, "the PgBouncer restart").await;

    // 3. Postgres itself restarts behind PgBouncer.
    assert!(servers.script("stop-postgres"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(servers.script("start-postgres"));
    let store = db.store().await;
    done = progress(&store, done, 300, &daemon, "the Postgres restart").await;

    // 4. RabbitMQ restarts: the daemon and the publisher reconnect.
    readiness_goes_down_and_back(
        &daemon,
        || assert!(servers.script("stop-rabbitmq")),
        || {
            std::thread::sleep(Duration::from_secs(2));
            assert!(servers.script("start-rabbitmq"));
        },
    )
    .await;
    done = progress(&store, done, 300, &daemon, "the RabbitMQ restart").await;

    // 5. The daemon dies mid-batch and a new one takes over its unacknowledged messages.
    let (_, metrics) = daemon.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("keycloak_sync_reconnects_total{target=\"amqp\"}"),
        "reconnects not counted"
    );
    let first_log = daemon.log_text();
    daemon.kill9().await;
    daemon = Daemon::start(&daemon_url, &amqp, &names, &env);
    daemon.wait_ready(Duration::from_secs(60)).await;
    progress(&store, done, 100, &daemon, "kill -9").await;

    publisher.await.expect("publisher");
    let (expected_rows, expected_processed) = clean_replay(&admin, &bodies, &poison).await;
    let settled = wait_until(Duration::from_secs(180), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == expected_processed
            && queue_depth(&amqp, &names.queue).await == 0
    })
    .await;
    assert!(
        settled,
        "not every event was applied; log:\n{}",
        daemon.log_text()
    );
    let store = store.with_vault(Some(vault_ring()));
    let rows = all_rows(&store).await;
    for table in ["users", "sessions", "vault"] {
        let (got, want) = (
            rows[table].as_array().expect("rows"),
            expected_rows[table].as_array().expect("rows"),
        );
        let first_difference = got.iter().zip(want).find(|(g, w)| g != w);
        assert!(
            got.len() == want.len() && first_difference.is_none(),
            "{table}: {} rows against {} in a clean replay; first difference: {first_difference:#?}",
            got.len(),
            want.len()
        );
    }

    let copies = take_all(&amqp, &names.dlq).await;
    let mut ids: Vec<String> = copies
        .iter()
        .map(|copy| {
            assert!(
                !copy.body.contains("SECRET-"),
                "plaintext token in the DLQ: {}",
                copy.body
            );
            assert!(copy.reason.is_some(), "a dead letter without its reason");
            ["poison-1", "poison-2", "poison-3"]
                .into_iter()
                .find(|id| copy.body.contains(id))
                .unwrap_or("unknown")
                .to_string()
        })
        .collect();
    ids.sort();
    assert!(
        copies.len() == 3 && ids.contains(&"poison-2".into()) && ids.contains(&"poison-3".into()),
        "the DLQ holds exactly the three poison messages, got {ids:?}: {:?}",
        copies.iter().map(|c| &c.reason).collect::<Vec<_>>()
    );
    assert!(
        !daemon.log_text().contains("SECRET-") && !first_log.contains("SECRET-"),
        "token in the log"
    );
    drop(db);
}

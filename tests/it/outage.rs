//! The fault suite: while a long history streams in, the database goes read-only and back,
//! Postgres restarts, PgBouncer restarts, RabbitMQ restarts and the daemon is killed with
//! `-9`. It runs against private servers started for the test, so stopping them disturbs
//! nothing else.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::types::ShortString;
use lapin::{Confirmation, ConnectionProperties};
use tokio::sync::RwLock;

use crate::convergence::*;
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

/// Publishes every body through broker outages, resending only what the broker did not
/// confirm: a message whose confirm was lost may arrive twice (the inbox absorbs a
/// duplicate event), but the poison messages, which nothing absorbs (each copy is
/// dead-lettered), are published only while `gate` is open, and the test closes it
/// (waiting for a poison message in flight to be confirmed) before it stops the broker.
async fn publish_through_outages(
    amqp: String,
    exchange: String,
    bodies: Vec<Vec<u8>>,
    gate: Arc<RwLock<()>>,
) {
    let is_poison = |body: &Vec<u8>| String::from_utf8_lossy(body).contains("\"id\":\"poison-");
    let mut next = 0;
    while next < bodies.len() {
        let end = (next + 25).min(bodies.len());
        let window = &bodies[next..end];
        // Held while a poison message is in flight: the broker is not stopped meanwhile.
        let held = if window.iter().any(is_poison) {
            Some(gate.read().await)
        } else {
            None
        };
        let confirmed = publish_confirmed(&amqp, &exchange, window).await;
        drop(held);
        next += confirmed;
        if confirmed < window.len() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        } else if next % 500 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Publishes `bodies` with confirms on a connection of their own; answers how many of
/// them, from the first, the broker confirmed before anything failed.
async fn publish_confirmed(amqp: &str, exchange: &str, bodies: &[Vec<u8>]) -> usize {
    let Ok(connection) = lapin::Connection::connect(amqp, ConnectionProperties::default()).await
    else {
        return 0;
    };
    let mut confirmed = 0;
    if let Ok(channel) = connection.create_channel().await {
        if channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .is_ok()
        {
            let mut pending = Vec::new();
            for body in bodies {
                match publish_one(&channel, exchange, body).await {
                    Ok(confirm) => pending.push(confirm),
                    Err(_) => break,
                }
            }
            for confirm in pending {
                match confirm.await {
                    Ok(Confirmation::Ack(None)) => confirmed += 1,
                    Ok(other) => panic!("a message was refused or unroutable: {other:?}"),
                    Err(_) => break,
                }
            }
        }
    }
    let _ = connection.close(200, ShortString::from("done")).await;
    confirmed
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
    let gate = Arc::new(RwLock::new(()));
    let publisher = tokio::spawn(publish_through_outages(
        amqp.clone(),
        names.exchange.clone(),
        bodies.clone(),
        gate.clone(),
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

    // 4. RabbitMQ restarts: the daemon and the publisher reconnect. No poison message is
    //    in flight when it stops (a lost confirm would send it twice, and each copy is
    //    dead-lettered); other messages are, and only the unconfirmed ones are resent.
    let no_poison_in_flight = gate.write().await;
    readiness_goes_down_and_back(
        &daemon,
        || assert!(servers.script("stop-rabbitmq")),
        || {
            std::thread::sleep(Duration::from_secs(2));
            assert!(servers.script("start-rabbitmq"));
        },
    )
    .await;
    drop(no_poison_in_flight);
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
    assert_rows_equal(&store, &expected_rows).await;
    assert_dead_letters_are_the_poison(&amqp, &names.dlq).await;
    assert!(
        !daemon.log_text().contains("SECRET-") && !first_log.contains("SECRET-"),
        "token in the log"
    );
    drop(db);
}

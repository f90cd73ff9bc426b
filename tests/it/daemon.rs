//! `keycloak-sync run` against real RabbitMQ and Postgres: delivery, dead-lettering,
//! crashes, shutdown.

use std::time::{Duration, Instant};

use keycloak_sync::core::sample::{history, SampleOptions};

use crate::support::*;

fn sample_bodies(events: usize, seed: u64) -> Vec<Vec<u8>> {
    history(SampleOptions {
        events,
        users: events / 20 + 5,
        seed,
        ..SampleOptions::default()
    })
    .map(String::into_bytes)
    .collect()
}

const LOGIN: &str = r#"{"schema":1,"kind":"user","id":"login-1","time":1000,"realmId":"r","realmName":"acme","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"s1","ipAddress":"203.0.113.9","details":{"username":"alice"}}"#;

#[tokio::test]
async fn published_events_become_rows_and_a_duplicate_counts_once() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    let daemon = Daemon::start(&db.url, &amqp, &names, &[]);
    daemon.wait_ready(Duration::from_secs(30)).await;

    publish(&amqp, &names.exchange, &[LOGIN.into(), LOGIN.into()]).await;
    let store = db.store().await;
    let arrived = wait_until(Duration::from_secs(20), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == 1
    })
    .await;
    assert!(arrived, "event not applied; log:\n{}", daemon.log_text());
    // Wait until both deliveries were handled, then check nothing counted twice.
    let settled = wait_until(Duration::from_secs(20), || async {
        daemon.get("/metrics").await.is_some_and(|(_, body)| {
            body.contains("keycloak_sync_events_duplicate_total{kind=\"user\",type=\"LOGIN\"} 1")
        })
    })
    .await;
    assert!(settled, "the second delivery was not seen as a duplicate");
    let user = user(&store, "u1").await;
    assert_eq!(
        (user.username.as_deref(), user.login_count),
        (Some("alice"), 1)
    );
    let session = session(&store, "s1").await;
    assert_eq!(
        (session.client_id.as_deref(), session.is_active),
        (Some("web"), true)
    );
    assert_eq!(
        queue_depth(&amqp, &names.queue).await,
        0,
        "everything acknowledged"
    );

    let (status, metrics) = daemon.get("/metrics").await.expect("metrics");
    assert_eq!(status, 200);
    for series in [
        "keycloak_sync_messages_received_total 2",
        "keycloak_sync_events_applied_total{kind=\"user\",type=\"LOGIN\"} 1",
        "keycloak_sync_consumer_connected 1",
        "keycloak_sync_batch_size_count",
        "keycloak_sync_apply_seconds_bucket",
        "keycloak_sync_lag_seconds_count",
    ] {
        assert!(metrics.contains(series), "{series} missing from\n{metrics}");
    }
    let (status, health) = daemon.get("/healthz").await.expect("healthz");
    assert_eq!((status, health.contains("ok")), (200, true));
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_with_a_reason_and_the_rest_applies() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    let bodies: Vec<Vec<u8>> = vec![
        br#"{"schema":1,"kind":"user","id":"a","time":1000,"realmId":"r","type":"REGISTER","userId":"u1","details":{"username":"alice"}}"#.to_vec(),
        br#"{"schema":1,"kind":"user","id":"b","time":"#.to_vec(),
        br#"{"schema":3,"kind":"user","id":"c","time":1,"realmId":"r","type":"LOGIN","userId":"u1"}"#.to_vec(),
        br#"{"schema":1,"kind":"user","id":"d","time":"late","realmId":"r","type":"LOGIN","userId":"u1"}"#.to_vec(),
        br#"{"schema":1,"kind":"token","id":"e","time":5,"realmId":"r","userId":"u1","tokenType":"refresh","token":"SECRET-TOKEN-77"}"#.to_vec(),
        // The key escaped, the token still a token.
        br#"{"schema":1,"kind":"token","id":"f","time":5,"realmId":"r","userId":"u1","tokenType":"bogus","tok\u0065n":"SECRET-TOKEN-78"}"#.to_vec(),
        // Over limits.max_message_bytes: never parsed, its copy truncated.
        format!(
            r#"{{"schema":1,"kind":"user","id":"big","time":1,"realmId":"r","type":"REGISTER","userId":"u9","details":{{"note":"{}"}}}}"#,
            "n".repeat(10_000)
        )
        .into_bytes(),
        LOGIN.as_bytes().to_vec(),
    ];
    publish(&amqp, &names.exchange, &bodies).await;
    let daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[("KEYCLOAK_SYNC__LIMITS__MAX_MESSAGE_BYTES", "4096")],
    );
    let dead_lettered = wait_until(Duration::from_secs(30), || async {
        queue_depth(&amqp, &names.dlq).await == 6
    })
    .await;
    assert!(
        dead_lettered,
        "expected 6 dead-lettered messages; log:\n{}",
        daemon.log_text()
    );
    let store = db.store().await;
    let applied = wait_until(Duration::from_secs(10), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == 2
    })
    .await;
    assert!(
        applied,
        "the valid messages around the poison were not applied"
    );
    assert_eq!(user(&store, "u1").await.login_count, 1);

    // The copies carry their reason, and the token is not among them.
    let copies = take_all(&amqp, &names.dlq).await;
    let mut reasons = Vec::new();
    let mut bodies_seen = Vec::new();
    for copy in copies {
        reasons.push(copy.reason.expect("reason header"));
        assert_eq!(
            copy.original_routing_key.as_deref(),
            Some(copy.routing_key.as_str()),
            "the copy keeps its original routing key"
        );
        bodies_seen.push(copy.body);
    }
    reasons.sort();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("over the limit of 4096")),
        "{reasons:?}"
    );
    let oversized = bodies_seen
        .iter()
        .find(|b| b.contains("truncated"))
        .expect("the oversized copy");
    assert!(
        oversized.len() < 4096 + 200,
        "{} bytes kept",
        oversized.len()
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("truncated JSON")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("unsupported schema version the number 3")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains(
            "field `time`: expected an integer of epoch milliseconds, got a string \"late\""
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no vault key ring")),
        "{reasons:?}"
    );
    for secret in ["SECRET-TOKEN-77", "SECRET-TOKEN-78"] {
        assert!(
            bodies_seen.iter().all(|b| !b.contains(secret)),
            "token in a dead-letter copy"
        );
        assert!(!daemon.log_text().contains(secret), "token in the log");
    }
}

#[tokio::test]
async fn dead_lettered_messages_can_be_replayed_after_a_fix() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    // Timed a day ahead of this host's clock: rejected until the limit is lifted.
    let ahead = keycloak_sync::now_ms() + 86_400_000;
    let early = format!(
        r#"{{"schema":1,"kind":"user","id":"early","time":{ahead},"realmId":"r","type":"REGISTER","userId":"u9","details":{{"username":"bob"}}}}"#
    );
    publish(&amqp, &names.exchange, &[early.into_bytes()]).await;
    let mut daemon = Daemon::start(&db.url, &amqp, &names, &[]);
    assert!(
        wait_until(Duration::from_secs(30), || async {
            queue_depth(&amqp, &names.dlq).await == 1
        })
        .await
    );
    daemon.signal("TERM");
    assert!(daemon
        .wait_exit(Duration::from_secs(20))
        .await
        .is_some_and(|s| s.success()));

    let cli = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
        command
            .args(args)
            .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
            .env("KEYCLOAK_SYNC__LOG__LEVEL", "warn");
        for (key, value) in names.env(&amqp) {
            command.env(key, value);
        }
        command.output().expect("run")
    };
    let listing = cli(&["dlq", "list"]);
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains(": 1 messages") && text.contains("limits.max_clock_skew_secs"),
        "{text}"
    );
    assert_eq!(
        queue_depth(&amqp, &names.dlq).await,
        1,
        "listing removes nothing"
    );

    let requeue = cli(&["dlq", "requeue"]);
    let text = String::from_utf8_lossy(&requeue.stdout);
    assert!(
        text.contains("requeued 1") && text.contains("0 left"),
        "{text}"
    );
    let daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[("KEYCLOAK_SYNC__LIMITS__MAX_CLOCK_SKEW_SECS", "0")],
    );
    let store = db.store().await;
    let applied = wait_until(Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM users WHERE id = 'u9'").await == 1
    })
    .await;
    assert!(
        applied,
        "replayed message not applied; log:\n{}",
        daemon.log_text()
    );
}

#[tokio::test]
async fn sigterm_mid_stream_exits_cleanly_with_nothing_acked_uncommitted_or_committed_unacked() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    let bodies = sample_bodies(20_000, 5);
    publish(&amqp, &names.exchange, &bodies).await;
    let mut daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[("KEYCLOAK_SYNC__DAEMON__SHUTDOWN_GRACE_SECS", "10")],
    );
    let store = db.store().await;
    let started = wait_until(Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM processed_events").await > 1000
    })
    .await;
    assert!(
        started,
        "daemon did not start consuming; log:\n{}",
        daemon.log_text()
    );
    let asked = Instant::now();
    daemon.signal("TERM");
    let status = daemon
        .wait_exit(Duration::from_secs(12))
        .await
        .expect("exits within the grace period");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        daemon.log_text()
    );
    assert!(asked.elapsed() < Duration::from_secs(10));

    let committed = count(&store, "SELECT count(*) FROM processed_events").await;
    let waiting = i64::from(queue_depth(&amqp, &names.queue).await);
    assert!(
        committed < bodies.len() as i64,
        "stopped mid-stream (committed {committed})"
    );
    assert_eq!(
        committed + waiting,
        bodies.len() as i64,
        "every message is either committed and acknowledged, or still queued"
    );
}

/// kill -9 mid-stream, several times; at the end every event is applied exactly once:
/// the rows equal those of a replay of the same events into a second database.
#[tokio::test]
async fn kill_9_mid_stream_loses_nothing_and_counts_nothing_twice() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    let bodies = sample_bodies(12_000, 9);
    let store = db.store().await;
    let publisher = {
        let (amqp, exchange, bodies) = (amqp.clone(), names.exchange.clone(), bodies.clone());
        tokio::spawn(async move {
            for chunk in bodies.chunks(1000) {
                publish(&amqp, &exchange, chunk).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for round in 0..3 {
        let mut daemon = Daemon::start(
            &db.url,
            &amqp,
            &names,
            &[("KEYCLOAK_SYNC__AMQP__BATCH_SIZE", "100")],
        );
        let target = 2000 * (round + 1);
        let progressed = wait_until(Duration::from_secs(60), || async {
            count(&store, "SELECT count(*) FROM processed_events").await >= target
        })
        .await;
        assert!(
            progressed,
            "round {round}: no progress; log:\n{}",
            daemon.log_text()
        );
        daemon.kill9().await;
    }
    publisher.await.expect("publisher");
    let daemon = Daemon::start(&db.url, &amqp, &names, &[]);
    let total = bodies.len() as i64;
    let done = wait_until(Duration::from_secs(90), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == total
            && queue_depth(&amqp, &names.queue).await == 0
    })
    .await;
    assert!(done, "not all events applied; log:\n{}", daemon.log_text());

    assert_eq!(
        full_rows(&store).await,
        rows_of_clean_replay(&admin_url(), &bodies).await
    );
    assert_eq!(queue_depth(&amqp, &names.dlq).await, 0);
}

/// Token messages through the broker: sealed on the way in, and swept by the daemon once
/// expired.
#[tokio::test]
async fn the_daemon_keeps_tokens_and_sweeps_the_expired_ones() {
    use base64::Engine;
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    let keys = format!(
        "k1:{}",
        base64::engine::general_purpose::STANDARD.encode([5u8; 32])
    );
    let daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[
            ("KEYCLOAK_SYNC__VAULT__KEYS", keys.as_str()),
            ("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k1"),
            ("KEYCLOAK_SYNC__VAULT__PURGE_INTERVAL_SECS", "1"),
        ],
    );
    daemon.wait_ready(Duration::from_secs(30)).await;
    let kept = br#"{"schema":1,"kind":"token","id":"keep","time":1000,"realmId":"r","userId":"u1","sessionId":"s1","clientId":"web","tokenType":"offline","token":"DAEMON-SECRET-1","expiresAt":4102444800000}"#;
    let expired = br#"{"schema":1,"kind":"token","id":"gone","time":1000,"realmId":"r","userId":"u2","tokenType":"refresh","token":"DAEMON-SECRET-2","expiresAt":1000}"#;
    publish(&amqp, &names.exchange, &[kept.to_vec(), expired.to_vec()]).await;
    let store = db.store().await;
    let settled = wait_until(Duration::from_secs(20), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == 2
            && count(&store, "SELECT count(*) FROM auth_vault").await == 1
    })
    .await;
    assert!(
        settled,
        "tokens not stored and swept; log:\n{}",
        daemon.log_text()
    );
    let user: String = sqlx::query_scalar("SELECT user_id FROM auth_vault")
        .fetch_one(store.pool())
        .await
        .expect("row");
    assert_eq!(user, "u1", "the unexpired token stays");
    assert!(
        !daemon.log_text().contains("DAEMON-SECRET"),
        "token in the log"
    );
    assert_eq!(queue_depth(&amqp, &names.dlq).await, 0);
}

/// The arguments RabbitMQ holds for `queue` on the local broker.
fn queue_arguments(queue: &str) -> serde_json::Value {
    let node = std::env::var("KCS_RABBITMQ_NODE")
        .unwrap_or_else(|_| "keycloak-sync-56729@localhost".to_string());
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-n", &node, "-q", "list_queues", "name", "arguments"])
        .args(["--formatter", "json"])
        .output()
        .expect("rabbitmqctl");
    let queues: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("rabbitmqctl JSON");
    queues
        .as_array()
        .and_then(|all| all.iter().find(|q| q["name"] == queue))
        .and_then(|q| q["arguments"].as_array())
        .map(|triples| {
            // rabbitmqctl lists each argument as [name, type, value].
            triples
                .iter()
                .map(|t| (t[0].as_str().unwrap_or("").to_string(), t[2].clone()))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .unwrap_or_else(|| panic!("no queue {queue}"))
}

#[tokio::test]
async fn an_unreachable_node_is_passed_over_and_a_queue_made_before_leader_placement_is_kept() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    // The main queue as earlier versions made it: quorum, no leader locator.
    let connection = amqp_connect(&amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    let mut arguments = FieldTable::default();
    for (key, value) in [
        (
            "x-queue-type",
            AMQPValue::LongString(LongString::from("quorum")),
        ),
        (
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from(names.dlx.as_str())),
        ),
        ("x-delivery-limit", AMQPValue::LongInt(10)),
    ] {
        arguments.insert(ShortString::from(key), value);
    }
    channel
        .queue_declare(
            ShortString::from(names.queue.as_str()),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await
        .expect("old queue");
    let _ = connection.close(200, ShortString::from("done")).await;

    // The first node of the list does not answer; the daemon goes on to the second.
    let gone = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    let list = format!("{gone},{amqp}");
    let daemon = Daemon::start(
        &db.url,
        &list,
        &names,
        &[("KEYCLOAK_SYNC__AMQP__CONNECT_ORDER", "listed")],
    );
    daemon.wait_ready(Duration::from_secs(30)).await;
    let real = keycloak_sync::config::SecretUrl::new(amqp.as_str()).address();
    let (_, readyz) = daemon.get("/readyz").await.expect("readyz");
    assert!(
        readyz.contains(&format!("\"amqp_node\":\"{real}\"")),
        "{readyz}"
    );
    let (_, metrics) = daemon.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains(&format!("keycloak_sync_amqp_node{{node=\"{real}\"}} 1")),
        "{metrics}"
    );
    assert!(
        daemon
            .log_text()
            .contains("RabbitMQ node unreachable; trying the next"),
        "the unreachable node is reported"
    );
    assert!(
        !daemon.log_text().contains("guest:guest"),
        "credentials logged"
    );

    publish(&amqp, &names.exchange, &[LOGIN.into()]).await;
    let store = db.store().await;
    let arrived = wait_until(Duration::from_secs(20), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == 1
    })
    .await;
    assert!(arrived, "event not applied; log:\n{}", daemon.log_text());
    // The old queue kept as it was; the queues made now have their leaders balanced.
    let old = queue_arguments(&names.queue);
    assert_eq!(old["x-delivery-limit"], 10);
    assert!(old.get("x-queue-leader-locator").is_none(), "{old}");
    assert_eq!(
        queue_arguments(&names.dlq)["x-queue-leader-locator"],
        "balanced"
    );
}

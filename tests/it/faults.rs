//! Infrastructure faults are not the events' fault: a database that refuses writes for a
//! reason of its own (read-only after a failover, …) makes the daemon hold its batch and
//! report not ready, and the commands stop naming the fault; no event is refused.

use std::process::Command;
use std::time::Duration;

use keycloak_sync::store::ApplyError;
use sqlx::{Connection, PgConnection};

use crate::support::*;

const REGISTER: &str = r#"{"schema":1,"kind":"user","id":"reg-1","time":1000,"realmId":"r","realmName":"acme","type":"REGISTER","userId":"u1","details":{"username":"alice","email":"alice@example.com"}}"#;
const LOGIN: &str = r#"{"schema":1,"kind":"user","id":"login-1","time":2000,"realmId":"r","realmName":"acme","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"s1","details":{"username":"alice"}}"#;

#[tokio::test]
async fn a_read_only_database_refuses_no_event() {
    let db = TestDb::new().await;
    let store = db.store().await.with_retry_max(Duration::from_millis(1500));
    set_read_only(&admin_url(), &db.name, true).await;
    let events = [event(REGISTER), event(LOGIN)];
    match store.apply_isolating(&events).await {
        Err(error @ ApplyError::Unavailable(_)) => {
            assert!(error.to_string().contains("read-only"), "{error}");
        }
        other => panic!("a read-only database must hold the batch, got {other:?}"),
    }
    set_read_only(&admin_url(), &db.name, false).await;
    let results = store
        .apply_isolating(&events)
        .await
        .expect("applies once writable");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(user(&store, "u1").await.login_count, 1);
}

#[tokio::test]
async fn replay_stops_naming_the_fault_and_rejects_nothing() {
    let db = TestDb::new().await;
    db.store().await;
    let dir = std::env::temp_dir().join(format!("kcs-faults-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("events.jsonl");
    std::fs::write(&file, format!("{REGISTER}\n{LOGIN}\n")).expect("write");
    let rejects = dir.join("rejects.jsonl");
    set_read_only(&admin_url(), &db.name, true).await;
    let output = Command::new(env!("CARGO_BIN_EXE_keycloak-sync"))
        .arg("replay")
        .arg(&file)
        .arg("--rejects")
        .arg(&rejects)
        .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
        .env("KEYCLOAK_SYNC__DATABASE__RETRY_MAX_SECS", "2")
        .env("KEYCLOAK_SYNC__LOG__LEVEL", "warn")
        .env_remove("RUST_LOG")
        .output()
        .expect("run replay");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("read-only"), "the fault is named: {stderr}");
    let rejected = std::fs::read_to_string(&rejects).unwrap_or_default();
    assert!(rejected.is_empty(), "nothing refused: {rejected}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_daemon_holds_its_batch_while_the_database_is_read_only() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let amqp = amqp_url();
    let names = Names::random();
    let daemon = Daemon::start(&db.url, &amqp, &names, &[]);
    daemon.wait_ready(Duration::from_secs(30)).await;
    set_read_only(&admin_url(), &db.name, true).await;
    publish(&amqp, &names.exchange, &[REGISTER.into(), LOGIN.into()]).await;
    let not_ready = wait_until(Duration::from_secs(20), || async {
        daemon
            .get("/readyz")
            .await
            .is_some_and(|(status, body)| status == 503 && body.contains("read-only"))
    })
    .await;
    assert!(
        not_ready,
        "readyz names the fault; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        queue_depth(&amqp, &names.dlq).await,
        0,
        "nothing dead-lettered"
    );
    set_read_only(&admin_url(), &db.name, false).await;
    let applied = wait_until(Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == 2
    })
    .await;
    assert!(
        applied,
        "applied once writable; log:\n{}",
        daemon.log_text()
    );
    daemon.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(queue_depth(&amqp, &names.dlq).await, 0);
    assert_eq!(queue_depth(&amqp, &names.queue).await, 0);
}

/// A constraint the database gained refuses what it refuses: one event among others is
/// the event's fault (rejected, the rest applied); every event of a batch refused the
/// same way is the database's (the batch is held, nothing refused).
#[tokio::test]
async fn a_batch_refused_whole_the_same_way_is_the_databases_fault() {
    let db = TestDb::new().await;
    let store = db.store().await.with_retry_max(Duration::from_millis(500));
    sqlx::query("ALTER TABLE users ADD CONSTRAINT no_mallory CHECK (username <> 'mallory')")
        .execute(store.pool())
        .await
        .expect("constraint");
    let register = |id: &str, user: &str, name: &str| {
        event(&format!(
            r#"{{"schema":1,"kind":"user","id":"{id}","time":1000,"realmId":"r","type":"REGISTER","userId":"{user}","details":{{"username":"{name}"}}}}"#
        ))
    };
    let mixed = [register("a", "u1", "mallory"), register("b", "u2", "bob")];
    let results = store
        .apply_isolating(&mixed)
        .await
        .expect("applies the rest");
    assert!(results[0].is_err() && results[1].is_ok(), "{results:?}");

    let all_refused = [
        register("c", "u3", "mallory"),
        register("d", "u4", "mallory"),
    ];
    match store.apply_isolating(&all_refused).await {
        Err(ApplyError::Unavailable(_)) => {}
        other => panic!("every event refused alike holds the batch, got {other:?}"),
    }
}

/// A transaction that holds the inbox exclusively: every batch waits on it until the
/// returned connection rolls back.
async fn hold_the_inbox(db: &TestDb) -> PgConnection {
    let mut holder = PgConnection::connect(&db.url).await.expect("connect");
    sqlx::raw_sql("BEGIN; LOCK TABLE keycloak_sync.processed_events IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .await
        .expect("lock");
    holder
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), counted after the name (field 2) ends.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    ticks(11) + ticks(12)
}

/// While every worker waits on the database (a lock holds its batch), the next batch
/// waits for a worker without turning the loop: the daemon uses next to no CPU.
#[tokio::test]
async fn the_consumer_idles_while_every_worker_waits_on_the_database() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let amqp = amqp_url();
    let names = Names::random();
    let daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[
            ("KEYCLOAK_SYNC__AMQP__WORKERS", "1"),
            ("KEYCLOAK_SYNC__AMQP__BATCH_SIZE", "10"),
            ("KEYCLOAK_SYNC__AMQP__BATCH_MAX_WAIT_MS", "20"),
        ],
    );
    daemon.wait_ready(Duration::from_secs(30)).await;
    let mut holder = hold_the_inbox(&db).await;
    let bodies: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            format!(
                r#"{{"schema":1,"kind":"user","id":"l{i}","time":{},"realmId":"r","type":"LOGIN","userId":"u{i}","sessionId":"s{i}"}}"#,
                1000 + i
            )
            .into_bytes()
        })
        .collect();
    publish(&amqp, &names.exchange, &bodies).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = cpu_ticks(daemon.pid());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let used = cpu_ticks(daemon.pid()) - before;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlock");
    // 100 ticks a second: a loop that spins uses about 500 in 5 s.
    assert!(
        used < 50,
        "the daemon used {used} ticks of CPU in 5 s while waiting"
    );
    let applied = wait_until(Duration::from_secs(30), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == 30
    })
    .await;
    assert!(
        applied,
        "all applied once the lock went; log:\n{}",
        daemon.log_text()
    );
}

/// RabbitMQ dead-letters by itself a message redelivered more than
/// `amqp.delivery_limit` times (here: token messages held while the daemon was killed
/// twice). Such copies reach the dead-letter queue only through the daemon, redacted,
/// with the reason `delivery_limit`.
#[tokio::test]
async fn tokens_the_broker_dead_letters_reach_the_dlq_redacted() {
    use base64::Engine;
    let db = TestDb::new().await;
    let store = db.store().await;
    let amqp = amqp_url();
    let names = Names::random();
    let keys = format!(
        "k1:{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let env = [
        ("KEYCLOAK_SYNC__VAULT__KEYS", keys.as_str()),
        ("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k1"),
        ("KEYCLOAK_SYNC__AMQP__DELIVERY_LIMIT", "1"),
    ];
    let mut daemon = Daemon::start(&db.url, &amqp, &names, &env);
    daemon.wait_ready(Duration::from_secs(30)).await;
    // Every batch waits on this lock: the tokens stay delivered and unacknowledged.
    let mut holder = hold_the_inbox(&db).await;
    let tokens: Vec<Vec<u8>> = (1..=3)
        .map(|i| {
            format!(
                r#"{{"schema":1,"kind":"token","id":"t{i}","time":1000,"realmId":"r","userId":"u{i}","sessionId":"s{i}","clientId":"web","tokenType":"refresh","token":"SECRET-DL-{i}"}}"#
            )
            .into_bytes()
        })
        .collect();
    publish(&amqp, &names.exchange, &tokens).await;
    for round in 0..2 {
        let held = wait_until(Duration::from_secs(20), || async {
            queue_depth(&amqp, &names.queue).await == 0
        })
        .await;
        assert!(held, "round {round}: the daemon holds the tokens");
        tokio::time::sleep(Duration::from_millis(300)).await;
        daemon.kill9().await;
        daemon = Daemon::start(&db.url, &amqp, &names, &env);
        daemon.wait_ready(Duration::from_secs(30)).await;
    }
    let forwarded = wait_until(Duration::from_secs(30), || async {
        queue_depth(&amqp, &names.dlq).await == 3
    })
    .await;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlock");
    assert!(
        forwarded,
        "three copies in the DLQ; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        queue_depth(&amqp, &format!("{}.limbo", names.dlq)).await,
        0,
        "nothing left in the internal queue"
    );
    let copies = take_all(&amqp, &names.dlq).await;
    for copy in &copies {
        assert!(
            !copy.body.contains("SECRET-DL"),
            "plaintext token in the DLQ: {}",
            copy.body
        );
        let reason = copy.reason.as_deref().unwrap_or_default();
        assert!(reason.starts_with("delivery_limit"), "{reason}");
    }
    assert_eq!(copies.len(), 3);
    assert_eq!(
        count(&store, "SELECT count(*) FROM auth_vault").await,
        0,
        "the broker gave up on them: nothing stored"
    );
    assert!(!daemon.log_text().contains("SECRET-DL"), "token in the log");
}

/// `amqp.token_publishers` / `amqp.event_publishers`: RabbitMQ checks a message's
/// `user_id` against its connection's user, so the daemon can take tokens only from the
/// applications meant to send them. Tested with a second broker user.
#[tokio::test]
async fn messages_from_the_wrong_publisher_are_dead_lettered_with_the_reason() {
    let node = std::env::var("KCS_RABBITMQ_NODE")
        .unwrap_or_else(|_| "keycloak-sync-56729@localhost".to_string());
    let app_user = format!(
        "kcs-app-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let rabbitmqctl = |args: &[&str]| {
        let status = Command::new("rabbitmqctl")
            .args(["-q", "-n", &node])
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("rabbitmqctl");
        assert!(status.success(), "rabbitmqctl {args:?}");
    };
    rabbitmqctl(&["add_user", &app_user, "app-pass"]);
    rabbitmqctl(&["set_permissions", "-p", "/", &app_user, ".*", ".*", ".*"]);

    let db = TestDb::new().await;
    let store = db.store().await;
    let amqp = amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    let app_amqp = amqp.replacen("guest:guest", &format!("{app_user}:app-pass"), 1);
    // (publisher url, user_id, body)
    let exchange = names.exchange.clone();
    let send = |url: String, user: Option<String>, body: String| {
        let exchange = exchange.clone();
        async move {
            let connection = amqp_connect(&url).await;
            let channel = connection.create_channel().await.expect("channel");
            let mut properties = lapin::BasicProperties::default().with_delivery_mode(2);
            if let Some(user) = user {
                properties = properties.with_user_id(lapin::types::ShortString::from(user));
            }
            channel
                .basic_publish(
                    lapin::types::ShortString::from(exchange.as_str()),
                    lapin::types::ShortString::from("kc.acme.any"),
                    lapin::options::BasicPublishOptions::default(),
                    body.as_bytes(),
                    properties,
                )
                .await
                .expect("publish");
            let _ = connection
                .close(200, lapin::types::ShortString::from("done"))
                .await;
        }
    };
    let login = |id: &str| {
        format!(
            r#"{{"schema":1,"kind":"user","id":"{id}","time":1000,"realmId":"r","type":"LOGIN","userId":"u-{id}","sessionId":"s-{id}"}}"#
        )
    };
    let token = r#"{"schema":1,"kind":"token","id":"tk","time":1000,"realmId":"r","userId":"u1","tokenType":"refresh","token":"SECRET-PUB-1"}"#;
    // Keycloak's provider logs in as guest; only the application may send tokens.
    send(amqp.clone(), Some("guest".into()), login("from-keycloak")).await;
    send(app_amqp.clone(), Some(app_user.clone()), login("from-app")).await;
    send(amqp.clone(), None, login("anonymous")).await;
    send(amqp.clone(), Some("guest".into()), token.to_string()).await;
    let daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[
            ("KEYCLOAK_SYNC__AMQP__EVENT_PUBLISHERS", "guest"),
            ("KEYCLOAK_SYNC__AMQP__TOKEN_PUBLISHERS", app_user.as_str()),
        ],
    );
    let settled = wait_until(Duration::from_secs(30), || async {
        queue_depth(&amqp, &names.dlq).await == 3
            && count(&store, "SELECT count(*) FROM processed_events").await == 1
    })
    .await;
    rabbitmqctl(&["delete_user", &app_user]);
    assert!(
        settled,
        "one applied, three dead-lettered; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM users WHERE id = 'u-from-keycloak'"
        )
        .await,
        1
    );
    let mut reasons: Vec<String> = take_all(&amqp, &names.dlq)
        .await
        .into_iter()
        .map(|copy| copy.reason.unwrap_or_default())
        .collect();
    reasons.sort();
    let mut expected = vec![
        format!("published by broker user {app_user:?}, not among amqp.event_publishers"),
        "published by broker user \"guest\", not among amqp.token_publishers".to_string(),
        "published by a connection that set no user_id, not among amqp.event_publishers"
            .to_string(),
    ];
    expected.sort();
    assert_eq!(reasons, expected);
}

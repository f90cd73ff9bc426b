//! Outages: RabbitMQ and Postgres going away and coming back while events flow. These
//! run against private servers started for the test, so stopping them disturbs nothing
//! else.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use keycloak_sync::core::sample::{history, SampleOptions};

use crate::support::*;

struct PrivateServers {
    dir: PathBuf,
    pg_port: u16,
    amqp_port: u16,
}

fn free_port_with_neighbours() -> u16 {
    // RabbitMQ also takes port+1 (management) and port+1000 (distribution).
    loop {
        let port = 20_000 + (rand::random::<u16>() % 9_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 1) && free(port + 1000) {
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
            pg_port: free_port_with_neighbours(),
            amqp_port: free_port_with_neighbours(),
        };
        assert!(servers.script("up"), "private servers did not start");
        servers
    }

    fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.pg_port)
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

#[tokio::test]
async fn broker_and_database_restarts_mid_stream_lose_nothing() {
    let servers = PrivateServers::start();
    let db = TestDb::on(&servers.admin_url()).await;
    let amqp = servers.amqp_url();
    let names = Names::random();
    declare(&amqp, &names).await;
    let daemon = Daemon::start(
        &db.url,
        &amqp,
        &names,
        &[("KEYCLOAK_SYNC__AMQP__BATCH_SIZE", "50")],
    );
    daemon.wait_ready(Duration::from_secs(60)).await;

    let bodies: Vec<Vec<u8>> = history(SampleOptions {
        events: 8_000,
        users: 300,
        seed: 77,
        ..SampleOptions::default()
    })
    .map(String::into_bytes)
    .collect();
    let publisher = tokio::spawn(publish_through_outages(
        amqp.clone(),
        names.exchange.clone(),
        bodies.clone(),
    ));
    let store = db.store().await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            count(&store, "SELECT count(*) FROM processed_events").await > 500
        })
        .await
    );

    readiness_goes_down_and_back(
        &daemon,
        || assert!(servers.script("stop-rabbitmq")),
        || {
            std::thread::sleep(Duration::from_secs(2));
            assert!(servers.script("start-rabbitmq"));
        },
    )
    .await;
    readiness_goes_down_and_back(
        &daemon,
        || assert!(servers.script("stop-postgres")),
        || {
            std::thread::sleep(Duration::from_secs(2));
            assert!(servers.script("start-postgres"));
        },
    )
    .await;

    publisher.await.expect("publisher");
    let total = bodies.len() as i64;
    let store = db.store().await;
    let done = wait_until(Duration::from_secs(120), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == total
            && queue_depth(&amqp, &names.queue).await == 0
    })
    .await;
    assert!(
        done,
        "not every event was applied; log:\n{}",
        daemon.log_text()
    );
    assert_eq!(
        full_rows(&store).await,
        rows_of_clean_replay(&servers.admin_url(), &bodies).await,
        "rows differ from a single clean replay"
    );
    let (_, metrics) = daemon.get("/metrics").await.expect("metrics");
    assert!(
        metrics.contains("keycloak_sync_reconnects_total{target=\"amqp\"}"),
        "reconnects not counted"
    );
    drop(db);
}

//! The product on a real three-node RabbitMQ cluster (`scripts/services.sh cluster up`):
//! the Java provider publishes a long history to one node while two daemon replicas
//! consume through the other two; the quorum queue's leader node is stopped, then the
//! node a replica is attached to. Nothing is lost, nothing valid refused, no replica is
//! left stuck.

use std::process::Command;
use std::time::Duration;

use keycloak_sync::core::event::parse_message;

use crate::convergence::*;
use crate::spi::java_classpath;
use crate::support::*;

/// The cluster `scripts/services.sh cluster env` describes.
struct Cluster {
    urls: Vec<String>,
    nodes: Vec<String>,
}

impl Cluster {
    fn from_env() -> Cluster {
        let list = |name: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_else(|_| {
                    panic!("{name} is not set: start the cluster with `scripts/services.sh cluster up` and eval `scripts/services.sh cluster env`")
                })
                .split(',')
                .map(str::to_string)
                .collect()
        };
        let cluster = Cluster {
            urls: list("KCS_TEST_CLUSTER_URLS"),
            nodes: list("KCS_TEST_CLUSTER_NODES"),
        };
        assert_eq!(cluster.urls.len(), 3, "a three-node cluster");
        cluster
    }

    fn script(&self, action: &str, node: usize) {
        let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh"))
            .args(["cluster", action, &(node + 1).to_string()])
            .status()
            .expect("services.sh");
        assert!(status.success(), "cluster {action} {}", node + 1);
    }

    fn stop(&self, node: usize) {
        self.script("stop-node", node);
    }

    fn start(&self, node: usize) {
        self.script("start-node", node);
    }

    /// `host:port` of node `node`, as the daemon reports the node it is attached to.
    fn address(&self, node: usize) -> String {
        keycloak_sync::config::SecretUrl::new(self.urls[node].as_str()).address()
    }

    fn node_at(&self, address: &str) -> usize {
        (0..3)
            .find(|&n| self.address(n) == address)
            .unwrap_or_else(|| panic!("{address} is not a node of the cluster"))
    }

    /// The URL list starting at node `first`: a replica that prefers that node.
    fn list_from(&self, first: usize) -> String {
        (0..3)
            .map(|step| self.urls[(first + step) % 3].as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node holding the leader of quorum queue `queue`, asked of node `ask`; `None`
    /// while there is none (an election under way) or the node does not answer.
    fn leader_of(&self, queue: &str, ask: usize) -> Option<usize> {
        let output = Command::new("rabbitmqctl")
            .args([
                "-n",
                &self.nodes[ask],
                "-q",
                "list_queues",
                "name",
                "leader",
            ])
            .args(["--formatter", "json"])
            .output()
            .ok()?;
        let queues: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        let leader = queues.as_array()?.iter().find(|q| q["name"] == queue)?["leader"]
            .as_str()?
            .to_string();
        self.nodes.iter().position(|node| *node == leader)
    }
}

/// The node a replica is attached to, from its `/readyz`, once it is ready.
async fn attached_node(daemon: &Daemon, cluster: &Cluster) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let body = loop {
        match daemon.get("/readyz").await {
            Some((200, body)) => break body,
            _ if std::time::Instant::now() > deadline => {
                panic!("replica not ready; log:\n{}", daemon.log_text())
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let readyz: serde_json::Value = serde_json::from_str(&body).expect("readyz JSON");
    cluster.node_at(readyz["amqp_node"].as_str().expect("amqp_node"))
}

/// The history in the provider's spool-line form: `routingKey TAB type TAB id TAB time
/// TAB body`, the form `PublishHistory` reads.
fn spool_lines(bodies: &[Vec<u8>]) -> String {
    let mut lines = String::new();
    for (n, body) in bodies.iter().enumerate() {
        let text = std::str::from_utf8(body).expect("utf8");
        let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let key = match parse_message(body, usize::MAX) {
            Ok(event) => keycloak_sync::amqp::publish::routing_key(body, &event),
            Err(_) => "kc.unknown.invalid".to_string(),
        };
        let kind = key.splitn(3, '.').nth(2).unwrap_or("unknown").to_string();
        let id = json["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("line-{n}"));
        let time = json["time"].as_i64().unwrap_or(0);
        lines.push_str(&format!("{key}\t{kind}\t{id}\t{time}\t{text}\n"));
    }
    lines
}

#[tokio::test]
async fn a_cluster_losing_its_leader_and_a_replicas_node_loses_nothing() {
    let cluster = Cluster::from_env();
    let db = TestDb::new().await;
    let store = db.store().await;
    let names = Names::random();
    declare(&cluster.urls[0], &names).await;
    let env = [
        ("KEYCLOAK_SYNC__AMQP__CONNECT_ORDER", "listed"),
        ("KEYCLOAK_SYNC__AMQP__BATCH_SIZE", "50"),
        ("KEYCLOAK_SYNC__VAULT__KEYS", VAULT_KEYS),
        ("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k1"),
    ];
    let replicas = [
        Daemon::start(&db.url, &cluster.list_from(1), &names, &env),
        Daemon::start(&db.url, &cluster.list_from(2), &names, &env),
    ];
    assert_eq!(attached_node(&replicas[0], &cluster).await, 1);
    assert_eq!(attached_node(&replicas[1], &cluster).await, 2);

    let (bodies, poison) = history_with_tokens_and_poison(6_000);
    let file = std::env::temp_dir().join(format!("kcs-cluster-{}.lines", names.queue));
    std::fs::write(&file, spool_lines(&bodies)).expect("history file");
    let addresses = (0..3)
        .map(|n| cluster.address(n))
        .collect::<Vec<_>>()
        .join(",");
    // Through node 1 (its address first), at about 400 messages a second.
    let publisher = tokio::process::Command::new("java")
        .args([
            "-cp",
            &java_classpath(),
            "io.keycloaksync.spi.PublishHistory",
        ])
        .args([&cluster.urls[0], &addresses, &names.exchange])
        .arg(&file)
        .args(["40", "100"])
        .output();
    let publisher = tokio::spawn(publisher);
    let started = wait_until(Duration::from_secs(60), || async {
        publisher.is_finished() || count(&store, "SELECT count(*) FROM processed_events").await > 0
    })
    .await;
    assert!(
        started && !publisher.is_finished(),
        "the provider did not publish"
    );
    let mut done = progress(&store, 0, 500, &replicas[0], "the start").await;

    // 1. The node holding the queue's leader goes away: a follower takes over, the
    //    replicas (and the publisher, if it was there) carry on through the others.
    let leader = cluster
        .leader_of(&names.queue, 0)
        .expect("the queue has a leader");
    eprintln!(
        "stopping node {} (the queue's leader) after {done} events",
        leader + 1
    );
    cluster.stop(leader);
    let ask = (leader + 1) % 3;
    let mut new_leader = None;
    for _ in 0..300 {
        new_leader = cluster
            .leader_of(&names.queue, ask)
            .filter(|&n| n != leader);
        if new_leader.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved = new_leader.is_some();
    assert!(moved, "no new leader after node {} stopped", leader + 1);
    done = progress(&store, done, 300, &replicas[0], "losing the leader's node").await;
    eprintln!("new leader: node {}", new_leader.map_or(0, |n| n + 1));
    cluster.start(leader);

    // 2. The node the first replica is attached to goes away: it moves to another node.
    let attached = attached_node(&replicas[0], &cluster).await;
    eprintln!(
        "stopping node {} (the first replica's) after {done} events",
        attached + 1
    );
    let lost_at = std::time::Instant::now();
    cluster.stop(attached);
    let moved = wait_until(Duration::from_secs(60), || async {
        matches!(replicas[0].get("/readyz").await, Some((200, body))
            if !body.contains(&cluster.address(attached)))
    })
    .await;
    assert!(
        moved,
        "replica did not move off node {}; log:\n{}",
        attached + 1,
        replicas[0].log_text()
    );
    eprintln!("the first replica moved off it in {:?}", lost_at.elapsed());
    progress(&store, done, 300, &replicas[0], "losing the replica's node").await;
    cluster.start(attached);

    let published = publisher.await.expect("join").expect("run java");
    let stdout = String::from_utf8_lossy(&published.stdout);
    assert!(
        published.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let (expected_rows, expected_processed) = clean_replay(&admin_url(), &bodies, &poison).await;
    let settled = wait_until(Duration::from_secs(180), || async {
        count(&store, "SELECT count(*) FROM processed_events").await == expected_processed
            && queue_depth(&cluster.urls[0], &names.queue).await == 0
    })
    .await;
    assert!(
        settled,
        "not every event was applied ({stdout}); logs:\n{}\n---\n{}",
        replicas[0].log_text(),
        replicas[1].log_text()
    );
    assert_rows_equal(&store, &expected_rows).await;
    assert_dead_letters_are_the_poison(&cluster.urls[0], &names.dlq).await;
    for replica in &replicas {
        attached_node(replica, &cluster).await;
        let (_, metrics) = replica.get("/metrics").await.expect("metrics");
        assert!(
            metrics.contains("keycloak_sync_amqp_node{node=\"127.0.0.1:"),
            "the attached node is a metric"
        );
        assert!(!replica.log_text().contains("SECRET-"), "token in the log");
    }
    let _ = std::fs::remove_file(&file);
}

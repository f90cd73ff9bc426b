//! The outbox against the real Keycloak: logins and admin operations run in parallel while
//! Keycloak is SIGKILLed and restarted, again and again; the broker is cut off with events
//! in the outbox and Keycloak restarted before it returns; two Keycloak nodes share one
//! database and one outbox, and one of them is killed. Keycloak's own event store (written
//! in the same transaction as the change) says what committed: every LOGIN it holds reaches
//! the tables exactly once, every login it answered is a session row, each user's events
//! reach the queue in the order they committed, and the outbox is empty afterwards. Each
//! drill runs on Keycloak instances of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;

use crate::instance::{grant, outbox_depth, Instance};
use crate::kc::Realm;
use crate::support::{amqp_url, count, user, wait_until};
use crate::World;

const USERS: usize = 4;

/// Logins of every user, round robin over the nodes, and user creations, until stopped;
/// what Keycloak answered with success is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    /// Username → the session ids of its answered logins.
    answered: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    /// Ids of users created with a 201.
    created: Arc<Mutex<Vec<String>>>,
}

impl Load {
    fn start(nodes: Vec<Arc<Realm>>, usernames: &[String]) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(Mutex::new(BTreeMap::new()));
        let created = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (n, name) in usernames.iter().enumerate() {
            let (stop, answered, nodes, name) =
                (stop.clone(), answered.clone(), nodes.clone(), name.clone());
            tasks.push(tokio::spawn(async move {
                let mut turn = n;
                while !stop.load(Ordering::Relaxed) {
                    turn += 1;
                    match nodes[turn % nodes.len()].attempt_login(&name).await {
                        Some(session) => answered
                            .lock()
                            .expect("answered")
                            .entry(name.clone())
                            .or_insert_with(Vec::new)
                            .push(session),
                        None => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            }));
        }
        let (task_stop, task_created) = (stop.clone(), created.clone());
        tasks.push(tokio::spawn(async move {
            let mut made = 0usize;
            while !task_stop.load(Ordering::Relaxed) {
                made += 1;
                let node = &nodes[made % nodes.len()];
                match node.attempt_create_user(&format!("made-{made}")).await {
                    Some(id) => task_created.lock().expect("created").push(id),
                    None => tokio::time::sleep(Duration::from_millis(200)).await,
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        Load {
            stop,
            tasks,
            answered,
            created,
        }
    }

    async fn stop(self) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
        let answered = self.answered.lock().expect("answered").clone();
        let created = self.created.lock().expect("created").clone();
        (answered, created)
    }
}

/// `USERS` users with passwords, username → id.
async fn users(realm: &Realm) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for n in 0..USERS {
        let name = format!("user-{n}");
        let id = realm
            .create_user(&name, &format!("{name}@example.com"))
            .await;
        ids.insert(name, id);
    }
    ids
}

/// What the drill must end with: the tables say what Keycloak's event store says, nothing
/// lost and nothing twice; each user's events reached the queue in commit order; the
/// outbox is empty. Returns how many events reached the queue more than once.
async fn nothing_lost(
    world: &World,
    ids: &BTreeMap<String, String>,
    answered: &BTreeMap<String, Vec<String>>,
    created: &[String],
    database: &str,
) -> usize {
    let realm = &world.realm;
    for (name, id) in ids {
        let said = answered.get(name).map(Vec::len).unwrap_or(0);
        let settled = wait_until(crate::SETTLE, || async {
            let stored = realm.stored_events("LOGIN", id).await;
            stored >= said && user(&world.store, id).await.login_count == stored as i64
        })
        .await;
        let stored = realm.stored_events("LOGIN", id).await;
        assert!(
            settled,
            "{name}: Keycloak answered {said} logins and stored {stored} LOGIN events; the table counts {}\n{}",
            user(&world.store, id).await.login_count,
            world.daemon.log_text()
        );
    }
    let sessions: Vec<String> = answered.values().flatten().cloned().collect();
    assert_eq!(
        rows_with_ids(world, "user_sessions", &sessions).await,
        sessions.len(),
        "every answered login is a session row"
    );
    assert_eq!(
        rows_with_ids(world, "users", created).await,
        created.len(),
        "every user created with a 201 is a row"
    );

    assert!(
        wait_until(Duration::from_secs(30), || async {
            outbox_depth(database, "kc.%").await == 0
        })
        .await,
        "the outbox of {database} is empty after a quiet while"
    );
    in_commit_order(world, ids).await
}

/// How many rows of `table` have one of `ids`.
async fn rows_with_ids(world: &World, table: &str, ids: &[String]) -> usize {
    let sql = format!("SELECT count(*) FROM {table} WHERE id = ANY($1)");
    let rows: i64 = sqlx::query_scalar(&sql)
        .bind(ids)
        .fetch_one(world.store.pool())
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    rows as usize
}

/// Each user's LOGIN events on the queue (first copies) carry non-decreasing times: the
/// order they committed in, one login after the other. Returns the number of copies.
async fn in_commit_order(world: &World, ids: &BTreeMap<String, String>) -> usize {
    let messages = crate::fixtures::drain(&amqp_url(), &world.names.queue).await;
    let mut seen = HashSet::new();
    let mut copies = 0;
    let mut last: HashMap<String, i64> = HashMap::new();
    for message in &messages {
        let id = message["id"].as_str().unwrap_or_default().to_string();
        if !seen.insert(id) {
            copies += 1;
            continue;
        }
        if message["type"] != json!("LOGIN") {
            continue;
        }
        let user = message["userId"].as_str().unwrap_or_default().to_string();
        let time = message["time"].as_i64().unwrap_or_default();
        if let Some(before) = last.insert(user.clone(), time) {
            assert!(
                before <= time,
                "user {user}: a LOGIN of {time} reached the queue after one of {before}"
            );
        }
    }
    let users: HashSet<&String> = ids.values().collect();
    assert!(
        users.iter().all(|id| last.contains_key(*id)),
        "the tap holds every user's logins: {} messages",
        messages.len()
    );
    copies
}

#[tokio::test]
async fn keycloak_killed_again_and_again_loses_no_event_and_doubles_none() {
    let keycloak = Arc::new(
        Instance::new(30280)
            .broker_user("kcs-e2e-outbox")
            .args(&std::env::var("KCS_E2E_OUTBOX_ARGS").unwrap_or_default()),
    );
    keycloak.run_async("up").await;
    let world = World::on(&keycloak.url(), json!({}), &[]).await;
    let ids = users(&world.realm).await;
    let realm = Arc::new(world.realm.through(&keycloak.url()));
    let load = Load::start(
        vec![realm.clone()],
        &ids.keys().cloned().collect::<Vec<_>>(),
    );
    let mut last_kill = tokio::time::Instant::now();
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_secs(4)).await;
        keycloak.run_async("kill").await;
        last_kill = tokio::time::Instant::now();
        eprintln!("drill: Keycloak killed ({round})");
        keycloak.run_async("up").await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (answered, created) = load.stop().await;
    let logins: usize = answered.values().map(Vec::len).sum();
    eprintln!(
        "drill: {logins} logins and {} creations answered",
        created.len()
    );
    assert!(logins > 40, "the load ran: {logins} logins");
    let database = keycloak.database_name();
    let copies = nothing_lost(&world, &ids, &answered, &created, &database).await;
    eprintln!("drill: {copies} events reached the queue twice");

    // The broker cut off: the events wait in the outbox, through a graceful restart too.
    let alice = ids["user-0"].clone();
    let before = user(&world.store, &alice).await.login_count;
    grant("kcs-e2e-outbox", false);
    for _ in 0..10 {
        assert!(
            realm.attempt_login("user-0").await.is_some(),
            "logins go on"
        );
    }
    assert!(
        outbox_depth(&database, "kc.%").await >= 10,
        "the outbox holds the logins"
    );
    keycloak.run_async("down").await;
    assert!(
        outbox_depth(&database, "kc.%").await >= 10,
        "the outbox outlives the restart"
    );
    keycloak.run_async("up").await;
    grant("kcs-e2e-outbox", true);
    assert!(
        wait_until(crate::SETTLE, || async {
            user(&world.store, &alice).await.login_count == before + 10
        })
        .await,
        "the ten logins of the outage arrived once: {:?}",
        user(&world.store, &alice).await
    );
    assert!(
        wait_until(Duration::from_secs(30), || async {
            outbox_depth(&database, "kc.%").await == 0
        })
        .await,
        "the outbox drained"
    );
    // Keycloak writes sessions behind the request: one created just before a SIGKILL can be
    // gone after the restart although its LOGIN committed (its event store holds it). No
    // event says so; reconcile compares sessions with Keycloak's and closes it (those older
    // than its minute of grace for events still on their way).
    tokio::time::sleep_until(last_kill + Duration::from_secs(62)).await;
    let output = crate::admin_api::command(&world, &["reconcile", "--sessions", "all"]).await;
    assert!(
        output.status.success(),
        "reconcile: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    world.settle("after the drill and a reconcile").await;

    // An outbox row that cannot be written fails the change with it: never a committed
    // change without its event.
    crate::instance::refuse_outbox_writes(&database, true).await;
    let user_1 = ids["user-1"].clone();
    let refused = world
        .realm
        .admin(
            reqwest::Method::PUT,
            &format!("/users/{user_1}"),
            Some(json!({"firstName": "Refused"})),
        )
        .await;
    let login = realm.attempt_login("user-1").await;
    crate::instance::refuse_outbox_writes(&database, false).await;
    assert!(
        !refused.status.is_success(),
        "the update fails with its outbox row (Keycloak answers 400 \"Could not update user!\"): {} {}",
        refused.status,
        refused.body
    );
    assert!(login.is_none(), "so does a login");
    let kept = world
        .realm
        .admin(reqwest::Method::GET, &format!("/users/{user_1}"), None)
        .await
        .ok("read user-1");
    assert_ne!(
        kept["firstName"],
        json!("Refused"),
        "the update did not commit"
    );
    world.settle("after the refused writes").await;
    world.realm.delete().await;
}

#[tokio::test]
async fn two_nodes_share_one_outbox_and_one_of_them_is_killed() {
    let version = std::env::var("KCS_KEYCLOAK_VERSION").unwrap_or_else(|_| "26.7.3".into());
    let shared = format!("keycloak_{}_pair", version.replace('.', "_"));
    let first = Arc::new(Instance::new(30480).database(&shared));
    let second = Arc::new(Instance::new(30580).database(&shared));
    // One after the other: the first creates the schema.
    first.run_async("up").await;
    second.run_async("up").await;
    let world = World::on(&first.url(), json!({}), &[]).await;
    let ids = users(&world.realm).await;
    let nodes = vec![
        Arc::new(world.realm.through(&first.url())),
        Arc::new(world.realm.through(&second.url())),
    ];
    let load = Load::start(nodes, &ids.keys().cloned().collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_secs(8)).await;
    second.run_async("kill").await;
    eprintln!("drill: the second node killed");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let (answered, created) = load.stop().await;
    let logins: usize = answered.values().map(Vec::len).sum();
    eprintln!(
        "drill: {logins} logins and {} creations answered",
        created.len()
    );
    let copies = nothing_lost(&world, &ids, &answered, &created, &shared).await;
    eprintln!("drill: {copies} events reached the queue twice");
    // The survivor relays now (the claim row names the last node that relayed).
    world.realm.create_user("after", "after@example.com").await;
    assert!(
        wait_until(crate::SETTLE, || async {
            count(
                &world.store,
                "SELECT count(*) FROM users WHERE username = 'after'",
            )
            .await
                == 1
        })
        .await,
        "a change after the kill arrives"
    );
    let pid = first.jvm_pid();
    let owner = crate::instance::relay_owner(&shared).await;
    assert!(
        owner.ends_with(&format!("/{pid}")),
        "the surviving node (JVM {pid}) holds the relay: {owner}"
    );
    world.realm.delete().await;
}

/// Error events (Keycloak sends them in a transaction of their own) and the brute-force
/// protector's lockout (its own session, off the request) go through the outbox of the
/// shared Keycloak like any other.
#[tokio::test]
async fn error_events_and_the_brute_force_lockout_arrive() {
    let world = World::with(
        json!({"bruteForceProtected": true, "permanentLockout": true, "failureFactor": 2}),
        &[],
    )
    .await;
    let realm = &world.realm;
    let mallory = realm.create_user("mallory", "mallory@example.com").await;
    for _ in 0..2 {
        let answer = realm.try_login("web", "mallory", "wrong", false).await;
        // 401 on Keycloak 26.4, 400 invalid_grant since.
        assert!(answer.status.is_client_error(), "{}", answer.body);
    }
    let locked = wait_until(crate::SETTLE, || async {
        let row = user(&world.store, &mallory).await;
        row.login_error_count == 2 && row.enabled == Some(false)
    })
    .await;
    assert!(
        locked,
        "two LOGIN_ERRORs and the lockout arrived: {:?}",
        user(&world.store, &mallory).await
    );
    assert_eq!(
        count(
            &world.store,
            "SELECT count(*) FROM processed_events WHERE type = 'USER_DISABLED_BY_PERMANENT_LOCKOUT'"
        )
        .await,
        1
    );
    world.settle("after the lockout").await;
    realm.delete().await;
}

/// On Keycloak's embedded file database (H2) the outbox is created and relayed too: with the
/// broker cut off, a login waits in the outbox (the spool stays empty; Keycloak's metrics
/// endpoint counts it) and arrives once the broker is back.
#[tokio::test]
async fn the_outbox_works_on_the_dev_file_database() {
    let keycloak = Arc::new(
        Instance::new(30680)
            .dev_file()
            .broker_user("kcs-e2e-dev-file"),
    );
    keycloak.run_async("up").await;
    let world = World::on(&keycloak.url(), json!({}), &[]).await;
    let alice = world.realm.create_user("alice", "alice@example.com").await;
    world.realm.login("web", "alice", false).await;
    assert!(
        wait_until(crate::SETTLE, || async {
            user(&world.store, &alice).await.login_count == 1
        })
        .await,
        "the first login arrived"
    );
    grant("kcs-e2e-dev-file", false);
    world.realm.login("web", "alice", false).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        user(&world.store, &alice).await.login_count,
        1,
        "the broker is away"
    );
    assert_eq!(
        crate::instance::spooled_bytes(keycloak.port),
        0,
        "the event waits in the outbox, not the spool"
    );
    // Keycloak's own metrics endpoint shows the waiting row (measured every 5 s).
    let management = format!("http://127.0.0.1:{}/metrics", keycloak.port + 1000);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            metric(&management, "keycloak_sync_outbox_depth").await >= 1.0
        })
        .await,
        "keycloak_sync_outbox_depth counts the waiting row"
    );
    let relayed = metric(&management, "keycloak_sync_outbox_relayed_total").await;
    grant("kcs-e2e-dev-file", true);
    assert!(
        wait_until(crate::SETTLE, || async {
            user(&world.store, &alice).await.login_count == 2
        })
        .await,
        "the second login arrived from the outbox"
    );
    assert!(
        metric(&management, "keycloak_sync_outbox_relayed_total").await > relayed,
        "keycloak_sync_outbox_relayed_total counts it"
    );
    assert!(
        wait_until(Duration::from_secs(20), || async {
            metric(&management, "keycloak_sync_outbox_depth").await == 0.0
        })
        .await,
        "and the depth returns to 0"
    );
    world.realm.delete().await;
}

/// A sample's value on a Prometheus text endpoint (NaN when it is not there).
async fn metric(url: &str, name: &str) -> f64 {
    let text = match reqwest::get(url).await {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => return f64::NAN,
    };
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(f64::NAN)
}

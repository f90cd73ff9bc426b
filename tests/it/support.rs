//! Fresh databases per test, and the rows of the synchronised tables in comparable form.

use std::time::Duration;

use keycloak_sync::config::{DatabaseSettings, SecretUrl};
use keycloak_sync::core::event::{parse_message, Event};
use keycloak_sync::store::{Outcome, Store};
use sqlx::{Connection, PgConnection};

pub fn admin_url() -> String {
    std::env::var("KCS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:54329/postgres".to_string())
}

/// The URL of the database `name` on the server that `url` (to one of its databases, as
/// the variable `named_by` gave it) points at.
pub fn database_url(url: &str, name: &str, named_by: &str) -> String {
    match url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("{named_by} has no database part: {url}"),
    }
}

/// A database created for one test and dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
    admin: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        Self::on(&admin_url()).await
    }

    /// A fresh database on the server `admin` (a URL to its `postgres` database) points at.
    pub async fn on(admin: &str) -> TestDb {
        let admin = admin.to_string();
        let name = format!("kcs_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = retry_connect(&admin).await;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        // Durability is not under test here; speed is welcome.
        sqlx::query(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        ))
        .execute(&mut conn)
        .await
        .expect("tune test database");
        let url = database_url(&admin, &name, "KCS_TEST_DATABASE_URL");
        TestDb { name, url, admin }
    }

    pub fn settings(&self, schema: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretUrl::new(self.url.clone()),
            schema: schema.to_string(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            retry_max: Duration::from_secs(30),
            prepared_statements: true,
        }
    }

    /// A migrated store on `schema` of this database.
    pub async fn store_in(&self, schema: &str) -> Store {
        let store = Store::connect(&self.settings(schema))
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }

    pub async fn store(&self) -> Store {
        self.store_in("keycloak_sync").await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Drop cannot await: a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                });
            }
        })
        .join();
    }
}

/// Waits for a server that may still be starting.
pub async fn retry_connect(url: &str) -> PgConnection {
    let mut last = None;
    for _ in 0..50 {
        match PgConnection::connect(url).await {
            Ok(conn) => return conn,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("Postgres at {url} is not reachable (run scripts/services.sh up): {last:?}");
}

pub fn event(json: &str) -> Event {
    parse_message(json.as_bytes(), 1 << 20).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// An admin event in the provider's envelope, the representation (if any) a JSON string
/// as Keycloak records it.
pub fn admin_envelope(
    id: &str,
    time: i64,
    realm_id: &str,
    resource: &str,
    operation: &str,
    path: &str,
    representation: Option<&str>,
) -> String {
    let mut envelope = serde_json::json!({
        "schema": 1, "kind": "admin", "id": id, "time": time, "realmId": realm_id,
        "resourceType": resource, "operationType": operation, "resourcePath": path,
    });
    if let Some(rep) = representation {
        envelope["representation"] = serde_json::Value::String(rep.to_string());
    }
    envelope.to_string()
}

pub async fn apply(store: &Store, events: &[Event]) -> Vec<Outcome> {
    store.apply(events).await.expect("apply")
}

/// A `users` row with times as epoch ms.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub realm_id: String,
    pub username: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_verified: Option<bool>,
    pub enabled: Option<bool>,
    pub attributes: Option<serde_json::Value>,
    pub created_at: Option<i64>,
    pub last_login_at: Option<i64>,
    pub login_count: i64,
    pub last_login_error_at: Option<i64>,
    pub login_error_count: i64,
    pub deleted_at: Option<i64>,
}

impl UserRow {
    pub fn new(id: &str) -> Self {
        UserRow {
            id: id.to_string(),
            realm_id: "r".to_string(),
            username: None,
            email: None,
            first_name: None,
            last_name: None,
            email_verified: None,
            enabled: None,
            attributes: None,
            created_at: None,
            last_login_at: None,
            login_count: 0,
            last_login_error_at: None,
            login_error_count: 0,
            deleted_at: None,
        }
    }
}

const MS: &str = "(extract(epoch from {c}) * 1000)::int8 AS {c}";

fn ms(column: &str) -> String {
    MS.replace("{c}", column)
}

pub async fn users(store: &Store) -> Vec<UserRow> {
    let sql = format!(
        "SELECT id, realm_id, username, email, first_name, last_name, email_verified, enabled,
                attributes, {}, {}, login_count, {}, login_error_count, {}
         FROM users ORDER BY id",
        ms("created_at"),
        ms("last_login_at"),
        ms("last_login_error_at"),
        ms("deleted_at")
    );
    sqlx::query_as(&sql)
        .fetch_all(store.pool())
        .await
        .expect("users")
}

pub async fn user(store: &Store, id: &str) -> UserRow {
    users(store)
        .await
        .into_iter()
        .find(|u| u.id == id)
        .unwrap_or_else(|| panic!("no user {id}"))
}

/// A `user_sessions` row with times as epoch ms.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub realm_id: String,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub ip_address: Option<String>,
    pub started_at: i64,
    pub last_refresh_at: Option<i64>,
    pub refresh_count: i64,
    pub ended_at: Option<i64>,
    pub end_reason: Option<String>,
    pub is_active: bool,
}

pub async fn sessions(store: &Store) -> Vec<SessionRow> {
    let sql = format!(
        "SELECT id, realm_id, user_id, client_id, ip_address, {}, {}, refresh_count, {},
                end_reason, is_active
         FROM user_sessions ORDER BY id",
        ms("started_at"),
        ms("last_refresh_at"),
        ms("ended_at")
    );
    sqlx::query_as(&sql)
        .fetch_all(store.pool())
        .await
        .expect("sessions")
}

pub async fn session(store: &Store, id: &str) -> SessionRow {
    sessions(store)
        .await
        .into_iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no session {id}"))
}

/// Every column of both tables (bookkeeping included) except what describes the last write
/// rather than the row (`updated_at`, `change_flags`), as JSON.
pub async fn full_rows(store: &Store) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let users = sqlx::query_scalar(
        "SELECT to_jsonb(u) - 'updated_at' - 'change_flags' FROM users u ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .expect("users");
    let sessions = sqlx::query_scalar("SELECT to_jsonb(s) FROM user_sessions s ORDER BY id")
        .fetch_all(store.pool())
        .await
        .expect("sessions");
    (users, sessions)
}

// ---------------------------------------------------------------------------------------
// RabbitMQ and the daemon as a child process.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Confirmation, ConnectionProperties};

/// Every row of the groups, roles and organizations tables, write times and merge
/// bookkeeping left out, in key order: what two stores fed the same events must share.
pub async fn directory_rows(
    store: &Store,
) -> std::collections::BTreeMap<&'static str, Vec<serde_json::Value>> {
    let tables = [
        ("groups", "id"),
        ("user_groups", "user_id, group_id"),
        ("roles", "id"),
        ("user_roles", "user_id, role_id"),
        ("organizations", "id"),
        ("organization_members", "organization_id, user_id"),
    ];
    let mut rows = std::collections::BTreeMap::new();
    for (table, key) in tables {
        let values: Vec<serde_json::Value> = sqlx::query_scalar(&format!(
            "SELECT to_jsonb(t) - 'updated_at' FROM {table} t ORDER BY {key}"
        ))
        .fetch_all(store.pool())
        .await
        .expect("directory rows");
        rows.insert(table, values);
    }
    rows
}

pub fn amqp_url() -> String {
    std::env::var("KCS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:56729/%2f".to_string())
}

/// Exchange and queue names of one test, so tests never see each other's messages.
#[derive(Debug, Clone)]
pub struct Names {
    pub exchange: String,
    pub queue: String,
    pub dlx: String,
    pub dlq: String,
}

impl Names {
    pub fn random() -> Names {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Names {
            exchange: format!("kcs-test-{id}.events"),
            queue: format!("kcs-test-{id}"),
            dlx: format!("kcs-test-{id}.dlx"),
            dlq: format!("kcs-test-{id}.dlq"),
        }
    }

    pub fn env(&self, amqp: &str) -> Vec<(String, String)> {
        vec![
            ("KEYCLOAK_SYNC__AMQP__URL".into(), amqp.to_string()),
            (
                "KEYCLOAK_SYNC__AMQP__EXCHANGE".into(),
                self.exchange.clone(),
            ),
            ("KEYCLOAK_SYNC__AMQP__QUEUE".into(), self.queue.clone()),
            (
                "KEYCLOAK_SYNC__AMQP__DEAD_LETTER_EXCHANGE".into(),
                self.dlx.clone(),
            ),
            (
                "KEYCLOAK_SYNC__AMQP__DEAD_LETTER_QUEUE".into(),
                self.dlq.clone(),
            ),
        ]
    }
}

/// The transaction-mode PgBouncer of `scripts/services.sh` (`KCS_TEST_PGBOUNCER_TX_URL`),
/// pointed at the test's database.
pub fn through_pooler(db: &TestDb) -> String {
    through("KCS_TEST_PGBOUNCER_TX_URL", 54330, db)
}

/// A pooler's URL (`pooler_env`, else the default port) pointed at the test's database.
pub fn through(pooler_env: &str, default_port: u16, db: &TestDb) -> String {
    let base = std::env::var(pooler_env)
        .unwrap_or_else(|_| format!("postgres://postgres@127.0.0.1:{default_port}/postgres"));
    database_url(&base, &db.name, pooler_env)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `keycloak-sync run` as a child process.
pub struct Daemon {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(db_url: &str, amqp: &str, names: &Names, extra: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("kcs-daemon-{}.log", uuid::Uuid::new_v4().simple()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
        command
            .arg("run")
            .env("KEYCLOAK_SYNC__DATABASE__URL", db_url)
            .env("KEYCLOAK_SYNC__HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("KEYCLOAK_SYNC__LOG__FORMAT", "json")
            .env("KEYCLOAK_SYNC__AMQP__RECONNECT_MAX_SECS", "2")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file);
        for (key, value) in names.env(amqp) {
            command.env(key, value);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        let child = command.spawn().expect("start keycloak-sync run");
        Daemon {
            child: Some(child),
            port,
            log,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Status and body of a GET on the daemon's HTTP port, or None if it does not answer.
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .ok()?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let status = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    }

    pub async fn wait_ready(&self, within: Duration) {
        let ready = wait_until(within, || async {
            matches!(self.get("/readyz").await, Some((200, _)))
        })
        .await;
        assert!(
            ready,
            "daemon not ready within {within:?}; log:\n{}",
            self.log_text()
        );
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status();
        assert!(
            status.map(|s| s.success()).unwrap_or(false),
            "kill -{signal} failed"
        );
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Some(status);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub async fn kill9(&mut self) {
        self.signal("KILL");
        self.wait_exit(Duration::from_secs(10))
            .await
            .expect("killed");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub async fn wait_until<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn amqp_connect(amqp: &str) -> lapin::Connection {
    let mut last = None;
    for _ in 0..50 {
        match lapin::Connection::connect(amqp, ConnectionProperties::default()).await {
            Ok(connection) => return connection,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("RabbitMQ at {amqp} is not reachable (run scripts/services.sh up): {last:?}");
}

/// Publishes each body persistently with confirms, with the routing key the provider
/// would use (or `kc.unknown.invalid` for bodies that do not parse).
pub async fn publish(amqp: &str, exchange: &str, bodies: &[Vec<u8>]) {
    let connection = amqp_connect(amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    for chunk in bodies.chunks(500) {
        let mut confirms = Vec::new();
        for body in chunk {
            confirms.push(
                publish_one(&channel, exchange, body)
                    .await
                    .expect("publish"),
            );
        }
        for confirm in confirms {
            assert!(
                matches!(confirm.await.expect("confirm"), Confirmation::Ack(None)),
                "unroutable or refused"
            );
        }
    }
    let _ = connection.close(200, ShortString::from("done")).await;
}

/// Publishes one body persistently on `channel`, with the routing key the provider would
/// use (or `kc.unknown.invalid` for a body that does not parse).
pub async fn publish_one(
    channel: &lapin::Channel,
    exchange: &str,
    body: &[u8],
) -> lapin::Result<lapin::PublisherConfirm> {
    let key = match parse_message(body, usize::MAX) {
        Ok(event) => keycloak_sync::amqp::publish::routing_key(body, &event),
        Err(_) => "kc.unknown.invalid".to_string(),
    };
    channel
        .basic_publish(
            ShortString::from(exchange),
            ShortString::from(key),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
}

/// Declares the test's topology the way the daemon does, so messages published before
/// the daemon starts are kept.
pub async fn declare(amqp: &str, names: &Names) {
    declare_with(amqp, names, &[]).await
}

/// [`declare`] with more settings (a binding key, say).
pub async fn declare_with(amqp: &str, names: &Names, extra: &[(String, String)]) {
    let settings = keycloak_sync::config::Settings::load_from(
        None,
        Some(
            names
                .env(amqp)
                .into_iter()
                .chain([("KEYCLOAK_SYNC__DATABASE__URL".to_string(), admin_url())])
                .chain(extra.iter().cloned())
                .collect(),
        ),
    )
    .expect("settings");
    let connection = amqp_connect(amqp).await;
    keycloak_sync::amqp::declare_topology(&connection, &settings.amqp)
        .await
        .expect("declare");
    let _ = connection.close(200, ShortString::from("done")).await;
}

/// A copy taken off the dead-letter queue.
pub struct DeadLetter {
    pub body: String,
    pub routing_key: String,
    /// The `x-keycloak-sync-reason` header, if any.
    pub reason: Option<String>,
    /// The `x-original-routing-key` header, if any.
    pub original_routing_key: Option<String>,
}

/// Takes every message off `queue` (acknowledged as read).
pub async fn take_all(amqp: &str, queue: &str) -> Vec<DeadLetter> {
    let connection = amqp_connect(amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(
            ShortString::from(queue),
            lapin::options::BasicGetOptions { no_ack: true },
        )
        .await
        .expect("get")
    {
        let properties = &message.delivery.properties;
        let header = |name| keycloak_sync::amqp::header_text(properties, name);
        taken.push(DeadLetter {
            body: String::from_utf8_lossy(&message.delivery.data).into_owned(),
            routing_key: message.delivery.routing_key.to_string(),
            reason: header(keycloak_sync::amqp::REASON_HEADER),
            original_routing_key: header(keycloak_sync::amqp::ROUTING_KEY_HEADER),
        });
    }
    let _ = connection.close(200, ShortString::from("done")).await;
    taken
}

/// Messages ready in a queue (not counting those delivered and unacknowledged).
pub async fn queue_depth(amqp: &str, queue: &str) -> u32 {
    let connection = amqp_connect(amqp).await;
    let channel = connection.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let depth = channel
        .queue_declare(ShortString::from(queue), passive, FieldTable::default())
        .await
        .expect("queue exists")
        .message_count();
    let _ = connection.close(200, ShortString::from("done")).await;
    depth
}

pub async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .expect("count")
}

/// The rows a clean, single replay of `bodies` leaves in a fresh database on the server
/// `admin` points at: what any delivery history of the same messages must converge to.
pub async fn rows_of_clean_replay(
    admin: &str,
    bodies: &[Vec<u8>],
) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let db = TestDb::on(admin).await;
    let store = db.store().await;
    let events: Vec<Event> = bodies
        .iter()
        .map(|b| event(std::str::from_utf8(b).expect("utf8")))
        .collect();
    for chunk in events.chunks(500) {
        store.apply(chunk).await.expect("reference apply");
    }
    let rows = full_rows(&store).await;
    store.pool().close().await;
    rows
}

/// Makes `database` (on the server `admin` points at) read-only, as a standby is after a
/// failover, or writable again; its open sessions are ended so that every new one sees
/// the change and pools reconnect.
pub async fn set_read_only(admin: &str, database: &str, read_only: bool) {
    let mut conn = PgConnection::connect(admin).await.expect("admin");
    let value = if read_only { "on" } else { "off" };
    sqlx::query(&format!(
        "ALTER DATABASE {database} SET default_transaction_read_only = {value}"
    ))
    .execute(&mut conn)
    .await
    .expect("alter database");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .execute(&mut conn)
    .await
    .expect("terminate sessions");
}

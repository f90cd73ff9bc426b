//! Fresh databases per test, and the rows of the synchronised tables in comparable form.

use std::time::Duration;

use keycloak_sync::config::{DatabaseSettings, SecretUrl};
use keycloak_sync::event::{parse_message, Event};
use keycloak_sync::store::{Outcome, Store};
use sqlx::{Connection, PgConnection};

pub fn admin_url() -> String {
    std::env::var("KCS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:54329/postgres".to_string())
}

/// A database created for one test and dropped when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let admin = admin_url();
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
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("KCS_TEST_DATABASE_URL has no database part: {admin}"),
        };
        TestDb { name, url }
    }

    pub fn settings(&self, schema: &str) -> DatabaseSettings {
        DatabaseSettings {
            url: SecretUrl::new(self.url.clone()),
            schema: schema.to_string(),
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            retry_max: Duration::from_secs(30),
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
        // Drop cannot await: a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async move {
                    if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
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

/// Every column of both tables (bookkeeping included) except the write timestamp, as JSON.
pub async fn full_rows(store: &Store) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let users = sqlx::query_scalar("SELECT to_jsonb(u) - 'updated_at' FROM users u ORDER BY id")
        .fetch_all(store.pool())
        .await
        .expect("users");
    let sessions = sqlx::query_scalar("SELECT to_jsonb(s) FROM user_sessions s ORDER BY id")
        .fetch_all(store.pool())
        .await
        .expect("sessions");
    (users, sessions)
}

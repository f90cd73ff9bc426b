//! Keycloak instances of a test's own (`scripts/keycloak.sh` on another port), for drills
//! that stop, kill or cut off Keycloak without touching the instance other tests share, and
//! the broker users that let a drill cut one instance off RabbitMQ.

use std::process::Command;

/// One more Keycloak: its own port (and management port + 1000), distribution, spool and
/// log; its own database unless `database` names one to share. The drills' ports lie below
/// Linux's ephemeral range (32768–60999): there, a client connection of a parallel test
/// could hold the port when the instance starts.
pub struct Instance {
    pub port: u16,
    database: Option<String>,
    dev_file: bool,
    broker_user: Option<&'static str>,
    extra_args: String,
}

impl Instance {
    pub fn new(port: u16) -> Instance {
        Instance {
            port,
            database: None,
            dev_file: false,
            broker_user: None,
            extra_args: String::new(),
        }
    }

    /// Shares the database `name` with every instance naming it (the nodes of a cluster).
    pub fn database(mut self, name: &str) -> Instance {
        self.database = Some(name.to_string());
        self
    }

    /// On Keycloak's embedded file database (H2) instead of Postgres.
    pub fn dev_file(mut self) -> Instance {
        self.dev_file = true;
        self
    }

    /// Publishes as `user` (password `drill`), whom [`grant`] can cut off.
    pub fn broker_user(mut self, user: &'static str) -> Instance {
        ensure_broker_user(user);
        grant(user, true);
        self.broker_user = Some(user);
        self
    }

    /// Server options added to `kc.sh start` (space-separated).
    pub fn args(mut self, args: &str) -> Instance {
        self.extra_args = args.to_string();
        self
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The name of the database it runs on, as `scripts/keycloak.sh` chooses it.
    pub fn database_name(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| Self::database_name_of(self.port))
    }

    /// The database of the instance on `port` that names none to share.
    pub fn database_name_of(port: u16) -> String {
        let version = std::env::var("KCS_KEYCLOAK_VERSION").unwrap_or_else(|_| "26.7.3".into());
        format!("keycloak_{}_{port}", version.replace('.', "_"))
    }

    /// The pid of the instance's JVM: `kc.sh` (whose pid `scripts/keycloak.sh` keeps) runs it
    /// as a child, or, after a build at start, execs it (the same pid).
    pub fn jvm_pid(&self) -> u32 {
        let script = std::fs::read_to_string(format!(
            "{}/.local/keycloak/run-{}/pid",
            env!("CARGO_MANIFEST_DIR"),
            self.port
        ))
        .expect("the instance's pid file");
        let marker = format!("-Dkc.script.pid={}", script.trim());
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|line| line.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
                    .unwrap_or(false)
            })
            .expect("the instance's JVM")
    }

    /// `scripts/keycloak.sh <command>` for this instance (up, down, kill).
    pub fn run(&self, command: &str) {
        let mut script = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/keycloak.sh"));
        script
            .arg(command)
            .env("KCS_KEYCLOAK_PORT", self.port.to_string())
            .env("KCS_KEYCLOAK_EXTRA_ARGS", &self.extra_args);
        if let Some(database) = &self.database {
            script.env("KCS_KEYCLOAK_DB", database);
        }
        if self.dev_file {
            script.env("KCS_KEYCLOAK_DB_KIND", "dev-file");
        }
        if let Some(user) = self.broker_user {
            let amqp =
                crate::support::amqp_url().replace("guest:guest@", &format!("{user}:drill@"));
            script.env("KCS_KEYCLOAK_AMQP_URL", amqp);
        }
        let status = script.status().expect("scripts/keycloak.sh");
        assert!(
            status.success(),
            "scripts/keycloak.sh {command} (port {})",
            self.port
        );
    }

    /// [`Instance::run`] off the async runtime (a start takes tens of seconds).
    pub async fn run_async(self: &std::sync::Arc<Self>, command: &'static str) {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.run(command))
            .await
            .expect("scripts/keycloak.sh");
    }
}

/// Bytes in the spool's segments of the instance on `port` (its `position` file aside).
pub fn spooled_bytes(port: u16) -> u64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!(".local/keycloak/run-{port}/spool"));
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("segment-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Stops the instance however the test ends, and lets its broker user in again.
impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(user) = self.broker_user {
            grant(user, true);
        }
        self.run("down");
    }
}

pub fn rabbitmqctl(args: &[&str]) -> String {
    let node =
        std::env::var("KCS_RABBITMQ_NODE").expect("KCS_RABBITMQ_NODE (scripts/services.sh env)");
    let output = Command::new("rabbitmqctl")
        .args(["-n", &node, "-q"])
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn ensure_broker_user(user: &str) {
    let users = rabbitmqctl(&["list_users"]);
    if !users.lines().any(|l| l.split('\t').next() == Some(user)) {
        rabbitmqctl(&["add_user", user, "drill"]);
    }
}

/// Lets `user` publish, or takes that away and closes the connections it holds.
pub fn grant(user: &str, allowed: bool) {
    if allowed {
        rabbitmqctl(&["set_permissions", "-p", "/", user, ".*", ".*", ".*"]);
        return;
    }
    rabbitmqctl(&["clear_permissions", "-p", "/", user]);
    for line in rabbitmqctl(&["list_connections", "user", "pid"]).lines() {
        if let Some(pid) = line.strip_prefix(&format!("{user}\t")) {
            let _ = Command::new("rabbitmqctl")
                .args([
                    "-n",
                    &std::env::var("KCS_RABBITMQ_NODE").unwrap_or_default(),
                ])
                .args(["close_connection", pid.trim(), "outage drill"])
                .output();
        }
    }
}

async fn keycloak_database(database: &str) -> sqlx::PgConnection {
    let url = crate::support::database_url(
        &crate::support::admin_url(),
        database,
        "KCS_TEST_DATABASE_URL",
    );
    crate::support::retry_connect(&url).await
}

/// The node that relayed the outbox of `database` last (`host/pid`).
pub async fn relay_owner(database: &str) -> String {
    let mut conn = keycloak_database(database).await;
    sqlx::query_scalar::<_, Option<String>>("SELECT owner FROM kcs_outbox_relay")
        .fetch_one(&mut conn)
        .await
        .expect("the relay row")
        .unwrap_or_default()
}

/// Rows in the outbox of the Keycloak database `database` whose routing key is like `like`
/// (`kc.%` for all).
pub async fn outbox_depth(database: &str, like: &str) -> i64 {
    let mut conn = keycloak_database(database).await;
    sqlx::query_scalar("SELECT count(*) FROM kcs_outbox WHERE routing_key LIKE $1")
        .bind(like)
        .fetch_one(&mut conn)
        .await
        .expect("the outbox table")
}

/// Makes every insert into the outbox of `database` fail (a trigger raising an error), or
/// lets them through again.
pub async fn refuse_outbox_writes(database: &str, refuse: bool) {
    let mut conn = keycloak_database(database).await;
    let statements: &[&str] = if refuse {
        &[
            "CREATE OR REPLACE FUNCTION kcs_refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'outbox writes refused by the drill'; END $$",
            "CREATE OR REPLACE TRIGGER kcs_refuse BEFORE INSERT ON kcs_outbox \
             FOR EACH ROW EXECUTE FUNCTION kcs_refuse()",
        ]
    } else {
        &["DROP TRIGGER IF EXISTS kcs_refuse ON kcs_outbox"]
    };
    for statement in statements {
        sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect("outbox trigger");
    }
}

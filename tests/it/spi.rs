//! End to end across languages: the Java provider (keycloak-spi/) publishes a scripted
//! session history to a real RabbitMQ, `keycloak-sync run` consumes it, and the rows are
//! exactly the expected ones. Needs `keycloak-spi/build.sh` to have run (scripts/test.sh
//! runs it first).

use std::time::Duration;

use crate::support::*;

const T0: i64 = 1_732_270_000_000;
const REALM_ID: &str = "0c6f5d2e-realm";

pub fn java_classpath() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/keycloak-spi/target/test-classpath"
    );
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}; build the provider first: keycloak-spi/build.sh"))
        .trim()
        .to_string()
}

#[tokio::test]
async fn the_java_provider_feeds_the_daemon_and_the_rows_are_exactly_right() {
    let db = TestDb::new().await;
    let amqp = amqp_url();
    let names = Names::random();
    let daemon = Daemon::start(&db.url, &amqp, &names, &[]);
    daemon.wait_ready(Duration::from_secs(30)).await;

    let published = tokio::process::Command::new("java")
        .args([
            "-cp",
            &java_classpath(),
            "io.keycloaksync.spi.ScriptedHistory",
            &amqp,
            &names.exchange,
        ])
        .output()
        .await
        .expect("run java");
    let stdout = String::from_utf8_lossy(&published.stdout);
    assert!(
        published.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&published.stderr)
    );
    assert!(stdout.contains("published 6 events"), "{stdout}");

    let store = db.store().await;
    let arrived = wait_until(Duration::from_secs(30), || async {
        count(
            &store,
            "SELECT count(*) FROM processed_events WHERE outcome = 'applied'",
        )
        .await
            == 6
    })
    .await;
    assert!(arrived, "not all six applied; log:\n{}", daemon.log_text());

    let expected_user = UserRow {
        id: "u1".into(),
        realm_id: REALM_ID.into(),
        username: Some("alice".into()),
        email: Some("alice@example.com".into()),
        first_name: Some("Alice".into()),
        last_name: Some("Liddell".into()),
        email_verified: Some(true),
        enabled: Some(true),
        attributes: None,
        created_at: Some(T0),
        last_login_at: Some(T0 + 1_000),
        login_count: 1,
        last_login_error_at: None,
        login_error_count: 0,
        deleted_at: Some(T0 + 5_000),
    };
    assert_eq!(users(&store).await, vec![expected_user]);
    let expected_session = SessionRow {
        id: "s1".into(),
        realm_id: REALM_ID.into(),
        user_id: Some("u1".into()),
        client_id: Some("web-app".into()),
        ip_address: Some("203.0.113.7".into()),
        started_at: T0 + 1_000,
        last_refresh_at: None,
        refresh_count: 0,
        ended_at: Some(T0 + 4_000),
        end_reason: Some("logout".into()),
        is_active: false,
    };
    assert_eq!(sessions(&store).await, vec![expected_session]);
    let kinds: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, type FROM processed_events ORDER BY event_time")
            .fetch_all(store.pool())
            .await
            .expect("inbox");
    let kinds: Vec<String> = kinds.into_iter().map(|(k, t)| format!("{k}.{t}")).collect();
    assert_eq!(
        kinds,
        [
            "user.REGISTER",
            "user.LOGIN",
            "user.UPDATE_PROFILE",
            "admin.USER.UPDATE",
            "user.LOGOUT",
            "admin.USER.DELETE"
        ]
    );
    assert_eq!(
        queue_depth(&amqp, &names.dlq).await,
        0,
        "nothing dead-lettered"
    );
}

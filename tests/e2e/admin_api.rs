//! The Admin API adapters against the real API: `reconcile` (with `--sessions all` and
//! `--directory`) repairing tables that never saw a realm's imported users, `backfill` of
//! the events Keycloak stored (the same events the provider published, so every one is a
//! duplicate), enrichment filling users that only a login named, and the realm's session
//! policy setting `expires_at`.

use std::process::Output;

use reqwest::Method;
use serde_json::json;

use crate::kc::PASSWORD;
use crate::support::{count, session, user};
use crate::World;

/// A user imported with the realm, in the group `/imported` when `grouped`.
fn imported(username: &str, grouped: bool) -> serde_json::Value {
    let groups: Vec<&str> = if grouped { vec!["/imported"] } else { vec![] };
    json!({"username": username, "email": format!("{username}@imported.test"), "enabled": true,
           "firstName": "Imported", "lastName": username, "emailVerified": true,
           "credentials": [{"type": "password", "value": PASSWORD, "temporary": false}],
           "groups": groups})
}

/// `keycloak-sync ARGS` on the database at `db_url`, reading the world's realm.
async fn command_on(world: &World, db_url: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
    command
        .args(args)
        .env("KEYCLOAK_SYNC__DATABASE__URL", db_url)
        .env_remove("RUST_LOG");
    for (key, value) in world.names.env(&crate::support::amqp_url()) {
        command.env(key, value);
    }
    for (key, value) in world.realm.daemon_settings() {
        command.env(key, value);
    }
    command.output().await.expect("run keycloak-sync")
}

/// The same on the world's own database.
pub async fn command(world: &World, args: &[&str]) -> Output {
    command_on(world, &world.db.url, args).await
}

fn said(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn reconcile_repairs_what_no_event_said() {
    // Users imported with the realm: Keycloak announces none of them.
    let world = World::with(
        json!({
            "groups": [{"name": "imported"}],
            "users": [
                {"username": "service-account-sync", "enabled": true, "serviceAccountClientId": "sync",
                 "clientRoles": {"realm-management": ["view-users", "query-users", "view-events", "view-realm", "view-clients"]}},
                imported("dave", true), imported("erin", true), imported("frank", true)
            ]
        }),
        &[("KEYCLOAK_SYNC__KEYCLOAK__ENRICH", "false")],
    )
    .await;
    let realm = &world.realm;
    // Only logins name dave and erin; frank is never seen.
    let d1 = realm.login("web", "dave", false).await;
    let e1 = realm.login("mobile", "erin", false).await;
    crate::support::wait_until(crate::SETTLE, || async {
        count(&world.store, "SELECT count(*) FROM user_sessions").await == 2
    })
    .await;
    let dave = user(&world.store, &crate::kc::claim(&d1.access, "sub")).await;
    assert_eq!(
        dave.username.as_deref(),
        Some("dave"),
        "a placeholder from the login"
    );
    assert_eq!(dave.email, None, "enrichment is off in this world");

    let output = command(&world, &["reconcile", "--sessions", "all", "--directory"]).await;
    assert!(output.status.success(), "{}", said(&output));
    world.settle("after reconcile").await;
    let frank = realm.users().await;
    assert_eq!(frank.len(), 3);
    assert_eq!(
        count(
            &world.store,
            "SELECT count(*) FROM user_groups WHERE member"
        )
        .await,
        3,
        "every imported user's group, read by --directory"
    );
    assert_eq!(
        session(&world.store, &e1.session_id)
            .await
            .client_id
            .as_deref(),
        Some("mobile")
    );
    realm.delete().await;
}

#[tokio::test]
async fn enrichment_fills_a_user_only_a_login_named() {
    let world = World::with(
        json!({
            "users": [
                {"username": "service-account-sync", "enabled": true, "serviceAccountClientId": "sync",
                 "clientRoles": {"realm-management": ["view-users", "query-users", "view-events", "view-realm", "view-clients"]}},
                imported("gina", false)
            ]
        }),
        &[],
    )
    .await;
    world.realm.login("web", "gina", false).await;
    world.settle("after enrichment").await;
    world.realm.delete().await;
}

#[tokio::test]
async fn backfill_reads_the_stored_events_which_the_provider_already_delivered() {
    let world = World::new().await;
    let realm = &world.realm;
    let alice = realm.create_user("alice", "alice@example.com").await;
    let a1 = realm.login("web", "alice", false).await;
    realm
        .admin(
            Method::PUT,
            &format!("/users/{alice}"),
            Some(json!({"firstName": "Alicia"})),
        )
        .await
        .ok("update");
    realm.logout("web", &a1).await;
    world.settle("before the backfill").await;
    let applied = count(&world.store, "SELECT count(*) FROM processed_events").await;

    let today = time::OffsetDateTime::now_utc().date().to_string();
    let output = command(&world, &["backfill", "--since", &today]).await;
    let text = said(&output);
    assert!(output.status.success(), "{text}");
    // Both lists: stored events read, none new (Keycloak's ids are the provider's).
    assert_eq!(text.matches("applied 0, duplicates").count(), 2, "{text}");
    assert!(applied >= 5 && !text.contains("duplicates 0,"), "{text}");
    // Into a database that saw nothing, the same window rebuilds the same user.
    let fresh = crate::support::TestDb::new().await;
    let output = command_on(&world, &fresh.url, &["backfill", "--since", &today]).await;
    assert!(output.status.success(), "{}", said(&output));
    let store = fresh.store().await;
    let rebuilt = user(&store, &alice).await;
    assert_eq!(rebuilt.first_name.as_deref(), Some("Alicia"));
    assert_eq!(rebuilt.login_count, 1);
    let s = session(&store, &a1.session_id).await;
    assert_eq!(s.end_reason.as_deref(), Some("logout"));
    realm.delete().await;
}

#[tokio::test]
async fn the_realm_session_policy_sets_when_keycloak_would_expire_a_session() {
    let world = World::with(
        json!({"ssoSessionIdleTimeout": 600, "ssoSessionMaxLifespan": 3600}),
        &[],
    )
    .await;
    let realm = &world.realm;
    realm.create_user("hana", "hana@example.com").await;
    let h1 = realm.login("web", "hana", false).await;
    world.settle("after a login").await;
    let (started, expires): (i64, Option<i64>) = sqlx::query_as(
        "SELECT (extract(epoch FROM started_at) * 1000)::int8,
                (extract(epoch FROM expires_at) * 1000)::int8
         FROM user_sessions WHERE id = $1",
    )
    .bind(&h1.session_id)
    .fetch_one(world.store.pool())
    .await
    .expect("session");
    let expires = expires.expect("the realm's policy was read");
    let idle = expires - started;
    assert!(
        (600_000..=600_000 + 130_000).contains(&idle),
        "idle timeout (plus Keycloak's idle grace window): {idle} ms"
    );
    realm.delete().await;
}

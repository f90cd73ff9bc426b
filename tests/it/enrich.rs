//! Enrichment: users that events leave incomplete, read whole from the (fake) Admin API.

use std::time::Duration;

use keycloak_sync::jobs::enrichment::Enricher;
use keycloak_sync::store::Store;
use serde_json::json;

use crate::keycloak_fake::{user_rep, FakeKeycloak, REALM_ID};
use crate::support::{admin_envelope, apply, count, event, user, TestDb};

const REGISTERED_AT: i64 = 1_732_270_000_000;

fn register(user_id: &str, username: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"reg-{user_id}","time":{REGISTERED_AT},"realmId":"{REALM_ID}","type":"REGISTER","clientId":"web","userId":"{user_id}","details":{{"username":"{username}","email":"{username}@example.com"}}}}"#
    )
}

fn update_first_name(user_id: &str, time: i64, first: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"upd-{user_id}-{time}","time":{time},"realmId":"{REALM_ID}","type":"UPDATE_PROFILE","userId":"{user_id}","details":{{"updated_first_name":"{first}"}}}}"#
    )
}

fn login(user_id: &str, time: i64) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"login-{user_id}-{time}","time":{time},"realmId":"{REALM_ID}","type":"LOGIN","clientId":"web","userId":"{user_id}","sessionId":"s-{time}","details":{{"username":"x"}}}}"#
    )
}

async fn setup() -> (TestDb, Store, FakeKeycloak, Enricher) {
    let db = TestDb::new().await;
    let store = db.store().await.with_enrichment(true);
    let fake = FakeKeycloak::start().await;
    let mut enricher = Enricher::new(store.clone(), fake.client(100), 2);
    enricher.retry_base = Duration::from_millis(300);
    (db, store, fake, enricher)
}

async fn backlog(store: &Store) -> i64 {
    store.enrichment_backlog().await.expect("backlog")
}

#[tokio::test]
async fn enrichment_fills_the_profile_events_leave_out() {
    let (_db, store, fake, enricher) = setup().await;
    let mut alice = user_rep("u1", "alice", "Alice", "Liddell");
    alice["createdTimestamp"] = json!(REGISTERED_AT - 5);
    fake.state().users.push(alice);

    apply(&store, &[event(&register("u1", "alice"))]).await;
    let before = user(&store, "u1").await;
    assert_eq!(before.username.as_deref(), Some("alice"));
    assert_eq!(before.first_name, None, "REGISTER carries no names");
    assert_eq!(backlog(&store).await, 1);

    let tally = enricher.run_once().await.expect("enrich");
    assert_eq!((tally.claimed, tally.enriched), (1, 1));
    let after = user(&store, "u1").await;
    assert_eq!(after.first_name.as_deref(), Some("Alice"));
    assert_eq!(after.last_name.as_deref(), Some("Liddell"));
    assert_eq!(after.email_verified, Some(true));
    assert_eq!(after.enabled, Some(true));
    assert_eq!(
        after.created_at,
        Some(REGISTERED_AT - 5),
        "Keycloak's creation time is earlier"
    );
    assert_eq!(after.attributes, Some(json!({"department": ["research"]})));
    assert_eq!(backlog(&store).await, 0);

    // Read whole once, a LOGIN asks nothing more of Keycloak; a profile change does.
    apply(&store, &[event(&login("u1", REGISTERED_AT + 10))]).await;
    assert_eq!(backlog(&store).await, 0);
    apply(
        &store,
        &[event(&update_first_name("u1", REGISTERED_AT + 20, "Al"))],
    )
    .await;
    assert_eq!(backlog(&store).await, 1);
}

#[tokio::test]
async fn with_keycloak_down_events_still_apply_and_enrichment_follows_its_return() {
    let (_db, store, fake, enricher) = setup().await;
    fake.state()
        .users
        .push(user_rep("u1", "alice", "Alice", "Liddell"));
    fake.state().down = true;

    apply(&store, &[event(&register("u1", "alice"))]).await;
    assert_eq!(user(&store, "u1").await.username.as_deref(), Some("alice"));

    let tally = enricher.run_once().await.expect("enrich");
    assert_eq!((tally.claimed, tally.postponed, tally.enriched), (1, 1, 0));
    assert_eq!(backlog(&store).await, 1, "kept for later");
    let error = count(
        &store,
        "SELECT count(*) FROM enrichment_queue WHERE last_error LIKE '%503%' AND attempts = 1",
    )
    .await;
    assert_eq!(error, 1, "the failure is recorded");
    assert_eq!(user(&store, "u1").await.first_name, None);

    // Not due yet: nothing is claimed while the delay runs.
    fake.state().down = false;
    let early = enricher.run_once().await.expect("enrich");
    assert_eq!(early.claimed, 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tally = enricher.run_once().await.expect("enrich");
    assert_eq!(tally.enriched, 1);
    assert_eq!(
        user(&store, "u1").await.first_name.as_deref(),
        Some("Alice")
    );
    assert_eq!(backlog(&store).await, 0);
}

#[tokio::test]
async fn an_enrichment_older_than_a_newer_profile_change_does_not_overwrite_it() {
    let (_db, store, fake, enricher) = setup().await;
    // Keycloak answers slowly, with the name as it was before the change below.
    fake.state()
        .users
        .push(user_rep("u1", "alice", "Old", "Liddell"));
    fake.state().user_delay = Duration::from_millis(800);
    apply(&store, &[event(&register("u1", "alice"))]).await;

    let reading = tokio::spawn(async move {
        let tally = enricher.run_once().await.expect("enrich");
        (tally, enricher)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    apply(
        &store,
        &[event(&update_first_name("u1", REGISTERED_AT + 1000, "New"))],
    )
    .await;
    let (tally, enricher) = reading.await.expect("task");
    assert_eq!(tally.enriched, 1);

    let row = user(&store, "u1").await;
    assert_eq!(
        row.first_name.as_deref(),
        Some("New"),
        "the newer change stands"
    );
    assert_eq!(
        row.last_name.as_deref(),
        Some("Liddell"),
        "the rest was filled in"
    );
    assert_eq!(backlog(&store).await, 1, "the newer change asked again");

    // The second read (now up to date) is applied after the change.
    {
        let mut state = fake.state();
        state.users[0]["firstName"] = json!("New");
        state.user_delay = Duration::ZERO;
    }
    assert_eq!(enricher.run_once().await.expect("enrich").enriched, 1);
    assert_eq!(user(&store, "u1").await.first_name.as_deref(), Some("New"));
    assert_eq!(backlog(&store).await, 0);
}

#[tokio::test]
async fn users_keycloak_no_longer_has_and_other_realms_leave_the_queue() {
    let (_db, store, _fake, enricher) = setup().await;
    apply(&store, &[event(&register("gone", "ghost"))]).await;
    let other_realm = register("elsewhere", "eve").replace(REALM_ID, "some-other-realm");
    apply(&store, &[event(&other_realm)]).await;
    assert_eq!(backlog(&store).await, 2);
    let tally = enricher.run_once().await.expect("enrich");
    assert_eq!((tally.gone, tally.skipped), (1, 1));
    assert_eq!(backlog(&store).await, 0);
    assert_eq!(
        user(&store, "gone").await.username.as_deref(),
        Some("ghost")
    );
}

#[tokio::test]
async fn without_enrichment_nothing_is_queued() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(&store, &[event(&register("u1", "alice"))]).await;
    assert_eq!(backlog(&store).await, 0);
}

#[tokio::test]
async fn the_daemon_enriches_in_the_background_and_never_waits_for_keycloak() {
    use crate::keycloak_fake::CLIENT_SECRET;
    use crate::support::{amqp_url, publish, wait_until, Daemon, Names};

    let db = TestDb::new().await;
    let fake = FakeKeycloak::start().await;
    fake.state()
        .users
        .push(user_rep("u1", "alice", "Alice", "Liddell"));
    fake.state().down = true;
    let amqp = amqp_url();
    let names = Names::random();
    let env = fake.env();
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let daemon = Daemon::start(&db.url, &amqp, &names, &extra);
    daemon.wait_ready(Duration::from_secs(30)).await;
    publish(
        &amqp,
        &names.exchange,
        &[register("u1", "alice").into_bytes()],
    )
    .await;

    let store = db.store().await;
    let applied = wait_until(Duration::from_secs(20), || async {
        count(
            &store,
            "SELECT count(*) FROM users WHERE username = 'alice'",
        )
        .await
            == 1
    })
    .await;
    assert!(
        applied,
        "event not applied while Keycloak is down; log:\n{}",
        daemon.log_text()
    );
    let tried = wait_until(Duration::from_secs(20), || async {
        count(
            &store,
            "SELECT count(*) FROM enrichment_queue WHERE attempts >= 1",
        )
        .await
            == 1
    })
    .await;
    assert!(tried, "no enrichment attempt; log:\n{}", daemon.log_text());
    assert_eq!(user(&store, "u1").await.first_name, None);

    fake.state().down = false;
    let enriched = wait_until(Duration::from_secs(30), || async {
        count(
            &store,
            "SELECT count(*) FROM users WHERE first_name = 'Alice'",
        )
        .await
            == 1
    })
    .await;
    assert!(
        enriched,
        "not enriched after Keycloak came back; log:\n{}",
        daemon.log_text()
    );
    let counted = wait_until(Duration::from_secs(10), || async {
        daemon.get("/metrics").await.is_some_and(|(_, body)| {
            body.contains("keycloak_sync_enrichments_total{outcome=\"enriched\"} 1")
        })
    })
    .await;
    assert!(counted, "enrichment not in /metrics");
    let log = daemon.log_text();
    assert!(
        !log.contains(CLIENT_SECRET),
        "the client secret reached the log"
    );
    assert!(!log.contains("token-1"), "an access token reached the log");
}

mod directory {
    //! Groups and effective roles read from the Admin API
    //! (`…/users/{id}/groups`, `…/role-mappings/realm/composite`,
    //! `…/role-mappings/clients/{client}/composite`).

    use super::*;
    use keycloak_sync::store::Store;
    use serde_json::Value;

    const CLIENT: &str = "9e8d7c6b-client";

    fn admin(
        id: &str,
        time: i64,
        resource: &str,
        op: &str,
        path: &str,
        rep: Option<Value>,
    ) -> String {
        let rep = rep.map(|rep| rep.to_string());
        admin_envelope(id, time, REALM_ID, resource, op, path, rep.as_deref())
    }

    fn role(id: &str, name: &str, client: Option<&str>) -> Value {
        json!({"id": id, "name": name, "composite": false, "clientRole": client.is_some(),
               "containerId": client.unwrap_or(REALM_ID)})
    }

    async fn table(store: &Store, sql: &str) -> Vec<Value> {
        sqlx::query_scalar::<_, Value>(&format!("SELECT to_jsonb(t) FROM ({sql}) t"))
            .fetch_all(store.pool())
            .await
            .expect("rows")
    }

    #[tokio::test]
    async fn enrichment_reads_groups_and_effective_roles_and_drops_what_keycloak_no_longer_lists() {
        let (_db, store, fake, enricher) = setup().await;
        fake.state()
            .users
            .push(user_rep("u1", "alice", "Alice", "Liddell"));
        {
            let mut state = fake.state();
            state.groups.insert(
                "u1".into(),
                vec![json!({"id": "g-staff", "name": "staff", "path": "/staff"})],
            );
            state.realm_roles.insert(
                "u1".into(),
                vec![
                    role("r-admin", "admin", None),
                    role("r-default", "default-roles-acme", None),
                ],
            );
            state.client_roles.insert(
                ("u1".into(), CLIENT.into()),
                vec![role("c-viewer", "viewer", Some(CLIENT))],
            );
        }
        let events = [
            register("u1", "alice"),
            // Joined g-old once; Keycloak no longer lists it.
            admin(
                "m1",
                REGISTERED_AT + 1,
                "GROUP_MEMBERSHIP",
                "CREATE",
                "users/u1/groups/g-old",
                None,
            ),
            admin(
                "rm1",
                REGISTERED_AT + 2,
                "REALM_ROLE_MAPPING",
                "CREATE",
                "users/u1/role-mappings/realm",
                Some(json!([
                    role("r-admin", "admin", None),
                    role("r-gone", "gone", None)
                ])),
            ),
            // A client role seen in an event: that client's roles are asked for.
            admin(
                "cr1",
                REGISTERED_AT + 3,
                "CLIENT_ROLE",
                "CREATE",
                &format!("clients/{CLIENT}/roles/viewer"),
                Some(role("c-viewer", "viewer", Some(CLIENT))),
            ),
        ];
        let events: Vec<_> = events.iter().map(|e| event(e)).collect();
        apply(&store, &events).await;
        assert_eq!(backlog(&store).await, 1);
        let tally = enricher.run_once().await.expect("enrich");
        assert_eq!(tally.enriched, 1);

        let groups = table(
            &store,
            "SELECT group_id, member_since IS NOT NULL AS since_known, removed_at IS NULL AS member
             FROM user_groups ORDER BY group_id",
        )
        .await;
        assert_eq!(
            groups,
            vec![
                json!({"group_id": "g-old", "since_known": true, "member": false}),
                json!({"group_id": "g-staff", "since_known": false, "member": true}),
            ]
        );
        let roles = table(
            &store,
            "SELECT role_id, client_id, role_name, direct, effective FROM user_roles ORDER BY role_id",
        )
        .await;
        assert_eq!(
            roles,
            vec![
                json!({"role_id": "c-viewer", "client_id": CLIENT, "role_name": "viewer", "direct": false, "effective": true}),
                json!({"role_id": "r-admin", "client_id": null, "role_name": "admin", "direct": true, "effective": true}),
                json!({"role_id": "r-default", "client_id": null, "role_name": "default-roles-acme", "direct": false, "effective": true}),
                json!({"role_id": "r-gone", "client_id": null, "role_name": "gone", "direct": true, "effective": false}),
            ]
        );
        let asked = fake.requests_to("/composite");
        assert_eq!(
            asked.len(),
            2,
            "realm roles and the one known client: {asked:?}"
        );

        // A role mapping of a group the user is in changes its effective roles: the
        // members are read again.
        apply(
            &store,
            &[event(&admin(
                "grm",
                REGISTERED_AT + 10,
                "REALM_ROLE_MAPPING",
                "CREATE",
                "groups/g-staff/role-mappings/realm",
                Some(json!([role("r-ops", "ops", None)])),
            ))],
        )
        .await;
        assert_eq!(backlog(&store).await, 1, "the group's member is queued");
    }
}

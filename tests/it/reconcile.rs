//! `reconcile` against the fake Admin API: paging, updates, confirmed deletions, the
//! mass-delete guard, sessions, dry runs.

use keycloak_sync::config::SessionCheck;
use keycloak_sync::jobs::reconcile::{
    reconcile_realm, ReconcileError, ReconcileOptions, SessionSource,
};
use keycloak_sync::store::Store;
use serde_json::json;

use crate::keycloak_fake::{realm, user_rep, FakeKeycloak, REALM_ID};
use crate::support::{apply, event, full_rows, session, user, users, TestDb};

const T0: i64 = 1_732_270_000_000;

fn options(max_delete_percent: f64) -> ReconcileOptions {
    ReconcileOptions {
        dry_run: false,
        allow_mass_delete: false,
        max_delete_percent,
        sessions: SessionCheck::None,
        directory: false,
        progress: false,
    }
}

fn register(user_id: &str, username: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"reg-{user_id}","time":{T0},"realmId":"{REALM_ID}","type":"REGISTER","userId":"{user_id}","details":{{"username":"{username}","email":"old-{username}@example.com"}}}}"#
    )
}

fn login(user_id: &str, session_id: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"login-{session_id}","time":{T0},"realmId":"{REALM_ID}","type":"LOGIN","clientId":"web","userId":"{user_id}","sessionId":"{session_id}","details":{{"username":"x"}}}}"#
    )
}

fn keycloak_users(fake: &FakeKeycloak, n: usize) {
    let mut state = fake.state();
    for i in 1..=n {
        state.users.push(user_rep(
            &format!("u{i:02}"),
            &format!("user{i:02}"),
            "First",
            &format!("Last{i}"),
        ));
    }
}

async fn setup() -> (TestDb, Store, FakeKeycloak) {
    let db = TestDb::new().await;
    let store = db.store().await;
    (db, store, FakeKeycloak::start().await)
}

fn user_pages_read(fake: &FakeKeycloak) -> Vec<String> {
    fake.requests_to("/admin/realms/acme/users")
        .iter()
        .map(|r| {
            r.split("first=")
                .nth(1)
                .unwrap_or("")
                .split('&')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn reconcile_pages_through_users_updates_profiles_and_deletes_the_missing() {
    for (listed, pages) in [(6, vec!["0", "3", "6"]), (7, vec!["0", "3", "6"])] {
        let (_db, store, fake) = setup().await;
        keycloak_users(&fake, listed);
        // Known here: u01 (with an older email), and `stale`, which Keycloak no longer has.
        apply(
            &store,
            &[
                event(&register("u01", "user01")),
                event(&register("stale", "gone")),
            ],
        )
        .await;

        let report = reconcile_realm(&store, &fake.client(3), &realm(), &options(50.0))
            .await
            .expect("reconcile");
        assert_eq!(
            user_pages_read(&fake),
            pages,
            "{listed} users in pages of 3"
        );
        assert_eq!(report.listed, listed as u64);
        assert_eq!(
            (report.created, report.updated, report.unchanged),
            (listed as u64 - 1, 1, 0)
        );
        assert_eq!((report.missing, report.local, report.deleted), (1, 2, 1));

        let rows = users(&store).await;
        assert_eq!(rows.len(), listed + 1);
        let u01 = user(&store, "u01").await;
        assert_eq!(u01.email.as_deref(), Some("user01@example.com"));
        assert_eq!(u01.first_name.as_deref(), Some("First"));
        assert_eq!(u01.realm_id, REALM_ID);
        assert!(user(&store, "stale").await.deleted_at.is_some());
        assert!(rows
            .iter()
            .filter(|u| u.id != "stale")
            .all(|u| u.deleted_at.is_none()));

        // A second run finds nothing to do.
        let again = reconcile_realm(&store, &fake.client(3), &realm(), &options(50.0))
            .await
            .expect("reconcile");
        assert_eq!((again.created, again.updated, again.deleted), (0, 0, 0));
        assert_eq!(again.unchanged, listed as u64);
    }
}

#[tokio::test]
async fn the_mass_delete_guard_stops_unless_allowed() {
    let (_db, store, fake) = setup().await;
    keycloak_users(&fake, 5);
    let local: Vec<_> = (1..=10)
        .map(|i| event(&register(&format!("u{i:02}"), &format!("user{i:02}"))))
        .collect();
    apply(&store, &local).await;

    let error = reconcile_realm(&store, &fake.client(100), &realm(), &options(10.0))
        .await
        .expect_err("5 of 10 missing is over 10 %");
    let ReconcileError::MassDelete { missing, local, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!((*missing, *local), (5, 10));
    let text = error.to_string();
    assert!(
        text.contains("--allow-mass-delete") && text.contains("50.0 %"),
        "{text}"
    );
    assert!(
        users(&store).await.iter().all(|u| u.deleted_at.is_none()),
        "nothing deleted"
    );

    let allowed = ReconcileOptions {
        allow_mass_delete: true,
        ..options(10.0)
    };
    let report = reconcile_realm(&store, &fake.client(100), &realm(), &allowed)
        .await
        .expect("allowed");
    assert_eq!(report.deleted, 5);
    let deleted = users(&store)
        .await
        .iter()
        .filter(|u| u.deleted_at.is_some())
        .count();
    assert_eq!(deleted, 5);
}

#[tokio::test]
async fn a_user_missing_from_the_listing_but_found_by_id_is_kept() {
    let (_db, store, fake) = setup().await;
    keycloak_users(&fake, 3);
    fake.state().unlisted.insert("u02".to_string());
    let local: Vec<_> = (1..=3)
        .map(|i| event(&register(&format!("u{i:02}"), &format!("user{i:02}"))))
        .collect();
    apply(&store, &local).await;
    let report = reconcile_realm(&store, &fake.client(100), &realm(), &options(50.0))
        .await
        .expect("reconcile");
    assert_eq!(
        (report.missing, report.still_present, report.deleted),
        (1, 1, 0)
    );
    assert!(user(&store, "u02").await.deleted_at.is_none());
}

#[tokio::test]
async fn sessions_keycloak_no_longer_has_end_as_expired() {
    let (_db, store, fake) = setup().await;
    keycloak_users(&fake, 2);
    fake.state()
        .sessions
        .insert("u01".to_string(), vec!["s-live".to_string()]);
    apply(
        &store,
        &[
            event(&register("u01", "user01")),
            event(&login("u01", "s-live")),
            event(&login("u01", "s-stale")),
            event(&login("u02", "s-other")),
        ],
    )
    .await;
    let with_sessions = ReconcileOptions {
        sessions: SessionCheck::All,
        ..options(50.0)
    };
    let report = reconcile_realm(&store, &fake.client(100), &realm(), &with_sessions)
        .await
        .expect("reconcile");
    assert_eq!((report.session_users, report.sessions_ended), (2, 2));
    assert!(session(&store, "s-live").await.is_active);
    for id in ["s-stale", "s-other"] {
        let row = session(&store, id).await;
        assert!(!row.is_active, "{id}");
        assert_eq!(row.end_reason.as_deref(), Some("expired"));
    }

    // A sample of one user compares exactly one user's sessions.
    let sample = ReconcileOptions {
        sessions: SessionCheck::Sample(1),
        ..options(50.0)
    };
    apply(
        &store,
        &[
            event(&login("u02", "s-new1")),
            event(&login("u01", "s-new2")),
        ],
    )
    .await;
    let report = reconcile_realm(&store, &fake.client(100), &realm(), &sample)
        .await
        .expect("reconcile");
    assert_eq!((report.session_users, report.sessions_ended), (1, 1));
}

/// Many users with sessions and few clients: one listing per client costs fewer requests
/// than one per user. Users with a session no client lists are then asked one by one, so
/// a session Keycloak holds without a client session is not ended.
#[tokio::test]
async fn sessions_are_read_per_client_when_that_takes_fewer_requests() {
    let (_db, store, fake) = setup().await;
    keycloak_users(&fake, 30);
    let mut local = Vec::new();
    {
        let mut state = fake.state();
        for i in 1..=30 {
            let user_id = format!("u{i:02}");
            local.push(event(&login(&user_id, &format!("s-live-{i:02}"))));
            local.push(event(&login(&user_id, &format!("s-gone-{i:02}"))));
            state
                .sessions
                .insert(user_id, vec![format!("s-live-{i:02}")]);
        }
        // Keycloak still has it, but no client lists it.
        state.clientless.insert("s-live-07".to_string());
    }
    apply(&store, &local).await;
    let with_sessions = ReconcileOptions {
        sessions: SessionCheck::All,
        ..options(50.0)
    };
    let report = reconcile_realm(&store, &fake.client(10), &realm(), &with_sessions)
        .await
        .expect("reconcile");
    assert_eq!(report.session_source, SessionSource::PerClient, "{report}");
    assert_eq!(report.sessions_ended, 30);
    // Every user has a session no client lists (the 30 gone ones): each is confirmed.
    assert_eq!(report.session_users, 30);
    // Stats, 29 sessions in pages of 10 (3 pages), then 30 users.
    assert_eq!(report.session_requests, 1 + 3 + 30);
    assert!(report.to_string().contains("per client"), "{report}");
    for i in 1..=30 {
        assert!(
            session(&store, &format!("s-live-{i:02}")).await.is_active,
            "s-live-{i:02}"
        );
        let gone = session(&store, &format!("s-gone-{i:02}")).await;
        assert_eq!(gone.end_reason.as_deref(), Some("expired"), "s-gone-{i:02}");
    }
    assert_eq!(fake.requests_to("/user-sessions").len(), 3);

    // Once reconciled, only users with an unlisted session are asked again: here the
    // one whose live session no client holds.
    let report = reconcile_realm(&store, &fake.client(10), &realm(), &with_sessions)
        .await
        .expect("second reconcile");
    assert_eq!(report.session_source, SessionSource::PerClient);
    assert_eq!((report.session_users, report.sessions_ended), (1, 0));
    assert!(session(&store, "s-live-07").await.is_active);

    // Without view-realm, Keycloak refuses the counts: per user, as before.
    fake.state().no_view_realm = true;
    let report = reconcile_realm(&store, &fake.client(10), &realm(), &with_sessions)
        .await
        .expect("reconcile without view-realm");
    assert_eq!(report.session_source, SessionSource::PerUser);
    assert_eq!(report.session_users, 30);
}

#[tokio::test]
async fn a_dry_run_reports_the_differences_and_writes_nothing() {
    let (_db, store, fake) = setup().await;
    keycloak_users(&fake, 4);
    let mut local = vec![
        event(&register("u01", "user01")),
        event(&register("stale", "gone")),
        event(&login("u01", "s-stale")),
    ];
    local.extend((2..=4).map(|i| event(&register(&format!("u{i:02}"), &format!("user{i:02}")))));
    apply(&store, &local).await;
    fake.state().users[3]["enabled"] = json!(false);
    let before = full_rows(&store).await;

    let dry = ReconcileOptions {
        dry_run: true,
        sessions: SessionCheck::All,
        ..options(50.0)
    };
    let report = reconcile_realm(&store, &fake.client(2), &realm(), &dry)
        .await
        .expect("dry run");
    assert!(report.dry_run);
    assert_eq!((report.created, report.updated), (0, 4));
    assert_eq!((report.missing, report.deleted), (1, 1));
    assert_eq!(report.sessions_ended, 1);
    assert!(report.to_string().contains("to delete"), "{report}");
    assert_eq!(full_rows(&store).await, before, "a dry run writes nothing");

    // Over the guard, a dry run says so instead of failing.
    let strict = ReconcileOptions {
        max_delete_percent: 1.0,
        ..dry
    };
    let report = reconcile_realm(&store, &fake.client(2), &realm(), &strict)
        .await
        .expect("dry run");
    assert!(report.over_delete_limit);
    assert_eq!(full_rows(&store).await, before);
}

fn command(db: &TestDb, fake: &FakeKeycloak, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
    command
        .args(args)
        .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
        .envs(fake.env())
        .env_remove("RUST_LOG");
    command
}

#[tokio::test]
async fn the_reconcile_command_reports_and_exits_non_zero_at_the_guard() {
    let (db, store, fake) = setup().await;
    keycloak_users(&fake, 2);
    let local: Vec<_> = (1..=4)
        .map(|i| event(&register(&format!("u{i:02}"), &format!("user{i:02}"))))
        .collect();
    apply(&store, &local).await;

    let dry = command(&db, &fake, &["reconcile", "--dry-run"])
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        stdout.contains("reconcile summary: realm acme (dry run)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 of 4 local users missing"), "{stdout}");

    let guarded = command(&db, &fake, &["reconcile"])
        .output()
        .await
        .expect("run");
    let stderr = String::from_utf8_lossy(&guarded.stderr);
    assert_eq!(guarded.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--allow-mass-delete"), "{stderr}");
    assert!(users(&store).await.iter().all(|u| u.deleted_at.is_none()));

    let allowed = command(&db, &fake, &["reconcile", "--allow-mass-delete"])
        .output()
        .await
        .expect("run");
    assert!(allowed.status.success());
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("2 deleted"));
    let everything = format!("{dry:?}{guarded:?}{allowed:?}");
    assert!(!everything.contains(crate::keycloak_fake::CLIENT_SECRET));
}

#[tokio::test]
async fn the_backfill_command_resumes_and_reports_per_list() {
    let (db, _store, fake) = setup().await;
    fake.state().events = (0..3)
        .map(|n| {
            json!({"id": format!("e{n}"), "time": 1_732_240_000_000i64 + n, "type": "LOGIN",
                   "realmId": REALM_ID, "userId": "u1", "sessionId": "s1", "details": {"username": "a"}})
        })
        .collect();
    let args = [
        "backfill",
        "--since",
        "2024-11-22",
        "--until",
        "2024-11-23T00:00:00Z",
    ];
    let first = command(&db, &fake, &args).output().await.expect("run");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("backfill acme events: from offset 0, fetched 3"),
        "{stdout}"
    );
    assert!(stdout.contains("applied 3"), "{stdout}");
    assert!(
        stdout.contains("backfill acme admin-events: from offset 0, fetched 0"),
        "{stdout}"
    );
    let second = command(&db, &fake, &args).output().await.expect("run");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("backfill acme events: from offset 3, fetched 0"),
        "{stdout}"
    );

    let bad = command(&db, &fake, &["backfill", "--since", "yesterday"])
        .output()
        .await
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("\"yesterday\" is not epoch milliseconds")
    );
}

#[tokio::test]
async fn the_daemon_reconciles_on_its_schedule() {
    use crate::support::{amqp_url, count, wait_until, Daemon, Names};

    let (db, store, fake) = setup().await;
    keycloak_users(&fake, 3);
    let env = fake.env();
    let mut extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    extra.push(("KEYCLOAK_SYNC__RECONCILE__INTERVAL_SECS", "1"));
    let daemon = Daemon::start(&db.url, &amqp_url(), &Names::random(), &extra);
    daemon.wait_ready(std::time::Duration::from_secs(30)).await;
    let swept = wait_until(std::time::Duration::from_secs(20), || async {
        count(
            &store,
            "SELECT count(*) FROM users WHERE first_name = 'First'",
        )
        .await
            == 3
    })
    .await;
    assert!(swept, "no scheduled reconcile; log:\n{}", daemon.log_text());
    let counted = wait_until(std::time::Duration::from_secs(10), || async {
        daemon.get("/metrics").await.is_some_and(|(_, body)| {
            body.contains("keycloak_sync_reconcile_runs_total{outcome=\"ok\"}")
        })
    })
    .await;
    assert!(counted, "scheduled reconcile not in /metrics");
    assert!(daemon.log_text().contains("scheduled reconcile finished"));
}

mod directory {
    //! `reconcile --directory`: groups and effective roles swept, paged, behind the guard.

    use super::*;
    use serde_json::Value;

    fn join(user_id: &str, group: &str, n: usize) -> String {
        json!({
            "schema": 1, "kind": "admin", "id": format!("join-{user_id}-{group}-{n}"),
            "time": T0 + n as i64, "realmId": REALM_ID,
            "resourceType": "GROUP_MEMBERSHIP", "operationType": "CREATE",
            "resourcePath": format!("users/{user_id}/groups/{group}"),
        })
        .to_string()
    }

    async fn memberships(store: &Store) -> Vec<Value> {
        sqlx::query_scalar(
            "SELECT jsonb_build_array(user_id, group_id, removed_at IS NULL) FROM user_groups
             ORDER BY user_id, group_id",
        )
        .fetch_all(store.pool())
        .await
        .expect("rows")
    }

    #[tokio::test]
    async fn reconcile_reads_every_users_groups_across_pages_and_ends_what_keycloak_dropped() {
        let (_db, store, fake) = setup().await;
        keycloak_users(&fake, 2);
        {
            let mut state = fake.state();
            state.groups.insert(
                "u01".into(),
                vec![
                    json!({"id": "g-a", "name": "a", "path": "/a"}),
                    json!({"id": "g-b", "name": "b", "path": "/b"}),
                    json!({"id": "g-c", "name": "c", "path": "/c"}),
                ],
            );
        }
        let events: Vec<_> = [
            register("u01", "user01"),
            register("u02", "user02"),
            join("u01", "g-a", 1),
            join("u01", "g-old", 2),
            join("u02", "g-a", 3),
            join("u02", "g-b", 4),
            join("u02", "g-c", 5),
            join("u02", "g-d", 6),
        ]
        .iter()
        .map(|e| event(e))
        .collect();
        apply(&store, &events).await;
        // u02 left everything in Keycloak: of 8 memberships (3 listed, 5 no longer), 5 end:
        // over 50 %.
        let guarded = ReconcileOptions {
            directory: true,
            ..options(50.0)
        };
        let refused = reconcile_realm(&store, &fake.client(2), &realm(), &guarded).await;
        assert!(
            matches!(
                refused,
                Err(ReconcileError::MassMembershipRemoval {
                    ending: 5,
                    held: 8,
                    ..
                })
            ),
            "{refused:?}"
        );
        assert_eq!(
            memberships(&store)
                .await
                .iter()
                .filter(|m| m[2] == true)
                .count(),
            8,
            "what Keycloak lists was added; nothing ended behind the guard"
        );
        let report = reconcile_realm(
            &store,
            &fake.client(2),
            &realm(),
            &ReconcileOptions {
                directory: true,
                ..options(70.0)
            },
        )
        .await
        .expect("within the limit");
        assert_eq!((report.directory_users, report.memberships_ended), (2, 5));
        assert_eq!(
            memberships(&store).await,
            vec![
                json!(["u01", "g-a", true]),
                json!(["u01", "g-b", true]),
                json!(["u01", "g-c", true]),
                json!(["u01", "g-old", false]),
                json!(["u02", "g-a", false]),
                json!(["u02", "g-b", false]),
                json!(["u02", "g-c", false]),
                json!(["u02", "g-d", false]),
            ]
        );
        // Three groups at two per page: two pages for u01.
        let pages = fake.requests_to("/users/u01/groups");
        assert!(pages.iter().any(|r| r.contains("first=2")), "{pages:?}");
        assert!(
            report
                .to_string()
                .contains("groups and roles of 2 users read"),
            "{report}"
        );
    }
}

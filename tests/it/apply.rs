//! Each event of GUIDE §4, applied to a real Postgres, with the exact rows it must leave.

use keycloak_sync::core::event::Event;
use keycloak_sync::store::Outcome;

use crate::support::*;

/// A user event for user `u1`, session `s1`, client `web`.
fn ue(id: &str, time: i64, event_type: &str, extra: &str) -> Event {
    ue_in("s1", id, time, event_type, extra)
}

fn ue_in(session: &str, id: &str, time: i64, event_type: &str, extra: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"r","realmName":"acme","type":"{event_type}","clientId":"web","userId":"u1","sessionId":"{session}","ipAddress":"203.0.113.7"{extra}}}"#
    ))
}

fn admin(
    id: &str,
    time: i64,
    resource: &str,
    operation: &str,
    path: &str,
    representation: Option<&str>,
) -> Event {
    event(&admin_envelope(
        id,
        time,
        "r",
        resource,
        operation,
        path,
        representation,
    ))
}

fn login(id: &str, time: i64, session: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"r","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"{session}","ipAddress":"203.0.113.7","details":{{"username":"alice"}}}}"#
    ))
}

fn open_session(id: &str, started_at: i64) -> SessionRow {
    SessionRow {
        id: id.to_string(),
        realm_id: "r".into(),
        user_id: Some("u1".into()),
        client_id: Some("web".into()),
        ip_address: Some("203.0.113.7".into()),
        started_at,
        last_refresh_at: None,
        refresh_count: 0,
        ended_at: None,
        end_reason: None,
        is_active: true,
    }
}

fn ended(mut session: SessionRow, at: i64, reason: &str) -> SessionRow {
    session.ended_at = Some(at);
    session.end_reason = Some(reason.into());
    session.is_active = false;
    session
}

#[tokio::test]
async fn register_creates_the_user() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let outcomes = apply(&store, &[ue("e1", 1000, "REGISTER", r#","details":{"username":"alice","email":"alice@example.com","register_method":"form"}"#)]).await;
    assert_eq!(outcomes, vec![Outcome::Applied]);
    let mut expected = UserRow::new("u1");
    expected.username = Some("alice".into());
    expected.email = Some("alice@example.com".into());
    expected.enabled = Some(true);
    expected.created_at = Some(1000);
    assert_eq!(users(&store).await, vec![expected]);
    // REGISTER carries a session only in its details; no session row is created.
    assert!(sessions(&store).await.is_empty());
}

#[tokio::test]
async fn login_of_an_unknown_user_creates_a_placeholder_and_a_session() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(&store, &[login("e1", 2000, "s1")]).await;
    let mut expected = UserRow::new("u1");
    expected.username = Some("alice".into());
    expected.enabled = Some(true);
    expected.last_login_at = Some(2000);
    expected.login_count = 1;
    assert_eq!(users(&store).await, vec![expected.clone()]);
    assert_eq!(sessions(&store).await, vec![open_session("s1", 2000)]);

    // A later, real profile change wins over the placeholder even though it is older.
    apply(
        &store,
        &[admin(
            "a1",
            1500,
            "USER",
            "UPDATE",
            "users/u1",
            Some(r#"{"username":"alice.real","enabled":true}"#),
        )],
    )
    .await;
    expected.username = Some("alice.real".into());
    assert_eq!(users(&store).await, vec![expected.clone()]);
    // And a newer login's placeholder does not overwrite it.
    apply(&store, &[login("e2", 3000, "s2")]).await;
    expected.last_login_at = Some(3000);
    expected.login_count = 2;
    assert_eq!(users(&store).await, vec![expected]);
}

#[tokio::test]
async fn login_error_counts_only_when_the_user_is_known() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let anonymous = event(
        r#"{"schema":1,"kind":"user","id":"x","time":5,"realmId":"r","type":"LOGIN_ERROR","error":"user_not_found","details":{"username":"ghost"}}"#,
    );
    let outcomes = apply(
        &store,
        &[
            ue(
                "e1",
                100,
                "LOGIN_ERROR",
                r#","error":"invalid_user_credentials""#,
            ),
            ue("e2", 300, "LOGIN_ERROR", ""),
            anonymous,
        ],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![Outcome::Applied, Outcome::Applied, Outcome::Ignored]
    );
    let mut expected = UserRow::new("u1");
    expected.login_error_count = 2;
    expected.last_login_error_at = Some(300);
    assert_eq!(users(&store).await, vec![expected]);
}

#[tokio::test]
async fn logout_ends_the_session_whichever_arrives_first() {
    let db = TestDb::new().await;
    let store = db.store().await;
    // Logout first, then the login it ends.
    apply(&store, &[ue("out", 5000, "LOGOUT", "")]).await;
    assert_eq!(
        session(&store, "s1").await,
        SessionRow {
            client_id: None,
            ip_address: None,
            ..ended(open_session("s1", 5000), 5000, "logout")
        }
    );
    apply(&store, &[login("in", 1000, "s1")]).await;
    assert_eq!(
        sessions(&store).await,
        vec![ended(open_session("s1", 1000), 5000, "logout")]
    );
}

#[tokio::test]
async fn refresh_counts_and_never_reopens_an_ended_session() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(
        &store,
        &[login("in", 1000, "s1"), ue("r1", 2000, "REFRESH_TOKEN", "")],
    )
    .await;
    let mut expected = open_session("s1", 1000);
    expected.refresh_count = 1;
    expected.last_refresh_at = Some(2000);
    assert_eq!(sessions(&store).await, vec![expected.clone()]);
    apply(
        &store,
        &[
            ue("out", 3000, "LOGOUT", ""),
            ue("r2", 4000, "REFRESH_TOKEN", ""),
        ],
    )
    .await;
    expected.refresh_count = 2;
    expected.last_refresh_at = Some(4000);
    assert_eq!(
        sessions(&store).await,
        vec![ended(expected, 3000, "logout")]
    );
}

#[tokio::test]
async fn profile_and_email_updates_and_verification() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(
        &store,
        &[
            ue("reg", 100, "REGISTER", r#","details":{"username":"alice","email":"a@example.com"}"#),
            ue("p1", 200, "UPDATE_PROFILE", r#","details":{"updated_first_name":"Alice","updated_last_name":"Liddell","previous_first_name":"A"}"#),
            ue("m1", 300, "UPDATE_EMAIL", r#","details":{"updated_email":"alice@example.org","previous_email":"a@example.com"}"#),
            ue("v1", 400, "VERIFY_EMAIL", r#","details":{"email":"alice@example.org"}"#),
        ],
    )
    .await;
    let mut expected = UserRow::new("u1");
    expected.username = Some("alice".into());
    expected.email = Some("alice@example.org".into());
    expected.first_name = Some("Alice".into());
    expected.last_name = Some("Liddell".into());
    expected.email_verified = Some(true);
    expected.enabled = Some(true);
    expected.created_at = Some(100);
    assert_eq!(users(&store).await, vec![expected.clone()]);
    // An older email change arriving late does not overwrite the newer one.
    apply(
        &store,
        &[ue(
            "m0",
            250,
            "UPDATE_EMAIL",
            r#","details":{"updated_email":"stale@example.com"}"#,
        )],
    )
    .await;
    assert_eq!(users(&store).await, vec![expected]);
}

/// Keycloak's EventAuditingAttributeChangeListener reports each changed attribute as
/// `updated_<name>` (values joined by `::`) and `previous_<name>`; an attribute that was
/// removed has no `updated_` detail. Per key, the latest of those and of the whole maps
/// admin events carry wins, in any order and any batching.
#[tokio::test]
async fn attribute_changes_in_details_are_last_writer_wins_per_key() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let history = |user: &str, with_late_whole_map: bool| {
        let profile = |id: &str, time: i64, details: &str| {
            event(&format!(
                r#"{{"schema":1,"kind":"user","id":"{id}-{user}","time":{time},"realmId":"r","type":"UPDATE_PROFILE","clientId":"account-console","userId":"{user}","details":{details}}}"#
            ))
        };
        let whole = |id: &str, time: i64, attributes: &str| {
            let rep =
                serde_json::to_string(&format!(r#"{{"id":"{user}","attributes":{attributes}}}"#))
                    .expect("string");
            event(&format!(
                r#"{{"schema":1,"kind":"admin","id":"{id}-{user}","time":{time},"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/{user}","representation":{rep}}}"#
            ))
        };
        let mut events = vec![
            whole(
                "a1",
                100,
                r#"{"department":["sales"],"phone":["123"],"locale":["en"]}"#,
            ),
            whole(
                "a2",
                150,
                r#"{"department":["hr"],"phone":["456"],"locale":["de"]}"#,
            ),
            profile(
                "p0",
                50,
                r#"{"updated_locale":"fr","previous_locale":"en"}"#,
            ),
            profile(
                "p1",
                200,
                r#"{"context":"ACCOUNT","updated_department":"eng::ops","previous_department":"hr","previous_phone":"456"}"#,
            ),
            profile("p2", 300, r#"{"updated_title":"Dr"}"#),
        ];
        if with_late_whole_map {
            events.push(whole("a3", 250, r#"{"department":["x"],"locale":["it"]}"#));
        }
        events
    };
    let orders: [&[usize]; 5] = [
        &[0, 1, 2, 3, 4, 5],
        &[5, 4, 3, 2, 1, 0],
        &[3, 0, 4, 2, 5, 1],
        &[4, 3, 5, 1, 0, 2],
        &[2, 5, 0, 3, 1, 4],
    ];
    let mut case = 0;
    for late in [false, true] {
        let expected = if late {
            serde_json::json!({"department": ["x"], "locale": ["it"], "title": ["Dr"]})
        } else {
            serde_json::json!({"department": ["eng", "ops"], "locale": ["de"], "title": ["Dr"]})
        };
        for order in orders {
            for batched in [false, true] {
                case += 1;
                let user_id = format!("u{case}");
                let events = history(&user_id, late);
                let ordered: Vec<Event> = order
                    .iter()
                    .filter_map(|&i| events.get(i).cloned())
                    .collect();
                if batched {
                    apply(&store, &ordered[..2]).await;
                    apply(&store, &ordered[2..]).await;
                } else {
                    for event in ordered {
                        apply(&store, &[event]).await;
                    }
                }
                assert_eq!(
                    user(&store, &user_id).await.attributes,
                    Some(expected.clone()),
                    "late whole map: {late}, order {order:?}, batched: {batched}"
                );
            }
        }
    }
}

#[tokio::test]
async fn admin_create_and_update_set_the_profile() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let create = r#"{"id":"u1","username":"bob","email":"bob@example.com","firstName":"Bob","lastName":"Builder","emailVerified":false,"enabled":true,"createdTimestamp":1700000000000,"attributes":{"dept":["ops"]}}"#;
    apply(
        &store,
        &[admin(
            "c",
            1_700_000_000_100,
            "USER",
            "CREATE",
            "users/u1",
            Some(create),
        )],
    )
    .await;
    apply(
        &store,
        &[admin(
            "u",
            1_700_000_000_200,
            "USER",
            "UPDATE",
            "users/u1",
            Some(r#"{"emailVerified":true,"attributes":{"dept":["dev"]}}"#),
        )],
    )
    .await;
    let mut expected = UserRow::new("u1");
    expected.username = Some("bob".into());
    expected.email = Some("bob@example.com".into());
    expected.first_name = Some("Bob".into());
    expected.last_name = Some("Builder".into());
    expected.email_verified = Some(true);
    expected.enabled = Some(true);
    expected.attributes = Some(serde_json::json!({"dept": ["dev"]}));
    expected.created_at = Some(1_700_000_000_000);
    assert_eq!(users(&store).await, vec![expected]);
}

#[tokio::test]
async fn deletion_is_terminal_and_ends_sessions() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(
        &store,
        &[
            login("l1", 1000, "s1"),
            login("l2", 1500, "s2"),
            ue_in("s2", "out", 1600, "LOGOUT", ""),
        ],
    )
    .await;
    apply(&store, &[ue("del", 2000, "DELETE_ACCOUNT", "")]).await;
    // An update older than the deletion, arriving after it, changes the profile field it
    // owns but never clears the deletion.
    apply(
        &store,
        &[admin(
            "old",
            1800,
            "USER",
            "UPDATE",
            "users/u1",
            Some(r#"{"firstName":"Late","enabled":true}"#),
        )],
    )
    .await;
    let user = user(&store, "u1").await;
    assert_eq!(user.deleted_at, Some(2000));
    assert_eq!(user.first_name.as_deref(), Some("Late"));
    // A login from before the deletion learnt about only now still ends at the deletion.
    apply(&store, &[login("l3", 1900, "s3")]).await;
    let rows = sessions(&store).await;
    assert_eq!(
        rows[0],
        ended(open_session("s1", 1000), 2000, "user_deleted")
    );
    assert_eq!(
        rows[1],
        ended(open_session("s2", 1500), 1600, "logout"),
        "ended before the deletion"
    );
    assert_eq!(
        rows[2],
        ended(open_session("s3", 1900), 2000, "user_deleted")
    );
    // The admin API delete path records the same.
    let db2 = TestDb::new().await;
    let store2 = db2.store().await;
    apply(
        &store2,
        &[
            admin("d", 2000, "USER", "DELETE", "users/u1", None),
            login("l1", 1000, "s1"),
        ],
    )
    .await;
    assert_eq!(user_deleted_at(&store2).await, Some(2000));
    assert_eq!(
        session(&store2, "s1").await,
        ended(open_session("s1", 1000), 2000, "user_deleted")
    );
}

async fn user_deleted_at(store: &keycloak_sync::store::Store) -> Option<i64> {
    user(store, "u1").await.deleted_at
}

#[tokio::test]
async fn disabling_keeps_sessions_open_as_keycloak_does() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(
        &store,
        &[
            login("l1", 1000, "s1"),
            ue("lock", 2000, "USER_DISABLED_BY_PERMANENT_LOCKOUT", ""),
            admin(
                "on",
                3000,
                "USER",
                "UPDATE",
                "users/u1",
                Some(r#"{"enabled":true}"#),
            ),
            login("l2", 4000, "s2"),
        ],
    )
    .await;
    // Keycloak 26 lists a disabled user's sessions and honours them again once the user
    // is enabled: a lockout ends none.
    assert_eq!(
        sessions(&store).await,
        vec![open_session("s1", 1000), open_session("s2", 4000)]
    );
    assert_eq!(user(&store, "u1").await.enabled, Some(true));
    // Nor does an admin disable.
    apply(
        &store,
        &[admin(
            "off",
            5000,
            "USER",
            "UPDATE",
            "users/u1",
            Some(r#"{"enabled":false}"#),
        )],
    )
    .await;
    assert_eq!(session(&store, "s2").await, open_session("s2", 4000));
    assert_eq!(user(&store, "u1").await.enabled, Some(false));
}

#[tokio::test]
async fn admin_session_delete_ends_that_session() {
    let db = TestDb::new().await;
    let store = db.store().await;
    apply(
        &store,
        &[admin(
            "k",
            2000,
            "USER_SESSION",
            "DELETE",
            "sessions/s1",
            None,
        )],
    )
    .await;
    apply(&store, &[login("l1", 1000, "s1")]).await;
    assert_eq!(
        sessions(&store).await,
        vec![ended(open_session("s1", 1000), 2000, "admin")]
    );
}

#[tokio::test]
async fn unknown_events_are_recorded_as_ignored() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let outcomes = apply(
        &store,
        &[
            ue("c", 1, "SEND_VERIFY_EMAIL", ""),
            admin("k", 2, "CLIENT", "UPDATE", "clients/x", None),
        ],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Ignored, Outcome::Ignored]);
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT message_id, kind, type, outcome FROM processed_events ORDER BY message_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("inbox");
    assert_eq!(
        rows,
        vec![
            (
                "c".into(),
                "user".into(),
                "SEND_VERIFY_EMAIL".into(),
                "ignored".into()
            ),
            (
                "k".into(),
                "admin".into(),
                "CLIENT.UPDATE".into(),
                "ignored".into()
            ),
        ]
    );
    assert!(users(&store).await.is_empty());
}

#[tokio::test]
async fn duplicates_change_nothing_within_and_across_batches() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let first = login("l1", 1000, "s1");
    let outcomes = apply(&store, &[first.clone(), first.clone()]).await;
    assert_eq!(outcomes, vec![Outcome::Applied, Outcome::Duplicate]);
    let outcomes = apply(&store, &[first.clone(), ue("r", 1100, "REFRESH_TOKEN", "")]).await;
    assert_eq!(outcomes, vec![Outcome::Duplicate, Outcome::Applied]);
    assert_eq!(user(&store, "u1").await.login_count, 1);
    assert_eq!(session(&store, "s1").await.refresh_count, 1);
}

#[tokio::test]
async fn concurrent_deliveries_of_the_same_events_count_once() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let events: Vec<Event> = (0..40)
        .map(|i| login(&format!("l{i}"), 1000 + i, &format!("s{i}")))
        .collect();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let store = store.clone();
        let mut events = events.clone();
        events.reverse();
        tasks.push(tokio::spawn(async move {
            store.apply(&events).await.expect("apply")
        }));
    }
    let mut applied = 0;
    for task in tasks {
        applied += task
            .await
            .expect("task")
            .iter()
            .filter(|o| **o == Outcome::Applied)
            .count();
    }
    assert_eq!(applied, 40, "each event is applied by exactly one delivery");
    assert_eq!(user(&store, "u1").await.login_count, 40);
    assert_eq!(sessions(&store).await.len(), 40);
}

#[tokio::test]
async fn revocations_remove_vault_rows_issued_before_them() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let insert = |user: &'static str,
                  kind: &'static str,
                  session: &'static str,
                  client: &'static str,
                  issued: i64| {
        let pool = store.pool().clone();
        async move {
            sqlx::query(
                "INSERT INTO auth_vault (id, realm_id, user_id, token_type, session_id, client_id, key_id,
                     nonce, ciphertext, issued_at, issued_ver)
                 VALUES (gen_random_uuid(), 'r', $1, $2, $3, $4, 'k1', '\\x00', '\\x00', ms_ts($5), $5::text)",
            )
            .bind(user)
            .bind(kind)
            .bind(session)
            .bind(client)
            .bind(issued)
            .execute(&pool)
            .await
            .expect("insert vault row");
        }
    };
    insert("u1", "refresh", "s1", "web", 100).await;
    insert("u1", "offline", "s2", "web", 100).await;
    insert("u1", "offline", "s3", "cli", 100).await;
    insert("u2", "refresh", "s9", "web", 100).await;
    insert("u2", "offline", "s8", "web", 900).await;
    let remaining = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT user_id || ':' || session_id FROM auth_vault ORDER BY 1",
        )
        .fetch_all(store.pool())
        .await
        .expect("vault")
    };
    apply(&store, &[ue("out", 500, "LOGOUT", "")]).await;
    assert_eq!(remaining().await, vec!["u1:s2", "u1:s3", "u2:s8", "u2:s9"]);
    apply(
        &store,
        &[ue(
            "g",
            500,
            "REVOKE_GRANT",
            r#","details":{"revoked_client":"cli"}"#,
        )],
    )
    .await;
    assert_eq!(remaining().await, vec!["u1:s2", "u2:s8", "u2:s9"]);
    let disable_u2 = event(
        r#"{"schema":1,"kind":"user","id":"lk","time":500,"realmId":"r","type":"USER_DISABLED_BY_PERMANENT_LOCKOUT","userId":"u2"}"#,
    );
    apply(&store, &[disable_u2]).await;
    // The token issued after the disabling (time 900) is not touched by it.
    assert_eq!(remaining().await, vec!["u1:s2", "u2:s8"]);
    apply(&store, &[ue("del", 600, "DELETE_ACCOUNT", "")]).await;
    assert_eq!(remaining().await, vec!["u2:s8"]);
}

/// A batch the database refuses as a whole is split until the culprit is found; the
/// rest is applied and the culprit comes back with the database's reason. (The trigger
/// refuses the data as a constraint would, SQLSTATE 23514: only data errors are the
/// event's fault.)
#[tokio::test]
async fn a_batch_rejected_by_the_database_is_split_to_find_the_culprit() {
    let db = TestDb::new().await;
    let store = db.store().await;
    sqlx::query(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.username = 'poison' THEN
                 RAISE EXCEPTION 'refusing user %', NEW.id USING ERRCODE = 'check_violation';
             END IF;
             RETURN NEW;
         END $$",
    )
    .execute(store.pool())
    .await
    .expect("function");
    sqlx::query("CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION refuse_poison()")
        .execute(store.pool())
        .await
        .expect("trigger");
    let events: Vec<Event> = (0..10)
        .map(|i| {
            let name = if i == 6 { "poison".to_string() } else { format!("user{i}") };
            event(&format!(
                r#"{{"schema":1,"kind":"user","id":"r{i}","time":{},"realmId":"r","type":"REGISTER","userId":"u{i}","details":{{"username":"{name}"}}}}"#,
                1000 + i
            ))
        })
        .collect();
    let results = store
        .apply_isolating(&events)
        .await
        .expect("only the culprit fails");
    assert_eq!(results.len(), 10);
    for (i, result) in results.iter().enumerate() {
        match (i, result) {
            (6, Err(reason)) => {
                assert!(reason.to_string().contains("refusing user u6"), "{reason}")
            }
            (6, Ok(outcome)) => panic!("the culprit was applied: {outcome:?}"),
            (_, Ok(outcome)) => assert_eq!(*outcome, Outcome::Applied),
            (_, Err(reason)) => panic!("event {i} rejected: {reason}"),
        }
    }
    assert_eq!(users(&store).await.len(), 9);
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(
        recorded, 9,
        "the rejected event is not marked processed, so a fix and a replay can apply it"
    );
}

#[tokio::test]
async fn the_inbox_forgets_only_entries_older_than_the_retention() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let events: Vec<_> = (0..25)
        .map(|n| {
            event(&format!(
                r#"{{"schema":1,"kind":"user","id":"e{n}","time":{},"realmId":"r","type":"LOGIN","userId":"u1","sessionId":"s{n}"}}"#,
                1_000 + n
            ))
        })
        .collect();
    apply(&store, &events).await;
    sqlx::query(
        "UPDATE processed_events SET processed_at = now() - interval '40 days'
         WHERE message_id IN ('e0', 'e1', 'e2', 'e3', 'e4')",
    )
    .execute(store.pool())
    .await
    .expect("age some entries");

    let pruned = store
        .prune_inbox(std::time::Duration::from_secs(30 * 86_400))
        .await
        .expect("prune");
    assert_eq!(pruned, 5);
    assert_eq!(
        count(&store, "SELECT count(*) FROM processed_events").await,
        20
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM processed_events WHERE message_id = 'e0'"
        )
        .await,
        0
    );
    // What was forgotten is applied again; what is remembered stays a duplicate.
    let outcomes = apply(&store, &events[..6]).await;
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Applied).count(),
        5
    );
    assert_eq!(outcomes[5], Outcome::Duplicate);
    assert_eq!(
        store
            .prune_inbox(std::time::Duration::from_secs(30 * 86_400))
            .await
            .expect("prune"),
        0
    );
}

#[tokio::test]
async fn a_session_first_seen_at_a_code_exchange_or_impersonation_is_created_in_either_order() {
    for reversed in [false, true] {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut events = vec![
            ue("c1", 2_000, "CODE_TO_TOKEN", ""),
            ue_in("s2", "i1", 3_000, "IMPERSONATE", ""),
            ue("r1", 4_000, "REFRESH_TOKEN", ""),
        ];
        if reversed {
            events.reverse();
        }
        for event in &events {
            apply(&store, std::slice::from_ref(event)).await;
        }
        assert_eq!(
            session(&store, "s1").await,
            SessionRow {
                last_refresh_at: Some(4_000),
                refresh_count: 1,
                ..open_session("s1", 2_000)
            },
            "reversed: {reversed}"
        );
        assert_eq!(session(&store, "s2").await, open_session("s2", 3_000));
        // A code exchange is no login: nothing counts one.
        assert_eq!(
            count(&store, "SELECT count(*) FROM users WHERE login_count > 0").await,
            0
        );
    }
}

#[tokio::test]
async fn valid_events_without_what_their_effect_needs_are_recorded_as_ignored() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let first_broker_login = event(
        r#"{"schema":1,"kind":"user","id":"fb1","time":1000,"realmId":"r","type":"UPDATE_PROFILE","clientId":"web","details":{"updated_email":"alice@example.com","context":"REGISTRATION"}}"#,
    );
    let long_redirect = event(&format!(
        r#"{{"schema":1,"kind":"user","id":"par1","time":2000,"realmId":"r","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"s1","details":{{"username":"alice","redirect_uri":"https://app.example/cb?request_uri={}"}}}}"#,
        "x".repeat(8_000)
    ));
    let outcomes = store
        .apply_isolating(&[first_broker_login, long_redirect])
        .await
        .expect("apply");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0].as_ref().ok(), Some(&Outcome::Ignored));
    assert_eq!(outcomes[1].as_ref().ok(), Some(&Outcome::Applied));
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM processed_events WHERE message_id = 'fb1' AND outcome = 'ignored'"
        )
        .await,
        1
    );
    assert_eq!(user(&store, "u1").await.login_count, 1);
}

/// Keycloak's `POST users/{id}/logout` and `DELETE users/{id}/consents/{client}` are admin
/// USER ACTION events; no event is emitted per session.
#[tokio::test]
async fn an_admin_logout_ends_earlier_sessions_and_a_consent_revocation_its_grant_in_any_order() {
    let logout = || admin("adm-out", 2000, "USER", "ACTION", "users/u1/logout", None);
    let revoke = || {
        admin(
            "adm-rev",
            2500,
            "USER",
            "ACTION",
            "users/u1/consents/web",
            None,
        )
    };
    for reversed in [false, true] {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut batches = vec![
            vec![login("l1", 1000, "s1")],
            vec![logout(), revoke()],
            vec![login("l2", 3000, "s2")],
        ];
        if reversed {
            batches.reverse();
        }
        for batch in &batches {
            apply(&store, batch).await;
        }
        let rows = sessions(&store).await;
        assert_eq!(
            rows,
            vec![
                ended(open_session("s1", 1000), 2000, "admin"),
                open_session("s2", 3000)
            ],
            "reversed: {reversed}"
        );
        let grants = count(
            &store,
            "SELECT count(*) FROM grant_revocations WHERE user_id = 'u1' AND client_id = 'web'",
        )
        .await;
        assert_eq!(
            grants, 1,
            "the consent revocation is kept for tokens learnt later"
        );
        let cutoffs = count(
            &store,
            "SELECT count(*) FROM session_cutoffs WHERE user_id = 'u1' AND reason = 'admin'",
        )
        .await;
        assert_eq!(cutoffs, 1);
    }
}

/// Keycloak 26.5+ reports a session its expiry task removed as USER_SESSION_DELETED,
/// possibly minutes late: an earlier known end stays, a later activity never reopens it.
#[tokio::test]
async fn a_session_deleted_by_keycloaks_expiry_ends_as_expired_unless_it_ended_earlier() {
    for reversed in [false, true] {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut batches = vec![
            vec![login("l1", 1000, "s1"), login("l2", 1100, "s2")],
            vec![ue_in("s2", "out2", 1500, "LOGOUT", "")],
            vec![
                ue_in(
                    "s1",
                    "exp1",
                    9000,
                    "USER_SESSION_DELETED",
                    r#","details":{"reason":"user_session_expired"}"#,
                ),
                ue_in(
                    "s2",
                    "exp2",
                    9000,
                    "USER_SESSION_DELETED",
                    r#","details":{"reason":"user_session_expired"}"#,
                ),
            ],
        ];
        if reversed {
            batches.reverse();
        }
        for batch in &batches {
            apply(&store, batch).await;
        }
        assert_eq!(
            sessions(&store).await,
            vec![
                ended(open_session("s1", 1000), 9000, "expired"),
                ended(open_session("s2", 1100), 1500, "logout"),
            ],
            "reversed: {reversed}"
        );
    }
}

/// One Keycloak event counts once whichever path brought it: the provider's envelope
/// (Keycloak's id, 26.2+), the aznamier queue (no id), a REST backfill with and without
/// id, in any order; the first copy's own id is kept beside the key.
#[tokio::test]
async fn one_keycloak_event_counts_once_whatever_path_brought_it() {
    let envelope = r#"{"schema":1,"kind":"user","id":"kc-26-id","time":1732270000123,"realmId":"r","realmName":"acme","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"s1","ipAddress":"203.0.113.7","details":{"username":"alice","auth_method":"openid-connect"}}"#;
    let aznamier = r#"{"@class":"com.github.aznamier.keycloak.event.provider.EventClientNotificationMqMsg","time":1732270000123,"type":"LOGIN","realmId":"r","clientId":"web","userId":"u1","sessionId":"s1","ipAddress":"203.0.113.7","details":{"auth_method":"openid-connect","username":"alice"}}"#;
    let rest_with_id = r#"{"id":"kc-26-id","time":1732270000123,"type":"LOGIN","realmId":"r","clientId":"web","userId":"u1","sessionId":"s1","ipAddress":"203.0.113.7","error":null,"details":{"username":"alice","auth_method":"openid-connect"}}"#;
    let rest_without_id = r#"{"time":1732270000123,"type":"LOGIN","realmId":"r","clientId":"web","userId":"u1","sessionId":"s1","ipAddress":"203.0.113.7","details":{"username":"alice","auth_method":"openid-connect"}}"#;
    let admin_envelope = r#"{"schema":1,"kind":"admin","id":"kc-adm","time":1732270000200,"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u1","authDetails":{"realmId":"master","userId":"adm"},"representation":"{\"firstName\":\"Alice\"}"}"#;
    let admin_aznamier = r#"{"@class":"com.github.aznamier.keycloak.event.provider.EventAdminNotificationMqMsg","time":1732270000200,"realmId":"r","authDetails":{"realmId":"master","clientId":"security-admin-console","userId":"adm","ipAddress":"10.1.1.1"},"resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u1","representation":"{\"firstName\":\"Alice\"}"}"#;
    let paths = [envelope, aznamier, rest_with_id, rest_without_id];
    for first in 0..paths.len() {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut order: Vec<&str> = paths.iter().cycle().skip(first).take(4).copied().collect();
        order.extend([admin_aznamier, admin_envelope]);
        for line in &order {
            apply(&store, &[event(line)]).await;
        }
        let alice = user(&store, "u1").await;
        assert_eq!(alice.login_count, 1, "first path {first}");
        assert_eq!(alice.first_name.as_deref(), Some("Alice"));
        assert_eq!(
            count(&store, "SELECT count(*) FROM processed_events").await,
            2,
            "one inbox row per Keycloak event"
        );
        let kept: String =
            sqlx::query_scalar("SELECT message_id FROM processed_events WHERE type = 'LOGIN'")
                .fetch_one(store.pool())
                .await
                .expect("inbox");
        assert_eq!(kept, event(order[0]).message_id.as_str());
    }
}

/// Events recorded before content keys (the message id was the key) stay duplicates.
#[tokio::test]
async fn an_event_recorded_under_its_message_id_before_content_keys_stays_a_duplicate() {
    let db = TestDb::new().await;
    let store = db.store().await;
    sqlx::query(
        "INSERT INTO processed_events (event_id, kind, type, realm_id, event_time, outcome)
         VALUES ('legacy-1', 'user', 'LOGIN', 'r', now(), 'applied')",
    )
    .execute(store.pool())
    .await
    .expect("legacy row");
    let outcomes = apply(
        &store,
        &[
            ue("legacy-1", 1000, "LOGIN", ""),
            ue("new-1", 2000, "LOGIN", ""),
        ],
    )
    .await;
    assert_eq!(outcomes, vec![Outcome::Duplicate, Outcome::Applied]);
    assert_eq!(user(&store, "u1").await.login_count, 1);
}

/// Every value written goes through `ms_ts`: declared no less volatile than its body,
/// Postgres inlines it into the statement instead of calling it (about 1.2 µs a call).
#[tokio::test]
async fn the_time_conversions_are_inlined_into_the_statements_that_use_them() {
    let db = TestDb::new().await;
    let store = db.store().await;
    for call in [
        "ms_ts(n)",
        "ts_ms(ms_ts(n))",
        "session_expiry(ms_ts(n), ms_ts(n), false, NULL::realm_session_policies)",
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&format!(
            "EXPLAIN (VERBOSE, COSTS OFF) SELECT {call} FROM generate_series(1::int8, 2::int8) n"
        ))
        .fetch_all(store.pool())
        .await
        .expect("explain");
        let output = plan.join("\n");
        assert!(
            !output.contains("ms_ts(")
                && !output.contains("ts_ms(")
                && !output.contains("session_expiry("),
            "{call} is called, not inlined:\n{output}"
        );
    }
    // And the same results as before.
    let same: bool = sqlx::query_scalar(
        "SELECT ms_ts(1732270000123) = '2024-11-22 10:06:40.123+00'::timestamptz
            AND ts_ms('2024-11-22 10:06:40.123+00') = 1732270000123",
    )
    .fetch_one(store.pool())
    .await
    .expect("select");
    assert!(same);
}

//! The change feed against a real Postgres: `NOTIFY` after commit and never for a batch
//! rolled back, catch-up from `changes` after a disconnect, no seq a reader could skip
//! under concurrent writers, nothing new on a replay.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use keycloak_sync::store::Store;
use keycloak_sync::vault::KeyRing;
use secrecy::SecretString;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection};

use crate::support::*;

fn channel() -> String {
    format!("kcs_test_{}", uuid::Uuid::new_v4().simple())
}

fn ring() -> Arc<KeyRing> {
    let key = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    Arc::new(KeyRing::parse(&SecretString::from(format!("k1:{key}")), Some("k1")).expect("ring"))
}

async fn feed_store(db: &TestDb, channel: &str) -> Store {
    db.store()
        .await
        .with_vault(Some(ring()))
        .with_feed(Some(channel))
}

async fn listener(db: &TestDb, channel: &str) -> PgListener {
    let mut listener = PgListener::connect(&db.url).await.expect("listener");
    listener.listen(channel).await.expect("listen");
    listener
}

/// The next notification's payload, or None within `wait`.
async fn next(listener: &mut PgListener, wait: Duration) -> Option<serde_json::Value> {
    let notification = tokio::time::timeout(wait, listener.recv())
        .await
        .ok()?
        .ok()?;
    Some(serde_json::from_str(notification.payload()).expect("payload is JSON"))
}

/// `(seq, kind, row_id)` of every change, in seq order.
async fn changes(store: &Store) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT seq, kind, row_id FROM keycloak_sync.changes ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .expect("changes")
}

fn user_event(id: &str, time: i64, kind: &str, user: &str, session: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"r","type":"{kind}","clientId":"web","userId":"{user}","sessionId":"{session}","details":{{"username":"{user}-name"}}}}"#
    )
}

fn token_message(id: &str, time: i64, user: &str, session: &str) -> String {
    format!(
        r#"{{"schema":1,"kind":"token","id":"{id}","time":{time},"realmId":"r","userId":"{user}","sessionId":"{session}","clientId":"web","tokenType":"refresh","token":"SECRET-{id}"}}"#
    )
}

fn events(lines: &[String]) -> Vec<keycloak_sync::core::event::Event> {
    lines.iter().map(|l| event(l)).collect()
}

#[tokio::test]
async fn each_commit_is_announced_after_it_with_what_it_changed() {
    let db = TestDb::new().await;
    let channel = channel();
    let store = feed_store(&db, &channel).await;
    let mut listener = listener(&db, &channel).await;

    apply(
        &store,
        &events(&[
            user_event("reg", 1000, "REGISTER", "u1", "s1"),
            user_event("login", 1100, "LOGIN", "u1", "s1"),
            token_message("t1", 1200, "u1", "s1"),
        ]),
    )
    .await;
    let first = next(&mut listener, Duration::from_secs(5))
        .await
        .expect("a notification for the first commit");
    // Sent after the commit: what it announces is already readable.
    let stored = changes(&store).await;
    let listed: Vec<(String, String)> = first["changes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap_or_default().to_string(),
                c["table"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut kinds: Vec<&str> = listed.iter().map(|(k, _)| k.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["session_started", "token_stored", "user_created"]);
    assert!(listed.contains(&("token_stored".into(), "auth_vault".into())));
    assert_eq!(first["from"], stored[0].0);
    assert_eq!(first["to"], stored[stored.len() - 1].0);
    assert!(
        !first.to_string().contains("SECRET"),
        "never a token: {first}"
    );

    // A login into a new session: the session starts; the user's profile (the username the
    // LOGIN repeats, the login counters) is no change.
    apply(
        &store,
        &events(&[user_event("login-s9", 1250, "LOGIN", "u1", "s9")]),
    )
    .await;
    let login = next(&mut listener, Duration::from_secs(5))
        .await
        .expect("login");
    let kinds: Vec<&str> = login["changes"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["session_started"], "{login}");
    let first_to = login["to"].clone();

    // A disabling revokes the token and leaves the sessions open (as Keycloak does);
    // logins alone are no change.
    apply(
        &store,
        &events(&[
            user_event("login2", 1300, "LOGIN", "u1", "s1"),
            r#"{"schema":1,"kind":"admin","id":"dis","time":2000,"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u1","representation":"{\"enabled\":false}"}"#.to_string(),
        ]),
    )
    .await;
    let second = next(&mut listener, Duration::from_secs(5))
        .await
        .expect("a notification for the second commit");
    let kinds = kinds_with_reasons(&second);
    assert_eq!(kinds, ["token_revoked", "user_disabled"]);
    assert_eq!(
        second["from"].as_i64(),
        first_to.as_i64().map(|t| t + 1),
        "consecutive ranges"
    );

    // Deleting the user.
    apply(
        &store,
        &events(&[user_event("del", 3000, "DELETE_ACCOUNT", "u1", "s1")]),
    )
    .await;
    let third = next(&mut listener, Duration::from_secs(5))
        .await
        .expect("third");
    let kinds = kinds_with_reasons(&third);
    assert_eq!(
        kinds,
        [
            "session_ended:user_deleted", // s1
            "session_ended:user_deleted", // s9
            "user_deleted"
        ]
    );
    assert!(third["changes"]
        .as_array()
        .expect("list")
        .iter()
        .all(|c| c["user_id"] == "u1"));
}

#[tokio::test]
async fn a_batch_rolled_back_at_commit_announces_nothing() {
    let db = TestDb::new().await;
    let channel = channel();
    let store = feed_store(&db, &channel).await;
    let mut admin = PgConnection::connect(&db.url).await.expect("connect");
    // Refuses the commit itself, after the feed's rows and notifications were queued.
    sqlx::raw_sql(
        "CREATE TABLE keycloak_sync.refuse_commits (on_ boolean NOT NULL);
         INSERT INTO keycloak_sync.refuse_commits VALUES (true);
         CREATE FUNCTION keycloak_sync.refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF (SELECT on_ FROM keycloak_sync.refuse_commits) THEN
                 RAISE EXCEPTION 'commit refused for the test' USING ERRCODE = '23514';
             END IF;
             RETURN NULL;
         END $$;
         CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON keycloak_sync.changes
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keycloak_sync.refuse_commit();",
    )
    .execute(&mut admin)
    .await
    .expect("install the refusal");
    let mut listener = listener(&db, &channel).await;
    let refused = store
        .apply(&events(&[user_event("reg", 1000, "REGISTER", "u1", "s1")]))
        .await;
    assert!(refused.is_err(), "the commit was refused");
    assert!(
        next(&mut listener, Duration::from_millis(700))
            .await
            .is_none(),
        "no notification for a rolled-back batch"
    );
    assert!(changes(&store).await.is_empty());
    assert_eq!(count(&store, "SELECT count(*) FROM users").await, 0);

    sqlx::raw_sql("UPDATE keycloak_sync.refuse_commits SET on_ = false")
        .execute(&mut admin)
        .await
        .expect("allow");
    apply(
        &store,
        &events(&[user_event("reg", 1000, "REGISTER", "u1", "s1")]),
    )
    .await;
    let announced = next(&mut listener, Duration::from_secs(5))
        .await
        .expect("announced");
    assert_eq!(announced["changes"][0]["kind"], "user_created");
}

#[tokio::test]
async fn a_reader_that_was_away_catches_up_from_its_last_seq_and_a_replay_adds_nothing() {
    let db = TestDb::new().await;
    let channel = channel();
    let store = feed_store(&db, &channel).await;
    let first = events(&[
        user_event("reg", 1000, "REGISTER", "u1", "s1"),
        user_event("login", 1100, "LOGIN", "u1", "s1"),
    ]);
    apply(&store, &first).await;
    let last_seen = changes(&store).await.last().map(|c| c.0).expect("changes");

    // Away: a listener that is not connected hears nothing of these.
    let later = events(&[
        user_event("reg2", 2000, "REGISTER", "u2", "s2"),
        user_event("login2", 2100, "LOGIN", "u2", "s2"),
        user_event("logout", 2200, "LOGOUT", "u1", "s1"),
    ]);
    apply(&store, &later[..2]).await;
    apply(&store, &later[2..]).await;

    // Back: listen first, then read from the stored position.
    let mut listener = listener(&db, &channel).await;
    let missed: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, kind, row_id FROM keycloak_sync.changes WHERE seq > $1 ORDER BY seq",
    )
    .bind(last_seen)
    .fetch_all(store.pool())
    .await
    .expect("catch up");
    let kinds: Vec<(&str, &str)> = missed
        .iter()
        .map(|(_, k, r)| (k.as_str(), r.as_str()))
        .collect();
    assert!(kinds.contains(&("user_created", "u2")), "{kinds:?}");
    assert!(kinds.contains(&("session_started", "s2")), "{kinds:?}");
    assert!(kinds.contains(&("session_ended", "s1")), "{kinds:?}");
    assert_eq!(missed.len(), 3);

    // The same events again (redelivery, replay of the same file): no new changes.
    let before = changes(&store).await;
    apply(&store, &first).await;
    apply(&store, &later).await;
    assert_eq!(changes(&store).await, before);
    assert!(
        next(&mut listener, Duration::from_millis(500))
            .await
            .is_none(),
        "nothing announced for duplicates"
    );
}

/// Writers commit concurrently while a reader polls `WHERE seq > last`: a seq that
/// commits after the reader moved past it would be skipped for ever. Each writer's commit
/// is slowed down at random (a deferred trigger) so that commits interleave.
#[tokio::test]
async fn concurrent_writers_never_leave_a_seq_a_reader_could_skip() {
    let db = TestDb::new().await;
    let channel = channel();
    let store = feed_store(&db, &channel).await;
    sqlx::raw_sql(
        "CREATE FUNCTION keycloak_sync.slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(random() * 0.01); RETURN NULL; END $$;
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON keycloak_sync.changes
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION keycloak_sync.slow_commit();",
    )
    .execute(store.pool())
    .await
    .expect("slow commits");

    let writers: Vec<_> = (0..6)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..25 {
                    let user = format!("w{w}-u{i}");
                    let line = user_event(&format!("reg-{user}"), 1000 + i, "REGISTER", &user, "s");
                    store.apply(&[event(&line)]).await.expect("apply");
                }
            })
        })
        .collect();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut last = 0i64;
            for _ in 0..2_000 {
                let rows: Vec<i64> = sqlx::query_scalar(
                    "SELECT seq FROM keycloak_sync.changes WHERE seq > $1 ORDER BY seq",
                )
                .bind(last)
                .fetch_all(store.pool())
                .await
                .expect("read");
                for seq in rows {
                    seen.insert(seq);
                    last = seq;
                }
                if seen.len() >= 150 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            seen
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    let seen = reader.await.expect("reader");
    let all: BTreeSet<i64> = changes(&store).await.into_iter().map(|c| c.0).collect();
    assert_eq!(all.len(), 150, "one change per registration");
    let skipped: Vec<&i64> = all.difference(&seen).collect();
    assert!(skipped.is_empty(), "the reader skipped {skipped:?}");
}

/// A commit of hundreds of changes: several notifications, each under Postgres's limit,
/// ranges consecutive and in order, every change listed once.
#[tokio::test]
async fn a_large_commit_is_split_into_few_notifications_under_the_limit() {
    let db = TestDb::new().await;
    let channel = channel();
    let store = feed_store(&db, &channel).await;
    let mut listener = listener(&db, &channel).await;
    let lines: Vec<String> = (0..600)
        .map(|i| {
            user_event(
                &format!("reg-{i}"),
                1000 + i,
                "REGISTER",
                &format!("user-{i:04}"),
                "s",
            )
        })
        .collect();
    apply(&store, &events(&lines)).await;
    let stored = changes(&store).await;
    assert_eq!(stored.len(), 600);
    let mut next_from = stored[0].0;
    let mut listed = 0;
    let mut notifications = 0;
    while next_from <= stored[599].0 {
        let payload = next(&mut listener, Duration::from_secs(5))
            .await
            .expect("a notification for every part of the range");
        notifications += 1;
        assert!(payload.to_string().len() < 8_000);
        assert_eq!(
            payload["from"].as_i64(),
            Some(next_from),
            "consecutive, in order"
        );
        listed += payload["changes"].as_array().expect("list").len();
        next_from = payload["to"].as_i64().expect("to") + 1;
    }
    assert_eq!(listed, 600, "every change listed once");
    assert!(
        (2..60).contains(&notifications),
        "{notifications} notifications"
    );
}

/// `changes.retention_days`: what is older goes, in batches; what is newer stays.
#[tokio::test]
async fn changes_older_than_the_retention_are_pruned() {
    let db = TestDb::new().await;
    let channel = channel();
    let store = feed_store(&db, &channel).await;
    let lines: Vec<String> = (0..30)
        .map(|i| {
            user_event(
                &format!("reg-{i}"),
                1000 + i,
                "REGISTER",
                &format!("u{i}"),
                "s",
            )
        })
        .collect();
    apply(&store, &events(&lines)).await;
    let all: Vec<i64> = changes(&store).await.into_iter().map(|c| c.0).collect();
    assert!(all.len() >= 30, "{all:?}");
    sqlx::query("UPDATE keycloak_sync.changes SET at = now() - interval '10 days' WHERE seq <= 20")
        .execute(store.pool())
        .await
        .expect("age some changes");
    let pruned = store
        .prune_changes(Duration::from_secs(7 * 86_400))
        .await
        .expect("prune");
    assert_eq!(pruned, 20);
    let left: Vec<i64> = changes(&store).await.into_iter().map(|c| c.0).collect();
    assert_eq!(
        left,
        all.into_iter().filter(|s| *s > 20).collect::<Vec<i64>>()
    );
}

/// A notification's change kinds, each with `:reason` where it has one, sorted.
fn kinds_with_reasons(notification: &serde_json::Value) -> Vec<String> {
    let mut kinds: Vec<String> = notification["changes"]
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            let reason = c["detail"]["reason"]
                .as_str()
                .map(|r| format!(":{r}"))
                .unwrap_or_default();
            format!("{}{reason}", c["kind"].as_str().unwrap_or_default())
        })
        .collect();
    kinds.sort();
    kinds
}

//! The token vault against a real Postgres: encryption at rest, one refresh token per
//! user under concurrency, revocation in both arrival orders, rotation while writing.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use keycloak_sync::core::event::Event;
use keycloak_sync::store::vault::{self, Vault};
use keycloak_sync::store::Store;
use keycloak_sync::vault::KeyRing;
use secrecy::{ExposeSecret, SecretString};

use crate::support::*;

fn key(byte: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn keys_spec() -> String {
    format!("k1:{},k2:{},k3:{}", key(1), key(2), key(3))
}

fn ring(active: &str) -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(&SecretString::from(keys_spec()), Some(active)).expect("ring"))
}

async fn vault_store(db: &TestDb, active: &str) -> Store {
    db.store().await.with_vault(Some(ring(active)))
}

/// A token message; `slot` is (user, session, client).
fn token(
    id: &str,
    time: i64,
    kind: &str,
    slot: (&str, &str, &str),
    value: &str,
    metadata: &str,
) -> Event {
    let (user, session, client) = slot;
    event(&format!(
        r#"{{"schema":1,"kind":"token","id":"{id}","time":{time},"realmId":"r","userId":"{user}","sessionId":"{session}","clientId":"{client}","tokenType":"{kind}","token":"{value}","expiresAt":9999999999999,"metadata":{metadata}}}"#
    ))
}

fn user_event(id: &str, time: i64, event_type: &str, extra: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"r","type":"{event_type}","clientId":"web","userId":"u1","sessionId":"s1"{extra}}}"#
    ))
}

async fn vault_rows(store: &Store) -> Vec<(String, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT token_type, user_id, client_id, session_id FROM auth_vault ORDER BY 1, 3, 4",
    )
    .fetch_all(store.pool())
    .await
    .expect("vault rows")
}

#[tokio::test]
async fn tokens_are_sealed_and_read_back_with_merged_metadata() {
    let db = TestDb::new().await;
    let store = vault_store(&db, "k1").await;
    let reader = Vault::new(&store, ring("k1"));
    apply(
        &store,
        &[token(
            "t1",
            1000,
            "refresh",
            ("u1", "s1", "web"),
            "refresh-one",
            r#"{"email":"a@example.com"}"#,
        )],
    )
    .await;
    apply(
        &store,
        &[token(
            "t2",
            2000,
            "refresh",
            ("u1", "s2", "web"),
            "refresh-two",
            r#"{"device":"phone"}"#,
        )],
    )
    .await;
    apply(
        &store,
        &[token(
            "t0",
            500,
            "refresh",
            ("u1", "s0", "web"),
            "refresh-old",
            r#"{"email":"old@example.com","first":"yes"}"#,
        )],
    )
    .await;
    apply(
        &store,
        &[token(
            "o1",
            1500,
            "offline",
            ("u1", "s1", "web"),
            "offline-one",
            "{}",
        )],
    )
    .await;

    let refresh = reader
        .refresh_token(&"r".into(), &"u1".into())
        .await
        .expect("read")
        .expect("a refresh token");
    assert_eq!(
        refresh.token.expose_secret(),
        "refresh-two",
        "the newest token is kept"
    );
    assert_eq!(refresh.session_id.as_deref(), Some("s2"));
    let metadata = refresh.metadata.as_object().expect("object");
    assert_eq!(
        metadata["email"], "a@example.com",
        "newer metadata wins, older keys stay"
    );
    assert_eq!(metadata["device"], "phone");
    assert_eq!(metadata["first"], "yes");
    assert!(metadata.contains_key("updatedAt"));
    assert!(
        !format!("{refresh:?}").contains("refresh-two"),
        "Debug never shows the token"
    );
    let offline = reader
        .offline_tokens(&"r".into(), &"u1".into())
        .await
        .expect("read");
    assert_eq!(offline.len(), 1);
    assert_eq!(offline[0].token.expose_secret(), "offline-one");
    assert_eq!(
        vault_rows(&store).await.len(),
        2,
        "one refresh row per user, one offline row"
    );

    // A reader without the key cannot open them.
    let stranger = Vault::new(
        &store,
        Arc::new(
            KeyRing::parse(&SecretString::from(format!("k1:{}", key(42))), Some("k1"))
                .expect("ring"),
        ),
    );
    assert!(stranger
        .refresh_token(&"r".into(), &"u1".into())
        .await
        .is_err());
}

#[tokio::test]
async fn no_plaintext_at_rest_or_in_debug_logs() {
    let db = TestDb::new().await;
    let marker = "PLAINTEXT-MARKER-5f1e";
    let file = std::env::temp_dir().join(format!(
        "kcs-tokens-{}.jsonl",
        uuid::Uuid::new_v4().simple()
    ));
    let lines: Vec<String> = (0..20)
        .map(|i| {
            format!(
                r#"{{"schema":1,"kind":"token","id":"m{i}","time":{},"realmId":"r","userId":"u{i}","sessionId":"s{i}","clientId":"web","tokenType":"{}","token":"{marker}-{i}","metadata":{{}}}}"#,
                1000 + i,
                if i % 2 == 0 { "refresh" } else { "offline" }
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"))
        .args(["replay", file.to_str().expect("path")])
        .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
        .env("KEYCLOAK_SYNC__VAULT__KEYS", keys_spec())
        .env("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k1")
        .env("RUST_LOG", "debug")
        .output()
        .expect("replay");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(logs.contains("applied 20"), "{logs}");
    assert!(logs.contains("DEBUG"), "the log really was at debug level");
    assert!(!logs.contains(marker), "token in the debug log");

    let dump = std::process::Command::new("pg_dump")
        .arg(&db.url)
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{dump:?}");
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("auth_vault") && dump.contains("k1"),
        "the dump holds the vault"
    );
    assert!(
        !dump.contains(marker),
        "plaintext token in the database dump"
    );
    let _ = std::fs::remove_file(file);
}

#[tokio::test]
async fn fifty_concurrent_refresh_tokens_leave_one_row_with_the_latest() {
    let db = TestDb::new().await;
    let store = vault_store(&db, "k1").await;
    let messages: Vec<Event> = (0..50)
        .map(|i| {
            token(
                &format!("c{i}"),
                10_000 + i,
                "refresh",
                ("u1", &format!("s{i}"), "web"),
                &format!("token-{i}"),
                &format!(r#"{{"m{i}":{i}}}"#),
            )
        })
        .collect();
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let store = store.clone();
        let mine: Vec<Event> = messages.iter().skip(worker).step_by(10).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for message in mine {
                store
                    .apply(std::slice::from_ref(&message))
                    .await
                    .expect("apply");
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(vault_rows(&store).await.len(), 1);
    let stored = Vault::new(&store, ring("k1"))
        .refresh_token(&"r".into(), &"u1".into())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(stored.token.expose_secret(), "token-49");
    assert_eq!(stored.session_id.as_deref(), Some("s49"));
    let metadata = stored.metadata.as_object().expect("object");
    for i in 0..50 {
        assert_eq!(
            metadata[&format!("m{i}")],
            i,
            "metadata of message {i} merged"
        );
    }
}

/// Each revoking event, applied before and after the token it revokes.
#[tokio::test]
async fn every_revocation_rule_holds_in_both_arrival_orders() {
    let admin_disable = event(
        r#"{"schema":1,"kind":"admin","id":"ad","time":2000,"realmId":"r","resourceType":"USER","operationType":"UPDATE","resourcePath":"users/u1","representation":"{\"enabled\":false}"}"#,
    );
    // The online session: its offline session, and so its offline tokens, stay.
    let admin_end = event(
        r#"{"schema":1,"kind":"admin","id":"ae","time":2000,"realmId":"r","resourceType":"USER_SESSION","operationType":"DELETE","resourcePath":"sessions/s1"}"#,
    );
    let admin_end_offline = event(
        r#"{"schema":1,"kind":"admin","id":"ao","time":2000,"realmId":"r","resourceType":"USER_SESSION","operationType":"DELETE","resourcePath":"sessions/s1","representation":"{\"offline\":true}"}"#,
    );
    let rules: Vec<(&str, Event, &str)> = vec![
        ("logout", user_event("lo", 2000, "LOGOUT", ""), "refresh"),
        ("admin session end", admin_end, "refresh"),
        ("admin offline session end", admin_end_offline, "offline"),
        (
            "account deletion",
            user_event("da", 2000, "DELETE_ACCOUNT", ""),
            "offline",
        ),
        (
            "lockout",
            user_event("lk", 2000, "USER_DISABLED_BY_PERMANENT_LOCKOUT", ""),
            "refresh",
        ),
        ("admin disable", admin_disable, "offline"),
        (
            "revoke grant",
            user_event(
                "rg",
                2000,
                "REVOKE_GRANT",
                r#","details":{"revoked_client":"web"}"#,
            ),
            "offline",
        ),
    ];
    for (rule, revoking, kind) in rules {
        for revoking_first in [false, true] {
            let db = TestDb::new().await;
            let store = vault_store(&db, "k1").await;
            let older = token("old", 1000, kind, ("u1", "s1", "web"), "older-token", "{}");
            let order = if revoking_first {
                [revoking.clone(), older]
            } else {
                [older, revoking.clone()]
            };
            for event in &order {
                apply(&store, std::slice::from_ref(event)).await;
            }
            assert!(
                vault_rows(&store).await.is_empty(),
                "{rule} (revoking first: {revoking_first}) left the older token"
            );
            // A token issued after the revocation in another session is unaffected by
            // session-level rules, and by user-level ones if the user is back (not
            // tested here); a grant revocation only covers tokens issued before it.
            if matches!(
                rule,
                "revoke grant" | "logout" | "admin session end" | "admin offline session end"
            ) {
                apply(
                    &store,
                    &[token(
                        "new",
                        3000,
                        kind,
                        ("u1", "s9", "web"),
                        "newer-token",
                        "{}",
                    )],
                )
                .await;
                assert_eq!(
                    vault_rows(&store).await.len(),
                    1,
                    "{rule}: a newer token is kept"
                );
            }
        }
    }
}

#[tokio::test]
async fn refreshes_are_reflected_in_the_session_token_metadata() {
    let db = TestDb::new().await;
    let store = vault_store(&db, "k1").await;
    apply(&store, &[user_event("r1", 2000, "REFRESH_TOKEN", "")]).await;
    apply(
        &store,
        &[token(
            "t",
            1000,
            "refresh",
            ("u1", "s1", "web"),
            "tok",
            "{}",
        )],
    )
    .await;
    apply(&store, &[user_event("r2", 3000, "REFRESH_TOKEN", "")]).await;
    let stored = Vault::new(&store, ring("k1"))
        .refresh_token(&"r".into(), &"u1".into())
        .await
        .expect("read")
        .expect("row");
    assert_eq!(stored.metadata["refreshCount"], 2);
    assert_eq!(stored.metadata["lastRefresh"], 3000);
}

/// The user's refresh slot passes from a token of session s1 (refreshed) to a newer one of
/// s2: the slot's refresh count is s2's, in either arrival order.
#[tokio::test]
async fn a_replaced_token_leaves_no_refresh_count_to_another_session() {
    let older = || {
        token(
            "ta",
            1100,
            "refresh",
            ("u1", "s1", "web"),
            "tok-a",
            r#"{"device":"laptop"}"#,
        )
    };
    let newer = || token("tb", 2100, "refresh", ("u1", "s2", "web"), "tok-b", "{}");
    let refresh = || user_event("r1", 1500, "REFRESH_TOKEN", "");
    let mut results = Vec::new();
    for order in [
        vec![older(), refresh(), newer()],
        vec![newer(), older(), refresh()],
    ] {
        let db = TestDb::new().await;
        let store = vault_store(&db, "k1").await;
        for event in order {
            apply(&store, &[event]).await;
        }
        let stored = Vault::new(&store, ring("k1"))
            .refresh_token(&"r".into(), &"u1".into())
            .await
            .expect("read")
            .expect("row");
        assert_eq!(stored.session_id.as_deref(), Some("s2"));
        let mut metadata = stored.metadata.clone();
        metadata
            .as_object_mut()
            .expect("object")
            .remove("updatedAt");
        results.push(metadata);
    }
    assert!(
        results[0].get("refreshCount").is_none(),
        "s1's refreshes are not s2's: {}",
        results[0]
    );
    assert_eq!(results[0], results[1], "both arrival orders agree");
}

#[tokio::test]
async fn expired_tokens_are_purged() {
    let db = TestDb::new().await;
    let store = vault_store(&db, "k1").await;
    let expired = event(
        r#"{"schema":1,"kind":"token","id":"x","time":1,"realmId":"r","userId":"u1","tokenType":"refresh","token":"old","expiresAt":2}"#,
    );
    apply(
        &store,
        &[
            expired,
            token("y", 5, "offline", ("u1", "s1", "web"), "fresh", "{}"),
        ],
    )
    .await;
    assert_eq!(vault::purge_expired(&store).await.expect("purge"), 1);
    assert_eq!(vault_rows(&store).await.len(), 1);
}

#[tokio::test]
async fn rotation_while_writing_moves_every_row_to_the_active_key_and_resumes() {
    let db = TestDb::new().await;
    // Rows under two old keys.
    for (active, range) in [("k1", 0..150), ("k2", 150..300)] {
        let store = vault_store(&db, active).await;
        let batch: Vec<Event> = range
            .map(|i| {
                token(
                    &format!("t{i}"),
                    1000 + i,
                    "offline",
                    (&format!("u{i}"), "s", "web"),
                    &format!("token-{i}"),
                    "{}",
                )
            })
            .collect();
        apply(&store, &batch).await;
    }
    let url = db.url.clone();
    let rotate = move |extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"));
        command
            .args(["vault", "rotate", "--batch-size", "40"])
            .args(extra)
            .env("KEYCLOAK_SYNC__DATABASE__URL", &url)
            .env("KEYCLOAK_SYNC__VAULT__KEYS", keys_spec())
            .env("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k3")
            .env("KEYCLOAK_SYNC__LOG__LEVEL", "warn");
        command
    };
    // Interrupted: two batches only.
    let partial = rotate(&["--max-batches", "2"]).output().expect("rotate");
    let text = String::from_utf8_lossy(&partial.stdout);
    assert!(
        text.contains("rotated 80") && text.contains("remaining under retired keys 220"),
        "{text}"
    );
    assert!(
        !partial.status.success(),
        "an unfinished rotation exits non-zero"
    );

    // Resume while the daemon-side writer keeps storing (and replacing) tokens.
    let writer_store = vault_store(&db, "k3").await;
    let writer = tokio::spawn(async move {
        for i in 0..300 {
            let message = token(
                &format!("w{i}"),
                50_000 + i,
                "offline",
                (&format!("u{i}"), "s", "web"),
                &format!("rewritten-{i}"),
                "{}",
            );
            writer_store.apply(&[message]).await.expect("write");
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    let finished = tokio::task::spawn_blocking({
        let rotate = rotate.clone();
        move || rotate(&[]).output().expect("rotate")
    })
    .await
    .expect("join");
    writer.await.expect("writer");
    let text = String::from_utf8_lossy(&finished.stdout);
    assert!(
        finished.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert!(text.contains("remaining under retired keys 0"), "{text}");

    let store = vault_store(&db, "k3").await;
    let under: Vec<(String, i64)> =
        sqlx::query_as("SELECT key_id, count(*) FROM auth_vault GROUP BY 1")
            .fetch_all(store.pool())
            .await
            .expect("keys");
    assert_eq!(under, vec![("k3".to_string(), 300)]);
    let reader = Vault::new(&store, ring("k3"));
    for i in (0..300).step_by(7) {
        let tokens = reader
            .offline_tokens(&"r".into(), &format!("u{i}").into())
            .await
            .expect("read");
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            tokens[0].token.expose_secret(),
            format!("rewritten-{i}"),
            "no lost update for u{i}"
        );
    }
    // Status never prints token values.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"))
        .args(["vault", "status"])
        .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
        .env("KEYCLOAK_SYNC__VAULT__KEYS", keys_spec())
        .env("KEYCLOAK_SYNC__VAULT__ACTIVE_KEY", "k3")
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("offline") && text.contains("k3") && text.contains("300"),
        "{text}"
    );
    assert!(!text.contains("rewritten"), "{text}");
}

/// Keycloak's admin `DELETE sessions/{id}` removes the online session only: the offline
/// session of the same id keeps its tokens. With `isOffline=true` (representation
/// `{"offline":true}`) it revokes the offline session and ends the online one with it.
/// Without a representation (older Keycloak, or representations off) it is taken as the
/// online deletion, which is all older versions could do. Either order, same vault.
#[tokio::test]
async fn an_admin_session_delete_drops_offline_tokens_only_for_the_offline_session() {
    let delete = |id: &str, session: &str, offline: Option<bool>| {
        let rep = offline
            .map(|o| format!(r#","representation":"{{\"offline\":{o}}}""#))
            .unwrap_or_default();
        event(&format!(
            r#"{{"schema":1,"kind":"admin","id":"{id}","time":2000,"realmId":"r","resourceType":"USER_SESSION","operationType":"DELETE","resourcePath":"sessions/{session}"{rep}}}"#
        ))
    };
    let login = |id: &str, session: &str| {
        event(&format!(
            r#"{{"schema":1,"kind":"user","id":"{id}","time":1000,"realmId":"r","type":"LOGIN","clientId":"web","userId":"u1","sessionId":"{session}"}}"#
        ))
    };
    let tok = |id: &str, kind: &str, session: &str| {
        token(id, 1100, kind, ("u1", session, "web"), "opaque", "{}")
    };
    let history = vec![
        login("l1", "s1"),
        login("l2", "s2"),
        login("l3", "s3"),
        tok("t1r", "refresh", "s1"),
        tok("t1o", "offline", "s1"),
        tok("t2o", "offline", "s2"),
        tok("t3o", "offline", "s3"),
        delete("d1", "s1", Some(false)),
        delete("d2", "s2", Some(true)),
        delete("d3", "s3", None),
    ];
    for reversed in [false, true] {
        let db = TestDb::new().await;
        let store = vault_store(&db, "k1").await;
        let mut events = history.clone();
        if reversed {
            events.reverse();
        }
        for event in events {
            apply(&store, &[event]).await;
        }
        let vault: Vec<String> =
            sqlx::query_scalar("SELECT session_id || ':' || token_type FROM auth_vault ORDER BY 1")
                .fetch_all(store.pool())
                .await
                .expect("vault");
        assert_eq!(
            vault,
            vec!["s1:offline", "s3:offline"],
            "reversed: {reversed}"
        );
        let ends: Vec<(String, Option<i64>, Option<String>)> =
            sqlx::query_as("SELECT id, ts_ms(ended_at), end_reason FROM user_sessions ORDER BY id")
                .fetch_all(store.pool())
                .await
                .expect("sessions");
        let admin_end = |s: &str| (s.to_string(), Some(2000), Some("admin".to_string()));
        assert_eq!(
            ends,
            vec![admin_end("s1"), admin_end("s2"), admin_end("s3")]
        );
    }
}

/// Rows that cannot be opened (corrupted, or sealed under a key no longer in the ring)
/// are counted and passed over: the rotation pages by id, so they never end it early.
#[tokio::test]
async fn rotation_passes_over_rows_it_cannot_open() {
    let db = TestDb::new().await;
    let store = vault_store(&db, "k1").await;
    let tokens: Vec<Event> = (0..5)
        .map(|i| {
            token(
                &format!("t{i}"),
                1000 + i,
                "refresh",
                (&format!("u{i}"), "s", "web"),
                "opaque",
                "{}",
            )
        })
        .collect();
    apply(&store, &tokens).await;
    // Three corrupted rows sorted before every real one.
    for i in 1..=3 {
        sqlx::query(
            "INSERT INTO auth_vault (id, realm_id, user_id, token_type, key_id, nonce,
                 ciphertext, issued_at, issued_ver)
             VALUES ($1::uuid, 'r', $2, 'refresh', 'k1', '\\x00', '\\x00', now(), '1')",
        )
        .bind(format!("00000000-0000-0000-0000-00000000000{i}"))
        .bind(format!("broken{i}"))
        .execute(store.pool())
        .await
        .expect("corrupted row");
    }
    let options = keycloak_sync::jobs::rotation::RotationOptions {
        batch_size: 2,
        max_batches: None,
        progress: false,
    };
    let report = keycloak_sync::jobs::rotation::rotate(&store, &ring("k2"), &options)
        .await
        .expect("rotate");
    assert_eq!((report.rotated, report.failed), (5, 3), "{report}");
    assert_eq!(
        report.remaining, 3,
        "only the rows that cannot be opened remain"
    );
}

/// An admin's deletion of an offline session names no user, so the user's lock cannot
/// make it meet an offline token of that session stored at the same moment: each would
/// miss the other's uncommitted row and the token would stay. Run side by side, pair after
/// pair, neither order may keep a token issued before the deletion.
#[tokio::test]
async fn an_offline_session_deletion_and_its_token_written_concurrently_meet() {
    let db = TestDb::new().await;
    let store = vault_store(&db, "k1").await;
    let pairs = 150;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..pairs {
        let session = format!("s{n}");
        let delete = event(&format!(
            r#"{{"schema":1,"kind":"admin","id":"d{n}","time":2000,"realmId":"r","resourceType":"USER_SESSION","operationType":"DELETE","resourcePath":"sessions/{session}","representation":"{{\"offline\":true}}"}}"#
        ));
        let offline = token(
            &format!("t{n}"),
            1100,
            "offline",
            (&format!("u{n}"), &session, "web"),
            "opaque",
            "{}",
        );
        for batch in [delete, offline] {
            let store = store.clone();
            tasks.spawn(async move { store.apply(&[batch]).await.expect("apply") });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    let kept = count(&store, "SELECT count(*) FROM auth_vault").await;
    assert_eq!(
        kept, 0,
        "offline tokens kept although their session was deleted after them"
    );
}

//! A long history with tokens and poison, and what any delivery of it must converge to:
//! the rows of a clean replay, and the poison alone in the dead-letter queue. Shared by
//! the fault suite and the cluster test.

use std::sync::Arc;
use std::time::Duration;

use keycloak_sync::core::sample::{history, SampleOptions};
use keycloak_sync::store::Store;
use keycloak_sync::vault::KeyRing;
use secrecy::SecretString;

use crate::support::*;

pub const VAULT_KEYS: &str = "k1:BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// The sample history with a token message after every fourth LOGIN (refresh and offline
/// in turn, each with its own plaintext `SECRET-FS-n`), and three poison messages among
/// them: a body that is not JSON, a token message of an unknown type, an event whose time
/// is not a number. Poison bodies carry token-like text too.
pub fn history_with_tokens_and_poison(events: usize) -> (Vec<Vec<u8>>, Vec<&'static str>) {
    let mut bodies = Vec::new();
    let mut logins = 0;
    for body in history(SampleOptions {
        events,
        users: 300,
        seed: 77,
        ..SampleOptions::default()
    }) {
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("sample is JSON");
        bodies.push(body.into_bytes());
        if parsed["type"] != "LOGIN" {
            continue;
        }
        logins += 1;
        if logins % 4 != 0 {
            continue;
        }
        let kind = if logins % 8 == 0 {
            "offline"
        } else {
            "refresh"
        };
        bodies.push(
            serde_json::json!({
                "schema": 1, "kind": "token", "id": format!("tok-{logins}"),
                "time": parsed["time"].as_i64().expect("time") + 1,
                "realmId": parsed["realmId"], "userId": parsed["userId"],
                "sessionId": parsed["sessionId"], "clientId": parsed["clientId"],
                "tokenType": kind, "token": format!("SECRET-FS-{logins}"),
            })
            .to_string()
            .into_bytes(),
        );
    }
    let poison = [
        r#"{"schema":1,"kind":"token","id":"poison-1","token":"SECRET-POISON-1", and then garbage"#,
        r#"{"schema":1,"kind":"token","id":"poison-2","time":1732270000000,"realmId":"r","userId":"u","sessionId":"s","clientId":"web","tokenType":"bogus","token":"SECRET-POISON-2"}"#,
        r#"{"schema":1,"kind":"user","id":"poison-3","time":"soon","realmId":"r","type":"LOGIN","userId":"u","details":{"refresh_token":"SECRET-POISON-3"}}"#,
    ];
    for (n, body) in poison.iter().enumerate() {
        let at = bodies.len() * (n + 1) / 4;
        bodies.insert(at, body.as_bytes().to_vec());
    }
    (bodies, poison.to_vec())
}

pub fn vault_ring() -> Arc<KeyRing> {
    Arc::new(KeyRing::parse(&SecretString::from(VAULT_KEYS), Some("k1")).expect("ring"))
}

/// Users, sessions and vault rows (which token message each slot holds), bookkeeping
/// included, write times (the metadata's `updatedAt` too) and ciphertexts left out.
pub async fn all_rows(store: &Store) -> serde_json::Value {
    let (users, sessions) = full_rows(store).await;
    let vault: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT jsonb_set(
                    to_jsonb(v) - 'id' - 'nonce' - 'ciphertext' - 'created_at' - 'updated_at',
                    '{metadata}', v.metadata - 'updatedAt')
         FROM auth_vault v ORDER BY token_type, user_id, client_id, session_id",
    )
    .fetch_all(store.pool())
    .await
    .expect("vault rows");
    serde_json::json!({"users": users, "sessions": sessions, "vault": vault})
}

/// What a clean replay of the valid messages leaves, and how many events its inbox holds.
pub async fn clean_replay(
    admin: &str,
    bodies: &[Vec<u8>],
    poison: &[&str],
) -> (serde_json::Value, i64) {
    let db = TestDb::on(admin).await;
    let store = db.store().await.with_vault(Some(vault_ring()));
    let events: Vec<_> = bodies
        .iter()
        .map(|b| std::str::from_utf8(b).expect("utf8"))
        .filter(|b| !poison.contains(b))
        .map(event)
        .collect();
    for chunk in events.chunks(500) {
        store.apply(chunk).await.expect("reference apply");
    }
    let rows = all_rows(&store).await;
    let processed = count(&store, "SELECT count(*) FROM processed_events").await;
    store.pool().close().await;
    (rows, processed)
}

/// Waits until the inbox has grown by `by` events since `from`, and returns its size.
pub async fn progress(store: &Store, from: i64, by: i64, daemon: &Daemon, after: &str) -> i64 {
    let moved = wait_until(Duration::from_secs(60), || async {
        count(store, "SELECT count(*) FROM processed_events").await >= from + by
    })
    .await;
    assert!(
        moved,
        "no progress after {after}; log:\n{}",
        daemon.log_text()
    );
    count(store, "SELECT count(*) FROM processed_events").await
}

/// Users, sessions and vault rows equal those of the clean replay, table by table.
pub async fn assert_rows_equal(store: &Store, expected_rows: &serde_json::Value) {
    let store = store.clone().with_vault(Some(vault_ring()));
    let rows = all_rows(&store).await;
    for table in ["users", "sessions", "vault"] {
        let (got, want) = (
            rows[table].as_array().expect("rows"),
            expected_rows[table].as_array().expect("rows"),
        );
        let first_difference = got.iter().zip(want).find(|(g, w)| g != w);
        assert!(
            got.len() == want.len() && first_difference.is_none(),
            "{table}: {} rows against {} in a clean replay; first difference: {first_difference:#?}",
            got.len(),
            want.len()
        );
    }
}

/// The dead-letter queue holds the three poison messages, each with its reason and
/// none with a plaintext token.
pub async fn assert_dead_letters_are_the_poison(amqp: &str, dlq: &str) {
    let copies = take_all(amqp, dlq).await;
    let mut ids: Vec<String> = copies
        .iter()
        .map(|copy| {
            assert!(
                !copy.body.contains("SECRET-"),
                "plaintext token in the DLQ: {}",
                copy.body
            );
            assert!(copy.reason.is_some(), "a dead letter without its reason");
            ["poison-1", "poison-2", "poison-3"]
                .into_iter()
                .find(|id| copy.body.contains(id))
                .unwrap_or("unknown")
                .to_string()
        })
        .collect();
    ids.sort();
    assert!(
        copies.len() == 3 && ids.contains(&"poison-2".into()) && ids.contains(&"poison-3".into()),
        "the DLQ holds exactly the three poison messages, got {ids:?}: {:?}",
        copies.iter().map(|c| &c.reason).collect::<Vec<_>>()
    );
}

//! Sessions that end without an event: inferred expiry from the realm's policy (Admin API
//! fake or configuration), the expiry pass, late activity; and admin logouts of a whole
//! realm.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use keycloak_sync::config::SessionsSettings;
use keycloak_sync::core::event::Event;
use keycloak_sync::core::ids::RealmId;
use keycloak_sync::core::session_policy::SessionPolicy;
use keycloak_sync::jobs::expiry::{expire, learn_policies, PolicyRead};
use keycloak_sync::store::Store;
use keycloak_sync::vault::KeyRing;
use secrecy::SecretString;
use serde_json::json;

use crate::keycloak_fake::{FakeKeycloak, REALM_ID};
use crate::support::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn settings() -> SessionsSettings {
    SessionsSettings {
        expire_interval: Some(Duration::from_secs(60)),
        expiry_margin: Duration::from_secs(300),
        idle_grace: Duration::from_secs(120),
        policy_refresh: Duration::from_secs(3600),
        realm_policies: Vec::new(),
        expire_batch: 2,
    }
}

fn user_event(realm: &str, id: &str, time: i64, kind: &str, session: &str, extra: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"user","id":"{id}","time":{time},"realmId":"{realm}","type":"{kind}","clientId":"web","userId":"u-{session}","sessionId":"{session}"{extra}}}"#
    ))
}

fn login(id: &str, time: i64, session: &str) -> Event {
    user_event(REALM_ID, id, time, "LOGIN", session, "")
}

fn refresh(id: &str, time: i64, session: &str) -> Event {
    user_event(REALM_ID, id, time, "REFRESH_TOKEN", session, "")
}

fn token(id: &str, time: i64, kind: &str, session: &str) -> Event {
    event(&format!(
        r#"{{"schema":1,"kind":"token","id":"{id}","time":{time},"realmId":"{REALM_ID}","userId":"u-{session}","sessionId":"{session}","clientId":"web","tokenType":"{kind}","token":"secret-{id}","expiresAt":9999999999999}}"#
    ))
}

fn ring() -> Arc<KeyRing> {
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    Arc::new(KeyRing::parse(&SecretString::from(format!("k1:{key}")), Some("k1")).expect("ring"))
}

/// (ended_at, end_reason, expires_at) of a session, epoch ms.
async fn end_of(store: &Store, id: &str) -> (Option<i64>, Option<String>, Option<i64>) {
    sqlx::query_as(
        "SELECT ts_ms(ended_at), end_reason, ts_ms(expires_at) FROM user_sessions WHERE id = $1",
    )
    .bind(id)
    .fetch_one(store.pool())
    .await
    .expect("session")
}

async fn tokens_of(store: &Store, session: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT token_type FROM auth_vault WHERE session_id = $1 ORDER BY token_type",
    )
    .bind(session)
    .fetch_all(store.pool())
    .await
    .expect("tokens")
}

/// Keycloak's policy: idle 30 min, max 10 h; remember-me idle 1 day, max 7 days; idle
/// grace 2 min (Keycloak's window). Sessions clearly expired by idle time and by max
/// lifespan end at their expiry; alive and remember-me sessions stay; a realm with no
/// policy is never expired; a second pass changes nothing; `--dry-run` writes nothing.
#[tokio::test]
async fn the_expiry_pass_ends_what_keycloak_has_dropped_and_nothing_else() {
    let db = TestDb::new().await;
    let store = db.store().await.with_vault(Some(ring()));
    let keycloak = FakeKeycloak::start().await;
    keycloak.state().realm_fields = json!({
        "ssoSessionIdleTimeout": 1800, "ssoSessionMaxLifespan": 36000,
        "ssoSessionIdleTimeoutRememberMe": 86400, "ssoSessionMaxLifespanRememberMe": 604800
    })
    .as_object()
    .cloned()
    .expect("object");
    let now = now_ms();
    let remembered = user_event(
        REALM_ID,
        "rm",
        now - 3 * HOUR,
        "LOGIN",
        "remembered",
        r#","details":{"remember_me":"true"}"#,
    );
    apply(
        &store,
        &[
            login("idle", now - 3 * HOUR, "idle"),
            token("idle-r", now - 3 * HOUR, "refresh", "idle"),
            token("idle-o", now - 3 * HOUR, "offline", "idle"),
            login("alive", now - 10 * MIN, "alive"),
            remembered,
            login("long", now - 11 * HOUR, "long"),
            refresh("long-r", now - 5 * MIN, "long"),
            user_event("other-realm", "x", now - 5 * HOUR, "LOGIN", "unknown", ""),
        ],
    )
    .await;
    assert_eq!(
        end_of(&store, "idle").await,
        (None, None, None),
        "no policy known yet: no expiry guessed"
    );

    let sessions_settings = settings();
    let admin = keycloak.client(100);
    let policies = learn_policies(&store, Some(&admin), &sessions_settings, PolicyRead::All)
        .await
        .expect("policies");
    assert_eq!(policies.known, 1);
    assert!(policies.unknown.is_empty(), "{:?}", policies.unknown);
    let idle_expiry = now - 3 * HOUR + 30 * MIN + 2 * MIN;
    let long_expiry = now - 11 * HOUR + 10 * HOUR;
    assert_eq!(
        end_of(&store, "idle").await,
        (None, None, Some(idle_expiry))
    );
    assert_eq!(
        end_of(&store, "remembered").await,
        (None, None, Some(now - 3 * HOUR + 24 * HOUR + 2 * MIN))
    );

    let dry = expire(&store, &sessions_settings, None, true, Default::default())
        .await
        .expect("dry run");
    assert_eq!((dry.ended, dry.tokens_removed), (2, 0));
    assert_eq!(
        end_of(&store, "idle").await.0,
        None,
        "a dry run writes nothing"
    );

    let pass = expire(&store, &sessions_settings, None, false, Default::default())
        .await
        .expect("pass");
    assert_eq!(
        (pass.ended, pass.tokens_removed, pass.without_policy),
        (2, 1, 1)
    );
    assert_eq!(
        end_of(&store, "idle").await,
        (Some(idle_expiry), Some("expired".into()), Some(idle_expiry))
    );
    assert_eq!(
        end_of(&store, "long").await,
        (Some(long_expiry), Some("expired".into()), Some(long_expiry)),
        "max lifespan since the start, however recent the activity"
    );
    for alive in ["alive", "remembered", "unknown"] {
        assert_eq!(end_of(&store, alive).await.0, None, "{alive}");
    }
    assert_eq!(
        tokens_of(&store, "idle").await,
        vec!["offline".to_string()],
        "the refresh token dies with the session; the offline session outlives it"
    );

    let again = expire(&store, &sessions_settings, None, false, Default::default())
        .await
        .expect("second pass");
    assert_eq!((again.ended, again.tokens_removed), (0, 0));
}

/// An inferred end is the only end evidence may move: activity timed after it reopens the
/// session when the new expiry is still ahead, and moves the end when it is past; ends
/// from events never move. Either order of the late event and the pass gives the same row.
#[tokio::test]
async fn late_activity_moves_an_inferred_end_in_either_order() {
    let now = now_ms();
    let cases = [
        // (session, login, late activity, expected end)
        ("reopened", now - 3 * HOUR, now - MIN, None),
        (
            "moved",
            now - 5 * HOUR,
            now - 4 * HOUR,
            Some(now - 4 * HOUR + 32 * MIN),
        ),
    ];
    for pass_first in [true, false] {
        let db = TestDb::new().await;
        let store = db.store().await;
        let mut sessions_settings = settings();
        sessions_settings.realm_policies = vec![(
            RealmId::from(REALM_ID),
            SessionPolicy {
                idle: 1800,
                max_lifespan: 36000,
                idle_remember_me: 0,
                max_lifespan_remember_me: 0,
            },
        )];
        learn_policies(&store, None, &sessions_settings, PolicyRead::All)
            .await
            .expect("policies");
        let logins: Vec<Event> = cases
            .iter()
            .map(|(id, at, _, _)| login(&format!("l-{id}"), *at, id))
            .collect();
        apply(&store, &logins).await;
        let logged_out = [
            login("l-out", now - 3 * HOUR, "out"),
            user_event(REALM_ID, "o-out", now - 2 * HOUR, "LOGOUT", "out", ""),
        ];
        apply(&store, &logged_out).await;
        let late: Vec<Event> = cases
            .iter()
            .map(|(id, _, at, _)| refresh(&format!("r-{id}"), *at, id))
            .chain([refresh("r-out", now - MIN, "out")])
            .collect();
        if pass_first {
            expire(&store, &sessions_settings, None, false, Default::default())
                .await
                .expect("pass");
            apply(&store, &late).await;
        } else {
            apply(&store, &late).await;
        }
        expire(&store, &sessions_settings, None, false, Default::default())
            .await
            .expect("pass");
        for (id, _, activity, end) in cases {
            let (ended, reason, expires) = end_of(&store, id).await;
            assert_eq!(ended, end, "{id}, pass first: {pass_first}");
            assert_eq!(reason.is_some(), end.is_some(), "{id}");
            assert_eq!(expires, Some(activity + 32 * MIN), "{id}");
        }
        assert_eq!(
            end_of(&store, "out").await.0,
            Some(now - 2 * HOUR),
            "an end from an event stays"
        );
    }
}

/// Keycloak's `POST logout-all` (RealmAdminResource) is a REALM ACTION: every session of
/// the realm begun by then ends (`admin`) and every token issued by then is void (the
/// realm's not-before), including sessions and tokens learnt about later.
#[tokio::test]
async fn logout_all_ends_the_realms_sessions_and_tokens_in_any_order() {
    let logout_all = || {
        event(
            r#"{"schema":1,"kind":"admin","id":"adm-all","time":2000,"realmId":"r","resourceType":"REALM","operationType":"ACTION","resourcePath":"logout-all"}"#,
        )
    };
    let before = || {
        vec![
            user_event("r", "l1", 1000, "LOGIN", "s1", ""),
            user_event("r", "l2", 1500, "LOGIN", "s2", ""),
            event(
                r#"{"schema":1,"kind":"token","id":"t1","time":1500,"realmId":"r","userId":"u-s2","sessionId":"s2","clientId":"web","tokenType":"offline","token":"secret-t1"}"#,
            ),
            user_event("other", "l3", 1000, "LOGIN", "s3", ""),
        ]
    };
    let after = || vec![user_event("r", "l4", 3000, "LOGIN", "s4", "")];
    for order in 0..3 {
        let db = TestDb::new().await;
        let store = db.store().await.with_vault(Some(ring()));
        let batches = match order {
            0 => vec![before(), vec![logout_all()], after()],
            1 => vec![vec![logout_all()], after(), before()],
            _ => vec![after(), before(), vec![logout_all()]],
        };
        for batch in &batches {
            apply(&store, batch).await;
        }
        for (session, end) in [
            ("s1", Some(2000)),
            ("s2", Some(2000)),
            ("s3", None),
            ("s4", None),
        ] {
            let (ended, reason, _) = end_of(&store, session).await;
            assert_eq!(ended, end, "{session}, order {order}");
            assert_eq!(reason.as_deref(), end.map(|_| "admin"), "{session}");
        }
        assert!(tokens_of(&store, "s2").await.is_empty(), "order {order}");
    }
}

/// An admin REALM UPDATE marks the realm's policy stale: the next pass reads it again
/// (and only stale ones between full reads), and the open sessions' expiry follows.
/// A configured policy wins over the Admin API.
#[tokio::test]
async fn a_realm_update_has_the_policy_read_again_and_configuration_wins() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let keycloak = FakeKeycloak::start().await;
    let timeouts = |idle: i64| {
        json!({"ssoSessionIdleTimeout": idle, "ssoSessionMaxLifespan": 36000})
            .as_object()
            .cloned()
            .expect("object")
    };
    keycloak.state().realm_fields = timeouts(1800);
    let admin = keycloak.client(100);
    let sessions_settings = settings();
    let now = now_ms();
    apply(&store, &[login("l1", now - MIN, "s1")]).await;
    learn_policies(&store, Some(&admin), &sessions_settings, PolicyRead::All)
        .await
        .expect("policies");
    assert_eq!(end_of(&store, "s1").await.2, Some(now - MIN + 32 * MIN));

    keycloak.state().realm_fields = timeouts(600);
    let unchanged = learn_policies(&store, Some(&admin), &sessions_settings, PolicyRead::Stale)
        .await
        .expect("policies");
    assert_eq!(unchanged.sessions_moved, 0, "not stale: not read again");
    let update = event(&format!(
        r#"{{"schema":1,"kind":"admin","id":"adm-upd","time":{now},"realmId":"{REALM_ID}","resourceType":"REALM","operationType":"UPDATE","resourcePath":""}}"#
    ));
    apply(&store, &[update]).await;
    let reread = learn_policies(&store, Some(&admin), &sessions_settings, PolicyRead::Stale)
        .await
        .expect("policies");
    assert_eq!(reread.sessions_moved, 1);
    assert_eq!(end_of(&store, "s1").await.2, Some(now - MIN + 12 * MIN));

    let mut configured = sessions_settings.clone();
    configured.realm_policies = vec![(
        RealmId::from(REALM_ID),
        SessionPolicy {
            idle: 3600,
            max_lifespan: 36000,
            idle_remember_me: 0,
            max_lifespan_remember_me: 0,
        },
    )];
    learn_policies(&store, Some(&admin), &configured, PolicyRead::All)
        .await
        .expect("policies");
    assert_eq!(end_of(&store, "s1").await.2, Some(now - MIN + 62 * MIN));
}

/// The command: a summary line, exit 0; a realm policy from configuration; `--dry-run`
/// counts without writing; a malformed policy stops it with the key named.
#[tokio::test]
async fn the_sessions_expire_command_reports_and_dry_runs() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let now = now_ms();
    apply(&store, &[login("l1", now - 3 * HOUR, "s1")]).await;
    let run = |args: &[&str], policies: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_keycloak-sync"))
            .args(["sessions", "expire"])
            .args(args)
            .env("KEYCLOAK_SYNC__DATABASE__URL", &db.url)
            .env("KEYCLOAK_SYNC__SESSIONS__REALM_POLICIES", policies)
            .output()
            .expect("sessions expire")
    };
    let policy = format!("{REALM_ID}=1800:36000");
    let dry = run(&["--dry-run", "--realm", REALM_ID], &policy);
    let stdout = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(dry.status.code(), Some(0), "{dry:?}");
    assert!(stdout.contains("would end 0 sessions"), "{stdout}");
    assert_eq!(
        end_of(&store, "s1").await.2,
        None,
        "a dry run stores no policy"
    );

    let real = run(&[], &policy);
    let stdout = String::from_utf8_lossy(&real.stdout);
    assert_eq!(real.status.code(), Some(0), "{real:?}");
    assert!(
        stdout.contains("sessions expire summary: ended 1 sessions"),
        "{stdout}"
    );
    assert_eq!(end_of(&store, "s1").await.1.as_deref(), Some("expired"));

    let bad = run(&[], "no-numbers");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_ne!(bad.status.code(), Some(0));
    assert!(stderr.contains("sessions.realm_policies"), "{stderr}");
}
